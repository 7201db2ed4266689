//! Maps of a table: t-SNE and UMAP besides the PCA of [`super::pca_2d`], and the numbers that
//! say how much structure a map keeps (trustworthiness, k-NN label agreement).
//!
//! t-SNE runs on the entities' unit directions with the mean removed, reduced to their first
//! 50 principal components (as is usual before t-SNE), with exact nearest neighbours from
//! blocked matrix products and the optimisation of the `bhtsne` crate (Barnes–Hut up to
//! [`FFT_FROM`] points, FFT-interpolated repulsion, as in FIt-SNE, from there on). It starts from
//! the first two principal components scaled small, so a map is the same for the same table
//! and parameters.

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::table::Table;

/// A map: each found entity's row and its point.
pub type MapPoints = Vec<(usize, [f64; 2])>;

/// t-SNE's parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TsneParams {
    pub perplexity: f32,
    pub epochs: usize,
}

impl Default for TsneParams {
    fn default() -> Self {
        TsneParams {
            perplexity: 30.0,
            epochs: 1000,
        }
    }
}

/// Points from which the repulsion is FFT-interpolated rather than Barnes–Hut.
pub const FFT_FROM: usize = 20_000;
/// Principal components kept before the neighbours are searched.
pub const PCA_DIMS: usize = 50;

/// The found entities' unit directions with their mean removed, `[n, h]` row-major.
pub fn centred_directions(table: &Table, rows: &[usize]) -> Vec<f32> {
    let h = table.hidden();
    let mut d = vec![0f32; rows.len() * h];
    let mut mean = vec![0f64; h];
    for (out, &r) in d.chunks_exact_mut(h).zip(rows) {
        let v = table.vector(r);
        let len = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        for ((o, x), m) in out.iter_mut().zip(v.iter()).zip(mean.iter_mut()) {
            *o = if len > 0.0 {
                (*x as f64 / len) as f32
            } else {
                0.0
            };
            *m += *o as f64;
        }
    }
    let n = rows.len().max(1) as f64;
    for row in d.chunks_exact_mut(h) {
        for (x, m) in row.iter_mut().zip(&mean) {
            *x = (*x as f64 - m / n) as f32;
        }
    }
    d
}

/// The rows of `x` (`[n, h]`, centred) projected on their first `dims` principal components,
/// `[n, dims]`, by subspace iteration on XᵀX (deterministic start).
pub fn principal_components(x: &[f32], h: usize, dims: usize) -> Result<Vec<f32>> {
    let n = x.len() / h.max(1);
    let dims = dims.min(h).min(n.max(1));
    if n == 0 || dims == 0 {
        return Ok(vec![]);
    }
    let xt = Tensor::from_slice(x, (n, h), &Device::Cpu)?;
    let cov: Vec<f64> = xt
        .t()?
        .contiguous()?
        .matmul(&xt)?
        .flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(f64::from)
        .collect();
    // `dims` columns of length h, orthonormalised after each multiplication by the covariance.
    let mut q: Vec<Vec<f64>> = (0..dims)
        .map(|c| {
            (0..h)
                .map(|j| ((j * 7919 + c * 104_729 + 13) % 1009) as f64 / 1009.0 - 0.5)
                .collect()
        })
        .collect();
    let orthonormalise = |q: &mut Vec<Vec<f64>>| {
        for c in 0..q.len() {
            for p in 0..c {
                let d: f64 = q[c].iter().zip(&q[p]).map(|(a, b)| a * b).sum();
                let prev = q[p].clone();
                for (a, b) in q[c].iter_mut().zip(&prev) {
                    *a -= d * b;
                }
            }
            let len = q[c].iter().map(|a| a * a).sum::<f64>().sqrt();
            if len > 1e-300 {
                q[c].iter_mut().for_each(|a| *a /= len);
            }
        }
    };
    orthonormalise(&mut q);
    for _ in 0..60 {
        q = q
            .iter()
            .map(|v| {
                cov.chunks_exact(h)
                    .map(|row| row.iter().zip(v).map(|(a, b)| a * b).sum())
                    .collect()
            })
            .collect();
        orthonormalise(&mut q);
    }
    // Order by the variance each explains (subspace iteration finds the space, not the order).
    let var = |v: &Vec<f64>| -> f64 {
        let cv: Vec<f64> = cov
            .chunks_exact(h)
            .map(|row| row.iter().zip(v).map(|(a, b)| a * b).sum())
            .collect();
        cv.iter().zip(v).map(|(a, b)| a * b).sum()
    };
    let mut order: Vec<(f64, usize)> = q.iter().enumerate().map(|(i, v)| (var(v), i)).collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let comps: Vec<f32> = order
        .iter()
        .flat_map(|&(_, i)| q[i].iter().map(|&v| v as f32).collect::<Vec<_>>())
        .collect();
    let c = Tensor::from_vec(comps, (dims, h), &Device::Cpu)?;
    Ok(xt.matmul(&c.t()?.contiguous()?)?.flatten_all()?.to_vec1()?)
}

