//! CPU kernels the encoder spends time in outside the matrix products: exact (erf) gelu in
//! branch-free f32 arithmetic that the compiler vectorises, split over the machine's cores.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

/// The contiguous f32 data of a custom op's input; `what` names it in errors.
pub(super) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{what} is not f32")
    };
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("{what} is not contiguous")
    };
    Ok(&v[a..b])
}

/// e^x for x in about [-87, 88]: range reduction to 2^n · e^r, |r| ≤ ln2/2, degree-6
/// polynomial (relative error ~2e-7). Only float arithmetic and bit operations, so loops over
/// it vectorise.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    // Round to nearest with the 1.5·2^23 trick; the low mantissa bits of `t` then hold n.
    const SHIFT: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + SHIFT;
    let n = t - SHIFT;
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    let two_n = f32::from_bits(t.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127) << 23);
    p * two_n
}

/// erf(x), Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7).
#[inline(always)]
fn erf_f32(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let y = 1.0
        - t * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))))
            * exp_f32(-a * a);
    y.copysign(x)
}

#[inline(always)]
fn gelu_body(v: &mut [f32]) {
    for x in v.iter_mut() {
        *x = 0.5 * *x * (1.0 + erf_f32(*x * std::f32::consts::FRAC_1_SQRT_2));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_avx2(v: &mut [f32]) {
    gelu_body(v)
}

fn gelu_slice(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
        return unsafe { gelu_avx2(v) };
    }
    gelu_body(v)
}

/// Exact gelu of every value, in place, split over the machine's cores.
pub(super) fn gelu_in_place(v: &mut [f32]) {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if threads > 1 && v.len() >= 1 << 16 {
        let chunk = v.len().div_ceil(threads);
        std::thread::scope(|s| {
            for part in v.chunks_mut(chunk) {
                s.spawn(move || gelu_slice(part));
            }
        });
    } else {
        gelu_slice(v);
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf-f32"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let mut out = f32_slice(s, l, "gelu input")?.to_vec();
        gelu_in_place(&mut out);
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
}

/// Exact gelu; the fast kernel for f32 on the CPU, candle's own op elsewhere.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1_no_bwd(&GeluErf)
    } else {
        x.gelu_erf()
    }
}

/// Scaled dot-product attention for right-padded sequences, reading queries, keys and values
/// in place from the projection outputs (no head split/merge copies) and skipping padding.
///
/// Inputs: `q` `[rows_q, q_stride]`, `kv` `[batch * seq_len, kv_stride]`. Query `n` is row
/// `queries[n].1` of `q` and attends over the first `lens[b]` rows of batch row `b =
/// queries[n].0` in `kv`; its result goes to row `queries[n].2` of the `[out_rows, heads *
/// head_dim]` output (rows no query writes stay zero).
pub struct Attention {
    pub heads: usize,
    pub head_dim: usize,
    pub seq_len: usize,
    pub lens: Vec<usize>,
    pub queries: Vec<(usize, usize, usize)>,
    pub out_rows: usize,
    pub q_offset: usize,
    pub k_offset: usize,
    pub v_offset: usize,
}

impl Attention {
    fn run(
        &self,
        q: &[f32],
        q_stride: usize,
        kv: &[f32],
        kv_stride: usize,
        queries: &[(usize, usize, usize)],
    ) -> Vec<f32> {
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
            return unsafe { self.run_avx2(q, q_stride, kv, kv_stride, queries) };
        }
        self.run_body(q, q_stride, kv, kv_stride, queries)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2(
        &self,
        q: &[f32],
        q_stride: usize,
        kv: &[f32],
        kv_stride: usize,
        queries: &[(usize, usize, usize)],
    ) -> Vec<f32> {
        self.run_body(q, q_stride, kv, kv_stride, queries)
    }

