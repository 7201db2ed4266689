//! `pelt bench`: table construction on fixed contexts, and the `ui`, `scale` and `open`
//! benchmarks.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};

use pelt::model::{bundled_model_dir, DeviceChoice};
use pelt::outpath::{Inputs, OutputKind, Replace};

use super::Precision;

/// `pelt bench`'s flags (those of the construction benchmark) and its other benchmarks.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: Option<BenchWhat>,
    /// Which model: bundled, bert-base, both, or a model directory.
    #[arg(long, default_value = "both")]
    model: String,
    /// Contexts (JSON Lines: entity, text, start, end); default: the committed
    /// bench/nyt-contexts.jsonl, which the binary carries.
    #[arg(long)]
    contexts: Option<PathBuf>,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Batches encoded at a time on the CPU (0: one per core); see `pelt build --encoders`.
    #[arg(long, default_value_t = 0)]
    encoders: usize,
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// auto: bf16 on CUDA GPUs that run it, f32 elsewhere.
    #[arg(long, value_enum, default_value = "auto")]
    dtype: Precision,
    /// Where the random bert-base model is written (reused when present).
    #[arg(long, default_value = "target/bench-models/bert-base")]
    model_dir: PathBuf,
    /// Side of the square matmul used to measure the machine's peak in the benchmarked
    /// dtype on the benchmarked device (0 skips it).
    #[arg(long, default_value_t = 1536)]
    matmul: usize,
    /// Run the generic path on the CPU: candle's tensor operations on padded batches and
    /// candle's matmul (the path accelerators take), not the fused f32 CPU kernels.
    #[arg(long)]
    generic: bool,
    /// Write results (and vectors, for bench/compare.py) as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Replace an existing --json even when it is not a report of pelt.
    #[arg(long)]
    force: bool,
}

/// Other benchmarks than table construction.
#[derive(Subcommand, Debug)]
pub enum BenchWhat {
    /// The workbench window, headless, on a synthetic table: frame times of the entity list,
    /// Inspector and Map, a neighbour query and opening the table.
    Ui(UiArgs),
    /// Tables at scale: for each entity count, a synthetic linked corpus (one mention per
    /// entity) is built with a random one-layer BERT of width --hidden, each build and each
    /// open in a process of its own: peak memory, table size, open time, exact query time.
    Scale(ScaleArgs),
    /// Open a table and time exact neighbour queries; prints one JSON line (time to open,
    /// resident memory after opening and after the queries; query times on the fastest scan
    /// loop, on the portable one beside it, and centred with the mean computed once).
    Open(OpenArgs),
}

/// `pelt bench ui`'s flags.
#[derive(Args, Debug)]
pub struct UiArgs {
    #[arg(long, default_value_t = 100_000)]
    entities: usize,
    #[arg(long, default_value_t = 768)]
    hidden: usize,
    /// Frames timed per view.
    #[arg(long, default_value_t = 30)]
    frames: usize,
    /// Where the synthetic table is written (removed afterwards).
    #[arg(long, default_value = "target")]
    dir: PathBuf,
}

/// `pelt bench scale`'s flags.
#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// Entity counts, comma-separated.
    #[arg(long, default_value = "100000,300000,1000000", value_delimiter = ',')]
    entities: Vec<usize>,
    #[arg(long, default_value_t = 768)]
    hidden: usize,
    /// Runs per entity count (the spread between them is printed).
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// How the tables store their vectors: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    vectors: String,
    /// Where the corpora, the model and the tables go (corpora and model are reused).
    #[arg(long, default_value = "target/bench-scale")]
    dir: PathBuf,
    /// The builds' memory budget (`pelt build --memory`).
    #[arg(long, default_value = "1G")]
    memory: String,
}

/// `pelt bench open`'s flags.
#[derive(Args, Debug)]
pub struct OpenArgs {
    #[arg(long)]
    table: PathBuf,
    #[arg(long, default_value_t = 5)]
    queries: usize,
}

/// `pelt bench` and its subcommands.
pub fn run(args: BenchArgs, out: &mut dyn Write) -> Result<()> {
    match args.what {
        Some(BenchWhat::Scale(s)) => {
            pelt::table::VectorDtype::parse(&s.vectors)?;
            pelt::build::parse_memory(&s.memory)?;
            crate::scale::run(
                &s.entities,
                s.hidden,
                s.runs,
                &s.dir,
                &s.vectors,
                &s.memory,
                out,
            )
        }
        Some(BenchWhat::Open(o)) => {
            let v = crate::scale::open_and_query(&o.table, o.queries)?;
            writeln!(out, "{v}")?;
            Ok(())
        }
        Some(BenchWhat::Ui(u)) => ui(u),
        None => construction(args, out),
    }
}

/// `pelt bench ui`.
fn ui(args: UiArgs) -> Result<()> {
    #[cfg(feature = "gui")]
    {
        crate::ui::bench::run(args.entities, args.hidden, args.frames, &args.dir)
    }
    #[cfg(not(feature = "gui"))]
    {
        let _ = args;
        bail!("this build has no GUI (built without the `gui` feature)")
    }
}

