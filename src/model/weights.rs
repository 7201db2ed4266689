//! Reading checkpoint tensors with names normalised across checkpoint conventions, and
//! shape-checked access that names the file and tensor on every error.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::config::Family;
use super::cpu::kernels::{self, Epilogue};
use super::cpu::pool;
use super::cpu::sgemm::{Init, Isa, PackedWeight};

pub struct Weights {
    source: Source,
    /// Normalised name -> name in the file.
    names: HashMap<String, String>,
    file: PathBuf,
    device: Device,
    dtype: DType,
}

/// Where tensors come from: a memory-mapped safetensors file (each tensor is copied once,
/// straight to its device, when asked for) or a PyTorch checkpoint read whole.
enum Source {
    Mapped(candle_core::safetensors::MmapedSafetensors),
    Loaded(HashMap<String, Tensor>),
}

/// Finds the weights file of a model directory: `model.safetensors`, else `pytorch_model.bin`.
pub fn weights_file(dir: &Path) -> Result<PathBuf> {
    for name in ["model.safetensors", "pytorch_model.bin"] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "{}: no weights file (expected model.safetensors or pytorch_model.bin)",
        dir.display()
    )
}

impl Weights {
    pub fn load(file: &Path, family: Family, device: &Device, dtype: DType) -> Result<Self> {
        let (source, raw_names): (Source, Vec<String>) =
            if file.extension().and_then(|e| e.to_str()) == Some("safetensors") {
                // SAFETY: the file is mapped read-only; like every reader of safetensors files,
                // this assumes nobody truncates it while the model loads.
                let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(file) }
                    .with_context(|| format!("{}: cannot read safetensors", file.display()))?;
                let names = st.tensors().into_iter().map(|(n, _)| n).collect();
                (Source::Mapped(st), names)
            } else {
                let all = candle_core::pickle::read_all(file).with_context(|| {
                    format!("{}: cannot read PyTorch checkpoint", file.display())
                })?;
                let names = all.iter().map(|(n, _)| n.clone()).collect();
                (Source::Loaded(all.into_iter().collect()), names)
            };
        let prefix = family.name();
        let has_prefix = raw_names
            .iter()
            .any(|k| k.starts_with(&format!("{prefix}.")));
        let mut names = HashMap::with_capacity(raw_names.len());
        for raw in raw_names {
            let mut name = normalise_name(&raw);
            // Checkpoints saved from the bare encoder (BertModel…) have no `bert.` prefix.
            if !has_prefix
                && (name.starts_with("embeddings.")
                    || name.starts_with("encoder.")
                    || name.starts_with("transformer."))
            {
                name = format!("{prefix}.{name}");
            }
            names.insert(name, raw);
        }
        Ok(Weights {
            source,
            names,
            file: file.to_path_buf(),
            device: device.clone(),
            dtype,
        })
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// The tensor `name`, checked to have `shape`, converted to the model dtype on the model device.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        use candle_core::safetensors::Load;
        let missing = || format!("{}: missing tensor `{name}`", self.file.display());
        let raw = self.names.get(name).with_context(missing)?;
        let t = match &self.source {
            Source::Mapped(st) => {
                let v = st.get(raw).with_context(missing)?;
                let dtype = DType::try_from(v.dtype()).map_err(|_| {
                    anyhow::anyhow!(
                        "{}: tensor `{name}` has unsupported dtype {:?}",
                        self.file.display(),
                        v.dtype()
                    )
                })?;
                self.check(name, v.shape(), dtype, shape)?;
                v.load(&self.device).with_context(|| {
                    format!("{}: cannot read tensor `{name}`", self.file.display())
                })?
            }
            Source::Loaded(m) => {
                let t = m.get(raw).with_context(missing)?;
                self.check(name, t.dims(), t.dtype(), shape)?;
                t.to_device(&self.device)?
            }
        };
        Ok(t.to_dtype(self.dtype)?)
    }

    /// Checks that tensor `name`, of `dims` and `dtype` in the file, is a float of `shape`.
    fn check(&self, name: &str, dims: &[usize], dtype: DType, shape: &[usize]) -> Result<()> {
        if dims != shape {
            bail!(
                "{}: tensor `{name}` has shape {:?}, expected {:?}",
                self.file.display(),
                dims,
                shape
            );
        }
        if !dtype.is_float() {
            bail!(
                "{}: tensor `{name}` has dtype {:?}, expected a floating-point type",
                self.file.display(),
                dtype
            );
        }
        Ok(())
    }

    /// The first of `names` that exists (all checked against `shape`).
    pub fn get_any(&self, names: &[&str], shape: &[usize]) -> Result<Tensor> {
        for n in names {
            if self.contains(n) {
                return self.get(n, shape);
            }
        }
        bail!(
            "{}: missing tensor `{}`{}",
            self.file.display(),
            names[0],
            if names.len() > 1 {
                format!(" (also looked for {})", names[1..].join(", "))
            } else {
                String::new()
            }
        )
    }

    pub fn linear(&self, prefix: &str, in_dim: usize, out_dim: usize) -> Result<Linear> {
        Ok(Linear::new(
            self.get(&format!("{prefix}.weight"), &[out_dim, in_dim])?,
            self.get(&format!("{prefix}.bias"), &[out_dim])?,
        ))
    }

    pub fn layer_norm(&self, prefix: &str, dim: usize, eps: f64) -> Result<candle_nn::LayerNorm> {
        Ok(candle_nn::LayerNorm::new(
            self.get(&format!("{prefix}.weight"), &[dim])?,
            self.get(&format!("{prefix}.bias"), &[dim])?,
            eps,
        ))
    }
}

