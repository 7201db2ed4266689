//! The evaluation use case, as both front ends run it: what to evaluate ([`EvalSettings`]), the
//! inputs loaded, typing and cloze run, and the results ([`EvalResults`]).

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{
    eval_cloze_with_progress, eval_typing, labels_from_fewrel, labels_from_tsv, name_vectors,
    probes_from_fewrel, probes_from_tsv, with_table_norm, ClozeReport, ClozeScore, TypingReport,
};
use crate::analysis::check_fits;
use crate::model::Model;
use crate::progress::Progress;
use crate::table::Table;

/// What to evaluate a table on (the GUI's Evaluate tab; saved with the project).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvalSettings {
    /// `id<TAB>label` lines; without it, labels come from `fewrel`.
    pub labels: Option<std::path::PathBuf>,
    /// FewRel-style files (relation → examples) for labels and probes.
    pub fewrel: Vec<std::path::PathBuf>,
    /// `sentence with [MASK]<TAB>gold<TAB>entity id` lines; without it, probes come from
    /// `fewrel`.
    pub probes: Option<std::path::PathBuf>,
    pub k: usize,
    pub min_mentions: usize,
    pub norms: Vec<f32>,
}

impl Default for EvalSettings {
    fn default() -> Self {
        EvalSettings {
            labels: None,
            fewrel: vec![],
            probes: None,
            k: 5,
            min_mentions: 3,
            norms: (1..=10).map(|n| n as f32).collect(),
        }
    }
}

/// Typing and cloze results of one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResults {
    /// The table's own norm when it was evaluated.
    pub table_norm: f32,
    pub typing: Option<TypingReport>,
    pub cloze: Option<ClozeReport>,
    /// Why a part could not run (no labels, no usable probes, …).
    pub notes: Vec<String>,
}

impl EvalResults {
    /// The norm with the best P@1, then the best MRR (the smallest norm on ties), if cloze ran.
    pub fn best_norm(&self) -> Option<f32> {
        self.cloze.as_ref()?.best_norm()
    }

    /// CSV rows: `part,method_or_norm,subset,metric,value,count`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("part,method_or_norm,subset,metric,value,count\n");
        if let Some(t) = &self.typing {
            for (subset, scores) in [("all", &t.all), ("found", &t.found_only)] {
                for m in scores {
                    out += &format!(
                        "typing,{},{subset},accuracy,{:.6},{}\n",
                        m.method, m.accuracy, m.total
                    );
                }
            }
        }
        if let Some(c) = &self.cloze {
            let mut row = |name: String, s: &ClozeScore| {
                for (metric, v) in [("p@1", s.p_at_1), ("p@10", s.p_at_10), ("mrr", s.mrr)] {
                    out += &format!("cloze,{name},all,{metric},{v:.6},{}\n", s.probes);
                }
            };
            row("without".into(), &c.without);
            for (n, s) in &c.with {
                row(format!("norm {n}"), s);
            }
        }
        out
    }
}

/// One evaluation of a table, as a front end asks for it.
pub struct EvalJob<'a> {
    /// The model the table was built with (checked).
    pub model: &'a Model,
    pub table: &'a Table,
    /// Where the labels and probes come from, `k` and the FewRel mention threshold.
    pub settings: &'a EvalSettings,
    /// Whether to run entity typing (with the labels of `settings`).
    pub typing: bool,
    /// Whether to run the cloze probes (with the probes of `settings`).
    pub cloze: bool,
    /// The norms to try, as given; `None`: those of `settings` and the table's own.
    pub norms: Option<&'a [f32]>,
    /// Probes per model batch.
    pub batch: usize,
    /// Whether a part asked for that cannot run is an error (the command line asked for it)
    /// instead of a note in the results (the window runs whatever the project has).
    pub strict: bool,
    pub cancel: &'a AtomicBool,
}

/// Runs an evaluation job: checks that the model is the table's, reads the labels and the
/// probes of its settings, and runs typing where there are labels and cloze where there are
/// probes, reporting the cloze passes' progress. Without `strict`, a part that cannot run says
/// why in `notes`, and it is an error only when no part can.
pub fn run_eval_job(job: EvalJob, progress: &mut dyn FnMut(&Progress)) -> Result<EvalResults> {
    let EvalJob {
        model,
        table,
        settings,
        strict,
        cancel,
        ..
    } = job;
    check_fits(table, model)?;
    let mut notes = Vec::new();
    // A part that cannot run: an error when strict, else a note.
    let mut skip = |part: &str, e: anyhow::Error| -> Result<()> {
        if strict {
            return Err(e);
        }
        notes.push(format!("{part}: {e:#}"));
        Ok(())
    };
    let mut typing = None;
    if job.typing {
        let labels = match (&settings.labels, settings.fewrel.is_empty()) {
            (Some(p), _) => labels_from_tsv(p),
            (None, false) => labels_from_fewrel(&settings.fewrel, settings.min_mentions),
            (None, true) => Err(anyhow!("no labels (choose a labels file or FewRel files)")),
        };
        match labels {
            Err(e) => skip("typing", e)?,
            Ok(l) => {
                let names =
                    name_vectors(table, &model.tokenizer, &model.encoder.word_embeddings()?)?;
                match eval_typing(table, &l, Some(&names), settings.k) {
                    Ok(r) => typing = Some(r),
                    Err(e) => skip("typing", e)?,
                }
            }
        }
    }
    let mut cloze = None;
    if job.cloze {
        let probes = match (&settings.probes, settings.fewrel.is_empty()) {
            (Some(p), _) => probes_from_tsv(p, table, &model.tokenizer),
            (None, false) => probes_from_fewrel(&settings.fewrel, table, &model.tokenizer),
            (None, true) => Err(anyhow!("no probes (choose a probes file or FewRel files)")),
        };
        let norms = match job.norms {
            Some(n) => n.to_vec(),
            None => with_table_norm(&settings.norms, table.norm),
        };
        match probes {
            Err(e) => skip("cloze", e)?,
            Ok((p, rep)) => {
                match eval_cloze_with_progress(
                    model, table, p, rep, &norms, job.batch, cancel, progress,
                ) {
                    Ok(r) => cloze = Some(r),
                    Err(e) if cancel.load(Ordering::Relaxed) => return Err(e),
                    Err(e) => skip("cloze", e)?,
                }
            }
        }
    }
    if typing.is_none() && cloze.is_none() {
        bail!("nothing to evaluate: {}", notes.join("; "));
    }
    Ok(EvalResults {
        table_norm: table.norm,
        typing,
        cloze,
        notes,
    })
}
