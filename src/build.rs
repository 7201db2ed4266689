//! Table construction: corpus + entity list + model → PELT table.
//!
//! 1. *Scanning*: stream the corpus, find every mention, keep per entity the K mentions with
//!    the smallest seeded random keys (a uniform sample that does not depend on sharding).
//! 2. *Collecting*: the sentences of the sampled mentions. A build of all shards keeps them
//!    during the scan, with the mentions the sampler holds (at most K per entity, so no more
//!    than the contexts themselves), and reads the corpus once; a shard streams the corpus
//!    again and keeps only the sentences of its share (whole windows of the single build:
//!    window number mod n = i).
//! 3. *Encoding*: mask each mention, batch by length (windows of contexts sorted by length,
//!    so padding stays small), run the encoder and sum the transform outputs per entity.
//!    Checkpoints are written every `checkpoint_secs` and on cancellation; `resume` continues
//!    from one to the same result.
//!
//! The host side runs on [`BuildOptions::threads`] threads: scanning and collecting parse the
//! corpus and find mentions in parallel and merge in corpus order (so the table's bytes do not
//! depend on the thread count), and tokenization runs on its own threads, windows ahead of the
//! encoder. The packed CPU path takes [`BuildOptions::batch`] contexts per batch; a padded
//! path (GPUs) takes as many as fit in [`BuildOptions::batch_tokens`] token rows.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::contexts::{
    mask_mention, ContextRecord, MaskedInput, MentionMode, MentionSource, Sampler,
};
use crate::corpus::{Corpus, ReadReport};
use crate::entities::EntityList;
use crate::exact_sum::ExactSum;
use crate::io::{write_atomic, write_safetensors};
use crate::model::Model;
use crate::progress::{Meter, Phase, Progress};
use crate::table::{Table, TableMeta};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct BuildOptions {
    /// Which spans are mentions: entity links, name matches, or both (`Auto`: links when the
    /// corpus carries them).
    pub mentions: MentionMode,
    pub k: usize,
    pub norm: f32,
    pub max_len: usize,
    pub seed: u64,
    /// Contexts per batch where batches run packed (the CPU), and where `batch_tokens` is 0.
    pub batch: usize,
    /// Token rows per batch, padding included, where batches are padded (GPUs, and the
    /// generic path): contexts sorted by length are added while `rows × longest ≤
    /// batch_tokens`. 0 batches by `batch` contexts there too.
    pub batch_tokens: usize,
    /// Threads for reading, mention finding and tokenization; 0 = one per core.
    pub threads: usize,
    /// Encoding threads on the fused CPU path: n ≥ 2 threads each encode whole batches with
    /// their kernels on their own thread; 1 encodes one batch at a time with each product split
    /// over the cores; 0 = one per core. Padded paths (GPUs) always encode one batch at a time.
    /// The table is the same for any number.
    pub encoders: usize,
    pub case_sensitive: bool,
    /// `(i, n)`: encode only shard i of n.
    pub shard: Option<(usize, usize)>,
    /// Contexts sorted by length together (a multiple of `batch`).
    pub window_batches: usize,
    pub checkpoint_secs: f64,
}

/// The most encoding threads a build takes ([`BuildOptions::encoders`]).
pub const MAX_ENCODERS: usize = 256;

/// Token rows per batch on padded paths (GPUs) unless set otherwise.
pub const DEFAULT_BATCH_TOKENS: usize = 16384;

/// How a build cuts the length-sorted contexts of a window into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchPlan {
    /// This many contexts per batch.
    Contexts(usize),
    /// As many contexts as fit in this many token rows, padding included (at least one).
    Tokens(usize),
}

impl std::fmt::Display for BatchPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchPlan::Contexts(n) => write!(f, "{n} contexts"),
            BatchPlan::Tokens(t) => write!(f, "{t} tokens"),
        }
    }
}

impl BatchPlan {
    /// Cuts contexts sorted by length (shortest first) into batches.
    fn cut<T>(self, sorted: Vec<T>, len: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
        let mut batches: Vec<Vec<T>> = Vec::new();
        let mut cur: Vec<T> = Vec::new();
        for item in sorted {
            let full = match self {
                BatchPlan::Contexts(n) => cur.len() >= n.max(1),
                // Sorted, so `item` is the longest: the batch would pad every row to it.
                BatchPlan::Tokens(t) => !cur.is_empty() && (cur.len() + 1) * len(&item) > t,
            };
            if full {
                batches.push(std::mem::take(&mut cur));
            }
            cur.push(item);
        }
        if !cur.is_empty() {
            batches.push(cur);
        }
        batches
    }
}

/// Seconds and throughput of one stage of a build.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageRate {
    /// `entities`, `scan`, `collect`, `tokenize` or `encode`.
    pub name: &'static str,
    /// `sentences` or `contexts`.
    pub unit: &'static str,
    pub items: u64,
    /// Wall-clock seconds; for `tokenize`, which overlaps encoding, the busy time of its
    /// threads added up.
    pub secs: f64,
    /// Threads of the stage; for `encode`, batches encoded at a time.
    pub threads: usize,
    /// `encode` only: seconds of `secs` the encoder waited for tokenized contexts.
    pub waited_secs: f64,
    /// CPU seconds the whole process used during the stage (all threads, user and system),
    /// where the system tells (Linux); not for `tokenize`, which runs during `encode`.
    pub cpu_secs: Option<f64>,
}

/// CPU seconds (user + system, all threads) this process has used so far: Linux's
/// `/proc/self/stat`, in clock ticks of 1/100 s; `None` elsewhere.
pub fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: fields from the
    // state (field 3) on follow the last `)`; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Wall-clock and process CPU time since a stage began.
struct StageClock {
    wall: Instant,
    cpu: Option<f64>,
}

