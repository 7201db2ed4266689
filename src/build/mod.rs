//! Table construction: corpus + entity list + model → PELT table, in memory that does not
//! grow with the corpus or the contexts kept.
//!
//! 1. *Scanning*: stream the corpus and find every mention; the sentence of a mention is
//!    spilled to a file, and the mention goes to sorted runs on disk ([`samples`]).
//! 2. *Collecting*: the runs are merged in entity order, keeping per entity the K mentions
//!    with the smallest seeded random keys (a uniform sample that does not depend on sharding
//!    or on the memory budget), grouped by entity in table order and cut into windows of
//!    whole entities ([`encode::plan_windows`]). Shard i of n takes windows w with
//!    w mod n = i, so shards are disjoint sets of entities.
//!
//! What the build holds beyond the model is the entity list (checked against
//! [`BuildOptions::memory`] before the scan, see [`budget`]), the sort's buffers (sized by the
//! budget) and the window being encoded; the spill files go to a folder of their own beside
//! the output (or in `tmp`), removed at the end.
//! 3. *Encoding* ([`encode`]): window by window, mask each mention, batch by length, run the
//!    encoder and sum the transform outputs per entity. When a window ends its entities are
//!    complete, and their rows go to the [`TableWriter`], which spills them; at the end the
//!    table file is assembled from the spill. Checkpoints ([`checkpoint`]) are written every
//!    `checkpoint_secs` and on cancellation; `resume` continues from one to the same bytes.
//!
//! The host side runs on [`BuildOptions::threads`] threads: scanning parses the corpus and
//! finds mentions in parallel and merges in corpus order (so the table's bytes do not depend on
//! the thread count), and tokenization runs on its own threads, windows ahead of the encoder.
//! The packed CPU path takes [`BuildOptions::batch`] contexts per batch; a padded path (GPUs)
//! takes as many as fit in [`BuildOptions::batch_tokens`] token rows.

pub mod budget;
pub mod checkpoint;
pub mod encode;
pub mod job;
pub mod linked;
pub mod options;
pub mod samples;
pub mod spill;
pub mod stages;

use anyhow::{bail, Context, Result};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::contexts::{ContextRecord, MentionMode, MentionSource};
use crate::corpus::{Corpus, ReadReport};
use crate::entities::EntityList;
use crate::model::Model;
use crate::progress::{Meter, Phase, Progress};
use crate::table::{
    ContextLayout, ContextText, EntityRow, RowVector, Table, TableMeta, TableWriter, TextSource,
};

use checkpoint::{load_checkpoint, save_checkpoint};
pub use encode::{
    encode_windows, encoder_threads, plan_flat, plan_windows, plan_windows_of, EncodeSink,
    EncodeState, EntitySum, WindowPlan,
};
pub use job::{run_build_job, BuildJob};
pub use options::{
    parse_memory, parse_shard, parse_shard_arg, resolve_threads, shard_from_env, BatchPlan,
    BuildOptions, DEFAULT_BATCH_TOKENS, DEFAULT_MEMORY, MAX_ENCODERS,
};
use samples::{FoundFile, SampleRuns};
use spill::{SentenceSpill, SpillDir, SpillRef};
use stages::StageClock;
pub use stages::{process_cpu_secs, StageRate};

/// A build that failed after reading the corpus: the message, and what reading skipped (so
/// that a corpus of only bad lines says why).
#[derive(Debug)]
pub struct BuildError {
    pub message: String,
    pub read: ReadReport,
}

