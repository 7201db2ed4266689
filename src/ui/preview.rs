//! The Preview tab: a sentence of your own, rewritten PELT-style with entity vectors plugged
//! in after each mention, its tokens, and fill-mask predictions without and with the vectors.

use egui::{RichText, Ui};

use super::widgets::{self, hint, section, A_COLOR, B_COLOR};
use super::{Command, Purpose, Session};

pub fn tab(app: &Session, ui: &mut Ui, out: &mut Vec<Command>) {
    // Edits go to a copy, handed back as a command after the frame (a changed sentence
    // switches its mentions back on).
    let mut state = app.state.clone();
    egui::ScrollArea::vertical().id_salt("preview_scroll").auto_shrink([false, false]).show(ui, |ui| {
        ui.set_max_width(ui.available_width());
        hint(
            ui,
            format!(
                "Write a sentence that mentions entities of the table and contains {}. Each mention X is rewritten to \"X ( [[X]] )\": the bracketed copy is a single input position whose embedding is X's vector. Predictions update as you type.",
                app.mask_token()
            ),
        );
        let l = ui.label(RichText::new("Sentence").strong());
        ui
            .add(
                egui::TextEdit::multiline(&mut state.preview_text)
                    .hint_text("e.g. treatment with p53 induced [MASK] in the cells .")
                    .desired_rows(2)
                    .desired_width(f32::INFINITY)
                    .font(egui::FontId::proportional(15.0)),
            )
            .labelled_by(l.id);
        ui.horizontal(|ui| {
            ui.add(egui::Slider::new(&mut state.norm_a, 0.25..=15.0).step_by(0.25).text(RichText::new("norm A").color(A_COLOR)));
            ui.add(egui::Slider::new(&mut state.norm_b, 0.25..=15.0).step_by(0.25).text(RichText::new("norm B").color(B_COLOR)));
            if app.pending(Purpose::Preview) {
                ui.spinner();
            } else if ui.button("Run").on_hover_text("Run the preview again").clicked() {
                out.push(Command::Rerun(Purpose::Preview));
            }
            if ui.button("Use probe").on_hover_text("Copy the probe sentence of the Norm tab").clicked() {
                state.preview_text = app.state.probe.clone();
            }
        });
        if app.table.is_none() {
            hint(ui, "Build the table first: the preview plugs entity vectors from it.");
            return;
        }
        let Some(p) = app.preview.clone() else {
            if app.pending(Purpose::Preview) {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.weak("running the model…");
                });
            }
            return;
        };
        ui.separator();
        section(ui, "Mentions");
        if p.mentions.is_empty() {
            hint(ui, "No entity of the table is mentioned in this sentence (entities not found in the corpus are ignored).");
        }
        ui.horizontal_wrapped(|ui| {
            for m in &p.mentions {
                let (start, end, entity, plugged) = (m.start, m.end, m.entity, m.plugged);
                let surface = p.text.get(start..end).unwrap_or("?");
                let mut on = plugged;
                let label = format!("{surface}  (entity {})", app.entity_name(entity));
                if ui
                    .checkbox(&mut on, label)
                    .on_hover_text(format!(
                        "Plug the vector of {} ({}) after this mention; untick to leave the mention as plain text",
                        app.entity_name(entity),
                        app.entity_id(entity)
                    ))
                    .changed()
                {
                    out.push(Command::TogglePreviewMention(start, end));
                }
            }
        });
        section(ui, "Model input");
        ui.label(widgets::highlighted_rewrite(ui, &p.rewritten, app.mask_token()));
        ui.add_space(4.0);
        ui.horizontal_wrapped(|ui| {
            ui.spacing_mut().item_spacing = egui::vec2(3.0, 3.0);
            for (pos, t) in p.tokens.iter().enumerate() {
                let (id, tok, ent) = (t.id, &t.text, t.entity);
                let is_mask = tok == app.mask_token();
                let (bg, fg) = match (ent, is_mask) {
                    (Some(_), _) => (widgets::ENTITY_BG, egui::Color32::BLACK),
                    (None, true) => (widgets::MASK_BG, egui::Color32::BLACK),
                    _ => (ui.visuals().faint_bg_color, ui.visuals().text_color()),
                };
                let hover = match ent {
                    Some(e) => format!(
                        "position {pos}: carries the vector of {} ({}) instead of a word embedding (the id is the mask token's, a placeholder)",
                        app.entity_name(e),
                        app.entity_id(e)
                    ),
                    None => format!("position {pos}: token id {id}"),
                };
                let mut job = egui::text::LayoutJob::default();
                job.append(tok, 0.0, egui::TextFormat::simple(egui::FontId::proportional(13.5), fg));
                job.append(
                    &id.to_string(),
                    4.0,
                    egui::TextFormat::simple(egui::FontId::monospace(10.5), fg.gamma_multiply(0.65)),
                );
                // Painted by hand: allocated chips wrap in a wrapped layout, frames do not.
                let galley = ui.painter().layout_job(job);
                let pad = egui::vec2(4.0, 1.0);
                let (rect, resp) = ui.allocate_exact_size(galley.size() + 2.0 * pad, egui::Sense::hover());
                ui.painter().rect_filled(rect, 3.0, bg);
                ui.painter().galley(rect.min + pad, galley, fg);
                resp.on_hover_text(hover);
            }
        });
        hint(ui, "Token list with ids; blue positions carry an entity vector, yellow ones are masks.");
        ui.separator();
        section(ui, "Fill-mask predictions");
        if p.masks.is_empty() {
            ui.colored_label(widgets::WARN, format!("Add {} to the sentence to see predictions.", app.mask_token()));
        }
        for (i, m) in p.masks.iter().enumerate() {
            if p.masks.len() > 1 {
                ui.label(RichText::new(format!("mask {}", i + 1)).strong());
            }
            super::norm::mask_columns(ui, m, p.norm_a, p.norm_b);
            ui.add_space(6.0);
        }
    });
    if state != app.state {
        out.push(Command::SetState(Box::new(state)));
    }
}
