//! The Inspector tab: the selected entity's supporting sentences, masked as the model saw
//! them, with the model's predictions at the mask and each context's cosine to the vector.

use pelt::table::ContextRecord;
use std::collections::HashMap;

use egui::{RichText, Ui};

use super::session::InspectSort;
use super::widgets::{self, hint, masked_sentence};
use super::{Command, Purpose, Session};

/// The inspector's view state: the selected entity's context list, kept until the table or
/// the entity changes (finding them scans every context of the table).
#[derive(Default)]
pub struct InspectorPanel {
    /// Entity `e`'s contexts read from the table: their indices and records (or why they
    /// could not be read), for one table generation and entity.
    contexts: Option<CachedContexts>,
}

/// (table generation, entity), the context indices, and their records or why they could not
/// be read.
type CachedContexts = ((u64, usize), Vec<usize>, Result<Vec<ContextRecord>, String>);

impl InspectorPanel {
    /// Indices (into the table's contexts) of entity `e`'s contexts and their records, read
    /// from the table once per table and entity.
    fn contexts(
        &mut self,
        s: &Session,
        table: &pelt::table::Table,
        e: usize,
    ) -> (&[usize], Result<&[ContextRecord], &str>) {
        let key = (s.table_gen, e);
        if self.contexts.as_ref().is_none_or(|(k, _, _)| *k != key) {
            let which: Vec<usize> = table.contexts_of(e).collect();
            let records = table
                .contexts_in(table.contexts_of(e))
                .map_err(|err| format!("{err:#}"));
            self.contexts = Some((key, which, records));
        }
        match &self.contexts {
            Some((_, which, records)) => (which, records.as_deref().map_err(String::as_str)),
            None => (&[], Ok(&[])),
        }
    }

    pub fn ui(&mut self, app: &Session, ui: &mut Ui, out: &mut Vec<Command>) {
        tab(self, app, ui, out)
    }
}