impl StageClock {
    fn start() -> Self {
        StageClock {
            wall: Instant::now(),
            cpu: process_cpu_secs(),
        }
    }
    /// Wall seconds and CPU seconds so far.
    fn read(&self) -> (f64, Option<f64>) {
        let cpu = match (self.cpu, process_cpu_secs()) {
            (Some(a), Some(b)) => Some((b - a).max(0.0)),
            _ => None,
        };
        (self.wall.elapsed().as_secs_f64(), cpu)
    }
}

impl StageRate {
    /// Items per second (per thread for `tokenize`).
    pub fn per_sec(&self) -> f64 {
        self.items as f64 / self.secs.max(1e-9)
    }

    /// CPU use during the stage, in cores kept busy on average (2.0: two cores all along).
    pub fn cores_busy(&self) -> Option<f64> {
        self.cpu_secs.map(|c| c / self.secs.max(1e-9))
    }

    /// `; CPU 1.96 cores` where the CPU time is known and the stage took long enough for the
    /// system's 1/100 s clock ticks to tell.
    fn cpu_note(&self) -> String {
        match self.cores_busy() {
            Some(c) if self.secs >= 0.5 => format!("; CPU {c:.2} cores"),
            _ => String::new(),
        }
    }

    /// One line, e.g. `scan: 930000 sentences in 4.10 s (226829 sentences/s, 2 threads; CPU
    /// 1.97 cores)`.
    pub fn describe(&self) -> String {
        let (n, unit) = (self.items, self.unit);
        let threads = format!(
            "{} thread{}",
            self.threads,
            if self.threads == 1 { "" } else { "s" }
        );
        match self.name {
            "tokenize" => format!(
                "{}: {n} {unit}, {:.2} s busy on {threads} ({:.0} {unit}/s per thread; overlaps encoding)",
                self.name,
                self.secs,
                self.per_sec()
            ),
            // A one-pass build: the contexts were kept during the scan.
            "collect" if unit == "contexts" => format!(
                "{}: {n} {unit} kept during the scan, no second read ({:.2} s)",
                self.name, self.secs
            ),
            "encode" => format!(
                "{}: {n} {unit} in {:.2} s ({:.1} {unit}/s, {} batch{} at a time), {:.2} s of it waiting for tokens{}",
                self.name,
                self.secs,
                self.per_sec(),
                self.threads,
                if self.threads == 1 { "" } else { "es" },
                self.waited_secs,
                self.cpu_note()
            ),
            _ => format!(
                "{}: {n} {unit} in {:.2} s ({:.0} {unit}/s, {threads}{})",
                self.name,
                self.secs,
                self.per_sec(),
                self.cpu_note()
            ),
        }
    }
}

/// The number of threads `threads` asks for (0 = one per core).
pub fn resolve_threads(threads: usize) -> usize {
    if threads > 0 {
        threads
    } else {
        crate::model::cores()
    }
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            mentions: MentionMode::Auto,
            k: 256,
            norm: 7.0,
            max_len: 64,
            seed: 42,
            batch: 32,
            batch_tokens: DEFAULT_BATCH_TOKENS,
            threads: 0,
            encoders: 0,
            case_sensitive: false,
            shard: None,
            window_batches: 16,
            checkpoint_secs: 30.0,
        }
    }
}

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

impl BuildOptions {
    /// The batches of a build whose encoder packs its rows (`packs_tokens`, the fused CPU
    /// path) or pads them (GPUs, the generic path).
    pub fn batch_plan(&self, packs_tokens: bool) -> BatchPlan {
        if self.batch_tokens > 0 && !packs_tokens {
            BatchPlan::Tokens(self.batch_tokens)
        } else {
            BatchPlan::Contexts(self.batch)
        }
    }

    /// Contexts per encoding window (sorted by length together; shards take whole windows):
    /// `window_batches` batches of `batch` contexts, or of `batch_tokens / max_len` contexts
    /// when batching by tokens.
    pub fn window_size(&self, plan: BatchPlan) -> usize {
        let per_batch = match plan {
            BatchPlan::Contexts(n) => n,
            BatchPlan::Tokens(t) => (t / self.max_len.max(1)).max(1),
        };
        per_batch.saturating_mul(self.window_batches.max(1))
    }

    /// Refuses options no build can use: k or batch of 0, a norm that is not a
    /// positive finite number, a shard outside `0 ≤ i < n`.
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 {
            bail!("k (contexts per entity) must be at least 1");
        }
        if self.batch == 0 {
            bail!("batch size must be at least 1");
        }
        if self.batch.checked_mul(self.window_batches.max(1)).is_none()
            || self
                .batch_tokens
                .checked_mul(self.window_batches.max(1))
                .is_none()
        {
            bail!(
                "batch {} x window_batches {} is too large",
                self.batch,
                self.window_batches
            );
        }
        if !(self.norm.is_finite() && self.norm > 0.0) {
            bail!("norm must be a positive finite number, found {}", self.norm);
        }
        if self.max_len < 3 {
            bail!("max_len must be at least 3 tokens");
        }
        if self.encoders > MAX_ENCODERS {
            bail!(
                "encoders {}: at most {MAX_ENCODERS} encoding threads",
                self.encoders
            );
        }
        if let Some((i, n)) = self.shard {
            if n == 0 || i >= n {
                bail!("shard {i}/{n}: expected i/n with 0 <= i < n");
            }
        }
        if self.checkpoint_secs.is_nan() || self.checkpoint_secs < 0.0 {
            bail!(
                "checkpoint interval must be a number of seconds >= 0, found {}",
                self.checkpoint_secs
            );
        }
        Ok(())
    }
}

