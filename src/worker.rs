//! The background worker: a thread that owns the model and does all model work (and any
//! other slow computation, such as the map's PCA) for a front end.
//!
//! [`Job`]s go in and [`Event`]s come out over crossbeam channels; after each event the worker
//! calls the `wake` callback it was given (the GUI passes `request_repaint`), so it needs no
//! GUI library itself.
//!
//! **Correlation.** [`Worker::send`] gives every job an id and tags it with the sender's
//! generation (the GUI bumps its generation whenever it switches projects). Every event
//! carries the id and generation of the job it answers, so a front end matches replies by id
//! and drops those of an older generation by rule, whatever order they arrive in.
//!
//! **Exactly one final reply.** Every job gets exactly one final [`Reply`]: its own result
//! variant, or [`Reply::Failed`] when it returns an error or panics (the worker lives on).
//! Before it, a job may send interim replies ([`Reply::Progress`], [`Reply::ModelChanged`]);
//! [`Reply::is_final`] tells them apart.

use anyhow::{bail, Context, Result};
use crossbeam_channel::{Receiver, Sender};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::analysis::maps::{compute_map, map_tsv, read_map_tsv, MapMethod};
use crate::analysis::preview::{preview, PreviewInput, PreviewResult};
pub use crate::analysis::Predictions;
use crate::analysis::{self, check_fits, ContextInsight, NeighbourIndex};
use crate::build::{run_build_job, BuildJob, BuildOutcome, BuildReport};
use crate::contexts::MentionFinder;
use crate::corpus::Corpus;
use crate::model::{describe_device, DeviceChoice, DtypeChoice, Matmul, Model};
use crate::outpath::{Inputs, NotOurs, OutputKind, Replace};
use crate::progress::Progress;
use crate::project::Project;
use crate::table::Table;

/// Identifies one job; every event about the job carries it.
pub type JobId = u64;

/// One unit of work, as sent by [`Worker::send`].
pub struct Job {
    pub id: JobId,
    /// The sender's generation when the job was sent (see the module docs).
    pub generation: u64,
    pub task: Task,
}

/// What a job does.
pub enum Task {
    /// Loads (or reuses) the model of `dir` on `device` in `dtype`.
    LoadModel {
        dir: PathBuf,
        device: DeviceChoice,
        dtype: DtypeChoice,
    },
    /// Builds the project's table; saves it to `project.table` when set.
    Build {
        project: Box<Project>,
        resume: bool,
        /// Whether the table and its checkpoint may replace files this tool did not write.
        replace: Replace,
    },
    /// Opens a table; its contexts' sentences are read from `corpus` where it holds them.
    OpenTable { path: PathBuf, corpus: Vec<PathBuf> },
    /// Writes the table at `path`, which may not be one of `inputs` (the project's files).
    SaveTable {
        table: Arc<Table>,
        path: PathBuf,
        inputs: Vec<PathBuf>,
        replace: Replace,
    },
    ExportProjector {
        table: Arc<Table>,
        dir: PathBuf,
        inputs: Vec<PathBuf>,
        replace: Replace,
    },
    /// Runs the model over an entity's supporting contexts (at most `limit`).
    Inspect {
        table: Arc<Table>,
        entity: usize,
        top_k: usize,
        limit: usize,
        norms: Vec<f32>,
    },
    /// Nearest entities (one matrix product over the table's cached directions) and nearest
    /// vocabulary tokens.
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
    /// A 2-D map of the table's entity vectors (needs no model). A learnt map (t-SNE, UMAP) is
    /// read from, or kept in, `cache_dir/maps/` when given ([`MapMethod::cache_file`]);
    /// cancelled by [`Worker::cancel`] (the reply then has no points).
    Map {
        table: Arc<Table>,
        method: MapMethod,
        cache_dir: Option<PathBuf>,
        /// Only read a kept map back: without one, the reply has no points.
        read_only: bool,
    },
    /// Classes of the table's rows for colouring the map (at most `max_classes`).
    Classes {
        table: Arc<Table>,
        source: crate::eval::LabelSource,
        max_classes: usize,
    },
    /// Writes some rows of the table as an entity list (`id<TAB>name<TAB>aliases`).
    SaveEntitySet {
        table: Arc<Table>,
        rows: Arc<Vec<usize>>,
        path: PathBuf,
        inputs: Vec<PathBuf>,
        replace: Replace,
    },
    /// Entity typing and cloze probes of the table ([`crate::eval::run_eval_job`]); cancelled by
    /// [`Worker::cancel`].
    Evaluate {
        table: Arc<Table>,
        settings: Box<crate::eval::EvalSettings>,
    },
    /// Opens the table at `b` and compares `a` with it, entity by entity
    /// ([`crate::analysis::compare::compare_file`]); `control` shows how far it has got and
    /// stops it.
    Compare {
        a: Arc<Table>,
        b: PathBuf,
        k: usize,
        center: bool,
        control: Arc<crate::analysis::compare::CompareControl>,
    },
}

