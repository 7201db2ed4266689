//! The workbench window: an eframe/egui front end on the `pelt` engine.
//!
//! [`App`] is only the shell. The state lives in the GUI-free [`Session`], which owns the
//! [`pelt::worker::Worker`] and applies its replies; the GUI thread never waits for the model.
//! Each panel reads the session, keeps its own view state (filters, scroll, caches) and pushes
//! [`Command`]s, which are applied after the frame: dialog commands here (they need a file
//! dialog), all others by [`Session::apply`]. Everything worth keeping between runs lives in
//! the serde [`State`].
//!
//! Environment variables read at start-up (for demos and screenshots):
//! - `PELT_UI_TAB=overview|inspector|neighbours|norm|preview|map|compare|evaluate` opens that
//!   tab;
//! - `PELT_UI_ENTITY=<name or id>` selects that entity once the entity list is known;
//! - `PELT_UI_COMPARE=<table>` opens that table as the Compare tab's second table;
//! - `PELT_UI_BUILD=1` starts a build at once when the project has no table yet;
//! - `PELT_UI_EVAL=1` runs the evaluation once the table and the model are there.

pub mod bench;
mod compare;
mod entities;
mod evaluate;
mod inspector;
mod map;
mod neighbours;
mod norm;
mod overview;
mod preview;
mod project;
pub mod rows;
pub mod session;
mod status;
mod widgets;

#[cfg(test)]
mod compare_tests;
#[cfg(test)]
mod map_tests;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::{Arc, Mutex};

use pelt::worker::Worker;

pub use session::{Changed, Command, Purpose, Session, State, Tab};
#[cfg(test)]
pub use session::{InspectSort, SortKey, TOP_K};

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
                app.session.pending_select = Some(name);
            }
            if let Some(b) = std::env::var_os("PELT_UI_COMPARE") {
                app.session
                    .apply(Command::Compare(session::CompareCommand::SetTable(
                        b.into(),
                    )));
            }
            if std::env::var("PELT_UI_EVAL").is_ok_and(|v| v == "1") {
                app.session.eval_when_ready = true;
            }
            if std::env::var("PELT_UI_BUILD").is_ok_and(|v| v == "1") {
                app.session.build_when_ready = true;
            }
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}

/// The workbench window: the session, the panels' view state and the frame loop.
pub struct App {
    pub session: Session,
    wake_ctx: Arc<Mutex<egui::Context>>,
    commands: Vec<Command>,
    pub entities: entities::EntitiesPanel,
    pub inspector: inspector::InspectorPanel,
    pub map: map::MapPanel,
    pub compare: compare::ComparePanel,
    pub windows: status::Windows,
    title: String,
    hovering_files: bool,
}

impl App {
    /// Starts the worker and opens the start-up project ([`State::startup_project`]).
    pub fn new(ctx: &egui::Context, state: State) -> App {
        let startup = state.startup_project();
        let mut app = App::without_project(ctx, state);
        app.session.open_project(&startup);
        app
    }

    /// Starts the worker with no project open (and no model loading).
    pub fn without_project(ctx: &egui::Context, state: State) -> App {
        let wake_ctx = Arc::new(Mutex::new(ctx.clone()));
        let waker = |w: Arc<Mutex<egui::Context>>| {
            move || {
                if let Ok(c) = w.lock() {
                    c.request_repaint();
                }
            }
        };
        let worker = Worker::spawn(waker(wake_ctx.clone()));
        let rows = rows::RowOrders::spawn(waker(wake_ctx.clone()));
        App {
            session: Session::new(worker, rows, state),
            wake_ctx,
            commands: vec![],
            entities: Default::default(),
            inspector: Default::default(),
            map: Default::default(),
            compare: Default::default(),
            windows: Default::default(),
            title: String::new(),
            hovering_files: false,
        }
    }

