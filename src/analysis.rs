//! Inspection maths: nearest neighbours, 2-D PCA, per-context diagnostics and the paper's
//! MLM loss of an entity as a function of its norm.

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};

use crate::contexts::{mask_mention, ContextRecord};
use crate::model::{log_sum_exp, softmax, top_k, Model};
use crate::table::Table;

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

/// The `k` vocabulary tokens nearest to entity `entity`'s vector at `norm` (with the mean
/// entity direction removed when `center`), by dot product with the input embeddings; checks
/// that `model` is the table's.
pub fn vocab_neighbours_of(
    model: &Model,
    table: &Table,
    index: &NeighbourIndex,
    entity: usize,
    k: usize,
    center: bool,
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
    let query = crate::table::scale_to_norm(&index.direction(entity, center), norm);
    Ok(vocab_neighbours(&emb, table.hidden(), &query, k)
        .into_iter()
        .map(|(t, s)| (model.tokenizer.display_token(t), s))
        .collect())
}

/// The table's unit-length entity directions as one `[N, H]` matrix, built once per table, so
/// that each entity-neighbour query is a single matrix-vector product.
pub struct NeighbourIndex {
    h: usize,
    /// `[N, H]` unit rows (zero rows for entities never found).
    unit: Tensor,
    found: Vec<bool>,
    /// Mean of the found entities' unit rows.
    mean: Vec<f32>,
    /// `unit[j] · mean` per row.
    unit_dot_mean: Vec<f32>,
    mean_sq: f64,
}

impl NeighbourIndex {
    pub fn new(table: &Table) -> Result<NeighbourIndex> {
        let (n, h) = (table.len(), table.hidden());
        let found: Vec<bool> = table.counts.iter().map(|&c| c > 0).collect();
        let mut unit = vec![0f32; n * h];
        let mut mean = vec![0f64; h];
        for (i, row) in unit.chunks_exact_mut(h).enumerate() {
            let s = table.sum(i);
            let len = norm(s);
            if len > 0.0 {
                for ((u, &x), m) in row.iter_mut().zip(s).zip(mean.iter_mut()) {
                    *u = (x as f64 / len) as f32;
                    if found[i] {
                        *m += *u as f64;
                    }
                }
            }
        }
        let nf = found.iter().filter(|&&f| f).count().max(1) as f64;
        let mean: Vec<f32> = mean.iter().map(|m| (m / nf) as f32).collect();
        let mean_sq = dot(&mean, &mean);
        let unit = Tensor::from_vec(unit, (n, h), &Device::Cpu)?;
        let mut index = NeighbourIndex {
            h,
            unit,
            found,
            unit_dot_mean: vec![],
            mean_sq,
            mean,
        };
        index.unit_dot_mean = index.product(&index.mean.clone())?;
        Ok(index)
    }

    /// `unit · q` for every row: one matrix-vector product.
    fn product(&self, q: &[f32]) -> Result<Vec<f32>> {
        let q = Tensor::from_slice(q, (self.h, 1), &Device::Cpu)?;
        Ok(self.unit.matmul(&q)?.flatten_all()?.to_vec1()?)
    }

    fn row(&self, i: usize) -> Result<Vec<f32>> {
        Ok(self.unit.get(i)?.to_vec1()?)
    }

    /// Entity `i`'s unit direction, minus the mean found direction when `center` (zeros for
    /// an entity never found).
    pub fn direction(&self, i: usize, center: bool) -> Vec<f32> {
        let mut d = self.row(i).unwrap_or_else(|_| vec![0.0; self.h]);
        if center && self.found.get(i).copied().unwrap_or(false) {
            for (v, m) in d.iter_mut().zip(&self.mean) {
                *v -= m;
            }
        }
        d
    }

