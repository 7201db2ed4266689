//! Reading checkpoint tensors with names normalised across checkpoint conventions, and
//! shape-checked access that names the file and tensor on every error.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::config::Family;

pub struct Weights {
    map: HashMap<String, Tensor>,
    file: PathBuf,
    device: Device,
    dtype: DType,
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
        let raw: Vec<(String, Tensor)> = if file.extension().and_then(|e| e.to_str())
            == Some("safetensors")
        {
            candle_core::safetensors::load(file, &Device::Cpu)
                .with_context(|| format!("{}: cannot read safetensors", file.display()))?
                .into_iter()
                .collect()
        } else {
            candle_core::pickle::read_all(file)
                .with_context(|| format!("{}: cannot read PyTorch checkpoint", file.display()))?
        };
        let prefix = family.name();
        let has_prefix = raw
            .iter()
            .any(|(k, _)| k.starts_with(&format!("{prefix}.")));
        let mut map = HashMap::with_capacity(raw.len());
        for (name, t) in raw {
            let mut name = normalise_name(&name);
            // Checkpoints saved from the bare encoder (BertModel…) have no `bert.` prefix.
            if !has_prefix
                && (name.starts_with("embeddings.")
                    || name.starts_with("encoder.")
                    || name.starts_with("transformer."))
            {
                name = format!("{prefix}.{name}");
            }
            map.insert(name, t);
        }
        Ok(Weights {
            map,
            file: file.to_path_buf(),
            device: device.clone(),
            dtype,
        })
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// The tensor `name`, checked to have `shape`, converted to the model dtype on the model device.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self
            .map
            .get(name)
            .with_context(|| format!("{}: missing tensor `{name}`", self.file.display()))?;
        if t.dims() != shape {
            bail!(
                "{}: tensor `{name}` has shape {:?}, expected {:?}",
                self.file.display(),
                t.dims(),
                shape
            );
        }
        if !t.dtype().is_float() {
            bail!(
                "{}: tensor `{name}` has dtype {:?}, expected a floating-point type",
                self.file.display(),
                t.dtype()
            );
        }
        Ok(t.to_dtype(self.dtype)?.to_device(&self.device)?)
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
            w_t: self
                .get(&format!("{prefix}.weight"), &[out_dim, in_dim])?
                .t()?
                .contiguous()?,
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

/// A dense layer on 2-D inputs `[rows, in] -> [rows, out]`, weight stored transposed.
#[derive(Clone)]
pub struct Linear {
    pub w_t: Tensor,
    pub b: Tensor,
}

impl Linear {
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        #[cfg(feature = "openblas")]
        if let Some(r) = super::blas::affine(x, &self.w_t, &self.b, false) {
            return r;
        }
        x.matmul(&self.w_t)?.broadcast_add(&self.b)
    }

    /// `gelu(x · w_t + b)` with the fused f32 CPU kernels (the caller checks they apply).
    pub fn forward_gelu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        #[cfg(feature = "openblas")]
        if let Some(r) = super::blas::affine(x, &self.w_t, &self.b, true) {
            return r;
        }
        super::kernels::gelu_erf(&self.forward(x)?)
    }

    /// Concatenates several layers on the output dimension (fused Q/K/V projection).
    pub fn concat(parts: &[Linear]) -> candle_core::Result<Linear> {
        let ws: Vec<&Tensor> = parts.iter().map(|l| &l.w_t).collect();
        let bs: Vec<&Tensor> = parts.iter().map(|l| &l.b).collect();
        Ok(Linear {
            w_t: Tensor::cat(&ws, 1)?.contiguous()?,
            b: Tensor::cat(&bs, 0)?,
        })
    }
}