    /// Draws one frame and applies what happened in it.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        if let Ok(mut w) = self.wake_ctx.lock() {
            *w = ctx.clone();
        }
        self.session.poll();
        self.handle_input(&ctx);

        let s = &self.session;
        let out = &mut self.commands;
        egui::Panel::top("menu_bar").show(ui, |ui| status::menu_bar(s, &mut self.windows, ui, out));
        egui::Panel::bottom("status_bar")
            .show(ui, |ui| status::status_bar(s, &mut self.windows, ui, out));
        egui::Panel::left("project_panel")
            .default_size(320.0)
            .size_range(260.0..=520.0)
            .show(ui, |ui| project::panel(s, ui, out));
        egui::Panel::left("entities_panel")
            .default_size(450.0)
            .size_range(300.0..=700.0)
            .show(ui, |ui| self.entities.ui(s, ui, out));
        egui::CentralPanel::default().show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                for t in Tab::ALL {
                    let r = ui.selectable_label(
                        s.state.tab == t,
                        egui::RichText::new(t.label()).size(15.0),
                    );
                    if r.on_hover_text(t.hover()).clicked() {
                        out.push(Command::SetTab(t));
                    }
                }
            });
            ui.separator();
            match s.state.tab {
                Tab::Overview => overview::tab(s, ui, out),
                Tab::Inspector => self.inspector.ui(s, ui, out),
                Tab::Neighbours => neighbours::tab(s, ui, out),
                Tab::Norm => norm::tab(s, ui, out),
                Tab::Preview => preview::tab(s, ui, out),
                Tab::Map => self.map.ui(s, ui, out),
                Tab::Compare => self.compare.ui(s, ui, out),
                Tab::Evaluate => evaluate::tab(s, ui, out),
            }
        });
        status::error_window(s, &mut self.windows, &ctx, out);
        status::question_window(s, &ctx, out);
        status::about_window(&mut self.windows, &ctx);
        if self.hovering_files {
            status::drop_overlay(&ctx);
        }

        let mut changed = Changed::default();
        for c in std::mem::take(&mut self.commands) {
            changed.merge(self.apply(c));
        }
        // Requests for what the (possibly new) tab shows go out in this frame, not the next.
        changed.merge(self.session.poll());
        if changed.any() {
            // What this frame drew is out of date: draw the next one now.
            ctx.request_repaint();
        }
        self.update_title(&ctx);
        if self.session.is_busy() {
            ctx.request_repaint_after(std::time::Duration::from_millis(250));
        }
    }

    /// Applies one command: file dialogs here, everything else in the session; returns what
    /// it changed.
    pub fn apply(&mut self, c: Command) -> Changed {
        let s = &self.session;
        let next = match c {
            Command::OpenProjectDialog => self
                .dialog()
                .add_filter("PELT project", &["ron"])
                .pick_file()
                .map(Command::OpenProject),
            Command::SaveProject if s.project_path.is_none() => Some(Command::SaveProjectAs),
            Command::SaveProjectAs => self
                .dialog()
                .add_filter("PELT project", &["ron"])
                .set_file_name(format!("{}.ron", sanitize(&s.project.name)))
                .save_file()
                .map(Command::SaveProjectTo),
            Command::ChooseModelDialog => self
                .dialog()
                .set_title("Model folder (with config.json)")
                .pick_folder()
                .map(|p| Command::SetModel(Some(p))),
            // The formats the reader knows; WikiExtractor's wiki_NN files have no extension
            // to filter on, hence "All files".
            Command::AddCorpusDialog => self
                .dialog()
                .add_filter(corpus_filter_name(), &pelt::corpus::file_extensions())
                .add_filter("All files", &["*"])
                .pick_files()
                .map(Command::AddCorpus),
            Command::ChooseEntitiesDialog => self
                .dialog()
                .add_filter("Entity list (.tsv, .txt)", &["tsv", "txt", "gz"])
                .pick_file()
                .map(Command::SetEntities),
            Command::ChooseTableOutDialog => self
                .dialog()
                .add_filter("PELT table", &["safetensors"])
                .set_file_name(format!("{}.safetensors", sanitize(&s.project.name)))
                .save_file()
                .map(Command::SetTableOut),
            Command::OpenTableDialog => self
                .dialog()
                .add_filter("PELT table", &["safetensors"])
                .pick_file()
                .map(Command::OpenTable),
            Command::Compare(session::CompareCommand::OpenDialog) => self
                .dialog()
                .set_title("Table B: a PELT table of the same entities to compare with")
                .add_filter("PELT table", &["safetensors"])
                .pick_file()
                .map(|p| Command::Compare(session::CompareCommand::SetTable(p))),
            Command::SaveTableDialog if s.table.is_some() => {
                let name = s
                    .table_path
                    .as_ref()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "table.safetensors".into());
                self.dialog()
                    .add_filter("PELT table", &["safetensors"])
                    .set_file_name(name)
                    .save_file()
                    .map(Command::SaveTable)
            }
            Command::ChooseEvalFile(what) => {
                let d = self.dialog();
                let mut p = s.project.clone();
                let picked = match what {
                    session::EvalFile::FewRel => d
                        .add_filter("FewRel-style .json", &["json", "gz"])
                        .pick_files()
                        .map(|fs| p.eval.fewrel.extend(fs)),
                    session::EvalFile::Labels => d
                        .add_filter("id<TAB>label (.tsv)", &["tsv", "txt"])
                        .pick_file()
                        .map(|f| p.eval.labels = Some(f)),
                    session::EvalFile::Probes => d
                        .add_filter("probes (.tsv)", &["tsv", "txt"])
                        .pick_file()
                        .map(|f| p.eval.probes = Some(f)),
                };
                picked.map(|()| Command::EditProject(Box::new(p)))
            }
            Command::ExportEvalDialog if s.project.eval_results.is_some() => self
                .dialog()
                .set_title("Export the evaluation (.json or .csv)")
                .add_filter("JSON", &["json"])
                .add_filter("CSV", &["csv"])
                .set_file_name("evaluation.json")
                .save_file()
                .map(Command::ExportEval),
            Command::Map(session::MapCommand::ColourFileDialog) => self
                .dialog()
                .set_title("Colour the map by labels (id<TAB>label lines)")
                .add_filter("id<TAB>label (.tsv)", &["tsv", "txt"])
                .add_filter("All files", &["*"])
                .pick_file()
                .map(|f| Command::Map(session::MapCommand::ColourBy(session::ColourBy::File(f)))),
            Command::Map(session::MapCommand::ExportSetDialog) if s.map.set.is_some() => self
                .dialog()
                .set_title("Export the set as an entity list")
                .add_filter("Entity list (.tsv)", &["tsv"])
                .set_file_name("entity-set.tsv")
                .save_file()
                .map(|f| Command::Map(session::MapCommand::ExportSet(f))),
            Command::ExportProjectorDialog if s.table.is_some() => self
                .dialog()
                .set_title("Folder for vectors.tsv and metadata.tsv")
                .pick_folder()
                .map(Command::ExportProjector),
            other => {
                let changed = self.session.apply(other);
                if self.session.errors.is_empty() {
                    self.windows.show_errors = false;
                }
                return changed;
            }
        };
        match next {
            Some(c) => self.apply(c),
            None => Changed::default(),
        }
    }

    fn dialog(&self) -> rfd::FileDialog {
        let dir = self
            .session
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
            self.session.project.name,
            if self.session.project_dirty { " *" } else { "" }
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
        eframe::set_value(storage, eframe::APP_KEY, &self.session.state);
    }
}

/// The name of the corpus filter of the file dialog: the formats the corpus reader knows.
fn corpus_filter_name() -> String {
    let labels: Vec<&str> = pelt::corpus::formats().map(|f| f.label).collect();
    format!("Corpus ({}, .gz)", labels.join(", "))
}
