//! The background worker: a thread that owns the model and does all model work for a front
//! end. Jobs go in and events come out over crossbeam channels; after each event the worker
//! calls the `wake` callback it was given (the GUI passes `request_repaint`), so it needs no
//! GUI library itself. Errors and panics in a job become [`Event::Error`]; the worker lives on.

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Sender};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::analysis::{self, ContextInsight};
use crate::build::{
    build_table, checkpoint_path, entity_list_for, BuildInput, BuildOutcome, BuildReport,
};
use crate::contexts::MentionFinder;
use crate::corpus::Corpus;
use crate::model::{describe_device, softmax, top_k, DeviceChoice, Model};
use crate::progress::Progress;
use crate::project::Project;
use crate::rewrite::rewrite;
use crate::table::Table;

pub enum Job {
    /// Loads (or reuses) the model of `dir` on `device`.
    LoadModel {
        dir: PathBuf,
        device: DeviceChoice,
    },
    /// Builds the project's table; saves it to `project.table` when set.
    Build {
        project: Box<Project>,
        resume: bool,
    },
    OpenTable {
        path: PathBuf,
    },
    SaveTable {
        table: Arc<Table>,
        path: PathBuf,
    },
    ExportProjector {
        table: Arc<Table>,
        dir: PathBuf,
    },
    /// Runs the model over an entity's supporting contexts (at most `limit`).
    Inspect {
        table: Arc<Table>,
        entity: usize,
        top_k: usize,
        limit: usize,
        norms: Vec<f32>,
    },
    Neighbours {
        table: Arc<Table>,
        entity: usize,
        k: usize,
        center: bool,
        norm: f32,
    },
    /// Fill-mask on `text` without and with entity vectors at two norms.
    Preview {
        table: Arc<Table>,
        text: String,
        disabled: Vec<(usize, usize)>,
        norm_a: f32,
        norm_b: f32,
        top_k: usize,
    },
}

impl Job {
    pub fn name(&self) -> &'static str {
        match self {
            Job::LoadModel { .. } => "load model",
            Job::Build { .. } => "build",
            Job::OpenTable { .. } => "open table",
            Job::SaveTable { .. } => "save table",
            Job::ExportProjector { .. } => "export projector files",
            Job::Inspect { .. } => "inspect",
            Job::Neighbours { .. } => "neighbours",
            Job::Preview { .. } => "preview",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub dir: PathBuf,
    pub name: String,
    pub family: String,
    pub hidden: usize,
    pub vocab: usize,
    pub layers: usize,
    pub device: String,
    pub sha256: String,
    pub mask_token: String,
}

/// Predictions at one mask: (display token, probability).
pub type Predictions = Vec<(String, f32)>;

#[derive(Debug, Clone)]
pub struct MaskComparison {
    pub without: Predictions,
    pub with_a: Predictions,
    pub with_b: Predictions,
}

#[derive(Debug, Clone)]
pub struct PreviewResult {
    pub text: String,
    /// `(start, end, entity, plugged)` for each mention found in `text`.
    pub mentions: Vec<(usize, usize, usize, bool)>,
    pub rewritten: String,
    /// `(id, token, entity carried at this position)`.
    pub tokens: Vec<(u32, String, Option<usize>)>,
    pub masks: Vec<MaskComparison>,
    pub norm_a: f32,
    pub norm_b: f32,
}

#[derive(Debug, Clone)]
pub struct Inspection {
    pub entity: usize,
    pub insights: Vec<ContextInsight>,
    /// Display strings of each insight's predictions.
    pub prediction_tokens: Vec<Vec<String>>,
    /// `(norm, mean loss)`.
    pub loss_curve: Vec<(f32, f64)>,
}

#[derive(Debug, Clone)]
pub struct NeighbourResult {
    pub entity: usize,
    pub entities: Vec<(usize, f32)>,
    pub vocab: Vec<(String, f32)>,
}

pub enum Event {
    ModelLoaded(ModelInfo),
    Progress(Progress),
    Built {
        table: Arc<Table>,
        report: Box<BuildReport>,
        saved_to: Option<PathBuf>,
    },
    BuildCancelled {
        done: u64,
        total: u64,
        checkpoint: Option<PathBuf>,
    },
    TableOpened {
        table: Arc<Table>,
        path: PathBuf,
    },
    Saved {
        path: PathBuf,
    },
    Inspected(Box<Inspection>),
    Neighbours(NeighbourResult),
    Previewed(Box<PreviewResult>),
    Error {
        job: &'static str,
        message: String,
    },
}

pub struct Worker {
    jobs: Sender<Job>,
    events: Receiver<Event>,
    cancel: Arc<AtomicBool>,
    busy: Arc<AtomicBool>,
}

impl Worker {
    /// Starts the worker thread. `wake` is called after every event.
    pub fn spawn(wake: impl Fn() + Send + 'static) -> Worker {
        let (jobs, job_rx) = crossbeam_channel::unbounded::<Job>();
        let (event_tx, events) = crossbeam_channel::unbounded::<Event>();
        let cancel = Arc::new(AtomicBool::new(false));
        let busy = Arc::new(AtomicBool::new(false));
        let (c, b) = (cancel.clone(), busy.clone());
        std::thread::Builder::new()
            .name("pelt-worker".into())
            .spawn(move || {
                let mut state = State {
                    model: None,
                    cancel: c,
                };
                let send = |e: Event| {
                    let _ = event_tx.send(e);
                    wake();
                };
                for job in job_rx.iter() {
                    b.store(true, Ordering::SeqCst);
                    let name = job.name();
                    let r = std::panic::catch_unwind(AssertUnwindSafe(|| state.run(job, &send)));
                    match r {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => send(Event::Error {
                            job: name,
                            message: format!("{e:#}"),
                        }),
                        Err(p) => {
                            let msg = p
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_else(|| "unknown panic".into());
                            send(Event::Error {
                                job: name,
                                message: format!("internal error: {msg}"),
                            })
                        }
                    }
                    b.store(false, Ordering::SeqCst);
                    wake();
                }
            })
            .expect("cannot start the worker thread");
        Worker {
            jobs,
            events,
            cancel,
            busy,
        }
    }

