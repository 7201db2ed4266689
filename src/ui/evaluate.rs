//! The Evaluate tab: does the table carry knowledge, and which norm serves it best? Entity
//! typing (k-NN on the table's vectors against the name's word pieces and the majority label)
//! and cloze probes (P@1 without the table and with it at each norm), run on the worker.

use egui::{RichText, Ui};
use egui_plot::{Legend, Line, LineStyle, Plot, PlotPoints, Points, VLine};

use pelt::corpus::Format;
use pelt::eval::{EvalResults, MethodScore};

use super::session::{Command, EvalFile, Session};
use super::widgets::{self, file_name, hint, section, A_COLOR, B_COLOR};

pub fn tab(app: &Session, ui: &mut Ui, out: &mut Vec<Command>) {
    egui::ScrollArea::vertical().show(ui, |ui| {
        hint(
            ui,
            "Entity typing: each labelled entity gets the majority label of its k nearest labelled entities (cosine, leave-one-out), with the table's vectors and, for comparison, with the mean word-piece embedding of its name — what the model knows without the table. Cloze: a one-piece mention is masked and the other entity plugged in as `X ( X )`; P@1 is how often the gold word is the top prediction.",
        );
        sources(app, ui, out);
        ui.separator();
        match &app.project.eval_results {
            None => hint(ui, "No results yet: choose the sources above and press Run evaluation."),
            Some(r) => results(app, r, ui, out),
        }
    });
}

fn sources(app: &Session, ui: &mut Ui, out: &mut Vec<Command>) {
    section(ui, "Sources");
    let mut settings = app.project.eval.clone();
    let fewrel_corpus: Vec<_> = app
        .project
        .corpus
        .iter()
        .filter(|p| Format::of(p) == Some(Format::FewRel))
        .cloned()
        .collect();
    egui::Grid::new("eval_sources").num_columns(2).spacing([12.0, 6.0]).show(ui, |ui| {
        ui.label("FewRel files").on_hover_text(
            "FewRel-style files (relation → examples): labels are the relation slot each entity fills most often; probes mask the tail (or head) where it is one word piece",
        );
        ui.horizontal_wrapped(|ui| {
            if settings.fewrel.is_empty() {
                ui.weak("none");
            }
            for (i, f) in settings.fewrel.clone().iter().enumerate() {
                ui.label(file_name(f)).on_hover_text(f.display().to_string());
                if ui.small_button("×").on_hover_text("remove this file").clicked() {
                    settings.fewrel.remove(i);
                }
            }
            if ui.small_button("Add…").on_hover_text("add FewRel-style files").clicked() {
                out.push(Command::ChooseEvalFile(EvalFile::FewRel));
            }
            if !fewrel_corpus.is_empty()
                && settings.fewrel != fewrel_corpus
                && ui
                    .small_button("Use the corpus's")
                    .on_hover_text("the project's FewRel corpus files")
                    .clicked()
            {
                settings.fewrel = fewrel_corpus.clone();
            }
        });
        ui.end_row();
        for (what, slot, hover) in [
            (EvalFile::Labels, &mut settings.labels, "id<TAB>label lines; overrides the FewRel labels"),
            (EvalFile::Probes, &mut settings.probes, "sentence with [MASK]<TAB>gold word<TAB>entity id lines (LAMA-style); overrides the FewRel probes"),
        ] {
            ui.label(what.label()).on_hover_text(hover);
            ui.horizontal(|ui| {
                match slot {
                    Some(p) => ui.label(file_name(p)).on_hover_text(p.display().to_string()),
                    None => ui.weak("from the FewRel files"),
                };
                if ui.small_button("Choose…").on_hover_text(format!("choose the {} file", what.label())).clicked() {
                    out.push(Command::ChooseEvalFile(what));
                }
                if slot.is_some() && ui.small_button("×").on_hover_text("clear").clicked() {
                    *slot = None;
                }
            });
            ui.end_row();
        }
        let id = ui.label("k (neighbours)").on_hover_text("Neighbours that vote in the typing").id;
        ui.add(egui::DragValue::new(&mut settings.k).range(1..=50)).labelled_by(id);
        ui.end_row();
        let id = ui.label("min. mentions").on_hover_text("FewRel labels: keep entities with at least this many linked mentions").id;
        ui.add(egui::DragValue::new(&mut settings.min_mentions).range(1..=100)).labelled_by(id);
        ui.end_row();
    });
    if settings != app.project.eval {
        let mut p = app.project.clone();
        p.eval = settings;
        out.push(Command::EditProject(Box::new(p)));
    }
    ui.horizontal(|ui| {
        let running = app.evaluating();
        let can = app.table.is_some() && app.model.is_some() && !running;
        if ui
            .add_enabled(
                can,
                egui::Button::new(RichText::new("Run evaluation").strong()),
            )
            .on_hover_text("Run typing and cloze on the worker (at the current norm)")
            .on_disabled_hover_text(if running {
                "running…"
            } else {
                "build or open a table first"
            })
            .clicked()
        {
            out.push(Command::RunEval);
        }
        if ui
            .add_enabled(running, egui::Button::new("Cancel"))
            .on_hover_text("Stop the evaluation")
            .clicked()
        {
            out.push(Command::CancelEval);
        }
        if running {
            match &app.eval_progress {
                Some(p) => {
                    ui.add(
                        egui::ProgressBar::new(p.fraction().unwrap_or(0.0))
                            .desired_width(200.0)
                            .text(p.describe()),
                    );
                }
                None => {
                    ui.spinner();
                    ui.label("typing, then the probes…");
                }
            }
        }
        if app.project.eval_results.is_some()
            && ui
                .button("Export…")
                .on_hover_text("Write the results as JSON or CSV")
                .clicked()
        {
            out.push(Command::ExportEvalDialog);
        }
    });
}