/// `pelt bench` without a subcommand: table construction on a fixed set of contexts.
fn construction(args: BenchArgs, out: &mut dyn Write) -> Result<()> {
    let BenchArgs {
        what: _,
        model,
        contexts,
        batch,
        encoders,
        device,
        dtype,
        model_dir,
        matmul,
        generic,
        json,
        force,
    } = args;
    if batch == 0 {
        bail!("--batch must be at least 1");
    }
    crate::bench::check_matmul_size(matmul)?;
    let dev = device.open()?;
    let contexts = contexts.as_deref();
    let mut report = serde_json::Map::new();
    report.insert("pelt".into(), "bench".into());
    writeln!(
        out,
        "device: {}, cores: {}, CPU matmul: {}",
        pelt::model::describe_device(&dev),
        pelt::model::cores(),
        pelt::model::cpu_matmul()
    )?;
    report.insert("cpu_matmul".into(), pelt::model::cpu_matmul().into());
    let dtype = dtype.dtype_on(&dev);
    let dtype_name = format!("{dtype:?}").to_lowercase();
    report.insert("dtype".into(), dtype_name.clone().into());
    report.insert("generic".into(), generic.into());
    let mut peak = None;
    if matmul > 0 {
        let mm = crate::bench::bench_matmul(generic)?;
        let p = crate::bench::matmul_peak(&dev, dtype, mm, matmul)?;
        let via = mm.on(&dev, dtype).describe();
        writeln!(
            out,
            "matmul peak ({matmul}x{matmul} {dtype_name}, {via}): {p:.1} GFLOP/s"
        )?;
        report.insert("matmul_peak_gflops".into(), p.into());
        report.insert("matmul_peak_dtype".into(), dtype_name.clone().into());
        peak = Some(p);
    }
    let dirs: Vec<(String, PathBuf)> = match model.as_str() {
        "bundled" => vec![("bundled".into(), bundled_model_dir())],
        "bert-base" => vec![("bert-base".into(), model_dir.clone())],
        "both" => vec![
            ("bundled".into(), bundled_model_dir()),
            ("bert-base".into(), model_dir.clone()),
        ],
        other => vec![(other.into(), PathBuf::from(other))],
    };
    if let Some(p) = &json {
        // Checked before the (long) run as well as before writing.
        bench_inputs(contexts, &dirs).check_output(
            "--json",
            p,
            OutputKind::Report,
            Replace::forced(force),
        )?;
    }
    for (label, dir) in dirs.clone() {
        if label == "bert-base" && !dir.join("model.safetensors").exists() {
            eprintln!("writing random bert-base weights to {} …", dir.display());
            crate::bench::write_random_bert(&dir, crate::bench::BERT_BASE, 42)?;
        }
        let r = crate::bench::run(&dir, &dev, dtype, contexts, batch, encoders, generic)?;
        let path = match r.path.as_str() {
            "fused" => "fused CPU kernels, packed rows".to_string(),
            _ => format!(
                "generic tensor ops, padded rows, layers from {}",
                r.generic_layers
            ),
        };
        writeln!(
            out,
            "{label}: {} contexts ({} entities), batch {} ({} at a time), {}, {path}, dense layers on {}: {:.1} contexts/s encoding, {:.1} contexts/s with model loading ({:.2} s); {:.0} tokens/s ({} tokens, {} rows processed); encoder matmuls {:.1} GFLOP/s{}; peak memory {:.0} MiB",
            r.contexts, r.entities, r.batch, r.encoders, r.dtype, r.matmul, r.contexts_per_sec, r.contexts_per_sec_total, r.load_secs, r.tokens_per_sec,
            r.tokens, r.padded_tokens, r.gflops,
            peak.map(|p| format!(" ({:.0} % of the peak)", 100.0 * r.gflops / p)).unwrap_or_default(),
            r.peak_rss_mb
        )?;
        let mut v = serde_json::to_value(&r)?;
        v["dir"] = dir.display().to_string().into();
        v["vectors"] = serde_json::to_value(
            r.vectors
                .iter()
                .cloned()
                .collect::<std::collections::BTreeMap<_, _>>(),
        )?;
        report.insert(label, v);
    }
    if let Some(p) = json {
        bench_inputs(contexts, &dirs).check_output(
            "--json",
            &p,
            OutputKind::Report,
            Replace::forced(force),
        )?;
        pelt::io::write_atomic(&p, serde_json::to_string(&report)?.as_bytes())?;
    }
    Ok(())
}

/// What `pelt bench` reads: the contexts file and the model directories' files.
fn bench_inputs(contexts: Option<&Path>, dirs: &[(String, PathBuf)]) -> Inputs {
    let mut inputs = Inputs::new();
    if let Some(c) = contexts {
        inputs.add("contexts file", c);
    }
    for (_, dir) in dirs {
        inputs.add_all("model file", crate::bench::model_files(dir));
    }
    inputs
}
