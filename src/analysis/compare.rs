//! Two tables compared entity by entity: from any two models or corpora, over the entity ids
//! both found. For each shared entity, its `k` nearest neighbours by cosine in each table,
//! drawn from the shared entities only (so both lists have the same candidates), and their
//! overlap, Jaccard@k = |A ∩ B| / |A ∪ B|. The entities whose neighbourhoods changed most come
//! first in [`Comparison::most_changed`].
//!
//! Both tables' maps of the shared entities (each its own 2-D PCA) are brought into one frame
//! by orthogonal Procrustes ([`procrustes_2d`], [`aligned_maps`]): B's map rotated (or
//! mirrored) and scaled onto A's, so an entity's two points lie together where the tables agree
//! and apart where it moved. [`compare_file`] does all of it for a table on disk.

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::escape;
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
    /// One line: shared entities, those of one table only, and the mean Jaccard@k.
    pub fn summary(&self) -> String {
        format!(
            "{} shared, {} only in A, {} only in B; mean Jaccard@{} {:.3}{}",
            self.shared.len(),
            self.only_a,
            self.only_b,
            self.k,
            self.mean_jaccard,
            if self.center { " (mean removed)" } else { "" }
        )
    }

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

/// A 2×2 matrix, row-major: points are row vectors multiplied from the right.
pub type Mat2 = [[f64; 2]; 2];

/// The orthogonal Procrustes alignment of one 2-D point set onto another.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Procrustes {
    /// The orthogonal matrix (a rotation, or a reflection when `reflected`) applied to the
    /// centred points of B.
    pub rotation: Mat2,
    pub reflected: bool,
    /// The factor applied after the rotation.
    pub scale: f64,
    /// B's points aligned onto A's: `scale · (b − mean b) · rotation + mean a`.
    pub aligned: Vec<[f64; 2]>,
    /// What is left: Σ‖aligned − a‖² / Σ‖a − mean a‖² (0 when B is a rotated, reflected and
    /// scaled copy of A; 1 when it tells nothing about A).
    pub disparity: f64,
}

fn mean_2d(p: &[[f64; 2]]) -> [f64; 2] {
    let n = p.len().max(1) as f64;
    let s = p.iter().fold([0.0, 0.0], |s, q| [s[0] + q[0], s[1] + q[1]]);
    [s[0] / n, s[1] / n]
}

/// Orthogonal Procrustes in 2-D: the orthogonal `R` (rotation or reflection) and the scale
/// `s` that minimise ‖s·B̃·R − Ã‖ over the centred point sets (Ã, B̃: `a` and `b` with their
/// means removed; `a[i]` and `b[i]` are the same entity). With M = B̃ᵀÃ, the best rotation
/// reaches √((m₁₁+m₂₂)² + (m₂₁−m₁₂)²) of tr(RᵀM) and the best reflection
/// √((m₁₁−m₂₂)² + (m₁₂+m₂₁)²): the larger is σ₁+σ₂ of M's singular values, as the SVD solution
/// `R = UVᵀ` finds it; then s = (σ₁+σ₂) / ‖B̃‖².
pub fn procrustes_2d(a: &[[f64; 2]], b: &[[f64; 2]]) -> Result<Procrustes> {
    if a.len() != b.len() {
        bail!(
            "Procrustes needs the same points in both sets ({} and {})",
            a.len(),
            b.len()
        );
    }
    let (ma, mb) = (mean_2d(a), mean_2d(b));
    let mut m = [[0f64; 2]; 2];
    let (mut bb, mut aa) = (0f64, 0f64);
    for (p, q) in a.iter().zip(b) {
        let pa = [p[0] - ma[0], p[1] - ma[1]];
        let pb = [q[0] - mb[0], q[1] - mb[1]];
        for (i, row) in m.iter_mut().enumerate() {
            for (j, x) in row.iter_mut().enumerate() {
                *x += pb[i] * pa[j];
            }
        }
        bb += pb[0] * pb[0] + pb[1] * pb[1];
        aa += pa[0] * pa[0] + pa[1] * pa[1];
    }
    let (rc, rs) = (m[0][0] + m[1][1], m[1][0] - m[0][1]);
    let (fc, fs) = (m[0][0] - m[1][1], m[0][1] + m[1][0]);
    let (rot, refl) = (rc.hypot(rs), fc.hypot(fs));
    let (rotation, reflected, trace) = if rot == 0.0 && refl == 0.0 {
        ([[1.0, 0.0], [0.0, 1.0]], false, 0.0)
    } else if rot >= refl {
        let (c, s) = (rc / rot, rs / rot);
        ([[c, -s], [s, c]], false, rot)
    } else {
        let (c, s) = (fc / refl, fs / refl);
        ([[c, s], [s, -c]], true, refl)
    };
    let scale = if bb > 0.0 { trace / bb } else { 0.0 };
    let aligned: Vec<[f64; 2]> = b
        .iter()
        .map(|q| {
            let (x, y) = (q[0] - mb[0], q[1] - mb[1]);
            [
                scale * (x * rotation[0][0] + y * rotation[1][0]) + ma[0],
                scale * (x * rotation[0][1] + y * rotation[1][1]) + ma[1],
            ]
        })
        .collect();
    let residual: f64 = aligned
        .iter()
        .zip(a)
        .map(|(p, q)| (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2))
        .sum();
    Ok(Procrustes {
        rotation,
        reflected,
        scale,
        aligned,
        disparity: if aa > 0.0 { residual / aa } else { 0.0 },
    })
}