fn results(app: &Session, r: &EvalResults, ui: &mut Ui, out: &mut Vec<Command>) {
    for n in &r.notes {
        ui.colored_label(widgets::WARN, n);
    }
    if let Some(t) = &r.typing {
        section(ui, "Entity typing");
        hint(
            ui,
            format!(
                "{}-NN, {} labelled entities of the table ({} found in the corpus), {} labels{}.",
                t.k,
                t.entities,
                t.found,
                t.labels,
                if t.unknown_ids > 0 {
                    format!("; {} labelled ids are not in the table", t.unknown_ids)
                } else {
                    String::new()
                }
            ),
        );
        egui::Grid::new("typing")
            .num_columns(3)
            .spacing([12.0, 4.0])
            .show(ui, |ui| {
                ui.label(RichText::new("method").strong());
                ui.label(RichText::new("all entities").strong());
                ui.label(RichText::new("found only").strong());
                ui.end_row();
                for (a, f) in t.all.iter().zip(&t.found_only) {
                    let color = match a.method.as_str() {
                        "table" => widgets::GOOD,
                        "name" => A_COLOR,
                        _ => egui::Color32::GRAY,
                    };
                    ui.label(&a.method);
                    score_bar(ui, a, color);
                    score_bar(ui, f, color);
                    ui.end_row();
                }
            });
    }
    if let Some(c) = &r.cloze {
        section(ui, "Cloze probes");
        let best = r.best_norm();
        let at_table = c
            .with
            .iter()
            .find(|(n, _)| *n == r.table_norm)
            .map(|x| &x.1);
        ui.horizontal_wrapped(|ui| {
            ui.label(format!(
                "{} probes · P@1 without the table {:.3}",
                c.probes.made, c.without.p_at_1
            ));
            if let Some(s) = at_table {
                ui.label(format!(
                    "· with it at norm {} {:.3}",
                    r.table_norm, s.p_at_1
                ));
            }
            if let Some(b) = best {
                let bs = c
                    .with
                    .iter()
                    .find(|(n, _)| *n == b)
                    .map(|x| x.1.clone())
                    .unwrap_or_default();
                ui.label(
                    RichText::new(format!(
                        "· best at norm {b}: P@1 {:.3}, MRR {:.3}",
                        bs.p_at_1, bs.mrr
                    ))
                    .color(widgets::GOOD),
                )
                .on_hover_text("The norm with the highest P@1; ties go to the higher MRR");
                if b != app.norm()
                    && ui
                        .button(format!("Set the table norm to {b}"))
                        .on_hover_text(
                            "Use the norm with the best P@1 for the table (no rebuild needed)",
                        )
                        .clicked()
                {
                    let mut p = app.project.clone();
                    p.options.norm = b;
                    out.push(Command::EditProject(Box::new(p)));
                }
            }
        });
        if c.probes.no_one_piece_gold + c.probes.entity_not_in_table + c.probes.mention_not_found
            > 0
        {
            hint(
                ui,
                format!(
                    "Left out: {} without a one-piece gold word, {} whose entity has no vector, {} without a mention of the entity.",
                    c.probes.no_one_piece_gold, c.probes.entity_not_in_table, c.probes.mention_not_found
                ),
            );
        }
        if c.with.iter().all(|(_, s)| s.p_at_1 == 0.0) && c.without.p_at_1 == 0.0 {
            hint(ui, "P@1 is 0 at every norm: the gold word is never this model's top prediction here (the bundled SPLADE model is trained for retrieval, and its fill-mask guesses are weak). MRR still shows whether plugging the entity moves the gold word up.");
        }
        let pts: Vec<[f64; 2]> = c.with.iter().map(|(n, s)| [*n as f64, s.p_at_1]).collect();
        let mrr: Vec<[f64; 2]> = c.with.iter().map(|(n, s)| [*n as f64, s.mrr]).collect();
        let without = c.without.p_at_1;
        let without_mrr = c.without.mrr;
        let (a, b, tn) = (
            app.state.norm_a as f64,
            app.state.norm_b as f64,
            app.norm() as f64,
        );
        let xmax = pts.iter().map(|p| p[0]).fold(1.0, f64::max);
        let resp = Plot::new("cloze_plot")
            .height(240.0)
            .x_axis_label("norm (modL)")
            .y_axis_label("P@1 · MRR")
            .legend(Legend::default().follow_insertion_order(true))
            .allow_scroll(false)
            .allow_drag(false)
            .allow_zoom(false)
            .allow_boxed_zoom(false)
            .show(ui, |plot| {
                plot.line(
                    Line::new("P@1 with the table", PlotPoints::new(pts.clone()))
                        .width(2.0)
                        .color(widgets::GOOD),
                );
                plot.points(
                    Points::new("P@1 at each norm", pts.clone())
                        .radius(3.0)
                        .color(widgets::GOOD),
                );
                plot.line(
                    Line::new(
                        "P@1 without the table",
                        PlotPoints::new(vec![[0.0, without], [xmax, without]]),
                    )
                    .color(widgets::GOOD)
                    .style(LineStyle::dashed_dense()),
                );
                plot.line(
                    Line::new("MRR with the table", PlotPoints::new(mrr.clone()))
                        .width(2.0)
                        .color(widgets::MASK_BG),
                );
                plot.line(
                    Line::new(
                        "MRR without the table",
                        PlotPoints::new(vec![[0.0, without_mrr], [xmax, without_mrr]]),
                    )
                    .color(widgets::MASK_BG)
                    .style(LineStyle::dashed_dense()),
                );
                plot.vline(VLine::new(format!("A = {a}"), a).color(A_COLOR));
                plot.vline(VLine::new(format!("B = {b}"), b).color(B_COLOR));
                plot.vline(
                    VLine::new(format!("table norm = {tn}"), tn)
                        .color(egui::Color32::LIGHT_GRAY)
                        .style(LineStyle::dashed_dense()),
                );
            });
        resp.response.widget_info(|| {
            egui::WidgetInfo::labeled(egui::Role::Image, true, "P@1 against the norm")
        });
        if c.per_relation.len() > 1 {
            let i = c
                .with
                .iter()
                .position(|(n, _)| Some(*n) == best)
                .unwrap_or(0);
            egui::CollapsingHeader::new(format!(
                "Per relation (P@1 without / with at norm {})",
                c.with.get(i).map(|x| x.0).unwrap_or(0.0)
            ))
            .show(ui, |ui| {
                egui::Grid::new("per_relation")
                    .striped(true)
                    .show(ui, |ui| {
                        for (rel, (w, ws)) in &c.per_relation {
                            ui.label(rel);
                            ui.label(format!("{} probes", w.probes));
                            ui.label(format!(
                                "{:.3} / {:.3}",
                                w.p_at_1,
                                ws.get(i).map(|s| s.p_at_1).unwrap_or(0.0)
                            ));
                            ui.end_row();
                        }
                    });
            });
        }
    }
}

fn score_bar(ui: &mut Ui, m: &MethodScore, color: egui::Color32) {
    widgets::bar(
        ui,
        m.accuracy as f32,
        140.0,
        color,
        format!("{:.3} ({}/{})", m.accuracy, m.correct, m.total),
    )
    .on_hover_text(format!("{}: accuracy {:.3}", m.method, m.accuracy));
}
