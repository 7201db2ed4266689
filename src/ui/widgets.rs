//! Small drawing helpers shared by the panels.

use egui::text::LayoutJob;
use egui::{Color32, FontId, RichText, TextFormat, Ui};
use std::path::Path;

/// Norm A of the comparisons (lines, headers).
pub const A_COLOR: Color32 = Color32::from_rgb(70, 150, 255);
/// Norm B of the comparisons.
pub const B_COLOR: Color32 = Color32::from_rgb(240, 120, 40);
/// Background of a mask token in a sentence.
pub const MASK_BG: Color32 = Color32::from_rgb(245, 200, 60);
/// Background of a position that carries an entity vector.
pub const ENTITY_BG: Color32 = Color32::from_rgb(120, 200, 255);
pub const GOOD: Color32 = Color32::from_rgb(90, 190, 110);
pub const WARN: Color32 = Color32::from_rgb(235, 150, 50);
pub const BAD: Color32 = Color32::from_rgb(235, 80, 80);

/// A file's name (the whole path when it has none).
pub fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// A short explanatory paragraph in a weaker colour.
pub fn hint(ui: &mut Ui, text: impl Into<String>) {
    ui.label(RichText::new(text.into()).weak().size(12.5));
}

/// A section title.
pub fn section(ui: &mut Ui, text: &str) {
    ui.add_space(4.0);
    ui.label(RichText::new(text).strong().size(15.0));
}

fn plain(ui: &Ui, color: Option<Color32>) -> TextFormat {
    TextFormat {
        font_id: FontId::proportional(14.0),
        color: color.unwrap_or_else(|| ui.visuals().text_color()),
        ..Default::default()
    }
}

fn marked(bg: Color32) -> TextFormat {
    TextFormat {
        font_id: FontId::proportional(14.0),
        color: Color32::BLACK,
        background: bg,
        ..Default::default()
    }
}

/// `text` with the byte span `start..end` replaced by `mask`, drawn highlighted.
pub fn masked_sentence(ui: &Ui, text: &str, start: usize, end: usize, mask: &str) -> LayoutJob {
    let mut job = LayoutJob::default();
    let (start, end) = (start.min(text.len()), end.min(text.len()));
    let before = text.get(..start).unwrap_or("");
    let after = text.get(end..).unwrap_or("");
    job.append(before, 0.0, plain(ui, None));
    job.append(mask, 0.0, marked(MASK_BG));
    job.append(after, 0.0, plain(ui, None));
    job
}

/// Text with `[[name]]` segments (plugged entity vectors) and mask tokens highlighted.
pub fn highlighted_rewrite(ui: &Ui, text: &str, mask: &str) -> LayoutJob {
    let mut job = LayoutJob::default();
    let mut rest = text;
    while !rest.is_empty() {
        let ent = rest.find("[[");
        let msk = if mask.is_empty() {
            None
        } else {
            rest.find(mask)
        };
        match (ent, msk) {
            (Some(e), m) if m.is_none_or(|m| e <= m) => {
                let close = rest[e..]
                    .find("]]")
                    .map(|c| e + c + 2)
                    .unwrap_or(rest.len());
                job.append(&rest[..e], 0.0, plain(ui, None));
                job.append(&rest[e..close], 0.0, marked(ENTITY_BG));
                rest = &rest[close..];
            }
            (_, Some(m)) => {
                job.append(&rest[..m], 0.0, plain(ui, None));
                job.append(&rest[m..m + mask.len()], 0.0, marked(MASK_BG));
                rest = &rest[m + mask.len()..];
            }
            _ => {
                job.append(rest, 0.0, plain(ui, None));
                rest = "";
            }
        }
    }
    job
}

/// A horizontal bar for a value in 0..=1, with `text` printed after it.
pub fn bar(ui: &mut Ui, value: f32, width: f32, color: Color32, text: String) -> egui::Response {
    ui.horizontal(|ui| {
        ui.spacing_mut().item_spacing.x = 5.0;
        let (rect, _) = ui.allocate_exact_size(egui::vec2(width, 10.0), egui::Sense::hover());
        let p = ui.painter();
        p.rect_filled(rect, 2.0, ui.visuals().extreme_bg_color);
        let mut fill = rect;
        fill.set_width((width * value.clamp(0.0, 1.0)).max(1.0));
        p.rect_filled(fill, 2.0, color);
        ui.label(RichText::new(text).monospace().size(12.0));
    })
    .response
}

