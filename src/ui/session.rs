//! The workbench's state without any GUI: the project, its entity list and table, the build,
//! the model, the results shown in the tabs and the bookkeeping of the requests made to the
//! worker. It knows no egui; the panels read it and push [`Command`]s, which the app applies
//! after the frame with [`Session::apply`]; [`Session::poll`] applies the worker's replies.
//! Both return what [`Changed`].
//!
//! Staleness is decided by rule, not by arrival order: every job is sent with the session's
//! project generation (bumped when another project is opened or a new one started) and every
//! reply of an older generation is dropped, except the model description, which says what the
//! worker holds whatever project asked for it. Within a generation, results shown in a tab are
//! matched to their request by job id and dropped when the table changed since they were asked.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use pelt::build::{checkpoint_path, BuildReport};
use pelt::corpus::Format;
use pelt::entities::{load_entities, EntityList};
use pelt::progress::Progress;
use pelt::project::Project;
use pelt::table::Table;
use pelt::worker::{
    Event, Inspection, JobId, MapPoint, ModelInfo, NeighbourResult, PreviewResult, Reply, Task,
    Worker,
};
use serde::{Deserialize, Serialize};

use super::rows::{RowOrders, RowSource};

/// The probe sentence used when a project has none.
pub const DEFAULT_PROBE: &str = "treatment with p53 induced [MASK] in the cells .";
/// How many recent projects the Project menu remembers.
const MAX_RECENT: usize = 8;
/// Predictions shown per mask.
pub const TOP_K: usize = 8;

/// The tabs of the central area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Tab {
    #[default]
    Overview,
    Inspector,
    Neighbours,
    Norm,
    Preview,
    Map,
    Evaluate,
}

impl Tab {
    pub const ALL: [Tab; 7] = [
        Tab::Overview,
        Tab::Inspector,
        Tab::Neighbours,
        Tab::Norm,
        Tab::Preview,
        Tab::Map,
        Tab::Evaluate,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Tab::Overview => "Overview",
            Tab::Inspector => "Inspector",
            Tab::Neighbours => "Neighbours",
            Tab::Norm => "Norm",
            Tab::Preview => "Preview",
            Tab::Map => "Map",
            Tab::Evaluate => "Evaluate",
        }
    }

    pub fn hover(self) -> &'static str {
        match self {
            Tab::Overview => "The table at a glance: inputs, build report, what to do next",
            Tab::Inspector => "The selected entity's supporting sentences and what the model predicts at each mask",
            Tab::Neighbours => "Entities and vocabulary tokens closest to the selected entity's vector",
            Tab::Norm => "The norm (modL) of the vectors: A/B comparison and the MLM loss against the norm",
            Tab::Preview => "Plug entity vectors into a sentence of your own and compare fill-mask predictions",
            Tab::Map => "All entity vectors on a 2-D PCA map",
            Tab::Evaluate => "Does the table carry knowledge? Entity typing and cloze probes, and which norm serves them best",
        }
    }

    pub fn parse(s: &str) -> Option<Tab> {
        Tab::ALL
            .into_iter()
            .find(|t| t.label().eq_ignore_ascii_case(s.trim()))
    }
}

/// An evaluation source chosen with a file dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalFile {
    FewRel,
    Labels,
    Probes,
}

impl EvalFile {
    pub fn label(self) -> &'static str {
        match self {
            EvalFile::FewRel => "FewRel files",
            EvalFile::Labels => "labels",
            EvalFile::Probes => "probes",
        }
    }
}

/// Columns of the entity table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SortKey {
    #[default]
    Row,
    Name,
    Id,
    Contexts,
    Mentions,
    Status,
}

/// Order of the contexts in the inspector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum InspectSort {
    #[default]
    Corpus,
    CosineLow,
    CosineHigh,
}

/// Everything persisted between runs (eframe storage, key `eframe::APP_KEY`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    pub last_project: Option<PathBuf>,
    pub recent: Vec<PathBuf>,
    pub tab: Tab,
    pub norm_a: f32,
    pub norm_b: f32,
    /// Probe sentence of the norm comparison (also saved in the project).
    pub probe: String,
    /// Sentence of the Preview tab.
    pub preview_text: String,
    /// Subtract the mean direction before the entity cosine ("center").
    pub center: bool,
    pub neighbours_k: usize,
    pub show_how: bool,
    /// Log scale for the loss plot.
    pub loss_log: bool,
    pub inspect_sort: InspectSort,
    pub sort: SortKey,
    pub ascending: bool,
}

impl Default for State {
    fn default() -> Self {
        State {
            last_project: None,
            recent: vec![],
            tab: Tab::Overview,
            norm_a: 2.0,
            norm_b: 7.0,
            probe: DEFAULT_PROBE.into(),
            preview_text: DEFAULT_PROBE.into(),
            center: true,
            neighbours_k: 15,
            show_how: false,
            loss_log: true,
            inspect_sort: InspectSort::Corpus,
            sort: SortKey::Row,
            ascending: true,
        }
    }
}

impl State {
    /// Puts `path` first in the recent list (no duplicates, at most [`MAX_RECENT`]).
    pub fn remember(&mut self, path: &Path) {
        self.recent.retain(|p| p != path);
        self.recent.insert(0, path.to_path_buf());
        self.recent.truncate(MAX_RECENT);
        self.last_project = Some(path.to_path_buf());
    }

    /// The project opened at start-up: the last one used if it still exists, else the demo.
    pub fn startup_project(&self) -> PathBuf {
        match &self.last_project {
            Some(p) if p.is_file() => p.clone(),
            _ => pelt::project::bundled_demo(),
        }
    }
}

