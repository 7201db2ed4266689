//! The Compare tab: the current table (A) against a second table (B) of the same entities from
//! another corpus or model. Per shared entity the overlap of its nearest neighbours in A and in
//! B (Jaccard@k), most changed first; the two neighbour lists of the selected entity side by
//! side; and both maps in one frame (B's PCA aligned onto A's by orthogonal Procrustes), with
//! lines from an entity's place in A to its place in B.

use std::collections::HashMap;
use std::sync::Arc;

use egui::{Color32, FontId, RichText, Ui};
use egui_plot::{
    Arrows, Corner, HoverPosition, Legend, MarkerShape, Plot, PlotPoint, Points, Text,
};

use pelt::analysis::compare::{Compared, NeighbourList};

use super::map::MAX_DRAWN;
use super::session::{CompareColumn, CompareCommand, COMPARE_K_MAX};
use super::widgets::{self, hint};
use super::{Command, Session};

/// Colour of table A's points and of what only A has.
const A_COLOR: Color32 = widgets::A_COLOR;
/// Colour of table B's points and of what only B has.
const B_COLOR: Color32 = widgets::B_COLOR;
/// Height of a row of the list of shared entities.
const ROW_H: f32 = 20.0;
/// Lines drawn from A to B when no shared entity is selected: the most changed.
const LINES_UNSELECTED: usize = 20;

/// What the Compare tab explains before a second table is open.
pub const HOW_TO_READ: &str = "Compare puts the current table (A) next to a second PELT table (B) over the same entity ids: built from another corpus (say clinical notes instead of PubMed) or with another model. For every entity both tables found, it takes its k nearest entities by cosine in A and in B (among the shared entities only) and measures their overlap, Jaccard@k = (neighbours in both lists) / (neighbours in either list): 1 means the entity keeps its neighbourhood, 0 that it has entirely new neighbours. The list puts the most changed first; select one to see its two neighbour lists side by side, where the coloured names (only in A, only in B) are the neighbours it lost and gained, and \"#3 in B\" says where a kept neighbour went. For domain adaptation the low end is what matters: those entities are read differently in the new corpus or model, so they are where PELT vectors from the new domain change what the model knows, and where vectors from the old domain would mislead it. The map shows both tables' PCA maps in one frame (B rotated, mirrored and scaled onto A, orthogonal Procrustes); a line joins an entity's place in A to its place in B.";

/// The drawn points of one comparison, rebuilt only when the comparison changes.
struct Drawn {
    /// Shared entities drawn (an even sample of large comparisons, see [`MAX_DRAWN`]).
    shared: Vec<usize>,
    a: Vec<[f64; 2]>,
    b: Vec<[f64; 2]>,
    /// The most changed (lines when none is selected).
    most_changed: Vec<usize>,
}

/// The Compare tab's view state.
#[derive(Default)]
pub struct ComparePanel {
    drawn: Option<(usize, Drawn)>,
    /// Scroll the list to the selected entity once (after a click elsewhere).
    seen: Option<usize>,
}

impl ComparePanel {
    pub fn ui(&mut self, app: &Session, ui: &mut Ui, out: &mut Vec<Command>) {
        tab(self, app, ui, out)
    }

    fn refresh(&mut self, r: &Arc<Compared>) -> &Drawn {
        let key = Arc::as_ptr(r) as usize;
        if self.drawn.as_ref().is_none_or(|(k, _)| *k != key) {
            let n = r.comparison.shared.len();
            let step = n.div_ceil(MAX_DRAWN).max(1);
            let shared: Vec<usize> = (0..n).step_by(step).collect();
            let drawn = Drawn {
                most_changed: r
                    .comparison
                    .most_changed()
                    .into_iter()
                    .take(LINES_UNSELECTED)
                    .collect(),
                a: shared.iter().map(|&i| r.maps.a[i]).collect(),
                b: shared.iter().map(|&i| r.maps.b.aligned[i]).collect(),
                shared,
            };
            self.drawn = Some((key, drawn));
        }
        &self.drawn.as_ref().expect("just set").1
    }
}

