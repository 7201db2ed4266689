//! CPU kernels the encoder spends time in outside the matrix products: exact (erf) gelu in
//! branch-free f32 arithmetic that the compiler vectorises, split over the machine's cores.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

/// Where a custom op's operand lies in its storage; `what` names it in errors.
fn contiguous_range(l: &Layout, what: &str) -> Result<std::ops::Range<usize>> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(a..b),
        None => candle_core::bail!("{what} is not contiguous"),
    }
}

/// The contiguous f32 data of a custom op's input; `what` names it in errors.
pub(in crate::model) fn f32_slice<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{what} is not f32")
    };
    Ok(&v[contiguous_range(l, what)?])
}

/// The contiguous f32 data of an in-place op's destination.
fn f32_slice_mut<'a>(s: &'a mut CpuStorage, l: &Layout, what: &str) -> Result<&'a mut [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{what} is not f32")
    };
    Ok(&mut v[contiguous_range(l, what)?])
}

/// Defines `fn $name(args)` that runs `$body(args)` compiled for AVX-512, for AVX2 or for the
/// baseline, whichever this CPU has (`$body` should be `#[inline(always)]`), and
/// `fn $on(simd, args)` that runs the variant `simd` (the baseline where the CPU lacks it;
/// see [`supported`]), for tests of each variant.
macro_rules! simd_dispatch {
    ($vis:vis fn $name:ident / $on:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? => $body:path) => {
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            $on(simd(), $($arg),*)
        }

        $vis fn $on(variant: Simd, $($arg: $ty),*) $(-> $ret)? {
            let _ = variant;
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if supported(variant) {
                    match variant {
                        // SAFETY: `supported` checked at run time that this CPU has AVX-512F,
                        // AVX2 and FMA, the features this function is compiled for.
                        Simd::Avx512 => return unsafe { avx512($($arg),*) },
                        // SAFETY: `supported` checked at run time that this CPU has AVX2 and FMA.
                        Simd::Avx2 => return unsafe { avx2($($arg),*) },
                        Simd::None => {}
                    }
                }
            }
            $body($($arg),*)
        }
    };
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

/// `gelu(x + bias)` in place over rows of `bias.len()` values (no bias when it is empty).
#[inline(always)]
fn gelu_body(v: &mut [f32], bias: &[f32]) {
    let gelu = |x: f32| 0.5 * x * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2));
    if bias.is_empty() {
        v.iter_mut().for_each(|x| *x = gelu(*x));
    } else {
        for row in v.chunks_exact_mut(bias.len()) {
            for (x, &b) in row.iter_mut().zip(bias) {
                *x = gelu(*x + b);
            }
        }
    }
}

simd_dispatch!(pub(in crate::model) fn gelu_slice / gelu_slice_on(v: &mut [f32], bias: &[f32]) => gelu_body);

/// Splits `v` into runs of whole rows of `row` values, one per core when it is large enough,
/// and runs `f` on each run with the index of its first row.
pub(super) fn par_rows(v: &mut [f32], row: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let threads = super::pool::threads();
    let rows = v.len() / row.max(1);
    if threads > 1 && v.len() >= 1 << 16 && rows > 1 {
        let per = rows.div_ceil(threads);
        super::pool::for_each_chunk_mut(v, per * row, &|i, part| f(i * per, part));
    } else {
        f(0, v);
    }
}

/// Exact `gelu(x + bias)` of every value of `[rows, bias.len()]` `v`, in place, split over the
/// machine's cores (an empty `bias` adds nothing).
pub(super) fn gelu_in_place(v: &mut [f32], bias: &[f32]) {
    let row = if bias.is_empty() { 1 << 12 } else { bias.len() };
    par_rows(v, row, |_, part| gelu_slice(part, bias));
}

/// Sum of `v` in 16 independent lanes (so that it vectorises; float addition does not
/// reassociate on its own).
#[inline(always)]
fn lane_sum(v: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 16];
    let mut chunks = v.chunks_exact(16);
    for c in chunks.by_ref() {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l += f(x);
        }
    }
    chunks.remainder().iter().map(|&x| f(x)).sum::<f32>() + lanes.iter().sum::<f32>()
}

