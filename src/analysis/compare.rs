//! Two tables compared entity by entity: from any two models or corpora, over the entity ids
//! both found. For each shared entity, its `k` nearest neighbours by cosine in each table,
//! drawn from the shared entities only (so both lists have the same candidates), and their
//! overlap, Jaccard@k = |A ∩ B| / |A ∪ B|. The entities whose neighbourhoods changed most come
//! first in [`Comparison::most_changed`].

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::table::Table;

/// Nearest shared entities (indices into [`Comparison::shared`]) with their cosines.
pub type NeighbourList = Vec<(u32, f32)>;

/// One entity both tables found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SharedEntity {
    pub id: String,
    pub name: String,
    /// Its rows in table A and table B.
    pub row_a: usize,
    pub row_b: usize,
    /// Its `k` nearest shared entities in A and in B (indices into
    /// [`Comparison::shared`]), most similar first, with their cosines.
    pub neighbours_a: NeighbourList,
    pub neighbours_b: NeighbourList,
    pub jaccard: f64,
}

/// A comparison of two tables.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Comparison {
    pub k: usize,
    /// Whether each table's mean direction (over the shared entities) was removed first.
    pub center: bool,
    /// Entities with a vector in A, in B.
    pub found_a: usize,
    pub found_b: usize,
    /// The entities with a vector in both, in A's row order.
    pub shared: Vec<SharedEntity>,
    /// Entities with a vector in one table only.
    pub only_a: usize,
    pub only_b: usize,
    /// Mean Jaccard@k over the shared entities (NaN when there are none).
    pub mean_jaccard: f64,
}

impl Comparison {
    /// Indices into `shared`, the lowest Jaccard@k first (ties by id).
    pub fn most_changed(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.shared.len()).collect();
        order.sort_by(|&x, &y| {
            let (a, b) = (&self.shared[x], &self.shared[y]);
            a.jaccard
                .total_cmp(&b.jaccard)
                .then_with(|| a.id.cmp(&b.id))
        });
        order
    }
}

/// Unit directions of `rows` of `table` as an `[n, h]` matrix; with `center`, the mean of
/// those directions is removed and each renormalised.
fn directions(table: &Table, rows: &[usize], center: bool) -> Result<Tensor> {
    let h = table.hidden();
    let mut d = vec![0f32; rows.len() * h];
    for (out, &r) in d.chunks_exact_mut(h).zip(rows) {
        let v = table.vector(r);
        let len = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        for (o, x) in out.iter_mut().zip(v.iter()) {
            *o = (*x as f64 / len) as f32;
        }
    }
    if center && !rows.is_empty() {
        let mut mean = vec![0f64; h];
        for row in d.chunks_exact(h) {
            for (m, x) in mean.iter_mut().zip(row) {
                *m += *x as f64 / rows.len() as f64;
            }
        }
        for row in d.chunks_exact_mut(h) {
            for (x, m) in row.iter_mut().zip(&mean) {
                *x = (*x as f64 - m) as f32;
            }
            let len = row.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            if len > 0.0 {
                for x in row.iter_mut() {
                    *x = (*x as f64 / len) as f32;
                }
            }
        }
    }
    Ok(Tensor::from_vec(d, (rows.len(), h), &Device::Cpu)?)
}

/// Rows of the shared set scored in blocks of this many against all of them.
const BLOCK: usize = 256;

/// The `k` nearest rows of each row of `dirs` (itself excluded), most similar first, ties by
/// lower index; `step` is called after each block with the rows done.
fn knn(
    dirs: &Tensor,
    k: usize,
    cancel: &AtomicBool,
    step: &mut dyn FnMut(usize),
) -> Result<Option<Vec<NeighbourList>>> {
    let n = dirs.dim(0)?;
    let all_t = dirs.t()?.contiguous()?;
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(BLOCK) {
        if cancel.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let len = BLOCK.min(n - start);
        let scores: Vec<Vec<f32>> = dirs.narrow(0, start, len)?.matmul(&all_t)?.to_vec2()?;
        for (r, row) in scores.into_iter().enumerate() {
            // The largest cosines are the smallest of their negatives.
            let best = super::layout::smallest_k(n, k, start + r, |j| -row[j]);
            out.push(best.into_iter().map(|(j, s)| (j as u32, -s)).collect());
        }
        step(start + len);
    }
    Ok(Some(out))
}

/// Compares tables `a` and `b` (see the module's documentation). `progress(done, total)`
/// counts rows of both neighbour passes; `None` when cancelled.
pub fn compare_tables(
    a: &Table,
    b: &Table,
    k: usize,
    center: bool,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Option<Comparison>> {
    if k == 0 {
        bail!("k must be at least 1");
    }
    let found = |t: &Table, i: usize| t.counts[i] > 0 && t.sum_norm(i) > 0.0;
    let in_b: HashMap<&str, usize> = (0..b.len())
        .filter(|&j| found(b, j))
        .map(|j| (b.entity_ids[j].as_str(), j))
        .collect();
    let found_a = (0..a.len()).filter(|&i| found(a, i)).count();
    let pairs: Vec<(usize, usize)> = (0..a.len())
        .filter(|&i| found(a, i))
        .filter_map(|i| in_b.get(a.entity_ids[i].as_str()).map(|&j| (i, j)))
        .collect();
    let n = pairs.len();
    let rows_a: Vec<usize> = pairs.iter().map(|p| p.0).collect();
    let rows_b: Vec<usize> = pairs.iter().map(|p| p.1).collect();
    let kk = k.min(n.saturating_sub(1));
    let total = 2 * n;
    let Some(na) = knn(&directions(a, &rows_a, center)?, kk, cancel, &mut |d| {
        progress(d, total)
    })?
    else {
        return Ok(None);
    };
    let Some(nb) = knn(&directions(b, &rows_b, center)?, kk, cancel, &mut |d| {
        progress(n + d, total)
    })?
    else {
        return Ok(None);
    };
    let shared: Vec<SharedEntity> = pairs
        .iter()
        .zip(na.into_iter().zip(nb))
        .map(|(&(i, j), (la, lb))| {
            let sa: std::collections::HashSet<u32> = la.iter().map(|p| p.0).collect();
            let inter = lb.iter().filter(|p| sa.contains(&p.0)).count();
            let union = la.len() + lb.len() - inter;
            SharedEntity {
                id: a.entity_ids[i].clone(),
                name: a.entity_names[i].clone(),
                row_a: i,
                row_b: j,
                jaccard: if union == 0 {
                    1.0
                } else {
                    inter as f64 / union as f64
                },
                neighbours_a: la,
                neighbours_b: lb,
            }
        })
        .collect();
    let mean_jaccard = shared.iter().map(|s| s.jaccard).sum::<f64>() / n as f64;
    Ok(Some(Comparison {
        k: kk,
        center,
        found_a,
        found_b: in_b.len(),
        only_a: found_a - n,
        only_b: in_b.len() - n,
        shared,
        mean_jaccard,
    }))
}