/// What the user asked for; applied after the frame. The `…Dialog` commands open a file
/// dialog, which the app shell does before handing the chosen path on as another command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    NewProject,
    OpenProjectDialog,
    OpenProject(PathBuf),
    SaveProject,
    SaveProjectAs,
    SaveProjectTo(PathBuf),
    /// The project's name, parameters or device as edited in a panel.
    EditProject(Box<Project>),
    /// The persisted view settings as edited in a panel.
    SetState(Box<State>),
    ChooseModelDialog,
    SetModel(Option<PathBuf>),
    /// A model of the Hugging Face cache, by id.
    SetModelId(String),
    AddCorpusDialog,
    AddCorpus(Vec<PathBuf>),
    RemoveCorpus(usize),
    ChooseEntitiesDialog,
    SetEntities(PathBuf),
    ChooseTableOutDialog,
    SetTableOut(PathBuf),
    Build {
        resume: bool,
    },
    CancelBuild,
    OpenTableDialog,
    OpenTable(PathBuf),
    SaveTableDialog,
    SaveTable(PathBuf),
    ExportProjectorDialog,
    /// Opens a file dialog for an evaluation source.
    ChooseEvalFile(EvalFile),
    /// Runs the project's evaluation on the table (at the current norm).
    RunEval,
    CancelEval,
    ExportEvalDialog,
    /// Writes the evaluation results: `.csv` as rows, anything else as JSON.
    ExportEval(PathBuf),
    ExportProjector(PathBuf),
    Select(usize),
    SetTab(Tab),
    Rerun(Purpose),
    TogglePreviewMention(usize, usize),
    DismissError(usize),
    ClearErrors,
    /// A file or folder dropped onto the window.
    Dropped(PathBuf),
}

/// What a dropped path is taken for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropKind {
    Corpus,
    Entities,
    Model,
    Project,
    Table,
}

/// Classifies a dropped file or folder by its name (and, for folders, a `config.json`);
/// corpus files are whatever [`Format::of`] reads.
pub fn classify_drop(path: &Path) -> Option<DropKind> {
    if path.is_dir() {
        return path
            .join("config.json")
            .is_file()
            .then_some(DropKind::Model);
    }
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    let stem = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".ron") {
        Some(DropKind::Project)
    } else if name.ends_with(".safetensors") {
        Some(DropKind::Table)
    } else if stem.ends_with(".tsv") {
        Some(DropKind::Entities)
    } else if Format::of(path).is_some() {
        Some(DropKind::Corpus)
    } else {
        None
    }
}

/// Kinds of model requests whose results are shown in a tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    Inspect,
    Neighbours,
    NormCompare,
    Preview,
}

/// A model request, also the key that tells whether a shown result is current.
#[derive(Debug, Clone, PartialEq)]
enum Req {
    Inspect {
        entity: usize,
    },
    Neighbours {
        entity: usize,
        center: bool,
        k: usize,
    },
    NormCompare {
        text: String,
        a: f32,
        b: f32,
    },
    Preview {
        text: String,
        disabled: Vec<(usize, usize)>,
        a: f32,
        b: f32,
    },
}

/// Requests that share a lane wait for each other: one in flight at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Inspect,
    Neighbours,
    FillMask,
}

impl Lane {
    const ALL: [Lane; 3] = [Lane::Inspect, Lane::Neighbours, Lane::FillMask];
}

impl Req {
    fn purpose(&self) -> Purpose {
        match self {
            Req::Inspect { .. } => Purpose::Inspect,
            Req::Neighbours { .. } => Purpose::Neighbours,
            Req::NormCompare { .. } => Purpose::NormCompare,
            Req::Preview { .. } => Purpose::Preview,
        }
    }

    fn lane(&self) -> Lane {
        match self {
            Req::Inspect { .. } => Lane::Inspect,
            Req::Neighbours { .. } => Lane::Neighbours,
            Req::NormCompare { .. } | Req::Preview { .. } => Lane::FillMask,
        }
    }
}

/// A request sent to the worker: its job id and the table generation it was asked for.
#[derive(Debug, Clone)]
struct Sent {
    job: JobId,
    table_gen: u64,
    req: Req,
}

/// Model requests: what was last asked for each purpose, what is in flight (at most one per
/// lane) and the newest waiting request per purpose ("latest wins" while a slider is dragged).
#[derive(Default)]
struct Requests {
    last: Vec<(Purpose, u64, Req)>,
    in_flight: Vec<Sent>,
    queued: VecDeque<Req>,
}

impl Requests {
    /// Asks for `req` unless it is what was last asked for (in this table generation).
    fn want(&mut self, table_gen: u64, req: Req) {
        let p = req.purpose();
        if self
            .last
            .iter()
            .any(|(q, g, r)| *q == p && *g == table_gen && *r == req)
        {
            return;
        }
        self.last.retain(|(q, _, _)| *q != p);
        self.last.push((p, table_gen, req.clone()));
        self.queued.retain(|r| r.purpose() != p);
        self.queued.push_back(req);
    }

    fn forget(&mut self, p: Purpose) {
        self.last.retain(|(q, _, _)| *q != p);
    }

    fn pending(&self, p: Purpose) -> bool {
        self.in_flight.iter().any(|s| s.req.purpose() == p)
            || self.queued.iter().any(|r| r.purpose() == p)
    }

    /// Forgets what was asked; requests in flight still hold their lane until answered.
    fn clear(&mut self) {
        self.last.clear();
        self.queued.clear();
    }

    /// The next queued request whose lane is free.
    fn next(&mut self) -> Option<Req> {
        let busy: Vec<Lane> = self.in_flight.iter().map(|s| s.req.lane()).collect();
        let i = self.queued.iter().position(|r| !busy.contains(&r.lane()))?;
        self.queued.remove(i)
    }

    /// The request answered by job `id`, if it is one of ours.
    fn answered(&mut self, id: JobId) -> Option<Sent> {
        let i = self.in_flight.iter().position(|s| s.job == id)?;
        Some(self.in_flight.remove(i))
    }
}

/// How the last build was cancelled.
#[derive(Debug, Clone, PartialEq)]
pub struct Cancelled {
    pub done: u64,
    pub total: u64,
    pub checkpoint: Option<PathBuf>,
}

/// The state of the table build.
#[derive(Default)]
pub struct BuildState {
    /// The build job in flight.
    pub job: Option<JobId>,
    pub running: bool,
    pub cancelling: bool,
    pub resuming: bool,
    pub progress: Option<Progress>,
    pub started: Option<Instant>,
    pub cancelled: Option<Cancelled>,
    pub report: Option<BuildReport>,
    pub saved_to: Option<PathBuf>,
    pub elapsed_secs: f64,
    /// A checkpoint of the project's table exists (Resume is possible).
    pub checkpoint: bool,
}