/// `LayerNorm(x + bias + residual)` of each row, in place in `x` (`p` = bias, gamma, beta).
#[inline(always)]
fn add_ln_body(x: &mut [f32], residual: &[f32], p: &[f32], eps: f32) {
    let n = p.len() / 3;
    let (bias, rest) = p.split_at(n);
    let (gamma, beta) = rest.split_at(n);
    for (row, res) in x.chunks_exact_mut(n).zip(residual.chunks_exact(n)) {
        for ((v, &r), &b) in row.iter_mut().zip(res).zip(bias) {
            *v += r + b;
        }
        let mean = lane_sum(row, |v| v) / n as f32;
        let var = lane_sum(row, |v| (v - mean) * (v - mean)) / n as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, &g), &b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}

simd_dispatch!(fn add_ln / add_ln_on(x: &mut [f32], residual: &[f32], p: &[f32], eps: f32) => add_ln_body);

/// The residual connection and LayerNorm after a dense layer whose product `x · wᵀ` was
/// computed without its bias: `LayerNorm(product + bias + residual)`, one pass over the rows.
/// `params` is `[3, n]`: the dense layer's bias, then the LayerNorm's gamma and beta.
pub struct AddLayerNorm {
    pub eps: f32,
}

impl candle_core::InplaceOp3 for AddLayerNorm {
    fn name(&self) -> &'static str {
        "add-layer-norm-f32"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let (m, n) = l1.shape().dims2()?;
        if l2.shape().dims2()? != (m, n) || l3.shape().dims2()? != (3, n) {
            candle_core::bail!(
                "add-layer-norm: shapes {:?}, {:?}, {:?} do not fit",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let out = f32_slice_mut(s1, l1, "layer-norm input")?;
        let residual = f32_slice(s2, l2, "residual")?;
        let p = f32_slice(s3, l3, "layer-norm parameters")?;
        let eps = self.eps;
        par_rows(out, n, |first, part| {
            add_ln(part, &residual[first * n..first * n + part.len()], p, eps)
        });
        Ok(())
    }
}

/// What is done with the product `x [m,k] · wᵀ` (`w` `[n,k]`).
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Epilogue {
    /// `+ b`.
    Bias,
    /// `gelu(· + b)`, exact, applied in place (the activation costs no extra tensor).
    BiasGelu,
    /// Nothing: the bias is added by whoever takes the product next (see [`AddLayerNorm`]).
    None,
}

/// The vector instruction sets the kernels are compiled for (x86-64; elsewhere only `None`).
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Simd {
    Avx512,
    Avx2,
    None,
}

/// Whether this CPU can run the kernels compiled for `s`.
pub(crate) fn supported(s: Simd) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        match s {
            Simd::Avx512 => avx2 && is_x86_feature_detected!("avx512f"),
            Simd::Avx2 => avx2,
            Simd::None => true,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        s == Simd::None
    }
}

/// The widest vector instruction set of this CPU that the kernels are compiled for.
fn simd() -> Simd {
    use std::sync::OnceLock;
    static HAS: OnceLock<Simd> = OnceLock::new();
    *HAS.get_or_init(|| {
        [Simd::Avx512, Simd::Avx2, Simd::None]
            .into_iter()
            .find(|&s| supported(s))
            .unwrap_or(Simd::None)
    })
}

struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf-f32"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let mut out = f32_slice(s, l, "gelu input")?.to_vec();
        gelu_in_place(&mut out, &[]);
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
}

/// `gelu(x + b)` over the rows of `[rows, n]` `x` (`b`: `[n]`).
struct BiasGelu;

impl candle_core::InplaceOp2 for BiasGelu {
    fn name(&self) -> &'static str {
        "bias-gelu-erf-f32"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let (_, n) = l1.shape().dims2()?;
        if l2.shape().dims1()? != n {
            candle_core::bail!("bias-gelu: bias of {:?} for rows of {n}", l2.shape());
        }
        gelu_in_place(
            f32_slice_mut(s1, l1, "gelu input")?,
            f32_slice(s2, l2, "gelu bias")?,
        );
        Ok(())
    }
}