impl BuildError {
    fn new(message: String, read: ReadReport) -> Self {
        BuildError { message, read }
    }
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.message)?;
        let lines = self.read.summary_lines();
        if !lines.is_empty() {
            write!(
                f,
                "\n{} corpus lines and {} links were skipped while reading:",
                self.read.skipped_lines, self.read.skipped_links
            )?;
            for l in lines {
                write!(f, "\n  {l}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for BuildError {}

#[derive(Debug, Clone, Default)]
pub struct BuildReport {
    pub read: ReadReport,
    /// The mention mode used (`Auto` resolved) and why.
    pub mentions: MentionMode,
    pub mentions_why: String,
    /// Links whose id is not on the entity list (ignored), and a few such ids.
    pub unknown_links: u64,
    pub unknown_examples: Vec<String>,
    /// Sampled contexts that came from links.
    pub linked_contexts: usize,
    pub sentences: u64,
    pub contexts: usize,
    /// Sampled mentions whose span no token covered (not encoded).
    pub skipped_contexts: usize,
    pub not_found: Vec<String>,
    pub collisions: Vec<String>,
    pub encode_secs: f64,
    pub contexts_per_sec: f64,
    pub resumed_from: u64,
    /// What the encoder ran on: device, dtype, and how contexts were batched.
    pub device: String,
    pub dtype: String,
    pub batch: String,
    /// Threads of the host side (reading, mention finding, tokenization).
    pub threads: usize,
    /// Scan, collect, tokenize and encode, in that order; first `entities` where the entity
    /// list was read from the corpus's links ([`entity_list_for`]; its callers put it there).
    pub stages: Vec<StageRate>,
    /// Where the entity list came from the corpus's links: how many ids it took.
    pub entities_from_links: Option<usize>,
    /// Mentions found, the sorted runs they spilled to (0: they fitted in memory), the merge
    /// passes before the last, and the memory budget.
    pub mentions_found: u64,
    pub sort_runs: usize,
    pub sort_passes: usize,
    pub memory: u64,
}

pub enum BuildOutcome {
    /// The table (opened from the output file where there is one), and the report.
    Finished(Box<Table>, BuildReport),
    /// Stopped by the cancel flag; the checkpoint (if any) lets `resume` continue.
    Cancelled {
        done: u64,
        total: u64,
        checkpoint: Option<PathBuf>,
    },
}

pub struct BuildInput<'a> {
    pub model: &'a Model,
    pub corpus: &'a Corpus,
    pub entities: &'a EntityList,
    pub options: &'a BuildOptions,
    /// Where the table is written; `None` keeps it in memory (small builds, tests).
    pub out: Option<PathBuf>,
    /// The folder for spill files (the sampled sentences, the table's streams); `None`: beside
    /// the output, else the system's temporary folder. Removed at the end.
    pub tmp: Option<PathBuf>,
    /// Where checkpoints go; `None` disables checkpoints. The table's streams spill beside it
    /// (`<checkpoint>.d`), so that a resume finds them.
    pub checkpoint: Option<PathBuf>,
    pub resume: bool,
    pub cancel: &'a AtomicBool,
}

/// The entity list of a build: the given file, or — for an entity-linked corpus — the ids of
/// its links linked at least `min_count` times (see [`EntityList::from_links`]); with the
/// `entities` stage of that read of the corpus, for the build's summary (see
/// [`BuildReport::stages`]).
pub fn entity_list_for(
    corpus: &Corpus,
    entities: Option<&Path>,
    min_count: usize,
) -> Result<(EntityList, Option<StageRate>)> {
    match entities {
        Some(p) => Ok((crate::entities::load_entities(p)?, None)),
        None if corpus.has_links()? => {
            let clock = StageClock::start();
            let (list, read) = linked::entity_list_from_links(corpus, min_count)?;
            let (secs, cpu_secs) = clock.read();
            let stage = StageRate {
                name: "entities",
                unit: "sentences",
                items: read.sentences as u64,
                secs,
                threads: crate::model::cores(),
                cpu_secs,
                ..Default::default()
            };
            Ok((list, Some(stage)))
        }
        None => bail!(
            "no entity list: the corpus carries no entity links to take the entities from, so an entity list (.txt or .tsv) is needed"
        ),
    }
}

/// The checkpoint path used for an output table.
pub fn checkpoint_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".ckpt");
    PathBuf::from(s)
}

/// The folder the table's streams spill to for a build with this checkpoint (kept while the
/// checkpoint is, so that a resume finds them).
pub fn checkpoint_spill_dir(checkpoint: &Path) -> PathBuf {
    let mut s = checkpoint.as_os_str().to_owned();
    s.push(".d");
    PathBuf::from(s)
}

/// Removes a build's checkpoint and the spill folder beside it.
pub fn remove_checkpoint(checkpoint: &Path) {
    let _ = std::fs::remove_file(checkpoint);
    let _ = std::fs::remove_dir_all(checkpoint_spill_dir(checkpoint));
}