impl Task {
    pub fn name(&self) -> &'static str {
        match self {
            Task::LoadModel { .. } => "load model",
            Task::Build { .. } => "build",
            Task::OpenTable { .. } => "open table",
            Task::SaveTable { .. } => "save table",
            Task::ExportProjector { .. } => "export projector files",
            Task::Inspect { .. } => "inspect",
            Task::Neighbours { .. } => "neighbours",
            Task::Preview { .. } => "preview",
            Task::Map { .. } => "map",
            Task::Classes { .. } => "map colours",
            Task::SaveEntitySet { .. } => "save entity set",
            Task::Evaluate { .. } => "evaluate",
            Task::Compare { .. } => "compare",
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
    /// The dtype the model runs in (`auto` resolved), e.g. `f32` or `bf16`.
    pub dtype: String,
    /// Whether batches run packed (the fused CPU path); otherwise they are padded, and
    /// builds batch by tokens ([`crate::build::BuildOptions::batch_plan`]).
    pub packs_tokens: bool,
    pub sha256: String,
    pub mask_token: String,
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

/// A point of the map: an entity row and its first two principal components.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapPoint {
    pub entity: usize,
    pub xy: [f64; 2],
}

/// A map the worker made or read back.
#[derive(Debug, Clone)]
pub struct MapReply {
    pub method: MapMethod,
    /// `None` when the map was cancelled (or, asked read-only, is not kept).
    pub points: Option<Arc<Vec<MapPoint>>>,
    /// The file the map was read from or kept in.
    pub cache: Option<PathBuf>,
    pub from_cache: bool,
    /// Why the map could not be kept (it is shown all the same).
    pub cache_error: Option<String>,
    pub secs: f64,
}

/// Something the worker says about a job: [`Event::reply`] for the job [`Event::id`].
pub struct Event {
    pub id: JobId,
    pub generation: u64,
    /// The job's [`Task::name`], for error messages.
    pub job: &'static str,
    pub reply: Reply,
}

/// Replies; all but [`Reply::Progress`] and [`Reply::ModelChanged`] are final.
pub enum Reply {
    /// Interim: how far a build (or an evaluation) has got.
    Progress(Progress),
    /// Interim: a job other than [`Task::LoadModel`] loaded a model on its way.
    ModelChanged(ModelInfo),
    /// Final for [`Task::LoadModel`] (also when the model was already loaded).
    ModelLoaded(ModelInfo),
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
    /// Final for [`Task::SaveTable`] and [`Task::ExportProjector`].
    Saved {
        path: PathBuf,
    },
    Inspected(Box<Inspection>),
    Neighbours(NeighbourResult),
    Previewed(Box<PreviewResult>),
    Mapped(Box<MapReply>),
    Classes(Arc<crate::eval::RowClasses>),
    Evaluated(Box<crate::eval::EvalResults>),
    /// Final for [`Task::Compare`].
    Compared(Box<crate::analysis::compare::Compared>),
    /// Final for a job that failed (an error, or a panic caught by the worker). `refused`:
    /// the job would have replaced a file this tool did not write (the user may agree).
    Failed {
        message: String,
        refused: Option<NotOurs>,
    },
}

impl Reply {
    pub fn is_final(&self) -> bool {
        !matches!(self, Reply::Progress(_) | Reply::ModelChanged(_))
    }
}

pub struct Worker {
    jobs: Sender<Job>,
    events: Receiver<Event>,
    cancel: Arc<AtomicBool>,
    /// Jobs sent whose final reply has not been sent yet.
    outstanding: Arc<AtomicUsize>,
    next_id: AtomicU64,
}

/// How the worker runs models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerOptions {
    /// The fused f32 CPU kernels (packed batches) where the model runs on the CPU in f32.
    /// Off, every model runs candle's generic tensor operations on padded batches, with
    /// candle's matmul: the path a GPU takes, here on any device (for checking that path).
    pub cpu_kernels: bool,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions { cpu_kernels: true }
    }
}

