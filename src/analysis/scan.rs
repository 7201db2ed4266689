//! Exact scans over a table's stored vectors, read in place: one pass over each row gives the
//! three dot products a (centred) cosine needs. On x86-64 with AVX2 and FMA the rows are read
//! eight lanes at a time in their stored type (f32, f16 through F16C, bf16 by a shift), chosen
//! at run time; elsewhere a portable loop does the same sums.

use crate::table::VectorDtype;

/// A stored row `v`'s dot products with itself, with the query `q` and with the mean `m`
/// (zero without one).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RowDots {
    pub vv: f32,
    pub vq: f32,
    pub vm: f32,
}

/// Which loop a [`RowScanner`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanKernel {
    /// Eight f32 lanes, any CPU.
    Portable,
    /// AVX2 and FMA (F16C for f16 rows), two 8-lane accumulators per product.
    Avx2,
}

impl ScanKernel {
    /// The fastest loop this CPU runs for rows of `dtype`.
    pub fn best(dtype: VectorDtype) -> ScanKernel {
        #[cfg(all(target_arch = "x86_64", target_endian = "little"))]
        {
            let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            let f16c = dtype != VectorDtype::F16 || is_x86_feature_detected!("f16c");
            if avx2 && f16c {
                return ScanKernel::Avx2;
            }
        }
        let _ = dtype;
        ScanKernel::Portable
    }

    pub fn name(self) -> &'static str {
        match self {
            ScanKernel::Portable => "portable",
            ScanKernel::Avx2 => "avx2",
        }
    }
}

/// Dot products of stored rows with one query (and optionally one mean), row by row.
#[derive(Clone, Copy)]
pub struct RowScanner<'a> {
    dtype: VectorDtype,
    q: &'a [f32],
    m: Option<&'a [f32]>,
    kernel: ScanKernel,
}

impl<'a> RowScanner<'a> {
    /// A scanner of rows of `dtype` as wide as `q` (and `m`, which must be as wide), on the
    /// fastest loop this CPU has.
    pub fn new(dtype: VectorDtype, q: &'a [f32], m: Option<&'a [f32]>) -> RowScanner<'a> {
        RowScanner::with_kernel(dtype, q, m, ScanKernel::best(dtype))
    }

    /// A scanner on a given loop; one this CPU cannot run falls back to the portable one.
    pub fn with_kernel(
        dtype: VectorDtype,
        q: &'a [f32],
        m: Option<&'a [f32]>,
        kernel: ScanKernel,
    ) -> RowScanner<'a> {
        assert!(
            m.is_none_or(|m| m.len() == q.len()),
            "mean and query differ in width"
        );
        let kernel = match kernel {
            ScanKernel::Avx2 if ScanKernel::best(dtype) == ScanKernel::Avx2 => ScanKernel::Avx2,
            _ => ScanKernel::Portable,
        };
        RowScanner {
            dtype,
            q,
            m,
            kernel,
        }
    }

    pub fn kernel(&self) -> ScanKernel {
        self.kernel
    }

    /// The dot products of the stored row `row` (`q.len()` little-endian values of the
    /// scanner's type).
    pub fn dots(&self, row: &[u8]) -> RowDots {
        let h = self.q.len();
        assert_eq!(row.len(), h * self.dtype.size(), "a row of another width");
        #[cfg(all(target_arch = "x86_64", target_endian = "little"))]
        if self.kernel == ScanKernel::Avx2 {
            // SAFETY: `kernel` is Avx2 only where the CPU has AVX2, FMA and (for f16) F16C;
            // the row holds `h` values of the type read and `q`, `m` hold `h` each.
            return unsafe {
                match (self.dtype, self.m) {
                    (VectorDtype::F32, None) => x86::f32_plain(row.as_ptr(), self.q, h),
                    (VectorDtype::F32, Some(m)) => x86::f32_centred(row.as_ptr(), self.q, m, h),
                    (VectorDtype::F16, None) => x86::f16_plain(row.as_ptr(), self.q, h),
                    (VectorDtype::F16, Some(m)) => x86::f16_centred(row.as_ptr(), self.q, m, h),
                    (VectorDtype::BF16, None) => x86::bf16_plain(row.as_ptr(), self.q, h),
                    (VectorDtype::BF16, Some(m)) => x86::bf16_centred(row.as_ptr(), self.q, m, h),
                }
            };
        }
        portable(self.dtype, row, self.q, self.m)
    }
}

