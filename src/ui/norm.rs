//! The Norm tab: the table's norm (modL), an A | B comparison of two norms on a probe
//! sentence, and the selected entity's MLM loss as a function of the norm.

use egui::{RichText, Ui};
use egui_plot::{Legend, Line, LineStyle, Plot, PlotPoints, Points, VLine};
use pelt::analysis::preview::{MaskComparison, PreviewResult};

use super::widgets::{self, hint, section, A_COLOR, B_COLOR};
use super::{Command, Purpose, Session, State};

/// The loss at norm `x`, linearly interpolated.
pub fn loss_at(curve: &[(f32, f64)], x: f32) -> Option<f64> {
    let i = curve.iter().position(|&(n, _)| n >= x)?;
    if i == 0 {
        return curve.first().map(|c| c.1);
    }
    let ((x0, y0), (x1, y1)) = (curve[i - 1], curve[i]);
    let t = ((x - x0) / (x1 - x0).max(1e-9)) as f64;
    Some(y0 + (y1 - y0) * t)
}

/// Smallest loss drawn on the log scale (the loss underflows to exactly 0 in f64).
const LOG_FLOOR: f64 = 1e-16;

fn fmt_axis(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() < 0.01 {
        format!("{v:.0e}")
    } else {
        format!("{v:.2}")
    }
}

fn fmt_loss(l: f64) -> String {
    if l < LOG_FLOOR {
        "< 1e-16".into()
    } else if l < 0.001 {
        format!("{l:.1e}")
    } else {
        format!("{l:.3}")
    }
}

pub fn tab(app: &Session, ui: &mut Ui, out: &mut Vec<Command>) {
    // Edits go to copies, handed back as commands after the frame.
    let mut project = app.project.clone();
    let mut state = app.state.clone();
    egui::ScrollArea::vertical().id_salt("norm_scroll").auto_shrink([false, false]).show(ui, |ui| {
        section(ui, "Norm of the table (modL)");
        ui.horizontal(|ui| {
            ui.add(egui::Slider::new(&mut project.options.norm, 0.5..=15.0).step_by(0.05).text("table norm"))
                .on_hover_text("Used by Save table, Export and the vocabulary neighbours. The paper uses 7.");
            if ui.button("7 (paper)").clicked() {
                project.options.norm = 7.0;
            }
        });
        hint(
            ui,
            "An entity vector is a sum of many transform outputs, so its raw length grows with the number of contexts. PELT rescales every vector to the same L2 norm. Too small and the model hardly notices the plugged position; too large and it drowns the sentence. Changing it needs no rebuild.",
        );
        ui.separator();

        section(ui, "A | B comparison");
        ui.horizontal(|ui| {
            ui.add(egui::Slider::new(&mut state.norm_a, 0.25..=15.0).step_by(0.25).text(RichText::new("norm A").color(A_COLOR)));
            ui.add_space(16.0);
            ui.add(egui::Slider::new(&mut state.norm_b, 0.25..=15.0).step_by(0.25).text(RichText::new("norm B").color(B_COLOR)));
        });
        ui.horizontal(|ui| {
            let l = ui.label("Probe sentence");
            ui
                .add(
                    egui::TextEdit::singleline(&mut state.probe)
                        .hint_text("a sentence with [MASK] and an entity name")
                        .desired_width((ui.available_width() - 90.0).max(200.0)),
                )
                .labelled_by(l.id);
            if app.pending(Purpose::NormCompare) {
                ui.spinner();
            } else if ui.button("Compare").clicked() {
                out.push(Command::Rerun(Purpose::NormCompare));
            }
        });
        if app.table.is_none() {
            hint(ui, "Build the table first: the comparison plugs entity vectors into the probe sentence.");
        } else if let Some(p) = app.norm_compare.clone() {
            comparison(app, ui, &p);
        }
        ui.separator();
        loss_plot(app, &mut state, ui);
    });
    if project != app.project {
        out.push(Command::EditProject(Box::new(project)));
    }
    if state != app.state {
        out.push(Command::SetState(Box::new(state)));
    }
}

/// The rewritten sentence and, for each mask, predictions without and with the vectors at A and B.
pub fn comparison(app: &Session, ui: &mut Ui, p: &PreviewResult) {
    let mask = app.mask_token().to_string();
    ui.horizontal_wrapped(|ui| {
        ui.weak("model input:");
        ui.label(widgets::highlighted_rewrite(ui, &p.rewritten, &mask));
    });
    if p.mentions.iter().all(|m| !m.plugged) {
        ui.colored_label(
            widgets::WARN,
            "No entity of the table is plugged in this sentence, so A and B cannot differ.",
        );
    }
    if p.masks.is_empty() {
        ui.colored_label(
            widgets::WARN,
            format!("Add {mask} to the sentence to see fill-mask predictions."),
        );
    }
    for (i, m) in p.masks.iter().enumerate() {
        if p.masks.len() > 1 {
            ui.label(RichText::new(format!("mask {}", i + 1)).strong());
        }
        mask_columns(ui, m, p.norm_a, p.norm_b);
    }
}

/// Three columns: without entity vectors, with them at norm A, at norm B.
pub fn mask_columns(ui: &mut Ui, m: &MaskComparison, a: f32, b: f32) {
    ui.columns(3, |cols| {
        cols[0].label(RichText::new("without entity vectors").strong());
        widgets::predictions(&mut cols[0], &m.without, egui::Color32::GRAY);
        cols[1].label(
            RichText::new(format!("with vectors, norm A = {a}"))
                .strong()
                .color(A_COLOR),
        );
        widgets::predictions(&mut cols[1], &m.with_a, A_COLOR);
        cols[2].label(
            RichText::new(format!("with vectors, norm B = {b}"))
                .strong()
                .color(B_COLOR),
        );
        widgets::predictions(&mut cols[2], &m.with_b, B_COLOR);
    });
}

