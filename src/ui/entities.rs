//! The entity table: searchable, sortable by clicking a column header, fast for long lists.

use egui::{FontId, Rect, RichText, Sense, Ui};

use super::widgets::{self, hint};
use super::{App, SortKey};

/// Which rows the table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    All,
    Found,
    NotFound,
}

const ROW_H: f32 = 22.0;

/// One row's values (contexts and mentions are known once a table exists).
#[derive(Debug, Clone, PartialEq)]
pub struct Row<'a> {
    pub index: usize,
    pub name: &'a str,
    pub id: &'a str,
    pub contexts: Option<i64>,
    pub mentions: Option<u64>,
}

impl Row<'_> {
    fn status(&self) -> (&'static str, u8) {
        match self.contexts {
            None => ("not built", 2),
            Some(0) => ("not found", 0),
            Some(_) => ("found", 1),
        }
    }
}

pub fn rows(app: &App) -> Vec<Row<'_>> {
    (0..app.entity_count())
        .map(|i| Row {
            index: i,
            name: app.entity_name(i),
            id: app.entity_id(i),
            contexts: app.table.as_ref().map(|t| t.counts[i]),
            mentions: app
                .table
                .as_ref()
                .map(|t| t.found.get(i).copied().unwrap_or(0)),
        })
        .collect()
}

/// The rows matching `filter` (name, id or alias, case-insensitive) and `show`, sorted.
pub fn visible_rows(
    app: &App,
    filter: &str,
    show: Show,
    sort: SortKey,
    ascending: bool,
) -> Vec<usize> {
    let f = filter.trim().to_lowercase();
    let mut rows: Vec<Row> = rows(app)
        .into_iter()
        .filter(|r| {
            f.is_empty()
                || r.name.to_lowercase().contains(&f)
                || r.id.to_lowercase().contains(&f)
                || app
                    .entity_aliases(r.index)
                    .iter()
                    .any(|a| a.to_lowercase().contains(&f))
        })
        .filter(|r| match show {
            Show::All => true,
            Show::Found => r.contexts.is_some_and(|c| c > 0),
            Show::NotFound => r.contexts == Some(0),
        })
        .collect();
    rows.sort_by(|a, b| {
        let o = match sort {
            SortKey::Row => a.index.cmp(&b.index),
            SortKey::Name => a.name.to_lowercase().cmp(&b.name.to_lowercase()),
            SortKey::Id => a.id.cmp(b.id),
            SortKey::Contexts => a.contexts.cmp(&b.contexts),
            SortKey::Mentions => a.mentions.cmp(&b.mentions),
            SortKey::Status => a.status().1.cmp(&b.status().1),
        };
        let o = o.then(a.index.cmp(&b.index));
        if ascending {
            o
        } else {
            o.reverse()
        }
    });
    rows.into_iter().map(|r| r.index).collect()
}

struct Columns {
    x: [f32; 6],
}

impl Columns {
    fn new(rect: Rect) -> Columns {
        let fixed = [92.0, 66.0, 70.0, 70.0];
        let name_w = (rect.width() - fixed.iter().sum::<f32>()).max(80.0);
        let mut x = [rect.left(); 6];
        x[1] = x[0] + name_w;
        for i in 0..4 {
            x[i + 2] = x[i + 1] + fixed[i];
        }
        Columns { x }
    }
    fn cell(&self, i: usize, rect: Rect) -> Rect {
        Rect::from_x_y_ranges(self.x[i] + 4.0..=self.x[i + 1] - 6.0, rect.y_range())
    }
}

