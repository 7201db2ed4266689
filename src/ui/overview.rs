//! The Overview tab: what the table is, how the last build went, and what to do next.

use egui::{RichText, Ui};
use pelt::progress::format_secs;

use super::widgets::{self, file_name, hint, section};
use super::{Command, Session, Tab};

pub fn tab(app: &Session, ui: &mut Ui, out: &mut Vec<Command>) {
    egui::ScrollArea::vertical()
        .id_salt("overview_scroll")
        .auto_shrink([false, false])
        .show(ui, |ui| match app.table.clone() {
            None => welcome(app, ui, out),
            Some(t) => {
                section(ui, "Table");
                egui::Grid::new("table_info")
                    .num_columns(2)
                    .spacing([16.0, 4.0])
                    .striped(true)
                    .show(ui, |ui| {
                        let nf = t.counts.iter().filter(|&&c| c == 0).count();
                        let mut row = |k: &str, v: String| {
                            ui.label(RichText::new(k).strong());
                            ui.label(v);
                            ui.end_row();
                        };
                        row(
                            "file",
                            app.table_path
                                .as_ref()
                                .map(|p| p.display().to_string())
                                .unwrap_or_else(|| "not saved".into()),
                        );
                        row(
                            "entities",
                            format!("{} ({} found, {} not found)", t.len(), t.len() - nf, nf),
                        );
                        row(
                            "contexts",
                            format!(
                                "{} (at most K = {} per entity)",
                                t.context_count(),
                                t.meta.k
                            ),
                        );
                        row(
                            "model",
                            format!("{} (hidden size {})", t.meta.model, t.hidden()),
                        );
                        row("corpus", t.meta.corpus.clone());
                        row(
                            "seed · max_len",
                            format!("{} · {} tokens", t.meta.seed, t.meta.max_len),
                        );
                        row("case-sensitive", t.meta.case_sensitive.to_string());
                        row("shard", t.meta.shard.clone());
                        row(
                            "norm (modL)",
                            format!("{} stored · {} for export (Norm tab)", t.norm, app.norm()),
                        );
                    });
                if let Some(why) = app.stale_reason() {
                    ui.colored_label(widgets::WARN, format!("{why}."));
                }
                report(app, ui);
                ui.add_space(8.0);
                section(ui, "What next");
                next_steps(app, ui, out);
            }
        });
}

fn welcome(app: &Session, ui: &mut Ui, out: &mut Vec<Command>) {
    ui.add_space(12.0);
    ui.label(RichText::new("No table yet").size(20.0).strong());
    ui.add_space(4.0);
    let n = app.entity_count();
    let corpus: Vec<String> = app.project.corpus.iter().map(|p| file_name(p)).collect();
    ui.label(format!(
        "This project has {n} entities and {} corpus file(s){}. A table holds one vector per entity, computed by the model from the sentences that mention it.",
        corpus.len(),
        if corpus.is_empty() { String::new() } else { format!(" ({})", corpus.join(", ")) }
    ));
    ui.add_space(10.0);
    if app.building() {
        ui.horizontal(|ui| {
            widgets::working_dot(ui);
            ui.label(
                app.build
                    .progress
                    .as_ref()
                    .map(|p| p.describe())
                    .unwrap_or_else(|| "starting the build…".into()),
            );
        });
    } else {
        let b = egui::Button::new(RichText::new("Build table now").size(17.0).strong())
            .min_size(egui::vec2(180.0, 36.0))
            .fill(egui::Color32::from_rgb(40, 110, 200));
        if ui
            .add(b)
            .on_hover_text("Same as Build in the project panel")
            .clicked()
        {
            out.push(Command::Build { resume: false });
        }
        ui.add_space(4.0);
        if ui.link("…or open a table that was built before").clicked() {
            out.push(Command::OpenTableDialog);
        }
    }
    ui.add_space(14.0);
    section(ui, "How PELT works");
    super::project::how_pelt_works(ui);
    report(app, ui);
}