/// sha256 of an entity list as a build sees it (shards of one build share it).
pub fn entity_list_sha256(entities: &EntityList) -> Result<String> {
    use sha2::{Digest, Sha256};
    struct Hasher(Sha256);
    impl std::io::Write for Hasher {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.update(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = Hasher(Sha256::new());
    serde_json::to_writer(&mut h, entities)?;
    Ok(format!("{:x}", h.0.finalize()))
}

/// Hands finished windows to the table writer and saves checkpoints.
struct TableSink<'a> {
    writer: TableWriter,
    entities: &'a EntityList,
    found: &'a FoundFile,
    h: usize,
    checkpoint: Option<&'a Path>,
}

impl EncodeSink for TableSink<'_> {
    fn window_done(
        &mut self,
        _index: usize,
        plan: &WindowPlan,
        records: &[ContextRecord],
        state: &EncodeState,
    ) -> Result<()> {
        let lo = plan.records.start;
        let mut at = 0usize;
        let zeros = vec![0f32; self.h];
        let found = self.found.read(plan.entities.clone())?;
        for e in plan.entities.clone() {
            let from = at;
            while at < records.len() && records[at].entity as usize == e {
                at += 1;
            }
            let kept: Vec<&ContextRecord> = (from..at)
                .filter(|&i| state.skipped.binary_search(&(lo + i)).is_err())
                .map(|i| &records[i])
                .collect();
            let sum: Vec<f32> = match state.sums.get(&(e as u32)) {
                Some(s) => {
                    if s.count as usize != kept.len() {
                        bail!(
                            "internal error: entity row {e} has {} sums for {} contexts",
                            s.count,
                            kept.len()
                        );
                    }
                    s.sum.iter().map(|x| x.to_f32()).collect()
                }
                None => zeros.clone(),
            };
            let ent = &self.entities.entities[e];
            self.writer.push(
                &EntityRow {
                    id: &ent.id,
                    name: &ent.name,
                    aliases: &ent.aliases,
                    global_row: e as u32,
                    vector: RowVector::Sum(&sum),
                    found: found[e - plan.entities.start],
                },
                kept,
            )?;
        }
        if at != records.len() {
            bail!("internal error: a window's contexts are not grouped by its entities");
        }
        Ok(())
    }

    fn checkpoint(&mut self, state: &EncodeState) -> Result<()> {
        if let Some(p) = self.checkpoint {
            self.writer.sync()?;
            save_checkpoint(p, state, self.writer.position(), self.h)?;
        }
        Ok(())
    }
}