pub fn panel(app: &mut App, ui: &mut Ui) {
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        ui.label(RichText::new("Entities").strong().size(16.0));
        let n = app.entity_count();
        let summary = match &app.table {
            Some(t) => {
                let nf = t.counts.iter().filter(|&&c| c == 0).count();
                format!(
                    "{n} · {} found · {nf} not found · {} contexts",
                    n - nf,
                    t.contexts.len()
                )
            }
            None if n > 0 => format!("{n} · table not built"),
            None => String::new(),
        };
        ui.weak(summary);
    });
    if app.entity_count() == 0 {
        widgets::empty_state(
            ui,
            "No entities",
            "Choose an entity list in the project panel, or drop a .tsv file onto the window.",
        );
        return;
    }
    ui.horizontal(|ui| {
        let l = ui.label("Search");
        let r = ui
            .add(
                egui::TextEdit::singleline(&mut app.entity_filter)
                    .hint_text("name, id or alias")
                    .desired_width(170.0),
            )
            .labelled_by(l.id);
        if r.changed() {
            app.scroll_to_selected = false;
        }
        if !app.entity_filter.is_empty()
            && ui
                .small_button("×")
                .on_hover_text("Clear the search")
                .clicked()
        {
            app.entity_filter.clear();
        }
        if app.table.is_some() {
            egui::ComboBox::from_id_salt("entity_show")
                .width(90.0)
                .selected_text(match app.entity_show {
                    Show::All => "all",
                    Show::Found => "found",
                    Show::NotFound => "not found",
                })
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut app.entity_show, Show::All, "all");
                    ui.selectable_value(&mut app.entity_show, Show::Found, "found");
                    ui.selectable_value(&mut app.entity_show, Show::NotFound, "not found");
                })
                .response
                .on_hover_text(
                    "Show all entities, only those found in the corpus, or only those not found",
                );
        }
    });

    let visible = visible_rows(
        app,
        &app.entity_filter,
        app.entity_show,
        app.state.sort,
        app.state.ascending,
    );
    keyboard_navigation(app, ui, &visible);

    // Header.
    let (hrect, _) = ui.allocate_exact_size(
        egui::vec2(ui.available_width(), ROW_H + 2.0),
        Sense::hover(),
    );
    let cols = Columns::new(hrect);
    let headers = [
        (
            "Name",
            SortKey::Name,
            "Entity name (aliases are searched too)",
        ),
        ("ID", SortKey::Id, "Entity id from the list"),
        (
            "Contexts",
            SortKey::Contexts,
            "Contexts used for the vector: mentions sampled, at most K",
        ),
        (
            "Mentions",
            SortKey::Mentions,
            "Mentions found in the corpus before sampling to K",
        ),
        (
            "Status",
            SortKey::Status,
            "found: has a vector; not found: never mentioned in the corpus",
        ),
    ];
    for (i, (label, key, hover)) in headers.iter().enumerate() {
        let cell = cols.cell(i, hrect);
        let id = ui.make_persistent_id(("entity_header", i));
        let resp = ui.interact(cell, id, Sense::click());
        let color = if resp.hovered() {
            ui.visuals().strong_text_color()
        } else {
            ui.visuals().text_color()
        };
        let right = i == 2 || i == 3;
        let galley =
            ui.painter()
                .layout_no_wrap(label.to_string(), FontId::proportional(13.5), color);
        let sorted = app.state.sort == *key;
        let tri_w = if sorted { 12.0 } else { 0.0 };
        let x = if right {
            cell.right() - galley.size().x - tri_w
        } else {
            cell.left()
        };
        let pos = egui::pos2(x, cell.center().y - galley.size().y / 2.0);
        let text_right = x + galley.size().x;
        ui.painter().galley(pos, galley, color);
        if sorted {
            // A small triangle: up for ascending, down for descending.
            let c = egui::pos2(text_right + 7.0, cell.center().y);
            let (a, b, d) = if app.state.ascending {
                (
                    c + egui::vec2(-4.0, 3.0),
                    c + egui::vec2(4.0, 3.0),
                    c + egui::vec2(0.0, -3.5),
                )
            } else {
                (
                    c + egui::vec2(-4.0, -3.0),
                    c + egui::vec2(4.0, -3.0),
                    c + egui::vec2(0.0, 3.5),
                )
            };
            ui.painter().add(egui::Shape::convex_polygon(
                vec![a, b, d],
                color,
                egui::Stroke::NONE,
            ));
        }
        resp.widget_info(|| {
            egui::WidgetInfo::labeled(egui::Role::ColumnHeader, true, format!("Sort by {label}"))
        });
        if resp
            .on_hover_text(format!("{hover}. Click to sort."))
            .clicked()
        {
            if app.state.sort == *key {
                app.state.ascending = !app.state.ascending;
            } else {
                app.state.sort = *key;
                app.state.ascending = !matches!(key, SortKey::Contexts | SortKey::Mentions);
            }
        }
    }
    ui.painter().hline(
        hrect.x_range(),
        hrect.bottom(),
        ui.visuals().widgets.noninteractive.bg_stroke,
    );

    let mut scroll = egui::ScrollArea::vertical()
        .id_salt("entity_rows")
        .auto_shrink([false, false]);
    if app.scroll_to_selected {
        if let Some(pos) = app
            .selected
            .and_then(|s| visible.iter().position(|&i| i == s))
        {
            let spacing = ui.spacing().item_spacing.y;
            scroll =
                scroll.vertical_scroll_offset(((pos as f32) * (ROW_H + spacing) - 150.0).max(0.0));
        }
        app.scroll_to_selected = false;
    }
    let footer_h = 22.0;
    let rows_h = (ui.available_height() - footer_h).max(60.0);
    scroll
        .max_height(rows_h)
        .show_rows(ui, ROW_H, visible.len(), |ui, range| {
            for &i in &visible[range] {
                row(app, ui, i);
            }
        });
    hint(
        ui,
        "Click a row to select the entity, Up/Down keys to move; click a header to sort.",
    );
}