fn report(app: &Session, ui: &mut Ui) {
    let Some(r) = &app.build.report else { return };
    ui.add_space(8.0);
    section(ui, "Last build");
    egui::Grid::new("build_report")
        .num_columns(2)
        .spacing([16.0, 4.0])
        .striped(true)
        .show(ui, |ui| {
            let mut row = |k: &str, v: String| {
                ui.label(RichText::new(k).strong());
                ui.label(v);
                ui.end_row();
            };
            row("sentences read", r.sentences.to_string());
            row(
                "mentions",
                format!("{} ({})", r.mentions.as_str(), r.mentions_why),
            );
            if r.mentions.uses_links() {
                let mut v = format!(
                    "{} read, {} contexts from links",
                    r.read.links, r.linked_contexts
                );
                if r.unknown_links > 0 {
                    v += &format!(
                        "; {} to ids not on the entity list (ignored)",
                        r.unknown_links
                    );
                }
                row("links", v);
            }
            row("contexts encoded", r.contexts.to_string());
            row(
                "speed",
                format!(
                    "{:.0} contexts/s ({} encoding)",
                    r.contexts_per_sec,
                    format_secs(r.encode_secs)
                ),
            );
            row("wall time", format_secs(app.build.elapsed_secs));
            if r.resumed_from > 0 {
                row("resumed from", format!("context {}", r.resumed_from));
            }
            if let Some(p) = &app.build.saved_to {
                row("saved to", p.display().to_string());
            }
            row("not found", r.not_found.len().to_string());
        });
    if !r.not_found.is_empty() {
        let names: Vec<String> = r
            .not_found
            .iter()
            .take(30)
            .map(|id| match app.table.as_ref().and_then(|t| t.index_of(id)) {
                Some(i) => format!("{} ({id})", app.entity_name(i)),
                None => id.clone(),
            })
            .collect();
        hint(
            ui,
            format!(
                "Not found (no vector; they are skipped when plugging): {}{}",
                names.join(", "),
                if r.not_found.len() > 30 { ", …" } else { "" }
            ),
        );
    }
    if r.read.skipped_lines + r.read.skipped_links > 0 {
        ui.colored_label(
            widgets::WARN,
            format!(
                "{} corpus lines and {} links were skipped:",
                r.read.skipped_lines, r.read.skipped_links
            ),
        );
        for w in &r.read.summary_lines() {
            ui.label(RichText::new(w).monospace().size(12.0));
        }
    }
    if r.skipped_contexts > 0 {
        ui.colored_label(
            widgets::WARN,
            format!(
                "{} sampled mentions were skipped (no token covered their span)",
                r.skipped_contexts
            ),
        );
    }
    if !r.collisions.is_empty() {
        ui.colored_label(
            widgets::WARN,
            format!(
                "{} names are shared by several entities:",
                r.collisions.len()
            ),
        );
        for c in r.collisions.iter().take(10) {
            ui.label(RichText::new(c).size(12.0));
        }
    }
}

fn next_steps(app: &Session, ui: &mut Ui, out: &mut Vec<Command>) {
    let steps: [(Tab, &str); 6] = [
        (
            Tab::Inspector,
            "see the sentences behind an entity's vector and which ones disagree with it",
        ),
        (
            Tab::Neighbours,
            "find the entities and vocabulary tokens closest to it",
        ),
        (
            Tab::Norm,
            "compare two norms (modL) and plot the MLM loss against the norm",
        ),
        (
            Tab::Preview,
            "plug entity vectors into your own sentence and compare fill-mask predictions",
        ),
        (
            Tab::Map,
            "see all entities on a t-SNE or UMAP map coloured by type; box a group into a set",
        ),
        (
            Tab::Compare,
            "open a table from another corpus or model and see whose nearest neighbours changed",
        ),
    ];
    if app.selected.is_none() {
        hint(
            ui,
            "Select an entity in the list first (e.g. search for p53).",
        );
    }
    for (tab, text) in steps {
        ui.horizontal(|ui| {
            if ui.link(tab.label()).clicked() {
                out.push(Command::SetTab(tab));
            }
            ui.label(format!("— {text}"));
        });
    }
    ui.add_space(6.0);
    hint(ui, "Save the table with Table > Save table… (at the norm of the Norm tab) or export it for projector.tensorflow.org.");
}