/// Parses `i/n` (0 ≤ i < n).
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let parsed = s.split_once('/').and_then(|(a, b)| {
        Some((
            a.trim().parse::<usize>().ok()?,
            b.trim().parse::<usize>().ok()?,
        ))
    });
    match parsed {
        Some((i, n)) if n > 0 && i < n => Ok((i, n)),
        _ => bail!("--shard `{s}`: expected i/n with 0 <= i < n, e.g. 0/4"),
    }
}

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
}

pub enum BuildOutcome {
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
    /// Where checkpoints go; `None` disables checkpoints.
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
            let (list, read) = EntityList::from_links_read(corpus, min_count)?;
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

/// The sentence of a mention the sampler holds, in a one-pass build.
struct Held {
    file: u32,
    line: u32,
    sentence: u32,
    text: String,
}

struct Window {
    index: usize,
    batches: Vec<Vec<(usize, MaskedInput)>>,
    skipped: Vec<usize>,
}

pub fn build_table(input: BuildInput, progress: &mut dyn FnMut(&Progress)) -> Result<BuildOutcome> {
    let BuildInput {
        model,
        corpus,
        entities,
        options: opts,
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

    // 1. Scanning: sentences are parsed and their mentions found on `threads` threads; the
    // sampler takes them here, in corpus order. A build of all shards keeps the sentences of
    // the mentions it holds (at most k per entity, what collecting would keep), so that the
    // corpus is read once; a shard keeps only its share, so it reads the corpus again.
    let (shard_i, shard_n) = opts.shard.unwrap_or((0, 1));
    let one_pass = shard_n == 1;
    let mut sampler = Sampler::<Option<Rc<Held>>>::new(n, opts.k, opts.seed);
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
                let mut held: Option<Rc<Held>> = None;
                for m in &found.mentions {
                    sampler.offer_with(ordinal, m, || {
                        one_pass.then(|| {
                            let h = held.get_or_insert_with(|| {
                                Rc::new(Held {
                                    file: s.file as u32,
                                    line: s.line as u32,
                                    sentence: s.index as u32,
                                    text: s.text.clone(),
                                })
                            });
                            h.clone()
                        })
                    });
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
    let found = sampler.found.clone();
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
    if found.iter().all(|&f| f == 0) {
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
    let selected = sampler.finish_with();

    // 2. Collecting: the sentences of the selected mentions that belong to this shard (whole
    // windows of the single build: window number mod n = i).
    let window_size = opts.window_size(plan);
    let collect_clock = StageClock::start();
    let records = if one_pass {
        // Held since the scan. Mentions of one sentence are next to each other, so the last
        // of them takes the sentence's text and the others copy it.
        let records: Vec<ContextRecord> = selected
            .into_iter()
            .map(|(sel, held)| {
                let held = held.expect("a one-pass build holds the sentence of every mention");
                let (file, line, sentence) = (held.file, held.line, held.sentence);
                let text = Rc::try_unwrap(held).map_or_else(|h| h.text.clone(), |h| h.text);
                sel.record(file, line, sentence, text)
            })
            .collect();
        let (secs, cpu_secs) = collect_clock.read();
        report.stages.push(StageRate {
            name: "collect",
            unit: "contexts",
            items: records.len() as u64,
            secs,
            threads: 1,
            cpu_secs,
            ..Default::default()
        });
        records
    } else {
        let selected: Vec<_> = selected.into_iter().map(|(sel, _)| sel).collect();
        let mut records: Vec<ContextRecord> = Vec::new();
        let mut ptr = 0usize;
        let mut ordinal = 0u64;
        let mut meter = Meter::new(Phase::Collecting, 0);
        corpus.for_each_sentence_parallel(
            threads,
            |_| (),
            |s, ()| {
                while ptr < selected.len() && selected[ptr].ordinal == ordinal {
                    let sel = selected[ptr];
                    if (ptr / window_size) % shard_n == shard_i {
                        records.push(sel.record(
                            s.file as u32,
                            s.line as u32,
                            s.index as u32,
                            s.text.clone(),
                        ));
                    }
                    ptr += 1;
                }
                ordinal += 1;
                if meter.due() {
                    progress(&meter.progress(ordinal, Some(total_sentences)));
                }
                Ok(if ptr >= selected.len() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                })
            },
        )?;
        if ptr < selected.len() {
            bail!(
                "the corpus changed while it was being read (fewer sentences on the second pass)"
            );
        }
        let (secs, cpu_secs) = collect_clock.read();
        report.stages.push(StageRate {
            name: "collect",
            unit: "sentences",
            items: ordinal,
            secs,
            threads,
            cpu_secs,
            ..Default::default()
        });
        records
    };

    // 3. Encoding.
    let model_sha = model.weights_sha256()?;
    let corpus_sha = corpus_sha
        .join()
        .map_err(|_| anyhow::anyhow!("internal error: the thread hashing the corpus stopped"))??;
    let model_id = format!("{model_sha}/{:?}", model.encoder.dtype());
    let fingerprint = fingerprint(&model_id, &corpus_sha, entities, opts, mode, plan)?;
    let total = records.len() as u64;
    let mut state = EncodeState {
        fingerprint: fingerprint.clone(),
        ..EncodeState::new(n, h)
    };
    if resume {
        let path = checkpoint
            .as_ref()
            .context("resume needs a checkpoint path")?;
        if path.exists() {
            let ck = load_checkpoint(path, n, h, records.len(), opts, window_size)?;
            if ck.fingerprint != fingerprint {
                bail!(
                    "{}: this checkpoint belongs to a build with other inputs or options (model, corpus, entity list, k, seed, max_len, batch or shard differ); delete it or build without --resume",
                    path.display()
                );
            }
            state = ck;
            report.resumed_from = state.done;
        }
    }
    let started = Instant::now();
    let encode_clock = StageClock::start();
    let cancelled = encode_records(
        model,
        &records,
        opts,
        &mut state,
        checkpoint.as_deref(),
        cancel,
        progress,
    )?;
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
        if let Some(p) = &checkpoint {
            save_checkpoint(p, &state)?;
        }
        return Ok(BuildOutcome::Cancelled {
            done: state.done,
            total,
            checkpoint: checkpoint.clone(),
        });
    }
    report.encode_secs = started.elapsed().as_secs_f64();
    report.contexts_per_sec =
        (state.done - report.resumed_from) as f64 / report.encode_secs.max(1e-9);
    report.skipped_contexts = state.skipped.len();
    let skipped: std::collections::HashSet<usize> = state.skipped.iter().copied().collect();
    let contexts: Vec<ContextRecord> = records
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !skipped.contains(i))
        .map(|(_, r)| r)
        .collect();
    report.contexts = contexts.len();
    report.linked_contexts = contexts.iter().filter(|c| c.linked).count();
    let table = Table {
        meta: TableMeta {
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
        },
        entity_ids: entities.entities.iter().map(|e| e.id.clone()).collect(),
        entity_names: entities.entities.iter().map(|e| e.name.clone()).collect(),
        entity_aliases: entities
            .entities
            .iter()
            .map(|e| e.aliases.clone())
            .collect(),
        sums: state.sums.iter().map(|x| x.to_f32()).collect(),
        exact_sums: (shard_n > 1).then(|| state.sums.clone()),
        counts: state.counts,
        found,
        norm: opts.norm,
        contexts,
    };
    report.not_found = table
        .not_found()
        .into_iter()
        .map(|i| table.entity_ids[i].clone())
        .collect();
    Ok(BuildOutcome::Finished(Box::new(table), report))
}

/// Sums of transform outputs over contexts, with how far the encoding got (for checkpoints).
pub struct EncodeState {
    fingerprint: String,
    window: usize,
    batch: usize,
    /// `[N, H]`, order-independent (see [`ExactSum`]).
    pub sums: Vec<ExactSum>,
    pub counts: Vec<i64>,
    /// Records whose mention no token covered.
    pub skipped: Vec<usize>,
    pub done: u64,
    /// Statistics of this run: real tokens, token rows the encoder processed (padding
    /// included where rows are padded), matmul FLOPs of the encoder.
    pub tokens: u64,
    pub padded_tokens: u64,
    pub flops: f64,
    /// Busy seconds of the tokenizing threads (added up), and seconds the encoder waited
    /// for them.
    pub tokenize_secs: f64,
    pub waited_secs: f64,
}

impl EncodeState {
    pub fn new(n_entities: usize, hidden: usize) -> Self {
        EncodeState {
            fingerprint: String::new(),
            window: 0,
            batch: 0,
            sums: vec![ExactSum::default(); n_entities * hidden],
            counts: vec![0; n_entities],
            skipped: vec![],
            done: 0,
            tokens: 0,
            padded_tokens: 0,
            flops: 0.0,
            tokenize_secs: 0.0,
            waited_secs: 0.0,
        }
    }
}

/// Masks, batches and encodes `records` (in windows of [`BuildOptions::window_size`] contexts
/// sorted by length, cut into batches by [`BuildOptions::batch_plan`]), adding each transform
/// output to its entity's sum in `state`. Windows are tokenized on [`BuildOptions::threads`]
/// threads, ahead of the encoder; batches are encoded on [`encoder_threads`] threads at a time
/// and their outputs added in the build's order. Returns `true` when stopped by `cancel`;
/// `state` then holds a consistent point to continue from.
pub fn encode_records(
    model: &Model,
    records: &[ContextRecord],
    opts: &BuildOptions,
    state: &mut EncodeState,
    checkpoint: Option<&Path>,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<bool> {
    opts.validate()?;
    let h = model.hidden_size();
    let total = records.len() as u64;
    let plan = opts.batch_plan(model.encoder.packs_tokens());
    let window_size = opts.window_size(plan);
    let n_windows = records.len().div_ceil(window_size);
    let mut meter = Meter::new(Phase::Encoding, state.done);
    let mut last_ckpt = Instant::now();
    let tok = &model.tokenizer;
    let max_len = opts.max_len;
    let records_ref = records;
    let first_window = state.window;
    let threads = resolve_threads(opts.threads)
        .min(n_windows.saturating_sub(first_window))
        .max(1);
    let busy_nanos = std::sync::atomic::AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let mut cancelled = false;
    let mut waited = 0.0;
    let encoders = encoder_threads(model, opts.encoders);
    let resume_batch = state.batch;
    std::thread::scope(|scope| -> Result<()> {
        // Tokenizer t takes windows first_window + t, + t + threads, …; the encoder reads
        // the channels in turn, so windows arrive in order.
        let mut channels = Vec::with_capacity(threads);
        for t in 0..threads {
            let (tx, rx) = crossbeam_channel::bounded::<Result<Window>>(1);
            channels.push(rx);
            let (busy, stop) = (&busy_nanos, &stop);
            scope.spawn(move || {
                for w in (first_window + t..n_windows).step_by(threads) {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let began = Instant::now();
                    let win = tokenize_window(tok, records_ref, w, window_size, max_len, plan);
                    busy.fetch_add(began.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    let failed = win.is_err();
                    if tx.send(win).is_err() || failed {
                        return;
                    }
                }
            });
        }
        // With more than one, encoding threads run whole batches, each with its kernels on its
        // own thread; with one, this thread encodes and the kernels split each product.
        let (job_tx, job_rx) = crossbeam_channel::unbounded::<Job>();
        let spawned = if encoders > 1 { encoders } else { 0 };
        for _ in 0..spawned {
            let (job_rx, stop) = (job_rx.clone(), &stop);
            scope.spawn(move || {
                crate::model::on_this_thread(|| {
                    for job in job_rx {
                        // Set once every batch handed out is applied, or on an error: then the
                        // batches still queued are dropped, and nobody waits for them.
                        if stop.load(Ordering::Relaxed) {
                            continue;
                        }
                        let out = model.encoder.forward(&job.seqs, &[], &job.positions, false);
                        let _ = job.result.send(out);
                    }
                })
            });
        }
        drop(job_rx);
        // Steps are applied to `state` in the order of the build, whichever encoder finishes
        // first, so that `state` is always a point to continue from; `depth` batches at most
        // are handed out and not yet applied.
        let depth = if encoders > 1 { 2 * encoders } else { 1 };
        let mut queue = std::collections::VecDeque::<Step>::new();
        let mut in_flight = 0usize;
        let mut apply = |step: Step| -> Result<()> {
            match step {
                Step::Start(win) => {
                    if state.batch == 0 {
                        // Once only, also when a checkpoint was written before this window's first batch.
                        for &i in &win.skipped {
                            if state.skipped.last().is_none_or(|&l| i > l) {
                                state.skipped.push(i);
                                state.done += 1;
                            }
                        }
                    }
                }
                Step::Batch { win, bi, out } => {
                    let out = match out {
                        Pending::Ready(out) => out,
                        Pending::Waiting(rx) => rx.recv().map_err(|_| {
                            anyhow::anyhow!("internal error: an encoding thread stopped")
                        })?,
                    }?;
                    let batch = &win.batches[bi];
                    let lens: Vec<usize> = batch.iter().map(|(_, m)| m.ids.len()).collect();
                    state.tokens += lens.iter().sum::<usize>() as u64;
                    state.padded_tokens += model.encoder.rows_processed(&lens) as u64;
                    state.flops += model.encoder.matmul_flops(&lens, batch.len());
                    for (row, (ri, _)) in batch.iter().enumerate() {
                        let e = records_ref[*ri].entity as usize;
                        let acc = &mut state.sums[e * h..(e + 1) * h];
                        for (a, &v) in acc.iter_mut().zip(out.transform_row(row)) {
                            a.add(v).with_context(|| format!(
                            "context {ri} (line {}): the model's output cannot be used; its weights may hold NaN or infinite values",
                            records_ref[*ri].line
                        ))?;
                        }
                        state.counts[e] += 1;
                    }
                    state.done += batch.len() as u64;
                    state.batch = bi + 1;
                    if meter.due() {
                        progress(&meter.progress(state.done, Some(total)));
                    }
                    if let Some(p) = checkpoint {
                        if last_ckpt.elapsed().as_secs_f64() >= opts.checkpoint_secs {
                            save_checkpoint(p, state)?;
                            last_ckpt = Instant::now();
                        }
                    }
                }
                Step::End(win) => {
                    state.window = win.index + 1;
                    state.batch = 0;
                }
            }
            Ok(())
        };
        let mut encode = || -> Result<()> {
            for w in first_window..n_windows {
                let waiting = Instant::now();
                let win = channels[(w - first_window) % threads]
                    .recv()
                    .map_err(|_| anyhow::anyhow!("internal error: a tokenizing thread stopped"))?;
                waited += waiting.elapsed().as_secs_f64();
                let win = Rc::new(win?);
                queue.push_back(Step::Start(win.clone()));
                let first = if w == first_window { resume_batch } else { 0 };
                for bi in first..win.batches.len() {
                    if cancel.load(Ordering::Relaxed) {
                        cancelled = true;
                        return Ok(());
                    }
                    while in_flight >= depth {
                        let step = queue.pop_front().expect("a batch is in flight");
                        in_flight -= usize::from(matches!(step, Step::Batch { .. }));
                        apply(step)?;
                    }
                    let batch = &win.batches[bi];
                    let seqs: Vec<Vec<u32>> = batch.iter().map(|(_, m)| m.ids.clone()).collect();
                    let positions: Vec<(usize, usize)> = batch
                        .iter()
                        .enumerate()
                        .map(|(row, (_, m))| (row, m.mask_position))
                        .collect();
                    let out = if encoders == 1 {
                        Pending::Ready(model.encoder.forward(&seqs, &[], &positions, false))
                    } else {
                        let (result, rx) = crossbeam_channel::bounded(1);
                        job_tx
                            .send(Job {
                                seqs,
                                positions,
                                result,
                            })
                            .map_err(|_| {
                                anyhow::anyhow!("internal error: the encoding threads stopped")
                            })?;
                        Pending::Waiting(rx)
                    };
                    queue.push_back(Step::Batch {
                        win: win.clone(),
                        bi,
                        out,
                    });
                    in_flight += 1;
                }
                queue.push_back(Step::End(win));
            }
            Ok(())
        };
        // After a cancel, the batches handed out are applied too: `state` stays a prefix of
        // the build.
        let result = encode().and_then(|()| queue.drain(..).try_for_each(&mut apply));
        stop.store(true, Ordering::Relaxed);
        drop(job_tx);
        drop(channels);
        result
    })?;
    state.waited_secs += waited;
    state.tokenize_secs += busy_nanos.load(Ordering::Relaxed) as f64 * 1e-9;
    if !cancelled {
        progress(&meter.progress(state.done, Some(total)));
    }
    Ok(cancelled)
}

/// A batch for an encoding thread, and where its output goes back.
struct Job {
    seqs: Vec<Vec<u32>>,
    positions: Vec<(usize, usize)>,
    result: crossbeam_channel::Sender<Result<crate::model::EncoderOutput>>,
}

/// The output of a batch: computed, or coming back from an encoding thread.
enum Pending {
    Ready(Result<crate::model::EncoderOutput>),
    Waiting(crossbeam_channel::Receiver<Result<crate::model::EncoderOutput>>),
}

/// What [`encode_records`] applies to its state, in the order of the build.
enum Step {
    /// A window begins: its contexts without a mask token count as done.
    Start(Rc<Window>),
    /// Batch `bi` of a window: its outputs are added to the sums.
    Batch {
        win: Rc<Window>,
        bi: usize,
        out: Pending,
    },
    /// A window is done.
    End(Rc<Window>),
}

/// How many batches a build encodes at once ([`BuildOptions::encoders`]): 1 on padded paths
/// (GPUs); on the fused CPU path the number asked for, 0 meaning one per core. Whole batches
/// on every core were faster than one batch split over the cores (2-core AMD EPYC: 1.27× on
/// the bundled model, 1.07–1.11× on bert-base; the table is byte-identical).
pub fn encoder_threads(model: &Model, encoders: usize) -> usize {
    match encoders {
        _ if !model.encoder.packs_tokens() => 1,
        0 => crate::model::cores(),
        n => n,
    }
}

/// Masks the contexts of window `w` and cuts them, sorted by length, into batches.
fn tokenize_window(
    tok: &crate::model::TextTokenizer,
    records: &[ContextRecord],
    w: usize,
    window_size: usize,
    max_len: usize,
    plan: BatchPlan,
) -> Result<Window> {
    let lo = w * window_size;
    let hi = (lo + window_size).min(records.len());
    let mut items = Vec::with_capacity(hi - lo);
    let mut skipped = Vec::new();
    for (i, r) in records[lo..hi].iter().enumerate() {
        match mask_mention(tok, &r.text, r.start as usize, r.end as usize, max_len)
            .with_context(|| format!("context {} (line {})", lo + i, r.line))?
        {
            Some(m) => items.push((lo + i, m)),
            None => skipped.push(lo + i),
        }
    }
    items.sort_by_key(|(_, m)| m.ids.len());
    Ok(Window {
        index: w,
        batches: plan.cut(items, |(_, m)| m.ids.len()),
        skipped,
    })
}

fn file_label(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

fn fingerprint(
    model_sha: &str,
    corpus_sha: &str,
    entities: &EntityList,
    opts: &BuildOptions,
    mode: MentionMode,
    plan: BatchPlan,
) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut v = serde_json::json!({
        "model": model_sha, "corpus": corpus_sha, "entities": entities, "mentions": mode.as_str(),
        "k": opts.k, "seed": opts.seed, "max_len": opts.max_len, "batch": opts.batch,
        "window": opts.window_batches, "case_sensitive": opts.case_sensitive, "shard": opts.shard,
    });
    // Batches by tokens cut other windows and batches (batches of contexts keep the
    // fingerprint they always had, so older checkpoints still resume).
    if let BatchPlan::Tokens(t) = plan {
        v["batch_tokens"] = t.into();
    }
    Ok(format!("{:x}", Sha256::digest(serde_json::to_vec(&v)?)))
}

const CHECKPOINT_FORMAT: &str = "pelt-checkpoint/2";

/// sha256 over a checkpoint's metadata (but `sha256`) and tensor bytes.
fn checkpoint_digest(meta: &BTreeMap<&str, String>, counts: &[u8], sums: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut d = Sha256::new();
    for (k, v) in meta.iter().filter(|(k, _)| **k != "sha256") {
        d.update(k.as_bytes());
        d.update([0]);
        d.update(v.as_bytes());
        d.update([0]);
    }
    d.update((counts.len() as u64).to_le_bytes());
    d.update(counts);
    d.update(sums);
    format!("{:x}", d.finalize())
}

fn save_checkpoint(path: &Path, s: &EncodeState) -> Result<()> {
    let mut meta = BTreeMap::new();
    meta.insert("format", CHECKPOINT_FORMAT.to_string());
    meta.insert("fingerprint", s.fingerprint.clone());
    meta.insert("window", s.window.to_string());
    meta.insert("batch", s.batch.to_string());
    meta.insert("done", s.done.to_string());
    meta.insert("skipped", serde_json::to_string(&s.skipped)?);
    let n = s.counts.len();
    let h = s.sums.len().checked_div(n).unwrap_or(0);
    let counts: Vec<u8> = s.counts.iter().flat_map(|c| c.to_le_bytes()).collect();
    let sums: Vec<u8> = s.sums.iter().flat_map(|c| c.to_le_bytes()).collect();
    meta.insert("sha256", checkpoint_digest(&meta, &counts, &sums));
    let tensors = vec![
        ("counts", "I64", vec![n], counts),
        // Each sum is one little-endian i128, stored as two I64 values.
        ("sums", "I64", vec![n, h, 2], sums),
    ];
    write_atomic(path, &write_safetensors(&meta, &tensors)?)
}

/// Reads the checkpoint of a build of `total` records of `n` entities (hidden size `h`) with
/// `opts`, refusing one whose content does not match its checksum or whose fields are
/// inconsistent with each other or with this build.
fn load_checkpoint(
    path: &Path,
    n: usize,
    h: usize,
    total: usize,
    opts: &BuildOptions,
    window_size: usize,
) -> Result<EncodeState> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read checkpoint {}", crate::escape::path(path)))?;
    let bad = |what: &str| {
        anyhow::anyhow!(
            "{}: not a usable checkpoint ({what}); delete it or build without --resume",
            crate::escape::path(path)
        )
    };
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|_| bad("not safetensors"))?;
    let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|_| bad("header"))?;
    let meta = md.metadata().clone().unwrap_or_default();
    let field = |k: &str| {
        meta.get(k)
            .cloned()
            .ok_or_else(|| bad(&format!("missing `{k}`")))
    };
    let num = |k: &str| -> Result<u64> {
        field(k)?
            .parse()
            .map_err(|_| bad(&format!("`{k}` is not a number")))
    };
    let format = field("format")?;
    if format != CHECKPOINT_FORMAT {
        return Err(bad(&format!(
            "format `{format}`, expected `{CHECKPOINT_FORMAT}`"
        )));
    }
    let sums = st.tensor("sums").map_err(|_| bad("missing sums"))?;
    let counts = st.tensor("counts").map_err(|_| bad("missing counts"))?;
    if sums.dtype() != safetensors::Dtype::I64 || counts.dtype() != safetensors::Dtype::I64 {
        return Err(bad("tensors are not I64"));
    }
    if sums.shape() != [n, h, 2] || counts.shape() != [n] {
        return Err(bad("shapes do not match this build"));
    }
    let sorted: BTreeMap<&str, String> =
        meta.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    if field("sha256")? != checkpoint_digest(&sorted, counts.data(), sums.data()) {
        return Err(bad(
            "its content does not match its checksum: edited or damaged",
        ));
    }
    let counts: Vec<i64> = counts
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8")))
        .collect();
    let sums = ExactSum::from_le_bytes(sums.data()).ok_or_else(|| bad("sums out of range"))?;
    let skipped: Vec<usize> =
        serde_json::from_str(&field("skipped")?).map_err(|_| bad("`skipped`"))?;
    let (window, batch, done) = (num("window")?, num("batch")?, num("done")?);
    // Consistency with this build: the window/batch position, the count of contexts done.
    let ws = window_size.max(1) as u64;
    let total = total as u64;
    let n_windows = total.div_ceil(ws);
    if let Some(c) = counts.iter().find(|&&c| c < 0 || c as u64 > opts.k as u64) {
        return Err(bad(&format!("a count of {c} is outside 0..={}", opts.k)));
    }
    if skipped.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad("`skipped` is not strictly increasing"));
    }
    let window_end = window.saturating_add(1).saturating_mul(ws).min(total);
    if let Some(&i) = skipped.iter().find(|&&i| i as u64 >= window_end) {
        return Err(bad(&format!(
            "skipped context {i} is beyond the window reached ({window})"
        )));
    }
    if window > n_windows || (window == n_windows && batch != 0) {
        return Err(bad(&format!(
            "window {window}, batch {batch} is beyond the {n_windows} windows of this build"
        )));
    }
    // A window has at most `window_batches` batches (every batch but its last holds at least
    // a window's share of contexts).
    if batch > opts.window_batches.max(1) as u64 {
        return Err(bad(&format!("batch {batch} is beyond a window's batches")));
    }
    let counted = counts.iter().map(|&c| c as u64).sum::<u64>() + skipped.len() as u64;
    if done != counted
        || done > total
        || done < window.saturating_mul(ws).min(total)
        || done > window_end
    {
        return Err(bad(&format!(
            "`done` = {done} does not match its counts and skipped contexts ({counted}) or its position (window {window} of {n_windows}, {total} contexts)"
        )));
    }
    Ok(EncodeState {
        fingerprint: field("fingerprint")?,
        window: window as usize,
        batch: batch as usize,
        done,
        skipped,
        tokens: 0,
        padded_tokens: 0,
        flops: 0.0,
        tokenize_secs: 0.0,
        waited_secs: 0.0,
        sums,
        counts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(n: usize, h: usize) -> EncodeState {
        let mut s = EncodeState::new(n, h);
        s.fingerprint = "f".into();
        for (i, x) in s.sums.iter_mut().enumerate() {
            x.add(i as f32 * 0.25 - 1.0).unwrap();
        }
        s.counts = vec![2, 0, 1];
        s.skipped = vec![1];
        s.done = 4;
        s.window = 1;
        s.batch = 0;
        s
    }

    fn opts() -> BuildOptions {
        BuildOptions {
            k: 2,
            batch: 2,
            window_batches: 2,
            ..Default::default()
        }
    }

    /// Rewrites a checkpoint's metadata and signs it again (as a careful forger would).
    fn resign(bytes: &[u8], edit: impl FnOnce(&mut BTreeMap<String, String>)) -> Vec<u8> {
        let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
        let (_, md) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
        let mut meta: BTreeMap<String, String> =
            md.metadata().clone().unwrap().into_iter().collect();
        edit(&mut meta);
        let counts = st.tensor("counts").unwrap();
        let sums = st.tensor("sums").unwrap();
        let mut m: BTreeMap<&str, String> =
            meta.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let digest = checkpoint_digest(&m, counts.data(), sums.data());
        m.insert("sha256", digest);
        let tensors = vec![
            (
                "counts",
                "I64",
                counts.shape().to_vec(),
                counts.data().to_vec(),
            ),
            ("sums", "I64", sums.shape().to_vec(), sums.data().to_vec()),
        ];
        write_safetensors(&m, &tensors).unwrap()
    }

    #[test]
    fn stages_tell_their_cpu_use_where_the_system_does() {
        let cpu = process_cpu_secs();
        assert_eq!(cpu.is_some(), cfg!(target_os = "linux"));
        let mut s = StageRate {
            name: "scan",
            unit: "sentences",
            items: 10,
            secs: 2.0,
            threads: 2,
            cpu_secs: Some(3.9),
            ..Default::default()
        };
        assert!(
            s.describe().ends_with("2 threads; CPU 1.95 cores)"),
            "{}",
            s.describe()
        );
        s.secs = 0.1;
        assert!(!s.describe().contains("CPU"), "{}", s.describe());
        let e = StageRate {
            name: "encode",
            unit: "contexts",
            items: 100,
            secs: 4.0,
            threads: 2,
            waited_secs: 0.5,
            cpu_secs: Some(7.8),
        };
        assert_eq!(
            e.describe(),
            "encode: 100 contexts in 4.00 s (25.0 contexts/s, 2 batches at a time), 0.50 s of it waiting for tokens; CPU 1.95 cores"
        );
    }

    #[test]
    fn batches_by_tokens_fit_the_budget_and_by_contexts_the_count() {
        let lens: Vec<usize> = (0..200).map(|i| 3 + (i * 7919) % 60).collect();
        let mut sorted = lens.clone();
        sorted.sort();
        let by_tokens = BatchPlan::Tokens(256).cut(sorted.clone(), |&l| l);
        assert_eq!(by_tokens.concat(), sorted, "every context once, in order");
        for (i, b) in by_tokens.iter().enumerate() {
            let padded = b.len() * b.iter().max().unwrap();
            assert!(padded <= 256, "batch {i}: {padded} token rows");
            if let Some(next) = by_tokens.get(i + 1) {
                // Full: one more context would not have fitted.
                assert!((b.len() + 1) * next[0] > 256, "batch {i} was cut early");
            }
        }
        // A context longer than the budget still gets a batch of its own.
        assert_eq!(
            BatchPlan::Tokens(4).cut(vec![5, 6], |&l| l),
            vec![vec![5], vec![6]]
        );
        let by_count = BatchPlan::Contexts(32).cut(sorted.clone(), |&l| l);
        assert_eq!(by_count.len(), 7);
        assert!(by_count[..6].iter().all(|b| b.len() == 32) && by_count[6].len() == 8);
        // At most `window_batches` batches fill a window, whichever the plan.
        let o = BuildOptions {
            max_len: 64,
            ..Default::default()
        };
        let window = o.window_size(BatchPlan::Tokens(256));
        assert_eq!(window, 4 * o.window_batches);
        let long: Vec<usize> = (0..window).map(|i| 8 + i % 57).collect();
        let mut long_sorted = long.clone();
        long_sorted.sort();
        assert!(BatchPlan::Tokens(256).cut(long_sorted, |&l| l).len() <= o.window_batches);
        assert_eq!(o.batch_plan(true), BatchPlan::Contexts(32));
        assert_eq!(o.batch_plan(false), BatchPlan::Tokens(DEFAULT_BATCH_TOKENS));
        let none = BuildOptions {
            batch_tokens: 0,
            ..o
        };
        assert_eq!(none.batch_plan(false), BatchPlan::Contexts(32));
    }

    #[test]
    fn checkpoints_round_trip_and_inconsistent_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.ckpt");
        let s = state(3, 4);
        save_checkpoint(&p, &s).unwrap();
        let back = load_checkpoint(&p, 3, 4, 10, &opts(), 4).unwrap();
        assert_eq!(
            (back.sums, back.counts, back.done),
            (s.sums, s.counts, s.done)
        );
        let good = std::fs::read(&p).unwrap();
        for (field, value, expect) in [
            ("done", "5", "`done` = 5"),
            ("done", "99", "`done` = 99"),
            ("window", "9", "beyond the 3 windows"),
            ("batch", "7", "beyond a window's batches"),
            ("skipped", "[1,1]", "strictly increasing"),
            ("skipped", "[1000]", "beyond the window reached"),
            ("skipped", "{}", "`skipped`"),
            ("format", "pelt-checkpoint/1", "format"),
        ] {
            std::fs::write(
                &p,
                resign(&good, |m| {
                    m.insert(field.into(), value.into());
                }),
            )
            .unwrap();
            let e = format!(
                "{:#}",
                load_checkpoint(&p, 3, 4, 10, &opts(), 4).err().unwrap()
            );
            assert!(e.contains(expect), "{field} = {value}: {e}");
        }
        // Counts above k, and a plain edit without re-signing.
        let mut over = state(3, 4);
        over.counts = vec![3, 0, 0];
        save_checkpoint(&p, &over).unwrap();
        let e = format!(
            "{:#}",
            load_checkpoint(&p, 3, 4, 10, &opts(), 4).err().unwrap()
        );
        assert!(e.contains("outside 0..=2"), "{e}");
        let mut edited = good.clone();
        let at = edited.windows(8).position(|w| w == b"\"done\":\"").unwrap();
        edited[at + 8] = b'3';
        std::fs::write(&p, &edited).unwrap();
        let e = format!(
            "{:#}",
            load_checkpoint(&p, 3, 4, 10, &opts(), 4).err().unwrap()
        );
        assert!(e.contains("checksum"), "{e}");
    }

    #[test]
    fn fuzzed_checkpoints_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.ckpt");
        save_checkpoint(&p, &state(3, 4)).unwrap();
        let good = std::fs::read(&p).unwrap();
        let mut rng = 0x5eed_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let nasty = [
            "",
            "-1",
            "NaN",
            "18446744073709551615",
            "18446744073709551616",
            "[]",
            "[0,1,2,3]",
            "[18446744073709551615]",
            "null",
            "1e3",
            "2",
            "0",
        ];
        let fields = [
            "window",
            "batch",
            "done",
            "skipped",
            "fingerprint",
            "format",
        ];
        for case in 0..400 {
            let bytes = if case % 2 == 0 {
                let f = fields[next() as usize % fields.len()];
                let v = nasty[next() as usize % nasty.len()];
                resign(&good, |m| {
                    m.insert(f.into(), v.into());
                })
            } else {
                let mut b = good.clone();
                let i = next() as usize % b.len();
                b[i] ^= 1 << (next() % 8);
                if next() % 4 == 0 {
                    b.truncate(next() as usize % b.len());
                }
                b
            };
            std::fs::write(&p, &bytes).unwrap();
            let _ = load_checkpoint(&p, 3, 4, (next() % 20) as usize, &opts(), 4);
        }
    }
}
