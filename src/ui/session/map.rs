//! The Map tab's part of the session: which map is shown and asked for, its colouring classes,
//! and the set of entities selected on it.
//!
//! A PCA map is always made at once. A learnt map (t-SNE, UMAP) is made at once up to
//! [`AUTO_LAYOUT_MAX`] entities with a vector; beyond, it is read back when the project's
//! folder keeps it, and otherwise waits for the user to ask (it takes minutes). A map that
//! failed or was cancelled is not asked for again until the user asks or the table changes.

use std::path::PathBuf;
use std::sync::Arc;

use pelt::analysis::maps::MapMethod;
use pelt::eval::{LabelSource, RowClasses};
use pelt::outpath::Replace;
use pelt::progress::Progress;
use pelt::worker::{MapPoint, MapReply, Task};
use serde::{Deserialize, Serialize};

use super::{Changed, Pending, Retry, Session};

/// Learnt maps of up to this many entities are made without asking (about a minute on two
/// cores); larger ones wait for [`MapCommand::Compute`].
pub const AUTO_LAYOUT_MAX: usize = 20_000;
/// Colour classes shown at most (the rest are "other").
pub const MAX_CLASSES: usize = 12;

/// What the map's points are coloured by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub enum ColourBy {
    /// The number of contexts each vector was built from.
    Contexts,
    /// The evaluation's labels (the Evaluate tab's FewRel relation slots or labels TSV).
    #[default]
    Evaluate,
    /// The entity types of the project's PubTator corpus files.
    PubTator,
    /// An `id<TAB>label` file.
    File(PathBuf),
}

impl ColourBy {
    pub fn label(&self) -> String {
        match self {
            ColourBy::Contexts => "number of contexts".into(),
            ColourBy::Evaluate => "evaluation labels".into(),
            ColourBy::PubTator => "PubTator types".into(),
            ColourBy::File(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string()),
        }
    }
}

/// The Map tab's commands.
#[derive(Debug, Clone, PartialEq)]
pub enum MapCommand {
    SetMethod(MapMethod),
    /// Makes the chosen map even when it is large or was cancelled.
    Compute,
    Cancel,
    ColourBy(ColourBy),
    /// Opens a file dialog for a labels file to colour by.
    ColourFileDialog,
    /// Whether the selected entity draws lines to its nearest neighbours.
    NeighbourLines(bool),
    /// The rows inside a box or lasso drawn on the map.
    SetSet(Vec<usize>),
    ClearSet,
    /// Whether the entity list shows only the set.
    FilterToSet(bool),
    ExportSetDialog,
    ExportSet(PathBuf),
}

/// A map made for the current table.
#[derive(Debug, Clone)]
pub struct MapResult {
    pub method: MapMethod,
    pub points: Arc<Vec<MapPoint>>,
    /// The file in the project's folder that keeps it.
    pub cache: Option<PathBuf>,
    pub from_cache: bool,
    pub secs: f64,
}

/// Why the chosen map is not being made.
#[derive(Debug, Clone, PartialEq)]
pub enum MapHeld {
    /// More entities than [`AUTO_LAYOUT_MAX`] and not kept in the project's folder.
    Large(usize),
    Cancelled,
    Failed(String),
}

/// The map's state in the session.
#[derive(Default)]
pub struct MapState {
    /// The map shown (while another is made, the previous one).
    pub layout: Option<MapResult>,
    pub progress: Option<Progress>,
    /// Methods whose map is not being made for this table, and why.
    pub held: Vec<(MapMethod, MapHeld)>,
    /// Colour classes and what they were made from.
    pub classes: Option<(ColourBy, Arc<RowClasses>)>,
    /// A colouring that failed (not asked for again until chosen again), with why.
    pub classes_failed: Option<(ColourBy, String)>,
    /// Rows selected on the map, sorted.
    pub set: Option<Arc<Vec<usize>>>,
    /// The entity list shows only [`MapState::set`].
    pub filter_to_set: bool,
}

