//! Table construction: corpus + entity list + model → PELT table.
//!
//! 1. *Scanning*: stream the corpus, find every mention, keep per entity the K mentions with
//!    the smallest seeded random keys (a uniform sample that does not depend on sharding).
//! 2. *Collecting*: stream the corpus again and keep the sentences of the sampled mentions
//!    that belong to this shard (sentence number mod n = i).
//! 3. *Encoding*: mask each mention, batch by length (windows of contexts sorted by length,
//!    so padding stays small), run the encoder and sum the transform outputs per entity.
//!    Tokenization runs on a second thread, ahead of the model. Checkpoints are written every
//!    `checkpoint_secs` and on cancellation; `resume` continues from one to the same result.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::contexts::{mask_mention, ContextRecord, MaskedInput, MentionFinder, Sampler};
use crate::corpus::{Corpus, ReadReport};
use crate::entities::EntityList;
use crate::io::{write_atomic, write_safetensors};
use crate::model::Model;
use crate::progress::{Meter, Phase, Progress};
use crate::table::{Table, TableMeta};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BuildOptions {
    pub k: usize,
    pub norm: f32,
    pub max_len: usize,
    pub seed: u64,
    pub batch: usize,
    pub case_sensitive: bool,
    /// `(i, n)`: encode only shard i of n.
    pub shard: Option<(usize, usize)>,
    /// Contexts sorted by length together (a multiple of `batch`).
    pub window_batches: usize,
    pub checkpoint_secs: f64,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            k: 256,
            norm: 7.0,
            max_len: 64,
            seed: 42,
            batch: 32,
            case_sensitive: false,
            shard: None,
            window_batches: 16,
            checkpoint_secs: 30.0,
        }
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
    pub sentences: u64,
    pub contexts: usize,
    /// Sampled mentions whose span no token covered (not encoded).
    pub skipped_contexts: usize,
    pub not_found: Vec<String>,
    pub collisions: Vec<String>,
    pub encode_secs: f64,
    pub contexts_per_sec: f64,
    pub resumed_from: u64,
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