/// `x ← gelu(x + b)`, exact, for a freshly computed f32 `[rows, n]` `x` on the CPU that
/// nothing else refers to.
pub fn bias_gelu_in_place(x: &Tensor, b: &Tensor) -> Result<()> {
    x.inplace_op2(b, &BiasGelu)
}

/// Exact gelu; the fast kernel for f32 on the CPU, candle's own op elsewhere.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1_no_bwd(&GeluErf)
    } else {
        x.gelu_erf()
    }
}

/// Scaled dot-product attention over variable-length sequences, reading queries, keys and
/// values in place from the projection outputs (no head split/merge copies).
///
/// Inputs: `q` `[rows_q, q_stride]`, `kv` `[rows_kv, kv_stride]`. Sequence `b` is the
/// `lens[b]` rows of `kv` from `starts[b]` (packed one after another, or padded: any layout).
/// Query `n` is row `queries[n].1` of `q` and attends over sequence `b = queries[n].0`; its
/// result goes to row `queries[n].2` of the `[out_rows, heads * head_dim]` output (rows no
/// query writes stay zero).
pub struct Attention {
    pub heads: usize,
    pub head_dim: usize,
    pub starts: Vec<usize>,
    pub lens: Vec<usize>,
    pub queries: Vec<(usize, usize, usize)>,
    pub out_rows: usize,
    pub q_offset: usize,
    pub k_offset: usize,
    pub v_offset: usize,
}

simd_dispatch!(fn attend / attend_on(
    op: &Attention,
    q: &[f32],
    q_stride: usize,
    kv: &[f32],
    kv_stride: usize,
    queries: &[(usize, usize, usize)]
) -> Vec<f32> => Attention::run_body);