fn tab(view: &mut InspectorPanel, app: &Session, ui: &mut Ui, out: &mut Vec<Command>) {
    let Some(e) = app.selected else {
        widgets::empty_state(
            ui,
            "No entity selected",
            "Pick an entity in the list to see the sentences its vector was built from.",
        );
        return;
    };
    entity_header(app, ui, e);
    let Some(table) = app.table.clone() else {
        ui.add_space(10.0);
        hint(ui, "The table is not built yet: press Build to collect this entity's contexts and compute its vector.");
        return;
    };
    if table.counts[e] == 0 {
        ui.add_space(10.0);
        ui.colored_label(
            widgets::WARN,
            "This entity was not found in the corpus: it has no contexts and no vector. Add text that mentions it (or an alias) and build again.",
        );
        return;
    }
    hint(
        ui,
        format!(
            "Each sentence was fed to the model with the mention replaced by one {} (highlighted). PELT sums the MLM head's transform output at that mask over all sentences. Predictions show what the model expects at the mask; the cosine says how well this sentence agrees with the summed vector: low values are outliers (another sense, a parsing accident).",
            app.mask_token()
        ),
    );
    let mask = app.mask_token().to_string();
    let mut sort = app.state.inspect_sort;
    ui.horizontal(|ui| {
        ui.label("Order");
        ui.selectable_value(&mut sort, InspectSort::Corpus, "corpus order");
        ui.selectable_value(&mut sort, InspectSort::CosineLow, "lowest cosine first")
            .on_hover_text("Outliers first");
        ui.selectable_value(&mut sort, InspectSort::CosineHigh, "highest cosine first");
        ui.separator();
        if app.pending(Purpose::Inspect) {
            ui.spinner();
            ui.weak("running the model…");
        } else if ui
            .button("Run again")
            .on_hover_text("Run the model over the contexts again")
            .clicked()
        {
            out.push(Command::Rerun(Purpose::Inspect));
        }
    });
    if sort != app.state.inspect_sort {
        let mut state = app.state.clone();
        state.inspect_sort = sort;
        out.push(Command::SetState(Box::new(state)));
    }
    let inspection = app.inspection.as_ref().filter(|i| i.entity == e);
    let (contexts, records) = view.contexts(app, &table, e);
    let records = match records {
        Ok(r) => r,
        Err(err) => {
            ui.colored_label(widgets::WARN, format!("The contexts cannot be read: {err}"));
            return;
        }
    };
    let first = contexts.first().copied().unwrap_or(0);
    let by_context: HashMap<usize, usize> = inspection
        .map(|ins| {
            ins.insights
                .iter()
                .enumerate()
                .map(|(k, c)| (c.context, k))
                .collect()
        })
        .unwrap_or_default();
    // Contexts more than 2 standard deviations below the mean cosine are flagged as outliers.
    let mut outlier_below = f32::NEG_INFINITY;
    if let Some(ins) = inspection {
        let n = ins.insights.len().max(1) as f32;
        let mean = ins.insights.iter().map(|c| c.cosine).sum::<f32>() / n;
        let min = ins
            .insights
            .iter()
            .map(|c| c.cosine)
            .fold(f32::MAX, f32::min);
        let sd = (ins
            .insights
            .iter()
            .map(|c| (c.cosine - mean).powi(2))
            .sum::<f32>()
            / n)
            .sqrt();
        outlier_below = mean - 2.0 * sd;
        let outliers = ins
            .insights
            .iter()
            .filter(|c| c.cosine < outlier_below)
            .count();
        ui.label(format!(
            "{} contexts · cosine to the entity vector: mean {:.3}, lowest {:.3} · {} outlier(s) more than 2 sd below the mean",
            ins.insights.len(),
            mean,
            min,
            outliers
        ));
    }
    let mut order = contexts.to_vec();
    if let Some(ins) = inspection {
        let cos = |ci: &usize| {
            by_context
                .get(ci)
                .map(|&k| ins.insights[k].cosine)
                .unwrap_or(f32::NAN)
        };
        match sort {
            InspectSort::Corpus => {}
            InspectSort::CosineLow => order.sort_by(|a, b| cos(a).total_cmp(&cos(b))),
            InspectSort::CosineHigh => order.sort_by(|a, b| cos(b).total_cmp(&cos(a))),
        }
    }
    ui.separator();
    egui::ScrollArea::vertical().id_salt("inspector_scroll").auto_shrink([false, false]).show(ui, |ui| {
        for (n, &ci) in order.iter().enumerate() {
            let c = &records[ci - first];
            let insight = inspection.and_then(|ins| by_context.get(&ci).map(|&k| (ins, k)));
            egui::Frame::group(ui.style()).inner_margin(6.0).show(ui, |ui| {
                ui.set_width(ui.available_width());
                ui.horizontal(|ui| {
                    ui.label(RichText::new(format!("#{}", n + 1)).strong());
                    if let Some((ins, k)) = insight {
                        let cos = ins.insights[k].cosine;
                        let color = if cos < outlier_below { widgets::WARN } else { widgets::GOOD };
                        widgets::bar(ui, cos.max(0.0), 80.0, color, format!("cos {cos:.3}"))
                            .on_hover_text("Cosine between this context's transform output and the entity vector");
                        if cos < outlier_below {
                            ui.colored_label(widgets::WARN, "outlier");
                        }
                    }
                    let file = table.meta.corpus.split(',').nth(c.file as usize).unwrap_or("corpus");
                    let how = if c.linked { "linked mention" } else { "name-matched mention" };
                    ui.weak(format!("{file}:{} · {how} \"{}\"", c.line, c.mention()))
                        .on_hover_text(if c.linked {
                            "This mention is a span the corpus links to the entity"
                        } else {
                            "This mention was found by matching the entity's name or an alias"
                        });
                });
                ui.label(masked_sentence(ui, &c.text, c.start as usize, c.end as usize, &mask));
                if let Some((ins, k)) = insight {
                    ui.horizontal_wrapped(|ui| {
                        ui.spacing_mut().item_spacing.x = 6.0;
                        ui.weak("model predicts:");
                        let probs = &ins.insights[k].predictions;
                        for (j, tok) in ins.prediction_tokens[k].iter().enumerate() {
                            let p = probs.get(j).map(|p| p.1).unwrap_or(0.0);
                            let mention = c.mention().eq_ignore_ascii_case(tok);
                            let text = RichText::new(format!("{tok} {}", widgets::percent(p))).monospace().size(13.0);
                            if mention {
                                ui.label(text.color(widgets::GOOD)).on_hover_text("the original mention");
                            } else {
                                ui.label(text);
                            }
                        }
                    });
                }
            });
        }
    });
}

/// Name, id, aliases and counts of entity `e`.
pub fn entity_header(app: &Session, ui: &mut Ui, e: usize) {
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new(app.entity_name(e)).size(20.0).strong());
        ui.label(RichText::new(app.entity_id(e)).monospace().weak());
        let aliases = app.entity_aliases(e);
        if !aliases.is_empty() {
            ui.weak(format!("also: {}", aliases.join(", ")));
        }
        if let Some(t) = &app.table {
            ui.label(format!(
                "· {} contexts used of {} mentions (K = {})",
                t.counts[e],
                t.found.get(e).copied().unwrap_or(0),
                t.meta.k
            ));
        }
    });
}