/// One error reported by the worker (or by the session itself).
#[derive(Debug, Clone)]
pub struct ErrorEntry {
    pub job: String,
    pub message: String,
    pub count: usize,
    pub at: Instant,
}

/// The 2-D PCA of the table, computed by the worker.
#[derive(Default)]
pub enum Pca {
    #[default]
    None,
    Computing(JobId),
    Ready(Arc<Vec<MapPoint>>),
}

/// What a command or a batch of replies changed, for views that cache what they derive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed {
    /// The entity rows (a new entity list or table).
    pub entities: bool,
    pub selection: bool,
    /// A tab's result arrived (inspection, neighbours, preview, map).
    pub results: bool,
    /// The project or the build state.
    pub project: bool,
}

impl Changed {
    fn merge(&mut self, o: Changed) {
        self.entities |= o.entities;
        self.selection |= o.selection;
        self.results |= o.results;
        self.project |= o.project;
    }
}

/// The workbench without its window.
pub struct Session {
    pub state: State,
    worker: Worker,
    /// Bumped whenever another project is opened; replies of older generations are dropped.
    pub generation: u64,
    pub project: Project,
    pub project_path: Option<PathBuf>,
    pub project_dirty: bool,
    /// The project's entity list (shown before a table exists).
    pub entity_list: Option<Arc<EntityList>>,
    pub table: Option<Arc<Table>>,
    pub table_path: Option<PathBuf>,
    /// Bumped whenever the table changes; results for older tables are dropped.
    pub table_gen: u64,
    /// Bumped whenever the entity rows change (entity list or table).
    pub rows_gen: u64,
    /// Searches and sorts the entity rows in the background (for long lists).
    pub rows: RowOrders,
    /// The table being opened (its reply is the one that counts).
    opening: Option<JobId>,
    pub model: Option<ModelInfo>,
    /// The model load in flight.
    model_job: Option<JobId>,
    pub build: BuildState,
    pub selected: Option<usize>,
    pub inspection: Option<Inspection>,
    pub neighbours: Option<NeighbourResult>,
    pub norm_compare: Option<PreviewResult>,
    pub preview: Option<PreviewResult>,
    pub preview_disabled: Vec<(usize, usize)>,
    pub pca: Pca,
    pub errors: Vec<ErrorEntry>,
    pub status: Option<String>,
    requests: Requests,
    /// An entity (name or id) to select once entities are known.
    pub pending_select: Option<String>,
    pub build_when_ready: bool,
    /// Runs the evaluation once a table and the model are there.
    pub eval_when_ready: bool,
    /// The evaluation in flight, and how far it has got.
    pub eval_job: Option<JobId>,
    pub eval_progress: Option<Progress>,
}

impl Session {
    /// A session on `worker` with no project open yet (see [`Session::open_project`]).
    pub fn new(worker: Worker, rows: RowOrders, state: State) -> Session {
        Session {
            state,
            worker,
            rows,
            generation: 0,
            project: Project {
                probe: DEFAULT_PROBE.into(),
                ..Project::default()
            },
            project_path: None,
            project_dirty: false,
            entity_list: None,
            table: None,
            table_path: None,
            table_gen: 0,
            rows_gen: 0,
            opening: None,
            model: None,
            model_job: None,
            build: BuildState::default(),
            selected: None,
            inspection: None,
            neighbours: None,
            norm_compare: None,
            preview: None,
            preview_disabled: vec![],
            pca: Pca::None,
            errors: vec![],
            status: None,
            requests: Requests::default(),
            pending_select: None,
            build_when_ready: false,
            eval_when_ready: false,
            eval_job: None,
            eval_progress: None,
        }
    }

    fn send(&self, task: Task) -> JobId {
        self.worker.send(self.generation, task)
    }

    // ----- queries -----

    /// The entity rows: the table's, else the entity list's.
    pub fn row_source(&self) -> Option<RowSource> {
        match (&self.table, &self.entity_list) {
            (Some(t), _) => Some(RowSource::Table(t.clone())),
            (None, Some(l)) => Some(RowSource::List(l.clone())),
            _ => None,
        }
    }

    /// Marks the entity rows as changed and hands them to the rows thread.
    fn rows_changed(&mut self) {
        self.rows_gen += 1;
        self.rows.set_source(self.rows_gen, self.row_source());
    }

    /// Number of entity rows (from the table, else from the entity list).
    pub fn entity_count(&self) -> usize {
        match (&self.table, &self.entity_list) {
            (Some(t), _) => t.len(),
            (None, Some(l)) => l.len(),
            _ => 0,
        }
    }

    pub fn entity_name(&self, i: usize) -> &str {
        match (&self.table, &self.entity_list) {
            (Some(t), _) => t.entity_names.get(i).map(String::as_str).unwrap_or("?"),
            (None, Some(l)) => l.entities.get(i).map(|e| e.name.as_str()).unwrap_or("?"),
            _ => "?",
        }
    }

    pub fn entity_id(&self, i: usize) -> &str {
        match (&self.table, &self.entity_list) {
            (Some(t), _) => t.entity_ids.get(i).map(String::as_str).unwrap_or("?"),
            (None, Some(l)) => l.entities.get(i).map(|e| e.id.as_str()).unwrap_or("?"),
            _ => "?",
        }
    }