    pub fn send(&self, job: Job) {
        if matches!(job, Job::Build { .. }) {
            self.cancel.store(false, Ordering::SeqCst);
        }
        let _ = self.jobs.send(job);
    }

    /// Asks a running build to stop after its current batch (it writes a checkpoint).
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// Events that have arrived, without waiting.
    pub fn poll(&self) -> Vec<Event> {
        self.events.try_iter().collect()
    }

    /// Waits for the next event (for tests and the CLI).
    pub fn recv_timeout(&self, t: std::time::Duration) -> Option<Event> {
        self.events.recv_timeout(t).ok()
    }

    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst) || !self.jobs.is_empty()
    }
}

struct State {
    model: Option<(PathBuf, DeviceChoice, Model)>,
    cancel: Arc<AtomicBool>,
}

impl State {
    /// Loads the model of `dir` unless it is the one loaded; a model that fails to load leaves
    /// the previous one in place. A newly loaded model is announced with [`Event::ModelLoaded`].
    fn model(
        &mut self,
        dir: &PathBuf,
        device: DeviceChoice,
        send: &dyn Fn(Event),
    ) -> Result<&Model> {
        let reuse = matches!(&self.model, Some((d, dev, _)) if d == dir && *dev == device);
        if !reuse {
            let m = Model::load(dir, &device.open()?)?;
            send(Event::ModelLoaded(model_info(dir, &m)?));
            self.model = Some((dir.clone(), device, m));
        }
        Ok(&self.model.as_ref().expect("loaded above").2)
    }

    /// The loaded model, checked to be the one `table` was built with.
    fn model_for(&mut self, table: &Table) -> Result<&Model> {
        let (_, _, m) = self.model.as_ref().context("no model is loaded")?;
        table.check_model(&m.name(), &m.weights_sha256()?, m.hidden_size())?;
        Ok(m)
    }