impl Attention {
    #[inline(always)]
    fn run_body(
        &self,
        q: &[f32],
        q_stride: usize,
        kv: &[f32],
        kv_stride: usize,
        queries: &[(usize, usize, usize)],
    ) -> Vec<f32> {
        let (nh, d) = (self.heads, self.head_dim);
        let l = self.lens.iter().copied().max().unwrap_or(0);
        let h = nh * d;
        let scale = 1.0 / (d as f32).sqrt();
        let mut out = vec![0f32; queries.len() * h];
        // Keys of one (batch row, head), transposed to [d, len] (rows padded to a multiple of
        // 16) so that scores are axpys.
        let kts = l.div_ceil(16) * 16;
        let mut scores = vec![0f32; QUERY_BLOCK * kts];
        let mut kt = vec![0f32; d * kts];
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
            let base = self.starts[b];
            for head in 0..nh {
                if cached != Some((b, head)) {
                    for j in 0..len {
                        let k = &kv[(base + j) * kv_stride + self.k_offset + head * d..][..d];
                        for (t, &x) in k.iter().enumerate() {
                            kt[t * kts + j] = x;
                        }
                    }
                    cached = Some((b, head));
                }
                if d == 64 {
                    for (blk, qs) in queries[start..end].chunks(QUERY_BLOCK).enumerate() {
                        let first = start + blk * QUERY_BLOCK;
                        self.attend_tiled::<64>(
                            Rows {
                                data: q,
                                stride: q_stride,
                                offset: self.q_offset + head * d,
                            },
                            qs,
                            &kt,
                            kts,
                            len,
                            Rows {
                                data: &kv[base * kv_stride..],
                                stride: kv_stride,
                                offset: self.v_offset + head * d,
                            },
                            &mut scores,
                            &mut out[first * h..],
                            h,
                            head * d,
                        );
                    }
                    continue;
                }
                for (n, &(_, qi, _)) in queries[start..end].iter().enumerate() {
                    let qv = &q[qi * q_stride + self.q_offset + head * d..][..d];
                    let sc = &mut scores[..len];
                    sc.fill(0.0);
                    for (t, &qt) in qv.iter().enumerate() {
                        let qt = qt * scale;
                        for (s, &k) in sc.iter_mut().zip(&kt[t * kts..t * kts + len]) {
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

/// Queries attended together in `Attention::attend_tiled`.
const QUERY_BLOCK: usize = 4;

/// Vectors of `D` values at `offset` in rows of `stride` values.
#[derive(Clone, Copy)]
struct Rows<'a> {
    data: &'a [f32],
    stride: usize,
    offset: usize,
}

impl<'a> Rows<'a> {
    #[inline(always)]
    fn row<const D: usize>(&self, i: usize) -> &'a [f32; D] {
        self.data[i * self.stride + self.offset..][..D]
            .try_into()
            .expect("D values")
    }
}

impl Attention {
    /// Up to `QUERY_BLOCK` queries (`qs`, rows of `q`) over the `len` keys of one batch row
    /// and head, head dimension `D`: scores in tiles of 4 queries × 16 keys and the weighted
    /// sum of values for 4 queries at once, each held in registers, so that every key and
    /// value loaded serves four queries. Writes query `n`'s result to `out[n * h + col..][..D]`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn attend_tiled<const D: usize>(
        &self,
        q: Rows,
        qs: &[(usize, usize, usize)],
        kt: &[f32],
        kts: usize,
        len: usize,
        v: Rows,
        scores: &mut [f32],
        out: &mut [f32],
        h: usize,
        col: usize,
    ) {
        let scale = 1.0 / (D as f32).sqrt();
        let mut qb = [[0f32; D]; QUERY_BLOCK];
        for (row, &(_, qi, _)) in qb.iter_mut().zip(qs) {
            for (a, &x) in row.iter_mut().zip(q.row::<D>(qi)) {
                *a = x * scale;
            }
        }
        for jb in 0..len.div_ceil(16) {
            let mut acc = [[0f32; 16]; QUERY_BLOCK];
            for (t, k) in kt.chunks_exact(kts).take(D).enumerate() {
                let k: &[f32; 16] = k[jb * 16..][..16].try_into().expect("16 keys");
                for (a, qr) in acc.iter_mut().zip(&qb) {
                    let qt = qr[t];
                    for (x, &kk) in a.iter_mut().zip(k) {
                        *x += qt * kk;
                    }
                }
            }
            for (i, a) in acc.iter().enumerate() {
                scores[i * kts + jb * 16..][..16].copy_from_slice(a);
            }
        }
        let mut inv = [0f32; QUERY_BLOCK];
        for (i, inv) in inv.iter_mut().enumerate().take(qs.len()) {
            let sc = &mut scores[i * kts..i * kts + len];
            let max = sc.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
            for s in sc.iter_mut() {
                *s = exp_f32(*s - max);
            }
            *inv = 1.0 / sc.iter().sum::<f32>();
        }
        let mut acc = [[0f32; D]; QUERY_BLOCK];
        for j in 0..len {
            let vj = v.row::<D>(j);
            for (i, a) in acc.iter_mut().enumerate() {
                let p = scores[i * kts + j];
                for (x, &vv) in a.iter_mut().zip(vj) {
                    *x += p * vv;
                }
            }
        }
        for (n, (a, &inv)) in acc.iter().zip(&inv).take(qs.len()).enumerate() {
            for (o, &x) in out[n * h + col..][..D].iter_mut().zip(a) {
                *o = x * inv;
            }
        }
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
        if self.starts.len() != self.lens.len()
            || self
                .starts
                .iter()
                .zip(&self.lens)
                .any(|(&s, &n)| s + n > kv_rows)
        {
            candle_core::bail!(
                "attention: {} key rows do not hold the {} sequences",
                kv_rows,
                self.lens.len()
            );
        }
        let threads = super::pool::threads();
        let chunk = self.queries.len().div_ceil(threads).max(1);
        let parts: Vec<Vec<f32>> = if threads > 1 && self.queries.len() > 1 {
            let chunks: Vec<_> = self.queries.chunks(chunk).collect();
            let mut parts = vec![Vec::new(); chunks.len()];
            super::pool::for_each_chunk_mut(&mut parts, 1, &|i, part| {
                part[0] = attend(self, q, q_stride, kv, kv_stride, chunks[i]);
            });
            parts
        } else {
            vec![attend(self, q, q_stride, kv, kv_stride, &self.queries)]
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }

    /// One test per instruction set of `$check` (a `fn(Simd)`), named `…::path_avx512`,
    /// `…::path_avx2` and `…::path_scalar`. A set that the CPU which built the tests lacks
    /// (see src/build_probe.rs) is reported as ignored, with the reason, not as passed.
    macro_rules! simd_paths {
        ($check:ident) => {
            mod $check {
                #[test]
                #[cfg_attr(
                    not(pelt_cpu_avx512),
                    ignore = "this CPU has no AVX-512F: the AVX-512 path is not tested"
                )]
                fn path_avx512() {
                    super::on(super::Simd::Avx512, super::$check)
                }
                #[test]
                #[cfg_attr(
                    not(pelt_cpu_avx2),
                    ignore = "this CPU has no AVX2+FMA: the AVX2 path is not tested"
                )]
                fn path_avx2() {
                    super::on(super::Simd::Avx2, super::$check)
                }
                #[test]
                fn path_scalar() {
                    super::on(super::Simd::None, super::$check)
                }
            }
        };
    }