fn cmd(c: CompareCommand) -> Command {
    Command::Compare(c)
}

fn open_button(ui: &mut Ui, out: &mut Vec<Command>) {
    if ui
        .button("Open a second table…")
        .on_hover_text("Choose table B: a .safetensors PELT table over the same entity ids")
        .clicked()
    {
        out.push(cmd(CompareCommand::OpenDialog));
    }
}

fn tab(view: &mut ComparePanel, app: &Session, ui: &mut Ui, out: &mut Vec<Command>) {
    if app.table.is_none() {
        widgets::empty_state(
            ui,
            "No table yet",
            "Build or open a table first; then open a second table to compare it with.",
        );
        return;
    }
    let st = &app.compare;
    let Some(b_path) = st.b_path.clone() else {
        widgets::empty_state(
            ui,
            "Nothing to compare with yet",
            "Open a second table of the same entities, from another corpus or model.",
        );
        ui.add_space(8.0);
        ui.vertical_centered(|ui| open_button(ui, out));
        ui.add_space(8.0);
        hint(ui, HOW_TO_READ);
        return;
    };
    controls(app, &b_path, ui, out);
    if let Some((started, (done, total))) = app.compare_running() {
        ui.horizontal(|ui| {
            ui.spinner();
            let secs = started.elapsed().as_secs_f64();
            if total > 0 {
                ui.label(format!(
                    "comparing: neighbours of {done} of {total} rows ({secs:.0} s)…"
                ));
            } else {
                ui.label(format!("opening and comparing… ({secs:.0} s)"));
            }
            if ui.button("Cancel").clicked() {
                out.push(cmd(CompareCommand::Cancel));
            }
        });
        return;
    }
    if let Some(e) = &st.error {
        ui.colored_label(widgets::BAD, format!("Cannot compare: {e}"));
        if ui.button("Compare again").clicked() {
            out.push(cmd(CompareCommand::Rerun));
        }
        return;
    }
    if st.cancelled {
        ui.label("The comparison was cancelled.");
        if ui.button("Compare again").clicked() {
            out.push(cmd(CompareCommand::Rerun));
        }
        return;
    }
    let Some(r) = app.compared().cloned() else {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("waiting for the comparison…");
        });
        return;
    };
    summary(app, &r, ui);
    hint(
        ui,
        "Lowest Jaccard first: these entities' nearest neighbours changed most between A and B. Select one to see what it lost and gained.",
    );
    let sel = app.compare_selected();
    let list_h = (ui.available_height() * 0.42).max(160.0);
    // The list takes a third of the width, the two neighbour lists the rest.
    let w = ui.available_width();
    let list_w = (w * 0.36).clamp(180.0, 420.0);
    ui.horizontal_top(|ui| {
        let layout = egui::Layout::top_down(egui::Align::Min);
        ui.allocate_ui_with_layout(egui::vec2(list_w, list_h + ROW_H + 8.0), layout, |ui| {
            ui.set_width(list_w);
            shared_list(view, app, &r, sel, list_h, ui, out);
        });
        ui.add_space(10.0);
        ui.allocate_ui_with_layout(
            egui::vec2(ui.available_width(), list_h + ROW_H + 8.0),
            layout,
            |ui| side_by_side(app, &r, sel, list_h, ui, out),
        );
    });
    ui.separator();
    map(view, &r, sel, ui, out);
}