/// A probability as a short percentage ("12%", "0.4%").
pub fn percent(p: f32) -> String {
    if p >= 0.095 {
        format!("{:.0}%", p * 100.0)
    } else if p >= 0.00095 {
        format!("{:.1}%", p * 100.0)
    } else {
        format!("{:.2}%", p * 100.0)
    }
}

/// A colour from red (low) through yellow to green (high) for a cosine in -1..=1.
pub fn cosine_color(c: f32) -> Color32 {
    let t = ((c + 0.2) / 1.0).clamp(0.0, 1.0);
    let lerp = |a: u8, b: u8, t: f32| (a as f32 + (b as f32 - a as f32) * t) as u8;
    if t < 0.5 {
        let u = t * 2.0;
        Color32::from_rgb(
            lerp(BAD.r(), 230, u),
            lerp(BAD.g(), 200, u),
            lerp(BAD.b(), 60, u),
        )
    } else {
        let u = (t - 0.5) * 2.0;
        Color32::from_rgb(
            lerp(230, GOOD.r(), u),
            lerp(200, GOOD.g(), u),
            lerp(60, GOOD.b(), u),
        )
    }
}

/// A column of fill-mask predictions: token and probability bar.
pub fn predictions(ui: &mut Ui, preds: &[(String, f32)], color: Color32) {
    if preds.is_empty() {
        ui.weak("—");
        return;
    }
    egui::Grid::new(ui.next_auto_id())
        .num_columns(2)
        .spacing([8.0, 2.0])
        .show(ui, |ui| {
            for (tok, p) in preds {
                ui.label(RichText::new(tok).monospace().size(13.5));
                bar(ui, p.sqrt(), 70.0, color, percent(*p));
                ui.end_row();
            }
        });
}

/// A centred message for an empty tab.
/// A small triangle centred at `c`: up for ascending, down for descending.
pub fn sort_arrow(ui: &Ui, c: egui::Pos2, ascending: bool, color: Color32) {
    let s = if ascending { 1.0 } else { -1.0 };
    let points = vec![
        c + egui::vec2(-4.0, 3.0 * s),
        c + egui::vec2(4.0, 3.0 * s),
        c + egui::vec2(0.0, -3.5 * s),
    ];
    ui.painter().add(egui::Shape::convex_polygon(
        points,
        color,
        egui::Stroke::NONE,
    ));
}

/// A clickable row of the full width, its background showing selection or hover; returns its
/// rect, its response and the colour for its text.
pub fn list_row(ui: &mut Ui, height: f32, selected: bool) -> (egui::Rect, egui::Response, Color32) {
    let (rect, resp) = ui.allocate_exact_size(
        egui::vec2(ui.available_width(), height),
        egui::Sense::click(),
    );
    let v = ui.visuals();
    if selected {
        ui.painter().rect_filled(rect, 3.0, v.selection.bg_fill);
    } else if resp.hovered() {
        ui.painter()
            .rect_filled(rect, 3.0, v.widgets.hovered.weak_bg_fill);
    }
    let text = if selected {
        v.selection.stroke.color
    } else {
        v.text_color()
    };
    (rect, resp, text)
}

pub fn empty_state(ui: &mut Ui, title: &str, body: &str) {
    ui.add_space(40.0);
    ui.vertical_centered(|ui| {
        ui.label(RichText::new(title).size(18.0).strong());
        ui.add_space(6.0);
        ui.label(RichText::new(body).size(14.0).weak());
    });
}

/// A static "working" mark: unlike a spinner it does not repaint every frame, which keeps the
/// CPU for the model during long builds (the progress events repaint the window anyway).
pub fn working_dot(ui: &mut Ui) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(14.0, 14.0), egui::Sense::hover());
    ui.painter().circle_filled(rect.center(), 5.0, A_COLOR);
}
