//! Inspection maths: nearest neighbours, 2-D PCA, per-context diagnostics and the paper's
//! MLM loss of an entity as a function of its norm.

pub mod norms;
pub mod preview;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};

use crate::contexts::{mask_mention, ContextRecord};
use crate::model::{log_sum_exp, softmax, top_k, Model};
use crate::table::Table;

pub mod compare;
pub mod layout;
pub mod maps;
mod scan;
pub use scan::{RowDots, RowScanner, ScanKernel};

/// Predictions at one mask: (display token, probability), most probable first.
pub type Predictions = Vec<(String, f32)>;

/// Refuses `model` unless it is the one `table` was built with (same weights, same width).
pub fn check_fits(table: &Table, model: &Model) -> Result<()> {
    table.check_model(&model.name(), &model.weights_sha256()?, model.hidden_size())
}

/// The `k` most probable tokens of one logit row, as display strings.
pub fn predictions(model: &Model, logits: &[f32], k: usize) -> Predictions {
    let p = softmax(logits);
    top_k(&p, k)
        .into_iter()
        .map(|i| (model.tokenizer.display_token(i as u32), p[i]))
        .collect()
}

/// Fill-mask: the `k` most probable tokens at each mask token of `text`, in text order.
pub fn fill_mask(model: &Model, text: &str, k: usize) -> Result<Vec<Predictions>> {
    let enc = model.tokenizer.encode(text)?;
    let masks = model.tokenizer.mask_positions(&enc);
    if masks.is_empty() {
        bail!(
            "the text has no mask token: write {} where a word should be predicted",
            model.tokenizer.mask_token()
        );
    }
    let pos: Vec<(usize, usize)> = masks.iter().map(|&p| (0, p)).collect();
    let res = model.encoder.forward(&[enc.ids], &[], &pos, true)?;
    (0..masks.len())
        .map(|i| {
            let logits = res.logits_row(i).context("the encoder returned no logits")?;
            if logits.iter().any(|x| !x.is_finite()) {
                bail!(
                    "the model's output at mask {} is not a finite number (NaN or infinity); its weights ({}) may hold NaN or infinite values",
                    i + 1,
                    crate::escape::path(model.weights_path())
                );
            }
            Ok(predictions(model, logits, k))
        })
        .collect()
}

/// The `k` vocabulary tokens nearest to entity `entity`'s direction in `index` (centred if the
/// index is) scaled to `norm`, by dot product with the input embeddings; checks that `model`
/// is the table's.
pub fn vocab_neighbours_of(
    model: &Model,
    table: &Table,
    index: &NeighbourIndex,
    entity: usize,
    k: usize,
    norm: f32,
) -> Result<Vec<(String, f32)>> {
    vocab_neighbours_of_direction(model, table, &index.direction(entity), k, norm)
}

/// Tables with more vector values than this answer neighbour queries by scanning their
/// vectors in place ([`nearest_streamed`]) instead of from a copy in a [`NeighbourIndex`]
/// (256 MB of f32).
pub const INDEX_MAX_VALUES: usize = 64 << 20;

/// The unit direction of entity `i` (zeros if never found), with the mean direction of the
/// found entities removed when `center` (as [`NeighbourIndex::direction`] gives it).
pub fn direction_of(table: &Table, i: usize, center: bool) -> Vec<f32> {
    let mean = center.then(|| mean_direction(table, 0));
    direction_with_mean(table, i, mean.as_deref())
}

/// [`direction_of`] with the mean direction given (from [`mean_direction`]; `None`: not
/// centred).
pub fn direction_with_mean(table: &Table, i: usize, mean: Option<&[f32]>) -> Vec<f32> {
    let h = table.hidden();
    if table.counts.get(i).is_none_or(|&c| c == 0) {
        return vec![0.0; h];
    }
    let mut d = table.embedding_at(i, 1.0);
    if let Some(mean) = mean {
        for (x, m) in d.iter_mut().zip(mean) {
            *x -= m;
        }
        d = crate::table::scale_to_norm(&d, 1.0);
    }
    d
}

