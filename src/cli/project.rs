//! `pelt check`: what a project file reads and writes, checked before anything runs.

use anyhow::Result;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

use pelt::escape;
use pelt::outpath::{check_replaceable, OutputKind, Replace};
use pelt::project::Project;

/// `pelt check`'s flags.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// A project file (`.ron`), e.g. one someone sent you.
    project: PathBuf,
}

/// `pelt check`: loads the project as the window does (numbers checked, unknown fields
/// warned about), lists its inputs with whether they exist, and its outputs with whether they
/// lie outside the project's folder and whether a build could write them without asking.
pub fn check(args: CheckArgs, out: &mut dyn Write) -> Result<()> {
    let (p, warnings) = Project::load_checked(&args.project)?;
    for w in &warnings {
        writeln!(out, "warning: {w}")?;
    }
    writeln!(
        out,
        "project {} ({})",
        escape::text(&p.name),
        escape::path(&args.project)
    )?;
    let exists = |path: &std::path::Path| if path.exists() { "" } else { "  (missing)" };
    writeln!(out, "reads:")?;
    let model = p.model_dir();
    writeln!(
        out,
        "  model       {}{}",
        escape::path(&model),
        exists(&model)
    )?;
    for c in &p.corpus {
        writeln!(out, "  corpus      {}{}", escape::path(c), exists(c))?;
    }
    if let Some(e) = &p.entities {
        writeln!(out, "  entities    {}{}", escape::path(e), exists(e))?;
    }
    for f in p
        .eval
        .labels
        .iter()
        .chain(&p.eval.fewrel)
        .chain(&p.eval.probes)
    {
        writeln!(out, "  evaluation  {}{}", escape::path(f), exists(f))?;
    }
    writeln!(out, "writes:")?;
    let outside = p.outputs_outside(&args.project);
    if p.outputs().is_empty() {
        writeln!(out, "  nothing (the table stays in memory)")?;
    }
    for (what, path) in p.outputs() {
        let kind = if what == "table" {
            OutputKind::Table
        } else {
            OutputKind::Checkpoint
        };
        let mut notes = Vec::new();
        if outside.iter().any(|(_, o)| *o == path) {
            notes.push("outside the project's folder".to_string());
        }
        if let Err(e) = check_replaceable(what, &path, kind, Replace::OwnOnly) {
            notes.push(format!("{e:#}"));
        } else if path.exists() {
            notes.push(format!("replaces an earlier {}", kind.label()));
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!("  ({})", notes.join("; "))
        };
        writeln!(out, "  {what:<11} {}{notes}", escape::path(&path))?;
    }
    Ok(())
}