impl MapState {
    /// Why the map of `method` is not being made, if it is held.
    pub fn held(&self, method: MapMethod) -> Option<&MapHeld> {
        self.held.iter().find(|(m, _)| *m == method).map(|(_, h)| h)
    }

    fn hold(&mut self, method: MapMethod, why: MapHeld) {
        self.held.retain(|(m, _)| *m != method);
        self.held.push((method, why));
    }
}

impl Session {
    /// The rows the entity list is limited to, if any.
    pub fn set_filter(&self) -> Option<Arc<Vec<usize>>> {
        self.map.set.clone().filter(|_| self.map.filter_to_set)
    }

    pub fn map_computing(&self) -> bool {
        self.jobs.values().any(|p| matches!(p, Pending::Map { .. }))
    }

    pub fn classes_computing(&self) -> bool {
        self.jobs.values().any(|p| matches!(p, Pending::Classes(_)))
    }

    /// Entities with a vector in the current table.
    pub fn found_count(&self) -> usize {
        self.table
            .as_ref()
            .map_or(0, |t| t.counts.iter().filter(|&&c| c > 0).count())
    }

    /// Where the classes of `c` come from in this project (`None` for contexts, or when the
    /// project has no such source).
    pub fn label_source(&self, c: &ColourBy) -> Option<LabelSource> {
        match c {
            ColourBy::Contexts => None,
            ColourBy::Evaluate => {
                let e = &self.project.eval;
                (e.labels.is_some() || !e.fewrel.is_empty()).then(|| LabelSource::Evaluate {
                    labels: e.labels.clone(),
                    fewrel: e.fewrel.clone(),
                    min_mentions: e.min_mentions,
                })
            }
            ColourBy::PubTator => {
                let files: Vec<PathBuf> = self
                    .project
                    .corpus
                    .iter()
                    .filter(|p| pelt::corpus::Format::of(p) == Some(pelt::corpus::Format::PubTator))
                    .cloned()
                    .collect();
                (!files.is_empty()).then_some(LabelSource::PubTator(files))
            }
            ColourBy::File(p) => Some(LabelSource::Tsv(p.clone())),
        }
    }

    /// The folder that keeps the project's maps: the project file's.
    fn map_cache_dir(&self) -> Option<PathBuf> {
        self.project_path
            .as_ref()
            .and_then(|p| p.parent())
            .map(|d| d.to_path_buf())
    }

    /// Asks for the chosen map and colouring when they are missing (the Map tab is shown).
    pub(super) fn auto_map(&mut self) {
        let Some(table) = self.table.clone() else {
            return;
        };
        let method = self.state.map_method;
        let shown = self.map.layout.as_ref().is_some_and(|l| l.method == method);
        let held = self.map.held(method).is_some();
        if !shown && !held && !self.map_computing() {
            self.send_map(table.clone(), method, false);
        }
        let colour = self.state.map_colour.clone();
        let have = self.map.classes.as_ref().is_some_and(|(c, _)| *c == colour);
        let failed = self
            .map
            .classes_failed
            .as_ref()
            .is_some_and(|(c, _)| *c == colour);
        if !have && !failed && !self.classes_computing() {
            if let Some(source) = self.label_source(&colour) {
                self.send(
                    Pending::Classes(colour),
                    Task::Classes {
                        table,
                        source,
                        max_classes: MAX_CLASSES,
                    },
                );
            }
        }
    }

    /// Sends the map job; a large learnt map is only read back unless `force`.
    fn send_map(&mut self, table: Arc<pelt::table::Table>, method: MapMethod, force: bool) {
        let read_only = method.is_slow() && self.found_count() > AUTO_LAYOUT_MAX && !force;
        let cache_dir = self.map_cache_dir();
        self.map.held.retain(|(m, _)| *m != method);
        self.map.progress = None;
        self.send(
            Pending::Map { method, read_only },
            Task::Map {
                table,
                method,
                cache_dir,
                read_only,
            },
        );
    }