    /// The `k` entities most similar to entity `i` by cosine of their directions (centred when
    /// `center`), excluding `i` itself and entities never found; most similar first.
    pub fn entity_neighbours(&self, i: usize, k: usize, center: bool) -> Result<Vec<(usize, f32)>> {
        let q = self.direction(i, center);
        let q_len = norm(&q);
        let raw = self.product(&q)?;
        let m_q = if center { dot(&self.mean, &q) } else { 0.0 };
        let scores: Vec<f32> = raw
            .iter()
            .enumerate()
            .map(|(j, &s)| {
                if j == i || !self.found[j] || q_len == 0.0 {
                    return f32::NEG_INFINITY;
                }
                let (num, len) = if center {
                    let sq = 1.0 - 2.0 * self.unit_dot_mean[j] as f64 + self.mean_sq;
                    (s as f64 - m_q, sq.max(0.0).sqrt())
                } else {
                    (s as f64, 1.0)
                };
                if len == 0.0 {
                    0.0
                } else {
                    (num / (len * q_len)) as f32
                }
            })
            .collect();
        let eligible = scores.iter().filter(|s| s.is_finite()).count();
        Ok(top_k(&scores, k.min(eligible))
            .into_iter()
            .map(|j| (j, scores[j]))
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
pub fn entity_neighbours(table: &Table, i: usize, k: usize, center: bool) -> Result<Vec<(usize, f32)>> {
    NeighbourIndex::new(table)?.entity_neighbours(i, k, center)
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

/// Projects the unit-length entity vectors (found entities only) on their first two principal
/// components. Returns `(entity row, [x, y])`. The covariance and the projection are matrix
/// products, so a table of 100,000 entities takes seconds, not minutes.
pub fn pca_2d(table: &Table) -> Result<Vec<(usize, [f64; 2])>> {
    let rows: Vec<usize> = (0..table.len()).filter(|&i| table.counts[i] > 0).collect();
    if rows.is_empty() {
        return Ok(vec![]);
    }
    let h = table.hidden();
    let mut x: Vec<f32> = Vec::with_capacity(rows.len() * h);
    for &i in &rows {
        x.extend(table.embedding_at(i, 1.0));
    }
    let mut mean = vec![0f64; h];
    for r in x.chunks_exact(h) {
        for (m, &v) in mean.iter_mut().zip(r) {
            *m += v as f64 / rows.len() as f64;
        }
    }
    for r in x.chunks_exact_mut(h) {
        for (v, m) in r.iter_mut().zip(&mean) {
            *v = (*v as f64 - m) as f32;
        }
    }
    let xt = Tensor::from_vec(x, (rows.len(), h), &Device::Cpu)?;
    // XᵀX, [h, h]; the power iteration then runs on it instead of on X.
    let cov: Vec<f64> = xt
        .t()?
        .contiguous()?
        .matmul(&xt)?
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
    let basis: Vec<f32> = (0..h)
        .flat_map(|j| [comps[0][j] as f32, comps[1][j] as f32])
        .collect();
    let proj: Vec<f32> = xt
        .matmul(&Tensor::from_vec(basis, (h, 2), &Device::Cpu)?)?
        .flatten_all()?
        .to_vec1()?;
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
}

/// Runs the model over the given contexts of `table` (indices into `table.contexts`).
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
            let c: &ContextRecord = &table.contexts[ci];
            if let Some(m) = mask_mention(
                &model.tokenizer,
                &c.text,
                c.start as usize,
                c.end as usize,
                table.meta.max_len,
            )? {
                pos.push((seqs.len(), m.mask_position));
                seqs.push(m.ids);
                kept.push(ci);
            }
        }
        let res = model.encoder.forward(&seqs, &[], &pos, true)?;
        for (row, &ci) in kept.iter().enumerate() {
            let logits = res.logits_row(row).context("the encoder returned no logits")?;
            let lse = log_sum_exp(logits);
            let predictions = top_k(logits, k)
                .into_iter()
                .map(|t| (t as u32, (logits[t] as f64 - lse).exp() as f32))
                .collect();
            let output = res.transform_row(row).to_vec();
            let e = table.contexts[ci].entity as usize;
            out.push(ContextInsight {
                context: ci,
                predictions,
                cosine: cosine(&output, table.sum(e)),
                output,
                log_partition: lse,
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
