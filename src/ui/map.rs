//! The Map tab: every found entity's direction on a 2-D map (t-SNE, UMAP or PCA), coloured by
//! a label column or by the number of contexts, with search highlighting, lines from the
//! selected entity to its nearest neighbours (cosine in the full space), and box or lasso
//! selection into a set that the entity list can show and that can be exported.

use std::collections::HashMap;
use std::sync::Arc;

use egui::{Color32, RichText, Ui};
use egui_plot::{HoverPosition, Line, MarkerShape, Plot, PlotPoint, Points, Polygon, Text};

use pelt::analysis::maps::MapMethod;
use pelt::eval::{RowClasses, NO_CLASS};
use pelt::table::Table;
use pelt::worker::MapPoint;

use super::session::{ColourBy, MapCommand, MapHeld, AUTO_LAYOUT_MAX};
use super::widgets::{self, hint};
use super::{Command, Session};

/// Colour classes by number of contexts: (lowest count, legend label, colour).
pub const BUCKETS: [(i64, &str, Color32); 4] = [
    (1, "1–4 contexts", Color32::from_rgb(150, 150, 160)),
    (5, "5–19 contexts", Color32::from_rgb(110, 170, 240)),
    (20, "20–99 contexts", Color32::from_rgb(90, 200, 120)),
    (100, "100+ contexts", Color32::from_rgb(240, 150, 50)),
];

pub fn bucket(count: i64) -> usize {
    BUCKETS.iter().rposition(|b| count >= b.0).unwrap_or(0)
}

/// Colours of label classes, most frequent first (Tableau 10 and two more); "no label" is grey.
const PALETTE: [Color32; 12] = [
    Color32::from_rgb(78, 121, 167),
    Color32::from_rgb(242, 142, 43),
    Color32::from_rgb(225, 87, 89),
    Color32::from_rgb(118, 183, 178),
    Color32::from_rgb(89, 161, 79),
    Color32::from_rgb(237, 201, 72),
    Color32::from_rgb(176, 122, 161),
    Color32::from_rgb(255, 157, 167),
    Color32::from_rgb(156, 117, 95),
    Color32::from_rgb(186, 176, 172),
    Color32::from_rgb(31, 190, 207),
    Color32::from_rgb(188, 189, 34),
];
const UNLABELLED: Color32 = Color32::from_rgb(95, 95, 105);
const HIGHLIGHT: Color32 = Color32::from_rgb(255, 230, 0);
const SET_COLOUR: Color32 = Color32::from_rgb(255, 255, 255);

/// At most this many points are drawn; larger maps show an even sample (every n-th point of
/// each colour class), the selected entity always.
pub const MAX_DRAWN: usize = 5_000;
/// At most this many search matches or set members are ringed.
const MAX_RINGED: usize = 500;

/// How a drag on the map acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tool {
    /// Drag pans, click selects an entity.
    #[default]
    Pan,
    /// Drag a rectangle to make a set.
    Box,
    /// Draw around entities to make a set.
    Lasso,
}

/// One colour class as drawn: its name, colour, how many entities it has and which of them
/// are drawn.
pub struct Class {
    pub name: String,
    pub colour: Color32,
    pub count: usize,
    pub drawn: Vec<usize>,
}

/// The classes of the points, rebuilt only when the map or the colouring changes.
struct Drawn {
    key: (usize, usize),
    classes: Vec<Class>,
    /// Row → index into the map's points.
    at: HashMap<usize, usize>,
}

/// The map's view state.
#[derive(Default)]
pub struct MapPanel {
    drawn: Option<Drawn>,
    /// Classes switched off in the legend, by name.
    pub hidden: Vec<String>,
    pub find: String,
    /// The search and its matching rows.
    found: Option<(String, usize, Vec<usize>)>,
    pub tool: Tool,
    /// The box corners or lasso path being drawn, in map coordinates.
    path: Vec<[f64; 2]>,
    /// Entities with a vector, and how many of them are drawn.
    pub shown: (usize, usize),
    /// Lines drawn to the selected entity's neighbours.
    pub lines: usize,
}

