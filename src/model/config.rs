//! `config.json` of a Hugging Face masked-language-model checkpoint.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// The largest size a config field may give (vocabulary, hidden size, layers, …).
const MAX_SIZE: usize = 1 << 24;
/// The largest weight matrix (elements) a config may imply.
const MAX_TENSOR: usize = 1 << 34;

/// The encoder families this crate can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Family {
    Bert,
    Roberta,
    DistilBert,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Bert => "bert",
            Family::Roberta => "roberta",
            Family::DistilBert => "distilbert",
        }
    }
}

/// Activation function named by the config (`hidden_act` / `activation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// Exact gelu, `x * Φ(x)` (HF "gelu").
    Gelu,
    /// Tanh approximation (HF "gelu_new", "gelu_pytorch_tanh", "gelu_fast").
    GeluTanh,
    Relu,
}

impl Activation {
    fn parse(s: &str, file: &Path, field: &str) -> Result<Self> {
        Ok(match s {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => bail!(
                "{}: field `{field}` = \"{other}\" is not a supported activation (gelu, gelu_new, relu)",
                file.display()
            ),
        })
    }
}

/// The subset of a checkpoint's configuration the encoder needs, unified across families.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    /// 0 for families without token-type embeddings (DistilBERT).
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub pad_token_id: u32,
    pub activation: Activation,
}

struct Fields<'a> {
    v: &'a Value,
    file: &'a Path,
}

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.v.get(name).filter(|x| !x.is_null())
    }
    fn usize(&self, name: &str) -> Result<usize> {
        let x = self
            .get(name)
            .with_context(|| format!("{}: missing field `{name}`", self.file.display()))?;
        x.as_u64().map(|n| n as usize).with_context(|| {
            format!(
                "{}: field `{name}` should be a non-negative integer, found {x}",
                self.file.display()
            )
        })
    }
    fn usize_or(&self, name: &str, default: usize) -> Result<usize> {
        if self.get(name).is_some() {
            self.usize(name)
        } else {
            Ok(default)
        }
    }
    fn u32_or(&self, name: &str, default: u32) -> Result<u32> {
        let v = self.usize_or(name, default as usize)?;
        u32::try_from(v).map_err(|_| {
            anyhow::anyhow!("{}: field `{name}` = {v} is too large", self.file.display())
        })
    }
    fn f64_or(&self, name: &str, default: f64) -> Result<f64> {
        match self.get(name) {
            None => Ok(default),
            Some(x) => x.as_f64().with_context(|| {
                format!(
                    "{}: field `{name}` should be a number, found {x}",
                    self.file.display()
                )
            }),
        }
    }
    fn str_or<'b>(&'b self, name: &str, default: &'b str) -> Result<&'b str> {
        match self.get(name) {
            None => Ok(default),
            Some(x) => x.as_str().with_context(|| {
                format!(
                    "{}: field `{name}` should be a string, found {x}",
                    self.file.display()
                )
            }),
        }
    }
}

/// The largest `config.json` or `tokenizer_config.json` read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A small text file read whole, refused past `limit` bytes without reading further.
pub fn read_small_text(path: &Path, limit: u64) -> Result<String> {
    use std::io::Read;
    let f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut bytes = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > limit {
        anyhow::bail!(
            "{} is larger than the limit of {limit} bytes for a model's configuration",
            path.display()
        );
    }
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{}: not valid UTF-8", path.display()))
}

