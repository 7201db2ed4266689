//! Inspection maths: nearest neighbours, 2-D PCA, per-context diagnostics and the paper's
//! MLM loss of an entity as a function of its norm.

use anyhow::Result;

use crate::contexts::{mask_mention, ContextRecord};
use crate::model::{top_k, Model};
use crate::table::Table;

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

/// Unit-length directions of all entities (zero rows for entities never found), optionally
/// with the mean direction of the found entities subtracted first (against hub entities).
pub fn directions(table: &Table, center: bool) -> Vec<Vec<f32>> {
    let mut dirs: Vec<Vec<f32>> = (0..table.len())
        .map(|i| table.embedding_at(i, 1.0))
        .collect();
    if center {
        let h = table.hidden();
        let found: Vec<usize> = (0..table.len()).filter(|&i| table.counts[i] > 0).collect();
        if !found.is_empty() {
            let mut mean = vec![0f64; h];
            for &i in &found {
                for (m, &v) in mean.iter_mut().zip(&dirs[i]) {
                    *m += v as f64;
                }
            }
            for &i in &found {
                for (v, m) in dirs[i].iter_mut().zip(&mean) {
                    *v -= (*m / found.len() as f64) as f32;
                }
            }
        }
    }
    dirs
}

/// Entity `i`'s direction with the mean direction of the table removed, scaled to `norm`
/// (shows what sets the entity apart rather than what all entities share).
pub fn centered_vector(table: &Table, i: usize, norm: f32) -> Vec<f32> {
    crate::table::scale_to_norm(&directions(table, true)[i], norm)
}

/// The `k` entities most similar to entity `i` by cosine (excluding itself and entities not found).
pub fn entity_neighbours(table: &Table, i: usize, k: usize, center: bool) -> Vec<(usize, f32)> {
    let dirs = directions(table, center);
    let mut sims: Vec<(usize, f32)> = (0..table.len())
        .filter(|&j| j != i && table.counts[j] > 0)
        .map(|j| (j, cosine(&dirs[i], &dirs[j])))
        .collect();
    sims.sort_by(|a, b| b.1.total_cmp(&a.1));
    sims.truncate(k);
    sims
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
/// components. Returns `(entity row, [x, y])`.
pub fn pca_2d(table: &Table) -> Vec<(usize, [f64; 2])> {
    let rows: Vec<usize> = (0..table.len()).filter(|&i| table.counts[i] > 0).collect();
    if rows.is_empty() {
        return vec![];
    }
    let h = table.hidden();
    let mut x: Vec<Vec<f64>> = rows
        .iter()
        .map(|&i| {
            table
                .embedding_at(i, 1.0)
                .iter()
                .map(|&v| v as f64)
                .collect()
        })
        .collect();
    let mut mean = vec![0f64; h];
    for r in &x {
        for (m, v) in mean.iter_mut().zip(r) {
            *m += v / rows.len() as f64;
        }
    }
    for r in x.iter_mut() {
        for (v, m) in r.iter_mut().zip(&mean) {
            *v -= m;
        }
    }
    let mut comps: Vec<Vec<f64>> = Vec::new();
    for c in 0..2 {
        // Power iteration on XᵀX, deflated against earlier components.
        let mut v: Vec<f64> = (0..h)
            .map(|j| ((j * 7919 + c * 104_729) % 1000) as f64 / 1000.0 - 0.5)
            .collect();
        for _ in 0..200 {
            let xv: Vec<f64> = x
                .iter()
                .map(|r| r.iter().zip(&v).map(|(a, b)| a * b).sum())
                .collect();
            let mut nv = vec![0f64; h];
            for (r, s) in x.iter().zip(&xv) {
                for (n, a) in nv.iter_mut().zip(r) {
                    *n += a * s;
                }
            }
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
    rows.iter()
        .zip(&x)
        .map(|(&i, r)| {
            let p = |c: &Vec<f64>| r.iter().zip(c).map(|(a, b)| a * b).sum::<f64>();
            (i, [p(&comps[0]), p(&comps[1])])
        })
        .collect()
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
            let logits = res.logits_row(row).expect("logits requested");
            let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max
                + logits
                    .iter()
                    .map(|&l| (l as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
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
