//! The Map tab: every found entity's direction projected on the first two principal components.

use egui::{Color32, RichText, Ui};
use egui_plot::{Corner, HoverPosition, Legend, MarkerShape, Plot, PlotPoint, Points, Text};

use super::widgets::{self, hint};
use super::{App, Command, Pca};

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

pub fn tab(app: &mut App, ui: &mut Ui) {
    let Some(table) = app.table.clone() else {
        widgets::empty_state(
            ui,
            "No table yet",
            "Build the table to see the entity vectors on a map.",
        );
        return;
    };
    if matches!(app.pca, Pca::None) {
        app.start_pca(ui.ctx());
    }
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
    ui.label(format!("{} entities with a vector", points.len()));
    // Series per colour bucket, remembering which entity each point is.
    let mut series: Vec<(Vec<[f64; 2]>, Vec<usize>)> = vec![(vec![], vec![]); BUCKETS.len()];
    for &(e, p) in &points {
        let b = bucket(table.counts[e]);
        series[b].0.push(p);
        series[b].1.push(e);
    }
    let names: Vec<(String, Vec<String>)> = BUCKETS
        .iter()
        .zip(&series)
        .map(|(b, s)| {
            (
                b.1.to_string(),
                s.1.iter()
                    .map(|&e| format!("{} ({} contexts)", table.entity_names[e], table.counts[e]))
                    .collect(),
            )
        })
        .collect();
    let selected = app
        .selected
        .and_then(|s| points.iter().find(|p| p.0 == s).map(|p| (s, p.1)));
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
            } => names
                .iter()
                .find(|(n, _)| n == plot_name)
                .and_then(|(_, v)| v.get(*index).cloned())
                .or_else(|| Some(plot_name.to_string())),
            HoverPosition::Elsewhere { .. } => None,
        })
        .show(ui, |plot| {
            for (i, (pts, _)) in series.iter().enumerate() {
                if !pts.is_empty() {
                    plot.points(
                        Points::new(BUCKETS[i].1, pts.clone())
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
                .map(|&(e, p)| {
                    (
                        e,
                        resp.transform
                            .position_from_point(&PlotPoint::new(p[0], p[1]))
                            .distance(pointer),
                    )
                })
                .min_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((e, d)) = nearest {
                if d < 12.0 {
                    app.commands.push(Command::Select(e));
                }
            }
        }
    }
}