    pub fn entity_aliases(&self, i: usize) -> &[String] {
        match (&self.table, &self.entity_list) {
            (Some(t), _) => t.entity_aliases.get(i).map(Vec::as_slice).unwrap_or(&[]),
            (None, Some(l)) => l
                .entities
                .get(i)
                .map(|e| e.aliases.as_slice())
                .unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Index of the entity identified by `s` (id first, then name without case).
    pub fn find_entity(&self, s: &str) -> Option<usize> {
        match (&self.table, &self.entity_list) {
            (Some(t), _) => t.index_of(s),
            (None, Some(l)) => l.entities.iter().position(|e| e.id == s).or_else(|| {
                l.entities
                    .iter()
                    .position(|e| e.name.eq_ignore_ascii_case(s))
            }),
            _ => None,
        }
    }

    pub fn mask_token(&self) -> &str {
        self.model
            .as_ref()
            .map(|m| m.mask_token.as_str())
            .unwrap_or("[MASK]")
    }

    /// The norm (modL) used for saving and exporting the table and for neighbours.
    pub fn norm(&self) -> f32 {
        self.project.options.norm
    }

    pub fn is_busy(&self) -> bool {
        self.worker.is_busy()
    }

    pub fn model_loading(&self) -> bool {
        self.model_job.is_some()
    }

    pub fn pending(&self, p: Purpose) -> bool {
        self.requests.pending(p)
    }

    /// A short description of why the project's parameters no longer match the table.
    pub fn stale_reason(&self) -> Option<String> {
        let t = self.table.as_ref()?;
        let o = &self.project.options;
        let mut diff = vec![];
        if t.meta.k != o.k {
            diff.push(format!("K {} to {}", t.meta.k, o.k));
        }
        if t.meta.max_len != o.max_len {
            diff.push(format!("max_len {} to {}", t.meta.max_len, o.max_len));
        }
        if t.meta.seed != o.seed {
            diff.push(format!("seed {} to {}", t.meta.seed, o.seed));
        }
        if t.meta.case_sensitive != o.case_sensitive {
            diff.push("case sensitivity".into());
        }
        // `auto` resolves at build time; an explicit mode must match the table's.
        if o.mentions != pelt::contexts::MentionMode::Auto && o.mentions.as_str() != t.meta.mentions
        {
            diff.push(format!(
                "mentions {} to {}",
                t.meta.mentions,
                o.mentions.as_str()
            ));
        }
        (!diff.is_empty()).then(|| {
            format!(
                "parameters changed since this table was built ({})",
                diff.join(", ")
            )
        })
    }

    // ----- replies -----

    /// Applies the replies that have arrived, then asks for what the visible tab needs.
    pub fn poll(&mut self) -> Changed {
        let mut changed = Changed::default();
        for event in self.worker.poll() {
            changed.merge(self.on_event(event));
        }
        changed.merge(self.resolve_pending_select());
        self.auto_requests();
        self.pump();
        changed
    }

    /// Applies one reply of the worker.
    pub fn on_event(&mut self, event: Event) -> Changed {
        let mut changed = Changed::default();
        let Event {
            id,
            generation,
            job,
            reply,
        } = event;
        if generation != self.generation {
            // Another project's reply: only what the worker now holds still counts.
            if let Reply::ModelLoaded(info) | Reply::ModelChanged(info) = reply {
                self.model = Some(info);
                changed.project = true;
            }
            return changed;
        }
        match reply {
            Reply::ModelLoaded(info) | Reply::ModelChanged(info) => {
                if self.model_job == Some(id) {
                    self.model_job = None;
                }
                self.status = Some(format!(
                    "Model {} loaded on {} ({})",
                    info.name, info.device, info.dtype
                ));
                self.model = Some(info);
                changed.project = true;
            }
            Reply::Progress(p) => {
                if self.build.job == Some(id) {
                    self.build.progress = Some(p);
                    changed.project = true;
                } else if self.eval_job == Some(id) {
                    self.eval_progress = Some(p);
                    changed.results = true;
                }
            }
            Reply::Built {
                table,
                report,
                saved_to,
            } => {
                if self.build.job != Some(id) {
                    return changed;
                }
                self.build_ended();
                self.build.cancelled = None;
                self.build.elapsed_secs = self
                    .build
                    .started
                    .map(|s| s.elapsed().as_secs_f64())
                    .unwrap_or(0.0);
                self.status = Some(format!(
                    "Built: {} contexts for {} of {} entities in {:.1} s ({:.0} contexts/s){}",
                    report.contexts,
                    table.len() - report.not_found.len(),
                    table.len(),
                    self.build.elapsed_secs,
                    report.contexts_per_sec,
                    saved_to
                        .as_ref()
                        .map(|p| format!("; saved to {}", p.display()))
                        .unwrap_or_default()
                ));
                self.build.report = Some(*report);
                self.build.saved_to = saved_to.clone();
                changed.merge(self.set_table(table, saved_to));
            }
            Reply::BuildCancelled {
                done,
                total,
                checkpoint,
            } => {
                if self.build.job != Some(id) {
                    return changed;
                }
                self.build_ended();
                self.status = Some(if total > 0 {
                    format!(
                        "Build cancelled after {done} of {total} contexts ({:.0}%){}",
                        100.0 * done as f64 / total as f64,
                        if checkpoint.is_some() {
                            "; Resume continues from the checkpoint"
                        } else {
                            ""
                        }
                    )
                } else {
                    "Build cancelled while scanning the corpus (nothing to resume)".into()
                });
                self.build.cancelled = Some(Cancelled {
                    done,
                    total,
                    checkpoint,
                });
                changed.project = true;
            }
            Reply::TableOpened { table, path } => {
                if self.opening != Some(id) {
                    return changed;
                }
                self.opening = None;
                self.status = Some(format!("Opened table {}", path.display()));
                self.build.report = None;
                changed.merge(self.set_table(table, Some(path)));
            }
            Reply::Saved { path } => self.status = Some(format!("Saved {}", path.display())),
            Reply::Inspected(ins) => {
                if self.current(id) {
                    self.inspection = Some(*ins);
                    changed.results = true;
                }
            }
            Reply::Neighbours(n) => {
                if self.current(id) {
                    self.neighbours = Some(n);
                    changed.results = true;
                }
            }
            Reply::Previewed(p) => {
                if let Some(sent) = self.requests.answered(id) {
                    if sent.table_gen == self.table_gen {
                        match sent.req {
                            Req::NormCompare { .. } => self.norm_compare = Some(*p),
                            _ => self.preview = Some(*p),
                        }
                        changed.results = true;
                    }
                }
            }
            Reply::Evaluated(r) => {
                if self.eval_job == Some(id) {
                    self.eval_job = None;
                    self.status = Some("Evaluation done".into());
                    self.project.eval_results = Some(*r);
                    self.project_dirty = true;
                    changed.results = true;
                    changed.project = true;
                }
            }
            Reply::Pca(points) => {
                if matches!(self.pca, Pca::Computing(j) if j == id) {
                    self.pca = Pca::Ready(points);
                    changed.results = true;
                }
            }
            Reply::Failed { message } => {
                self.requests.answered(id);
                if self.build.job == Some(id) {
                    self.build_ended();
                    changed.project = true;
                }
                if self.model_job == Some(id) {
                    self.model_job = None;
                }
                if self.eval_job == Some(id) {
                    self.eval_job = None;
                }
                if self.opening == Some(id) {
                    self.opening = None;
                }
                if matches!(self.pca, Pca::Computing(j) if j == id) {
                    self.pca = Pca::None;
                }
                self.error(job, message);
            }
        }
        changed
    }

    /// Whether job `id` answers a request of the current table (and frees its lane).
    fn current(&mut self, id: JobId) -> bool {
        self.requests
            .answered(id)
            .is_some_and(|s| s.table_gen == self.table_gen)
    }

    fn build_ended(&mut self) {
        self.build.job = None;
        self.build.running = false;
        self.build.cancelling = false;
        self.refresh_checkpoint();
    }

    /// Records an error (repeats of the latest one are counted, not listed again).
    pub fn error(&mut self, job: &str, message: String) {
        self.status = None;
        if let Some(last) = self.errors.last_mut() {
            if last.job == job && last.message == message {
                last.count += 1;
                last.at = Instant::now();
                return;
            }
        }
        self.errors.push(ErrorEntry {
            job: job.into(),
            message,
            count: 1,
            at: Instant::now(),
        });
    }

    fn set_table(&mut self, table: Arc<Table>, path: Option<PathBuf>) -> Changed {
        self.project.options.norm = table.norm;
        if self.selected.is_some_and(|s| s >= table.len()) {
            self.selected = None;
        }
        self.table = Some(table);
        self.table_path = path;
        self.forget_table_views();
        Changed {
            entities: true,
            selection: true,
            results: true,
            project: true,
        }
    }

    /// Drops everything computed from the current table (a new one is coming or it is gone).
    fn forget_table_views(&mut self) {
        self.table_gen += 1;
        self.rows_changed();
        self.inspection = None;
        self.neighbours = None;
        self.norm_compare = None;
        self.preview = None;
        self.preview_disabled.clear();
        self.pca = Pca::None;
        self.requests.clear();
    }

    fn refresh_checkpoint(&mut self) {
        self.build.checkpoint = self
            .project
            .table
            .as_ref()
            .is_some_and(|t| checkpoint_path(t).is_file());
    }

    // ----- commands -----

    /// Applies one command. Dialog commands are the app shell's: they change nothing here.
    pub fn apply(&mut self, c: Command) -> Changed {
        let mut changed = Changed {
            project: true,
            ..Changed::default()
        };
        match c {
            Command::NewProject => {
                self.switch_project();
                self.project = Project {
                    probe: DEFAULT_PROBE.into(),
                    ..Project::default()
                };
                self.project_path = None;
                self.project_dirty = false;
                self.entity_list = None;
                self.clear_table();
                self.load_model();
                changed.entities = true;
            }
            Command::OpenProjectDialog
            | Command::SaveProjectAs
            | Command::ChooseModelDialog
            | Command::AddCorpusDialog
            | Command::ChooseEntitiesDialog
            | Command::ChooseTableOutDialog
            | Command::OpenTableDialog
            | Command::SaveTableDialog
            | Command::ExportProjectorDialog
            | Command::ExportEvalDialog
            | Command::ChooseEvalFile(_) => return Changed::default(),
            Command::RunEval => {
                if self.eval_job.is_some() {
                    return changed;
                }
                let Some(table) = self.table_at_norm() else {
                    self.error("evaluate", "build or open a table first".into());
                    return changed;
                };
                self.status = Some("Evaluating the table…".into());
                self.eval_progress = None;
                self.eval_job = Some(self.send(Task::Evaluate {
                    table,
                    settings: Box::new(self.project.eval.clone()),
                }));
            }
            Command::CancelEval => {
                if self.eval_job.is_some() {
                    self.worker.cancel();
                }
            }
            Command::ExportEval(path) => match &self.project.eval_results {
                None => self.error("export evaluation", "nothing evaluated yet".into()),
                Some(r) => {
                    let csv = path
                        .extension()
                        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
                    let bytes = if csv {
                        r.to_csv().into_bytes()
                    } else {
                        serde_json::to_vec_pretty(r).unwrap_or_default()
                    };
                    match pelt::io::write_atomic(&path, &bytes) {
                        Ok(()) => self.status = Some(format!("Wrote {}", path.display())),
                        Err(e) => self.error("export evaluation", format!("{e:#}")),
                    }
                }
            },
            Command::OpenProject(p) => {
                self.open_project(&p);
                changed.entities = true;
            }
            Command::SaveProject => match self.project_path.clone() {
                Some(p) => self.save_project(&p),
                None => self.error(
                    "save project",
                    "the project has no file yet: use Save as".into(),
                ),
            },
            Command::SaveProjectTo(p) => self.save_project(&p),
            Command::EditProject(p) => {
                if *p != self.project {
                    let device = p.device != self.project.device || p.dtype != self.project.dtype;
                    self.project = *p;
                    self.project_dirty = true;
                    if device {
                        self.load_model();
                    }
                }
            }
            Command::SetState(s) => {
                if s.probe != self.state.probe {
                    self.project.probe = s.probe.clone();
                    self.project_dirty = true;
                }
                if s.preview_text != self.state.preview_text {
                    self.preview_disabled.clear();
                }
                self.state = *s;
            }
            Command::SetModel(m) => {
                if let Some(dir) = &m {
                    if !dir.join("config.json").is_file() {
                        self.error(
                            "open model",
                            format!("{} has no config.json: not a model folder", dir.display()),
                        );
                        return changed;
                    }
                }
                self.project.model = m;
                self.project.model_id = None;
                self.project_dirty = true;
                self.load_model();
            }
            Command::SetModelId(id) => {
                self.project.model_id = Some(id);
                self.project.model = None;
                self.project_dirty = true;
                self.load_model();
            }
            Command::AddCorpus(ps) => {
                for p in ps {
                    if !self.project.corpus.contains(&p) {
                        self.project.corpus.push(p);
                        self.project_dirty = true;
                    }
                }
            }
            Command::RemoveCorpus(i) => {
                if i < self.project.corpus.len() {
                    self.project.corpus.remove(i);
                    self.project_dirty = true;
                }
            }
            Command::SetEntities(p) => {
                self.project.entities = Some(p);
                self.project_dirty = true;
                self.load_entity_list();
                changed.entities = true;
            }
            Command::SetTableOut(p) => {
                self.project.table = Some(p);
                self.project_dirty = true;
                self.refresh_checkpoint();
            }
            Command::Build { resume } => self.start_build(resume),
            Command::CancelBuild => {
                if self.build.running {
                    self.worker.cancel();
                    self.build.cancelling = true;
                    self.status = Some("Cancelling after the current batch…".into());
                }
            }
            Command::OpenTable(p) => {
                self.status = Some(format!("Opening {}…", p.display()));
                self.opening = Some(self.send(Task::OpenTable { path: p }));
            }
            Command::SaveTable(path) => match self.table_at_norm() {
                Some(table) => {
                    self.status = Some(format!("Saving {} (norm {})…", path.display(), table.norm));
                    self.send(Task::SaveTable { table, path });
                }
                None => self.error(
                    "save table",
                    "there is no table to save yet: build or open one first".into(),
                ),
            },
            Command::ExportProjector(dir) => match self.table_at_norm() {
                Some(table) => {
                    self.send(Task::ExportProjector { table, dir });
                }
                None => self.error(
                    "export",
                    "there is no table to export yet: build or open one first".into(),
                ),
            },
            Command::Select(i) => {
                if i < self.entity_count() {
                    self.selected = Some(i);
                    changed.selection = true;
                }
            }
            Command::SetTab(t) => self.state.tab = t,
            Command::Rerun(p) => self.requests.forget(p),
            Command::TogglePreviewMention(a, b) => {
                if let Some(i) = self.preview_disabled.iter().position(|&s| s == (a, b)) {
                    self.preview_disabled.remove(i);
                } else {
                    self.preview_disabled.push((a, b));
                }
            }
            Command::DismissError(i) => {
                if i < self.errors.len() {
                    self.errors.remove(i);
                }
            }
            Command::ClearErrors => self.errors.clear(),
            Command::Dropped(p) => {
                let next = match classify_drop(&p) {
                    Some(DropKind::Corpus) => Command::AddCorpus(vec![p]),
                    Some(DropKind::Entities) => Command::SetEntities(p),
                    Some(DropKind::Model) => Command::SetModel(Some(p)),
                    Some(DropKind::Project) => Command::OpenProject(p),
                    Some(DropKind::Table) => Command::OpenTable(p),
                    None => {
                        self.error(
                            "drop",
                            format!(
                                "{}: not a corpus (.txt/.jsonl/.ndjson/.json/.gz), entity list (.tsv), model folder (config.json), project (.ron) or table (.safetensors)",
                                p.display()
                            ),
                        );
                        return changed;
                    }
                };
                return self.apply(next);
            }
        }
        changed
    }

    /// A copy of the table with its embeddings at the current norm.
    fn table_at_norm(&self) -> Option<Arc<Table>> {
        let t = self.table.as_ref()?;
        let mut copy = (**t).clone();
        copy.norm = self.norm();
        Some(Arc::new(copy))
    }

    /// Leaves the current project: its replies from now on are another generation's, and
    /// its build stops after the current batch (leaving a checkpoint to resume from).
    fn switch_project(&mut self) {
        self.generation += 1;
        if self.build.running || self.eval_job.is_some() {
            self.worker.cancel();
        }
        self.build = BuildState::default();
        self.eval_job = None;
        self.opening = None;
        self.model_job = None;
        self.requests = Requests::default();
    }

    /// Opens a project file: entity list, model (in the worker) and, if present, its table.
    pub fn open_project(&mut self, path: &Path) {
        match Project::load(path) {
            Ok(p) => {
                self.switch_project();
                self.project = p;
                self.project_path = Some(path.to_path_buf());
                self.project_dirty = false;
                self.state.remember(path);
                if !self.project.probe.trim().is_empty() {
                    self.state.probe = self.project.probe.clone();
                }
                self.clear_table();
                self.load_entity_list();
                self.load_model();
                match self.project.table.clone() {
                    Some(t) if t.is_file() => {
                        self.status = Some(format!("Opening table {}…", t.display()));
                        self.opening = Some(self.send(Task::OpenTable { path: t }));
                    }
                    _ => {
                        self.status = Some(format!(
                            "Opened project {} (table not built yet)",
                            self.project.name
                        ));
                    }
                }
                self.refresh_checkpoint();
            }
            Err(e) => {
                self.state.recent.retain(|p| p != path);
                self.error("open project", format!("{e:#}"));
            }
        }
    }

    /// Saves the project (with the probe sentence) to `path`.
    pub fn save_project(&mut self, path: &Path) {
        self.project.probe = self.state.probe.clone();
        match self.project.save(path) {
            Ok(()) => {
                self.project_path = Some(path.to_path_buf());
                self.project_dirty = false;
                self.state.remember(path);
                self.status = Some(format!("Saved project {}", path.display()));
            }
            Err(e) => self.error("save project", format!("{e:#}")),
        }
    }

    fn clear_table(&mut self) {
        self.table = None;
        self.table_path = None;
        self.selected = None;
        self.forget_table_views();
    }

    fn load_entity_list(&mut self) {
        self.entity_list = None;
        if let Some(p) = self.project.entities.clone() {
            match load_entities(&p) {
                Ok(l) => self.entity_list = Some(Arc::new(l)),
                Err(e) => self.error("entity list", format!("{e:#}")),
            }
        }
        self.rows_changed();
    }

    /// Asks the worker for the project's model; the current one stays shown (and in use) until
    /// the new one has loaded, and stays if it fails to load.
    fn load_model(&mut self) {
        let dir = match self.project.resolve_model() {
            Ok(d) => d,
            Err(e) => {
                self.error(
                    "load model",
                    format!("{e:#}\nPick another model on the left (Model: Cached… or Choose…)."),
                );
                return;
            }
        };
        self.model_job = Some(self.send(Task::LoadModel {
            dir,
            device: self.project.device,
            dtype: self.project.dtype,
        }));
    }

    fn start_build(&mut self, resume: bool) {
        if self.build.running {
            return;
        }
        if self.project.corpus.is_empty() {
            self.error("build", "the project has no corpus files: add some on the left (or drop them onto the window)".into());
            return;
        }
        let linked = pelt::corpus::Corpus::open(&self.project.corpus)
            .and_then(|c| c.has_links())
            .unwrap_or(false);
        if self.project.entities.is_none() && !linked {
            self.error("build", "the project has no entity list, and its corpus carries no entity links to take the entities from: choose a list on the left (or drop a .tsv onto the window)".into());
            return;
        }
        self.build.running = true;
        self.build.cancelling = false;
        self.build.resuming = resume;
        self.build.progress = None;
        self.build.cancelled = None;
        self.build.started = Some(Instant::now());
        self.status = Some(if resume {
            "Resuming the build…".into()
        } else {
            "Building the table…".into()
        });
        self.build.job = Some(self.send(Task::Build {
            project: Box::new(self.project.clone()),
            resume,
        }));
    }

    // ----- model requests -----

    /// Asks the worker for what the visible tab shows, when it is missing or out of date.
    fn auto_requests(&mut self) {
        let Some(table) = self.table.clone() else {
            return;
        };
        let g = self.table_gen;
        let sel = self
            .selected
            .filter(|&e| e < table.len() && table.counts[e] > 0);
        let (a, b) = (self.state.norm_a, self.state.norm_b);
        match self.state.tab {
            Tab::Inspector | Tab::Norm => {
                if let Some(e) = sel {
                    self.requests.want(g, Req::Inspect { entity: e });
                }
                if self.state.tab == Tab::Norm && !self.state.probe.trim().is_empty() {
                    let text = self.state.probe.clone();
                    self.requests.want(g, Req::NormCompare { text, a, b });
                }
            }
            Tab::Neighbours => {
                if let Some(e) = sel {
                    let (center, k) = (self.state.center, self.state.neighbours_k);
                    self.requests.want(
                        g,
                        Req::Neighbours {
                            entity: e,
                            center,
                            k,
                        },
                    );
                }
            }
            Tab::Preview => {
                if !self.state.preview_text.trim().is_empty() {
                    let text = self.state.preview_text.clone();
                    let disabled = self.preview_disabled.clone();
                    self.requests.want(
                        g,
                        Req::Preview {
                            text,
                            disabled,
                            a,
                            b,
                        },
                    );
                }
            }
            Tab::Map => {
                if matches!(self.pca, Pca::None) {
                    self.pca = Pca::Computing(self.send(Task::Pca { table }));
                }
            }
            Tab::Overview | Tab::Evaluate => {}
        }
    }

    /// Sends the next queued request of each idle lane.
    fn pump(&mut self) {
        let Some(table) = self.table.clone() else {
            return;
        };
        let norm = self.norm();
        // The inspector runs the model over all of an entity's contexts (at most K).
        let limit = table.meta.k.max(1);
        for _ in Lane::ALL {
            let Some(req) = self.requests.next() else {
                break;
            };
            let table = table.clone();
            let task = match &req {
                Req::Inspect { entity } => Task::Inspect {
                    table,
                    entity: *entity,
                    top_k: 5,
                    limit,
                    norms: super::norm::loss_norms(),
                },
                Req::Neighbours { entity, center, k } => Task::Neighbours {
                    table,
                    entity: *entity,
                    k: *k,
                    center: *center,
                    norm,
                },
                Req::NormCompare { text, a, b } => Task::Preview {
                    table,
                    text: text.clone(),
                    disabled: vec![],
                    norm_a: *a,
                    norm_b: *b,
                    top_k: TOP_K,
                },
                Req::Preview {
                    text,
                    disabled,
                    a,
                    b,
                } => Task::Preview {
                    table,
                    text: text.clone(),
                    disabled: disabled.clone(),
                    norm_a: *a,
                    norm_b: *b,
                    top_k: TOP_K,
                },
            };
            let job = self.send(task);
            self.requests.in_flight.push(Sent {
                job,
                table_gen: self.table_gen,
                req,
            });
        }
    }

    fn resolve_pending_select(&mut self) -> Changed {
        let mut changed = Changed::default();
        if let Some(name) = self.pending_select.clone() {
            if self.table.is_some()
                || (self.entity_list.is_some()
                    && self.project.table.as_ref().is_none_or(|t| !t.is_file()))
            {
                if let Some(i) = self.find_entity(&name) {
                    changed.merge(self.apply(Command::Select(i)));
                }
                if self.table.is_some() {
                    self.pending_select = None;
                }
            }
        }
        if self.build_when_ready && self.entity_list.is_some() && !self.worker.is_busy() {
            self.build_when_ready = false;
            if self.table.is_none() {
                self.start_build(false);
                changed.project = true;
            }
        }
        if self.eval_when_ready
            && self.table.is_some()
            && self.model.is_some()
            && !self.worker.is_busy()
        {
            self.eval_when_ready = false;
            changed.merge(self.apply(Command::RunEval));
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pelt::table::{TableMeta, TableParts};

    fn session() -> Session {
        Session::new(
            Worker::spawn(|| {}),
            RowOrders::spawn(|| {}),
            State::default(),
        )
    }

    fn table(names: &[&str], counts: &[i64]) -> Arc<Table> {
        let n = names.len();
        let mut parts = TableParts {
            meta: Some(TableMeta {
                model: "m".into(),
                model_sha256: "0".into(),
                hidden_size: 2,
                k: 4,
                seed: 1,
                max_len: 16,
                corpus: "c".into(),
                corpus_sha256: "0".into(),
                shard: "all".into(),
                case_sensitive: false,
                mentions: "names".into(),
                window: 512,
                dtype: Default::default(),
                entities_total: n,
                entity_list_sha256: String::new(),
            }),
            entity_ids: (0..n).map(|i| format!("Q{i}")).collect(),
            entity_names: names.iter().map(|s| s.to_string()).collect(),
            entity_aliases: vec![vec![]; n],
            sums: (0..n * 2).map(|i| i as f32 + 1.0).collect(),
            found: counts.iter().map(|&c| c as u64).collect(),
            norm: 3.0,
            contexts: vec![],
        };
        parts.add_placeholder_contexts(counts);
        Arc::new(Table::from_parts(parts).unwrap())
    }

    fn reply(s: &Session, id: JobId, reply: Reply) -> Event {
        Event {
            id,
            generation: s.generation,
            job: "test",
            reply,
        }
    }

    #[test]
    fn an_opened_table_lands_only_for_the_job_that_opened_it() {
        let mut s = session();
        s.apply(Command::OpenTable(PathBuf::from(
            "/nonexistent/a.safetensors",
        )));
        let id = s.opening.expect("the open is in flight");
        let stranger = reply(
            &s,
            id + 100,
            Reply::TableOpened {
                table: table(&["a"], &[1]),
                path: "x".into(),
            },
        );
        assert!(!s.on_event(stranger).entities);
        assert!(s.table.is_none(), "a reply to another job is dropped");
        let ours = reply(
            &s,
            id,
            Reply::TableOpened {
                table: table(&["a", "b"], &[1, 0]),
                path: "a.safetensors".into(),
            },
        );
        let changed = s.on_event(ours);
        assert!(changed.entities && changed.selection);
        assert_eq!(s.entity_count(), 2);
        assert_eq!(s.norm(), 3.0, "the table's norm becomes the project's");
        assert_eq!(s.find_entity("Q1"), Some(1));
        assert_eq!(s.find_entity("A"), Some(0));
    }

    #[test]
    fn replies_of_another_project_are_dropped_but_the_model_counts() {
        let mut s = session();
        s.apply(Command::OpenTable(PathBuf::from(
            "/nonexistent/a.safetensors",
        )));
        let id = s.opening.unwrap();
        let old = s.generation;
        s.apply(Command::NewProject);
        assert_eq!(s.generation, old + 1);
        let late = Event {
            id,
            generation: old,
            job: "open table",
            reply: Reply::TableOpened {
                table: table(&["a"], &[1]),
                path: "a".into(),
            },
        };
        assert_eq!(s.on_event(late), Changed::default());
        assert!(s.table.is_none());
        let failed = Event {
            id,
            generation: old,
            job: "open table",
            reply: Reply::Failed {
                message: "gone".into(),
            },
        };
        s.on_event(failed);
        assert!(
            s.errors.is_empty(),
            "another project's failure is not shown"
        );
        let info = ModelInfo {
            dir: "m".into(),
            name: "m".into(),
            family: "bert".into(),
            hidden: 2,
            vocab: 10,
            layers: 1,
            device: "cpu".into(),
            dtype: "f32".into(),
            packs_tokens: true,
            sha256: "0".into(),
            mask_token: "<mask>".into(),
        };
        let model = Event {
            id: 1,
            generation: old,
            job: "load model",
            reply: Reply::ModelLoaded(info),
        };
        assert!(s.on_event(model).project);
        assert_eq!(s.mask_token(), "<mask>");
        assert!(
            s.model_loading(),
            "the new project's own load is still awaited"
        );
    }

    #[test]
    fn results_for_an_older_table_are_dropped_by_id() {
        let mut s = session();
        let open = s.apply(Command::OpenTable("/nonexistent/t".into()));
        assert!(open.project);
        let id = s.opening.unwrap();
        s.on_event(reply(
            &s,
            id,
            Reply::TableOpened {
                table: table(&["a", "b", "c"], &[2, 2, 0]),
                path: "t".into(),
            },
        ));
        s.state.tab = Tab::Neighbours;
        s.apply(Command::Select(0));
        s.auto_requests();
        s.pump();
        assert!(s.pending(Purpose::Neighbours));
        let asked = s.requests.in_flight[0].job;
        // The table changes while the request is in flight: its answer is stale.
        s.apply(Command::OpenTable("/nonexistent/u".into()));
        let id2 = s.opening.unwrap();
        s.on_event(reply(
            &s,
            id2,
            Reply::TableOpened {
                table: table(&["a", "b"], &[2, 2]),
                path: "u".into(),
            },
        ));
        let result = NeighbourResult {
            entity: 0,
            entities: vec![(1, 0.5)],
            vocab: vec![],
        };
        assert!(
            !s.on_event(reply(&s, asked, Reply::Neighbours(result.clone())))
                .results
        );
        assert!(s.neighbours.is_none());
        assert!(
            !s.pending(Purpose::Neighbours),
            "the stale answer freed its lane"
        );
        s.auto_requests();
        s.pump();
        let fresh = s.requests.in_flight[0].job;
        assert!(
            s.on_event(reply(&s, fresh, Reply::Neighbours(result)))
                .results
        );
        assert_eq!(s.neighbours.as_ref().map(|n| n.entity), Some(0));
    }

    #[test]
    fn commands_edit_the_project_and_settings() {
        let mut s = session();
        let mut p = s.project.clone();
        p.options.k = 99;
        s.apply(Command::EditProject(Box::new(p)));
        assert!(s.project_dirty);
        assert_eq!(s.project.options.k, 99);
        s.project_dirty = false;
        let mut st = s.state.clone();
        st.probe = "a [MASK] b".into();
        s.preview_disabled.push((0, 1));
        st.preview_text = "other".into();
        s.apply(Command::SetState(Box::new(st)));
        assert_eq!(
            s.project.probe, "a [MASK] b",
            "the probe is saved in the project"
        );
        assert!(s.project_dirty);
        assert!(
            s.preview_disabled.is_empty(),
            "a new sentence re-enables its mentions"
        );
        s.apply(Command::Dropped("notes.xyz".into()));
        assert_eq!(s.errors.len(), 1);
        s.apply(Command::Dropped("more.ndjson".into()));
        assert_eq!(s.project.corpus, vec![PathBuf::from("more.ndjson")]);
        s.apply(Command::DismissError(0));
        assert!(s.errors.is_empty());
    }

    #[test]
    fn drops_are_classified_like_the_corpus_reader() {
        assert_eq!(classify_drop(Path::new("a.ndjson")), Some(DropKind::Corpus));
        assert_eq!(
            classify_drop(Path::new("a.jsonl.gz")),
            Some(DropKind::Corpus)
        );
        assert_eq!(classify_drop(Path::new("a.json")), Some(DropKind::Corpus));
        assert_eq!(
            classify_drop(Path::new("a.tsv.gz")),
            Some(DropKind::Entities)
        );
        assert_eq!(classify_drop(Path::new("a.ron")), Some(DropKind::Project));
        assert_eq!(
            classify_drop(Path::new("a.safetensors")),
            Some(DropKind::Table)
        );
        assert_eq!(classify_drop(Path::new("a.pdf")), None);
    }
}
