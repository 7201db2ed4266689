//! CPU kernels the encoder spends time in outside the matrix products: exact (erf) gelu in
//! branch-free f32 arithmetic that the compiler vectorises, split over the machine's cores.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

/// e^x for x in about [-87, 88]: range reduction to 2^n · e^r, |r| ≤ ln2/2, degree-6
/// polynomial (relative error ~2e-7).
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E).round();
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
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

fn gelu_slice(src: &[f32], dst: &mut [f32]) {
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = 0.5 * x * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2));
    }
}

struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf-f32"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(v) = s else {
            candle_core::bail!("gelu: not f32")
        };
        let Some((a, b)) = l.contiguous_offsets() else {
            candle_core::bail!("gelu: not contiguous")
        };
        let src = &v[a..b];
        let mut out = vec![0f32; src.len()];
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        if threads > 1 && src.len() >= 1 << 16 {
            let chunk = src.len().div_ceil(threads);
            std::thread::scope(|s| {
                for (i, o) in src.chunks(chunk).zip(out.chunks_mut(chunk)) {
                    s.spawn(move || gelu_slice(i, o));
                }
            });
        } else {
            gelu_slice(src, &mut out);
        }
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