/// Table B, k and the centring.
fn controls(app: &Session, b_path: &std::path::Path, ui: &mut Ui, out: &mut Vec<Command>) {
    let st = &app.compare;
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new("Table B:").strong());
        ui.label(widgets::file_name(b_path))
            .on_hover_text(b_path.display().to_string());
        open_button(ui, out);
        if ui
            .button("Close B")
            .on_hover_text("Forget table B")
            .clicked()
        {
            out.push(cmd(CompareCommand::Close));
        }
        ui.separator();
        let l = ui.label("neighbours (k)");
        let mut k = st.k;
        ui.add(egui::DragValue::new(&mut k).range(1..=COMPARE_K_MAX))
            .labelled_by(l.id)
            .on_hover_text("How many nearest neighbours of each entity are compared");
        if k != st.k {
            // A newer k stops the comparison in flight for the one before.
            out.push(cmd(CompareCommand::SetK(k)));
        }
        let mut c = st.center;
        if ui
            .checkbox(&mut c, "subtract mean")
            .on_hover_text("Remove each table's mean direction (over the shared entities) before the cosines: PELT vectors share a common component that makes every entity a little similar to every other.")
            .changed()
        {
            out.push(cmd(CompareCommand::SetCenter(c)));
        }
    });
}

/// The summary: how many entities each table has, how many both, the mean Jaccard@k.
fn summary(app: &Session, r: &Compared, ui: &mut Ui) {
    let c = &r.comparison;
    let m = &r.b_meta;
    if let Some(t) = &app.table {
        ui.label(
            RichText::new(format!(
                "A: {} · model {} · corpus {} · mentions {}",
                app.table_path
                    .as_deref()
                    .map(widgets::file_name)
                    .unwrap_or_else(|| "the current table".into()),
                t.meta.model,
                t.meta.corpus,
                t.meta.mentions
            ))
            .color(A_COLOR),
        );
    }
    ui.label(
        RichText::new(format!(
            "B: {} · model {} · corpus {} · mentions {}",
            widgets::file_name(&r.b_path),
            m.model,
            m.corpus,
            m.mentions
        ))
        .color(B_COLOR),
    );
    ui.label(
        RichText::new(format!(
            "{} found in A, {} in B: {}",
            c.found_a,
            c.found_b,
            c.summary()
        ))
        .strong(),
    );
}

/// A clickable column header; true when clicked.
fn header(ui: &mut Ui, app: &Session, col: CompareColumn, text: &str, width: f32) -> bool {
    let st = &app.compare;
    let r = ui.add_sized(
        [width, ROW_H],
        egui::Button::new(RichText::new(text).strong()).frame(false),
    );
    if st.column == col {
        let c = egui::pos2(r.rect.right() - 8.0, r.rect.center().y);
        widgets::sort_arrow(ui, c, st.ascending, ui.visuals().text_color());
    }
    let label = match col {
        CompareColumn::Entity => "Sort by Entity",
        CompareColumn::Jaccard => "Sort by Jaccard",
    };
    r.widget_info(|| egui::WidgetInfo::labeled(egui::Role::ColumnHeader, true, label));
    r.on_hover_text("Click to sort; again to turn the order around")
        .clicked()
}