/// [`vocab_neighbours_of`] for a given direction.
pub fn vocab_neighbours_of_direction(
    model: &Model,
    table: &Table,
    direction: &[f32],
    k: usize,
    norm: f32,
) -> Result<Vec<(String, f32)>> {
    check_fits(table, model)?;
    let emb = model.encoder.word_embeddings()?;
    if let Some(i) = emb.iter().position(|x| !x.is_finite()) {
        bail!(
            "{}: the word embedding of token {} holds {}; the weights must be finite numbers",
            crate::escape::path(model.weights_path()),
            i / table.hidden().max(1),
            emb[i]
        );
    }
    let query = crate::table::scale_to_norm(direction, norm);
    Ok(vocab_neighbours(&emb, table.hidden(), &query, k)
        .into_iter()
        .map(|(t, s)| (model.tokenizer.display_token(t), s))
        .collect())
}

/// The found entities' directions as one `[F, H]` matrix of unit rows (with the mean direction
/// of the found entities removed first when `center`), built once per table, so that each
/// neighbour query is a single matrix-vector product. Entities never found have no row.
pub struct NeighbourIndex {
    h: usize,
    center: bool,
    dirs: Tensor,
    /// The entity of each row of `dirs`, and the row of each entity (if found).
    entities: Vec<usize>,
    row_of: Vec<Option<usize>>,
}

impl NeighbourIndex {
    pub fn new(table: &Table, center: bool) -> Result<NeighbourIndex> {
        let h = table.hidden();
        let entities: Vec<usize> = (0..table.len())
            .filter(|&i| table.counts[i] > 0 && norm(&table.vector(i)) > 0.0)
            .collect();
        let mut row_of = vec![None; table.len()];
        let mut dirs = vec![0f32; entities.len() * h];
        for (r, (row, &i)) in dirs.chunks_exact_mut(h).zip(&entities).enumerate() {
            row_of[i] = Some(r);
            let s = table.vector(i);
            let len = norm(&s);
            for (d, &x) in row.iter_mut().zip(s.iter()) {
                *d = (x as f64 / len) as f32;
            }
        }
        if center {
            let mut mean = vec![0f64; h];
            let nf = entities.len().max(1) as f64;
            for row in dirs.chunks_exact(h) {
                for (m, &d) in mean.iter_mut().zip(row) {
                    *m += d as f64 / nf;
                }
            }
            for row in dirs.chunks_exact_mut(h) {
                for (d, m) in row.iter_mut().zip(&mean) {
                    *d = (*d as f64 - m) as f32;
                }
                let len = norm(row);
                if len > 0.0 {
                    for d in row.iter_mut() {
                        *d = (*d as f64 / len) as f32;
                    }
                }
            }
        }
        Ok(NeighbourIndex {
            h,
            center,
            dirs: Tensor::from_vec(dirs, (entities.len(), h), &Device::Cpu)?,
            entities,
            row_of,
        })
    }

    /// Dot products of every row with `q` (`[h, 1]`): the rows split into one block per core,
    /// each a matrix-vector product on its own thread, since one core alone does not saturate
    /// the memory bandwidth a query needs (100,000 × 768 floats are 300 MB).
    fn scores(&self, q: &Tensor) -> Result<Vec<f32>> {
        let rows = self.entities.len();
        let threads = crate::model::cores().min(8);
        let per = rows.div_ceil(threads).max(4096);
        let blocks: Vec<(usize, usize)> = (0..rows)
            .step_by(per)
            .map(|a| (a, per.min(rows - a)))
            .collect();
        let parts: Vec<Result<Vec<f32>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = blocks
                .iter()
                .map(|&(a, n)| {
                    scope.spawn(move || -> Result<Vec<f32>> {
                        Ok(self
                            .dirs
                            .narrow(0, a, n)?
                            .matmul(q)?
                            .flatten_all()?
                            .to_vec1()?)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| bail!("a neighbour thread panicked"))
                })
                .collect()
        });
        let mut out = Vec::with_capacity(rows);
        for p in parts {
            out.extend(p?);
        }
        Ok(out)
    }

    /// Whether the mean direction was removed.
    pub fn center(&self) -> bool {
        self.center
    }

    /// Entity `i`'s unit direction (zeros for an entity never found).
    pub fn direction(&self, i: usize) -> Vec<f32> {
        self.row_of
            .get(i)
            .copied()
            .flatten()
            .and_then(|r| self.dirs.get(r).and_then(|r| r.to_vec1()).ok())
            .unwrap_or_else(|| vec![0.0; self.h])
    }

    /// The `k` entities most similar to entity `i` by cosine of their directions, excluding
    /// `i` itself and entities never found; most similar first.
    pub fn entity_neighbours(&self, i: usize, k: usize) -> Result<Vec<(usize, f32)>> {
        if self.entities.is_empty() {
            return Ok(vec![]);
        }
        let q = Tensor::from_vec(self.direction(i), (self.h, 1), &Device::Cpu)?;
        let mut scores = self.scores(&q)?;
        if let Some(r) = self.row_of.get(i).copied().flatten() {
            scores[r] = f32::NEG_INFINITY;
        }
        let eligible = scores.iter().filter(|s| s.is_finite()).count();
        Ok(top_k(&scores, k.min(eligible))
            .into_iter()
            .map(|r| (self.entities[r], scores[r]))
            .collect())
    }
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