    /// Runs `check` with `s`, which the CPU must have (it had when the tests were built).
    fn on(s: Simd, check: fn(Simd)) {
        assert!(
            supported(s),
            "{s:?}: the CPU that built the tests has it, this one does not (rebuild here)"
        );
        check(s);
    }

    /// A deterministic pseudo-random sequence in [-1, 1).
    pub(in crate::model) fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    simd_paths!(gelu_kernel_matches_candle);
    fn gelu_kernel_matches_candle(s: Simd) {
        let bias = noise(7, 1);
        let xs: Vec<f32> = noise(7 * 300, 2).iter().map(|x| x * 6.0).collect();
        let shifted: Vec<f32> = xs
            .chunks(7)
            .flat_map(|r| r.iter().zip(&bias).map(|(x, b)| x + b).collect::<Vec<_>>())
            .collect();
        let t = Tensor::new(shifted.as_slice(), &candle_core::Device::Cpu).unwrap();
        let want: Vec<f32> = t.gelu_erf().unwrap().to_vec1().unwrap();
        let mut got = xs.clone();
        gelu_slice_on(s, &mut got, &bias);
        let worst = max_abs_diff(&got, &want);
        assert!(worst < 2e-6, "{s:?}: max |diff| {worst}");
    }

    simd_paths!(add_layer_norm_kernel_matches_plain);
    fn add_layer_norm_kernel_matches_plain(s: Simd) {
        let (m, n) = (5, 37);
        let x = noise(m * n, 3);
        let r = noise(m * n, 4);
        let p = noise(3 * n, 5);
        let eps = 1e-5f64;
        let mut want = vec![0f32; m * n];
        for row in 0..m {
            let v: Vec<f64> = (0..n)
                .map(|j| (x[row * n + j] + r[row * n + j] + p[j]) as f64)
                .collect();
            let mean = v.iter().sum::<f64>() / n as f64;
            let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / n as f64;
            for j in 0..n {
                want[row * n + j] = ((v[j] - mean) / (var + eps).sqrt() * p[n + j] as f64
                    + p[2 * n + j] as f64) as f32;
            }
        }
        let mut got = x.clone();
        add_ln_on(s, &mut got, &r, &p, eps as f32);
        let worst = max_abs_diff(&got, &want);
        assert!(worst < 1e-4, "{s:?}: max |diff| {worst}");
    }

