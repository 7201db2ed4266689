//! The Map tab: every found entity's direction projected on the first two principal components.

use egui::{Color32, RichText, Ui};
use egui_plot::{Corner, HoverPosition, Legend, MarkerShape, Plot, PlotPoint, Points, Text};

use super::widgets::{self, hint};
use std::sync::Arc;

use pelt::table::Table;
use pelt::worker::MapPoint;

use super::session::Pca;
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

/// At most this many points are drawn; larger maps show an even sample (every n-th point of
/// each colour class), the selected entity always.
pub const MAX_DRAWN: usize = 5_000;

/// One colour class of the map: its drawn points, their entities and hover labels.
struct Series {
    points: Vec<[f64; 2]>,
    names: Vec<String>,
}

/// The map's view state: the drawn series, rebuilt only when the PCA result changes.
#[derive(Default)]
pub struct MapPanel {
    series: Option<(usize, Vec<Series>)>,
    /// Entities with a vector, and how many of them are drawn.
    pub shown: (usize, usize),
}

impl MapPanel {
    pub fn ui(&mut self, app: &Session, ui: &mut Ui, out: &mut Vec<Command>) {
        tab(self, app, ui, out)
    }

    /// Rebuilds the drawn series when `points` is another PCA result than last time.
    fn refresh(&mut self, table: &Table, points: &Arc<Vec<MapPoint>>) {
        let key = Arc::as_ptr(points) as usize;
        if self.series.as_ref().is_none_or(|(k, _)| *k != key) {
            let step = points.len().div_ceil(MAX_DRAWN).max(1);
            let mut series: Vec<Series> = (0..BUCKETS.len())
                .map(|_| Series {
                    points: vec![],
                    names: vec![],
                })
                .collect();
            for p in points.iter().step_by(step) {
                let s = &mut series[bucket(table.counts[p.entity])];
                s.points.push(p.xy);
                s.names.push(format!(
                    "{} ({} contexts)",
                    table.entity_names[p.entity], table.counts[p.entity]
                ));
            }
            self.shown = (points.len(), series.iter().map(|s| s.points.len()).sum());
            self.series = Some((key, series));
        }
    }
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
    let points = match &app.pca {
        Pca::Ready(p) => p.clone(),
        _ => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("computing the PCA…");
            });
            return;
        }
    };
    hint(
        ui,
        "Each dot is one entity vector (direction only: unit length), projected on the first two principal components of all vectors. Entities used in similar contexts land close together. Colour = number of contexts the vector was built from. Hover a dot for its name; click to select it.",
    );
    view.refresh(&table, &points);
    let (total, drawn) = view.shown;
    if drawn < total {
        ui.label(format!(
            "{total} entities with a vector ({drawn} drawn: an even sample)"
        ));
    } else {
        ui.label(format!("{total} entities with a vector"));
    }
    let series = match &view.series {
        Some((_, s)) => s,
        None => return,
    };
    let selected = app
        .selected
        .and_then(|s| points.iter().find(|p| p.entity == s).map(|p| (s, p.xy)));
    let resp = Plot::new("pca_map")
        .legend(
            Legend::default()
                .position(Corner::LeftTop)
                .follow_insertion_order(true),
        )
        .x_axis_label("PC 1")
        .y_axis_label("PC 2")
        .data_aspect(1.0)
        .height((ui.available_height() - 8.0).max(200.0))
        .label_formatter(|pos: &HoverPosition<'_>| match pos {
            HoverPosition::NearDataPoint {
                plot_name: "selected",
                ..
            } => selected
                .map(|(e, _)| format!("{} ({} contexts)", table.entity_names[e], table.counts[e])),
            HoverPosition::NearDataPoint {
                plot_name, index, ..
            } => BUCKETS
                .iter()
                .position(|b| b.1 == *plot_name)
                .and_then(|b| series[b].names.get(*index).cloned())
                .or_else(|| Some(plot_name.to_string())),
            HoverPosition::Elsewhere { .. } => None,
        })
        .show(ui, |plot| {
            for (i, s) in series.iter().enumerate() {
                if !s.points.is_empty() {
                    plot.points(
                        Points::new(BUCKETS[i].1, s.points.clone())
                            .radius(3.5)
                            .color(BUCKETS[i].2)
                            .shape(MarkerShape::Circle)
                            .filled(true),
                    );
                }
            }
            if let Some((e, p)) = selected {
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
        });
    resp.response.widget_info(|| {
        egui::WidgetInfo::labeled(egui::Role::Image, true, "PCA map of the entity vectors")
    });
    if resp.response.clicked() {
        if let Some(pointer) = resp.response.interact_pointer_pos() {
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
