//! The Neighbours tab: nearest entities by cosine and nearest vocabulary tokens.

use egui::{RichText, Ui};

use super::widgets::{self, hint};
use super::{Command, Purpose, Session};

pub fn tab(app: &Session, ui: &mut Ui, out: &mut Vec<Command>) {
    let Some(e) = app.selected else {
        widgets::empty_state(
            ui,
            "No entity selected",
            "Pick an entity in the list to see its nearest entities and tokens.",
        );
        return;
    };
    super::inspector::entity_header(app, ui, e);
    let Some(table) = app.table.clone() else {
        hint(
            ui,
            "Build the table first: neighbours compare entity vectors.",
        );
        return;
    };
    if table.counts[e] == 0 {
        ui.colored_label(
            widgets::WARN,
            "This entity was not found in the corpus, so it has no vector to compare.",
        );
        return;
    }
    let mut state = app.state.clone();
    ui.horizontal(|ui| {
        let l = ui.label("how many");
        ui.add(egui::DragValue::new(&mut state.neighbours_k).range(1..=200)).labelled_by(l.id);
        ui.checkbox(&mut state.center, "subtract mean").on_hover_text(
            "Subtract the mean direction of all entity vectors before the cosine. PELT vectors share a common component (the \"average context\"); removing it makes neighbours more specific.",
        );
        if app.pending(Purpose::Neighbours) {
            ui.spinner();
        } else if ui.button("Refresh").clicked() {
            out.push(Command::Rerun(Purpose::Neighbours));
        }
    });
    if state != app.state {
        out.push(Command::SetState(Box::new(state)));
    }
    let Some(n) = app.neighbours.clone().filter(|n| n.entity == e) else {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.weak("finding neighbours…");
        });
        return;
    };
    ui.separator();
    ui.columns(2, |cols| {
        let ui = &mut cols[0];
        ui.label(RichText::new("Nearest entities").strong().size(15.0));
        hint(ui, "Cosine between entity vectors. Click one to select it.");
        egui::ScrollArea::vertical().id_salt("nb_entities").auto_shrink([false, false]).show(ui, |ui| {
            egui::Grid::new("nb_entity_grid").num_columns(2).spacing([8.0, 4.0]).striped(true).show(ui, |ui| {
                for &(j, cos) in &n.entities {
                    widgets::bar(ui, cos.max(0.0), 70.0, widgets::cosine_color(cos), format!("{cos:.3}"));
                    let name = app.entity_name(j).to_string();
                    let r = ui.add(egui::Button::new(RichText::new(&name).size(14.0)).frame(false)).on_hover_text(format!(
                        "{} ({}), {} contexts — click to select",
                        name,
                        app.entity_id(j),
                        table.counts[j]
                    ));
                    if r.clicked() {
                        out.push(Command::Select(j));
                    }
                    ui.end_row();
                }
            });
        });
        let ui = &mut cols[1];
        ui.label(RichText::new("Nearest vocabulary tokens").strong().size(15.0));
        hint(
            ui,
            format!(
                "Tokens whose input embedding has the largest dot product with the entity vector (norm {}): how the model \"reads\" the plugged vector.",
                app.norm()
            ),
        );
        egui::ScrollArea::vertical().id_salt("nb_vocab").auto_shrink([false, false]).show(ui, |ui| {
            // Bars span the range of the scores shown (dot products can be negative).
            let max = n.vocab.iter().map(|v| v.1).fold(f32::MIN, f32::max);
            let min = n.vocab.iter().map(|v| v.1).fold(f32::MAX, f32::min);
            let span = (max - min).max(1e-6);
            egui::Grid::new("nb_vocab_grid").num_columns(2).spacing([8.0, 4.0]).striped(true).show(ui, |ui| {
                for (tok, score) in &n.vocab {
                    widgets::bar(ui, 0.15 + 0.85 * (score - min) / span, 70.0, widgets::A_COLOR, format!("{score:.2}"));
                    ui.label(RichText::new(tok).monospace().size(14.0));
                    ui.end_row();
                }
            });
        });
    });
}
