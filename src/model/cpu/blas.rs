//! Dense layers through the system OpenBLAS `cblas_sgemm`, in builds that found it
//! (`cfg(pelt_blas)`, see src/build_probe.rs): on CPUs where OpenBLAS has tuned kernels it
//! reaches a larger share of the machine's peak than candle's built-in matmul. Used for f32
//! tensors on the CPU only.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::kernels::{f32_slice, Epilogue};

extern "C" {
    fn cblas_sgemm(
        order: i32,
        trans_a: i32,
        trans_b: i32,
        m: i32,
        n: i32,
        k: i32,
        alpha: f32,
        a: *const f32,
        lda: i32,
        b: *const f32,
        ldb: i32,
        beta: f32,
        c: *mut f32,
        ldc: i32,
    );
}

const ROW_MAJOR: i32 = 101;
const NO_TRANS: i32 = 111;
const TRANS: i32 = 112;

struct Affine {
    epilogue: Epilogue,
}

impl CustomOp3 for Affine {
    fn name(&self) -> &'static str {
        "openblas-affine"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (m, k) = l1.shape().dims2()?;
        let (n, k2) = l2.shape().dims2()?;
        if k != k2 || l3.shape().dims1()? != n {
            candle_core::bail!(
                "sgemm: shapes [{m},{k}] x [{n},{k2}]ᵀ + [{}] do not fit",
                l3.shape().elem_count()
            );
        }
        let (x, w, b) = (
            f32_slice(s1, l1, "sgemm input")?,
            f32_slice(s2, l2, "sgemm weight")?,
            f32_slice(s3, l3, "sgemm bias")?,
        );
        let dim = |v: usize, what: &str| {
            i32::try_from(v).map_err(|_| {
                candle_core::Error::Msg(format!(
                    "sgemm: {what} = {v} is larger than OpenBLAS accepts ({})",
                    i32::MAX
                ))
            })
        };
        let (mi, ni, ki) = (dim(m, "m")?, dim(n, "n")?, dim(k, "k")?);
        let len = m.checked_mul(n).ok_or_else(|| {
            candle_core::Error::Msg(format!("sgemm: output [{m},{n}] is too large"))
        })?;
        if x.len() < m * k || w.len() < n * k || b.len() != n {
            candle_core::bail!("sgemm: input slices are shorter than their shapes");
        }
        // Initialised before sgemm runs: the bias rows (beta = 1) or zeros (beta = 0), so no
        // value is left uninitialised whatever sgemm does (it writes nothing when k = 0).
        let mut out: Vec<f32> = if self.epilogue == Epilogue::Bias {
            let mut out = Vec::with_capacity(len);
            for _ in 0..m {
                out.extend_from_slice(b);
            }
            out
        } else {
            vec![0.0; len]
        };
        let beta = if self.epilogue == Epilogue::Bias {
            1.0
        } else {
            0.0
        };
        if m > 0 && n > 0 && k > 0 {
            // SAFETY: x holds m*k, w n*k and out m*n initialised f32 values, row-major, as
            // checked above; all dimensions fit in i32 and are at least 1, so the leading
            // dimensions k, k and n are valid; sgemm reads x and w and writes only out.
            unsafe {
                cblas_sgemm(
                    ROW_MAJOR,
                    NO_TRANS,
                    TRANS,
                    mi,
                    ni,
                    ki,
                    1.0,
                    x.as_ptr(),
                    ki,
                    w.as_ptr(),
                    ki,
                    beta,
                    out.as_mut_ptr(),
                    ni,
                );
            }
        }
        if self.epilogue == Epilogue::BiasGelu {
            super::kernels::gelu_in_place(&mut out, b);
        }
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }
}

/// `x · wᵀ` then `epilogue` with OpenBLAS when all three are f32 on the CPU; `None` otherwise.
pub fn affine(x: &Tensor, w: &Tensor, b: &Tensor, epilogue: Epilogue) -> Option<Result<Tensor>> {
    if !x.device().is_cpu() || x.dtype() != candle_core::DType::F32 || x.rank() != 2 {
        return None;
    }
    Some(
        x.contiguous()
            .and_then(|x| x.apply_op3_no_bwd(w, b, &Affine { epilogue })),
    )
}
