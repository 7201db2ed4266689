//! The headless command line (`pelt <subcommand>`), on the same engine as the GUI.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use pelt::build::{
    build_table, checkpoint_path, parse_shard, BuildInput, BuildOptions, BuildOutcome,
};
use pelt::corpus::Corpus;
use pelt::entities::{load_entities, EntityList};
use pelt::model::{bundled_model_dir, DeviceChoice, Model};
use pelt::progress::Progress;
use pelt::table::Table;

#[derive(Parser, Debug)]
#[command(
    name = "pelt",
    version,
    about = "PELT Workbench: build, inspect and export Pluggable Entity Lookup Tables for masked language models.\nRun without arguments to open the workbench window."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Fill-mask: the top-k tokens with probabilities at each mask of TEXT.
    Fill {
        text: String,
        /// Model directory (default: the bundled model).
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, default_value_t = 5)]
        top_k: usize,
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
    },
    /// Build a PELT table from a corpus and an entity list.
    Build {
        /// Corpus files or folders (.txt, .jsonl, FewRel .json, optionally .gz).
        #[arg(long, required = true, num_args = 1..)]
        corpus: Vec<PathBuf>,
        /// Entity list (.txt one name per line, or .tsv id<TAB>name<TAB>alias|alias).
        #[arg(long)]
        entities: PathBuf,
        /// Output table (.safetensors).
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        model: Option<PathBuf>,
        /// Contexts per entity at most.
        #[arg(long, default_value_t = 256)]
        k: usize,
        /// L2 norm of the stored embeddings (modL).
        #[arg(long, default_value_t = 7.0)]
        norm: f32,
        #[arg(long, default_value_t = 64)]
        max_len: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
        /// Precision (f16/bf16 are meant for GPUs; sums are always accumulated in f64).
        #[arg(long, value_enum, default_value = "f32")]
        dtype: Precision,
        /// Encode only shard i of n (i/n); merge the shard tables with `pelt merge`.
        #[arg(long)]
        shard: Option<String>,
        /// Continue from the checkpoint OUT.ckpt of an interrupted build.
        #[arg(long)]
        resume: bool,
        /// Match names with case (default: ASCII case-insensitive).
        #[arg(long)]
        case_sensitive: bool,
        /// Seconds between checkpoints.
        #[arg(long, default_value_t = 30.0)]
        checkpoint_secs: f64,
    },
    /// Add the sums and counts of shard tables into one table.
    Merge {
        #[arg(required = true, num_args = 1..)]
        tables: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Rescale a table's embeddings to another norm (no rebuild needed).
    Renorm {
        table: PathBuf,
        #[arg(long)]
        norm: f32,
        #[arg(long)]
        out: PathBuf,
    },
    /// Nearest entities by cosine, or nearest vocabulary tokens by dot product (--vocab).
    Neighbors {
        #[arg(long)]
        table: PathBuf,
        /// Entity id or name.
        entity: String,
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// Nearest vocabulary tokens instead of entities (needs the table's model).
        #[arg(long)]
        vocab: bool,
        /// Subtract the mean entity direction first (reduces hub entities).
        #[arg(long)]
        center: bool,
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Write TensorFlow Embedding Projector files (vectors.tsv, metadata.tsv).
    ExportProjector {
        #[arg(long)]
        table: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Benchmark table construction on a fixed set of contexts (bundled model and a
    /// bert-base-shaped model with random weights); `pelt bench ui` benchmarks the window.
    Bench {
        #[command(subcommand)]
        what: Option<BenchWhat>,
        /// Which model: bundled, bert-base, both, or a model directory.
        #[arg(long, default_value = "both")]
        model: String,
        /// Contexts (JSON Lines: entity, text, start, end).
        #[arg(long)]
        contexts: Option<PathBuf>,
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
        #[arg(long, value_enum, default_value = "f32")]
        dtype: Precision,
        /// Where the random bert-base model is written (reused when present).
        #[arg(long, default_value = "target/bench-models/bert-base")]
        model_dir: PathBuf,
        /// Side of the square matmul used to measure the machine's peak (0 skips it).
        #[arg(long, default_value_t = 1536)]
        matmul: usize,
        /// Write results (and vectors, for bench/compare.py) as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Write an entity list (id, name, aliases) from FewRel-style files.
    EntitiesFromFewrel {
        #[arg(required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Leave out entities linked fewer than this many times.
        #[arg(long, default_value_t = 1)]
        min_count: usize,
    },
}

fn load_model(dir: Option<PathBuf>, device: DeviceChoice, dtype: Precision) -> Result<Model> {
    let dir = dir.unwrap_or_else(bundled_model_dir);
    Model::load_with_dtype(&dir, &device.open()?, dtype.dtype())
}

/// Other benchmarks than table construction.
#[derive(Subcommand, Debug)]
pub enum BenchWhat {
    /// The workbench window, headless, on a synthetic table: frame times of the entity list,
    /// Inspector and Map, a neighbour query and opening the table.
    Ui {
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
    },
}

/// Floating-point precision of the model's weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    F32,
    F16,
    Bf16,
}

impl Precision {
    pub fn dtype(self) -> candle_core::DType {
        match self {
            Precision::F32 => candle_core::DType::F32,
            Precision::F16 => candle_core::DType::F16,
            Precision::Bf16 => candle_core::DType::BF16,
        }
    }
}

/// A progress bar on stderr when it is a terminal; otherwise one line per phase and every ~10 s.
fn progress_bar(p: &Progress) {
    use std::io::IsTerminal;
    use std::sync::Mutex;
    static LAST: Mutex<Option<(pelt::progress::Phase, std::time::Instant)>> = Mutex::new(None);
    let mut err = std::io::stderr();
    if !err.is_terminal() {
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        let due = match *last {
            Some((ph, t)) => ph != p.phase || t.elapsed().as_secs() >= 10,
            None => true,
        };
        if due {
            *last = Some((p.phase, std::time::Instant::now()));
            let _ = writeln!(err, "{}", p.describe());
        }
        return;
    }
    let bar = match p.fraction() {
        Some(f) => {
            let w = 24;
            let filled = (f * w as f32).round() as usize;
            format!("[{}{}] ", "#".repeat(filled), ".".repeat(w - filled))
        }
        None => String::new(),
    };
    let _ = write!(err, "\r\x1b[2K{bar}{}", p.describe());
    let _ = err.flush();
}

pub fn run(cli: Cli) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Fill {
            text,
            model,
            top_k: k,
            device,
        } => {
            let model = load_model(model, device, Precision::F32)?;
            for (i, preds) in pelt::analysis::fill_mask(&model, &text, k)?
                .iter()
                .enumerate()
            {
                writeln!(out, "mask {}:", i + 1)?;
                for (token, p) in preds {
                    writeln!(out, "  {token:<16} {p:.4}")?;
                }
            }
        }
        Command::Build {
            corpus,
            entities,
            out: out_path,
            model,
            k,
            norm,
            max_len,
            seed,
            batch,
            device,
            dtype,
            shard,
            resume,
            case_sensitive,
            checkpoint_secs,
        } => {
            let model = load_model(model, device, dtype)?;
            let corpus = Corpus::open(&corpus)?;
            let entities = load_entities(&entities)?;
            let options = BuildOptions {
                k,
                norm,
                max_len,
                seed,
                batch,
                case_sensitive,
                shard: shard.as_deref().map(parse_shard).transpose()?,
                checkpoint_secs,
                ..Default::default()
            };
            let ckpt = checkpoint_path(&out_path);
            if !resume && ckpt.exists() {
                eprintln!(
                    "note: {} exists; starting afresh (use --resume to continue it)",
                    ckpt.display()
                );
            }
            // Ctrl-C stops after the current batch and writes a checkpoint for --resume.
            static CANCEL: AtomicBool = AtomicBool::new(false);
            let cancel = &CANCEL;
            let _ = ctrlc::set_handler(|| {
                if CANCEL.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    std::process::exit(130);
                }
            });
            let outcome = build_table(
                BuildInput {
                    model: &model,
                    corpus: &corpus,
                    entities: &entities,
                    options: &options,
                    checkpoint: Some(ckpt.clone()),
                    resume,
                    cancel,
                },
                &mut progress_bar,
            )?;
            eprintln!();
            let (table, report) = match outcome {
                BuildOutcome::Finished(t, r) => (t, r),
                BuildOutcome::Cancelled { done, total, .. } => bail!(
                    "build interrupted after {done} of {total} contexts; checkpoint written to {} — rerun the same command with --resume to continue",
                    ckpt.display()
                ),
            };
            table.save(&out_path)?;
            let _ = std::fs::remove_file(&ckpt);
            for w in &report.read.warnings {
                eprintln!("warning: skipped {w}");
            }
            if report.read.skipped_lines > report.read.warnings.len() {
                eprintln!(
                    "warning: {} lines skipped in all",
                    report.read.skipped_lines
                );
            }
            for c in &report.collisions {
                eprintln!("warning: {c}");
            }
            let found = table.len() - report.not_found.len();
            writeln!(
                out,
                "wrote {} ({} entities, {} found, {} contexts, hidden {}, norm {})",
                out_path.display(),
                table.len(),
                found,
                report.contexts,
                table.hidden(),
                table.norm
            )?;
            writeln!(
                out,
                "read {} sentences; encoded {} contexts in {:.1} s ({:.1} contexts/s){}",
                report.sentences,
                report.contexts - report.resumed_from as usize,
                report.encode_secs,
                report.contexts_per_sec,
                if report.resumed_from > 0 {
                    format!(", resumed after {}", report.resumed_from)
                } else {
                    String::new()
                }
            )?;
            if !report.not_found.is_empty() {
                let shown: Vec<&str> = report
                    .not_found
                    .iter()
                    .take(20)
                    .map(String::as_str)
                    .collect();
                writeln!(
                    out,
                    "not found ({}): {}{}",
                    report.not_found.len(),
                    shown.join(", "),
                    if report.not_found.len() > 20 {
                        ", …"
                    } else {
                        ""
                    }
                )?;
            }
        }
        Command::Merge {
            tables,
            out: out_path,
        } => {
            let loaded: Vec<Table> = tables
                .iter()
                .map(|p| Table::load(p))
                .collect::<Result<_>>()?;
            let merged = Table::merge(&loaded)?;
            merged.save(&out_path)?;
            writeln!(
                out,
                "wrote {} ({} tables merged, shards {}, {} contexts)",
                out_path.display(),
                loaded.len(),
                merged.meta.shard,
                merged.counts.iter().sum::<i64>()
            )?;
        }
        Command::Renorm {
            table,
            norm,
            out: out_path,
        } => {
            if !(norm.is_finite() && norm > 0.0) {
                bail!("--norm must be a positive number");
            }
            let mut t = Table::load(&table)?;
            t.norm = norm;
            t.save(&out_path)?;
            writeln!(out, "wrote {} (norm {norm})", out_path.display())?;
        }
        Command::Neighbors {
            table,
            entity,
            k,
            vocab,
            center,
            model,
        } => {
            let t = Table::load(&table)?;
            let i = t
                .index_of(&entity)
                .with_context(|| format!("no entity `{entity}` in {}", table.display()))?;
            if t.counts[i] == 0 {
                bail!(
                    "entity `{}` was not found in the corpus; it has no vector",
                    t.entity_ids[i]
                );
            }
            let index = pelt::analysis::NeighbourIndex::new(&t, center)?;
            if vocab {
                let m = load_model(model, DeviceChoice::Cpu, Precision::F32)?;
                let tokens = pelt::analysis::vocab_neighbours_of(&m, &t, &index, i, k, t.norm)?;
                writeln!(
                    out,
                    "vocabulary tokens nearest to {} ({}) by dot product at norm {}{}:",
                    t.entity_names[i],
                    t.entity_ids[i],
                    t.norm,
                    if center { ", mean removed" } else { "" }
                )?;
                for (tok, s) in tokens {
                    writeln!(out, "  {tok:<20} {s:.3}")?;
                }
            } else {
                writeln!(
                    out,
                    "entities nearest to {} ({}) by cosine{}:",
                    t.entity_names[i],
                    t.entity_ids[i],
                    if center { ", mean removed" } else { "" }
                )?;
                for (j, s) in index.entity_neighbours(i, k)? {
                    writeln!(
                        out,
                        "  {:<32} {:<12} {:.3}",
                        t.entity_names[j], t.entity_ids[j], s
                    )?;
                }
            }
        }
        Command::ExportProjector { table, out: dir } => {
            let t = Table::load(&table)?;
            t.export_projector(&dir)?;
            writeln!(
                out,
                "wrote {}/vectors.tsv and {}/metadata.tsv ({} entities)",
                dir.display(),
                dir.display(),
                t.len()
            )?;
        }
        Command::Bench {
            what:
                Some(BenchWhat::Ui {
                    entities,
                    hidden,
                    frames,
                    dir,
                }),
            ..
        } => {
            #[cfg(feature = "gui")]
            crate::ui::bench::run(entities, hidden, frames, &dir)?;
            #[cfg(not(feature = "gui"))]
            {
                let _ = (entities, hidden, frames, dir);
                bail!("this build has no GUI (built without the `gui` feature)");
            }
        }
        Command::Bench {
            what: None,
            model,
            contexts,
            batch,
            device,
            dtype,
            model_dir,
            matmul,
            json,
        } => {
            let dev = device.open()?;
            let contexts = contexts.unwrap_or_else(crate::bench::default_contexts);
            let mut report = serde_json::Map::new();
            writeln!(
                out,
                "device: {}, threads: {}, CPU matmul: {}",
                pelt::model::describe_device(&dev),
                candle_core::utils::get_num_threads(),
                pelt::model::cpu_matmul()
            )?;
            report.insert("cpu_matmul".into(), pelt::model::cpu_matmul().into());
            let mut peak = None;
            if matmul > 0 {
                let p = crate::bench::matmul_peak(&dev, matmul)?;
                writeln!(out, "matmul peak ({matmul}x{matmul} f32): {p:.1} GFLOP/s")?;
                report.insert("matmul_peak_gflops".into(), p.into());
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
            for (label, dir) in dirs {
                if label == "bert-base" && !dir.join("model.safetensors").exists() {
                    eprintln!("writing random bert-base weights to {} …", dir.display());
                    crate::bench::write_random_bert(&dir, crate::bench::BERT_BASE, 42)?;
                }
                let r = crate::bench::run(&dir, &dev, dtype.dtype(), &contexts, batch)?;
                writeln!(
                    out,
                    "{label}: {} contexts ({} entities), batch {}: {:.1} contexts/s encoding, {:.1} contexts/s with model loading ({:.2} s); {:.0} tokens/s ({} tokens, {} rows processed); encoder matmuls {:.1} GFLOP/s{}; peak memory {:.0} MiB",
                    r.contexts, r.entities, r.batch, r.contexts_per_sec, r.contexts_per_sec_total, r.load_secs, r.tokens_per_sec,
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
                pelt::io::write_atomic(&p, serde_json::to_string(&report)?.as_bytes())?;
            }
        }
        Command::EntitiesFromFewrel {
            files,
            out: out_path,
            min_count,
        } => {
            let list = EntityList::from_fewrel(&files, min_count)?;
            list.write_tsv(&out_path)?;
            writeln!(
                out,
                "wrote {} ({} entities)",
                out_path.display(),
                list.len()
            )?;
        }
    }
    Ok(())
}