fn value(dtype: VectorDtype, row: &[u8], i: usize) -> f32 {
    match dtype {
        VectorDtype::F32 => f32::from_le_bytes(row[4 * i..4 * i + 4].try_into().expect("4 bytes")),
        VectorDtype::F16 => half::f16::from_le_bytes([row[2 * i], row[2 * i + 1]]).to_f32(),
        VectorDtype::BF16 => half::bf16::from_le_bytes([row[2 * i], row[2 * i + 1]]).to_f32(),
    }
}

/// The row as f32: borrowed where it is aligned little-endian f32, decoded otherwise.
fn as_f32(dtype: VectorDtype, row: &[u8]) -> std::borrow::Cow<'_, [f32]> {
    if dtype == VectorDtype::F32 && cfg!(target_endian = "little") {
        // SAFETY: f32 has no invalid bit patterns; alignment is checked by align_to.
        let (pre, mid, post) = unsafe { row.align_to::<f32>() };
        if pre.is_empty() && post.is_empty() {
            return std::borrow::Cow::Borrowed(mid);
        }
    }
    (0..row.len() / dtype.size())
        .map(|i| value(dtype, row, i))
        .collect()
}

/// Eight f32 lanes per product over the row decoded to f32 (the compiler vectorises them).
fn portable(dtype: VectorDtype, row: &[u8], q: &[f32], m: Option<&[f32]>) -> RowDots {
    let v = as_f32(dtype, row);
    let dot = |b: &[f32]| super::dot32(&v, b);
    RowDots {
        vv: dot(&v),
        vq: dot(q),
        vm: m.map_or(0.0, dot),
    }
}

