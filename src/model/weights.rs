//! Reading checkpoint tensors with names normalised across checkpoint conventions, and
//! shape-checked access that names the file and tensor on every error.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::config::Family;

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
        Ok(Linear {
            w: self.get(&format!("{prefix}.weight"), &[out_dim, in_dim])?,
            b: self.get(&format!("{prefix}.bias"), &[out_dim])?,
        })
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

/// A dense layer on 2-D inputs `[rows, in] -> [rows, out]`, weight `[out, in]` as stored in
/// checkpoints (the products read it transposed; no copy is made).
#[derive(Clone)]
pub struct Linear {
    pub w: Tensor,
    pub b: Tensor,
}

impl Linear {
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        #[cfg(pelt_blas)]
        if let Some(r) = super::blas::affine(x, &self.w, &self.b, super::blas::Epilogue::Bias) {
            return r;
        }
        x.matmul(&self.w.t()?)?.broadcast_add(&self.b)
    }

    /// `x · wᵀ` without the bias, for the fused kernels that add it (f32 on the CPU).
    fn product(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        #[cfg(pelt_blas)]
        if let Some(r) = super::blas::affine(x, &self.w, &self.b, super::blas::Epilogue::None) {
            return r;
        }
        x.matmul(&self.w.t()?)
    }

    /// `gelu(x · wᵀ + b)` with the fused f32 CPU kernels (the caller checks they apply).
    pub fn forward_gelu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        #[cfg(pelt_blas)]
        if let Some(r) = super::blas::affine(x, &self.w, &self.b, super::blas::Epilogue::BiasGelu) {
            return r;
        }
        let p = self.product(x)?;
        super::kernels::bias_gelu_in_place(&p, &self.b)?;
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
            &super::kernels::AddLayerNorm { eps: eps as f32 },
        )?;
        Ok(p)
    }

    /// Concatenates several layers on the output dimension (fused Q/K/V projection).
    pub fn concat(parts: &[Linear]) -> candle_core::Result<Linear> {
        let ws: Vec<&Tensor> = parts.iter().map(|l| &l.w).collect();
        let bs: Vec<&Tensor> = parts.iter().map(|l| &l.b).collect();
        Ok(Linear {
            w: Tensor::cat(&ws, 0)?,
            b: Tensor::cat(&bs, 0)?,
        })
    }
}