/// The shared entities with their Jaccard@k, in the order chosen.
#[allow(clippy::too_many_arguments)]
fn shared_list(
    view: &mut ComparePanel,
    app: &Session,
    r: &Compared,
    sel: Option<usize>,
    height: f32,
    ui: &mut Ui,
    out: &mut Vec<Command>,
) {
    let c = &r.comparison;
    let order = app.compare_order();
    let w = ui.available_width();
    let jw = 100.0;
    ui.horizontal(|ui| {
        ui.spacing_mut().item_spacing.x = 0.0;
        if header(ui, app, CompareColumn::Entity, "Entity", (w - jw).max(60.0)) {
            out.push(cmd(CompareCommand::Sort(CompareColumn::Entity)));
        }
        if header(
            ui,
            app,
            CompareColumn::Jaccard,
            &format!("Jaccard@{}", c.k),
            jw,
        ) {
            out.push(cmd(CompareCommand::Sort(CompareColumn::Jaccard)));
        }
    });
    let mut scroll = egui::ScrollArea::vertical()
        .id_salt("compare_rows")
        .max_height(height)
        .auto_shrink([false, false]);
    if sel.is_some() && view.seen != sel {
        if let Some(pos) = sel.and_then(|s| order.iter().position(|&i| i == s)) {
            let spacing = ui.spacing().item_spacing.y;
            scroll =
                scroll.vertical_scroll_offset(((pos as f32) * (ROW_H + spacing) - 80.0).max(0.0));
        }
        view.seen = sel;
    }
    scroll.show_rows(ui, ROW_H, order.len(), |ui, range| {
        for &i in &order[range] {
            let e = &c.shared[i];
            let selected = sel == Some(i);
            let (rect, resp, color) = widgets::list_row(ui, ROW_H, selected);
            let v = ui.visuals();
            let name_rect = egui::Rect::from_min_max(
                rect.min,
                egui::pos2((rect.right() - jw).max(rect.left()), rect.bottom()),
            );
            let mut job = egui::text::LayoutJob::single_section(
                e.name.clone(),
                egui::TextFormat::simple(FontId::proportional(14.0), color),
            );
            job.wrap = egui::text::TextWrapping::truncate_at_width(name_rect.width().max(10.0));
            let galley = ui.painter().layout_job(job);
            ui.painter().galley(
                egui::pos2(name_rect.left() + 2.0, rect.center().y - galley.size().y / 2.0),
                galley,
                color,
            );
            // A bar for the overlap and its value.
            let bar = egui::Rect::from_min_size(
                egui::pos2(rect.right() - jw + 4.0, rect.center().y - 5.0),
                egui::vec2(50.0, 10.0),
            );
            ui.painter().rect_filled(bar, 2.0, v.extreme_bg_color);
            let mut fill = bar;
            fill.set_width((50.0 * e.jaccard as f32).max(1.0));
            ui.painter()
                .rect_filled(fill, 2.0, widgets::cosine_color(e.jaccard as f32 * 1.2 - 0.2));
            ui.painter().text(
                egui::pos2(rect.right() - 4.0, rect.center().y),
                egui::Align2::RIGHT_CENTER,
                format!("{:.3}", e.jaccard),
                FontId::monospace(12.0),
                color,
            );
            let label = format!("{}, Jaccard {:.3}", e.name, e.jaccard);
            resp.widget_info(|| {
                egui::WidgetInfo::selected(egui::Role::Row, true, selected, &label)
            });
            if resp
                .on_hover_text(format!(
                    "{} ({}): {} of its {} nearest in A are among its {} nearest in B — click to select",
                    e.name,
                    e.id,
                    common(&e.neighbours_a, &e.neighbours_b),
                    e.neighbours_a.len(),
                    e.neighbours_b.len()
                ))
                .clicked()
            {
                view.seen = Some(i);
                out.push(cmd(CompareCommand::Select(i)));
            }
        }
    });
}

fn common(a: &NeighbourList, b: &NeighbourList) -> usize {
    a.iter().filter(|x| b.iter().any(|y| y.0 == x.0)).count()
}