/// Maps legacy names (`gamma`/`beta` of old TF-converted LayerNorms) to current ones.
fn normalise_name(name: &str) -> String {
    if let Some(stem) = name.strip_suffix(".gamma") {
        format!("{stem}.weight")
    } else if let Some(stem) = name.strip_suffix(".beta") {
        format!("{stem}.bias")
    } else {
        name.to_string()
    }
}

/// What the dense layers of an f32 model on the CPU multiply with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Matmul {
    /// This crate's packed sgemm (weights packed at load time) with the micro-kernel of `Isa`.
    Packed(Isa),
    /// The system OpenBLAS `cblas_sgemm` (builds that found it, see src/build_probe.rs).
    OpenBlas,
    /// candle's built-in matmul (the `gemm` crate).
    Candle,
}

impl Matmul {
    /// Every path this build can run on this CPU, fastest first.
    pub fn available() -> Vec<Matmul> {
        let mut v: Vec<Matmul> = [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .filter(|i| i.supported())
            .map(Matmul::Packed)
            .collect();
        if cfg!(pelt_blas) {
            v.push(Matmul::OpenBlas);
        }
        v.push(Matmul::Candle);
        v
    }

    /// The path models load with: `PELT_MATMUL` (`packed`, `avx512`, `avx2`, `openblas`,
    /// `candle`) when set, else the first of [`Matmul::available`].
    pub fn auto() -> Result<Matmul> {
        match std::env::var("PELT_MATMUL") {
            Ok(v) if !v.is_empty() && v != "auto" => Matmul::parse(&v),
            _ => Ok(Matmul::available()[0]),
        }
    }

    /// A path by name (see [`Matmul::auto`]); an error says which exist here.
    pub fn parse(name: &str) -> Result<Matmul> {
        let avail = Matmul::available();
        let found = match name {
            "packed" => avail
                .first()
                .copied()
                .filter(|m| matches!(m, Matmul::Packed(_))),
            other => avail.iter().copied().find(|m| m.name() == other),
        };
        found.ok_or_else(|| {
            anyhow::anyhow!(
                "PELT_MATMUL={name}: not available in this build on this CPU; available: {}",
                avail
                    .iter()
                    .map(|m| m.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Matmul::Packed(isa) => isa.name(),
            Matmul::OpenBlas => "openblas",
            Matmul::Candle => "candle",
        }
    }

    /// What dense layers in `dtype` on `device` multiply with when `self` is asked for: `self`
    /// for f32 on the CPU, candle's matmul elsewhere (see [`Linear::pack`]).
    pub fn on(self, device: &Device, dtype: DType) -> Matmul {
        if device.is_cpu() && dtype == DType::F32 {
            self
        } else {
            Matmul::Candle
        }
    }

    /// A line for reports: what runs the dense layers.
    pub fn describe(self) -> &'static str {
        match self {
            Matmul::Packed(Isa::Avx512) => "packed sgemm, AVX-512 micro-kernel",
            Matmul::Packed(Isa::Avx2) => "packed sgemm, AVX2+FMA micro-kernel",
            Matmul::OpenBlas => "OpenBLAS sgemm",
            Matmul::Candle => "candle's built-in matmul",
        }
    }
}

/// A weight packed for [`sgemm`](super::cpu::sgemm) with its bias as plain values.
struct Packed {
    w: PackedWeight,
    b: Vec<f32>,
}

/// `x · wᵀ` through a packed weight, then an epilogue, as a candle op on f32 CPU tensors.
struct PackedProduct<'a> {
    p: &'a Packed,
    epilogue: Epilogue,
}

impl candle_core::CustomOp1 for PackedProduct<'_> {
    fn name(&self) -> &'static str {
        "packed-sgemm"
    }

