//! `pelt build` and `pelt merge`: a table from a corpus, and one table from a build's shards.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use pelt::build::{
    checkpoint_path, parse_shard_arg, run_build_job, BuildJob, BuildOptions, BuildOutcome,
    BuildReport,
};
use pelt::contexts::MentionMode;
use pelt::corpus::Corpus;
use pelt::escape;
use pelt::model::DeviceChoice;
use pelt::outpath::{Input, Inputs, OutputKind, Replace};
use pelt::table::{ContextText, Table, VectorDtype};

use super::{load_model, progress_bar, Precision};

/// `pelt build`'s flags.
#[derive(Args, Debug)]
pub struct BuildArgs {
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
    vectors: VectorDtype,
    /// Whether the table stores its contexts' sentences (`stored`) or only where they are in
    /// the corpus (`none`: a smaller table; the sentences are read back from the corpus).
    #[arg(long, default_value = "stored", value_parser = parse_context_text)]
    context_text: ContextText,
    /// Folder for the build's spill files (the sentences of mentions, sorted runs of
    /// mentions, the table's rows before they are assembled); default: beside --out. Removed
    /// at the end; a --resume needs the same.
    #[arg(long)]
    tmp: Option<PathBuf>,
    /// Memory for the build beyond the model's weights, e.g. 512M, 2G: the entity list must
    /// fit in it (checked before the corpus is read), and the sort of the mentions spills to
    /// --tmp in runs that fit the rest. The table is the same for any size.
    #[arg(long, default_value = "1G", value_parser = parse_memory)]
    memory: u64,
    /// Continue from the checkpoint OUT.ckpt of an interrupted build.
    #[arg(long)]
    resume: bool,
    /// Replace an existing --out (or its checkpoint) even when it is not a PELT table.
    #[arg(long)]
    force: bool,
    /// Match names with case (default: ASCII case-insensitive).
    #[arg(long)]
    case_sensitive: bool,
    /// Seconds between checkpoints.
    #[arg(long, default_value_t = 30.0)]
    checkpoint_secs: f64,
}

impl BuildArgs {
    /// The library's build options from the flags (`--shard` resolved), checked.
    pub fn options(&self) -> Result<BuildOptions> {
        let options = BuildOptions {
            mentions: self.mentions,
            k: self.k,
            norm: self.norm,
            max_len: self.max_len,
            seed: self.seed,
            batch: self.batch,
            batch_tokens: self.batch_tokens,
            threads: self.threads,
            encoders: self.encoders,
            case_sensitive: self.case_sensitive,
            shard: self
                .shard
                .as_deref()
                .map(|s| parse_shard_arg(s, self.shard_count))
                .transpose()?,
            checkpoint_secs: self.checkpoint_secs,
            vectors: self.vectors,
            context_text: self.context_text,
            memory: self.memory,
            ..Default::default()
        };
        options.validate()?;
        Ok(options)
    }
}

fn parse_context_text(s: &str) -> std::result::Result<ContextText, String> {
    ContextText::parse(s).map_err(|e| e.to_string())
}

fn parse_memory(s: &str) -> std::result::Result<u64, String> {
    pelt::build::parse_memory(s).map_err(|e| e.to_string())
}

fn parse_vectors(s: &str) -> std::result::Result<VectorDtype, String> {
    VectorDtype::parse(s).map_err(|e| e.to_string())
}

fn parse_mentions(s: &str) -> std::result::Result<MentionMode, String> {
    MentionMode::parse(s).ok_or_else(|| format!("`{s}`: expected auto, links, names or both"))
}

/// `pelt build`.
pub fn run(args: BuildArgs, out: &mut dyn Write) -> Result<()> {
    let options = args.options()?;
    let model = load_model(args.model, args.device, args.dtype)?;
    let corpus = Corpus::open(&args.corpus)?;
    let ckpt = checkpoint_path(&args.out);
    if !args.resume && ckpt.exists() {
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
            entities: args.entities.as_deref(),
            min_count: args.min_count,
            options: &options,
            out: Some(args.out.clone()),
            out_label: "--out",
            tmp: args.tmp,
            replace: Replace::forced(args.force),
            resume: args.resume,
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
    write_report(&args.out, args.min_count, &table, &report, out)
}

/// What a finished build tells: warnings on stderr, the table and the run on `out`.
fn write_report(
    out_path: &std::path::Path,
    min_count: usize,
    table: &Table,
    report: &BuildReport,
    out: &mut dyn Write,
) -> Result<()> {
    if let Some(n) = report.entities_from_links {
        eprintln!("entities: {n} ids from the corpus's links (linked at least {min_count} times)");
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
        escape::path(out_path),
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
    let sorted = match report.sort_runs {
        0 => "in memory".to_string(),
        r => format!(
            "in {r} runs on disk, {} merge pass{}",
            report.sort_passes + 1,
            if report.sort_passes == 0 { "" } else { "es" }
        ),
    };
    writeln!(
        out,
        "memory budget {}: {} mentions sorted {sorted}",
        pelt::build::budget::show(report.memory),
        report.mentions_found
    )?;
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
    Ok(())
}

/// `pelt merge`'s flags.
#[derive(Args, Debug)]
pub struct MergeArgs {
    #[arg(required = true, num_args = 1..)]
    tables: Vec<PathBuf>,
    #[arg(long)]
    out: PathBuf,
    /// Allow a merge of some of the shards only (the result is a partial table).
    #[arg(long)]
    partial: bool,
    /// Replace an existing --out even when it is not a PELT table.
    #[arg(long)]
    force: bool,
}

/// `pelt merge`.
pub fn merge(args: MergeArgs, out: &mut dyn Write) -> Result<()> {
    let out_path = args.out;
    let tables = shard_files(&args.tables)?;
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
    .check_output(
        "--out",
        &out_path,
        OutputKind::Table,
        Replace::forced(args.force),
    )?;
    let meta = pelt::table::merged_meta(&loaded, args.partial)?;
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
    Ok(())
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