/// The selected entity's neighbours in A and in B, side by side; those in one list only are
/// marked.
fn side_by_side(
    app: &Session,
    r: &Compared,
    sel: Option<usize>,
    height: f32,
    ui: &mut Ui,
    out: &mut Vec<Command>,
) {
    let c = &r.comparison;
    let Some(s) = sel else {
        ui.add_space(10.0);
        hint(
            ui,
            "Select an entity (in the list here or anywhere else) to see its nearest neighbours in A and in B side by side.",
        );
        if app.selected.is_some() {
            hint(ui, "The entity selected now is not in both tables.");
        }
        return;
    };
    let e = &c.shared[s];
    ui.label(
        RichText::new(format!("{}: Jaccard@{} {:.3}", e.name, c.k, e.jaccard))
            .strong()
            .size(14.0),
    );
    let rank_b: HashMap<u32, usize> = e
        .neighbours_b
        .iter()
        .enumerate()
        .map(|(r, x)| (x.0, r))
        .collect();
    let rank_a: HashMap<u32, usize> = e
        .neighbours_a
        .iter()
        .enumerate()
        .map(|(r, x)| (x.0, r))
        .collect();
    // Scrolls sideways too: long names must not widen the tab beyond the window.
    egui::ScrollArea::both()
        .id_salt("compare_side_by_side")
        .max_height(height - 20.0)
        .auto_shrink([false, false])
        .show(ui, |ui| {
            egui::Grid::new("compare_neighbours")
                .num_columns(2)
                .spacing([12.0, 3.0])
                .striped(true)
                .show(ui, |ui| {
                    ui.label(RichText::new("Nearest in A").strong().color(A_COLOR));
                    ui.label(RichText::new("Nearest in B").strong().color(B_COLOR));
                    ui.end_row();
                    for i in 0..e.neighbours_a.len().max(e.neighbours_b.len()) {
                        for (list, other, tag, color) in [
                            (&e.neighbours_a, &rank_b, ("only in A", "B"), A_COLOR),
                            (&e.neighbours_b, &rank_a, ("only in B", "A"), B_COLOR),
                        ] {
                            match list.get(i) {
                                Some(&(j, cos)) => neighbour(
                                    ui,
                                    &c.shared[j as usize].name,
                                    cos,
                                    other.get(&j).copied(),
                                    i,
                                    tag,
                                    color,
                                    || out.push(cmd(CompareCommand::Select(j as usize))),
                                ),
                                None => {
                                    ui.label("");
                                }
                            }
                        }
                        ui.end_row();
                    }
                });
        });
}

/// One neighbour: its name (click to select), cosine, and where it is in the other list
/// (or that it is not there).
#[allow(clippy::too_many_arguments)]
fn neighbour(
    ui: &mut Ui,
    name: &str,
    cos: f32,
    other_rank: Option<usize>,
    rank: usize,
    (only, other): (&str, &str),
    color: Color32,
    select: impl FnOnce(),
) {
    ui.horizontal(|ui| {
        let text = RichText::new(name).size(13.5);
        let text = if other_rank.is_none() {
            text.color(color).strong()
        } else {
            text
        };
        let hover = match other_rank {
            None => format!("{name}: {only} (cosine {cos:.3}) — click to select"),
            Some(o) => format!(
                "{name}: #{} here, #{} in the other table (cosine {cos:.3}) — click to select",
                rank + 1,
                o + 1
            ),
        };
        if ui
            .add(egui::Button::new(text).frame(false))
            .on_hover_text(hover)
            .clicked()
        {
            select();
        }
        match other_rank {
            None => {
                ui.label(RichText::new(only).color(color).size(11.5));
            }
            Some(o) if o != rank => {
                ui.label(
                    RichText::new(format!("#{} in {other}", o + 1))
                        .weak()
                        .size(11.5),
                )
                .on_hover_text("its place in the other table's list (it moved)");
            }
            Some(_) => {}
        }
    });
}