pub fn build_table(input: BuildInput, progress: &mut dyn FnMut(&Progress)) -> Result<BuildOutcome> {
    let BuildInput {
        model,
        corpus,
        entities,
        options: opts,
        out,
        tmp,
        checkpoint,
        resume,
        cancel,
    } = input;
    opts.validate()?;
    if resume {
        match &checkpoint {
            None => bail!("resume needs a checkpoint path"),
            Some(p) if !p.exists() => bail!(
                "nothing to resume: there is no checkpoint {} (build without --resume to start afresh)",
                crate::escape::path(p)
            ),
            Some(_) => {}
        }
    }
    if opts.max_len > model.config.max_sequence_len() {
        bail!(
            "max_len {} is longer than the model's limit of {} tokens",
            opts.max_len,
            model.config.max_sequence_len()
        );
    }
    let n = entities.len();
    if u32::try_from(n).is_err() {
        bail!("{n} entities: a table holds at most 2^32 - 1");
    }
    let h = model.hidden_size();
    let has_links = corpus.has_links()?;
    let mode = opts.mentions.resolve(has_links);
    let mentions_why = match (opts.mentions, mode) {
        (MentionMode::Auto, MentionMode::Links) => {
            "auto: the corpus carries entity links".to_string()
        }
        (MentionMode::Auto, _) => {
            "auto: the corpus carries no entity links, so names and aliases are matched".to_string()
        }
        (m, _) => format!("asked for: --mentions {}", m.as_str()),
    };
    let mut source = MentionSource::new(entities, mode, opts.case_sensitive)?;
    let mut report = BuildReport {
        collisions: source.collisions(),
        mentions: mode,
        mentions_why,
        ..Default::default()
    };
    let threads = resolve_threads(opts.threads);
    let plan = opts.batch_plan(model.encoder.packs_tokens());
    report.threads = threads;
    report.device = crate::model::describe_device(model.encoder.device()).to_string();
    report.dtype = crate::model::dtype_name(model.encoder.dtype()).to_string();
    report.batch = plan.to_string();
    // Spill files go to --tmp, else beside the output (or checkpoint), else to the system's
    // temporary folder for a build kept in memory.
    let spill_root = match (&tmp, out.as_deref().or(checkpoint.as_deref())) {
        (Some(t), _) => t.clone(),
        (None, Some(p)) => p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        (None, None) => std::env::temp_dir(),
    };
    if let Some(t) = &tmp {
        crate::outpath::check_dir_or_absent("--tmp", t)?;
    }
    // What the entity list needs must fit in the budget; the rest bounds the sort.
    let sort_budget = budget::plan(
        opts.memory,
        budget::entity_bytes(entities, mode),
        budget::working_bytes(opts.window_size(plan), h, opts.max_len, threads),
        n,
    )?;

    // 1. Scanning: sentences are parsed and their mentions found on `threads` threads; here,
    // in corpus order, the sentence of each mention is spilled and the mention goes to the
    // sort's runs.
    let spill_dir = SpillDir::create(&spill_root)?;
    let mut spill = SentenceSpill::create(spill_dir.path())?;
    let mut runs = SampleRuns::new(spill_dir.path(), opts.k, opts.seed, sort_budget);
    // The corpus checksum (for the table and checkpoints) is read meanwhile, on its own thread.
    let corpus_sha = {
        let corpus = corpus.clone();
        std::thread::spawn(move || corpus.sha256())
    };
    let mut meter = Meter::new(Phase::Scanning, 0);
    let mut ordinal = 0u64;
    let scan_clock = StageClock::start();
    let read = {
        let finder = &source;
        let mut unknown = (0u64, Vec::<String>::new());
        let read = corpus.for_each_sentence_parallel(
            threads,
            |s| finder.find_shared(s),
            |s, found| {
                finder.count_unknown(s, &found, &mut unknown);
                if !found.mentions.is_empty() {
                    let at: SpillRef = spill.push(
                        &s.text,
                        s.file as u32,
                        s.line as u32,
                        s.index as u32,
                        s.offset,
                    )?;
                    for m in &found.mentions {
                        runs.offer(ordinal, m, at)?;
                    }
                }
                ordinal += 1;
                if meter.due() {
                    progress(&meter.progress(ordinal, None));
                }
                if cancel.load(Ordering::Relaxed) {
                    return Ok(ControlFlow::Break(()));
                }
                Ok(ControlFlow::Continue(()))
            },
        )?;
        (source.unknown_links, source.unknown_examples) = unknown;
        read
    };
    spill.close()?;
    let (scan_secs, scan_cpu) = scan_clock.read();
    if cancel.load(Ordering::Relaxed) {
        return Ok(BuildOutcome::Cancelled {
            done: 0,
            total: 0,
            checkpoint: None,
        });
    }
    let total_sentences = ordinal;
    report.sentences = total_sentences;
    report.unknown_links = source.unknown_links;
    report.unknown_examples = source.unknown_examples.clone();
    let files = || {
        corpus
            .files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if mode == MentionMode::Links && read.links == 0 {
        return Err(BuildError::new(
            format!(
                "--mentions links: the corpus carries no entity links ({total_sentences} sentences read from {}); use --mentions names to match names and aliases",
                files()
            ),
            read,
        )
        .into());
    }
    if runs.offered == 0 {
        let why = if mode == MentionMode::Links {
            format!(
                "; {} links were read, {} of them to ids not on the entity list (e.g. {})",
                read.links,
                source.unknown_links,
                source.unknown_examples.join(", ")
            )
        } else {
            String::new()
        };
        return Err(BuildError::new(
            format!(
                "no entity of the list is mentioned in the corpus ({total_sentences} sentences read from {}{why})",
                files()
            ),
            read,
        )
        .into());
    }
    report.read = read;
    report.stages.push(StageRate {
        name: "scan",
        unit: "sentences",
        items: total_sentences,
        secs: scan_secs,
        threads,
        cpu_secs: scan_cpu,
        ..Default::default()
    });
    drop(source);

    // 2. Collecting: the runs merged into each entity's sample (corpus order within one),
    // windows of whole entities, and this shard's share of them.
    let plan_clock = StageClock::start();
    let mut meter = Meter::new(Phase::Collecting, 0);
    let runs_offered = runs.offered;
    let collected = runs.finish(n, cancel, &mut |done, total| {
        if meter.due() {
            progress(&meter.progress(done, Some(total)));
        }
    })?;
    let Some(mut collected) = collected else {
        return Ok(BuildOutcome::Cancelled {
            done: 0,
            total: 0,
            checkpoint: None,
        });
    };
    report.mentions_found = runs_offered;
    report.sort_runs = collected.runs;
    report.sort_passes = collected.passes;
    report.memory = opts.memory;
    let window_size = opts.window_size(plan);
    let (shard_i, shard_n) = opts.shard.unwrap_or((0, 1));
    let per_entity = std::mem::take(&mut collected.per_entity);
    let windows: Vec<WindowPlan> =
        plan_windows_of(per_entity.iter().map(|&c| c as usize), window_size)
            .into_iter()
            .enumerate()
            .filter(|(w, _)| w % shard_n == shard_i)
            .map(|(_, w)| w)
            .collect();
    drop(per_entity);
    let (secs, cpu_secs) = plan_clock.read();
    report.stages.push(StageRate {
        name: "collect",
        unit: "contexts",
        items: collected.samples.len(),
        secs,
        threads: 1,
        cpu_secs,
        ..Default::default()
    });

    // 3. Encoding, with the rows of finished windows going to the table writer.
    let model_sha = model.weights_sha256()?;
    let corpus_sha = corpus_sha
        .join()
        .map_err(|_| anyhow::anyhow!("internal error: the thread hashing the corpus stopped"))??;
    let list_sha = entity_list_sha256(entities)?;
    let model_id = format!("{model_sha}/{:?}", model.encoder.dtype());
    let fingerprint = fingerprint(&model_id, &corpus_sha, &list_sha, opts, mode, plan)?;
    let total: u64 = windows.iter().map(|w| w.records.len() as u64).sum();
    let meta = TableMeta {
        model: model.name(),
        model_sha256: model_sha,
        hidden_size: h,
        k: opts.k,
        seed: opts.seed,
        max_len: opts.max_len,
        corpus: corpus
            .files
            .iter()
            .map(|p| file_label(p))
            .collect::<Vec<_>>()
            .join(","),
        corpus_sha256: corpus_sha,
        shard: match opts.shard {
            Some((i, n)) if n > 1 => format!("{i}/{n}"),
            _ => "all".into(),
        },
        case_sensitive: opts.case_sensitive,
        mentions: mode.as_str().to_string(),
        window: window_size,
        dtype: opts.vectors,
        entities_total: n,
        entity_list_sha256: list_sha,
    };
    let writer_dir = match (&checkpoint, &tmp, &out) {
        (Some(c), Some(t), _) => Some(t.join(checkpoint_spill_dir(Path::new(
            c.file_name().unwrap_or_default(),
        )))),
        (Some(c), None, _) => Some(checkpoint_spill_dir(c)),
        (None, Some(t), Some(o)) => Some(t.join(crate::table::spill_dir_for(Path::new(
            o.file_name().unwrap_or_default(),
        )))),
        (None, None, Some(o)) => Some(crate::table::spill_dir_for(o)),
        (None, _, None) => None,
    };
    let mut state = EncodeState {
        fingerprint: fingerprint.clone(),
        ..Default::default()
    };
    let mut writer = None;
    if resume {
        let path = checkpoint
            .as_ref()
            .context("resume needs a checkpoint path")?;
        let (ck, pos) = load_checkpoint(path, h, &windows, opts)?;
        if ck.fingerprint != fingerprint {
            bail!(
                "{}: this checkpoint belongs to a build with other inputs or options (model, corpus, entity list, k, seed, max_len, batch or shard differ); delete it or build without --resume",
                path.display()
            );
        }
        let rows: usize = windows[..ck.window].iter().map(|w| w.entities.len()).sum();
        if pos.rows != rows as u64 {
            bail!(
                "{}: the checkpoint's table holds {} rows, but {rows} come before its window; delete it or build without --resume",
                path.display(),
                pos.rows
            );
        }
        let dir = writer_dir
            .as_deref()
            .context("resume needs a spill folder")?;
        writer = Some(
            TableWriter::resume(meta.clone(), opts.norm, dir, pos)
                .with_context(|| format!("{}: cannot continue it", path.display()))?,
        );
        state = ck;
        report.resumed_from = state.done;
    }
    let mut writer = match writer {
        Some(w) => w,
        None => TableWriter::new(meta, opts.norm, writer_dir.as_deref())?,
    };
    writer.set_contexts(ContextLayout {
        text: opts.context_text,
        corpus_files: corpus.relative_names(),
    })?;
    let mut sink = TableSink {
        writer,
        entities,
        found: &collected.found,
        h,
        checkpoint: checkpoint.as_deref(),
    };
    let samples = &collected.samples;
    let load = |r: std::ops::Range<usize>| -> Result<Vec<ContextRecord>> {
        samples
            .read(r)?
            .iter()
            .map(|s| {
                Ok(ContextRecord {
                    entity: s.entity,
                    file: s.at.file,
                    line: s.at.line,
                    sentence: s.at.sentence,
                    start: s.start,
                    end: s.end,
                    text: spill.read(&s.at)?,
                    linked: s.linked,
                    offset: s.at.record,
                    checksum: None,
                    source: TextSource::Stored,
                })
            })
            .collect()
    };
    let started = Instant::now();
    let encode_clock = StageClock::start();
    let encoded = encode_windows(
        model, &windows, &load, opts, &mut state, &mut sink, cancel, progress,
    );
    let cancelled = match encoded {
        Ok(c) => c,
        Err(e) => {
            // Without a checkpoint to continue from, the spilled rows are of no use.
            if let Some(d) = &writer_dir {
                if checkpoint.as_ref().is_none_or(|c| !c.exists()) {
                    let _ = std::fs::remove_dir_all(d);
                }
            }
            return Err(e);
        }
    };
    let done_here = state.done - report.resumed_from;
    report.stages.push(StageRate {
        name: "tokenize",
        unit: "contexts",
        items: done_here,
        secs: state.tokenize_secs,
        threads: resolve_threads(opts.threads),
        ..Default::default()
    });
    let (encode_secs, encode_cpu) = encode_clock.read();
    report.stages.push(StageRate {
        name: "encode",
        unit: "contexts",
        items: done_here,
        secs: encode_secs,
        threads: encoder_threads(model, opts.encoders),
        waited_secs: state.waited_secs,
        cpu_secs: encode_cpu,
    });
    if cancelled {
        return Ok(BuildOutcome::Cancelled {
            done: state.done,
            total,
            checkpoint: checkpoint.clone(),
        });
    }
    report.encode_secs = started.elapsed().as_secs_f64();
    report.contexts_per_sec = done_here as f64 / report.encode_secs.max(1e-9);
    let TableSink { writer, .. } = sink;
    drop(spill);
    drop(collected);
    drop(spill_dir);

    // 4. Writing: the table is assembled from the writer's spill.
    let write_clock = StageClock::start();
    progress(&Progress {
        phase: Phase::Writing,
        done: 0,
        total: None,
        per_sec: 0.0,
        eta_secs: None,
    });
    let contexts = writer.position().contexts;
    let table = match &out {
        Some(o) => {
            writer.finish(o)?;
            Table::load(o)?
        }
        None => Table::from_vec(writer.finish_bytes()?)?,
    };
    if let Some(c) = &checkpoint {
        remove_checkpoint(c);
    }
    let (secs, cpu_secs) = write_clock.read();
    report.stages.push(StageRate {
        name: "write",
        unit: "entities",
        items: table.len() as u64,
        secs,
        threads: 1,
        cpu_secs,
        ..Default::default()
    });
    report.contexts = contexts as usize;
    report.skipped_contexts = (total - contexts) as usize;
    report.linked_contexts = (0..table.context_count())
        .filter(|&c| table.context_linked(c))
        .count();
    report.not_found = table
        .not_found()
        .into_iter()
        .map(|i| table.entity_ids[i].clone())
        .collect();
    Ok(BuildOutcome::Finished(Box::new(table), report))
}

fn file_label(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

fn fingerprint(
    model_sha: &str,
    corpus_sha: &str,
    entities_sha: &str,
    opts: &BuildOptions,
    mode: MentionMode,
    plan: BatchPlan,
) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut v = serde_json::json!({
        "model": model_sha, "corpus": corpus_sha, "entities": entities_sha, "mentions": mode.as_str(),
        "k": opts.k, "seed": opts.seed, "max_len": opts.max_len, "batch": opts.batch,
        "window": opts.window_batches, "case_sensitive": opts.case_sensitive, "shard": opts.shard,
        "norm": opts.norm, "vectors": opts.vectors,
    });
    if let BatchPlan::Tokens(t) = plan {
        v["batch_tokens"] = t.into();
    }
    if opts.context_text != ContextText::Stored {
        v["context_text"] = opts.context_text.as_str().into();
    }
    Ok(format!("{:x}", Sha256::digest(serde_json::to_vec(&v)?)))
}
