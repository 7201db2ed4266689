//! The build use case, as both front ends run it: choose the entity list, check the outputs
//! against the inputs, build (writing the table), and clean up the checkpoint.

use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use super::{
    build_table, checkpoint_path, entity_list_for, BuildInput, BuildOptions, BuildOutcome,
};
use crate::corpus::Corpus;
use crate::model::Model;
use crate::outpath::{OutputKind, Replace};
use crate::progress::Progress;

pub struct BuildJob<'a> {
    pub model: &'a Model,
    pub corpus: &'a Corpus,
    /// The entity list file; `None` takes the ids of the corpus's links (linked at least
    /// `min_count` times).
    pub entities: Option<&'a Path>,
    pub min_count: usize,
    pub options: &'a BuildOptions,
    /// The table file (its checkpoint is `<out>.ckpt`); `None` keeps the table in memory.
    pub out: Option<PathBuf>,
    /// How the output is named in messages (`--out`, `the project's table`).
    pub out_label: &'a str,
    pub tmp: Option<PathBuf>,
    /// Whether the table and its checkpoint may replace files this tool did not write.
    pub replace: Replace,
    pub resume: bool,
    pub cancel: &'a AtomicBool,
}

/// Runs a build job: on success the table is written to `out` (and returned, opened from it),
/// its checkpoint removed, and the report's first stage is the entity-list read where the
/// list came from the corpus.
pub fn run_build_job(job: BuildJob, progress: &mut dyn FnMut(&Progress)) -> Result<BuildOutcome> {
    let (entities, entities_stage) = entity_list_for(job.corpus, job.entities, job.min_count)?;
    let ckpt = job.out.as_deref().map(checkpoint_path);
    if let (Some(out), Some(c)) = (&job.out, &ckpt) {
        let mut inputs = crate::outpath::Inputs::new();
        inputs
            .add_all("corpus file", job.corpus.files.iter().cloned())
            .add_all("entity list", job.entities.map(Path::to_path_buf))
            .add_all("model file", job.model.input_files());
        inputs.check_output(job.out_label, out, OutputKind::Table, job.replace)?;
        inputs.add("output table", out);
        inputs.check_output("checkpoint", c, OutputKind::Checkpoint, job.replace)?;
    }
    let outcome = build_table(
        BuildInput {
            model: job.model,
            corpus: job.corpus,
            entities: &entities,
            options: job.options,
            out: job.out.clone(),
            tmp: job.tmp.clone(),
            checkpoint: ckpt,
            resume: job.resume,
            cancel: job.cancel,
        },
        progress,
    )?;
    Ok(match outcome {
        BuildOutcome::Finished(table, mut report) => {
            report.entities_from_links = entities_stage.as_ref().map(|_| entities.len());
            report.stages.splice(0..0, entities_stage);
            BuildOutcome::Finished(table, report)
        }
        c => c,
    })
}