/// Both maps in A's frame, with lines from A to B for the selected entity and its neighbours
/// (else for the most changed).
fn map(
    view: &mut ComparePanel,
    r: &Arc<Compared>,
    sel: Option<usize>,
    ui: &mut Ui,
    out: &mut Vec<Command>,
) {
    let c = &r.comparison;
    let drawn = view.refresh(r);
    let (n, shown) = (c.shared.len(), drawn.shared.len());
    let lines: Vec<usize> = match sel {
        Some(s) => {
            let e = &c.shared[s];
            let mut v: Vec<usize> = std::iter::once(s)
                .chain(e.neighbours_a.iter().map(|x| x.0 as usize))
                .chain(e.neighbours_b.iter().map(|x| x.0 as usize))
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        }
        None => drawn.most_changed.clone(),
    };
    ui.horizontal_wrapped(|ui| {
        ui.label(format!(
            "Both maps in one frame: B's PCA rotated{} and scaled ×{:.2} onto A's; what is left: {:.0}% of A's spread.",
            if r.maps.b.reflected { ", mirrored" } else { "" },
            r.maps.b.scale,
            100.0 * r.maps.b.disparity
        ));
        if shown < n {
            ui.label(format!("({shown} of {n} drawn: an even sample)"));
        }
        ui.label(match sel {
            Some(s) => format!(
                "Lines: {} and its neighbours, from A to B.",
                c.shared[s].name
            ),
            None => format!("Lines: the {} most changed, from A to B.", lines.len()),
        });
    });
    let names: Vec<&str> = drawn
        .shared
        .iter()
        .map(|&i| c.shared[i].name.as_str())
        .collect();
    let origins: Vec<[f64; 2]> = lines.iter().map(|&i| r.maps.a[i]).collect();
    let tips: Vec<[f64; 2]> = lines.iter().map(|&i| r.maps.b.aligned[i]).collect();
    let line_names: Vec<&str> = lines.iter().map(|&i| c.shared[i].name.as_str()).collect();
    let resp = Plot::new("compare_map")
        .legend(Legend::default().position(Corner::LeftTop))
        .data_aspect(1.0)
        .height((ui.available_height() - 8.0).max(200.0))
        .label_formatter(|pos: &HoverPosition<'_>| match pos {
            HoverPosition::NearDataPoint {
                plot_name, index, ..
            } => match *plot_name {
                "A" | "B (aligned)" => names.get(*index).map(|n| format!("{n} ({plot_name})")),
                "A to B" | "ends in A" => line_names.get(*index).map(|n| n.to_string()),
                _ => None,
            },
            HoverPosition::Elsewhere { .. } => None,
        })
        .show(ui, |plot| {
            plot.points(
                Points::new("A", drawn.a.clone())
                    .radius(2.5)
                    .color(A_COLOR.gamma_multiply(0.7))
                    .shape(MarkerShape::Circle)
                    .filled(true),
            );
            plot.points(
                Points::new("B (aligned)", drawn.b.clone())
                    .radius(2.5)
                    .color(B_COLOR.gamma_multiply(0.7))
                    .shape(MarkerShape::Circle)
                    .filled(true),
            );
            if !lines.is_empty() {
                plot.points(
                    Points::new("ends in A", origins.clone())
                        .radius(4.0)
                        .color(A_COLOR)
                        .shape(MarkerShape::Circle)
                        .filled(true),
                );
                plot.arrows(
                    Arrows::new("A to B", origins, tips)
                        .color(Color32::from_rgb(230, 60, 160))
                        .tip_length(8.0),
                );
            }
            if let Some(s) = sel {
                let (pa, pb) = (r.maps.a[s], r.maps.b.aligned[s]);
                for (name, p, color) in [
                    ("selected in A", pa, A_COLOR),
                    ("selected in B", pb, B_COLOR),
                ] {
                    plot.points(
                        Points::new(name, vec![p])
                            .radius(8.0)
                            .color(color)
                            .shape(MarkerShape::Circle)
                            .filled(false),
                    );
                }
                plot.text(
                    Text::new(
                        "",
                        PlotPoint::new(pa[0], pa[1]),
                        RichText::new(format!("   {}", c.shared[s].name))
                            .strong()
                            .size(14.0),
                    )
                    .anchor(egui::Align2::LEFT_CENTER),
                );
            }
        });
    resp.response.widget_info(|| {
        egui::WidgetInfo::labeled(
            egui::Role::Image,
            true,
            "Tables A and B on one map, B aligned onto A",
        )
    });
    if resp.response.clicked() {
        if let Some(pointer) = resp.response.interact_pointer_pos() {
            let nearest = drawn
                .shared
                .iter()
                .zip(&drawn.a)
                .map(|(&i, p)| {
                    let q = resp
                        .transform
                        .position_from_point(&PlotPoint::new(p[0], p[1]));
                    (i, q.distance(pointer))
                })
                .min_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((i, d)) = nearest {
                if d < 12.0 {
                    out.push(cmd(CompareCommand::Select(i)));
                }
            }
        }
    }
}