    pub(super) fn apply_map(&mut self, c: MapCommand) -> Changed {
        let mut changed = Changed {
            results: true,
            ..Changed::default()
        };
        match c {
            MapCommand::SetMethod(m) => {
                self.state.map_method = m;
            }
            MapCommand::Compute => {
                if let Some(table) = self.table.clone() {
                    if !self.map_computing() {
                        self.send_map(table, self.state.map_method, true);
                    }
                }
            }
            MapCommand::Cancel => {
                if self.map_computing() {
                    self.worker.cancel();
                }
            }
            MapCommand::ColourBy(c) => {
                if self
                    .map
                    .classes_failed
                    .as_ref()
                    .is_some_and(|(f, _)| *f == c)
                {
                    self.map.classes_failed = None;
                }
                self.state.map_colour = c;
            }
            MapCommand::ColourFileDialog | MapCommand::ExportSetDialog => {
                return Changed::default()
            }
            MapCommand::NeighbourLines(on) => self.state.map_neighbours = on,
            MapCommand::SetSet(mut rows) => {
                rows.sort_unstable();
                rows.dedup();
                let n = rows.len();
                self.map.set = (!rows.is_empty()).then(|| Arc::new(rows));
                self.status = Some(format!("{n} entities in the set"));
                changed.entities = self.map.filter_to_set;
            }
            MapCommand::ClearSet => {
                self.map.set = None;
                changed.entities = self.map.filter_to_set;
            }
            MapCommand::FilterToSet(on) => {
                self.map.filter_to_set = on;
                changed.entities = true;
            }
            MapCommand::ExportSet(path) => self.export_set(path, Replace::OwnOnly),
        }
        changed
    }

    /// Writes the set as an entity list at `path` (on the worker).
    pub(super) fn export_set(&mut self, path: PathBuf, replace: Replace) {
        let (Some(table), Some(rows)) = (self.table.clone(), self.map.set.clone()) else {
            self.error("save entity set", "select entities on the map first".into());
            return;
        };
        self.last_save = Some(Retry::ExportSet(path.clone()));
        let inputs = self.project_inputs();
        self.send(
            Pending::Save,
            Task::SaveEntitySet {
                table,
                rows,
                path,
                inputs,
                replace,
            },
        );
    }

    /// A map arrived for the current table.
    pub(super) fn on_map(&mut self, read_only: bool, r: MapReply) -> Changed {
        let method = r.method;
        self.map.progress = None;
        if let Some(e) = r.cache_error {
            self.error("map", format!("the map is not kept: {e}"));
        }
        match r.points {
            Some(points) => {
                self.status = Some(match (&r.cache, r.from_cache) {
                    (Some(c), true) => format!("{} map read from {}", method.label(), c.display()),
                    (Some(c), false) => format!(
                        "{} map made in {:.1} s, kept in {}",
                        method.label(),
                        r.secs,
                        c.display()
                    ),
                    (None, _) => format!("{} map made in {:.1} s", method.label(), r.secs),
                });
                self.map.layout = Some(MapResult {
                    method,
                    points,
                    cache: r.cache,
                    from_cache: r.from_cache,
                    secs: r.secs,
                });
            }
            None if read_only => {
                let n = self.found_count();
                self.map.hold(method, MapHeld::Large(n));
            }
            None => self.map.hold(method, MapHeld::Cancelled),
        }
        Changed {
            results: true,
            ..Changed::default()
        }
    }

    /// The map job failed: not asked for again until the user asks.
    pub(super) fn on_map_failed(&mut self, method: MapMethod, message: &str) {
        self.map.progress = None;
        self.map.hold(method, MapHeld::Failed(message.to_string()));
    }

    /// Forgets the maps and classes of the table (it changed).
    pub(super) fn forget_map(&mut self) {
        self.map.layout = None;
        self.map.held.clear();
        self.map.progress = None;
        self.map.classes = None;
        self.map.classes_failed = None;
        self.map.set = None;
        self.jobs
            .retain(|_, p| !matches!(p, Pending::Map { .. } | Pending::Classes(_)));
    }
}