impl Worker {
    /// Starts the worker thread. `wake` is called after every event.
    pub fn spawn(wake: impl Fn() + Send + 'static) -> Worker {
        Self::spawn_with(WorkerOptions::default(), wake)
    }

    /// [`Worker::spawn`] with other [`WorkerOptions`].
    pub fn spawn_with(options: WorkerOptions, wake: impl Fn() + Send + 'static) -> Worker {
        let (jobs, job_rx) = crossbeam_channel::unbounded::<Job>();
        let (event_tx, events) = crossbeam_channel::unbounded::<Event>();
        let cancel = Arc::new(AtomicBool::new(false));
        let outstanding = Arc::new(AtomicUsize::new(0));
        let (c, b) = (cancel.clone(), outstanding.clone());
        std::thread::Builder::new()
            .name("pelt-worker".into())
            .spawn(move || {
                let mut engine = Engine {
                    model: None,
                    cache: None,
                    cancel: c,
                    options,
                };
                for job in job_rx.iter() {
                    let (id, generation, name) = (job.id, job.generation, job.task.name());
                    let send = |reply: Reply| {
                        let _ = event_tx.send(Event {
                            id,
                            generation,
                            job: name,
                            reply,
                        });
                        wake();
                    };
                    let r =
                        std::panic::catch_unwind(AssertUnwindSafe(|| engine.run(job.task, &send)));
                    let last = match r {
                        Ok(Ok(reply)) => reply,
                        Ok(Err(e)) => Reply::Failed {
                            message: format!("{e:#}"),
                            refused: e.chain().find_map(|c| c.downcast_ref::<NotOurs>()).cloned(),
                        },
                        Err(p) => {
                            let msg = p
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_else(|| "unknown panic".into());
                            Reply::Failed {
                                message: format!("internal error: {msg}"),
                                refused: None,
                            }
                        }
                    };
                    send(last);
                    b.fetch_sub(1, Ordering::SeqCst);
                    wake();
                }
            })
            .expect("cannot start the worker thread");
        Worker {
            jobs,
            events,
            cancel,
            outstanding,
            next_id: AtomicU64::new(1),
        }
    }

