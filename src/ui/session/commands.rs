//! The user's commands.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use pelt::entities::load_entities;
use pelt::outpath::{OutputKind, Replace};
use pelt::project::Project;
use pelt::table::Table;
use pelt::worker::Task;
use std::path::PathBuf;

use super::{
    classify_drop, BuildState, Changed, Command, DropKind, Pending, Question, Requests, Retry,
    Session, Tab, DEFAULT_PROBE,
};

impl Session {
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
                if self.evaluating() {
                    return changed;
                }
                let Some(table) = self.table_at_norm() else {
                    self.error("evaluate", "build or open a table first".into());
                    return changed;
                };
                self.status = Some("Evaluating the table…".into());
                self.eval_progress = None;
                self.send(
                    Pending::Evaluate,
                    Task::Evaluate {
                        table,
                        settings: Box::new(self.project.eval.clone()),
                    },
                );
            }
            Command::CancelEval => {
                if self.evaluating() {
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
                if self.building() {
                    self.worker.cancel();
                    self.build.cancelling = true;
                    self.status = Some("Cancelling after the current batch…".into());
                }
            }
            Command::OpenTable(p) => {
                self.status = Some(format!("Opening {}…", p.display()));
                let corpus = self.project.corpus.clone();
                self.send(Pending::OpenTable, Task::OpenTable { path: p, corpus });
            }
            Command::SaveTable(path) => self.save_table(path, Replace::OwnOnly),
            Command::ExportProjector(dir) => self.export_projector(dir, Replace::OwnOnly),
            Command::Answer(yes) => {
                let Some(q) = self.question.take() else {
                    return changed;
                };
                if !yes {
                    self.status = Some("Nothing was written.".into());
                    return changed;
                }
                match q.retry {
                    Retry::BuildReplacing { resume } => self.start_build_with(resume, Replace::Any),
                    Retry::BuildOutside { resume, paths } => {
                        self.confirmed_outside.extend(paths);
                        self.start_build(resume);
                    }
                    Retry::SaveTable(p) => self.save_table(p, Replace::Any),
                    Retry::ExportProjector(d) => self.export_projector(d, Replace::Any),
                    Retry::SaveProject(p) => self.save_project_with(&p, Replace::Any),
                    Retry::ExportSet(p) => self.export_set(p, Replace::Any),
                }
            }
            Command::Select(i) => {
                if i < self.entity_count() && self.selected != Some(i) {
                    self.selected = Some(i);
                    changed.selection = true;
                }
            }
            Command::SetTab(t) => self.state.tab = t,
            Command::Map(c) => return self.apply_map(c),
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
            Command::Compare(c) => return self.apply_compare(c),
            Command::Dropped(p) => {
                let next = match classify_drop(&p) {
                    Some(DropKind::Corpus) => Command::AddCorpus(vec![p]),
                    Some(DropKind::Entities) => Command::SetEntities(p),
                    Some(DropKind::Model) => Command::SetModel(Some(p)),
                    Some(DropKind::Project) => Command::OpenProject(p),
                    // On the Compare tab a dropped table is the second table.
                    Some(DropKind::Table) if self.state.tab == Tab::Compare => {
                        Command::Compare(super::CompareCommand::SetTable(p))
                    }
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
    pub(super) fn switch_project(&mut self) {
        self.generation += 1;
        if self.building() || self.evaluating() {
            self.worker.cancel();
        }
        self.build = BuildState::default();
        self.jobs.clear();
        self.requests = Requests::default();
    }

    /// Opens a project file: entity list, model (in the worker) and, if present, its table.
    pub fn open_project(&mut self, path: &Path) {
        match Project::load_checked(path) {
            Ok((p, warnings)) => {
                for w in warnings {
                    self.error("open project", w);
                }
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
                        let corpus = self.project.corpus.clone();
                        self.send(Pending::OpenTable, Task::OpenTable { path: t, corpus });
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
        self.save_project_with(path, Replace::OwnOnly)
    }

    /// Saves the project to `path`, which may not be one of its inputs nor (unless `replace`)
    /// a file that is not a project: the window asks first.
    pub(super) fn save_project_with(&mut self, path: &Path, replace: Replace) {
        let mut inputs = pelt::outpath::Inputs::new();
        inputs.add_all("project file", self.project_inputs());
        inputs.add_all(
            "project output",
            self.project.outputs().into_iter().map(|o| o.1),
        );
        if let Err(e) = inputs.check_output("project", path, OutputKind::Project, replace) {
            match e.downcast_ref::<pelt::outpath::NotOurs>() {
                Some(n) => {
                    self.question = Some(Question {
                        text: format!(
                            "{} exists ({}) and is not a {}. Replace it?",
                            pelt::escape::path(&n.path),
                            pelt::outpath::human_size(n.size),
                            n.kind.label()
                        ),
                        retry: Retry::SaveProject(path.to_path_buf()),
                    });
                }
                None => self.error("save project", format!("{e:#}")),
            }
            return;
        }
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

    pub(super) fn clear_table(&mut self) {
        self.table = None;
        self.table_path = None;
        self.selected = None;
        self.forget_table_views();
    }

    pub(super) fn load_entity_list(&mut self) {
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
    pub(super) fn load_model(&mut self) {
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
        let task = Task::LoadModel {
            dir,
            device: self.project.device,
            dtype: self.project.dtype,
        };
        self.send(Pending::LoadModel, task);
    }

    /// The files the project reads (corpus, entity list, evaluation sources, the model's
    /// folder): a save or an export may not replace them.
    pub(super) fn project_inputs(&self) -> Vec<PathBuf> {
        let p = &self.project;
        let mut v: Vec<PathBuf> = p.corpus.clone();
        v.extend(p.entities.iter().cloned());
        v.extend(
            p.eval
                .labels
                .iter()
                .chain(&p.eval.fewrel)
                .chain(&p.eval.probes)
                .cloned(),
        );
        if let Ok(rd) = std::fs::read_dir(p.model_dir()) {
            v.extend(rd.flatten().map(|e| e.path()));
        }
        v
    }

    fn save_table(&mut self, path: PathBuf, replace: Replace) {
        let Some(table) = self.table_at_norm() else {
            return self.error(
                "save table",
                "there is no table to save yet: build or open one first".into(),
            );
        };
        self.status = Some(format!("Saving {} (norm {})…", path.display(), table.norm));
        self.last_save = Some(Retry::SaveTable(path.clone()));
        let inputs = self.project_inputs();
        self.send(
            Pending::Save,
            Task::SaveTable {
                table,
                path,
                inputs,
                replace,
            },
        );
    }

    fn export_projector(&mut self, dir: PathBuf, replace: Replace) {
        let Some(table) = self.table_at_norm() else {
            return self.error(
                "export",
                "there is no table to export yet: build or open one first".into(),
            );
        };
        self.last_save = Some(Retry::ExportProjector(dir.clone()));
        let inputs = self.project_inputs();
        self.send(
            Pending::Save,
            Task::ExportProjector {
                table,
                dir,
                inputs,
                replace,
            },
        );
    }

    pub(super) fn start_build(&mut self, resume: bool) {
        self.start_build_with(resume, Replace::OwnOnly)
    }

    /// Starts a build; `replace` says whether it may replace files this tool did not write.
    /// Outputs outside the project's folder are asked about once.
    pub(super) fn start_build_with(&mut self, resume: bool, replace: Replace) {
        if self.building() {
            return;
        }
        if let Some(pp) = &self.project_path {
            let outside: Vec<PathBuf> = self
                .project
                .outputs_outside(pp)
                .into_iter()
                .map(|(_, p)| p)
                .filter(|p| !self.confirmed_outside.contains(p))
                .collect();
            if !outside.is_empty() {
                let names: Vec<String> = outside.iter().map(|p| pelt::escape::path(p)).collect();
                self.question = Some(Question {
                    text: format!(
                        "This project writes outside its folder: {}. Write there?",
                        names.join(", ")
                    ),
                    retry: Retry::BuildOutside {
                        resume,
                        paths: outside,
                    },
                });
                return;
            }
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
        let task = Task::Build {
            project: Box::new(self.project.clone()),
            resume,
            replace,
        };
        self.send(Pending::Build, task);
    }
}
