//! The headless command line (`pelt <subcommand>`), on the same engine as the GUI.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use pelt::build::{
    checkpoint_path, parse_shard_arg, run_build_job, BuildJob, BuildOptions, BuildOutcome,
};
use pelt::contexts::MentionMode;
use pelt::corpus::Corpus;
use pelt::entities::EntityList;
use pelt::escape;
use pelt::model::{bundled_model_dir, DeviceChoice, DtypeChoice, Model};
use pelt::outpath::{Input, Inputs};
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
        /// Model folder or cached Hugging Face id, e.g. bert-base-uncased or ORG/NAME@REV
        /// (default: the bundled model).
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, default_value_t = 5)]
        top_k: usize,
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
    },
    /// Build a PELT table from a corpus and an entity list.
    ///
    /// Corpus formats: .txt (a passage per line), .jsonl ({"text": …}, optionally with
    /// "links": [{"start", "end", "id"}] in code points), FewRel-style .json (h/t spans become
    /// links), PubTator (.pubtator, .pubtator.txt), WikiExtractor --links output (wiki_NN,
    /// .wiki); folders of these and .gz of any.
    Build {
        /// Corpus files or folders.
        #[arg(long, required = true, num_args = 1..)]
        corpus: Vec<PathBuf>,
        /// Entity list (.txt one name per line, or .tsv id<TAB>name<TAB>alias|alias). Optional
        /// for an entity-linked corpus: then the ids of its links, named by their most frequent
        /// anchor text.
        #[arg(long)]
        entities: Option<PathBuf>,
        /// Which spans are mentions: `links` (linked spans only, as PELT did), `names` (match
        /// names and aliases), `both` (links, plus name matches that overlap no link), `auto`
        /// (links when the corpus carries links, else names).
        #[arg(long, default_value = "auto", value_parser = parse_mentions)]
        mentions: MentionMode,
        /// With no --entities: leave out ids linked fewer than this many times.
        #[arg(long, default_value_t = 1)]
        min_count: usize,
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
        /// Contexts per batch on the CPU (and on GPUs with --batch-tokens 0).
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Token rows per batch on GPUs, padding included (0: batches of --batch contexts).
        #[arg(long, default_value_t = pelt::build::DEFAULT_BATCH_TOKENS)]
        batch_tokens: usize,
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
        /// Precision: auto is bf16 on CUDA GPUs that run it (compute capability 8.0 or newer),
        /// f32 elsewhere (sums are always accumulated exactly).
        #[arg(long, value_enum, default_value = "auto")]
        dtype: Precision,
        /// Threads for reading the corpus, finding mentions and tokenizing (0: one per core);
        /// the table is the same for any number.
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Batches encoded at a time on the CPU, each on a thread of its own (0: one per core;
        /// 1: one batch at a time, each product split over the cores). More take more memory
        /// for activations; the table is the same for any number. GPUs encode one at a time.
        #[arg(long, default_value_t = 0)]
        encoders: usize,
        /// Encode only shard i of n (i/n): a disjoint share of the entities; merge the shard
        /// tables with `pelt merge`. `auto` takes the shard from a Slurm job array
        /// (SLURM_ARRAY_TASK_ID) or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX, with
        /// --shard-count).
        #[arg(long)]
        shard: Option<String>,
        /// The shard count for `--shard auto` where the scheduler does not tell it (Kubernetes).
        #[arg(long)]
        shard_count: Option<usize>,
        /// How the table stores its vectors: f32, or f16/bf16 (half the size).
        #[arg(long, default_value = "f32", value_parser = parse_vectors)]
        vectors: pelt::table::VectorDtype,
        /// Folder for the build's spill files (sampled sentences, the table's rows before they
        /// are assembled); default: beside --out. Removed at the end; a --resume needs the same.
        #[arg(long)]
        tmp: Option<PathBuf>,
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
    /// Merge the shard tables of one build (files or folders of them) into one table, streamed.
    Merge {
        #[arg(required = true, num_args = 1..)]
        tables: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Allow a merge of some of the shards only (the result is a partial table).
        #[arg(long)]
        partial: bool,
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
    },
    /// Write an entity list (id, name, aliases) from the links of an entity-linked corpus: the
    /// most frequent anchor text is the name, the others are aliases.
    EntitiesFromLinks {
        /// Corpus files or folders (any linked format: .jsonl with links, FewRel .json,
        /// PubTator, WikiExtractor).
        #[arg(required = true, num_args = 1..)]
        corpus: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Leave out ids linked fewer than this many times.
        #[arg(long, default_value_t = 1)]
        min_count: usize,
    },
    /// Evaluate a table (entity typing by k-NN).
    Eval {
        #[command(subcommand)]
        what: EvalCommand,
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

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// k-NN leave-one-out entity typing on cosine: the table's vectors against the mean
    /// word-piece embedding of each entity's name and the majority label.
    Typing {
        #[arg(long)]
        table: PathBuf,
        /// Labels: id<TAB>label lines.
        #[arg(long, conflicts_with = "from_fewrel")]
        labels: Option<PathBuf>,
        /// Labels from FewRel-style files (relation → examples): the relation slot
        /// (relation/head or relation/tail) each entity fills most often.
        #[arg(long, num_args = 1..)]
        from_fewrel: Vec<PathBuf>,
        /// With --from-fewrel: keep entities with at least this many linked mentions.
        #[arg(long, default_value_t = 3)]
        min_mentions: usize,
        #[arg(long, default_value_t = 5)]
        k: usize,
        /// The table's model, for the name baseline (default: the bundled model).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Also write the results as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Cloze probes: mask a one-piece mention, plug the other entity with `X ( X )`, and measure
    /// P@1, P@10 and MRR of the gold piece without the table and with it at each norm.
    Cloze {
        #[arg(long)]
        table: PathBuf,
        /// Probes from FewRel-style files (the tail masked where it is one word piece, else
        /// the head; the other entity plugged).
        #[arg(long, num_args = 1.., conflicts_with = "probes")]
        from_fewrel: Vec<PathBuf>,
        /// Probes as `sentence with [MASK]<TAB>gold<TAB>entity id` lines.
        #[arg(long)]
        probes: Option<PathBuf>,
        /// Norms to try, comma-separated (default 1,2,…,10 and the table's own).
        #[arg(long, value_delimiter = ',')]
        norms: Vec<f32>,
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// The table's model (default: the bundled model).
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
        /// Also write the results as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn parse_vectors(s: &str) -> std::result::Result<pelt::table::VectorDtype, String> {
    pelt::table::VectorDtype::parse(s).map_err(|e| e.to_string())
}

/// `pelt merge`'s tables: files, and the `.safetensors` files of folders (sorted).
fn shard_files(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for a in args {
        if a.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(a)
                .with_context(|| format!("cannot list {}", escape::path(a)))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            if found.is_empty() {
                bail!("{} holds no .safetensors tables", escape::path(a));
            }
            found.sort();
            out.extend(found);
        } else {
            out.push(a.clone());
        }
    }
    Ok(out)
}

fn parse_mentions(s: &str) -> std::result::Result<MentionMode, String> {
    MentionMode::parse(s).ok_or_else(|| format!("`{s}`: expected auto, links, names or both"))
}

/// `--model`: a folder, or a Hugging Face id (`ORG/NAME[@REV]`) found in the local cache;
/// none is the bundled model.
fn load_model(spec: Option<PathBuf>, device: DeviceChoice, dtype: Precision) -> Result<Model> {
    let dir = pelt::model::resolve_model(spec.as_deref().map(|p| p.to_str().unwrap_or("")))?;
    let device = device.open()?;
    let dtype = dtype.choice().resolve(&device);
    Model::load_with_dtype(&dir, &device, dtype)
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
    /// Tables at scale: for each entity count, a synthetic linked corpus (one mention per
    /// entity) is built with a random one-layer BERT of width --hidden, each build and each
    /// open in a process of its own: peak memory, table size, open time, exact query time.
    Scale {
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
    },
    /// Open a table and time exact neighbour queries; prints one JSON line (time to open,
    /// resident memory after opening and after the queries, query times).
    Open {
        #[arg(long)]
        table: PathBuf,
        #[arg(long, default_value_t = 5)]
        queries: usize,
    },
}

/// Floating-point precision of the model's weights and activations (see [`DtypeChoice`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    Auto,
    F32,
    F16,
    Bf16,
}

impl Precision {
    pub fn choice(self) -> DtypeChoice {
        match self {
            Precision::Auto => DtypeChoice::Auto,
            Precision::F32 => DtypeChoice::F32,
            Precision::F16 => DtypeChoice::F16,
            Precision::Bf16 => DtypeChoice::Bf16,
        }
    }

    /// The dtype on `device` (`Auto` resolved).
    pub fn dtype_on(self, device: &candle_core::Device) -> candle_core::DType {
        self.choice().resolve(device)
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

/// What `pelt bench` reads: the contexts file and the model directories' files.
fn bench_inputs(contexts: Option<&std::path::Path>, dirs: &[(String, PathBuf)]) -> Inputs {
    let mut inputs = Inputs::new();
    if let Some(c) = contexts {
        inputs.add("contexts file", c);
    }
    for (_, dir) in dirs {
        inputs.add_all("model file", crate::bench::model_files(dir));
    }
    inputs
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
                    writeln!(out, "  {:<16} {p:.4}", escape::text(token))?;
                }
            }
        }
        Command::Build {
            corpus,
            entities,
            mentions,
            min_count,
            out: out_path,
            model,
            k,
            norm,
            max_len,
            seed,
            batch,
            batch_tokens,
            device,
            dtype,
            threads,
            encoders,
            shard,
            shard_count,
            vectors,
            tmp,
            resume,
            case_sensitive,
            checkpoint_secs,
        } => {
            let options = BuildOptions {
                mentions,
                k,
                norm,
                max_len,
                seed,
                batch,
                batch_tokens,
                threads,
                encoders,
                case_sensitive,
                shard: shard
                    .as_deref()
                    .map(|s| parse_shard_arg(s, shard_count))
                    .transpose()?,
                checkpoint_secs,
                vectors,
                ..Default::default()
            };
            options.validate()?;
            let model = load_model(model, device, dtype)?;
            let corpus = Corpus::open(&corpus)?;
            let ckpt = checkpoint_path(&out_path);
            if !resume && ckpt.exists() {
                eprintln!(
                    "note: {} exists; replacing it with a new build (use --resume to continue it instead)",
                    escape::path(&ckpt)
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
            let outcome = run_build_job(
                BuildJob {
                    model: &model,
                    corpus: &corpus,
                    entities: entities.as_deref(),
                    min_count,
                    options: &options,
                    out: Some(out_path.clone()),
                    out_label: "--out",
                    tmp,
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
            if let Some(n) = report.entities_from_links {
                eprintln!(
                    "entities: {n} ids from the corpus's links (linked at least {min_count} times)"
                );
            }
            for w in report.read.summary_lines() {
                eprintln!("warning: skipped {}", escape::text(&w));
            }
            let mut why = format!(
                "mentions: {} ({})",
                report.mentions.as_str(),
                report.mentions_why
            );
            if report.mentions.uses_links() {
                why += &format!(
                    "; {} links read, {} contexts from links",
                    report.read.links, report.linked_contexts
                );
                if report.unknown_links > 0 {
                    why += &format!(
                        "; {} links point to ids not on the entity list (ignored; e.g. {})",
                        report.unknown_links,
                        escape::text(&report.unknown_examples.join(", "))
                    );
                }
            }
            writeln!(out, "{why}")?;
            for c in &report.collisions {
                eprintln!("warning: {}", escape::text(c));
            }
            let found = table.len() - report.not_found.len();
            writeln!(
                out,
                "wrote {} ({} entities, {} found, {} contexts, hidden {}, norm {})",
                escape::path(&out_path),
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
            writeln!(
                out,
                "ran on {}, {}, batches of {}, {} host threads",
                report.device, report.dtype, report.batch, report.threads
            )?;
            for stage in &report.stages {
                writeln!(out, "  {}", stage.describe())?;
            }
            if !report.not_found.is_empty() {
                let shown: Vec<std::borrow::Cow<str>> = report
                    .not_found
                    .iter()
                    .take(20)
                    .map(|s| escape::text(s))
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
            partial,
        } => {
            let tables = shard_files(&tables)?;
            let loaded: Vec<Table> = tables
                .iter()
                .map(|p| Table::load(p))
                .collect::<Result<_>>()?;
            Inputs(
                tables
                    .iter()
                    .map(|p| Input::new("table to merge", p))
                    .collect(),
            )
            .check_output("--out", &out_path)?;
            let meta = pelt::table::merged_meta(&loaded, partial)?;
            let shard = meta.shard.clone();
            let spill = pelt::table::spill_dir_for(&out_path);
            let mut w = pelt::table::TableWriter::new(meta, loaded[0].norm, Some(&spill))?;
            let written = pelt::table::merge_into(&loaded, &mut w)
                .map(|()| w.position())
                .and_then(|pos| w.finish(&out_path).map(|()| pos));
            let _ = std::fs::remove_dir_all(&spill);
            let pos = written?;
            writeln!(
                out,
                "wrote {} ({} tables merged, shards {shard}, {} entities, {} contexts)",
                escape::path(&out_path),
                loaded.len(),
                pos.rows,
                pos.contexts
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
            Inputs(vec![Input::new("table", &table)]).check_output("--out", &out_path)?;
            let mut t = Table::load(&table)?;
            t.norm = norm;
            t.save(&out_path)?;
            writeln!(out, "wrote {} (norm {norm})", escape::path(&out_path))?;
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
            let i = t.index_of(&entity).with_context(|| {
                format!(
                    "no entity `{}` in {}",
                    escape::text(&entity),
                    escape::path(&table)
                )
            })?;
            if t.counts[i] == 0 {
                bail!(
                    "entity `{}` was not found in the corpus; it has no vector",
                    escape::text(&t.entity_ids[i])
                );
            }
            if vocab {
                let index = pelt::analysis::NeighbourIndex::new(&t, center)?;
                let m = load_model(model, DeviceChoice::Cpu, Precision::F32)?;
                let tokens = pelt::analysis::vocab_neighbours_of(&m, &t, &index, i, k, t.norm)?;
                writeln!(
                    out,
                    "vocabulary tokens nearest to {} ({}) by dot product at norm {}{}:",
                    escape::text(&t.entity_names[i]),
                    escape::text(&t.entity_ids[i]),
                    t.norm,
                    if center { ", mean removed" } else { "" }
                )?;
                for (tok, s) in tokens {
                    writeln!(out, "  {:<20} {s:.3}", escape::text(&tok))?;
                }
            } else {
                writeln!(
                    out,
                    "entities nearest to {} ({}) by cosine{}:",
                    escape::text(&t.entity_names[i]),
                    escape::text(&t.entity_ids[i]),
                    if center { ", mean removed" } else { "" }
                )?;
                for (j, s) in pelt::analysis::nearest_streamed(&t, i, k, center, 0)? {
                    writeln!(
                        out,
                        "  {:<32} {:<12} {:.3}",
                        escape::text(&t.entity_names[j]),
                        escape::text(&t.entity_ids[j]),
                        s
                    )?;
                }
            }
        }
        Command::ExportProjector { table, out: dir } => {
            pelt::outpath::check_dir_or_absent("--out", &dir)?;
            let inputs = Inputs(vec![Input::new("table", &table)]);
            for f in ["vectors.tsv", "metadata.tsv"] {
                inputs.check_output("--out", &dir.join(f))?;
            }
            let t = Table::load(&table)?;
            t.export_projector(&dir)?;
            writeln!(
                out,
                "wrote {}/vectors.tsv and {}/metadata.tsv ({} entities)",
                escape::path(&dir),
                escape::path(&dir),
                t.len()
            )?;
        }
        Command::Bench {
            what:
                Some(BenchWhat::Scale {
                    entities,
                    hidden,
                    runs,
                    vectors,
                    dir,
                }),
            ..
        } => {
            pelt::table::VectorDtype::parse(&vectors)?;
            crate::scale::run(&entities, hidden, runs, &dir, &vectors, &mut out)?;
        }
        Command::Bench {
            what: Some(BenchWhat::Open { table, queries }),
            ..
        } => {
            let v = crate::scale::open_and_query(&table, queries)?;
            writeln!(out, "{v}")?;
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
            encoders,
            device,
            dtype,
            model_dir,
            matmul,
            generic,
            json,
        } => {
            if batch == 0 {
                bail!("--batch must be at least 1");
            }
            crate::bench::check_matmul_size(matmul)?;
            let dev = device.open()?;
            let contexts = contexts.as_deref();
            let mut report = serde_json::Map::new();
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
                bench_inputs(contexts, &dirs).check_output("--json", p)?;
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
                bench_inputs(contexts, &dirs).check_output("--json", &p)?;
                pelt::io::write_atomic(&p, serde_json::to_string(&report)?.as_bytes())?;
            }
        }
        Command::EntitiesFromLinks {
            corpus,
            out: out_path,
            min_count,
        } => {
            let corpus = Corpus::open(&corpus)?;
            Inputs(
                corpus
                    .files
                    .iter()
                    .map(|p| Input::new("corpus file", p))
                    .collect(),
            )
            .check_output("--out", &out_path)?;
            if !corpus.has_links()? {
                bail!("the corpus carries no entity links (plain .txt, or .jsonl without a `links` field)");
            }
            let list = EntityList::from_links(&corpus, min_count)?;
            list.write_tsv(&out_path)?;
            writeln!(
                out,
                "wrote {} ({} entities)",
                out_path.display(),
                list.len()
            )?;
        }
        Command::Eval {
            what:
                EvalCommand::Typing {
                    table,
                    labels,
                    from_fewrel,
                    min_mentions,
                    k,
                    model,
                    json,
                },
        } => {
            if let Some(p) = &json {
                let mut inputs: Vec<Input> = vec![Input::new("table", &table)];
                inputs.extend(labels.iter().map(|l| Input::new("labels", l)));
                inputs.extend(from_fewrel.iter().map(|f| Input::new("FewRel file", f)));
                Inputs(inputs).check_output("--json", p)?;
            }
            let table = Table::load(&table)?;
            let labels = match (labels, from_fewrel.is_empty()) {
                (Some(p), _) => pelt::eval::labels_from_tsv(&p)?,
                (None, false) => pelt::eval::labels_from_fewrel(&from_fewrel, min_mentions)?,
                (None, true) => bail!("give --labels FILE or --from-fewrel FILE…"),
            };
            let m = load_model(model, DeviceChoice::Cpu, Precision::F32)?;
            table.check_model(&m.name(), &m.weights_sha256()?, m.hidden_size())?;
            let names =
                pelt::eval::name_vectors(&table, &m.tokenizer, &m.encoder.word_embeddings()?)?;
            let r = pelt::eval::eval_typing(&table, &labels, Some(&names), k)?;
            writeln!(
                out,
                "entity typing, {k}-NN leave-one-out on cosine: {} labelled entities of the table ({} found in the corpus), {} labels{}",
                r.entities,
                r.found,
                r.labels,
                if r.unknown_ids > 0 {
                    format!("; {} labelled ids are not in the table (ignored)", r.unknown_ids)
                } else {
                    String::new()
                }
            )?;
            writeln!(
                out,
                "{:<10} {:>16} {:>16}",
                "method", "all entities", "found only"
            )?;
            for (a, f) in r.all.iter().zip(&r.found_only) {
                writeln!(
                    out,
                    "{:<10} {:>8.3} ({:>5}) {:>8.3} ({:>5})",
                    a.method, a.accuracy, a.total, f.accuracy, f.total
                )?;
            }
            if let Some(p) = json {
                pelt::io::write_atomic(&p, serde_json::to_string_pretty(&r)?.as_bytes())?;
            }
        }
        Command::Eval {
            what:
                EvalCommand::Cloze {
                    table,
                    from_fewrel,
                    probes,
                    norms,
                    batch,
                    model,
                    device,
                    json,
                },
        } => {
            if let Some(p) = &json {
                let mut inputs: Vec<Input> = vec![Input::new("table", &table)];
                inputs.extend(probes.iter().map(|l| Input::new("probes", l)));
                inputs.extend(from_fewrel.iter().map(|f| Input::new("FewRel file", f)));
                Inputs(inputs).check_output("--json", p)?;
            }
            let table = Table::load(&table)?;
            let m = load_model(model, device, Precision::F32)?;
            table.check_model(&m.name(), &m.weights_sha256()?, m.hidden_size())?;
            let (probes, rep) = match (probes, from_fewrel.is_empty()) {
                (Some(p), _) => pelt::eval::probes_from_tsv(&p, &table, &m.tokenizer)?,
                (None, false) => {
                    pelt::eval::probes_from_fewrel(&from_fewrel, &table, &m.tokenizer)?
                }
                (None, true) => bail!("give --probes FILE or --from-fewrel FILE…"),
            };
            let norms = if norms.is_empty() {
                pelt::eval::with_table_norm(&pelt::eval::EvalSettings::default().norms, table.norm)
            } else {
                norms
            };
            for w in &rep.warnings {
                eprintln!("note: skipped {w}");
            }
            let cancel = AtomicBool::new(false);
            let r = pelt::eval::eval_cloze(&m, &table, probes, rep, &norms, batch, &cancel)?;
            writeln!(
                out,
                "cloze: {} probes ({} without a one-piece gold word, {} whose entity has no vector, {} without a mention)",
                r.probes.made, r.probes.no_one_piece_gold, r.probes.entity_not_in_table, r.probes.mention_not_found
            )?;
            writeln!(out, "{:<16} {:>6} {:>6} {:>6}", "", "P@1", "P@10", "MRR")?;
            let row = |label: String, s: &pelt::eval::ClozeScore| {
                format!(
                    "{label:<16} {:>6.3} {:>6.3} {:>6.3}",
                    s.p_at_1, s.p_at_10, s.mrr
                )
            };
            writeln!(out, "{}", row("without table".into(), &r.without))?;
            let best = r.best_norm();
            for (n, s) in &r.with {
                let mark = match (Some(*n) == best, *n == table.norm) {
                    (true, true) => "  <- best, table's norm",
                    (true, false) => "  <- best",
                    (false, true) => "  <- table's norm",
                    _ => "",
                };
                writeln!(out, "{}{mark}", row(format!("with, norm {n}"), s))?;
            }
            if r.per_relation.len() > 1 {
                let ti = r
                    .with
                    .iter()
                    .position(|(n, _)| *n == best.unwrap_or(table.norm))
                    .unwrap_or(0);
                writeln!(
                    out,
                    "per relation, P@1 without / with at norm {}:",
                    r.with[ti].0
                )?;
                for (rel, (w, ws)) in &r.per_relation {
                    writeln!(
                        out,
                        "  {rel:<14} {:>5} probes  {:.3} / {:.3}",
                        w.probes, w.p_at_1, ws[ti].p_at_1
                    )?;
                }
            }
            if let Some(p) = json {
                pelt::io::write_atomic(&p, serde_json::to_string_pretty(&r)?.as_bytes())?;
            }
        }
        Command::EntitiesFromFewrel {
            files,
            out: out_path,
            min_count,
        } => {
            Inputs(files.iter().map(|p| Input::new("FewRel file", p)).collect())
                .check_output("--out", &out_path)?;
            let list = EntityList::from_fewrel(&files, min_count)?;
            list.write_tsv(&out_path)?;
            writeln!(
                out,
                "wrote {} ({} entities)",
                escape::path(&out_path),
                list.len()
            )?;
        }
    }
    Ok(())
}