    fn run(&mut self, job: Job, send: &dyn Fn(Event)) -> Result<()> {
        match job {
            Job::LoadModel { dir, device } => {
                let was_loaded =
                    matches!(&self.model, Some((d, dev, _)) if *d == dir && *dev == device);
                let m = self.model(&dir, device, send)?;
                if was_loaded {
                    // Answer every LoadModel, also when the model was already there.
                    send(Event::ModelLoaded(model_info(&dir, m)?));
                }
            }
            Job::Build { project, resume } => {
                let cancel = self.cancel.clone();
                let model = self.model(&project.resolve_model()?, project.device, send)?;
                let corpus = Corpus::open(&project.corpus)?;
                let entities = entity_list_for(&corpus, project.entities.as_deref(), 1)?;
                let ckpt = project.table.as_ref().map(|t| checkpoint_path(t));
                if let (Some(out), Some(c)) = (&project.table, &ckpt) {
                    let mut inputs = crate::outpath::Inputs::new();
                    inputs
                        .add_all("corpus file", corpus.files.iter().cloned())
                        .add_all("entity list", project.entities.iter().cloned())
                        .add_all("model file", model.input_files());
                    inputs.check_output("the project's table", out)?;
                    inputs.add("project table", out);
                    inputs.check_output("checkpoint", c)?;
                }
                let outcome = build_table(
                    BuildInput {
                        model,
                        corpus: &corpus,
                        entities: &entities,
                        options: &project.options,
                        checkpoint: ckpt.clone(),
                        resume,
                        cancel: &cancel,
                    },
                    &mut |p| send(Event::Progress(p.clone())),
                )?;
                match outcome {
                    BuildOutcome::Finished(table, report) => {
                        let mut saved_to = None;
                        if let Some(path) = &project.table {
                            table.save(path)?;
                            if let Some(c) = &ckpt {
                                let _ = std::fs::remove_file(c);
                            }
                            saved_to = Some(path.clone());
                        }
                        send(Event::Built {
                            table: Arc::new(*table),
                            report: Box::new(report),
                            saved_to,
                        });
                    }
                    BuildOutcome::Cancelled {
                        done,
                        total,
                        checkpoint,
                    } => send(Event::BuildCancelled {
                        done,
                        total,
                        checkpoint,
                    }),
                }
            }
            Job::OpenTable { path } => {
                let table = Table::load(&path)?;
                if let Some((_, _, m)) = &self.model {
                    table.check_model(&m.name(), &m.weights_sha256()?, m.hidden_size())?;
                }
                send(Event::TableOpened {
                    table: Arc::new(table),
                    path,
                });
            }
            Job::SaveTable { table, path } => {
                table.save(&path)?;
                send(Event::Saved { path });
            }
            Job::ExportProjector { table, dir } => {
                crate::outpath::check_dir_or_absent("export folder", &dir)?;
                table.export_projector(&dir)?;
                send(Event::Saved { path: dir });
            }
            Job::Inspect {
                table,
                entity,
                top_k,
                limit,
                norms,
            } => {
                let model = self.model_for(&table)?;
                let which: Vec<usize> = table.contexts_of(entity).take(limit).collect();
                let insights = analysis::inspect_contexts(model, &table, &which, top_k, 32)?;
                let prediction_tokens = insights
                    .iter()
                    .map(|c| {
                        c.predictions
                            .iter()
                            .map(|&(t, _)| model.tokenizer.display_token(t))
                            .collect()
                    })
                    .collect();
                let losses = analysis::loss_vs_norm(table.sum(entity), &insights, &norms);
                send(Event::Inspected(Box::new(Inspection {
                    entity,
                    insights,
                    prediction_tokens,
                    loss_curve: norms.into_iter().zip(losses).collect(),
                })));
            }
            Job::Neighbours {
                table,
                entity,
                k,
                center,
                norm,
            } => {
                let model = self.model_for(&table)?;
                let entities = analysis::entity_neighbours(&table, entity, k, center);
                let emb = model.encoder.word_embeddings()?;
                let query = if center {
                    analysis::centered_vector(&table, entity, norm)
                } else {
                    table.embedding_at(entity, norm)
                };
                let vocab = analysis::vocab_neighbours(&emb, table.hidden(), &query, k)
                    .into_iter()
                    .map(|(t, s)| (model.tokenizer.display_token(t), s))
                    .collect();
                send(Event::Neighbours(NeighbourResult {
                    entity,
                    entities,
                    vocab,
                }));
            }
            Job::Preview {
                table,
                text,
                disabled,
                norm_a,
                norm_b,
                top_k: k,
            } => {
                let model = self.model_for(&table)?;
                send(Event::Previewed(Box::new(preview(
                    model, &table, &text, &disabled, norm_a, norm_b, k,
                )?)));
            }
        }
        Ok(())
    }
}

