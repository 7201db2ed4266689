//! `pelt bench`: table construction speed on a fixed, committed set of contexts
//! (`bench/nyt-contexts.jsonl`), for the bundled model and a bert-base-shaped model with
//! deterministic random weights (speed does not depend on weight values).

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use pelt::build::{encode_windows, plan_flat, BuildOptions, EncodeSink, EncodeState, WindowPlan};
use pelt::contexts::ContextRecord;
use pelt::io::{write_atomic, write_safetensors};
use pelt::model::{bundled_model_dir, Model};

/// One benchmark context: an entity mention in a sentence (byte span).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchContext {
    pub entity: String,
    #[serde(default)]
    pub name: String,
    pub text: String,
    pub start: usize,
    pub end: usize,
}

/// The committed contexts, compiled into the binary: a binary carried to another machine (a
/// GPU host, say) benchmarks the same set without the repository beside it.
const DEFAULT_CONTEXTS: &str = include_str!("../bench/nyt-contexts.jsonl");
/// How errors name [`DEFAULT_CONTEXTS`].
const DEFAULT_CONTEXTS_NAME: &str = "bench/nyt-contexts.jsonl (built in)";

/// Reads contexts from `path` (`None`: the committed set the binary carries); returns entity
/// ids (first-seen order) and records indexing them.
pub fn load_contexts(path: Option<&Path>) -> Result<(Vec<String>, Vec<ContextRecord>)> {
    match path {
        Some(p) => parse_contexts(
            &std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
            &p.display().to_string(),
        ),
        None => parse_contexts(DEFAULT_CONTEXTS, DEFAULT_CONTEXTS_NAME),
    }
}

/// Parses JSON Lines contexts; `name` is how errors name the source.
fn parse_contexts(text: &str, name: &str) -> Result<(Vec<String>, Vec<ContextRecord>)> {
    let mut ids: Vec<String> = Vec::new();
    let mut index: HashMap<String, u32> = HashMap::new();
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let c: BenchContext = serde_json::from_str(line)
            .with_context(|| format!("{name}:{}: not a context record", i + 1))?;
        if c.start >= c.end || c.text.get(c.start..c.end).is_none() {
            bail!(
                "{name}:{}: span {}..{} is not inside the text",
                i + 1,
                c.start,
                c.end
            );
        }
        let e = *index.entry(c.entity.clone()).or_insert_with(|| {
            ids.push(c.entity.clone());
            ids.len() as u32 - 1
        });
        records.push(ContextRecord {
            entity: e,
            file: 0,
            line: i as u32 + 1,
            sentence: 0,
            start: c.start as u32,
            end: c.end as u32,
            text: c.text,
            linked: false,
            offset: pelt::corpus::NO_OFFSET,
            checksum: None,
            source: Default::default(),
        });
    }
    Ok((ids, records))
}

/// The shape of a BERT encoder.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub vocab: usize,
    pub max_positions: usize,
}

pub const BERT_BASE: Shape = Shape {
    hidden: 768,
    layers: 12,
    heads: 12,
    intermediate: 3072,
    vocab: 30522,
    max_positions: 512,
};

/// Writes a BertForMaskedLM directory with deterministic random weights (normal, std 0.02;
/// LayerNorm weights 1, biases 0) and the bundled model's tokenizer (vocabulary 30522).
pub fn write_random_bert(dir: &Path, s: Shape, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cfg = serde_json::json!({
        "architectures": ["BertForMaskedLM"], "model_type": "bert", "hidden_size": s.hidden,
        "num_hidden_layers": s.layers, "num_attention_heads": s.heads, "intermediate_size": s.intermediate,
        "vocab_size": s.vocab, "max_position_embeddings": s.max_positions, "type_vocab_size": 2,
        "hidden_act": "gelu", "layer_norm_eps": 1e-12, "pad_token_id": 0,
    });
    write_atomic(
        &dir.join("config.json"),
        serde_json::to_string_pretty(&cfg)?.as_bytes(),
    )?;
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(bundled_model_dir().join(f), dir.join(f))
            .with_context(|| format!("cannot copy {f}"))?;
    }
    let mut w = RandomWeights {
        rng: seed ^ 0x9E37_79B9_7F4A_7C15,
        tensors: Vec::new(),
    };
    let (h, i) = (s.hidden, s.intermediate);
    let e = "bert.embeddings";
    w.normal(format!("{e}.word_embeddings.weight"), vec![s.vocab, h]);
    w.normal(
        format!("{e}.position_embeddings.weight"),
        vec![s.max_positions, h],
    );
    w.normal(format!("{e}.token_type_embeddings.weight"), vec![2, h]);
    w.layer_norm(&format!("{e}.LayerNorm"), h);
    for l in 0..s.layers {
        let p = format!("bert.encoder.layer.{l}");
        for (name, o, n) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", i, h),
            ("output.dense", h, i),
        ] {
            w.normal(format!("{p}.{name}.weight"), vec![o, n]);
            w.constant(format!("{p}.{name}.bias"), vec![o], 0.0);
        }
        w.layer_norm(&format!("{p}.attention.output.LayerNorm"), h);
        w.layer_norm(&format!("{p}.output.LayerNorm"), h);
    }
    w.normal("cls.predictions.transform.dense.weight".into(), vec![h, h]);
    w.constant("cls.predictions.transform.dense.bias".into(), vec![h], 0.0);
    w.layer_norm("cls.predictions.transform.LayerNorm", h);
    w.constant("cls.predictions.bias".into(), vec![s.vocab], 0.0);
    let refs: Vec<(String, &str, Vec<usize>, Vec<u8>)> = w
        .tensors
        .into_iter()
        .map(|(n, sh, d)| (n, "F32", sh, d))
        .collect();
    let meta = BTreeMap::from([("format", "pt".to_string())]);
    write_atomic(
        &dir.join("model.safetensors"),
        &write_safetensors(&meta, &refs)?,
    )
}