    /// Queues `task` as a job of `generation` and returns its id.
    pub fn send(&self, generation: u64, task: Task) -> JobId {
        if matches!(
            task,
            Task::Build { .. } | Task::Evaluate { .. } | Task::Map { .. }
        ) {
            self.cancel.store(false, Ordering::SeqCst);
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        self.outstanding.fetch_add(1, Ordering::SeqCst);
        let _ = self.jobs.send(Job {
            id,
            generation,
            task,
        });
        id
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

    /// Whether a job sent has not had its final reply yet (the reply may still be waiting
    /// in [`Worker::poll`]).
    pub fn is_busy(&self) -> bool {
        self.outstanding.load(Ordering::SeqCst) > 0
    }
}

/// What the worker thread holds between jobs: the model, and what it derived from the
/// table last queried.
struct Engine {
    model: Option<(PathBuf, DeviceChoice, DtypeChoice, Model)>,
    cache: Option<TableCache>,
    cancel: Arc<AtomicBool>,
    options: WorkerOptions,
}

/// Built on first use for one table and kept while that table is queried.
struct TableCache {
    table: Arc<Table>,
    index: Option<NeighbourIndex>,
    finder: Option<MentionFinder>,
    /// The mean direction of a table scanned in place (one pass, kept for its queries).
    mean: Option<Arc<Vec<f32>>>,
}

impl TableCache {
    /// The neighbour index, rebuilt when asked with the mean removed or not as last time.
    fn index(&mut self, center: bool) -> Result<&NeighbourIndex> {
        if self.index.as_ref().is_none_or(|i| i.center() != center) {
            self.index = None;
            self.index = Some(NeighbourIndex::new(&self.table, center)?);
        }
        self.index.as_ref().context("no neighbour index")
    }

    fn finder(&mut self) -> Result<&MentionFinder> {
        if self.finder.is_none() {
            let t = &self.table;
            self.finder = Some(MentionFinder::new(&t.entity_list(), t.meta.case_sensitive)?);
        }
        self.finder.as_ref().context("no mention finder")
    }
}

impl Engine {
    /// Loads the model of `dir` unless it is the one loaded; a model that fails to load leaves
    /// the previous one in place. A newly loaded model is announced with
    /// [`Reply::ModelChanged`] when `announce`.
    fn model(
        &mut self,
        dir: &PathBuf,
        device: DeviceChoice,
        dtype: DtypeChoice,
        announce: bool,
        send: &dyn Fn(Reply),
    ) -> Result<&Model> {
        let reuse = matches!(&self.model, Some((d, dev, dt, _)) if d == dir && *dev == device && *dt == dtype);
        if !reuse {
            let dev = device.open()?;
            let matmul = if self.options.cpu_kernels {
                Matmul::auto()?
            } else {
                Matmul::Candle
            };
            let mut m = Model::load_with_matmul(dir, &dev, dtype.resolve(&dev), matmul)?;
            m.encoder.set_cpu_kernels(self.options.cpu_kernels);
            if announce {
                send(Reply::ModelChanged(model_info(dir, &m)?));
            }
            self.model = Some((dir.clone(), device, dtype, m));
        }
        let (_, _, _, m) = self.model.as_ref().context("no model is loaded")?;
        Ok(m)
    }

    /// The loaded model, checked to be the one `table` was built with.
    fn model_for(&self, table: &Table) -> Result<&Model> {
        let (_, _, _, m) = self.model.as_ref().context("no model is loaded")?;
        check_fits(table, m)?;
        Ok(m)
    }

    /// What is kept for `table` (a new cache when it is another table than last time).
    fn cache(&mut self, table: &Arc<Table>) -> &mut TableCache {
        if !self
            .cache
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.table, table))
        {
            self.cache = None; // drop the old table's index before building the new one
        }
        self.cache.get_or_insert_with(|| TableCache {
            table: table.clone(),
            index: None,
            finder: None,
            mean: None,
        })
    }