/// Paints `text` in `cell`, cut with "…" when it does not fit.
fn cell_text(ui: &Ui, cell: Rect, text: &str, font: FontId, color: egui::Color32, right: bool) {
    let mut job = egui::text::LayoutJob::single_section(
        text.to_string(),
        egui::TextFormat::simple(font, color),
    );
    job.wrap = egui::text::TextWrapping::truncate_at_width(cell.width().max(10.0));
    let galley = ui.painter().layout_job(job);
    let x = if right {
        cell.right() - galley.size().x
    } else {
        cell.left()
    };
    ui.painter().galley(
        egui::pos2(x, cell.center().y - galley.size().y / 2.0),
        galley,
        color,
    );
}

fn row(app: &mut App, ui: &mut Ui, i: usize) {
    let (rect, resp) =
        ui.allocate_exact_size(egui::vec2(ui.available_width(), ROW_H), Sense::click());
    let selected = app.selected == Some(i);
    let v = ui.visuals();
    if selected {
        ui.painter().rect_filled(rect, 3.0, v.selection.bg_fill);
    } else if resp.hovered() {
        ui.painter()
            .rect_filled(rect, 3.0, v.widgets.hovered.weak_bg_fill);
    }
    let text_color = if selected {
        v.selection.stroke.color
    } else {
        v.text_color()
    };
    let cols = Columns::new(rect);
    let name = app.entity_name(i).to_string();
    let contexts = app.table.as_ref().map(|t| t.counts[i]);
    let mentions = app
        .table
        .as_ref()
        .map(|t| t.found.get(i).copied().unwrap_or(0));
    let font = FontId::proportional(14.0);
    cell_text(
        ui,
        cols.cell(0, rect),
        &name,
        font.clone(),
        text_color,
        false,
    );
    let id_color = if selected {
        text_color
    } else {
        v.weak_text_color()
    };
    cell_text(
        ui,
        cols.cell(1, rect),
        app.entity_id(i),
        FontId::monospace(12.0),
        id_color,
        false,
    );
    let num = |n: Option<String>| n.unwrap_or_else(|| "—".into());
    cell_text(
        ui,
        cols.cell(2, rect),
        &num(contexts.map(|c| c.to_string())),
        font.clone(),
        text_color,
        true,
    );
    cell_text(
        ui,
        cols.cell(3, rect),
        &num(mentions.map(|c| c.to_string())),
        font,
        text_color,
        true,
    );
    let (status, color) = match contexts {
        None => ("not built", v.weak_text_color()),
        Some(0) => ("not found", widgets::WARN),
        Some(_) => ("found", widgets::GOOD),
    };
    cell_text(
        ui,
        cols.cell(4, rect),
        status,
        FontId::proportional(13.0),
        color,
        false,
    );
    resp.widget_info(|| {
        egui::WidgetInfo::selected(egui::Role::ListBoxOption, true, selected, &name)
    });
    let resp = resp.on_hover_text(entity_tooltip(app, i));
    if resp.clicked() {
        app.selected = Some(i);
    }
}

fn entity_tooltip(app: &App, i: usize) -> String {
    let aliases = app.entity_aliases(i);
    let mut s = format!("{} ({})", app.entity_name(i), app.entity_id(i));
    if !aliases.is_empty() {
        s.push_str(&format!("\naliases: {}", aliases.join(", ")));
    }
    if let Some(t) = &app.table {
        s.push_str(&format!(
            "\n{} contexts used, {} mentions in the corpus",
            t.counts[i],
            t.found.get(i).copied().unwrap_or(0)
        ));
    }
    s
}

/// Up/Down move the selection through the visible rows while no text field has focus.
fn keyboard_navigation(app: &mut App, ui: &Ui, visible: &[usize]) {
    if visible.is_empty() || ui.ctx().memory(|m| m.focused().is_some()) {
        return;
    }
    let (up, down) = ui.input(|i| {
        (
            i.key_pressed(egui::Key::ArrowUp),
            i.key_pressed(egui::Key::ArrowDown),
        )
    });
    if !up && !down {
        return;
    }
    let pos = app
        .selected
        .and_then(|s| visible.iter().position(|&i| i == s));
    let next = match (pos, down) {
        (None, _) => 0,
        (Some(p), true) => (p + 1).min(visible.len() - 1),
        (Some(p), false) => p.saturating_sub(1),
    };
    app.selected = Some(visible[next]);
    app.scroll_to_selected = true;
}
