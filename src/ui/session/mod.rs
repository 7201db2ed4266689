//! The workbench's state without any GUI: the project, its entity list and table, the build,
//! the model, the results shown in the tabs and the bookkeeping of the jobs sent to the
//! worker. It knows no egui; the panels read it and push [`Command`]s, which the app applies
//! after the frame with [`Session::apply`]; [`Session::poll`] applies the worker's replies.
//! Both return what [`Changed`], which the app uses to ask for another frame.
//!
//! **Jobs.** Every job sent to the worker is entered in one table, from its id to what it is
//! for ([`Pending`]), and leaves it with its final reply: a reply or a failure is routed by
//! looking its id up once. A job the session no longer waits for (a table opening overtaken
//! by another, the map of a table since replaced) is taken out of the table when it is
//! overtaken, and a reply with an id not in the table changes nothing.
//!
//! Staleness is decided by rule, not by arrival order: every job is sent with the session's
//! project generation (bumped when another project is opened or a new one started) and every
//! reply of an older generation is dropped, except the model description, which says what the
//! worker holds whatever project asked for it. Within a generation, results shown in a tab are
//! matched to their request by job id and dropped when the table changed since they were asked.

mod commands;
mod compare;
mod map;
mod replies;
mod requests;
mod state;
#[cfg(test)]
mod tests;
#[cfg(test)]
use pelt::eval::LabelSource;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use pelt::analysis::maps::MapMethod;
use pelt::analysis::preview::PreviewResult;
use pelt::build::BuildReport;
use pelt::entities::EntityList;
use pelt::progress::Progress;
use pelt::project::Project;
use pelt::table::Table;
use pelt::worker::{Inspection, JobId, ModelInfo, NeighbourResult, Task, Worker};

use super::rows::{RowOrders, RowSource};
pub use compare::{CompareColumn, CompareCommand, CompareState, COMPARE_K_MAX};
#[cfg(test)]
pub use map::MAX_CLASSES;
pub use map::{ColourBy, MapCommand, MapHeld, MapState, AUTO_LAYOUT_MAX};
pub use requests::Purpose;
use requests::{Req, Requests};
pub use state::{
    classify_drop, Command, DropKind, EvalFile, InspectSort, SortKey, State, Tab, DEFAULT_PROBE,
    TOP_K,
};

/// What a job in flight is for.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    /// Opening a table; only the newest opening is waited for.
    OpenTable,
    /// Loading the project's model; only the newest load is waited for.
    LoadModel,
    Build,
    Evaluate,
    /// A map of the current table; `read_only`: only a map the project keeps is read back.
    Map {
        method: MapMethod,
        read_only: bool,
    },
    /// The map's colour classes, made from this source.
    Classes(ColourBy),
    /// The Compare tab's comparison, asked of table generation `table_gen`.
    Compare {
        table_gen: u64,
    },
    /// Saving the table or exporting its projector files.
    Save,
    /// A request whose result a tab shows, asked of table generation `table_gen`.
    Request {
        table_gen: u64,
        req: Req,
    },
}

impl Pending {
    /// Whether a newer job of the same kind makes this one moot.
    fn only_newest(&self) -> bool {
        matches!(
            self,
            Pending::OpenTable | Pending::LoadModel | Pending::Map { .. } | Pending::Classes(_)
        )
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

/// A write the window asks the user to agree to before it happens: over a file this tool did
/// not write, or outside the project's folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// The question, naming the file (and its size).
    pub text: String,
    /// What runs when the user agrees.
    pub retry: Retry,
}

/// What runs again once the user agrees ([`Command::Answer`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Retry {
    /// The build, allowed to replace a file this tool did not write.
    BuildReplacing {
        resume: bool,
    },
    /// The build, allowed to write these outputs outside the project's folder.
    BuildOutside {
        resume: bool,
        paths: Vec<PathBuf>,
    },
    SaveTable(PathBuf),
    ExportProjector(PathBuf),
    SaveProject(PathBuf),
    ExportSet(PathBuf),
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
    pub fn merge(&mut self, o: Changed) {
        self.entities |= o.entities;
        self.selection |= o.selection;
        self.results |= o.results;
        self.project |= o.project;
    }

    /// Whether anything changed (the window is drawn again).
    pub fn any(&self) -> bool {
        self.entities || self.selection || self.results || self.project
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
    /// The jobs sent to the worker that have not had their final reply.
    jobs: BTreeMap<JobId, Pending>,
    pub model: Option<ModelInfo>,
    pub build: BuildState,
    pub selected: Option<usize>,
    pub inspection: Option<Inspection>,
    pub neighbours: Option<NeighbourResult>,
    pub norm_compare: Option<PreviewResult>,
    pub preview: Option<PreviewResult>,
    pub preview_disabled: Vec<(usize, usize)>,
    pub map: MapState,
    pub errors: Vec<ErrorEntry>,
    pub status: Option<String>,
    requests: Requests,
    /// An entity (name or id) to select once entities are known.
    pub pending_select: Option<String>,
    pub build_when_ready: bool,
    /// Runs the evaluation once a table and the model are there.
    pub eval_when_ready: bool,
    /// How far the evaluation in flight has got.
    pub eval_progress: Option<Progress>,
    /// A write waiting for the user's consent (the window shows it as a dialog).
    pub question: Option<Question>,
    /// Outputs outside the project's folder the user agreed to (asked once each).
    pub confirmed_outside: std::collections::BTreeSet<PathBuf>,
    /// The last save or export sent, to run again if the user agrees to replace a file.
    pub last_save: Option<Retry>,
    /// The Compare tab: a second table and its comparison with this one.
    pub compare: CompareState,
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
            jobs: BTreeMap::new(),
            model: None,
            build: BuildState::default(),
            selected: None,
            inspection: None,
            neighbours: None,
            norm_compare: None,
            preview: None,
            preview_disabled: vec![],
            map: MapState::default(),
            errors: vec![],
            status: None,
            requests: Requests::default(),
            pending_select: None,
            build_when_ready: false,
            eval_when_ready: false,
            eval_progress: None,
            question: None,
            confirmed_outside: Default::default(),
            last_save: None,
            compare: CompareState::default(),
        }
    }

    /// Sends `task` to the worker and enters it in the job table as `pending`; a job of a
    /// kind where only the newest counts takes the place of the one before.
    fn send(&mut self, pending: Pending, task: Task) -> JobId {
        if pending.only_newest() {
            let kind = std::mem::discriminant(&pending);
            self.jobs.retain(|_, p| std::mem::discriminant(p) != kind);
        }
        let id = self.worker.send(self.generation, task);
        self.jobs.insert(id, pending);
        id
    }

    /// Whether a job of this kind is in flight.
    fn has_job(&self, pending: &Pending) -> bool {
        self.jobs.values().any(|p| p == pending)
    }

    /// What job `id` is for, while it is in flight.
    #[cfg(test)]
    pub fn job(&self, id: JobId) -> Option<&Pending> {
        self.jobs.get(&id)
    }

    /// The number of jobs in flight that the session waits for.
    #[cfg(test)]
    pub fn jobs_in_flight(&self) -> usize {
        self.jobs.len()
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
        self.has_job(&Pending::LoadModel)
    }

    pub fn building(&self) -> bool {
        self.has_job(&Pending::Build)
    }

    pub fn evaluating(&self) -> bool {
        self.has_job(&Pending::Evaluate)
    }

    pub fn pending(&self, p: Purpose) -> bool {
        self.requests.queued(p)
            || self
                .jobs
                .values()
                .any(|j| matches!(j, Pending::Request { req, .. } if req.purpose() == p))
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
}