fn model_info(dir: &std::path::Path, m: &Model) -> Result<ModelInfo> {
    Ok(ModelInfo {
        dir: dir.to_path_buf(),
        name: m.name(),
        family: m.config.family.name().into(),
        hidden: m.config.hidden_size,
        vocab: m.config.vocab_size,
        layers: m.config.num_layers,
        device: describe_device(m.encoder.device()).into(),
        sha256: m.weights_sha256()?,
        mask_token: m.tokenizer.mask_token().into(),
    })
}

fn predictions(model: &Model, logits: &[f32], k: usize) -> Predictions {
    let p = softmax(logits);
    top_k(&p, k)
        .into_iter()
        .map(|i| (model.tokenizer.display_token(i as u32), p[i]))
        .collect()
}

/// Fill-mask predictions for `text` without entity vectors and with them at two norms.
/// `disabled` lists mention spans `(start, end)` that are not rewritten.
pub fn preview(
    model: &Model,
    table: &Table,
    text: &str,
    disabled: &[(usize, usize)],
    norm_a: f32,
    norm_b: f32,
    k: usize,
) -> Result<PreviewResult> {
    let finder = MentionFinder::new(&table.entity_list(), table.meta.case_sensitive)?;
    let found: Vec<_> = finder
        .find(text)
        .into_iter()
        .filter(|m| table.counts[m.entity] > 0)
        .collect();
    let plug: Vec<_> = found
        .iter()
        .copied()
        .filter(|m| !disabled.contains(&(m.start, m.end)))
        .collect();
    let rw = rewrite(&model.tokenizer, text, &plug, &table.entity_names)?;
    let plain = model.tokenizer.encode(text)?;
    let plain_masks = model.tokenizer.mask_positions(&plain);
    let mut masks = Vec::new();
    if !plain_masks.is_empty() {
        let pos: Vec<(usize, usize)> = plain_masks.iter().map(|&p| (0, p)).collect();
        let without = model
            .encoder
            .forward(std::slice::from_ref(&plain.ids), &[], &pos, true)?;
        let pos_rw: Vec<(usize, usize)> = rw.masks.iter().map(|&p| (0, p)).collect();
        let run = |norm: f32| {
            let inj = rw.injections(0, |e| table.embedding_at(e, norm));
            model
                .encoder
                .forward(std::slice::from_ref(&rw.ids), &inj, &pos_rw, true)
        };
        let (a, b) = (run(norm_a)?, run(norm_b)?);
        for i in 0..plain_masks.len().min(rw.masks.len()) {
            masks.push(MaskComparison {
                without: predictions(model, without.logits_row(i).expect("logits"), k),
                with_a: predictions(model, a.logits_row(i).expect("logits"), k),
                with_b: predictions(model, b.logits_row(i).expect("logits"), k),
            });
        }
    }
    let tokens = rw
        .ids
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let ent = rw.plugged.iter().find(|(p, _)| *p == i).map(|&(_, e)| e);
            let tok = match ent {
                Some(e) => format!("[[{}]]", table.entity_names[e]),
                None => model.tokenizer.token(id),
            };
            (id, tok, ent)
        })
        .collect();
    Ok(PreviewResult {
        text: text.to_string(),
        mentions: found
            .iter()
            .map(|m| (m.start, m.end, m.entity, plug.contains(m)))
            .collect(),
        rewritten: rw.display,
        tokens,
        masks,
        norm_a,
        norm_b,
    })
}
