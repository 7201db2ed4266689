//! The menu bar, the status bar (activity, build progress, errors) and the small windows.

use egui::{Align, Layout, RichText, Ui};

use super::widgets::{self, file_name};
use super::{Command, Session};

/// Which of the small windows are open.
#[derive(Default)]
pub struct Windows {
    pub show_errors: bool,
    pub show_about: bool,
}

pub fn menu_bar(app: &Session, win: &mut Windows, ui: &mut Ui, out: &mut Vec<Command>) {
    egui::MenuBar::new().ui(ui, |ui| {
        ui.menu_button("Project", |ui| {
            if ui.button("New project").clicked() {
                out.push(Command::NewProject);
            }
            if ui.button("Open project…").clicked() {
                out.push(Command::OpenProjectDialog);
            }
            if ui
                .button("Open demo project")
                .on_hover_text("2,325 PubMed sentences, 312 entities, bundled tiny BERT")
                .clicked()
            {
                out.push(Command::OpenProject(pelt::project::bundled_demo()));
            }
            if ui.button("Save project").clicked() {
                out.push(Command::SaveProject);
            }
            if ui.button("Save project as…").clicked() {
                out.push(Command::SaveProjectAs);
            }
            let recent = app.state.recent.clone();
            ui.add_enabled_ui(!recent.is_empty(), |ui| {
                ui.menu_button("Recent", |ui| {
                    for p in recent {
                        if ui
                            .button(file_name(&p))
                            .on_hover_text(p.display().to_string())
                            .clicked()
                        {
                            out.push(Command::OpenProject(p));
                        }
                    }
                });
            });
            ui.separator();
            if ui.button("Quit").clicked() {
                ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
            }
        });
        ui.menu_button("Table", |ui| {
            if ui.button("Open table…").clicked() {
                out.push(Command::OpenTableDialog);
            }
            let has = app.table.is_some();
            if ui
                .add_enabled(
                    has,
                    egui::Button::new(format!("Save table… (norm {})", app.norm())),
                )
                .on_hover_text(
                    "Writes a .safetensors table whose embeddings are scaled to the current norm",
                )
                .clicked()
            {
                out.push(Command::SaveTableDialog);
            }
            if ui
                .add_enabled(has, egui::Button::new("Export Projector TSV…"))
                .on_hover_text("vectors.tsv + metadata.tsv for projector.tensorflow.org")
                .clicked()
            {
                out.push(Command::ExportProjectorDialog);
            }
        });
        ui.menu_button("Help", |ui| {
            if ui.button("How PELT works").clicked() {
                win.show_about = true;
            }
            if ui
                .button(format!("Errors ({})", app.errors.len()))
                .clicked()
            {
                win.show_errors = true;
            }
        });
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            ui.label(
                RichText::new(format!(
                    "{}{}",
                    app.project.name,
                    if app.project_dirty { " *" } else { "" }
                ))
                .strong(),
            );
            ui.weak("project:");
        });
    });
}

pub fn status_bar(app: &Session, win: &mut Windows, ui: &mut Ui, out: &mut Vec<Command>) {
    ui.add_space(2.0);
    ui.horizontal(|ui| {
        if app.building() {
            widgets::working_dot(ui);
            match &app.build.progress {
                Some(p) => {
                    let bar = match p.fraction() {
                        Some(f) => egui::ProgressBar::new(f).show_percentage(),
                        None => egui::ProgressBar::new(0.0),
                    };
                    ui.add(bar.desired_width(220.0));
                    ui.label(p.describe());
                }
                None => {
                    ui.label("Build starting…");
                }
            }
        } else if app.is_busy() {
            ui.spinner();
            ui.label(if app.model_loading() {
                "loading the model…"
            } else {
                "working…"
            });
        }
        // The newest error, dismissible; otherwise the last status message.
        if let Some(i) = app.errors.len().checked_sub(1) {
            let e = &app.errors[i];
            let count = if e.count > 1 {
                format!(" (×{})", e.count)
            } else {
                String::new()
            };
            let first_line = e.message.lines().next().unwrap_or("").to_string();
            ui.colored_label(
                widgets::BAD,
                format!("{} failed: {first_line}{count}", e.job),
            )
            .on_hover_text(e.message.clone());
            if ui
                .small_button("Dismiss")
                .on_hover_text("Remove this error")
                .clicked()
            {
                out.push(Command::DismissError(i));
            }
        } else if let Some(s) = &app.status {
            if !app.building() {
                ui.label(s);
            }
        }
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            let n = app.errors.len();
            if n > 0
                && ui
                    .button(
                        RichText::new(format!("{n} error{}", if n == 1 { "" } else { "s" }))
                            .color(widgets::BAD),
                    )
                    .clicked()
            {
                win.show_errors = true;
            }
            if let Some(m) = &app.model {
                ui.weak(format!("model {} · {}", m.name, m.device));
            }
        });
    });
}