/// The `k` smallest of `score(j)` over `0..n` except `skip`, smallest first (ties by lower
/// index): one pass keeping a sorted list of the best so far, so most candidates cost one
/// comparison.
pub(crate) fn smallest_k(
    n: usize,
    k: usize,
    skip: usize,
    score: impl Fn(usize) -> f32,
) -> Vec<(usize, f32)> {
    let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
    for j in 0..n {
        if j == skip {
            continue;
        }
        let v = score(j);
        if best.len() == k && v.partial_cmp(&best[k - 1].0) != Some(std::cmp::Ordering::Less) {
            continue;
        }
        let at = best.partition_point(|b| b.0 < v || (b.0 == v && b.1 < j));
        best.insert(at, (v, j));
        best.truncate(k);
    }
    best.into_iter().map(|(v, j)| (j, v)).collect()
}

/// The `k` nearest rows of each row of `x` (`[n, d]`) by Euclidean distance, itself
/// excluded, nearest first (ties by lower index), from blocked matrix products; the selection
/// runs on all cores.
pub fn exact_knn(x: &[f32], d: usize, k: usize) -> Result<Vec<Vec<(usize, f32)>>> {
    let n = x.len() / d.max(1);
    let xt = Tensor::from_slice(x, (n, d), &Device::Cpu)?;
    let all_t = xt.t()?.contiguous()?;
    let sq: Vec<f32> = x
        .chunks_exact(d)
        .map(|r| r.iter().map(|v| v * v).sum())
        .collect();
    let mut out = Vec::with_capacity(n);
    const BLOCK: usize = 1024;
    let threads = crate::model::cores().max(1);
    for start in (0..n).step_by(BLOCK) {
        let len = BLOCK.min(n - start);
        let dots: Vec<f32> = xt
            .narrow(0, start, len)?
            .matmul(&all_t)?
            .flatten_all()?
            .to_vec1()?;
        let per = len.div_ceil(threads);
        let parts: Vec<Vec<Vec<(usize, f32)>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (dots, sq) = (&dots, &sq);
                    s.spawn(move || {
                        (t * per..((t + 1) * per).min(len))
                            .map(|r| {
                                let me = start + r;
                                let row = &dots[r * n..(r + 1) * n];
                                smallest_k(n, k, me, |j| (sq[me] + sq[j] - 2.0 * row[j]).max(0.0))
                                    .into_iter()
                                    .map(|(j, d2)| (j, d2.sqrt()))
                                    .collect()
                            })
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("no panic"))
                .collect()
        });
        out.extend(parts.into_iter().flatten());
    }
    Ok(out)
}

/// A cancelled t-SNE unwinds out of the crate's epoch loop with this (no panic message).
struct Cancelled;

