//! The workbench window: an eframe/egui front end on the `pelt` engine.
//!
//! The GUI thread never waits for the model: it owns a [`Worker`], sends it [`Job`]s and, once
//! per frame, applies the [`Event`]s that came back (the worker wakes the window after each).
//! Panels draw from [`App`] and push [`Command`]s, which are applied after the frame.
//! Everything worth keeping between runs lives in the serde [`State`].
//!
//! Environment variables read at start-up (for demos and screenshots):
//! - `PELT_UI_TAB=overview|inspector|neighbours|norm|preview|map` opens that tab;
//! - `PELT_UI_ENTITY=<name or id>` selects that entity once the entity list is known;
//! - `PELT_UI_BUILD=1` starts a build at once when the project has no table yet.

mod entities;
mod inspector;
mod map;
mod neighbours;
mod norm;
mod overview;
mod preview;
mod project;
mod status;
mod widgets;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use pelt::build::{checkpoint_path, BuildReport};
use pelt::entities::{load_entities, EntityList};
use pelt::progress::Progress;
use pelt::project::Project;
use pelt::table::Table;
use pelt::worker::{Event, Inspection, Job, ModelInfo, NeighbourResult, PreviewResult, Worker};
use serde::{Deserialize, Serialize};

/// The probe sentence used when a project has none.
pub const DEFAULT_PROBE: &str = "treatment with p53 induced [MASK] in the cells .";
/// How many recent projects the Project menu remembers.
const MAX_RECENT: usize = 8;
/// Predictions shown per mask.
const TOP_K: usize = 8;

