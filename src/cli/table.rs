//! Commands on a built table: `pelt renorm`, `pelt neighbors`, `pelt contexts` and
//! `pelt export-projector`.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

use pelt::escape;
use pelt::model::DeviceChoice;
use pelt::outpath::{Input, Inputs, OutputKind, Replace};
use pelt::table::Table;

use super::{load_model, Precision};

/// `pelt renorm`'s flags.
#[derive(Args, Debug)]
pub struct RenormArgs {
    table: PathBuf,
    #[arg(long)]
    norm: f32,
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing --out even when it is not a PELT table.
    #[arg(long)]
    force: bool,
}

/// `pelt renorm`.
pub fn renorm(args: RenormArgs, out: &mut dyn Write) -> Result<()> {
    let RenormArgs {
        table,
        norm,
        out: out_path,
        force,
    } = args;
    if !(norm.is_finite() && norm > 0.0) {
        bail!("--norm must be a positive number");
    }
    Inputs(vec![Input::new("table", &table)]).check_output(
        "--out",
        &out_path,
        OutputKind::Table,
        Replace::forced(force),
    )?;
    let mut t = Table::load(&table)?;
    t.norm = norm;
    t.save(&out_path)?;
    writeln!(out, "wrote {} (norm {norm})", escape::path(&out_path))?;
    Ok(())
}

/// `pelt neighbors`'s flags.
#[derive(Args, Debug)]
pub struct NeighborsArgs {
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
}

/// `pelt neighbors`.
pub fn neighbors(args: NeighborsArgs, out: &mut dyn Write) -> Result<()> {
    let NeighborsArgs {
        table,
        entity,
        k,
        vocab,
        center,
        model,
    } = args;
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
    let centered = if center { ", mean removed" } else { "" };
    if vocab {
        let index = pelt::analysis::NeighbourIndex::new(&t, center)?;
        let m = load_model(model, DeviceChoice::Cpu, Precision::F32)?;
        let tokens = pelt::analysis::vocab_neighbours_of(&m, &t, &index, i, k, t.norm)?;
        writeln!(
            out,
            "vocabulary tokens nearest to {} ({}) by dot product at norm {}{centered}:",
            escape::text(&t.entity_names[i]),
            escape::text(&t.entity_ids[i]),
            t.norm,
        )?;
        for (tok, s) in tokens {
            writeln!(out, "  {:<20} {s:.3}", escape::text(&tok))?;
        }
    } else {
        writeln!(
            out,
            "entities nearest to {} ({}) by cosine{centered}:",
            escape::text(&t.entity_names[i]),
            escape::text(&t.entity_ids[i]),
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
    Ok(())
}

/// `pelt contexts`'s flags.
#[derive(Args, Debug)]
pub struct ContextsArgs {
    #[arg(long)]
    table: PathBuf,
    /// Entity id or name.
    entity: String,
    /// The corpus the table was built from (files or folders, as given to the build): the
    /// sentences are read from it, checked against the table's checksums.
    #[arg(long, num_args = 1..)]
    corpus: Vec<PathBuf>,
    /// At most this many contexts.
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

/// `pelt contexts`: one line per context, `file:line#sentence [source] text` with the mention
/// in brackets.
pub fn contexts(args: ContextsArgs, out: &mut dyn Write) -> Result<()> {
    let mut t = Table::load(&args.table)?;
    let i = t.index_of(&args.entity).with_context(|| {
        format!(
            "no entity `{}` in {}",
            escape::text(&args.entity),
            escape::path(&args.table)
        )
    })?;
    if !args.corpus.is_empty() {
        t.attach_corpus(&args.corpus);
    }
    let range = t.contexts_of(i);
    let shown = range.start..range.end.min(range.start + args.limit);
    writeln!(
        out,
        "{} ({}): {} contexts{}",
        escape::text(&t.entity_names[i]),
        escape::text(&t.entity_ids[i]),
        range.len(),
        if shown.len() < range.len() {
            format!(", the first {}", shown.len())
        } else {
            String::new()
        }
    )?;
    for c in t.contexts_in(shown)? {
        let file = t.corpus_files().get(c.file as usize).map_or_else(
            || format!("file {}", c.file),
            |f| escape::text(f).into_owned(),
        );
        let (a, b) = (c.start as usize, c.end as usize);
        writeln!(
            out,
            "  {file}:{}#{} [{}] {}[{}]{}",
            c.line,
            c.sentence,
            c.source.as_str(),
            escape::text(&c.text[..a]),
            escape::text(&c.text[a..b]),
            escape::text(&c.text[b..])
        )?;
    }
    Ok(())
}

/// `pelt export-projector`'s flags.
#[derive(Args, Debug)]
pub struct ExportProjectorArgs {
    #[arg(long)]
    table: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing vectors.tsv or metadata.tsv in --out even when it is not a
    /// Projector export.
    #[arg(long)]
    force: bool,
}

/// `pelt export-projector`.
pub fn export_projector(args: ExportProjectorArgs, out: &mut dyn Write) -> Result<()> {
    let ExportProjectorArgs {
        table,
        out: dir,
        force,
    } = args;
    pelt::outpath::check_dir_or_absent("--out", &dir)?;
    let inputs = Inputs(vec![Input::new("table", &table)]);
    for f in ["vectors.tsv", "metadata.tsv"] {
        inputs.check_output(
            "--out",
            &dir.join(f),
            OutputKind::Projector,
            Replace::forced(force),
        )?;
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
    Ok(())
}