    fn cpu_fwd(
        &self,
        s: &candle_core::CpuStorage,
        l: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let (m, k) = l.shape().dims2()?;
        let (n, kw) = self.p.w.dims();
        if k != kw {
            candle_core::bail!("sgemm: input [{m},{k}] does not fit weight [{n},{kw}]");
        }
        let x = kernels::f32_slice(s, l, "sgemm input")?;
        let init = match self.epilogue {
            Epilogue::None => Init::Zero,
            Epilogue::Bias | Epilogue::BiasGelu => Init::Bias(&self.p.b),
        };
        let gelu = |v: &mut [f32]| kernels::gelu_slice(v, &[]);
        let post =
            (self.epilogue == Epilogue::BiasGelu).then_some(&gelu as &(dyn Fn(&mut [f32]) + Sync));
        let out = self.p.w.matmul(x, m, init, post, pool::threads());
        Ok((
            candle_core::CpuStorage::F32(out),
            candle_core::Shape::from((m, n)),
        ))
    }
}

/// A dense layer on 2-D inputs `[rows, in] -> [rows, out]`, weight `[out, in]` as stored in
/// checkpoints. After [`Linear::pack`] an f32 CPU layer holds its weight packed for the
/// sgemm micro-kernels instead (and no other copy of it).
#[derive(Clone)]
pub struct Linear {
    w: Option<Tensor>,
    pub b: Tensor,
    packed: Option<std::sync::Arc<Packed>>,
    matmul: Matmul,
}

impl Linear {
    pub fn new(w: Tensor, b: Tensor) -> Self {
        Linear {
            w: Some(w),
            b,
            packed: None,
            matmul: Matmul::Candle,
        }
    }

    /// The layer multiplying with `matmul` where it applies (an f32 weight on the CPU): packs
    /// the weight for [`Matmul::Packed`]. Elsewhere candle's matmul stays.
    pub fn pack(self, matmul: Matmul) -> candle_core::Result<Self> {
        let Some(w) = &self.w else {
            return Ok(self);
        };
        if !w.device().is_cpu() || w.dtype() != DType::F32 || w.rank() != 2 {
            return Ok(self);
        }
        match matmul {
            Matmul::Packed(isa) => {
                let (n, k) = w.dims2()?;
                let w = w.contiguous()?;
                let (storage, layout) = w.storage_and_layout();
                let candle_core::Storage::Cpu(cpu) = &*storage else {
                    candle_core::bail!("sgemm: the weight is not on the CPU");
                };
                let data = kernels::f32_slice(cpu, layout, "sgemm weight")?;
                let packed = PackedWeight::new(data, n, k, isa).ok_or_else(|| {
                    candle_core::Error::Msg(format!("this CPU cannot run the {isa:?} sgemm"))
                })?;
                drop(storage);
                let b = self.b.to_dtype(DType::F32)?.to_vec1()?;
                Ok(Linear {
                    w: None,
                    b: self.b,
                    packed: Some(std::sync::Arc::new(Packed { w: packed, b })),
                    matmul,
                })
            }
            _ => Ok(Linear { matmul, ..self }),
        }
    }