/// The checkpoint path used for an output table.
pub fn checkpoint_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".ckpt");
    PathBuf::from(s)
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
    if opts.batch == 0 {
        bail!("batch size must be at least 1");
    }
    if opts.max_len < 3 {
        bail!("max_len must be at least 3 tokens");
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
    let finder = MentionFinder::new(entities, opts.case_sensitive)?;
    let mut report = BuildReport {
        collisions: finder.collisions.clone(),
        ..Default::default()
    };

    // 1. Scanning.
    let mut sampler = Sampler::new(n, opts.k, opts.seed);
    let mut meter = Meter::new(Phase::Scanning, 0);
    let mut ordinal = 0u64;
    let read = corpus.for_each_sentence(|s| {
        for m in finder.find(&s.text) {
            sampler.offer(ordinal, &m);
        }
        ordinal += 1;
        if meter.due() {
            progress(&meter.progress(ordinal, None));
        }
        if cancel.load(Ordering::Relaxed) {
            return Ok(ControlFlow::Break(()));
        }
        Ok(ControlFlow::Continue(()))
    })?;
    if cancel.load(Ordering::Relaxed) {
        return Ok(BuildOutcome::Cancelled {
            done: 0,
            total: 0,
            checkpoint: None,
        });
    }
    let total_sentences = ordinal;
    report.sentences = total_sentences;
    report.read = read;
    let found = sampler.found.clone();
    if found.iter().all(|&f| f == 0) {
        bail!(
            "no entity of the list is mentioned in the corpus ({} sentences read from {})",
            total_sentences,
            corpus
                .files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let selected = sampler.finish();

    // 2. Collecting.
    let (shard_i, shard_n) = opts.shard.unwrap_or((0, 1));
    let mut records: Vec<ContextRecord> = Vec::new();
    let mut ptr = 0usize;
    let mut ordinal = 0u64;
    let mut meter = Meter::new(Phase::Collecting, 0);
    corpus.for_each_sentence(|s| {
        while ptr < selected.len() && selected[ptr].ordinal == ordinal {
            let sel = selected[ptr];
            if ordinal % shard_n as u64 == shard_i as u64 {
                records.push(ContextRecord {
                    entity: sel.entity,
                    file: s.file as u32,
                    line: s.line as u32,
                    sentence: s.index as u32,
                    start: sel.start,
                    end: sel.end,
                    text: s.text.clone(),
                });
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
    })?;
    if ptr < selected.len() {
        bail!("the corpus changed while it was being read (fewer sentences on the second pass)");
    }

    // 3. Encoding.
    let model_sha = model.weights_sha256()?;
    let corpus_sha = corpus.sha256()?;
    let model_id = format!("{model_sha}/{:?}", model.encoder.dtype());
    let fingerprint = fingerprint(&model_id, &corpus_sha, entities, opts)?;
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
            let ck = load_checkpoint(path, n, h)?;
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
    let cancelled = encode_records(
        model,
        &records,
        opts,
        &mut state,
        checkpoint.as_deref(),
        cancel,
        progress,
    )?;
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
        },
        entity_ids: entities.entities.iter().map(|e| e.id.clone()).collect(),
        entity_names: entities.entities.iter().map(|e| e.name.clone()).collect(),
        entity_aliases: entities
            .entities
            .iter()
            .map(|e| e.aliases.clone())
            .collect(),
        sums: state.sums.iter().map(|&x| x as f32).collect(),
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
    pub sums: Vec<f64>,
    pub counts: Vec<i64>,
    /// Records whose mention no token covered.
    pub skipped: Vec<usize>,
    pub done: u64,
    /// Statistics of this run: real tokens, token rows the encoder processed (padding
    /// included where rows are padded), matmul FLOPs of the encoder.
    pub tokens: u64,
    pub padded_tokens: u64,
    pub flops: f64,
}

impl EncodeState {
    pub fn new(n_entities: usize, hidden: usize) -> Self {
        EncodeState {
            fingerprint: String::new(),
            window: 0,
            batch: 0,
            sums: vec![0.0; n_entities * hidden],
            counts: vec![0; n_entities],
            skipped: vec![],
            done: 0,
            tokens: 0,
            padded_tokens: 0,
            flops: 0.0,
        }
    }
}

/// Masks, batches and encodes `records` (in windows of `batch * window_batches` contexts
/// sorted by length), adding each transform output to its entity's sum in `state`.
/// Tokenization runs on a second thread. Returns `true` when stopped by `cancel`; `state`
/// then holds a consistent point to continue from.
pub fn encode_records(
    model: &Model,
    records: &[ContextRecord],
    opts: &BuildOptions,
    state: &mut EncodeState,
    checkpoint: Option<&Path>,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<bool> {
    let h = model.hidden_size();
    let total = records.len() as u64;
    let window_size = opts.batch * opts.window_batches.max(1);
    let n_windows = records.len().div_ceil(window_size);
    let mut meter = Meter::new(Phase::Encoding, state.done);
    let mut last_ckpt = Instant::now();
    let tok = &model.tokenizer;
    let max_len = opts.max_len;
    let records_ref = records;
    let first_window = state.window;
    let mut cancelled = false;
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = crossbeam_channel::bounded::<Result<Window>>(2);
        scope.spawn(move || {
            for w in first_window..n_windows {
                let lo = w * window_size;
                let hi = (lo + window_size).min(records_ref.len());
                let mut items = Vec::with_capacity(hi - lo);
                let mut skipped = Vec::new();
                for (i, r) in records_ref[lo..hi].iter().enumerate() {
                    match mask_mention(tok, &r.text, r.start as usize, r.end as usize, max_len) {
                        Ok(Some(m)) => items.push((lo + i, m)),
                        Ok(None) => skipped.push(lo + i),
                        Err(e) => {
                            let _ = tx.send(Err(e.context(format!(
                                "context {} (line {})",
                                lo + i,
                                r.line
                            ))));
                            return;
                        }
                    }
                }
                items.sort_by_key(|(_, m)| m.ids.len());
                let mut batches = Vec::new();
                let mut it = items.into_iter().peekable();
                while it.peek().is_some() {
                    batches.push(it.by_ref().take(opts.batch).collect());
                }
                if tx
                    .send(Ok(Window {
                        index: w,
                        batches,
                        skipped,
                    }))
                    .is_err()
                {
                    return;
                }
            }
        });
        for win in rx.iter() {
            let win = win?;
            if state.batch == 0 {
                state.skipped.extend(&win.skipped);
                state.done += win.skipped.len() as u64;
            }
            for (bi, batch) in win.batches.iter().enumerate().skip(state.batch) {
                if cancel.load(Ordering::Relaxed) {
                    cancelled = true;
                    return Ok(());
                }
                let seqs: Vec<Vec<u32>> = batch.iter().map(|(_, m)| m.ids.clone()).collect();
                let positions: Vec<(usize, usize)> = batch
                    .iter()
                    .enumerate()
                    .map(|(row, (_, m))| (row, m.mask_position))
                    .collect();
                let out = model.encoder.forward(&seqs, &[], &positions, false)?;
                let lens: Vec<usize> = seqs.iter().map(Vec::len).collect();
                state.tokens += lens.iter().sum::<usize>() as u64;
                state.padded_tokens += model.encoder.rows_processed(&lens) as u64;
                state.flops += model.encoder.matmul_flops(&lens, positions.len());
                for (row, (ri, _)) in batch.iter().enumerate() {
                    let e = records_ref[*ri].entity as usize;
                    let acc = &mut state.sums[e * h..(e + 1) * h];
                    for (a, &v) in acc.iter_mut().zip(out.transform_row(row)) {
                        *a += v as f64;
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
            state.window = win.index + 1;
            state.batch = 0;
        }
        Ok(())
    })?;
    if !cancelled {
        progress(&meter.progress(state.done, Some(total)));
    }
    Ok(cancelled)
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
) -> Result<String> {
    use sha2::{Digest, Sha256};
    let v = serde_json::json!({
        "model": model_sha, "corpus": corpus_sha, "entities": entities,
        "k": opts.k, "seed": opts.seed, "max_len": opts.max_len, "batch": opts.batch,
        "window": opts.window_batches, "case_sensitive": opts.case_sensitive, "shard": opts.shard,
    });
    Ok(format!("{:x}", Sha256::digest(serde_json::to_vec(&v)?)))
}

fn save_checkpoint(path: &Path, s: &EncodeState) -> Result<()> {
    let mut meta = BTreeMap::new();
    meta.insert("format", "pelt-checkpoint/1".to_string());
    meta.insert("fingerprint", s.fingerprint.clone());
    meta.insert("window", s.window.to_string());
    meta.insert("batch", s.batch.to_string());
    meta.insert("done", s.done.to_string());
    meta.insert("skipped", serde_json::to_string(&s.skipped)?);
    let n = s.counts.len();
    let h = s.sums.len().checked_div(n).unwrap_or(0);
    let tensors = vec![
        (
            "counts",
            "I64",
            vec![n],
            s.counts.iter().flat_map(|c| c.to_le_bytes()).collect(),
        ),
        (
            "sums",
            "F64",
            vec![n, h],
            s.sums.iter().flat_map(|c| c.to_le_bytes()).collect(),
        ),
    ];
    write_atomic(path, &write_safetensors(&meta, &tensors)?)
}

fn load_checkpoint(path: &Path, n: usize, h: usize) -> Result<EncodeState> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    let bad = |what: &str| anyhow::anyhow!("{}: not a usable checkpoint ({what})", path.display());
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
    let sums = st.tensor("sums").map_err(|_| bad("missing sums"))?;
    let counts = st.tensor("counts").map_err(|_| bad("missing counts"))?;
    if sums.shape() != [n, h] || counts.shape() != [n] {
        return Err(bad("shapes do not match this build"));
    }
    Ok(EncodeState {
        fingerprint: field("fingerprint")?,
        window: num("window")? as usize,
        batch: num("batch")? as usize,
        done: num("done")?,
        skipped: serde_json::from_str(&field("skipped")?).map_err(|_| bad("`skipped`"))?,
        tokens: 0,
        padded_tokens: 0,
        flops: 0.0,
        sums: sums
            .data()
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8")))
            .collect(),
        counts: counts
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8")))
            .collect(),
    })
}