    /// Runs one task and returns its final reply.
    fn run(&mut self, task: Task, send: &dyn Fn(Reply)) -> Result<Reply> {
        Ok(match task {
            Task::LoadModel { dir, device, dtype } => {
                let m = self.model(&dir, device, dtype, false, send)?;
                Reply::ModelLoaded(model_info(&dir, m)?)
            }
            Task::Build {
                project,
                resume,
                replace,
            } => {
                let cancel = self.cancel.clone();
                let model = self.model(
                    &project.resolve_model()?,
                    project.device,
                    project.dtype,
                    true,
                    send,
                )?;
                let corpus = Corpus::open(&project.corpus)?;
                let outcome = run_build_job(
                    BuildJob {
                        model,
                        corpus: &corpus,
                        entities: project.entities.as_deref(),
                        min_count: 1,
                        options: &project.options,
                        out: project.table.clone(),
                        out_label: "the project's table",
                        tmp: None,
                        replace,
                        resume,
                        cancel: &cancel,
                    },
                    &mut |p| send(Reply::Progress(p.clone())),
                )?;
                match outcome {
                    BuildOutcome::Finished(mut table, report) => Reply::Built {
                        table: {
                            table.attach_corpus(&project.corpus);
                            Arc::new(*table)
                        },
                        report: Box::new(report),
                        saved_to: project.table.clone(),
                    },
                    BuildOutcome::Cancelled {
                        done,
                        total,
                        checkpoint,
                    } => Reply::BuildCancelled {
                        done,
                        total,
                        checkpoint,
                    },
                }
            }
            Task::OpenTable { path, corpus } => {
                let mut table = Table::load(&path)?;
                table.attach_corpus(&corpus);
                if let Some((_, _, _, m)) = &self.model {
                    check_fits(&table, m)?;
                }
                Reply::TableOpened {
                    table: Arc::new(table),
                    path,
                }
            }
            Task::SaveTable {
                table,
                path,
                inputs,
                replace,
            } => {
                let mut ins = Inputs::new();
                ins.add_all("project file", inputs);
                ins.check_output("table", &path, OutputKind::Table, replace)?;
                table.save(&path)?;
                Reply::Saved { path }
            }
            Task::ExportProjector {
                table,
                dir,
                inputs,
                replace,
            } => {
                crate::outpath::check_dir_or_absent("export folder", &dir)?;
                let mut ins = Inputs::new();
                ins.add_all("project file", inputs);
                for f in ["vectors.tsv", "metadata.tsv"] {
                    ins.check_output("export", &dir.join(f), OutputKind::Projector, replace)?;
                }
                table.export_projector(&dir)?;
                Reply::Saved { path: dir }
            }
            Task::Evaluate { table, settings } => {
                let cancel = self.cancel.clone();
                let model = self.model_for(&table)?;
                let r = crate::eval::run_eval_job(
                    crate::eval::EvalJob {
                        model,
                        table: &table,
                        settings: &settings,
                        typing: true,
                        cloze: true,
                        norms: None,
                        batch: 32,
                        strict: false,
                        cancel: &cancel,
                    },
                    &mut |p| send(Reply::Progress(p.clone())),
                )?;
                Reply::Evaluated(Box::new(r))
            }
            Task::Inspect {
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
                let losses = analysis::loss_vs_norm(&table.vector(entity), &insights, &norms);
                Reply::Inspected(Box::new(Inspection {
                    entity,
                    insights,
                    prediction_tokens,
                    loss_curve: norms.into_iter().zip(losses).collect(),
                }))
            }
            Task::Neighbours {
                table,
                entity,
                k,
                center,
                norm,
            } => {
                let large = table.len() * table.hidden() > analysis::INDEX_MAX_VALUES;
                let mean = if large && center {
                    let cache = self.cache(&table);
                    let m = cache
                        .mean
                        .get_or_insert_with(|| Arc::new(analysis::mean_direction(&table, 0)))
                        .clone();
                    Some(m)
                } else {
                    None
                };
                let model = self.model_for(&table)?;
                if large {
                    // A large table is scanned in place: no copy of its vectors, one pass a
                    // query (the mean direction is computed once per table).
                    let mean = mean.as_deref().map(|m| m.as_slice());
                    let kernel = analysis::ScanKernel::best(table.meta.dtype);
                    let entities = analysis::nearest_scan(&table, entity, k, mean, 0, kernel)?;
                    let dir = analysis::direction_with_mean(&table, entity, mean);
                    let vocab =
                        analysis::vocab_neighbours_of_direction(model, &table, &dir, k, norm)?;
                    return Ok(Reply::Neighbours(NeighbourResult {
                        entity,
                        entities,
                        vocab,
                    }));
                }
                self.cache(&table).index(center)?;
                let (Some((_, _, _, model)), Some(cache)) = (&self.model, &self.cache) else {
                    bail!("no model is loaded");
                };
                let index = cache.index.as_ref().context("no neighbour index")?;
                let entities = index.entity_neighbours(entity, k)?;
                let vocab = analysis::vocab_neighbours_of(model, &table, index, entity, k, norm)?;
                Reply::Neighbours(NeighbourResult {
                    entity,
                    entities,
                    vocab,
                })
            }
            Task::Preview {
                table,
                text,
                disabled,
                norm_a,
                norm_b,
                top_k: k,
            } => {
                self.model_for(&table)?;
                self.cache(&table).finder()?;
                let (Some((_, _, _, model)), Some(cache)) = (&self.model, &self.cache) else {
                    bail!("no model is loaded");
                };
                let finder = cache.finder.as_ref().context("no mention finder")?;
                let input = PreviewInput {
                    text: &text,
                    disabled: &disabled,
                    norm_a,
                    norm_b,
                    top_k: k,
                };
                Reply::Previewed(Box::new(preview(model, &table, finder, input)?))
            }
            Task::Map {
                table,
                method,
                cache_dir,
                read_only,
            } => Reply::Mapped(Box::new(
                self.map(&table, method, cache_dir, read_only, send)?,
            )),
            Task::Classes {
                table,
                source,
                max_classes,
            } => Reply::Classes(Arc::new(crate::eval::row_classes(
                &table,
                &source,
                max_classes,
            )?)),
            Task::SaveEntitySet {
                table,
                rows,
                path,
                inputs,
                replace,
            } => {
                let mut ins = Inputs::new();
                ins.add_all("project file", inputs);
                ins.check_output("entity set", &path, OutputKind::EntityList, replace)?;
                if rows.is_empty() {
                    bail!("the set is empty");
                }
                let all = table.entity_list();
                let list = crate::entities::EntityList {
                    entities: rows.iter().map(|&r| all.entities[r].clone()).collect(),
                };
                list.write_tsv(&path)?;
                Reply::Saved { path }
            }
            Task::Compare {
                a,
                b,
                k,
                center,
                control,
            } => match crate::analysis::compare::compare_file(&a, &b, k, center, &control)? {
                Some(c) => Reply::Compared(Box::new(c)),
                None => bail!("the comparison was cancelled"),
            },
        })
    }
}