/// Opens the workbench window and runs it until it is closed.
pub fn run() -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("PELT Workbench")
            .with_app_id("pelt-workbench")
            .with_inner_size([1400.0, 900.0])
            .with_min_inner_size([900.0, 600.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        "PELT Workbench",
        options,
        Box::new(|cc| {
            let mut state: State = cc
                .storage
                .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
                .unwrap_or_default();
            if let Some(tab) = std::env::var("PELT_UI_TAB")
                .ok()
                .and_then(|t| Tab::parse(&t))
            {
                state.tab = tab;
            }
            let mut app = App::new(&cc.egui_ctx, state);
            if let Ok(name) = std::env::var("PELT_UI_ENTITY") {
                app.pending_select = Some(name);
            }
            if std::env::var("PELT_UI_BUILD").is_ok_and(|v| v == "1") {
                app.build_when_ready = true;
            }
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}

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
}

impl Tab {
    pub const ALL: [Tab; 6] = [
        Tab::Overview,
        Tab::Inspector,
        Tab::Neighbours,
        Tab::Norm,
        Tab::Preview,
        Tab::Map,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Tab::Overview => "Overview",
            Tab::Inspector => "Inspector",
            Tab::Neighbours => "Neighbours",
            Tab::Norm => "Norm",
            Tab::Preview => "Preview",
            Tab::Map => "Map",
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
        }
    }

    pub fn parse(s: &str) -> Option<Tab> {
        Tab::ALL
            .into_iter()
            .find(|t| t.label().eq_ignore_ascii_case(s.trim()))
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

/// Everything persisted between runs (eframe storage, key [`eframe::APP_KEY`]).
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

/// What the user asked for; applied after the frame by [`App::apply`].
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    NewProject,
    OpenProjectDialog,
    OpenProject(PathBuf),
    SaveProject,
    SaveProjectAs,
    SaveProjectTo(PathBuf),
    ChooseModelDialog,
    SetModel(Option<PathBuf>),
    AddCorpusDialog,
    AddCorpus(Vec<PathBuf>),
    RemoveCorpus(usize),
    ChooseEntitiesDialog,
    SetEntities(PathBuf),
    ChooseTableOutDialog,
    ReloadModel,
    Build {
        resume: bool,
    },
    CancelBuild,
    OpenTableDialog,
    OpenTable(PathBuf),
    SaveTableDialog,
    SaveTable(PathBuf),
    ExportProjectorDialog,
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

/// Classifies a dropped file or folder by its name (and, for folders, a `config.json`).
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
    } else if stem.ends_with(".txt") || stem.ends_with(".jsonl") || stem.ends_with(".json") {
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

impl Req {
    fn purpose(&self) -> Purpose {
        match self {
            Req::Inspect { .. } => Purpose::Inspect,
            Req::Neighbours { .. } => Purpose::Neighbours,
            Req::NormCompare { .. } => Purpose::NormCompare,
            Req::Preview { .. } => Purpose::Preview,
        }
    }

    /// The worker job name whose events answer this request.
    fn lane(&self) -> usize {
        match self {
            Req::Inspect { .. } => 0,
            Req::Neighbours { .. } => 1,
            Req::NormCompare { .. } | Req::Preview { .. } => 2,
        }
    }
}

/// Requests of one job kind: at most one in flight (the worker answers in order), and the
/// newest waiting request per purpose ("latest wins" while a slider is dragged).
#[derive(Default)]
struct Lane {
    in_flight: Option<(u64, Req)>,
    queued: VecDeque<Req>,
}

/// Model requests: what was last asked for each purpose, and the three lanes.
#[derive(Default)]
struct Requests {
    last: Vec<(Purpose, u64, Req)>,
    lanes: [Lane; 3],
}

impl Requests {
    fn last_for(&self, p: Purpose) -> Option<&(Purpose, u64, Req)> {
        self.last.iter().find(|(q, _, _)| *q == p)
    }

    /// Asks for `req` unless it is what was last asked for (in this table generation).
    fn want(&mut self, generation: u64, req: Req) {
        let p = req.purpose();
        if self
            .last_for(p)
            .is_some_and(|(_, g, r)| *g == generation && *r == req)
        {
            return;
        }
        self.last.retain(|(q, _, _)| *q != p);
        self.last.push((p, generation, req.clone()));
        let lane = &mut self.lanes[req.lane()];
        lane.queued.retain(|r| r.purpose() != p);
        lane.queued.push_back(req);
    }

    fn forget(&mut self, p: Purpose) {
        self.last.retain(|(q, _, _)| *q != p);
    }

    fn pending(&self, p: Purpose) -> bool {
        self.lanes.iter().any(|l| {
            l.in_flight.as_ref().is_some_and(|(_, r)| r.purpose() == p)
                || l.queued.iter().any(|r| r.purpose() == p)
        })
    }

    fn clear(&mut self) {
        self.last.clear();
        for l in &mut self.lanes {
            l.queued.clear();
        }
    }

    /// The request answered by an event of `lane`.
    fn answered(&mut self, lane: usize) -> Option<(u64, Req)> {
        self.lanes[lane].in_flight.take()
    }
}

/// The state of the table build.
#[derive(Default)]
pub struct BuildState {
    pub running: bool,
    pub cancelling: bool,
    pub resuming: bool,
    pub progress: Option<Progress>,
    pub started: Option<Instant>,
    /// `(done, total, checkpoint)` of the last cancelled build.
    pub cancelled: Option<(u64, u64, Option<PathBuf>)>,
    pub report: Option<BuildReport>,
    pub saved_to: Option<PathBuf>,
    pub elapsed_secs: f64,
    /// A checkpoint of the project's table exists (Resume is possible).
    pub checkpoint: bool,
}

/// One error reported by the worker (or by the UI itself).
#[derive(Debug, Clone)]
pub struct ErrorEntry {
    pub job: String,
    pub message: String,
    pub count: usize,
    pub at: Instant,
}

/// The 2-D PCA of the table, computed off the GUI thread.
#[derive(Default)]
pub enum Pca {
    #[default]
    None,
    Computing(crossbeam_channel::Receiver<Vec<(usize, [f64; 2])>>),
    Ready(Vec<(usize, [f64; 2])>),
}

/// The workbench: state, engine handles and what the panels show.
pub struct App {
    pub state: State,
    worker: Worker,
    wake_ctx: Arc<Mutex<egui::Context>>,
    pub project: Project,
    pub project_path: Option<PathBuf>,
    pub project_dirty: bool,
    /// The project's entity list (shown before a table exists).
    pub entity_list: Option<EntityList>,
    pub table: Option<Arc<Table>>,
    pub table_path: Option<PathBuf>,
    /// Bumped whenever the table changes; results for older tables are dropped.
    pub table_gen: u64,
    pub model: Option<ModelInfo>,
    pub model_loading: bool,
    pub build: BuildState,
    pub selected: Option<usize>,
    pub entity_filter: String,
    pub entity_show: entities::Show,
    pub scroll_to_selected: bool,
    pub inspection: Option<Inspection>,
    pub neighbours: Option<NeighbourResult>,
    pub norm_compare: Option<PreviewResult>,
    pub preview: Option<PreviewResult>,
    pub preview_disabled: Vec<(usize, usize)>,
    pub pca: Pca,
    pub errors: Vec<ErrorEntry>,
    pub show_errors: bool,
    pub show_about: bool,
    pub status: Option<String>,
    pub commands: Vec<Command>,
    requests: Requests,
    /// An entity (name or id) to select once entities are known.
    pub pending_select: Option<String>,
    pub build_when_ready: bool,
    title: String,
    hovering_files: bool,
}

impl App {
    /// Starts the worker and opens the start-up project ([`State::startup_project`]).
    pub fn new(ctx: &egui::Context, state: State) -> App {
        let wake_ctx = Arc::new(Mutex::new(ctx.clone()));
        let w = wake_ctx.clone();
        let worker = Worker::spawn(move || {
            if let Ok(c) = w.lock() {
                c.request_repaint();
            }
        });
        let startup = state.startup_project();
        let mut app = App {
            state,
            worker,
            wake_ctx,
            project: Project::default(),
            project_path: None,
            project_dirty: false,
            entity_list: None,
            table: None,
            table_path: None,
            table_gen: 0,
            model: None,
            model_loading: false,
            build: BuildState::default(),
            selected: None,
            entity_filter: String::new(),
            entity_show: entities::Show::All,
            scroll_to_selected: false,
            inspection: None,
            neighbours: None,
            norm_compare: None,
            preview: None,
            preview_disabled: vec![],
            pca: Pca::None,
            errors: vec![],
            show_errors: false,
            show_about: false,
            status: None,
            commands: vec![],
            requests: Requests::default(),
            pending_select: None,
            build_when_ready: false,
            title: String::new(),
            hovering_files: false,
        };
        app.open_project(&startup);
        app
    }

    /// Draws one frame and applies what happened in it.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        if let Ok(mut w) = self.wake_ctx.lock() {
            *w = ctx.clone();
        }
        for event in self.worker.poll() {
            self.on_event(event);
        }
        self.poll_pca();
        self.resolve_pending_select();
        self.handle_input(&ctx);

        egui::Panel::top("menu_bar").show(ui, |ui| status::menu_bar(self, ui));
        egui::Panel::bottom("status_bar").show(ui, |ui| status::status_bar(self, ui));
        egui::Panel::left("project_panel")
            .default_size(320.0)
            .size_range(260.0..=520.0)
            .show(ui, |ui| project::panel(self, ui));
        egui::Panel::left("entities_panel")
            .default_size(450.0)
            .size_range(300.0..=700.0)
            .show(ui, |ui| entities::panel(self, ui));
        egui::CentralPanel::default().show(ui, |ui| self.central(ui));
        status::error_window(self, &ctx);
        status::about_window(self, &ctx);
        if self.hovering_files {
            status::drop_overlay(&ctx);
        }

        for c in std::mem::take(&mut self.commands) {
            self.apply(c);
        }
        self.auto_requests();
        self.pump();
        self.update_title(&ctx);
        if self.worker.is_busy() || matches!(self.pca, Pca::Computing(_)) {
            ctx.request_repaint_after(std::time::Duration::from_millis(250));
        }
    }

    fn central(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            for t in Tab::ALL {
                let r = ui.selectable_label(
                    self.state.tab == t,
                    egui::RichText::new(t.label()).size(15.0),
                );
                if r.on_hover_text(t.hover()).clicked() {
                    self.state.tab = t;
                }
            }
        });
        ui.separator();
        match self.state.tab {
            Tab::Overview => overview::tab(self, ui),
            Tab::Inspector => inspector::tab(self, ui),
            Tab::Neighbours => neighbours::tab(self, ui),
            Tab::Norm => norm::tab(self, ui),
            Tab::Preview => preview::tab(self, ui),
            Tab::Map => map::tab(self, ui),
        }
    }

    // ----- queries used by the panels -----

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

    /// Index of the entity named or identified by `s`.
    pub fn find_entity(&self, s: &str) -> Option<usize> {
        (0..self.entity_count())
            .find(|&i| self.entity_id(i) == s)
            .or_else(|| {
                (0..self.entity_count()).find(|&i| self.entity_name(i).eq_ignore_ascii_case(s))
            })
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
        (!diff.is_empty()).then(|| {
            format!(
                "parameters changed since this table was built ({})",
                diff.join(", ")
            )
        })
    }

    // ----- events -----

    fn on_event(&mut self, event: Event) {
        match event {
            Event::ModelLoaded(info) => {
                self.model_loading = false;
                self.status = Some(format!("Model {} loaded on {}", info.name, info.device));
                self.model = Some(info);
            }
            Event::Progress(p) => self.build.progress = Some(p),
            Event::Built {
                table,
                report,
                saved_to,
            } => {
                self.build.running = false;
                self.build.cancelling = false;
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
                self.set_table(table, saved_to);
                self.refresh_checkpoint();
            }
            Event::BuildCancelled {
                done,
                total,
                checkpoint,
            } => {
                self.build.running = false;
                self.build.cancelling = false;
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
                self.build.cancelled = Some((done, total, checkpoint));
                self.refresh_checkpoint();
            }
            Event::TableOpened { table, path } => {
                self.status = Some(format!("Opened table {}", path.display()));
                self.build.report = None;
                self.set_table(table, Some(path));
            }
            Event::Saved { path } => self.status = Some(format!("Saved {}", path.display())),
            Event::Inspected(ins) => {
                if let Some((g, _)) = self.requests.answered(0) {
                    if g == self.table_gen {
                        self.inspection = Some(*ins);
                    }
                }
            }
            Event::Neighbours(n) => {
                if let Some((g, _)) = self.requests.answered(1) {
                    if g == self.table_gen {
                        self.neighbours = Some(n);
                    }
                }
            }
            Event::Previewed(p) => {
                if let Some((g, req)) = self.requests.answered(2) {
                    if g == self.table_gen {
                        match req {
                            Req::NormCompare { .. } => self.norm_compare = Some(*p),
                            _ => self.preview = Some(*p),
                        }
                    }
                }
            }
            Event::Error { job, message } => {
                match job {
                    "inspect" => drop(self.requests.answered(0)),
                    "neighbours" => drop(self.requests.answered(1)),
                    "preview" => drop(self.requests.answered(2)),
                    "build" => {
                        self.build.running = false;
                        self.build.cancelling = false;
                        self.refresh_checkpoint();
                    }
                    "load model" => self.model_loading = false,
                    _ => {}
                }
                self.error(job, message);
            }
        }
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

    fn set_table(&mut self, table: Arc<Table>, path: Option<PathBuf>) {
        self.project.options.norm = table.norm;
        if self.selected.is_some_and(|s| s >= table.len()) {
            self.selected = None;
        }
        self.table = Some(table);
        self.table_path = path;
        self.forget_table_views();
        self.scroll_to_selected = true;
    }

    /// Drops everything computed from the current table (a new one is coming or it is gone).
    fn forget_table_views(&mut self) {
        self.table_gen += 1;
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

    /// Applies one command (the panels push them during the frame).
    pub fn apply(&mut self, c: Command) {
        match c {
            Command::NewProject => {
                self.project = Project { probe: DEFAULT_PROBE.into(), ..Project::default() };
                self.project_path = None;
                self.project_dirty = false;
                self.entity_list = None;
                self.clear_table();
                self.load_model();
            }
            Command::OpenProjectDialog => {
                if let Some(p) = self.dialog().add_filter("PELT project", &["ron"]).pick_file() {
                    self.open_project(&p);
                }
            }
            Command::OpenProject(p) => self.open_project(&p),
            Command::SaveProject => match self.project_path.clone() {
                Some(p) => self.apply(Command::SaveProjectTo(p)),
                None => self.apply(Command::SaveProjectAs),
            },
            Command::SaveProjectAs => {
                let name = format!("{}.ron", sanitize(&self.project.name));
                if let Some(p) = self.dialog().add_filter("PELT project", &["ron"]).set_file_name(name).save_file() {
                    self.save_project(&p);
                }
            }
            Command::SaveProjectTo(p) => self.save_project(&p),
            Command::ChooseModelDialog => {
                if let Some(p) = self.dialog().set_title("Model folder (with config.json)").pick_folder() {
                    self.apply(Command::SetModel(Some(p)));
                }
            }
            Command::SetModel(m) => {
                if let Some(dir) = &m {
                    if !dir.join("config.json").is_file() {
                        self.error("open model", format!("{} has no config.json: not a model folder", dir.display()));
                        return;
                    }
                }
                self.project.model = m;
                self.project_dirty = true;
                self.load_model();
            }
            Command::AddCorpusDialog => {
                if let Some(ps) = self
                    .dialog()
                    .add_filter("Corpus (.txt, .jsonl, FewRel .json, .gz)", &["txt", "jsonl", "json", "gz"])
                    .pick_files()
                {
                    self.apply(Command::AddCorpus(ps));
                }
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
            Command::ChooseEntitiesDialog => {
                if let Some(p) = self.dialog().add_filter("Entity list (.tsv, .txt)", &["tsv", "txt", "gz"]).pick_file() {
                    self.apply(Command::SetEntities(p));
                }
            }
            Command::SetEntities(p) => {
                self.project.entities = Some(p);
                self.project_dirty = true;
                self.load_entity_list();
            }
            Command::ChooseTableOutDialog => {
                if let Some(p) = self
                    .dialog()
                    .add_filter("PELT table", &["safetensors"])
                    .set_file_name(format!("{}.safetensors", sanitize(&self.project.name)))
                    .save_file()
                {
                    self.project.table = Some(p);
                    self.project_dirty = true;
                    self.refresh_checkpoint();
                }
            }
            Command::ReloadModel => self.load_model(),
            Command::Build { resume } => self.start_build(resume),
            Command::CancelBuild => {
                if self.build.running {
                    self.worker.cancel();
                    self.build.cancelling = true;
                    self.status = Some("Cancelling after the current batch…".into());
                }
            }
            Command::OpenTableDialog => {
                if let Some(p) = self.dialog().add_filter("PELT table", &["safetensors"]).pick_file() {
                    self.apply(Command::OpenTable(p));
                }
            }
            Command::OpenTable(p) => {
                self.status = Some(format!("Opening {}…", p.display()));
                self.worker.send(Job::OpenTable { path: p });
            }
            Command::SaveTableDialog => {
                if self.table.is_some() {
                    let name = self
                        .table_path
                        .as_ref()
                        .and_then(|p| p.file_name())
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "table.safetensors".into());
                    if let Some(p) = self.dialog().add_filter("PELT table", &["safetensors"]).set_file_name(name).save_file() {
                        self.apply(Command::SaveTable(p));
                    }
                }
            }
            Command::SaveTable(path) => match &self.table {
                Some(t) => {
                    let mut copy = (**t).clone();
                    copy.norm = self.norm();
                    self.status = Some(format!("Saving {} (norm {})…", path.display(), copy.norm));
                    self.worker.send(Job::SaveTable { table: Arc::new(copy), path });
                }
                None => self.error("save table", "there is no table to save yet: build or open one first".into()),
            },
            Command::ExportProjectorDialog => {
                if self.table.is_some() {
                    if let Some(dir) = self.dialog().set_title("Folder for vectors.tsv and metadata.tsv").pick_folder() {
                        self.apply(Command::ExportProjector(dir));
                    }
                }
            }
            Command::ExportProjector(dir) => match &self.table {
                Some(t) => {
                    let mut copy = (**t).clone();
                    copy.norm = self.norm();
                    self.worker.send(Job::ExportProjector { table: Arc::new(copy), dir });
                }
                None => self.error("export", "there is no table to export yet: build or open one first".into()),
            },
            Command::Select(i) => {
                if i < self.entity_count() {
                    self.selected = Some(i);
                    self.scroll_to_selected = true;
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
                if self.errors.is_empty() {
                    self.show_errors = false;
                }
            }
            Command::ClearErrors => {
                self.errors.clear();
                self.show_errors = false;
            }
            Command::Dropped(p) => match classify_drop(&p) {
                Some(DropKind::Corpus) => self.apply(Command::AddCorpus(vec![p])),
                Some(DropKind::Entities) => self.apply(Command::SetEntities(p)),
                Some(DropKind::Model) => self.apply(Command::SetModel(Some(p))),
                Some(DropKind::Project) => self.open_project(&p),
                Some(DropKind::Table) => self.apply(Command::OpenTable(p)),
                None => self.error(
                    "drop",
                    format!(
                        "{}: not a corpus (.txt/.jsonl/.json/.gz), entity list (.tsv), model folder (config.json), project (.ron) or table (.safetensors)",
                        p.display()
                    ),
                ),
            },
        }
    }

    fn dialog(&self) -> rfd::FileDialog {
        let dir = self
            .project_path
            .as_ref()
            .and_then(|p| p.parent())
            .map(Path::to_path_buf)
            .or_else(|| std::env::current_dir().ok());
        let d = rfd::FileDialog::new();
        match dir {
            Some(dir) => d.set_directory(dir),
            None => d,
        }
    }

    /// Opens a project file: entity list, model (in the worker) and, if present, its table.
    pub fn open_project(&mut self, path: &Path) {
        match Project::load(path) {
            Ok(p) => {
                self.project = p;
                self.project_path = Some(path.to_path_buf());
                self.project_dirty = false;
                self.state.remember(path);
                if !self.project.probe.trim().is_empty() {
                    self.state.probe = self.project.probe.clone();
                }
                self.clear_table();
                self.build = BuildState::default();
                self.load_entity_list();
                self.load_model();
                match self.project.table.clone() {
                    Some(t) if t.is_file() => {
                        self.status = Some(format!("Opening table {}…", t.display()));
                        self.worker.send(Job::OpenTable { path: t });
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

    fn save_project(&mut self, path: &Path) {
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
                Ok(l) => self.entity_list = Some(l),
                Err(e) => self.error("entity list", format!("{e:#}")),
            }
        }
    }

    /// Asks the worker for the project's model; the current one stays shown (and in use) until
    /// the new one has loaded, and stays if it fails to load.
    fn load_model(&mut self) {
        self.model_loading = true;
        self.worker.send(Job::LoadModel {
            dir: self.project.model_dir(),
            device: self.project.device,
        });
    }

    fn start_build(&mut self, resume: bool) {
        if self.build.running {
            return;
        }
        if self.project.corpus.is_empty() {
            self.error("build", "the project has no corpus files: add some on the left (or drop them onto the window)".into());
            return;
        }
        if self.project.entities.is_none() {
            self.error("build", "the project has no entity list: choose one on the left (or drop a .tsv onto the window)".into());
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
        self.worker.send(Job::Build {
            project: Box::new(self.project.clone()),
            resume,
        });
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
        match self.state.tab {
            Tab::Inspector | Tab::Norm => {
                if let Some(e) = sel {
                    self.requests.want(g, Req::Inspect { entity: e });
                }
                if self.state.tab == Tab::Norm && !self.state.probe.trim().is_empty() {
                    let (a, b) = (self.state.norm_a, self.state.norm_b);
                    self.requests.want(
                        g,
                        Req::NormCompare {
                            text: self.state.probe.clone(),
                            a,
                            b,
                        },
                    );
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
                    let (a, b) = (self.state.norm_a, self.state.norm_b);
                    let disabled = self.preview_disabled.clone();
                    self.requests.want(
                        g,
                        Req::Preview {
                            text: self.state.preview_text.clone(),
                            disabled,
                            a,
                            b,
                        },
                    );
                }
            }
            Tab::Overview | Tab::Map => {}
        }
    }

    /// Sends the next queued request of each idle lane.
    fn pump(&mut self) {
        let Some(table) = self.table.clone() else {
            return;
        };
        let g = self.table_gen;
        let norm = self.norm();
        // The inspector runs the model over all of an entity's contexts (at most K).
        let limit = table.meta.k.max(1);
        for lane in &mut self.requests.lanes {
            if lane.in_flight.is_some() {
                continue;
            }
            let Some(req) = lane.queued.pop_front() else {
                continue;
            };
            let table = table.clone();
            let job = match &req {
                Req::Inspect { entity } => Job::Inspect {
                    table,
                    entity: *entity,
                    top_k: 5,
                    limit,
                    norms: norm::loss_norms(),
                },
                Req::Neighbours { entity, center, k } => Job::Neighbours {
                    table,
                    entity: *entity,
                    k: *k,
                    center: *center,
                    norm,
                },
                Req::NormCompare { text, a, b } => Job::Preview {
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
                } => Job::Preview {
                    table,
                    text: text.clone(),
                    disabled: disabled.clone(),
                    norm_a: *a,
                    norm_b: *b,
                    top_k: TOP_K,
                },
            };
            self.worker.send(job);
            lane.in_flight = Some((g, req));
        }
    }

    // ----- misc -----

    fn poll_pca(&mut self) {
        if let Pca::Computing(rx) = &self.pca {
            if let Ok(points) = rx.try_recv() {
                self.pca = Pca::Ready(points);
            }
        }
    }

    /// Starts the PCA of the current table in a background thread.
    pub fn start_pca(&mut self, ctx: &egui::Context) {
        let Some(table) = self.table.clone() else {
            return;
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(pelt::analysis::pca_2d(&table));
            ctx.request_repaint();
        });
        self.pca = Pca::Computing(rx);
    }

    fn resolve_pending_select(&mut self) {
        if let Some(name) = self.pending_select.clone() {
            if self.table.is_some()
                || (self.entity_list.is_some()
                    && self.project.table.as_ref().is_none_or(|t| !t.is_file()))
            {
                if let Some(i) = self.find_entity(&name) {
                    self.apply(Command::Select(i));
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
            }
        }
    }

    fn handle_input(&mut self, ctx: &egui::Context) {
        let (dropped, hovering) = ctx.input(|i| {
            (
                i.raw
                    .dropped_files
                    .iter()
                    .map(|f| f.path().to_path_buf())
                    .collect::<Vec<_>>(),
                !i.raw.hovered_files.is_empty(),
            )
        });
        self.hovering_files = hovering;
        for p in dropped {
            self.commands.push(Command::Dropped(p));
        }
        let (save, open) = ctx.input_mut(|i| {
            (
                i.consume_key(egui::Modifiers::COMMAND, egui::Key::S),
                i.consume_key(egui::Modifiers::COMMAND, egui::Key::O),
            )
        });
        if save {
            self.commands.push(Command::SaveProject);
        }
        if open {
            self.commands.push(Command::OpenProjectDialog);
        }
    }

    fn update_title(&mut self, ctx: &egui::Context) {
        let title = format!(
            "PELT Workbench — {}{}",
            self.project.name,
            if self.project_dirty { " *" } else { "" }
        );
        if title != self.title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
    }
}

/// A file-name-safe form of a project name.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.trim_matches('-').is_empty() {
        "project".into()
    } else {
        s
    }
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.state);
    }
}