/// A t-SNE map of the found entities: `(row, [x, y])`, in row order; `None` when `cancel`
/// was set. `progress(done, total)` counts epochs.
pub fn tsne_2d(
    table: &Table,
    params: TsneParams,
    cancel: &AtomicBool,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Result<Option<MapPoints>> {
    if !(params.perplexity.is_finite() && params.perplexity >= 1.0) {
        bail!("perplexity must be at least 1, found {}", params.perplexity);
    }
    if params.epochs < 2 {
        bail!("t-SNE needs at least 2 epochs");
    }
    let rows: Vec<usize> = (0..table.len())
        .filter(|&i| table.counts[i] > 0 && table.sum_norm(i) > 0.0)
        .collect();
    let n = rows.len();
    if n < 4 {
        bail!("a t-SNE map needs at least 4 entities with vectors; the table has {n}");
    }
    let h = table.hidden();
    let x = principal_components(&centred_directions(table, &rows), h, PCA_DIMS)?;
    let d = x.len() / n;
    // bhtsne wants n > 3 × perplexity neighbours.
    let perplexity = params
        .perplexity
        .min(((n - 1) as f32 / 3.0).floor())
        .max(1.0);
    let k = ((3.0 * perplexity) as usize).clamp(1, n - 1);
    let neighbours: Vec<Vec<bhtsne::Neighbor<f32>>> = exact_knn(&x, d, k)?
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|(index, distance)| bhtsne::Neighbor { index, distance })
                .collect()
        })
        .collect();
    if cancel.load(Ordering::Relaxed) {
        return Ok(None);
    }
    // Start from the first two components, scaled to a standard deviation of 1e-4.
    let sd =
        |c: usize| ((0..n).map(|i| (x[i * d + c] as f64).powi(2)).sum::<f64>() / n as f64).sqrt();
    let (s0, s1) = (sd(0).max(1e-12), sd(1.min(d - 1)).max(1e-12));
    let init: Vec<f32> = (0..n)
        .flat_map(|i| {
            [
                (x[i * d] as f64 / s0 * 1e-4) as f32,
                (x[i * d + 1.min(d - 1)] as f64 / s1 * 1e-4) as f32,
            ]
        })
        .collect();
    let points: Vec<&[f32]> = x.chunks_exact(d).collect();
    let epochs = params.epochs;
    // bhtsne sums in parallel, in an order that varies from run to run: on one thread a map
    // repeats exactly.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.install(|| {
            let mut t: bhtsne::tSNE<f32, &[f32]> = bhtsne::tSNE::new(&points);
            t.perplexity(perplexity)
                .epochs(epochs)
                .initial_embedding(init.clone())
                .epoch_callback(|e, _| {
                    if cancel.load(Ordering::Relaxed) {
                        std::panic::resume_unwind(Box::new(Cancelled));
                    }
                    progress(e + 1, epochs);
                });
            if n >= FFT_FROM {
                t.fit_sne_with_neighbors(&neighbours);
            } else {
                t.barnes_hut_with_neighbors(0.5, &neighbours);
            }
            t.embedding()
        })
    }));
    let y = match run {
        Ok(y) => y,
        Err(e) if e.is::<Cancelled>() => return Ok(None),
        Err(e) => std::panic::resume_unwind(e),
    };
    Ok(Some(
        rows.into_iter()
            .zip(y.chunks_exact(2))
            .map(|(r, p)| (r, [p[0] as f64, p[1] as f64]))
            .collect(),
    ))
}

/// UMAP's parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UmapParams {
    /// Neighbours of each point in the fuzzy graph.
    pub neighbours: usize,
    /// How tightly points may pack on the map (with a spread of 1).
    pub min_dist: f32,
    /// Optimisation epochs; 0 chooses 500 up to 10,000 points and 200 beyond.
    pub epochs: usize,
    pub seed: u64,
}

impl Default for UmapParams {
    fn default() -> Self {
        UmapParams {
            neighbours: 15,
            min_dist: 0.1,
            epochs: 0,
            seed: 42,
        }
    }
}

/// UMAP's curve 1 / (1 + a d^2b) fitted to min_dist (spread 1) by least squares over
/// d in (0, 3], as umap-learn does; a small grid search is enough for two parameters.
fn umap_ab(min_dist: f32) -> (f64, f64) {
    let md = min_dist as f64;
    let target = |d: f64| if d < md { 1.0 } else { (-(d - md)).exp() };
    let xs: Vec<f64> = (1..=300).map(|i| i as f64 * 0.01).collect();
    let err = |a: f64, b: f64| -> f64 {
        xs.iter()
            .map(|&d| (1.0 / (1.0 + a * d.powf(2.0 * b)) - target(d)).powi(2))
            .sum()
    };
    let (mut a, mut b, mut step) = (1.5f64, 0.9f64, 0.5f64);
    let mut best = err(a, b);
    while step > 1e-6 {
        let mut moved = false;
        for (da, db) in [(step, 0.0), (-step, 0.0), (0.0, step), (0.0, -step)] {
            let (na, nb) = (a + da, b + db);
            if na > 0.0 && nb > 0.0 {
                let e = err(na, nb);
                if e < best {
                    (a, b, best, moved) = (na, nb, e, true);
                }
            }
        }
        if !moved {
            step /= 2.0;
        }
    }
    (a, b)
}