/// The two tables' maps over their shared entities: each table's PCA of its own shared
/// entities, and B's map aligned onto A's ([`procrustes_2d`]), so that the same entity lies at
/// the same place when both tables agree.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlignedMaps {
    /// A's points, one per shared entity (in the order of [`Comparison::shared`]).
    pub a: Vec<[f64; 2]>,
    /// B's points before the alignment (its own PCA).
    pub b_raw: Vec<[f64; 2]>,
    /// B's points aligned onto A's, and how.
    pub b: Procrustes,
}

/// The first two principal components of the unit directions (mean removed) of `rows`.
/// The plane comes from [`super::layout::principal_components`]; within it the points are
/// turned onto their own principal axes (an exact 2×2 eigenproblem), so the axes are the PCA's
/// even when the first two variances lie close together (each axis's sign stays arbitrary).
pub fn shared_pca(table: &Table, rows: &[usize]) -> Result<Vec<[f64; 2]>> {
    let h = table.hidden();
    if rows.len() < 2 {
        return Ok(vec![[0.0, 0.0]; rows.len()]);
    }
    let x = super::layout::centred_directions(table, rows);
    let p = super::layout::principal_components(&x, h, 2)?;
    let dims = p.len() / rows.len();
    let pts: Vec<[f64; 2]> = p
        .chunks_exact(dims.max(1))
        .map(|c| [c[0] as f64, c.get(1).copied().unwrap_or(0.0) as f64])
        .collect();
    let (mut sxx, mut sxy, mut syy) = (0f64, 0f64, 0f64);
    for q in &pts {
        sxx += q[0] * q[0];
        sxy += q[0] * q[1];
        syy += q[1] * q[1];
    }
    let t = 0.5 * (2.0 * sxy).atan2(sxx - syy);
    let (c, s) = (t.cos(), t.sin());
    Ok(pts
        .into_iter()
        .map(|q| [c * q[0] + s * q[1], -s * q[0] + c * q[1]])
        .collect())
}

/// Maps A and B over the entities of `cmp` (made from `a` and `b`) and aligns B's onto A's.
pub fn aligned_maps(a: &Table, b: &Table, cmp: &Comparison) -> Result<AlignedMaps> {
    let rows_a: Vec<usize> = cmp.shared.iter().map(|s| s.row_a).collect();
    let rows_b: Vec<usize> = cmp.shared.iter().map(|s| s.row_b).collect();
    if rows_a.iter().any(|&r| r >= a.len()) || rows_b.iter().any(|&r| r >= b.len()) {
        bail!("the comparison was not made from these two tables");
    }
    let pa = shared_pca(a, &rows_a)?;
    let pb = shared_pca(b, &rows_b)?;
    let aligned = procrustes_2d(&pa, &pb)?;
    Ok(AlignedMaps {
        a: pa,
        b_raw: pb,
        b: aligned,
    })
}

/// Shared between a comparison on the worker and whoever waits for it: how far it has got,
/// and a flag that stops it (a comparison of many entities takes a while).
#[derive(Debug, Default)]
pub struct CompareControl {
    pub cancel: AtomicBool,
    done: AtomicUsize,
    total: AtomicUsize,
}

impl CompareControl {
    /// Rows of both neighbour passes done, and in all (0 of 0 before it starts).
    pub fn progress(&self) -> (usize, usize) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
}

/// Table A compared with the table of a file: what [`compare_file`] gives.
#[derive(Debug, Clone)]
pub struct Compared {
    pub b_path: PathBuf,
    /// B's description (model, corpus, mention mode…).
    pub b_meta: crate::table::TableMeta,
    pub comparison: Comparison,
    pub maps: AlignedMaps,
}

