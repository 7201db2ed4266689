//! The headless command line (`pelt <subcommand>`), on the same engine as the GUI.
//!
//! One file per group of commands: each holds its commands' flags (clap `Args` structs, turned
//! into the library's options there) and the functions that run them. This file holds the list
//! of commands, the dispatch, and what the groups share: the model, the precision and the
//! progress bar.

mod bench;
mod build;
mod compare;
mod entities;
mod eval;
mod fill;
mod map;
mod project;
mod table;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;

use pelt::model::{DeviceChoice, DtypeChoice, Model};
use pelt::progress::Progress;

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
    Fill(fill::FillArgs),
    /// Build a PELT table from a corpus and an entity list.
    ///
    /// Corpus formats: .txt (a passage per line), .jsonl ({"text": …}, optionally with
    /// "links": [{"start", "end", "id"}] in code points), FewRel-style .json (h/t spans become
    /// links), PubTator (.pubtator, .pubtator.txt), WikiExtractor --links output (wiki_NN,
    /// .wiki); folders of these and .gz of any.
    Build(build::BuildArgs),
    /// Merge the shard tables of one build (files or folders of them) into one table, streamed.
    Merge(build::MergeArgs),
    /// Rescale a table's embeddings to another norm (no rebuild needed).
    Renorm(table::RenormArgs),
    /// Nearest entities by cosine, or nearest vocabulary tokens by dot product (--vocab).
    Neighbors(table::NeighborsArgs),
    /// An entity's supporting contexts: each sentence read from the corpus (--corpus) where
    /// it is there unchanged, else from the table's stored text.
    Contexts(table::ContextsArgs),
    /// Write TensorFlow Embedding Projector files (vectors.tsv, metadata.tsv).
    ExportProjector(table::ExportProjectorArgs),
    /// Benchmark table construction on a fixed set of contexts (bundled model and a
    /// bert-base-shaped model with random weights); `pelt bench ui` benchmarks the window.
    Bench(bench::BenchArgs),
    /// Write an entity list (id, name, aliases) from the links of an entity-linked corpus: the
    /// most frequent anchor text is the name, the others are aliases.
    EntitiesFromLinks(entities::FromLinksArgs),
    /// Evaluate a table (entity typing by k-NN).
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// Write an entity list (id, name, aliases) from FewRel-style files.
    EntitiesFromFewrel(entities::FromFewrelArgs),
    /// Check a project file (say, one someone sent you): its numbers, unknown fields, what it
    /// reads, and what a build of it would write (outputs outside its folder are flagged).
    Check(project::CheckArgs),
    /// Compare two tables (models or corpora) entity by entity: for the entities both found,
    /// the overlap of their k nearest neighbours in each (Jaccard@k), most changed first.
    Compare(compare::CompareArgs),
    /// A 2-D map of a table (PCA, t-SNE or UMAP) as TSV, with its trustworthiness and, given
    /// labels, how much it groups entities of one label.
    Map(map::MapArgs),
}

/// Runs one command; what it reports goes to stdout, notes and warnings to stderr.
pub fn run(cli: Cli) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let out: &mut dyn Write = &mut out;
    match cli.command {
        Command::Fill(args) => fill::run(args, out),
        Command::Build(args) => build::run(args, out),
        Command::Merge(args) => build::merge(args, out),
        Command::Renorm(args) => table::renorm(args, out),
        Command::Neighbors(args) => table::neighbors(args, out),
        Command::Contexts(args) => table::contexts(args, out),
        Command::ExportProjector(args) => table::export_projector(args, out),
        Command::Bench(args) => bench::run(args, out),
        Command::EntitiesFromLinks(args) => entities::from_links(args, out),
        Command::Eval(what) => eval::run(what, out),
        Command::EntitiesFromFewrel(args) => entities::from_fewrel(args, out),
        Command::Check(args) => project::check(args, out),
        Command::Compare(args) => compare::run(args, out),
        Command::Map(args) => map::run(args, out),
    }
}

/// `--model`: a folder, or a Hugging Face id (`ORG/NAME[@REV]`) found in the local cache;
/// none is the bundled model.
fn load_model(spec: Option<PathBuf>, device: DeviceChoice, dtype: Precision) -> Result<Model> {
    let dir = pelt::model::resolve_model(spec.as_deref().map(|p| p.to_str().unwrap_or("")))?;
    let device = device.open()?;
    let dtype = dtype.choice().resolve(&device);
    Model::load_with_dtype(&dir, &device, dtype)
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
