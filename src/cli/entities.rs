//! Entity lists from linked corpora: `pelt entities-from-links` and `pelt entities-from-fewrel`.

use anyhow::{bail, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

use pelt::corpus::Corpus;
use pelt::entities::EntityList;
use pelt::escape;
use pelt::outpath::{Input, Inputs, OutputKind, Replace};

/// `pelt entities-from-links`'s flags.
#[derive(Args, Debug)]
pub struct FromLinksArgs {
    /// Corpus files or folders (any linked format: .jsonl with links, FewRel .json,
    /// PubTator, WikiExtractor).
    #[arg(required = true, num_args = 1..)]
    corpus: Vec<PathBuf>,
    #[arg(long)]
    out: PathBuf,
    /// Leave out ids linked fewer than this many times.
    #[arg(long, default_value_t = 1)]
    min_count: usize,
    /// Replace an existing --out even when it is not an entity list.
    #[arg(long)]
    force: bool,
}

/// `pelt entities-from-links`.
pub fn from_links(args: FromLinksArgs, out: &mut dyn Write) -> Result<()> {
    let corpus = Corpus::open(&args.corpus)?;
    Inputs(
        corpus
            .files
            .iter()
            .map(|p| Input::new("corpus file", p))
            .collect(),
    )
    .check_output(
        "--out",
        &args.out,
        OutputKind::EntityList,
        Replace::forced(args.force),
    )?;
    if !corpus.has_links()? {
        bail!("the corpus carries no entity links (plain .txt, or .jsonl without a `links` field)");
    }
    let list = EntityList::from_links(&corpus, args.min_count)?;
    list.write_tsv(&args.out)?;
    writeln!(
        out,
        "wrote {} ({} entities)",
        args.out.display(),
        list.len()
    )?;
    Ok(())
}

/// `pelt entities-from-fewrel`'s flags.
#[derive(Args, Debug)]
pub struct FromFewrelArgs {
    #[arg(required = true, num_args = 1..)]
    files: Vec<PathBuf>,
    #[arg(long)]
    out: PathBuf,
    /// Leave out entities linked fewer than this many times.
    #[arg(long, default_value_t = 1)]
    min_count: usize,
    /// Replace an existing --out even when it is not an entity list.
    #[arg(long)]
    force: bool,
}

/// `pelt entities-from-fewrel`.
pub fn from_fewrel(args: FromFewrelArgs, out: &mut dyn Write) -> Result<()> {
    Inputs(
        args.files
            .iter()
            .map(|p| Input::new("FewRel file", p))
            .collect(),
    )
    .check_output(
        "--out",
        &args.out,
        OutputKind::EntityList,
        Replace::forced(args.force),
    )?;
    let list = EntityList::from_fewrel(&args.files, args.min_count)?;
    list.write_tsv(&args.out)?;
    writeln!(
        out,
        "wrote {} ({} entities)",
        escape::path(&args.out),
        list.len()
    )?;
    Ok(())
}