/// Loads the table at `b` and compares `a` with it ([`compare_tables`], then
/// [`aligned_maps`]); `None` when `control` cancelled it. Tables that share no entity are
/// an error that says so.
pub fn compare_file(
    a: &Table,
    b: &Path,
    k: usize,
    center: bool,
    control: &CompareControl,
) -> Result<Option<Compared>> {
    let tb = Table::load(b)?;
    let Some(comparison) = compare_tables(a, &tb, k, center, &control.cancel, &mut |d, t| {
        control.total.store(t, Ordering::Relaxed);
        control.done.store(d, Ordering::Relaxed);
    })?
    else {
        return Ok(None);
    };
    if comparison.shared.is_empty() {
        bail!(
            "{} shares no entity with this table: A has {} entities with a vector, B has {}, and no entity id is in both (compare tables built over the same entity ids, e.g. the same entity list)",
            escape::path(b),
            comparison.found_a,
            comparison.found_b
        );
    }
    let maps = aligned_maps(a, &tb, &comparison)?;
    Ok(Some(Compared {
        b_path: b.to_path_buf(),
        b_meta: tb.meta.clone(),
        comparison,
        maps,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points in general position (no symmetry a rotation could hide).
    fn cloud() -> Vec<[f64; 2]> {
        (0..40)
            .map(|i| {
                let t = i as f64;
                [
                    (t * 0.37).sin() * 3.0 + t * 0.05,
                    (t * 0.91).cos() * 1.5 - 0.2,
                ]
            })
            .collect()
    }

    /// `p` rotated by `angle`, mirrored across the x axis when `mirror`, scaled and shifted.
    fn moved(p: &[[f64; 2]], angle: f64, mirror: bool, scale: f64) -> Vec<[f64; 2]> {
        let (c, s) = (angle.cos(), angle.sin());
        p.iter()
            .map(|q| {
                let y = if mirror { -q[1] } else { q[1] };
                [
                    scale * (c * q[0] - s * y) + 4.0,
                    scale * (s * q[0] + c * y) - 7.0,
                ]
            })
            .collect()
    }

    #[test]
    fn a_rotated_reflected_and_scaled_copy_aligns_back_exactly() {
        let a = cloud();
        for (angle, mirror, scale) in [(0.7, true, 2.5), (-2.1, false, 0.3), (3.0, true, 1.0)] {
            let b = moved(&a, angle, mirror, scale);
            let p = procrustes_2d(&a, &b).unwrap();
            assert_eq!(p.reflected, mirror, "angle {angle}");
            assert!((p.scale - 1.0 / scale).abs() < 1e-12, "{}", p.scale);
            assert!(p.disparity < 1e-20, "{}", p.disparity);
            for (x, y) in p.aligned.iter().zip(&a) {
                assert!((x[0] - y[0]).abs() < 1e-9 && (x[1] - y[1]).abs() < 1e-9);
            }
            // The matrix is orthogonal, with the determinant of a rotation or a reflection.
            let r = p.rotation;
            let det = r[0][0] * r[1][1] - r[0][1] * r[1][0];
            assert!((det - if mirror { -1.0 } else { 1.0 }).abs() < 1e-12);
            assert!((r[0][0] * r[0][1] + r[1][0] * r[1][1]).abs() < 1e-12);
        }
    }

    #[test]
    fn procrustes_is_optimal_and_bounded_on_unrelated_points() {
        let a = cloud();
        let b: Vec<[f64; 2]> = a.iter().rev().map(|q| [q[1] * 2.0, q[0]]).collect();
        let p = procrustes_2d(&a, &b).unwrap();
        assert!(p.disparity > 0.0 && p.disparity <= 1.0, "{}", p.disparity);
        // No other rotation or reflection at the same scale does better.
        let cost = |r: Mat2| -> f64 {
            let (ma, mb) = (mean_2d(&a), mean_2d(&b));
            a.iter()
                .zip(&b)
                .map(|(x, y)| {
                    let (u, v) = (y[0] - mb[0], y[1] - mb[1]);
                    let px = p.scale * (u * r[0][0] + v * r[1][0]) + ma[0];
                    let py = p.scale * (u * r[0][1] + v * r[1][1]) + ma[1];
                    (px - x[0]).powi(2) + (py - x[1]).powi(2)
                })
                .sum()
        };
        let best = cost(p.rotation);
        for i in 0..360 {
            let t = (i as f64).to_radians();
            let (c, s) = (t.cos(), t.sin());
            assert!(cost([[c, -s], [s, c]]) >= best - 1e-9);
            assert!(cost([[c, s], [s, -c]]) >= best - 1e-9);
        }
    }

    #[test]
    fn degenerate_point_sets_give_no_panic() {
        let p = procrustes_2d(&[], &[]).unwrap();
        assert!(p.aligned.is_empty());
        let same = vec![[1.0, 2.0]; 5];
        let p = procrustes_2d(&same, &same).unwrap();
        assert_eq!(p.aligned, same);
        assert_eq!(p.disparity, 0.0);
        assert!(procrustes_2d(&same, &same[..2]).is_err());
    }
}