fn norm(a: &[f32]) -> f64 {
    dot(a, a).sqrt()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let d = norm(a) * norm(b);
    if d == 0.0 {
        0.0
    } else {
        (dot(a, b) / d) as f32
    }
}

/// The `k` entities most similar to entity `i` by cosine (excluding itself and entities not
/// found). Builds a [`NeighbourIndex`]; keep one for repeated queries.
pub fn entity_neighbours(
    table: &Table,
    i: usize,
    k: usize,
    center: bool,
) -> Result<Vec<(usize, f32)>> {
    NeighbourIndex::new(table, center)?.entity_neighbours(i, k)
}

/// Dot product in f32 lanes (the compiler vectorises the eight accumulators).
pub(crate) fn dot32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The mean of the found entities' unit directions (what "subtract mean" removes), read in
/// place from the table's vectors on `threads` threads (0: one per core).
pub fn mean_direction(table: &Table, threads: usize) -> Vec<f32> {
    let (n, h) = (table.len(), table.hidden());
    let threads = scan_threads(n, threads);
    let chunk = n.div_ceil(threads);
    let parts: Vec<(Vec<f64>, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut sum = vec![0f64; h];
                    let mut count = 0usize;
                    for j in t * chunk..((t + 1) * chunk).min(n) {
                        if let Some(u) = unit_row(table, j) {
                            for (a, b) in sum.iter_mut().zip(&u) {
                                *a += *b as f64;
                            }
                            count += 1;
                        }
                    }
                    (sum, count)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    let count = parts.iter().map(|p| p.1).sum::<usize>().max(1) as f64;
    (0..h)
        .map(|d| (parts.iter().map(|p| p.0[d]).sum::<f64>() / count) as f32)
        .collect()
}

fn scan_threads(n: usize, threads: usize) -> usize {
    if threads == 0 {
        crate::model::cores()
    } else {
        threads
    }
    .clamp(1, n.max(1))
}

/// Row `j`'s unit direction; `None` for an entity never found or a zero or non-finite row.
fn unit_row(table: &Table, j: usize) -> Option<Vec<f32>> {
    if table.counts[j] == 0 {
        return None;
    }
    let v = table.vector(j);
    let len = dot32(&v, &v).sqrt();
    (len > 0.0 && len.is_finite()).then(|| v.iter().map(|x| x / len).collect())
}

/// The `k` entities nearest to entity `i` by cosine of their directions, excluding `i` and
/// entities never found, most similar first; read straight from the table's vectors on
/// `threads` threads (0: one per core), with no copy of them: a table mapped from its file is
/// scanned in place. With `center`, the mean direction of the found entities is removed first
/// (one more pass; [`nearest_scan`] takes a mean computed once).
pub fn nearest_streamed(
    table: &Table,
    i: usize,
    k: usize,
    center: bool,
    threads: usize,
) -> Result<Vec<(usize, f32)>> {
    let mean = center.then(|| mean_direction(table, threads));
    nearest_scan(
        table,
        i,
        k,
        mean.as_deref(),
        threads,
        ScanKernel::best(table.meta.dtype),
    )
}

/// [`nearest_streamed`] with the mean direction given (from [`mean_direction`]; `None`: not
/// centred) and the scan loop chosen (one this CPU lacks falls back to the portable loop).
/// One pass over the stored rows, in their stored type.
pub fn nearest_scan(
    table: &Table,
    i: usize,
    k: usize,
    mean: Option<&[f32]>,
    threads: usize,
    kernel: ScanKernel,
) -> Result<Vec<(usize, f32)>> {
    let (n, h) = (table.len(), table.hidden());
    if i >= n {
        bail!("entity row {i} is beyond the table's {n} rows");
    }
    if let Some(m) = mean {
        if m.len() != h {
            bail!(
                "a mean direction of width {} for a table of width {h}",
                m.len()
            );
        }
    }
    let threads = scan_threads(n, threads);
    let chunk = n.div_ceil(threads);
    let Some(qu) = unit_row(table, i) else {
        return Ok(vec![]);
    };
    let zero = vec![0f32; h];
    let m = mean.unwrap_or(&zero);
    let q: Vec<f32> = qu.iter().zip(m).map(|(a, m)| a - m).collect();
    let qn = dot32(&q, &q).sqrt();
    if qn.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return Ok(vec![]);
    }
    let mm = dot32(m, m);
    let mq = dot32(m, &q);
    let scanner = RowScanner::with_kernel(table.meta.dtype, &q, mean, kernel);
    let best: Vec<Vec<(f32, usize)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let scanner = &scanner;
                s.spawn(move || {
                    let mut top: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
                    for j in t * chunk..((t + 1) * chunk).min(n) {
                        if j == i || table.counts[j] == 0 {
                            continue;
                        }
                        let d = scanner.dots(table.vector_bytes(j));
                        let len = d.vv.sqrt();
                        if !(len > 0.0 && len.is_finite()) {
                            continue;
                        }
                        // (v/|v| - m)·q / (|v/|v| - m| |q|), without forming v/|v| - m.
                        let num = d.vq / len - mq;
                        let dn2 = if mean.is_some() {
                            1.0 - 2.0 * d.vm / len + mm
                        } else {
                            1.0
                        };
                        let score = num / (dn2.max(0.0).sqrt() * qn);
                        if !score.is_finite() {
                            continue;
                        }
                        if top.len() < k {
                            top.push((score, j));
                        } else if let Some(w) = top
                            .iter()
                            .enumerate()
                            .min_by(|a, b| a.1 .0.total_cmp(&b.1 .0).then(b.1 .1.cmp(&a.1 .1)))
                            .map(|(w, _)| w)
                        {
                            if score > top[w].0 {
                                top[w] = (score, j);
                            }
                        }
                    }
                    top
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    let mut all: Vec<(f32, usize)> = best.into_iter().flatten().collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    all.truncate(k);
    Ok(all.into_iter().map(|(s, j)| (j, s)).collect())
}

/// The `k` vocabulary tokens with the largest dot product between `vector` and their input
/// embedding (`word_emb` is `[vocab, h]`): what the MLM "reads" the vector as.
pub fn vocab_neighbours(word_emb: &[f32], h: usize, vector: &[f32], k: usize) -> Vec<(u32, f32)> {
    let scores: Vec<f32> = word_emb
        .chunks_exact(h)
        .map(|row| dot(row, vector) as f32)
        .collect();
    top_k(&scores, k)
        .into_iter()
        .map(|i| (i as u32, scores[i]))
        .collect()
}

/// Rows the principal components of [`pca_2d`] are fitted on, at most.
pub const PCA_FIT: usize = 20_000;

/// Projects the unit-length entity vectors (found entities only) on their first two principal
/// components (fitted on an even sample of [`PCA_FIT`] rows when there are more). Returns `(entity row, [x, y])`. The covariance and the projection are matrix
/// products, so a table of 100,000 entities takes seconds, not minutes.
pub fn pca_2d(table: &Table) -> Result<Vec<(usize, [f64; 2])>> {
    let rows: Vec<usize> = (0..table.len()).filter(|&i| table.counts[i] > 0).collect();
    if rows.is_empty() {
        return Ok(vec![]);
    }
    let h = table.hidden();
    // Read in passes over the table's vectors, never copied whole: a table of millions of
    // rows is mapped from its file. The mean, then XᵀX of at most PCA_FIT rows (an even
    // sample of larger tables), on which the power iteration runs, then each row's projection.
    let unit = |i: usize| table.embedding_at(i, 1.0);
    let mut mean = vec![0f64; h];
    for &i in &rows {
        for (m, &v) in mean.iter_mut().zip(&unit(i)) {
            *m += v as f64 / rows.len() as f64;
        }
    }
    let centred = |i: usize| -> Vec<f32> {
        unit(i)
            .iter()
            .zip(&mean)
            .map(|(&v, m)| (v as f64 - m) as f32)
            .collect()
    };
    let step = rows.len().div_ceil(PCA_FIT);
    let picked: Vec<usize> = rows.iter().copied().step_by(step.max(1)).collect();
    let sample: Vec<f32> = picked.iter().flat_map(|&i| centred(i)).collect();
    let fit = Tensor::from_vec(sample, (picked.len(), h), &Device::Cpu)?;
    let cov: Vec<f64> = fit
        .t()?
        .contiguous()?
        .matmul(&fit)?
        .flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(f64::from)
        .collect();
    let mut comps: Vec<Vec<f64>> = Vec::new();
    for c in 0..2 {
        // Power iteration, deflated against earlier components.
        let mut v: Vec<f64> = (0..h)
            .map(|j| ((j * 7919 + c * 104_729) % 1000) as f64 / 1000.0 - 0.5)
            .collect();
        for _ in 0..200 {
            let mut nv: Vec<f64> = cov
                .chunks_exact(h)
                .map(|row| row.iter().zip(&v).map(|(a, b)| a * b).sum())
                .collect();
            for p in &comps {
                let d: f64 = nv.iter().zip(p).map(|(a, b)| a * b).sum();
                for (n, q) in nv.iter_mut().zip(p) {
                    *n -= d * q;
                }
            }
            let len = nv.iter().map(|a| a * a).sum::<f64>().sqrt();
            if len < 1e-12 {
                break;
            }
            v = nv.into_iter().map(|a| a / len).collect();
        }
        comps.push(v);
    }
    let proj: Vec<f32> = rows
        .iter()
        .flat_map(|&i| {
            let x = centred(i);
            let d = |c: &[f64]| x.iter().zip(c).map(|(&a, b)| a as f64 * b).sum::<f64>() as f32;
            [d(&comps[0]), d(&comps[1])]
        })
        .collect();
    Ok(rows
        .iter()
        .zip(proj.chunks_exact(2))
        .map(|(&i, p)| (i, [p[0] as f64, p[1] as f64]))
        .collect())
}

/// What the model makes of one supporting context.
#[derive(Debug, Clone)]
pub struct ContextInsight {
    /// Index of the context in the table's context list.
    pub context: usize,
    /// Top predictions at the mask: (token id, probability).
    pub predictions: Vec<(u32, f32)>,
    /// The transform output at the mask (this context's contribution to the sum).
    pub output: Vec<f32>,
    /// log Σ exp(vocabulary logits) at the mask.
    pub log_partition: f64,
    /// Cosine between this context's output and the entity vector.
    pub cosine: f32,
    /// Where the sentence came from: the corpus (read back and checked against the table's
    /// checksum) or the table's stored text.
    pub source: crate::table::TextSource,
}

/// Runs the model over the given contexts of `table` (indices for [`Table::context`]); the
/// sentences come from the table's corpus where one is attached ([`Table::attach_corpus`]) and
/// the sentence is there unchanged, else from its stored text.
pub fn inspect_contexts(
    model: &Model,
    table: &Table,
    which: &[usize],
    k: usize,
    batch: usize,
) -> Result<Vec<ContextInsight>> {
    let mut out = Vec::with_capacity(which.len());
    for chunk in which.chunks(batch.max(1)) {
        let mut seqs = Vec::new();
        let mut pos = Vec::new();
        let mut kept = Vec::new();
        for &ci in chunk {
            let c: ContextRecord = table.context(ci)?;
            if let Some(m) = mask_mention(
                &model.tokenizer,
                &c.text,
                c.start as usize,
                c.end as usize,
                table.meta.max_len,
            )? {
                pos.push((seqs.len(), m.mask_position));
                seqs.push(m.ids);
                kept.push((ci, c.entity as usize, c.source));
            }
        }
        let res = model.encoder.forward(&seqs, &[], &pos, true)?;
        for (row, &(ci, e, source)) in kept.iter().enumerate() {
            let logits = res
                .logits_row(row)
                .context("the encoder returned no logits")?;
            let lse = log_sum_exp(logits);
            let predictions = top_k(logits, k)
                .into_iter()
                .map(|t| (t as u32, (logits[t] as f64 - lse).exp() as f32))
                .collect();
            let output = res.transform_row(row).to_vec();
            out.push(ContextInsight {
                context: ci,
                predictions,
                cosine: cosine(&output, &table.vector(e)),
                output,
                log_partition: lse,
                source,
            });
        }
    }
    Ok(out)
}

/// The paper's MLM loss of the entity treated as an extra vocabulary item: mean over contexts of
/// `-log softmax([vocab logits, e·o_j])[entity]` with `e` = the entity direction scaled to each norm.
pub fn loss_vs_norm(direction: &[f32], insights: &[ContextInsight], norms: &[f32]) -> Vec<f64> {
    let unit = crate::table::scale_to_norm(direction, 1.0);
    let dots: Vec<f64> = insights.iter().map(|c| dot(&unit, &c.output)).collect();
    norms
        .iter()
        .map(|&s| {
            if insights.is_empty() {
                return f64::NAN;
            }
            let total: f64 = insights
                .iter()
                .zip(&dots)
                .map(|(c, &d)| {
                    let z = s as f64 * d;
                    let m = c.log_partition.max(z);
                    m + ((c.log_partition - m).exp() + (z - m).exp()).ln() - z
                })
                .sum();
            total / insights.len() as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::TableParts;

    /// Entity 3 is never found; the others point in pseudo-random directions.
    fn table() -> Table {
        let (n, h) = (7, 21);
        let mut x = 12345u64;
        let sums: Vec<f32> = (0..n * h)
            .map(|i| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if i / h == 3 {
                    0.0
                } else {
                    ((x >> 33) % 1000) as f32 / 100.0 - 4.0
                }
            })
            .collect();
        table_of(sums, h)
    }

    fn table_of(sums: Vec<f32>, h: usize) -> Table {
        let n = sums.len() / h;
        let counts: Vec<i64> = (0..n as i64)
            .map(|i| if i == 3 { 0 } else { 1 + i })
            .collect();
        let mut parts = TableParts {
            meta: Some(crate::table::test_meta(h, n)),
            entity_ids: (0..n).map(|i| format!("Q{i}")).collect(),
            entity_names: (0..n).map(|i| format!("e{i}")).collect(),
            entity_aliases: vec![vec![]; n],
            sums,
            found: vec![8; n],
            norm: 7.0,
            contexts: vec![],
        };
        parts.add_placeholder_contexts(&counts);
        Table::from_parts(parts).unwrap()
    }

    /// The cosines the index must reproduce, computed row by row.
    fn brute_force(t: &Table, i: usize, center: bool) -> Vec<(usize, f32)> {
        let dirs: Vec<Vec<f32>> = (0..t.len()).map(|j| t.embedding_at(j, 1.0)).collect();
        let found: Vec<usize> = (0..t.len()).filter(|&j| t.counts[j] > 0).collect();
        let mut mean = vec![0f32; t.hidden()];
        if center {
            for &j in &found {
                for (m, v) in mean.iter_mut().zip(&dirs[j]) {
                    *m += v / found.len() as f32;
                }
            }
        }
        let centred =
            |j: usize| -> Vec<f32> { dirs[j].iter().zip(&mean).map(|(a, b)| a - b).collect() };
        let mut sims: Vec<(usize, f32)> = found
            .iter()
            .filter(|&&j| j != i)
            .map(|&j| (j, cosine(&centred(i), &centred(j))))
            .collect();
        sims.sort_by(|a, b| b.1.total_cmp(&a.1));
        sims
    }

    #[test]
    fn the_index_ranks_like_the_cosine_row_by_row() {
        let t = table();
        for center in [false, true] {
            let index = NeighbourIndex::new(&t, center).unwrap();
            for i in [0, 2, 6] {
                let got = index.entity_neighbours(i, 10).unwrap();
                let want = brute_force(&t, i, center);
                assert_eq!(got.len(), 5, "all found entities but {i} itself, not 3");
                let ids = |v: &[(usize, f32)]| v.iter().map(|p| p.0).collect::<Vec<_>>();
                assert_eq!(ids(&got), ids(&want), "center {center}, entity {i}");
                for (g, w) in got.iter().zip(&want) {
                    assert!((g.1 - w.1).abs() < 1e-5, "{} vs {}", g.1, w.1);
                }
            }
            assert_eq!(index.entity_neighbours(0, 2).unwrap().len(), 2);
            assert!(index.direction(3).iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn the_streamed_scan_finds_what_the_index_finds() {
        let t = table();
        for center in [false, true] {
            let index = NeighbourIndex::new(&t, center).unwrap();
            let mean = center.then(|| mean_direction(&t, 1));
            for threads in [1, 2, 3] {
                for i in [0, 2, 6] {
                    let want = index.entity_neighbours(i, 4).unwrap();
                    let ids = |v: &[(usize, f32)]| v.iter().map(|p| p.0).collect::<Vec<_>>();
                    let mut runs = vec![nearest_streamed(&t, i, 4, center, threads).unwrap()];
                    for kernel in [ScanKernel::Portable, ScanKernel::Avx2] {
                        runs.push(
                            nearest_scan(&t, i, 4, mean.as_deref(), threads, kernel).unwrap(),
                        );
                    }
                    for got in runs {
                        assert_eq!(ids(&got), ids(&want), "center {center}, entity {i}");
                        for (g, w) in got.iter().zip(&want) {
                            assert!((g.1 - w.1).abs() < 1e-4, "{} vs {}", g.1, w.1);
                        }
                    }
                }
            }
            assert!(nearest_streamed(&t, 3, 4, center, 2).unwrap().is_empty());
            for i in 0..t.len() {
                let (a, b) = (direction_of(&t, i, center), index.direction(i));
                let d = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, f32::max);
                assert!(
                    d < 1e-5,
                    "center {center}, entity {i}: directions differ by {d}"
                );
            }
        }
    }

    #[test]
    fn the_pca_separates_two_clusters_along_its_first_axis() {
        let h = 5;
        let mut sums = vec![0f32; 7 * h];
        // Rows 0–2 near +e0, rows 4–6 near -e0 (small offsets along e1).
        for i in 0..7 {
            let row = &mut sums[i * h..(i + 1) * h];
            if i != 3 {
                row[0] = if i < 3 { 1.0 } else { -1.0 };
                row[1] = 0.05 * i as f32;
            }
        }
        let t = table_of(sums, h);
        let pts = pca_2d(&t).unwrap();
        assert_eq!(pts.len(), 6, "entities never found are left out");
        let x = |e: usize| pts.iter().find(|p| p.0 == e).unwrap().1[0];
        assert!(x(0) * x(5) < 0.0, "the clusters land on opposite sides");
        assert!((x(0) - x(1)).abs() < 0.2 && (x(4) - x(6)).abs() < 0.2);
    }

    #[test]
    fn log_sum_exp_is_the_softmax_normaliser() {
        let logits = [1.0f32, 2.0, 3.0, 1000.0];
        let lse = log_sum_exp(&logits);
        assert!((lse - 1000.0).abs() < 1e-9, "no overflow: {lse}");
        let p = softmax(&[0.0, (2f32).ln()]);
        assert!((p[0] - 1.0 / 3.0).abs() < 1e-6 && (p[1] - 2.0 / 3.0).abs() < 1e-6);
    }
}
