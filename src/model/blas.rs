//! Dense layers through the system OpenBLAS `cblas_sgemm`, in builds that found it
//! (`cfg(pelt_blas)`, see src/build_probe.rs): on CPUs where OpenBLAS has tuned kernels it
//! reaches a larger share of the machine's peak than candle's built-in matmul. Used for f32
//! tensors on the CPU only.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::kernels::f32_slice;

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

/// What is done with the product `x [m,k] · wᵀ` (`w` `[n,k]`).
#[derive(Clone, Copy, PartialEq)]
pub enum Epilogue {
    /// `+ b`.
    Bias,
    /// `gelu(· + b)`, exact, applied in place (the activation costs no extra tensor).
    BiasGelu,
    /// Nothing: the bias is added by whoever takes the product next (see `AddLayerNorm`).
    None,
}

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
        let mut out: Vec<f32> = Vec::with_capacity(m * n);
        let beta = if self.epilogue == Epilogue::Bias {
            for _ in 0..m {
                out.extend_from_slice(b);
            }
            1.0
        } else {
            0.0 // sgemm writes the output without reading it
        };
        if m > 0 && n > 0 {
            // SAFETY: the slices hold m*k, n*k and m*n f32 values in row-major order.
            unsafe {
                cblas_sgemm(
                    ROW_MAJOR,
                    NO_TRANS,
                    TRANS,
                    m as i32,
                    n as i32,
                    k as i32,
                    1.0,
                    x.as_ptr(),
                    k as i32,
                    w.as_ptr(),
                    k as i32,
                    beta,
                    out.as_mut_ptr(),
                    n as i32,
                );
                // SAFETY: sgemm has written all m*n values.
                out.set_len(m * n);
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
