//! `pelt eval`: entity typing by k-NN and cloze probes.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use pelt::eval::{run_eval_job, EvalJob, EvalSettings};
use pelt::model::DeviceChoice;
use pelt::outpath::{Input, Inputs, OutputKind, Replace};
use pelt::table::Table;

use super::{load_model, Precision};

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// k-NN leave-one-out entity typing on cosine: the table's vectors against the mean
    /// word-piece embedding of each entity's name and the majority label.
    Typing(TypingArgs),
    /// Cloze probes: mask a one-piece mention, plug the other entity with `X ( X )`, and measure
    /// P@1, P@10 and MRR of the gold piece without the table and with it at each norm.
    Cloze(ClozeArgs),
}

/// `pelt eval`.
pub fn run(what: EvalCommand, out: &mut dyn Write) -> Result<()> {
    match what {
        EvalCommand::Typing(args) => typing(args, out),
        EvalCommand::Cloze(args) => cloze(args, out),
    }
}

/// `pelt eval typing`'s flags.
#[derive(Args, Debug)]
pub struct TypingArgs {
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
    /// Replace an existing --json even when it is not a report of pelt.
    #[arg(long)]
    force: bool,
}

/// `pelt eval typing`.
fn typing(args: TypingArgs, out: &mut dyn Write) -> Result<()> {
    let TypingArgs {
        table,
        labels,
        from_fewrel,
        min_mentions,
        k,
        model,
        json,
        force,
    } = args;
    if let Some(p) = &json {
        let mut inputs: Vec<Input> = vec![Input::new("table", &table)];
        inputs.extend(labels.iter().map(|l| Input::new("labels", l)));
        inputs.extend(from_fewrel.iter().map(|f| Input::new("FewRel file", f)));
        Inputs(inputs).check_output("--json", p, OutputKind::Report, Replace::forced(force))?;
    }
    if labels.is_none() && from_fewrel.is_empty() {
        bail!("give --labels FILE or --from-fewrel FILE…");
    }
    let table = Table::load(&table)?;
    let m = load_model(model, DeviceChoice::Cpu, Precision::F32)?;
    let settings = EvalSettings {
        labels,
        fewrel: from_fewrel,
        min_mentions,
        k,
        ..EvalSettings::default()
    };
    let results = run_eval_job(
        EvalJob {
            model: &m,
            table: &table,
            settings: &settings,
            typing: true,
            cloze: false,
            norms: None,
            batch: 32,
            strict: true,
            cancel: &AtomicBool::new(false),
        },
        &mut |_| {},
    )?;
    let r = results.typing.context("entity typing did not run")?;
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
        pelt::io::write_atomic(&p, report_json("eval typing", &r)?.as_bytes())?;
    }
    Ok(())
}

/// `pelt eval cloze`'s flags.
#[derive(Args, Debug)]
pub struct ClozeArgs {
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
    /// Replace an existing --json even when it is not a report of pelt.
    #[arg(long)]
    force: bool,
}

/// `pelt eval cloze`.
fn cloze(args: ClozeArgs, out: &mut dyn Write) -> Result<()> {
    let ClozeArgs {
        table,
        from_fewrel,
        probes,
        norms,
        batch,
        model,
        device,
        json,
        force,
    } = args;
    if let Some(p) = &json {
        let mut inputs: Vec<Input> = vec![Input::new("table", &table)];
        inputs.extend(probes.iter().map(|l| Input::new("probes", l)));
        inputs.extend(from_fewrel.iter().map(|f| Input::new("FewRel file", f)));
        Inputs(inputs).check_output("--json", p, OutputKind::Report, Replace::forced(force))?;
    }
    if probes.is_none() && from_fewrel.is_empty() {
        bail!("give --probes FILE or --from-fewrel FILE…");
    }
    let table = Table::load(&table)?;
    let m = load_model(model, device, Precision::F32)?;
    let settings = EvalSettings {
        probes,
        fewrel: from_fewrel,
        ..EvalSettings::default()
    };
    let results = run_eval_job(
        EvalJob {
            model: &m,
            table: &table,
            settings: &settings,
            typing: false,
            cloze: true,
            // Without --norms: the default norms and the table's own.
            norms: (!norms.is_empty()).then_some(norms.as_slice()),
            batch,
            strict: true,
            cancel: &AtomicBool::new(false),
        },
        &mut |_| {},
    )?;
    let r = results.cloze.context("the cloze probes did not run")?;
    for w in &r.probes.warnings {
        eprintln!("note: skipped {w}");
    }
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
        pelt::io::write_atomic(&p, report_json("eval cloze", &r)?.as_bytes())?;
    }
    Ok(())
}

/// A report as pretty JSON with a `"pelt"` field naming it (so that a later run recognises
/// the file as its own output).
fn report_json(what: &str, r: &impl serde::Serialize) -> Result<String> {
    let mut v = serde_json::to_value(r)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("pelt".into(), what.into());
    }
    Ok(serde_json::to_string_pretty(&v)?)
}