    /// Attention computed plainly in f64: softmax(q·kᵀ/√d)·v per head.
    fn plain_attention(op: &Attention, q: &[f32], qs: usize, kv: &[f32], kvs: usize) -> Vec<f32> {
        let (nh, d) = (op.heads, op.head_dim);
        let mut out = vec![0f32; op.queries.len() * nh * d];
        for (n, &(b, qi, _)) in op.queries.iter().enumerate() {
            for head in 0..nh {
                let qv = &q[qi * qs + op.q_offset + head * d..][..d];
                let scores: Vec<f64> = (0..op.lens[b])
                    .map(|j| {
                        let k = &kv[(op.starts[b] + j) * kvs + op.k_offset + head * d..][..d];
                        qv.iter()
                            .zip(k)
                            .map(|(&a, &b)| a as f64 * b as f64)
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let z: f64 = e.iter().sum();
                for t in 0..d {
                    let v: f64 = (0..op.lens[b])
                        .map(|j| {
                            e[j] * kv[(op.starts[b] + j) * kvs + op.v_offset + head * d + t] as f64
                        })
                        .sum();
                    out[n * nh * d + head * d + t] = (v / z) as f32;
                }
            }
        }
        out
    }

    simd_paths!(attention_kernel_matches_plain);
    fn attention_kernel_matches_plain(s: Simd) {
        // Head size 64 takes the tiled path, 24 the generic one; lengths not multiples of 16.
        for head_dim in [64, 24] {
            let heads = 2;
            let h = heads * head_dim;
            let lens = vec![5, 19, 1, 33];
            let starts: Vec<usize> = lens
                .iter()
                .scan(0, |at, &l| {
                    let s = *at;
                    *at += l;
                    Some(s)
                })
                .collect();
            let rows: usize = lens.iter().sum();
            // One fused projection [rows, 3h]: queries, keys, values side by side.
            let qkv: Vec<f32> = noise(rows * 3 * h, head_dim as u64)
                .iter()
                .map(|x| x * 2.0)
                .collect();
            let mut queries = Vec::new();
            for (b, &l) in lens.iter().enumerate() {
                for i in (0..l).step_by(3) {
                    queries.push((b, starts[b] + i, queries.len()));
                }
            }
            let op = Attention {
                heads,
                head_dim,
                starts,
                lens,
                out_rows: queries.len(),
                queries,
                q_offset: 0,
                k_offset: h,
                v_offset: 2 * h,
            };
            let want = plain_attention(&op, &qkv, 3 * h, &qkv, 3 * h);
            let got = attend_on(s, &op, &qkv, 3 * h, &qkv, 3 * h, &op.queries);
            let worst = max_abs_diff(&got, &want);
            assert!(
                worst < 1e-5,
                "{s:?}, head size {head_dim}: max |diff| {worst}"
            );
        }
    }

    #[test]
    fn matches_exact_gelu() {
        let xs: Vec<f32> = (-2000..=2000)
            .map(|i| i as f32 * 0.01)
            .chain([-90.0, 90.0, 0.0, -0.0])
            .collect();
        let t = Tensor::new(xs.as_slice(), &candle_core::Device::Cpu).unwrap();
        let fast: Vec<f32> = gelu_erf(&t).unwrap().to_vec1().unwrap();
        let exact: Vec<f32> = t.gelu_erf().unwrap().to_vec1().unwrap();
        let worst = max_abs_diff(&fast, &exact);
        assert!(worst < 2e-6, "max |diff| {worst}");
    }

    #[test]
    fn add_layer_norm_matches_candle() {
        let dev = candle_core::Device::Cpu;
        let (m, n) = (37, 200); // rows of 200: not a multiple of the 16 lanes
        let seeded = |rows: usize, seed: u64| {
            Tensor::from_vec(noise(rows * n, seed), (rows, n), &dev).unwrap()
        };
        let (x, r, p) = (seeded(m, 6), seeded(m, 7), seeded(3, 8));
        let ln = candle_nn::LayerNorm::new(p.get(1).unwrap(), p.get(2).unwrap(), 1e-12);
        let sum = x
            .broadcast_add(&p.get(0).unwrap())
            .unwrap()
            .add(&r)
            .unwrap();
        let want: Vec<f32> = candle_nn::Module::forward(&ln, &sum)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let fused = x.copy().unwrap();
        fused
            .inplace_op3(&r, &p, &AddLayerNorm { eps: 1e-12 })
            .unwrap();
        let got: Vec<f32> = fused.flatten_all().unwrap().to_vec1().unwrap();
        let worst = max_abs_diff(&got, &want);
        assert!(worst < 1e-5, "max |diff| {worst}");
    }
}
