//! The model half of the engine: a local Hugging Face checkpoint directory loaded into an
//! encoder that PELT can drive (injections in, transform outputs and logits out).

mod bundled;
mod config;
mod cpu;
mod encoder;
pub mod hub;
mod tokenizer;
mod weights;

pub use config::{Activation, Config, Family};
pub use cpu::{cores, on_this_thread, Isa};
pub use encoder::{Encoder, EncoderOutput, Injection};
pub use tokenizer::{Encoded, TextTokenizer};
pub use weights::{weights_file, Linear, Matmul};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// What the dense layers of f32 models on the CPU run on here (see [`Matmul::auto`]).
pub fn cpu_matmul() -> &'static str {
    match Matmul::auto() {
        Ok(m) => m.describe(),
        Err(_) => "none: PELT_MATMUL names a path this build or CPU lacks",
    }
}

pub use bundled::{
    bundled_model_path, data_dir, embedded_files, unpacked_root, write_files, Files,
};

/// Directory of the model bundled with the project (SPLADE-tiny-msmarco, a BERT MLM): see
/// [`bundled_model_path`], which says why when there is none.
pub fn bundled_model_dir() -> PathBuf {
    bundled_model_path().unwrap_or_else(|_| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/models/splade-tiny-msmarco")
    })
}

/// A model given as a folder or a cached Hugging Face id (`ORG/NAME[@REV]`); `None` is the
/// bundled model.
pub fn resolve_model(spec: Option<&str>) -> Result<PathBuf> {
    match spec {
        None => bundled_model_path(),
        Some(s) => hub::resolve(s),
    }
}

/// Where the model runs. `Auto` takes an accelerator when this build and machine have one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    /// The first CUDA GPU (`cuda`, `cuda:0`).
    Cuda,
    /// The CUDA GPU of this ordinal (`cuda:N`): one machine with several GPUs runs one shard
    /// per GPU.
    CudaOrdinal(usize),
    Metal,
}

impl std::str::FromStr for DeviceChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" => DeviceChoice::Auto,
            "cpu" => DeviceChoice::Cpu,
            "cuda" | "gpu" => DeviceChoice::Cuda,
            "metal" => DeviceChoice::Metal,
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(0)) => DeviceChoice::Cuda,
                Some(Ok(n)) => DeviceChoice::CudaOrdinal(n),
                _ => bail!(
                    "unknown device `{}` (expected auto, cpu, cuda, cuda:N or metal)",
                    crate::escape::text(other)
                ),
            },
        })
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
            DeviceChoice::CudaOrdinal(n) => return write!(f, "cuda:{n}"),
            DeviceChoice::Metal => "metal",
        })
    }
}

impl DeviceChoice {
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda | DeviceChoice::CudaOrdinal(_) => {
                if !cfg!(feature = "cuda") {
                    bail!("this build of pelt has no CUDA support: rebuild with `--features cuda`, or use --device cpu");
                }
                let n = match self {
                    DeviceChoice::CudaOrdinal(n) => n,
                    _ => 0,
                };
                Device::new_cuda(n).with_context(|| {
                    format!(
                        "no usable CUDA device {n} (is a driver installed and that GPU visible?)"
                    )
                })
            }
            DeviceChoice::Metal => {
                if !cfg!(feature = "metal") {
                    bail!("this build of pelt has no Metal support: rebuild with `--features metal`, or use --device cpu");
                }
                Device::new_metal(0).context("no usable Metal device")
            }
            DeviceChoice::Auto => {
                if cfg!(feature = "cuda") && candle_core::utils::cuda_is_available() {
                    if let Ok(d) = Device::new_cuda(0) {
                        return Ok(d);
                    }
                }
                if cfg!(feature = "metal") && candle_core::utils::metal_is_available() {
                    if let Ok(d) = Device::new_metal(0) {
                        return Ok(d);
                    }
                }
                Ok(Device::Cpu)
            }
        }
    }
}

/// The precision of the model's weights and activations. `Auto` is bf16 on a CUDA GPU that
/// runs it (compute capability 8.0 or newer, checked by a small bf16 computation on the
/// device) and f32 everywhere else (the CPU, Metal, older GPUs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum DtypeChoice {
    #[default]
    Auto,
    F32,
    F16,
    Bf16,
}

impl std::str::FromStr for DtypeChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" => DtypeChoice::Auto,
            "f32" => DtypeChoice::F32,
            "f16" => DtypeChoice::F16,
            "bf16" => DtypeChoice::Bf16,
            other => bail!("unknown dtype `{other}` (expected auto, f32, f16 or bf16)"),
        })
    }
}