/// The classes of `points` coloured by `classes` (or by number of contexts when `None`).
pub fn classes_of(table: &Table, points: &[MapPoint], classes: Option<&RowClasses>) -> Vec<Class> {
    let mut out: Vec<Class> = match classes {
        None => BUCKETS
            .iter()
            .map(|b| Class {
                name: b.1.to_string(),
                colour: b.2,
                count: 0,
                drawn: vec![],
            })
            .collect(),
        Some(c) => c
            .classes
            .iter()
            .enumerate()
            .map(|(i, (name, _))| Class {
                name: name.clone(),
                colour: PALETTE[i % PALETTE.len()],
                count: 0,
                drawn: vec![],
            })
            .chain(std::iter::once(Class {
                name: "no label".into(),
                colour: UNLABELLED,
                count: 0,
                drawn: vec![],
            }))
            .collect(),
    };
    let last = out.len() - 1;
    let class = |r: usize| match classes {
        None => bucket(table.counts[r]),
        Some(c) => match c.of_row.get(r).copied().unwrap_or(NO_CLASS) {
            NO_CLASS => last,
            k => k as usize,
        },
    };
    let step = points.len().div_ceil(MAX_DRAWN).max(1);
    for (i, p) in points.iter().enumerate() {
        let c = &mut out[class(p.entity)];
        c.count += 1;
        if c.count % step == 1 || step == 1 {
            c.drawn.push(i);
        }
    }
    out
}

/// Whether `hay` contains `needle` (already lowercase) without case; ASCII text is compared
/// in place, anything else lowercased first.
pub fn contains_folded(hay: &str, needle: &str) -> bool {
    if hay.is_ascii() && needle.is_ascii() {
        let (h, n) = (hay.as_bytes(), needle.as_bytes());
        n.is_empty()
            || h.windows(n.len())
                .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b))
    } else {
        hay.to_lowercase().contains(needle)
    }
}

/// The rows whose points lie in the rectangle spanned by `a` and `b`.
pub fn rows_in_box(points: &[MapPoint], a: [f64; 2], b: [f64; 2]) -> Vec<usize> {
    let (x0, x1) = (a[0].min(b[0]), a[0].max(b[0]));
    let (y0, y1) = (a[1].min(b[1]), a[1].max(b[1]));
    points
        .iter()
        .filter(|p| (x0..=x1).contains(&p.xy[0]) && (y0..=y1).contains(&p.xy[1]))
        .map(|p| p.entity)
        .collect()
}

/// The rows whose points lie inside the closed polygon `path` (even–odd rule).
pub fn rows_in_lasso(points: &[MapPoint], path: &[[f64; 2]]) -> Vec<usize> {
    if path.len() < 3 {
        return vec![];
    }
    let inside = |q: [f64; 2]| {
        let mut inside = false;
        let mut j = path.len() - 1;
        for i in 0..path.len() {
            let (a, b) = (path[i], path[j]);
            if (a[1] > q[1]) != (b[1] > q[1])
                && q[0] < (b[0] - a[0]) * (q[1] - a[1]) / (b[1] - a[1]) + a[0]
            {
                inside = !inside;
            }
            j = i;
        }
        inside
    };
    points
        .iter()
        .filter(|p| inside(p.xy))
        .map(|p| p.entity)
        .collect()
}

impl MapPanel {
    pub fn ui(&mut self, app: &Session, ui: &mut Ui, out: &mut Vec<Command>) {
        tab(self, app, ui, out)
    }

    /// Rebuilds the classes when the map or the colouring changed.
    fn refresh(
        &mut self,
        table: &Table,
        points: &Arc<Vec<MapPoint>>,
        classes: Option<&Arc<RowClasses>>,
    ) {
        let key = (
            Arc::as_ptr(points) as usize,
            classes.map_or(0, |c| Arc::as_ptr(c) as usize),
        );
        if self.drawn.as_ref().is_none_or(|d| d.key != key) {
            let classes = classes_of(table, points, classes.map(|c| c.as_ref()));
            let at = points
                .iter()
                .enumerate()
                .map(|(i, p)| (p.entity, i))
                .collect();
            self.drawn = Some(Drawn { key, classes, at });
            self.found = None;
        }
        let d = self.drawn.as_ref().expect("set above");
        let drawn = d
            .classes
            .iter()
            .filter(|c| !self.hidden.contains(&c.name))
            .map(|c| c.drawn.len())
            .sum();
        self.shown = (points.len(), drawn);
    }

