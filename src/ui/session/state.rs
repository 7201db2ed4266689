//! The session's vocabulary: tabs, sort keys, the persisted view settings and the commands.

use std::path::{Path, PathBuf};

use pelt::analysis::maps::MapMethod;
use pelt::corpus::Format;
use pelt::project::Project;
use serde::{Deserialize, Serialize};

use super::{ColourBy, MapCommand, Purpose};

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
    Compare,
    Evaluate,
}

impl Tab {
    pub const ALL: [Tab; 8] = [
        Tab::Overview,
        Tab::Inspector,
        Tab::Neighbours,
        Tab::Norm,
        Tab::Preview,
        Tab::Map,
        Tab::Compare,
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
            Tab::Compare => "Compare",
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
            Tab::Map => "All entity vectors on a 2-D map (t-SNE, UMAP or PCA), coloured by type or label",
            Tab::Compare => "A second table of the same entities (another corpus or model): whose nearest neighbours changed, and both maps aligned",
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
    /// How the Map tab lays the vectors out.
    pub map_method: MapMethod,
    /// What the Map tab colours the points by.
    pub map_colour: ColourBy,
    /// The selected entity draws lines to its nearest neighbours on the map.
    pub map_neighbours: bool,
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
            map_method: MapMethod::default(),
            map_colour: ColourBy::default(),
            map_neighbours: true,
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
    /// The user's answer to the [`super::Question`] shown: `true` runs the write.
    Answer(bool),
    Map(MapCommand),
    /// The Compare tab's commands.
    Compare(super::CompareCommand),
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
