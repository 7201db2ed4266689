//! Encoding: contexts masked, cut into length-sorted batches window by window, run through the
//! encoder on one or more threads, and their transform outputs summed per entity in the
//! build's order.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::ops::Range;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::options::{resolve_threads, BatchPlan, BuildOptions};
use crate::contexts::{mask_mention, ContextRecord, MaskedInput};
use crate::exact_sum::ExactSum;
use crate::model::Model;
use crate::progress::{Meter, Phase, Progress};

/// Contexts encoded together: `records` sorted by length and cut into batches. A build's
/// windows hold whole entities (`entities`), so an entity's sum is complete at its window's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowPlan {
    pub records: Range<usize>,
    pub entities: Range<usize>,
}

/// One entity's sum in the window being encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct EntitySum {
    pub sum: Vec<ExactSum>,
    pub count: i64,
}

/// How far encoding got, and the sums of the window in progress (a checkpoint saves it).
#[derive(Debug, Default)]
pub struct EncodeState {
    pub fingerprint: String,
    /// Windows finished (they were handed to the sink), and batches done in the next one.
    pub window: usize,
    pub batch: usize,
    /// Sums of the entities of the window in progress.
    pub sums: BTreeMap<u32, EntitySum>,
    /// Records of the window in progress whose mention no token covered.
    pub skipped: Vec<usize>,
    /// Contexts done, skipped ones included, since the first window.
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

/// Where encoding hands its results.
pub trait EncodeSink {
    /// Window `index` (into the plan) is done: `records` are its contexts (in plan order),
    /// `state.sums` its entities' sums and `state.skipped` its contexts without a mask.
    fn window_done(
        &mut self,
        index: usize,
        plan: &WindowPlan,
        records: &[ContextRecord],
        state: &EncodeState,
    ) -> Result<()>;
    /// A point to continue from (called every `checkpoint_secs` and on cancel).
    fn checkpoint(&mut self, state: &EncodeState) -> Result<()>;
}

/// Loads the contexts of a range of records (their sentences from a spill, or from memory).
pub type LoadRecords<'a> = dyn Fn(Range<usize>) -> Result<Vec<ContextRecord>> + Sync + 'a;

struct Window {
    index: usize,
    records: Vec<ContextRecord>,
    batches: Vec<Vec<(usize, MaskedInput)>>,
    skipped: Vec<usize>,
}

/// Masks, batches and encodes the windows `plan` of records given by `load`, adding each
/// transform output to its entity's sum in `state` and handing each finished window to
/// `sink`. Windows are tokenized on [`BuildOptions::threads`] threads ahead of the encoder;
/// batches are encoded on [`encoder_threads`] threads at a time and their outputs added in
/// the build's order. Returns `true` when stopped by `cancel`; `state` then holds a
/// consistent point to continue from, and the sink was asked to save it.
#[allow(clippy::too_many_arguments)]
pub fn encode_windows(
    model: &Model,
    plan: &[WindowPlan],
    load: &LoadRecords,
    opts: &BuildOptions,
    state: &mut EncodeState,
    sink: &mut dyn EncodeSink,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<bool> {
    opts.validate()?;
    let total: u64 = plan.iter().map(|w| w.records.len() as u64).sum();
    let batching = opts.batch_plan(model.encoder.packs_tokens());
    let n_windows = plan.len();
    let mut meter = Meter::new(Phase::Encoding, state.done);
    let mut last_ckpt = Instant::now();
    let tok = &model.tokenizer;
    let max_len = opts.max_len;
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
    let h = model.hidden_size();
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
                    let win = load(plan[w].records.clone()).and_then(|records| {
                        tokenize_window(tok, records, &plan[w], w, max_len, batching)
                    });
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
        let mut apply = |step: Step, sink: &mut dyn EncodeSink| -> Result<()> {
            match step {
                Step::Start(win) => {
                    if state.batch == 0 && state.skipped.is_empty() {
                        // Once only, also when a checkpoint was written before this window's
                        // first batch (the window's end clears `skipped`).
                        state.skipped = win.skipped.clone();
                        state.done += win.skipped.len() as u64;
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
                    let lo = plan[win.index].records.start;
                    for (row, (ri, _)) in batch.iter().enumerate() {
                        let rec = &win.records[ri - lo];
                        let acc = state.sums.entry(rec.entity).or_insert_with(|| EntitySum {
                            sum: vec![ExactSum::default(); h],
                            count: 0,
                        });
                        for (a, &v) in acc.sum.iter_mut().zip(out.transform_row(row)) {
                            a.add(v).with_context(|| format!(
                                "context {ri} (line {}): the model's output cannot be used; its weights may hold NaN or infinite values",
                                rec.line
                            ))?;
                        }
                        acc.count += 1;
                    }
                    state.done += batch.len() as u64;
                    state.batch = bi + 1;
                    if meter.due() {
                        progress(&meter.progress(state.done, Some(total)));
                    }
                    if last_ckpt.elapsed().as_secs_f64() >= opts.checkpoint_secs {
                        sink.checkpoint(state)?;
                        last_ckpt = Instant::now();
                    }
                }
                Step::End(win) => {
                    sink.window_done(win.index, &plan[win.index], &win.records, state)?;
                    state.sums.clear();
                    state.skipped.clear();
                    state.window = win.index + 1;
                    state.batch = 0;
                }
            }
            Ok(())
        };
        let mut encode = |sink: &mut dyn EncodeSink| -> Result<()> {
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
                        apply(step, sink)?;
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
        // After a cancel, the batches handed out are applied too (a window whose last batch
        // was handed out ends too): `state` stays a prefix of the build.
        let result = encode(sink).and_then(|()| {
            for step in queue.drain(..) {
                if cancelled && matches!(step, Step::Start(_)) {
                    break;
                }
                apply(step, sink)?;
            }
            Ok(())
        });
        stop.store(true, Ordering::Relaxed);
        drop(job_tx);
        drop(channels);
        result
    })?;
    state.waited_secs += waited;
    state.tokenize_secs += busy_nanos.load(Ordering::Relaxed) as f64 * 1e-9;
    if cancelled {
        sink.checkpoint(state)?;
    } else {
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

/// What [`encode_windows`] applies to its state, in the order of the build.
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
    records: Vec<ContextRecord>,
    plan: &WindowPlan,
    w: usize,
    max_len: usize,
    batching: BatchPlan,
) -> Result<Window> {
    let lo = plan.records.start;
    let mut items = Vec::with_capacity(records.len());
    let mut skipped = Vec::new();
    for (i, r) in records.iter().enumerate() {
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
        records,
        batches: batching.cut(items, |(_, m)| m.ids.len()),
        skipped,
    })
}

/// Windows of at most `size` records over records grouped by entity (`per_entity[e]` records
/// for entity e, in entity order): a window holds whole entities, and an entity with more
/// records than `size` has a window of its own. Entities without records join a window too.
pub fn plan_windows(per_entity: &[usize], size: usize) -> Vec<WindowPlan> {
    plan_windows_of(per_entity.iter().copied(), size)
}

/// [`plan_windows`] over the records per entity as they come.
pub fn plan_windows_of(per_entity: impl Iterator<Item = usize>, size: usize) -> Vec<WindowPlan> {
    let mut out = Vec::new();
    let (mut e0, mut r0, mut r) = (0usize, 0usize, 0usize);
    let mut n = 0usize;
    for (e, c) in per_entity.enumerate() {
        n = e + 1;
        if r > r0 && r - r0 + c > size.max(1) {
            out.push(WindowPlan {
                records: r0..r,
                entities: e0..e,
            });
            (e0, r0) = (e, r);
        }
        r += c;
    }
    if e0 < n {
        out.push(WindowPlan {
            records: r0..r,
            entities: e0..n,
        });
    }
    out
}

/// Windows of `size` records over records in any order (a benchmark's contexts): an entity
/// may span windows; a sink adds its sums up.
pub fn plan_flat(records: usize, size: usize) -> Vec<WindowPlan> {
    (0..records.div_ceil(size.max(1)))
        .map(|w| {
            let r = w * size..((w + 1) * size).min(records);
            WindowPlan {
                records: r,
                entities: 0..0,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_hold_whole_entities_and_cover_every_record_once() {
        let per = [3, 0, 2, 5, 1, 0, 0, 4, 9, 1];
        let w = plan_windows(&per, 5);
        let recs: usize = per.iter().sum();
        assert_eq!(w.first().unwrap().records.start, 0);
        assert_eq!(w.last().unwrap().records.end, recs);
        assert_eq!(w.last().unwrap().entities.end, per.len());
        for pair in w.windows(2) {
            assert_eq!(pair[0].records.end, pair[1].records.start);
            assert_eq!(pair[0].entities.end, pair[1].entities.start);
        }
        for win in &w {
            let inside: usize = per[win.entities.clone()].iter().sum();
            assert_eq!(inside, win.records.len(), "{win:?}");
            assert!(win.records.len() <= 5 || win.entities.len() == 1, "{win:?}");
        }
        // The entity of 9 records has a window of its own.
        assert!(w
            .iter()
            .any(|x| x.records.len() == 9 && x.entities.len() == 1));
        assert_eq!(
            plan_windows(&[0, 0], 4),
            vec![WindowPlan {
                records: 0..0,
                entities: 0..2
            }]
        );
        assert!(plan_windows(&[], 4).is_empty());
        assert_eq!(plan_flat(10, 4).len(), 3);
        assert_eq!(plan_flat(10, 4)[2].records, 8..10);
    }
}