    /// The rows matching the search (name or id, without case), recomputed when it changes:
    /// a search that extends the previous one looks only among its matches.
    fn matches(&mut self, table: &Table, points: &[MapPoint]) -> &[usize] {
        let q = self.find.trim().to_lowercase();
        let key = self.drawn.as_ref().map_or(0, |d| d.key.0);
        if self
            .found
            .as_ref()
            .is_none_or(|(f, k, _)| *f != q || *k != key)
        {
            let hit = |r: &usize| {
                contains_folded(&table.entity_names[*r], &q)
                    || contains_folded(&table.entity_ids[*r], &q)
            };
            let rows = match self.found.take() {
                _ if q.is_empty() => vec![],
                Some((f, k, prev)) if k == key && !f.is_empty() && q.contains(&f) => {
                    prev.into_iter().filter(hit).collect()
                }
                _ => points.iter().map(|p| p.entity).filter(hit).collect(),
            };
            self.found = Some((q, key, rows));
        }
        &self.found.as_ref().expect("set above").2
    }
}

fn axis_names(m: &MapMethod) -> (&'static str, &'static str) {
    match m {
        MapMethod::Pca => ("PC 1", "PC 2"),
        MapMethod::Tsne(_) => ("t-SNE 1", "t-SNE 2"),
        MapMethod::Umap(_) => ("UMAP 1", "UMAP 2"),
    }
}

/// The method row: PCA / t-SNE / UMAP, and how the chosen map is coming along.
fn method_row(app: &Session, ui: &mut Ui, out: &mut Vec<Command>) {
    let chosen = app.state.map_method;
    ui.horizontal_wrapped(|ui| {
        ui.label("Layout:");
        for m in MapMethod::defaults() {
            let on = std::mem::discriminant(&m) == std::mem::discriminant(&chosen);
            let hover = match m {
                MapMethod::Pca => "The first two principal components: instant, but shows little structure",
                MapMethod::Tsne(_) => "t-SNE (Barnes–Hut, perplexity 30): keeps each entity's near neighbours together",
                MapMethod::Umap(_) => "UMAP (15 neighbours, min_dist 0.1): near neighbours together, more of the global shape",
            };
            if ui.selectable_label(on, m.label()).on_hover_text(hover).clicked() && !on {
                out.push(Command::Map(MapCommand::SetMethod(m)));
            }
        }
        ui.separator();
        if app.map_computing() {
            ui.spinner();
            match &app.map.progress {
                Some(p) => {
                    ui.add(
                        egui::ProgressBar::new(p.fraction().unwrap_or(0.0))
                            .desired_width(160.0)
                            .text(format!("{} {}", chosen.label(), p.describe())),
                    );
                }
                None => {
                    ui.label(format!("making the {} map…", chosen.label()));
                }
            }
            if chosen.is_slow() && ui.button("Cancel").clicked() {
                out.push(Command::Map(MapCommand::Cancel));
            }
        } else if let Some((m, why)) = app.map.held(chosen).map(|h| (chosen, h)) {
            let text = match why {
                MapHeld::Large(n) => format!(
                    "A {} map of {n} entities takes minutes (about {} on two cores; more than {AUTO_LAYOUT_MAX} entities are not laid out unasked).",
                    m.label(),
                    pelt::progress::format_secs(*n as f64 * 0.002)
                ),
                MapHeld::Cancelled => format!("The {} map was cancelled.", m.label()),
                MapHeld::Failed(e) => format!("The {} map failed: {e}", m.label()),
            };
            ui.label(RichText::new(text).color(ui.visuals().warn_fg_color));
            if ui.button(format!("Make the {} map", m.label())).clicked() {
                out.push(Command::Map(MapCommand::Compute));
            }
        } else if let Some(l) = &app.map.layout {
            let how = if l.from_cache {
                "read from the project's maps/".to_string()
            } else {
                format!("made in {:.1} s", l.secs)
            };
            ui.label(RichText::new(format!("{} map, {how}", l.method.label())).weak())
                .on_hover_text(
                    l.cache
                        .as_ref()
                        .map(|c| format!("Kept in {}", c.display()))
                        .unwrap_or_else(|| "Not kept (save the project to keep maps in its folder)".into()),
                );
        }
    });
}