impl Engine {
    /// The map of `table` by `method`: read back from the project's folder when it keeps that
    /// map of these vectors, else computed (with progress, cancellable) and kept there.
    fn map(
        &self,
        table: &Table,
        method: MapMethod,
        cache_dir: Option<PathBuf>,
        read_only: bool,
        send: &dyn Fn(Reply),
    ) -> Result<MapReply> {
        let start = std::time::Instant::now();
        let cache = cache_dir
            .filter(|_| method.is_slow())
            .map(|d| method.cache_file(&d, table));
        let points = |m: crate::analysis::layout::MapPoints| {
            Arc::new(
                m.into_iter()
                    .map(|(entity, xy)| MapPoint { entity, xy })
                    .collect::<Vec<_>>(),
            )
        };
        let mut reply = MapReply {
            method,
            points: None,
            cache: cache.clone(),
            from_cache: false,
            cache_error: None,
            secs: 0.0,
        };
        if let Some(c) = cache.as_ref().filter(|c| c.is_file()) {
            match read_map_tsv(c, table) {
                Ok(m) => {
                    reply.points = Some(points(m));
                    reply.from_cache = true;
                    reply.secs = start.elapsed().as_secs_f64();
                    return Ok(reply);
                }
                Err(e) => reply.cache_error = Some(format!("{e:#}; the map is made again")),
            }
        }
        if read_only {
            reply.cache = None;
            return Ok(reply);
        }
        // The layout reports from its own threads; its progress reaches `send` through a
        // channel read here until the layout is done.
        let (tx, rx) = crossbeam_channel::unbounded::<(usize, usize)>();
        let cancel = &*self.cancel;
        let computed = std::thread::scope(|scope| {
            let job = scope.spawn(move || {
                let mut last: Option<std::time::Instant> = None;
                let mut report = |done: usize, total: usize| {
                    if last.is_none_or(|l| l.elapsed().as_millis() >= 100) || done == total {
                        last = Some(std::time::Instant::now());
                        let _ = tx.send((done, total));
                    }
                };
                compute_map(table, &method, cancel, &mut report)
            });
            let meter = crate::progress::Meter::new(crate::progress::Phase::Mapping, 0);
            for (done, total) in rx.iter() {
                send(Reply::Progress(
                    meter.progress(done as u64, Some(total as u64)),
                ));
            }
            job.join()
        });
        let computed = match computed {
            Ok(r) => r?,
            Err(p) => std::panic::resume_unwind(p),
        };
        let Some(m) = computed else {
            return Ok(reply);
        };
        reply.secs = start.elapsed().as_secs_f64();
        if let Some(c) = &cache {
            let keep = || -> Result<()> {
                if let Some(dir) = c.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                crate::outpath::check_replaceable("map", c, OutputKind::Map, Replace::OwnOnly)?;
                crate::io::write_atomic(c, map_tsv(table, &m).as_bytes())
            };
            if let Err(e) = keep() {
                reply.cache_error = Some(format!("{e:#}"));
                reply.cache = None;
            }
        }
        reply.points = Some(points(m));
        Ok(reply)
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
        dtype: crate::model::dtype_name(m.encoder.dtype()).into(),
        packs_tokens: m.encoder.packs_tokens(),
        sha256: m.weights_sha256()?,
        mask_token: m.tokenizer.mask_token().into(),
    })
}
