//! The encoder's CPU kernels for f32 models: the helper threads (`pool`), the fused
//! element-wise, LayerNorm and attention kernels (`kernels`), the packed sgemm of the dense
//! layers (`sgemm`) and, in builds that found it, OpenBLAS (`blas`).
//!
//! Imports run one way: `pool` ← `kernels` ← `sgemm`, `blas`. Nothing here imports the rest
//! of the model; the encoder and its layers (`weights.rs`, `encoder.rs`) import from here.

#[cfg(pelt_blas)]
pub(super) mod blas;
pub(super) mod kernels;
pub(super) mod pool;
pub(super) mod sgemm;

pub use pool::{cores, on_this_thread};
pub use sgemm::Isa;