/// The colouring, search, neighbour lines and selection tool.
fn tools_row(view: &mut MapPanel, app: &Session, ui: &mut Ui, out: &mut Vec<Command>) {
    ui.horizontal_wrapped(|ui| {
        let colour = app.state.map_colour.clone();
        let l = ui.label("Colour by:");
        egui::ComboBox::from_id_salt("map_colour")
            .selected_text(colour.label())
            .show_ui(ui, |ui| {
                let mut options = vec![ColourBy::Evaluate, ColourBy::PubTator, ColourBy::Contexts];
                if let ColourBy::File(_) = colour {
                    options.push(colour.clone());
                }
                for c in options {
                    let available = c == ColourBy::Contexts || app.label_source(&c).is_some();
                    let r = ui.add_enabled(available, egui::Button::selectable(colour == c, c.label()));
                    let r = if available {
                        r
                    } else {
                        r.on_disabled_hover_text(match c {
                            ColourBy::Evaluate => "The project has no evaluation labels: add FewRel files or a labels TSV on the Evaluate tab",
                            _ => "The project's corpus has no PubTator files",
                        })
                    };
                    if r.clicked() {
                        out.push(Command::Map(MapCommand::ColourBy(c)));
                    }
                }
                if ui.button("Labels file (id<TAB>label)…").clicked() {
                    out.push(Command::Map(MapCommand::ColourFileDialog));
                }
            })
            .response
            .labelled_by(l.id);
        ui.separator();
        let l = ui.label("Find:");
        ui.add(
            egui::TextEdit::singleline(&mut view.find)
                .hint_text("name or id")
                .desired_width(140.0),
        )
        .labelled_by(l.id);
        ui.separator();
        let mut lines = app.state.map_neighbours;
        if ui
            .checkbox(&mut lines, format!("Lines to the {} nearest", app.state.neighbours_k))
            .on_hover_text("The selected entity is joined to its nearest entities by cosine in the full vector space (the Neighbours tab's list); long lines show where the map tears neighbourhoods apart")
            .changed()
        {
            out.push(Command::Map(MapCommand::NeighbourLines(lines)));
        }
        ui.separator();
        ui.label("Drag:");
        for (t, name, hover) in [
            (Tool::Pan, "Pan", "Drag to pan, scroll to zoom, click a dot to select it"),
            (Tool::Box, "Box", "Drag a rectangle around entities to make a set"),
            (Tool::Lasso, "Lasso", "Draw around entities to make a set"),
        ] {
            if ui.selectable_label(view.tool == t, name).on_hover_text(hover).clicked() {
                view.tool = t;
            }
        }
    });
    if let Some(set) = &app.map.set {
        ui.horizontal(|ui| {
            ui.label(RichText::new(format!("Set: {} entities", set.len())).strong());
            let mut only = app.map.filter_to_set;
            if ui
                .checkbox(&mut only, "Show only these in the entity list")
                .changed()
            {
                out.push(Command::Map(MapCommand::FilterToSet(only)));
            }
            if ui
                .button("Export set…")
                .on_hover_text("Write the set as an entity list (id, name, aliases): a project can build from it")
                .clicked()
            {
                out.push(Command::Map(MapCommand::ExportSetDialog));
            }
            if ui.button("Clear set").clicked() {
                out.push(Command::Map(MapCommand::ClearSet));
            }
        });
    }
}