struct RandomWeights {
    rng: u64,
    tensors: Vec<(String, Vec<usize>, Vec<u8>)>,
}

impl RandomWeights {
    /// A standard normal sample (xorshift64* + Box-Muller).
    fn sample(&mut self) -> f64 {
        let mut u = || {
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            ((self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5)
                / (1u64 << 53) as f64
        };
        let (a, b) = (u(), u());
        (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
    }

    fn normal(&mut self, name: String, shape: Vec<usize>) {
        let n: usize = shape.iter().product();
        let data = (0..n)
            .flat_map(|_| ((self.sample() * 0.02) as f32).to_le_bytes())
            .collect();
        self.tensors.push((name, shape, data));
    }

    fn constant(&mut self, name: String, shape: Vec<usize>, v: f32) {
        let n: usize = shape.iter().product();
        self.tensors.push((name, shape, v.to_le_bytes().repeat(n)));
    }

    fn layer_norm(&mut self, prefix: &str, h: usize) {
        self.constant(format!("{prefix}.weight"), vec![h], 1.0);
        self.constant(format!("{prefix}.bias"), vec![h], 0.0);
    }
}

/// The largest side `pelt bench --matmul` accepts (three 16384² f32 matrices are 3 GiB).
pub const MAX_MATMUL: usize = 16384;

/// Refuses a `--matmul` side whose matrices would not fit in memory.
pub fn check_matmul_size(n: usize) -> Result<()> {
    if n > MAX_MATMUL {
        bail!("--matmul {n}: the side must be at most {MAX_MATMUL} (three {n}x{n} f32 matrices would need {:.0} GiB)", 3.0 * 4.0 * (n as f64).powi(2) / (1u64 << 30) as f64);
    }
    Ok(())
}

/// The files of a model directory the benchmark reads (those that exist).
pub fn model_files(dir: &Path) -> Vec<PathBuf> {
    [
        "model.safetensors",
        "pytorch_model.bin",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "vocab.json",
        "merges.txt",
    ]
    .iter()
    .map(|f| dir.join(f))
    .filter(|p| p.exists())
    .collect()
}

/// Matmul throughput of this machine in `dtype` on `device`, through the path the encoder's
/// dense layers use there (for f32 on the CPU: `matmul`, the packed sgemm, OpenBLAS or
/// candle; elsewhere candle's matmul): `[n,n] x [n,n]ᵀ`, best of several runs, in GFLOP/s.
/// The device is synchronised before the clock starts and before it stops.
pub fn matmul_peak(
    device: &Device,
    dtype: candle_core::DType,
    matmul: pelt::model::Matmul,
    n: usize,
) -> Result<f64> {
    check_matmul_size(n)?;
    let a = Tensor::randn(0f32, 1.0, (n, n), device)?.to_dtype(dtype)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), device)?.to_dtype(dtype)?;
    let dense = pelt::model::Linear::new(b, Tensor::zeros(n, dtype, device)?).pack(matmul)?;
    let _ = dense.forward(&a)?; // warm-up
    device.synchronize()?;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let c = dense.forward(&a)?;
        device.synchronize()?;
        best = best.min(t.elapsed().as_secs_f64());
        drop(c);
    }
    Ok(2.0 * (n as f64).powi(3) / best / 1e9)
}

/// What the dense layers of a model loaded for the benchmark multiply with: candle's matmul
/// on the generic path (as on an accelerator) unless `PELT_MATMUL` names one, else the
/// default of [`pelt::model::Matmul::auto`].
pub fn bench_matmul(generic: bool) -> Result<pelt::model::Matmul> {
    if generic && std::env::var_os("PELT_MATMUL").is_none_or(|v| v.is_empty()) {
        return Ok(pelt::model::Matmul::Candle);
    }
    pelt::model::Matmul::auto()
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub model: String,
    pub contexts: usize,
    pub entities: usize,
    pub batch: usize,
    /// Batches encoded at a time (see `BuildOptions::encoders`).
    pub encoders: usize,
    /// `fused` (the f32 CPU kernels on packed rows) or `generic` (candle tensor ops on
    /// padded rows, as on accelerators).
    pub path: String,
    /// Who runs the layers before the last on the generic path: `candle-transformers` or
    /// `pelt` (weights packed for the CPU sgemm); empty on the fused path.
    pub generic_layers: String,
    pub dtype: String,
    /// What the dense layers multiply with.
    pub matmul: String,
    pub load_secs: f64,
    pub encode_secs: f64,
    pub contexts_per_sec: f64,
    /// Including model loading.
    pub contexts_per_sec_total: f64,
    pub tokens: u64,
    pub padded_tokens: u64,
    pub tokens_per_sec: f64,
    pub gflops: f64,
    pub peak_rss_mb: f64,
    /// Per entity (ids order): the table vectors at norm 7.
    #[serde(skip)]
    pub vectors: Vec<(String, Vec<f32>)>,
}