impl Config {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = read_small_text(path, MAX_CONFIG_BYTES)?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not valid JSON", path.display()))?;
        Self::from_json(&v, path)
    }

    pub fn from_json(v: &Value, file: &Path) -> Result<Self> {
        let f = Fields { v, file };
        let family = detect_family(v).with_context(|| {
            format!(
                "{}: cannot tell the model family from `model_type` / `architectures` (supported: bert, roberta, distilbert)",
                file.display()
            )
        })?;
        let cfg = match family {
            Family::DistilBert => Config {
                family,
                vocab_size: f.usize("vocab_size")?,
                hidden_size: f.usize("dim")?,
                num_layers: f.usize("n_layers")?,
                num_heads: f.usize("n_heads")?,
                intermediate_size: f.usize("hidden_dim")?,
                max_position_embeddings: f.usize("max_position_embeddings")?,
                type_vocab_size: 0,
                layer_norm_eps: 1e-12,
                pad_token_id: f.u32_or("pad_token_id", 0)?,
                activation: Activation::parse(f.str_or("activation", "gelu")?, file, "activation")?,
            },
            Family::Bert | Family::Roberta => Config {
                family,
                vocab_size: f.usize("vocab_size")?,
                hidden_size: f.usize("hidden_size")?,
                num_layers: f.usize("num_hidden_layers")?,
                num_heads: f.usize("num_attention_heads")?,
                intermediate_size: f.usize("intermediate_size")?,
                max_position_embeddings: f.usize("max_position_embeddings")?,
                type_vocab_size: f.usize_or("type_vocab_size", 2)?,
                layer_norm_eps: f.f64_or("layer_norm_eps", 1e-12)?,
                pad_token_id: f.u32_or(
                    "pad_token_id",
                    if family == Family::Roberta { 1 } else { 0 },
                )?,
                activation: Activation::parse(f.str_or("hidden_act", "gelu")?, file, "hidden_act")?,
            },
        };
        cfg.validate(file)?;
        Ok(cfg)
    }

    /// Refuses values no encoder can run with, naming the file and the field.
    fn validate(&self, file: &Path) -> Result<()> {
        let f = file.display();
        let distil = self.family == Family::DistilBert;
        let name = |bert: &'static str, distil_name: &'static str| {
            if distil {
                distil_name
            } else {
                bert
            }
        };
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            (name("hidden_size", "dim"), self.hidden_size),
            (name("num_hidden_layers", "n_layers"), self.num_layers),
            (name("num_attention_heads", "n_heads"), self.num_heads),
            (
                name("intermediate_size", "hidden_dim"),
                self.intermediate_size,
            ),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                bail!("{f}: field `{field}` is 0, expected a positive integer");
            }
            if v > MAX_SIZE {
                bail!("{f}: field `{field}` = {v} is too large (at most {MAX_SIZE})");
            }
        }
        if self.type_vocab_size > MAX_SIZE {
            bail!(
                "{f}: field `type_vocab_size` = {} is too large (at most {MAX_SIZE})",
                self.type_vocab_size
            );
        }
        if !self.hidden_size.is_multiple_of(self.num_heads) {
            bail!(
                "{f}: hidden size {} (field `{}`) is not divisible by the number of attention heads {} (field `{}`)",
                self.hidden_size,
                name("hidden_size", "dim"),
                self.num_heads,
                name("num_attention_heads", "n_heads")
            );
        }
        for (what, a, b) in [
            (
                "vocab_size x hidden size",
                self.vocab_size,
                self.hidden_size,
            ),
            (
                "intermediate size x hidden size",
                self.intermediate_size,
                self.hidden_size,
            ),
            (
                "max_position_embeddings x hidden size",
                self.max_position_embeddings,
                self.hidden_size,
            ),
        ] {
            if a.checked_mul(b).is_none_or(|x| x > MAX_TENSOR) {
                bail!("{f}: {what} = {a} x {b} is too large for one weight matrix");
            }
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            bail!(
                "{f}: field `layer_norm_eps` = {}, expected a positive finite number",
                self.layer_norm_eps
            );
        }
        if self.pad_token_id as usize >= self.vocab_size {
            bail!(
                "{f}: field `pad_token_id` = {} is not below vocab_size {}",
                self.pad_token_id,
                self.vocab_size
            );
        }
        Ok(())
    }

    /// Number of positions a sequence may use (RoBERTa reserves `pad_token_id + 1` of them).
    pub fn max_sequence_len(&self) -> usize {
        match self.family {
            Family::Roberta => self
                .max_position_embeddings
                .saturating_sub(self.pad_token_id as usize + 1),
            _ => self.max_position_embeddings,
        }
    }
}

fn detect_family(v: &Value) -> Option<Family> {
    let from_name = |s: &str| {
        let s = s.to_ascii_lowercase();
        if s.contains("distilbert") {
            Some(Family::DistilBert)
        } else if s.contains("roberta") || s.contains("camembert") {
            Some(Family::Roberta)
        } else if s.contains("bert") {
            Some(Family::Bert)
        } else {
            None
        }
    };
    if let Some(mt) = v.get("model_type").and_then(Value::as_str) {
        if let Some(f) = from_name(mt) {
            return Some(f);
        }
    }
    v.get("architectures")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().filter_map(Value::as_str).find_map(from_name))
}