impl std::fmt::Display for DtypeChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DtypeChoice::Auto => "auto",
            DtypeChoice::F32 => "f32",
            DtypeChoice::F16 => "f16",
            DtypeChoice::Bf16 => "bf16",
        })
    }
}

impl DtypeChoice {
    pub const ALL: [DtypeChoice; 4] = [
        DtypeChoice::Auto,
        DtypeChoice::F32,
        DtypeChoice::F16,
        DtypeChoice::Bf16,
    ];

    /// The dtype to load a model with on `device`.
    pub fn resolve(self, device: &Device) -> DType {
        match self {
            DtypeChoice::Auto => auto_dtype(device),
            DtypeChoice::F32 => DType::F32,
            DtypeChoice::F16 => DType::F16,
            DtypeChoice::Bf16 => DType::BF16,
        }
    }
}

/// What `--dtype auto` picks on `device` (computed once per process and device kind).
pub fn auto_dtype(device: &Device) -> DType {
    match device {
        Device::Cuda(_) => {
            static CUDA: OnceLock<DType> = OnceLock::new();
            *CUDA.get_or_init(|| {
                if cuda_compute_capability(device).is_some_and(|(major, _)| major < 8) {
                    return DType::F32;
                }
                if bf16_probe(device).is_ok() {
                    DType::BF16
                } else {
                    DType::F32
                }
            })
        }
        // Metal's bf16 is not verified here; the CPU is fastest in f32 (its fused kernels).
        _ => DType::F32,
    }
}

/// `(major, minor)` of a CUDA device.
#[cfg(feature = "cuda")]
fn cuda_compute_capability(device: &Device) -> Option<(i32, i32)> {
    device
        .as_cuda_device()
        .ok()?
        .cuda_stream()
        .context()
        .compute_capability()
        .ok()
}

#[cfg(not(feature = "cuda"))]
fn cuda_compute_capability(_device: &Device) -> Option<(i32, i32)> {
    None
}

/// Runs the operations of the encoder once in bf16 on `device` (matmul, embedding lookup,
/// softmax, gelu, LayerNorm, conversion) and checks the result: an error, or a wrong value,
/// means bf16 is not usable there.
pub fn bf16_probe(device: &Device) -> Result<()> {
    use candle_core::Tensor;
    let bf = DType::BF16;
    let a = Tensor::ones((4, 16), bf, device)?;
    let b = Tensor::ones((16, 8), bf, device)?;
    let p = a.matmul(&b)?; // every entry 16
    let ids = Tensor::new(&[1u32, 0, 3], device)?;
    let rows = p.index_select(&ids, 0)?;
    let s = candle_nn::ops::softmax_last_dim(&rows)?; // every entry 1/8
    let g = s.gelu_erf()?;
    let w = Tensor::ones(8, bf, device)?;
    let z = Tensor::zeros(8, bf, device)?;
    let ln = candle_nn::ops::layer_norm(&(&rows + &g)?, &w, &z, 1e-5)?; // constant rows → 0
    let got: Vec<f32> = p
        .flatten_all()?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?
        .into_iter()
        .chain(s.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
        .chain(ln.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
        .collect();
    let (pm, rest) = got.split_at(32);
    let (sm, lm) = rest.split_at(24);
    let ok = pm.iter().all(|&x| x == 16.0)
        && sm.iter().all(|&x| (x - 0.125).abs() < 1e-2)
        && lm.iter().all(|&x| x.abs() < 1e-2);
    if !ok {
        bail!("bf16 results are wrong on this device");
    }
    Ok(())
}

/// A dtype's short name: `f32`, `f16`, `bf16`, …
pub fn dtype_name(d: DType) -> &'static str {
    d.as_str()
}

pub fn describe_device(d: &Device) -> &'static str {
    match d {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda",
        Device::Metal(_) => "metal",
    }
}

/// A loaded checkpoint: configuration, tokenizer and encoder.
pub struct Model {
    pub dir: PathBuf,
    pub config: Config,
    pub tokenizer: TextTokenizer,
    pub encoder: Encoder,
    weights_path: PathBuf,
    sha256: OnceLock<String>,
}