/// Peak resident memory of this process (Linux), in MiB.
pub fn peak_rss_mb() -> f64 {
    status_mb("VmHWM:")
}

/// Resident memory of this process now (Linux), in MiB.
pub fn rss_mb() -> f64 {
    status_mb("VmRSS:")
}

/// A memory field of `/proc/self/status` (in kB there), in MiB; NaN where there is none.
fn status_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Loads the model from `dir` and builds the table of `contexts`, timing both. `generic`:
/// the fused CPU kernels off (see [`bench_matmul`]).
pub fn run(
    dir: &Path,
    device: &Device,
    dtype: candle_core::DType,
    contexts: Option<&Path>,
    batch: usize,
    encoders: usize,
    generic: bool,
) -> Result<BenchResult> {
    if batch == 0 {
        bail!("batch size must be at least 1");
    }
    let (ids, records) = load_contexts(contexts)?;
    let t0 = Instant::now();
    let mut model = Model::load_with_matmul(dir, device, dtype, bench_matmul(generic)?)?;
    model.encoder.set_cpu_kernels(!generic);
    let load_secs = t0.elapsed().as_secs_f64();
    // `--batch` contexts on every device (no token budget), so runs compare batch for batch.
    let opts = BuildOptions {
        batch,
        batch_tokens: 0,
        encoders,
        ..Default::default()
    };
    opts.validate()?;
    let h = model.hidden_size();
    /// Adds each window's sums into the whole run's (a context's entity may span windows).
    struct Sums {
        h: usize,
        sums: Vec<pelt::exact_sum::ExactSum>,
    }
    impl EncodeSink for Sums {
        fn window_done(
            &mut self,
            _: usize,
            _: &WindowPlan,
            _: &[pelt::table::ContextRecord],
            state: &EncodeState,
        ) -> Result<()> {
            for (&e, s) in &state.sums {
                let row = &mut self.sums[e as usize * self.h..(e as usize + 1) * self.h];
                for (a, b) in row.iter_mut().zip(&s.sum) {
                    a.add_sum(*b)?;
                }
            }
            Ok(())
        }
        fn checkpoint(&mut self, _: &EncodeState) -> Result<()> {
            Ok(())
        }
    }
    let mut sink = Sums {
        h,
        sums: vec![Default::default(); ids.len() * h],
    };
    let mut state = EncodeState::default();
    let plan = plan_flat(
        records.len(),
        opts.window_size(opts.batch_plan(model.encoder.packs_tokens())),
    );
    let t1 = Instant::now();
    encode_windows(
        &model,
        &plan,
        &|r| Ok(records[r].to_vec()),
        &opts,
        &mut state,
        &mut sink,
        &AtomicBool::new(false),
        &mut |_| {},
    )?;
    let encode_secs = t1.elapsed().as_secs_f64();
    let vectors = ids
        .iter()
        .enumerate()
        .map(|(e, id)| {
            let s: Vec<f32> = sink.sums[e * h..(e + 1) * h]
                .iter()
                .map(|x| x.to_f32())
                .collect();
            (id.clone(), pelt::table::scale_to_norm(&s, 7.0))
        })
        .collect();
    Ok(BenchResult {
        model: model.name(),
        contexts: state.done as usize,
        entities: ids.len(),
        batch,
        encoders: pelt::build::encoder_threads(&model, encoders),
        path: if model.encoder.packs_tokens() {
            "fused"
        } else {
            "generic"
        }
        .into(),
        generic_layers: match (
            model.encoder.packs_tokens(),
            model.encoder.generic_layers_from_candle_transformers(),
        ) {
            (true, _) => "",
            (false, true) => "candle-transformers",
            (false, false) => "pelt",
        }
        .into(),
        dtype: format!("{:?}", model.encoder.dtype()).to_lowercase(),
        matmul: model.encoder.matmul().describe().into(),
        load_secs,
        encode_secs,
        contexts_per_sec: state.done as f64 / encode_secs,
        contexts_per_sec_total: state.done as f64 / (encode_secs + load_secs),
        tokens: state.tokens,
        padded_tokens: state.padded_tokens,
        tokens_per_sec: state.tokens as f64 / encode_secs,
        gflops: state.flops / encode_secs / 1e9,
        peak_rss_mb: peak_rss_mb(),
        vectors,
    })
}