#[cfg(all(target_arch = "x86_64", target_endian = "little"))]
mod x86 {
    use super::RowDots;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// One kernel per stored type and per presence of a mean: `$load(p, i)` reads values
    /// `i..i + 8` of the row at `p` as f32 lanes, `$one(p, i)` value `i`.
    macro_rules! kernel {
        ($name:ident, $features:literal, centred: $centred:literal, $load:expr, $one:expr) => {
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $name(p: *const u8, q: &[f32], m: &[f32], h: usize) -> RowDots {
                let (mut vv0, mut vv1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                let (mut vq0, mut vq1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                let (mut vm0, mut vm1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                let (qp, mp) = (q.as_ptr(), m.as_ptr());
                let mut i = 0;
                while i + 16 <= h {
                    let (x0, x1) = ($load(p, i), $load(p, i + 8));
                    vv0 = _mm256_fmadd_ps(x0, x0, vv0);
                    vv1 = _mm256_fmadd_ps(x1, x1, vv1);
                    vq0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(qp.add(i)), vq0);
                    vq1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(qp.add(i + 8)), vq1);
                    if $centred {
                        vm0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(mp.add(i)), vm0);
                        vm1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(mp.add(i + 8)), vm1);
                    }
                    i += 16;
                }
                let mut d = RowDots {
                    vv: hsum(_mm256_add_ps(vv0, vv1)),
                    vq: hsum(_mm256_add_ps(vq0, vq1)),
                    vm: hsum(_mm256_add_ps(vm0, vm1)),
                };
                while i < h {
                    let x: f32 = $one(p, i);
                    d.vv += x * x;
                    d.vq += x * *qp.add(i);
                    if $centred {
                        d.vm += x * *mp.add(i);
                    }
                    i += 1;
                }
                d
            }
        };
    }

    #[inline(always)]
    unsafe fn load_f32(p: *const u8, i: usize) -> __m256 {
        _mm256_loadu_ps(p.add(4 * i) as *const f32)
    }
    #[inline(always)]
    unsafe fn one_f32(p: *const u8, i: usize) -> f32 {
        (p.add(4 * i) as *const f32).read_unaligned()
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const u8, i: usize) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p.add(2 * i) as *const __m128i))
    }
    #[inline(always)]
    unsafe fn one_f16(p: *const u8, i: usize) -> f32 {
        half::f16::from_bits((p.add(2 * i) as *const u16).read_unaligned()).to_f32()
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u8, i: usize) -> __m256 {
        let w = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.add(2 * i) as *const __m128i));
        _mm256_castsi256_ps(_mm256_slli_epi32(w, 16))
    }
    #[inline(always)]
    unsafe fn one_bf16(p: *const u8, i: usize) -> f32 {
        f32::from_bits(((p.add(2 * i) as *const u16).read_unaligned() as u32) << 16)
    }

    kernel!(f32_c, "avx2,fma", centred: true, load_f32, one_f32);
    kernel!(f32_p, "avx2,fma", centred: false, load_f32, one_f32);
    kernel!(f16_c, "avx2,fma,f16c", centred: true, load_f16, one_f16);
    kernel!(f16_p, "avx2,fma,f16c", centred: false, load_f16, one_f16);
    kernel!(bf16_c, "avx2,fma", centred: true, load_bf16, one_bf16);
    kernel!(bf16_p, "avx2,fma", centred: false, load_bf16, one_bf16);

    // The plain kernels read no mean: `q` stands in for it.
    pub(super) unsafe fn f32_plain(p: *const u8, q: &[f32], h: usize) -> RowDots {
        f32_p(p, q, q, h)
    }
    pub(super) unsafe fn f32_centred(p: *const u8, q: &[f32], m: &[f32], h: usize) -> RowDots {
        f32_c(p, q, m, h)
    }
    pub(super) unsafe fn f16_plain(p: *const u8, q: &[f32], h: usize) -> RowDots {
        f16_p(p, q, q, h)
    }
    pub(super) unsafe fn f16_centred(p: *const u8, q: &[f32], m: &[f32], h: usize) -> RowDots {
        f16_c(p, q, m, h)
    }
    pub(super) unsafe fn bf16_plain(p: *const u8, q: &[f32], h: usize) -> RowDots {
        bf16_p(p, q, q, h)
    }
    pub(super) unsafe fn bf16_centred(p: *const u8, q: &[f32], m: &[f32], h: usize) -> RowDots {
        bf16_c(p, q, m, h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(dtype: VectorDtype, v: &[f32]) -> Vec<u8> {
        v.iter()
            .flat_map(|&x| match dtype {
                VectorDtype::F32 => x.to_le_bytes().to_vec(),
                VectorDtype::F16 => half::f16::from_f32(x).to_le_bytes().to_vec(),
                VectorDtype::BF16 => half::bf16::from_f32(x).to_le_bytes().to_vec(),
            })
            .collect()
    }

    /// Every loop, every stored type, widths with and without a tail, at an odd byte offset:
    /// the sums agree with f64 sums over the stored values.
    #[test]
    fn every_loop_gives_the_dot_products_of_the_stored_values() {
        for dtype in [VectorDtype::F32, VectorDtype::F16, VectorDtype::BF16] {
            for h in [1usize, 7, 8, 16, 23, 768] {
                let v: Vec<f32> = (0..h).map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0).collect();
                let q: Vec<f32> = (0..h).map(|i| ((i * 13 % 7) as f32 - 3.0) / 2.0).collect();
                let m: Vec<f32> = (0..h).map(|i| ((i * 5 % 9) as f32 - 4.0) / 5.0).collect();
                let mut bytes = vec![0u8];
                bytes.extend(encode(dtype, &v));
                let row = &bytes[1..];
                let stored: Vec<f64> = (0..h).map(|i| value(dtype, row, i) as f64).collect();
                let dot = |b: &[f32]| {
                    stored
                        .iter()
                        .zip(b)
                        .map(|(a, b)| a * *b as f64)
                        .sum::<f64>()
                };
                let want = (stored.iter().map(|a| a * a).sum::<f64>(), dot(&q), dot(&m));
                for kernel in [ScanKernel::Portable, ScanKernel::Avx2] {
                    let s = RowScanner::with_kernel(dtype, &q, Some(&m), kernel);
                    let d = s.dots(row);
                    let close = |a: f32, b: f64| (a as f64 - b).abs() <= 1e-4 * (1.0 + b.abs());
                    assert!(
                        close(d.vv, want.0) && close(d.vq, want.1) && close(d.vm, want.2),
                        "{dtype:?} h={h} {:?}: {d:?} vs {want:?}",
                        s.kernel()
                    );
                    let plain = RowScanner::with_kernel(dtype, &q, None, kernel).dots(row);
                    assert_eq!((plain.vv, plain.vq, plain.vm), (d.vv, d.vq, 0.0));
                }
            }
        }
    }
}