impl Model {
    /// Loads `dir` (config.json, a tokenizer, model.safetensors or pytorch_model.bin).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        Self::load_with_dtype(dir, device, DType::F32)
    }

    pub fn load_with_dtype(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        Self::load_with_matmul(dir, device, dtype, Matmul::auto()?)
    }

    /// As [`Model::load_with_dtype`], with the dense layers of an f32 CPU model on `matmul`.
    pub fn load_with_matmul(
        dir: &Path,
        device: &Device,
        dtype: DType,
        matmul: Matmul,
    ) -> Result<Self> {
        if !dir.is_dir() {
            bail!("model directory {} does not exist", dir.display());
        }
        let cfg_path = dir.join("config.json");
        if !cfg_path.is_file() {
            bail!("{}: missing config.json", dir.display());
        }
        let config = Config::from_file(&cfg_path)?;
        let tokenizer = TextTokenizer::load(dir, config.family)?;
        if tokenizer.vocab_size() > config.vocab_size {
            bail!(
                "tokenizer/model mismatch: {} produces token ids up to {} but {} says vocab_size = {}",
                tokenizer.source,
                tokenizer.vocab_size() - 1,
                cfg_path.display(),
                config.vocab_size
            );
        }
        let weights_path = weights_file(dir)?;
        let w = weights::Weights::load(&weights_path, config.family, device, dtype)?;
        let encoder = Encoder::load(&w, &config, device, dtype, matmul)?;
        Ok(Model {
            dir: dir.to_path_buf(),
            config,
            tokenizer,
            encoder,
            weights_path,
            sha256: OnceLock::new(),
        })
    }

    pub fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    pub fn weights_path(&self) -> &Path {
        &self.weights_path
    }

    /// sha256 of the weights file, hex (computed once).
    pub fn weights_sha256(&self) -> Result<String> {
        if let Some(s) = self.sha256.get() {
            return Ok(s.clone());
        }
        let s = sha256_file(&self.weights_path)?;
        Ok(self.sha256.get_or_init(|| s).clone())
    }

    /// The files of the model directory this crate reads (weights, config, tokenizer), for
    /// refusing outputs that would overwrite them.
    pub fn input_files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.weights_path.clone()];
        for f in [
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
            "vocab.txt",
            "vocab.json",
            "merges.txt",
        ] {
            let p = self.dir.join(f);
            if p.exists() {
                files.push(p);
            }
        }
        files
    }

    /// A short name for the model (its directory name).
    pub fn name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.dir.display().to_string())
    }
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!("{:x}", h.finalize()))
}

/// `log Σ exp(logits)` (f64 accumulation, shifted by the maximum): the log-partition of a
/// logit row, so that `logits[i] - log_sum_exp(logits)` is the log-softmax.
pub fn log_sum_exp(logits: &[f32]) -> f64 {
    let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    m + logits
        .iter()
        .map(|&x| (x as f64 - m).exp())
        .sum::<f64>()
        .ln()
}

/// Softmax of a logit row into probabilities (f64 accumulation).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let lse = log_sum_exp(logits);
    logits
        .iter()
        .map(|&x| (x as f64 - lse).exp() as f32)
        .collect()
}

/// Indices of the `k` largest values, largest first.
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    let k = k.min(idx.len());
    if k == 0 {
        return vec![];
    }
    idx.select_nth_unstable_by(k - 1, |&a, &b| values[b].total_cmp(&values[a]));
    idx.truncate(k);
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    idx
}

#[cfg(test)]
mod tests {
    use super::DeviceChoice;

    #[test]
    fn devices_parse_and_print_back_with_their_gpu_ordinal() {
        for (text, want) in [
            ("auto", DeviceChoice::Auto),
            ("CPU", DeviceChoice::Cpu),
            ("cuda", DeviceChoice::Cuda),
            ("gpu", DeviceChoice::Cuda),
            ("cuda:0", DeviceChoice::Cuda),
            ("cuda:3", DeviceChoice::CudaOrdinal(3)),
            ("metal", DeviceChoice::Metal),
        ] {
            let got: DeviceChoice = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string().parse::<DeviceChoice>().unwrap(), got);
        }
        assert_eq!(DeviceChoice::CudaOrdinal(3).to_string(), "cuda:3");
        for bad in ["cuda:", "cuda:x", "cuda:-1", "tpu"] {
            let e = bad.parse::<DeviceChoice>().unwrap_err().to_string();
            assert!(e.contains("cuda:N"), "{bad}: {e}");
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_gpu_ordinal_without_cuda_support_says_how_to_get_it() {
        let e = DeviceChoice::CudaOrdinal(2).open().unwrap_err().to_string();
        assert!(e.contains("--features cuda"), "{e}");
    }
}