    /// What this layer multiplies with.
    pub fn matmul(&self) -> Matmul {
        self.matmul
    }

    /// The weight `[out, in]` as a tensor (unpacked again for packed layers).
    pub fn weight(&self) -> candle_core::Result<Tensor> {
        if let Some(w) = &self.w {
            return Ok(w.clone());
        }
        candle_core::bail!("the weight of this layer is packed for the CPU sgemm")
    }

    /// The fast CPU product of `x` with `epilogue`, where this layer has one for `x`.
    fn fast(&self, x: &Tensor, epilogue: Epilogue) -> Option<candle_core::Result<Tensor>> {
        if !x.device().is_cpu() || x.dtype() != DType::F32 || x.rank() != 2 {
            return None;
        }
        if let Some(p) = &self.packed {
            let op = PackedProduct { p, epilogue };
            return Some(x.contiguous().and_then(|x| x.apply_op1_no_bwd(&op)));
        }
        #[cfg(pelt_blas)]
        if self.matmul == Matmul::OpenBlas {
            let w = self.w.as_ref()?;
            return super::cpu::blas::affine(x, w, &self.b, epilogue);
        }
        None
    }

    fn unpacked(&self) -> candle_core::Result<&Tensor> {
        self.w.as_ref().ok_or_else(|| {
            candle_core::Error::Msg("a packed layer was given a non-f32 or non-CPU input".into())
        })
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if let Some(r) = self.fast(x, Epilogue::Bias) {
            return r;
        }
        x.matmul(&self.unpacked()?.t()?)?.broadcast_add(&self.b)
    }

    /// `x · wᵀ` without the bias, for the fused kernels that add it (f32 on the CPU).
    fn product(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if let Some(r) = self.fast(x, Epilogue::None) {
            return r;
        }
        x.matmul(&self.unpacked()?.t()?)
    }

    /// `gelu(x · wᵀ + b)` with the fused f32 CPU kernels (the caller checks they apply).
    pub fn forward_gelu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if let Some(r) = self.fast(x, Epilogue::BiasGelu) {
            return r;
        }
        let p = self.product(x)?;
        kernels::bias_gelu_in_place(&p, &self.b)?;
        Ok(p)
    }

    /// `LayerNorm(x · wᵀ + b + residual)` with the fused f32 CPU kernels (the caller checks
    /// they apply); `post` is `[3, out]`: this layer's bias, the LayerNorm's gamma and beta.
    pub fn forward_add_ln(
        &self,
        x: &Tensor,
        residual: &Tensor,
        post: &Tensor,
        eps: f64,
    ) -> candle_core::Result<Tensor> {
        // The product is a fresh tensor that nothing else refers to: normalised in place.
        let p = self.product(x)?;
        p.inplace_op3(
            &residual.contiguous()?,
            post,
            &kernels::AddLayerNorm { eps: eps as f32 },
        )?;
        Ok(p)
    }

    /// Concatenates several layers on the output dimension (fused Q/K/V projection).
    /// (Before [`Linear::pack`].)
    pub fn concat(parts: &[Linear]) -> candle_core::Result<Linear> {
        let ws = parts
            .iter()
            .map(|l| l.unpacked())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let bs: Vec<&Tensor> = parts.iter().map(|l| &l.b).collect();
        Ok(Linear::new(Tensor::cat(&ws, 0)?, Tensor::cat(&bs, 0)?))
    }
}