fn loss_plot(app: &Session, state: &mut State, ui: &mut Ui) {
    let name = app.selected.map(|e| app.entity_name(e).to_string());
    section(
        ui,
        &format!(
            "MLM loss against the norm{}",
            name.as_ref().map(|n| format!(": {n}")).unwrap_or_default()
        ),
    );
    hint(
        ui,
        "Treat the entity as one extra word of the vocabulary whose output embedding is its vector scaled to the norm, and measure how well the model predicts it at the masks of its own contexts (mean cross-entropy). A minimum, when there is one, suggests a good modL for this entity; with small models the loss often just falls towards zero. Click the plot to move A, right-click to move B.",
    );
    let Some(e) = app.selected else {
        hint(ui, "Select an entity in the list to plot its loss.");
        return;
    };
    let curve = app
        .inspection
        .as_ref()
        .filter(|i| i.entity == e)
        .map(|i| i.loss_curve.clone());
    let Some(curve) = curve else {
        if app.table.as_ref().is_some_and(|t| t.counts[e] == 0) {
            ui.colored_label(
                widgets::WARN,
                "This entity was not found in the corpus: no vector, no loss.",
            );
        } else if app.table.is_some() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.weak("running the model over the entity's contexts…");
            });
        } else {
            hint(ui, "Build the table first.");
        }
        return;
    };
    let finite: Vec<(f32, f64)> = curve
        .iter()
        .copied()
        .filter(|(_, l)| l.is_finite())
        .collect();
    let log = state.loss_log;
    let y = |l: f64| if log { l.max(LOG_FLOOR).log10() } else { l };
    let pts: Vec<[f64; 2]> = finite.iter().map(|&(n, l)| [n as f64, y(l)]).collect();
    // Mark a minimum only when the curve rises again after it (an interior optimum).
    let best = finite
        .iter()
        .enumerate()
        .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
        .filter(|(i, (_, l))| finite[i + 1..].iter().any(|&(_, m)| m > l * 1.01 + 1e-12))
        .map(|(_, &(n, l))| (n, l));
    let (a, bn, tn) = (state.norm_a, state.norm_b, app.norm());
    ui.horizontal(|ui| {
        let at = |x: f32| {
            loss_at(&finite, x)
                .map(fmt_loss)
                .unwrap_or_else(|| "—".into())
        };
        ui.label(RichText::new(format!("loss at A = {a}: {}", at(a))).color(A_COLOR));
        ui.label(RichText::new(format!("at B = {bn}: {}", at(bn))).color(B_COLOR));
        ui.label(format!("at the table norm {tn}: {}", at(tn)));
        if let Some((n, l)) = best {
            ui.label(RichText::new(format!("lowest {} at {n}", fmt_loss(l))).color(widgets::GOOD));
        }
        ui.checkbox(&mut state.loss_log, "log scale").on_hover_text(
            "Plot the loss on a logarithmic axis (it falls by many orders of magnitude)",
        );
    });
    let (a, bn, tn) = (a as f64, bn as f64, tn as f64);
    let resp = Plot::new("loss_plot")
        .height(280.0)
        .x_axis_label("norm (modL)")
        .y_axis_label("mean MLM loss")
        .y_axis_formatter(move |mark, _| {
            if log {
                format!("1e{}", mark.value.round() as i64)
            } else {
                fmt_axis(mark.value)
            }
        })
        .y_grid_spacer(if log {
            egui_plot::uniform_grid_spacer(|_| [1.0, 5.0, 10.0])
        } else {
            egui_plot::log_grid_spacer(10)
        })
        .label_formatter(move |pos| {
            let p = match pos {
                egui_plot::HoverPosition::NearDataPoint { position, .. } => position,
                egui_plot::HoverPosition::Elsewhere { position } => position,
            };
            let l = if log { 10f64.powf(p.y) } else { p.y };
            Some(format!("norm {:.2}\nloss {}", p.x, fmt_loss(l)))
        })
        .legend(Legend::default().follow_insertion_order(true))
        .allow_scroll(false)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_boxed_zoom(false)
        .show(ui, |plot| {
            plot.line(Line::new("loss", PlotPoints::new(pts.clone())).width(2.0));
            if let Some((n, l)) = best {
                plot.points(
                    Points::new("lowest loss", vec![[n as f64, y(l)]])
                        .radius(5.0)
                        .color(widgets::GOOD),
                );
            }
            plot.vline(VLine::new(format!("A = {a}"), a).color(A_COLOR).width(2.0));
            plot.vline(
                VLine::new(format!("B = {bn}"), bn)
                    .color(B_COLOR)
                    .width(2.0),
            );
            plot.vline(
                VLine::new(format!("table norm = {tn}"), tn)
                    .color(egui::Color32::GRAY)
                    .style(LineStyle::dashed_dense()),
            );
            plot.pointer_coordinate()
        });
    resp.response.widget_info(|| {
        egui::WidgetInfo::labeled(egui::Role::Image, true, "MLM loss against the norm")
    });
    if let Some(pos) = resp.inner {
        let x = ((pos.x * 4.0).round() / 4.0).clamp(0.25, 15.0) as f32;
        if resp.response.clicked() {
            state.norm_a = x;
        }
        if resp.response.secondary_clicked() {
            state.norm_b = x;
        }
    }
}