pub fn error_window(app: &Session, win: &mut Windows, ctx: &egui::Context, out: &mut Vec<Command>) {
    if !win.show_errors {
        return;
    }
    let mut open = true;
    egui::Window::new("Errors")
        .open(&mut open)
        .default_size([560.0, 300.0])
        .pivot(egui::Align2::CENTER_CENTER)
        .default_pos(ctx.content_rect().center())
        .show(ctx, |ui| {
            if app.errors.is_empty() {
                ui.label("No errors.");
            }
            egui::ScrollArea::vertical()
                .max_height(400.0)
                .show(ui, |ui| {
                    for (i, e) in app.errors.iter().enumerate().rev() {
                        ui.horizontal(|ui| {
                            ui.label(RichText::new(&e.job).strong().color(widgets::BAD));
                            ui.weak(format!(
                                "{} s ago{}",
                                e.at.elapsed().as_secs(),
                                if e.count > 1 {
                                    format!(", ×{}", e.count)
                                } else {
                                    String::new()
                                }
                            ));
                            ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                                if ui
                                    .small_button("Dismiss")
                                    .on_hover_text(format!("Remove error {}", i + 1))
                                    .clicked()
                                {
                                    out.push(Command::DismissError(i));
                                }
                            });
                        });
                        ui.add(egui::Label::new(&e.message).wrap().selectable(true));
                        ui.separator();
                    }
                });
            if !app.errors.is_empty() && ui.button("Clear all").clicked() {
                out.push(Command::ClearErrors);
            }
        });
    if !open {
        win.show_errors = false;
    }
}

/// The write waiting for the user's consent, if any: a file this tool did not write, or a
/// folder outside the project's.
pub fn question_window(app: &Session, ctx: &egui::Context, out: &mut Vec<Command>) {
    let Some(q) = &app.question else {
        return;
    };
    egui::Window::new("Replace a file?")
        .collapsible(false)
        .resizable(false)
        .pivot(egui::Align2::CENTER_CENTER)
        .default_pos(ctx.content_rect().center())
        .show(ctx, |ui| {
            ui.set_max_width(520.0);
            ui.add(egui::Label::new(RichText::new(&q.text).color(widgets::WARN)).wrap());
            ui.weak("A project from someone else can name any path: check it before you agree.");
            ui.horizontal(|ui| {
                if ui
                    .button("Write it")
                    .on_hover_text("Agree: write there (the file is replaced)")
                    .clicked()
                {
                    out.push(Command::Answer(true));
                }
                if ui
                    .button("Don't write")
                    .on_hover_text("Leave the file as it is")
                    .clicked()
                {
                    out.push(Command::Answer(false));
                }
            });
        });
}

pub fn about_window(win: &mut Windows, ctx: &egui::Context) {
    if !win.show_about {
        return;
    }
    let mut open = true;
    egui::Window::new("How PELT works")
        .open(&mut open)
        .default_width(520.0)
        .pivot(egui::Align2::CENTER_CENTER)
        .default_pos(ctx.content_rect().center())
        .show(ctx, |ui| {
        super::project::how_pelt_works(ui);
        ui.separator();
        ui.label(
            "In this workbench: choose a corpus and an entity list (left), Build, then pick an entity: the Inspector shows the masked sentences its vector comes from, Neighbours the closest entities and tokens, Norm the effect of modL, Preview what plugging the vector into your own sentence changes, the Map all entities at once, and Compare how another corpus or model moves their neighbours.",
        );
        ui.separator();
        ui.label(format!("PELT Workbench {}", env!("CARGO_PKG_VERSION")));
    });
    if !open {
        win.show_about = false;
    }
}

pub fn drop_overlay(ctx: &egui::Context) {
    let screen = ctx.content_rect();
    let painter = ctx.layer_painter(egui::LayerId::new(
        egui::Order::Foreground,
        egui::Id::unique("drop_overlay"),
    ));
    painter.rect_filled(screen, 0.0, egui::Color32::from_black_alpha(170));
    painter.text(
        screen.center(),
        egui::Align2::CENTER_CENTER,
        "Drop to use: corpus (.txt .jsonl .json .gz) · entity list (.tsv) · model folder · project (.ron) · table (.safetensors)",
        egui::FontId::proportional(18.0),
        egui::Color32::WHITE,
    );
}