/// A UMAP map of the found entities (same input as [`tsne_2d`]): the fuzzy graph of each
/// point's `neighbours` nearest, laid out by UMAP's stochastic gradient descent with
/// negative sampling, from the PCA map scaled to ±10, on one thread with a seeded generator
/// (so a map repeats exactly). `None` when `cancel` was set; `progress` counts epochs.
pub fn umap_2d(
    table: &Table,
    params: UmapParams,
    cancel: &AtomicBool,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Result<Option<MapPoints>> {
    if params.neighbours < 2 {
        bail!("UMAP needs at least 2 neighbours per point");
    }
    if !(params.min_dist.is_finite() && params.min_dist >= 0.0 && params.min_dist < 1.0) {
        bail!("min_dist must be in [0, 1), found {}", params.min_dist);
    }
    let rows: Vec<usize> = (0..table.len())
        .filter(|&i| table.counts[i] > 0 && table.sum_norm(i) > 0.0)
        .collect();
    let n = rows.len();
    if n < 4 {
        bail!("a UMAP map needs at least 4 entities with vectors; the table has {n}");
    }
    let x = principal_components(&centred_directions(table, &rows), table.hidden(), PCA_DIMS)?;
    let d = x.len() / n;
    let k = params.neighbours.min(n - 1);
    let knn = exact_knn(&x, d, k)?;
    if cancel.load(Ordering::Relaxed) {
        return Ok(None);
    }
    // Fuzzy memberships: rho is the distance to the nearest neighbour, sigma such that the
    // memberships of the k neighbours sum to log2(k).
    let target = (k as f64).log2();
    let mut w: std::collections::BTreeMap<(u32, u32), f64> = Default::default();
    for (i, row) in knn.iter().enumerate() {
        let rho = row
            .iter()
            .map(|p| p.1 as f64)
            .find(|&v| v > 0.0)
            .unwrap_or(0.0);
        let sum = |s: f64| -> f64 {
            row.iter()
                .map(|p| (-((p.1 as f64 - rho).max(0.0)) / s).exp())
                .sum()
        };
        let (mut lo, mut hi, mut sigma) = (0.0f64, f64::INFINITY, 1.0f64);
        for _ in 0..64 {
            let s = sum(sigma);
            if (s - target).abs() < 1e-5 {
                break;
            }
            if s > target {
                hi = sigma;
                sigma = (lo + hi) / 2.0;
            } else {
                lo = sigma;
                sigma = if hi.is_finite() {
                    (lo + hi) / 2.0
                } else {
                    sigma * 2.0
                };
            }
        }
        for p in row {
            let v = (-((p.1 as f64 - rho).max(0.0)) / sigma.max(1e-12)).exp();
            w.insert((i as u32, p.0 as u32), v);
        }
    }
    // Symmetrise: w + wᵀ − w ∘ wᵀ.
    let mut edges: Vec<(u32, u32, f64)> = Vec::new();
    for (&(i, j), &v) in &w {
        let t = w.get(&(j, i)).copied().unwrap_or(0.0);
        if i < j || t == 0.0 {
            let s = v + t - v * t;
            if s > 0.0 {
                edges.push((i.min(j), i.max(j), s));
            }
        }
    }
    edges.sort_by_key(|e| (e.0, e.1));
    edges.dedup_by(|a, b| (a.0, a.1) == (b.0, b.1));
    let epochs = if params.epochs > 0 {
        params.epochs
    } else if n <= 10_000 {
        500
    } else {
        200
    };
    let wmax = edges.iter().map(|e| e.2).fold(0.0, f64::max);
    // Edges of weight below wmax / epochs would never be sampled: dropped, as umap-learn does.
    edges.retain(|e| e.2 >= wmax / epochs as f64);
    let per_sample: Vec<f64> = edges.iter().map(|e| wmax / e.2).collect();
    let mut next_at = per_sample.clone();
    let (a, b) = umap_ab(params.min_dist);
    // Start from the PCA map scaled to ±10.
    let mut y: Vec<[f64; 2]> = (0..n)
        .map(|i| [x[i * d] as f64, x[i * d + 1.min(d - 1)] as f64])
        .collect();
    for c in 0..2 {
        let m = y.iter().map(|p| p[c].abs()).fold(0.0, f64::max).max(1e-12);
        y.iter_mut().for_each(|p| p[c] *= 10.0 / m);
    }
    let mut rng = params.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rand = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    const NEGATIVE: usize = 5;
    let clip = |v: f64| v.clamp(-4.0, 4.0);
    for epoch in 0..epochs {
        if cancel.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let alpha = 1.0 - epoch as f64 / epochs as f64;
        let now = (epoch + 1) as f64;
        for (e, &(i, j, _)) in edges.iter().enumerate() {
            if next_at[e] > now {
                continue;
            }
            next_at[e] += per_sample[e];
            for (u, v) in [(i as usize, j as usize), (j as usize, i as usize)] {
                let (dx, dy) = (y[u][0] - y[v][0], y[u][1] - y[v][1]);
                let d2 = dx * dx + dy * dy;
                if d2 > 0.0 {
                    let pb = d2.powf(b);
                    let g = -2.0 * a * b * (pb / d2) / (1.0 + a * pb);
                    y[u][0] += clip(g * dx) * alpha;
                    y[u][1] += clip(g * dy) * alpha;
                }
                for _ in 0..NEGATIVE {
                    let o = (rand() % n as u64) as usize;
                    if o == u {
                        continue;
                    }
                    let (dx, dy) = (y[u][0] - y[o][0], y[u][1] - y[o][1]);
                    let d2 = dx * dx + dy * dy;
                    let g = 2.0 * b / ((0.001 + d2) * (1.0 + a * d2.powf(b)));
                    let (gx, gy) = if d2 > 0.0 {
                        (clip(g * dx), clip(g * dy))
                    } else {
                        (4.0, 4.0)
                    };
                    y[u][0] += gx * alpha;
                    y[u][1] += gy * alpha;
                }
            }
        }
        progress(epoch + 1, epochs);
    }
    Ok(Some(rows.into_iter().zip(y).collect()))
}

/// The mean, over points with a label, of the share of their `k` nearest labelled points on
/// the map that carry the same label: how much of the labels' structure the map shows.
pub fn knn_label_agreement(points: &[[f64; 2]], labels: &[Option<u32>], k: usize) -> f64 {
    let lab: Vec<usize> = (0..points.len()).filter(|&i| labels[i].is_some()).collect();
    if lab.len() < 2 || k == 0 {
        return f64::NAN;
    }
    let k = k.min(lab.len() - 1);
    let d2 = |a: usize, b: usize| {
        (points[a][0] - points[b][0]).powi(2) + (points[a][1] - points[b][1]).powi(2)
    };
    let total: f64 = lab
        .iter()
        .map(|&i| {
            let mut others: Vec<usize> = lab.iter().copied().filter(|&j| j != i).collect();
            others.sort_by(|&a, &b| d2(i, a).total_cmp(&d2(i, b)).then(a.cmp(&b)));
            others[..k]
                .iter()
                .filter(|&&j| labels[j] == labels[i])
                .count() as f64
                / k as f64
        })
        .sum();
    total / lab.len() as f64
}

/// Trustworthiness of a map (as scikit-learn's `trustworthiness`, Euclidean in both spaces):
/// 1 − 2/(n k (2n − 3k − 1)) Σᵢ Σ_{j among i's k nearest on the map but not in the full
/// space} (rank of j among i's neighbours in the full space − k). `high` is `[n, d]`.
pub fn trustworthiness(high: &[f32], d: usize, low: &[[f64; 2]], k: usize) -> f64 {
    let n = low.len();
    if n < 2 || 2 * n <= 3 * k + 1 {
        return f64::NAN;
    }
    let hd = |a: usize, b: usize| -> f64 {
        high[a * d..(a + 1) * d]
            .iter()
            .zip(&high[b * d..(b + 1) * d])
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum()
    };
    let ld = |a: usize, b: usize| (low[a][0] - low[b][0]).powi(2) + (low[a][1] - low[b][1]).powi(2);
    let mut penalty = 0f64;
    for i in 0..n {
        let mut by_high: Vec<usize> = (0..n).filter(|&j| j != i).collect();
        let dh: Vec<f64> = (0..n).map(|j| hd(i, j)).collect();
        by_high.sort_by(|&a, &b| dh[a].total_cmp(&dh[b]).then(a.cmp(&b)));
        let mut rank = vec![0usize; n];
        for (r, &j) in by_high.iter().enumerate() {
            rank[j] = r + 1;
        }
        let mut by_low: Vec<usize> = (0..n).filter(|&j| j != i).collect();
        by_low.sort_by(|&a, &b| ld(i, a).total_cmp(&ld(i, b)).then(a.cmp(&b)));
        for &j in &by_low[..k] {
            if rank[j] > k {
                penalty += (rank[j] - k) as f64;
            }
        }
    }
    1.0 - 2.0 / (n as f64 * k as f64 * (2.0 * n as f64 - 3.0 * k as f64 - 1.0)) * penalty
}