    #[inline(always)]
    fn run_body(
        &self,
        q: &[f32],
        q_stride: usize,
        kv: &[f32],
        kv_stride: usize,
        queries: &[(usize, usize, usize)],
    ) -> Vec<f32> {
        let (nh, d, l) = (self.heads, self.head_dim, self.seq_len);
        let h = nh * d;
        let scale = 1.0 / (d as f32).sqrt();
        let mut out = vec![0f32; queries.len() * h];
        let mut scores = vec![0f32; l];
        // Keys of one (batch row, head), transposed to [d, len] so that scores are axpys.
        let mut kt = vec![0f32; d * l];
        let mut cached: Option<(usize, usize)> = None;
        // Queries of one batch row are adjacent: walk heads outermost to reuse the transposed keys.
        let mut start = 0;
        while start < queries.len() {
            let b = queries[start].0;
            let mut end = start;
            while end < queries.len() && queries[end].0 == b {
                end += 1;
            }
            let len = self.lens[b];
            let base = b * l;
            for head in 0..nh {
                if cached != Some((b, head)) {
                    for j in 0..len {
                        let k = &kv[(base + j) * kv_stride + self.k_offset + head * d..][..d];
                        for (t, &x) in k.iter().enumerate() {
                            kt[t * l + j] = x;
                        }
                    }
                    cached = Some((b, head));
                }
                for (n, &(_, qi, _)) in queries[start..end].iter().enumerate() {
                    let qv = &q[qi * q_stride + self.q_offset + head * d..][..d];
                    let sc = &mut scores[..len];
                    sc.fill(0.0);
                    for (t, &qt) in qv.iter().enumerate() {
                        let qt = qt * scale;
                        for (s, &k) in sc.iter_mut().zip(&kt[t * l..t * l + len]) {
                            *s += qt * k;
                        }
                    }
                    let mut max = f32::NEG_INFINITY;
                    for &s in sc.iter() {
                        if s > max {
                            max = s;
                        }
                    }
                    for s in sc.iter_mut() {
                        *s = exp_f32(*s - max);
                    }
                    let sum: f32 = sc.iter().sum();
                    let acc = &mut out[(start + n) * h + head * d..][..d];
                    for (j, &p) in sc.iter().enumerate() {
                        let v = &kv[(base + j) * kv_stride + self.v_offset + head * d..][..d];
                        for (a, &x) in acc.iter_mut().zip(v) {
                            *a += p * x;
                        }
                    }
                    let inv = 1.0 / sum;
                    for a in acc.iter_mut() {
                        *a *= inv;
                    }
                }
            }
            start = end;
        }
        out
    }
}

impl candle_core::CustomOp2 for Attention {
    fn name(&self) -> &'static str {
        "attention-f32"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, kv) = (
            f32_slice(s1, l1, "attention queries")?,
            f32_slice(s2, l2, "attention keys/values")?,
        );
        let (_, q_stride) = l1.shape().dims2()?;
        let (kv_rows, kv_stride) = l2.shape().dims2()?;
        let h = self.heads * self.head_dim;
        if kv_rows != self.lens.len() * self.seq_len || self.lens.iter().any(|&n| n > self.seq_len)
        {
            candle_core::bail!(
                "attention: {} key rows do not fit {} sequences of {}",
                kv_rows,
                self.lens.len(),
                self.seq_len
            );
        }
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let chunk = self.queries.len().div_ceil(threads).max(1);
        let parts: Vec<Vec<f32>> = if threads > 1 && self.queries.len() > 1 {
            std::thread::scope(|s| {
                let handles: Vec<_> = self
                    .queries
                    .chunks(chunk)
                    .map(|qs| s.spawn(move || self.run(q, q_stride, kv, kv_stride, qs)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("attention thread"))
                    .collect()
            })
        } else {
            vec![self.run(q, q_stride, kv, kv_stride, &self.queries)]
        };
        let mut out = vec![0f32; self.out_rows * h];
        for (qs, part) in self.queries.chunks(chunk).zip(&parts) {
            for (n, &(_, _, o)) in qs.iter().enumerate() {
                out[o * h..(o + 1) * h].copy_from_slice(&part[n * h..(n + 1) * h]);
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((self.out_rows, h))))
    }
}

/// Whether the fused CPU kernels apply to tensors like `x`.
pub fn cpu_f32(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_exact_gelu() {
        let xs: Vec<f32> = (-2000..=2000)
            .map(|i| i as f32 * 0.01)
            .chain([-90.0, 90.0, 0.0, -0.0])
            .collect();
        let t = Tensor::new(xs.as_slice(), &candle_core::Device::Cpu).unwrap();
        let fast: Vec<f32> = gelu_erf(&t).unwrap().to_vec1().unwrap();
        let exact: Vec<f32> = t.gelu_erf().unwrap().to_vec1().unwrap();
        let worst = fast
            .iter()
            .zip(&exact)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 2e-6, "max |diff| {worst}");
    }
}