/// The legend above the map: one checkbox per class, with its colour and size.
fn legend(classes: &[Class], hidden: &mut Vec<String>, ui: &mut Ui) {
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 4.0;
        for c in classes {
            if c.count == 0 {
                continue;
            }
            // The class's name in its colour (a swatch apart could wrap away from it).
            let text = RichText::new(format!("{} ({})", c.name, c.count)).color(c.colour);
            let mut on = !hidden.contains(&c.name);
            if ui
                .checkbox(&mut on, text)
                .on_hover_text("Show or hide this class on the map")
                .changed()
            {
                if on {
                    hidden.retain(|h| *h != c.name);
                } else {
                    hidden.push(c.name.clone());
                }
            }
            ui.add_space(6.0);
        }
    });
}

fn tab(view: &mut MapPanel, app: &Session, ui: &mut Ui, out: &mut Vec<Command>) {
    let Some(table) = app.table.clone() else {
        widgets::empty_state(
            ui,
            "No table yet",
            "Build the table to see the entity vectors on a map.",
        );
        return;
    };
    hint(
        ui,
        "Each dot is one entity vector (its direction), laid out in 2-D so that entities with similar vectors, used in similar contexts, land close together. t-SNE and UMAP keep near neighbours together; PCA only projects. Colour by the evaluation's labels to see whether the vectors group entities by type. Hover a dot for its name, click to select it; Box or Lasso makes a set. To see how another corpus or model changes the neighbourhoods, open the Compare tab.",
    );
    method_row(app, ui, out);
    tools_row(view, app, ui, out);
    let Some(layout) = app.map.layout.clone() else {
        if app.map_computing() {
            return;
        }
        ui.label("No map yet.");
        return;
    };
    let points = layout.points.clone();
    let classes = app
        .map
        .classes
        .as_ref()
        .filter(|(c, _)| *c == app.state.map_colour)
        .map(|(_, c)| c.clone());
    if app.state.map_colour != ColourBy::Contexts && classes.is_none() {
        if let Some((_, e)) = app
            .map
            .classes_failed
            .as_ref()
            .filter(|(c, _)| *c == app.state.map_colour)
        {
            ui.label(
                RichText::new(format!(
                    "Cannot colour by {}: {e}",
                    app.state.map_colour.label()
                ))
                .color(ui.visuals().warn_fg_color),
            );
        } else if app.label_source(&app.state.map_colour).is_none() {
            ui.label(
                RichText::new(format!(
                    "This project has no {}: coloured by number of contexts.",
                    app.state.map_colour.label()
                ))
                .weak(),
            );
        } else {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("reading the {}…", app.state.map_colour.label()));
            });
        }
    }
    view.refresh(&table, &points, classes.as_ref());
    let matches: Vec<usize> = view.matches(&table, &points).to_vec();
    let (total, drawn) = view.shown;
    ui.horizontal(|ui| {
        let mut parts = vec![if drawn < total {
            format!("{total} entities with a vector ({drawn} drawn: an even sample)")
        } else {
            format!("{total} entities with a vector")
        }];
        if let Some(c) = &classes {
            parts.push(format!(
                "{} labelled from {}",
                c.labelled(),
                app.state.map_colour.label()
            ));
        }
        if !view.find.trim().is_empty() {
            parts.push(format!("{} match “{}”", matches.len(), view.find.trim()));
        }
        ui.label(parts.join(" · "));
    });
    let d = view.drawn.take().expect("refreshed above");
    let at = |r: usize| d.at.get(&r).map(|&i| points[i].xy);
    let selected = app.selected.and_then(|s| at(s).map(|p| (s, p)));
    let neighbour_lines: Vec<[f64; 2]> = match (&app.neighbours, selected) {
        (Some(n), Some((s, _))) if n.entity == s && app.state.map_neighbours => {
            n.entities.iter().filter_map(|&(e, _)| at(e)).collect()
        }
        _ => vec![],
    };
    let ringed = |rows: &[usize]| -> Vec<[f64; 2]> {
        rows.iter()
            .take(MAX_RINGED)
            .filter_map(|&r| at(r))
            .collect()
    };
    view.lines = neighbour_lines.len();
    let found_xy = ringed(&matches);
    let set_xy = app.map.set.as_ref().map(|s| ringed(s)).unwrap_or_default();
    let (xn, yn) = axis_names(&layout.method);
    legend(&d.classes, &mut view.hidden, ui);
    let width = ui.available_width().max(300.0);
    let height = (ui.available_height() - 8.0).max(200.0);
    let tool = view.tool;
    let path = view.path.clone();
    let hidden = view.hidden.clone();
    let mut plot_resp = None;
    ui.horizontal_top(|ui| {
        // Entities without a label are drawn first, under the labelled ones.
        let series: Vec<(&Class, Vec<[f64; 2]>)> = d
            .classes
            .iter()
            .filter(|c| c.colour == UNLABELLED)
            .chain(d.classes.iter().filter(|c| c.colour != UNLABELLED))
            .filter(|c| !hidden.contains(&c.name) && !c.drawn.is_empty())
            .map(|c| (c, c.drawn.iter().map(|&i| points[i].xy).collect()))
            .collect();
        let names = |name: &str, index: usize| -> Option<String> {
            let c = d.classes.iter().find(|c| c.name == name)?;
            let r = points[*c.drawn.get(index)?].entity;
            Some(format!(
                "{} ({} contexts) · {}",
                table.entity_names[r], table.counts[r], c.name
            ))
        };
        let resp = Plot::new("entity_map")
            .x_axis_label(xn)
            .y_axis_label(yn)
            .data_aspect(1.0)
            .width(width)
            .height(height)
            .allow_drag(tool == Tool::Pan)
            .allow_boxed_zoom(tool == Tool::Pan)
            .label_formatter(|pos: &HoverPosition<'_>| match pos {
                HoverPosition::NearDataPoint {
                    plot_name: "selected",
                    ..
                } => selected.map(|(e, _)| {
                    format!("{} ({} contexts)", table.entity_names[e], table.counts[e])
                }),
                HoverPosition::NearDataPoint {
                    plot_name, index, ..
                } => names(plot_name, *index),
                HoverPosition::Elsewhere { .. } => None,
            })
            .show(ui, |plot| {
                for (c, xy) in &series {
                    plot.points(
                        Points::new(c.name.clone(), xy.clone())
                            .radius(3.0)
                            .color(c.colour)
                            .shape(MarkerShape::Circle)
                            .filled(true),
                    );
                }
                if !set_xy.is_empty() {
                    plot.points(
                        Points::new("set", set_xy.clone())
                            .radius(5.0)
                            .color(SET_COLOUR)
                            .shape(MarkerShape::Circle)
                            .filled(false),
                    );
                }
                if !found_xy.is_empty() {
                    plot.points(
                        Points::new("matches", found_xy.clone())
                            .radius(7.0)
                            .color(HIGHLIGHT)
                            .shape(MarkerShape::Circle)
                            .filled(false),
                    );
                }
                if let Some((e, p)) = selected {
                    for q in &neighbour_lines {
                        plot.line(
                            Line::new("neighbour", vec![p, *q])
                                .color(Color32::from_rgba_unmultiplied(255, 80, 80, 150))
                                .width(1.2),
                        );
                    }
                    plot.points(
                        Points::new("selected", vec![p])
                            .radius(8.0)
                            .color(Color32::from_rgb(255, 80, 80))
                            .shape(MarkerShape::Circle)
                            .filled(false),
                    );
                    plot.text(
                        Text::new(
                            "",
                            PlotPoint::new(p[0], p[1]),
                            RichText::new(format!("   {}", table.entity_names[e]))
                                .strong()
                                .size(14.0),
                        )
                        .anchor(egui::Align2::LEFT_CENTER),
                    );
                }
                if path.len() >= 2 {
                    let outline: Vec<[f64; 2]> = match tool {
                        Tool::Box => {
                            let (a, b) = (path[0], path[path.len() - 1]);
                            vec![a, [b[0], a[1]], b, [a[0], b[1]]]
                        }
                        _ => path.clone(),
                    };
                    plot.polygon(
                        Polygon::new("selection", outline)
                            .stroke(egui::Stroke::new(1.5, SET_COLOUR))
                            .fill_color(Color32::from_rgba_unmultiplied(255, 255, 255, 20)),
                    );
                }
            });
        resp.response.widget_info(|| {
            egui::WidgetInfo::labeled(
                egui::Role::Image,
                true,
                format!("{} map of the entity vectors", layout.method.label()),
            )
        });
        plot_resp = Some(resp);
    });
    view.drawn = Some(d);
    let Some(resp) = plot_resp else { return };
    let pointer = resp.response.interact_pointer_pos();
    let here = pointer.map(|p| {
        let v = resp.transform.value_from_position(p);
        [v.x, v.y]
    });
    match tool {
        Tool::Pan => {
            if resp.response.clicked() {
                if let Some(pointer) = pointer {
                    let nearest = points
                        .iter()
                        .map(|p| {
                            (
                                p.entity,
                                resp.transform
                                    .position_from_point(&PlotPoint::new(p.xy[0], p.xy[1]))
                                    .distance(pointer),
                            )
                        })
                        .min_by(|a, b| a.1.total_cmp(&b.1));
                    if let Some((e, d)) = nearest {
                        if d < 12.0 {
                            out.push(Command::Select(e));
                        }
                    }
                }
            }
        }
        Tool::Box | Tool::Lasso => {
            if resp.response.drag_started() {
                // The drag starts where the button went down, before the pointer moved.
                view.path.clear();
                if let Some(o) = ui.input(|i| i.pointer.press_origin()) {
                    let v = resp.transform.value_from_position(o);
                    view.path.push([v.x, v.y]);
                }
            }
            if let Some(h) =
                here.filter(|_| resp.response.dragged() || resp.response.drag_started())
            {
                if tool == Tool::Box && view.path.len() >= 2 {
                    view.path.truncate(1);
                }
                if view.path.last() != Some(&h) {
                    view.path.push(h);
                }
            }
            if resp.response.drag_stopped() {
                if let Some(h) = here {
                    view.path.push(h);
                }
                let rows = match tool {
                    Tool::Box if view.path.len() >= 2 => {
                        rows_in_box(&points, view.path[0], view.path[view.path.len() - 1])
                    }
                    Tool::Lasso => rows_in_lasso(&points, &view.path),
                    _ => vec![],
                };
                view.path.clear();
                out.push(Command::Map(if rows.is_empty() {
                    MapCommand::ClearSet
                } else {
                    MapCommand::SetSet(rows)
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(xy: &[[f64; 2]]) -> Vec<MapPoint> {
        xy.iter()
            .enumerate()
            .map(|(i, &xy)| MapPoint { entity: i * 10, xy })
            .collect()
    }

    #[test]
    fn search_ignores_case_in_ascii_and_beyond() {
        assert!(contains_folded("Tumor Necrosis Factor", "necrosis f"));
        assert!(contains_folded("C0162638", "c01626"));
        assert!(!contains_folded("apoptosis", "apoptosisx"));
        assert!(!contains_folded("TNF", "tnfa"));
        assert!(contains_folded("ÉTOILE rouge", "étoile"));
        assert!(!contains_folded("ÉTOILE", "etoile"));
        assert!(contains_folded("anything", ""));
    }

    #[test]
    fn box_and_lasso_take_the_points_inside() {
        let p = pts(&[[0.2, 0.0], [1.0, 1.0], [2.0, 0.5], [5.0, 5.0], [0.5, 1.8]]);
        assert_eq!(rows_in_box(&p, [2.5, -1.0], [-0.5, 1.5]), vec![0, 10, 20]);
        // A triangle (0,-1) (3,-1) (0,3) holds the points under x + 0.75 y < 2.25.
        let tri = [[0.0, -1.0], [3.0, -1.0], [0.0, 3.0]];
        assert_eq!(rows_in_lasso(&p, &tri), vec![0, 10, 40]);
        assert!(rows_in_lasso(&p, &tri[..2]).is_empty());
    }
}
