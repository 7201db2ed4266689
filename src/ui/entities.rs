//! The entity table: searchable, sortable by clicking a column header, fast for long lists.

use egui::{FontId, Rect, RichText, Sense, Ui};

use super::session::SortKey;
use super::widgets::{self, hint};
use super::{Command, Session};

pub use super::rows::Show;
use super::rows::{RowIndex, RowQuery};

const ROW_H: f32 = 22.0;

/// Up to this many rows the list is searched and sorted within the frame; longer lists by the
/// session's [`super::rows::RowOrders`] thread.
pub const INLINE_MAX_ROWS: usize = 50_000;

/// The entity list's view state: search, filter, scroll and the visible rows. The rows are
/// recomputed only when the entities, the search, the filter or the sort change: at once for
/// a short list, else in the background, the previous rows staying shown until the answer
/// for the current query arrives.
pub struct EntitiesPanel {
    pub filter: String,
    pub show: Show,
    visible: Vec<usize>,
    /// The query `visible` answers.
    shown: Option<RowQuery>,
    /// The query sent to the rows thread last, and its id (other answers are stale).
    asked: Option<(u64, RowQuery)>,
    /// The index of a short list, kept while its rows do not change.
    inline: Option<(u64, RowIndex)>,
    /// The selection and rows last seen: when either changes, the list scrolls to the selection.
    seen: (Option<usize>, u64),
    scroll_to_selected: bool,
}

impl Default for EntitiesPanel {
    fn default() -> Self {
        EntitiesPanel {
            filter: String::new(),
            show: Show::All,
            visible: vec![],
            shown: None,
            asked: None,
            inline: None,
            seen: (None, u64::MAX),
            scroll_to_selected: false,
        }
    }
}

impl EntitiesPanel {
    fn query(&self, s: &Session) -> RowQuery {
        RowQuery {
            rows_gen: s.rows_gen,
            filter: self.filter.clone(),
            show: self.show,
            sort: s.state.sort,
            ascending: s.state.ascending,
            set: s.set_filter(),
        }
    }

    /// Whether the visible rows answer the current search, filter and sort.
    pub fn is_current(&self, s: &Session) -> bool {
        self.shown.as_ref() == Some(&self.query(s))
    }

    /// Whether the rows of the current query are still being computed.
    pub fn is_waiting(&self, s: &Session) -> bool {
        !self.is_current(s)
    }

    /// The visible rows: the answer to the current query once known, until then the previous
    /// answer (none when the entity rows themselves changed).
    pub fn visible(&mut self, s: &Session) -> &[usize] {
        let q = self.query(s);
        if self.shown.as_ref() == Some(&q) {
            return &self.visible;
        }
        let n = s.entity_count();
        if q.is_identity() || n <= INLINE_MAX_ROWS {
            self.visible = if q.is_identity() {
                let mut rows: Vec<usize> = (0..n).collect();
                if !q.ascending {
                    rows.reverse();
                }
                rows
            } else {
                match s.row_source() {
                    Some(src) => {
                        if self.inline.as_ref().is_none_or(|(g, _)| *g != q.rows_gen) {
                            self.inline = Some((q.rows_gen, RowIndex::new(src)));
                        }
                        let (_, index) = self.inline.as_mut().expect("set above");
                        index.rows(&q)
                    }
                    None => vec![],
                }
            };
            self.shown = Some(q);
            self.asked = None;
            return &self.visible;
        }
        self.inline = None;
        if self.asked.as_ref().is_none_or(|(_, a)| *a != q) {
            self.asked = Some((s.rows.ask(q.clone()), q.clone()));
        }
        for answer in s.rows.answers() {
            if self.asked.as_ref().is_some_and(|(id, _)| *id == answer.id) {
                self.visible = answer.rows;
                self.shown = Some(answer.query);
                self.asked = None;
            }
        }
        if self
            .shown
            .as_ref()
            .is_none_or(|sh| sh.rows_gen != q.rows_gen)
        {
            // Rows of other entities: nothing to show until the answer arrives.
            self.visible.clear();
        }
        &self.visible
    }

    pub fn ui(&mut self, app: &Session, ui: &mut Ui, out: &mut Vec<Command>) {
        if self.seen != (app.selected, app.rows_gen) {
            self.seen = (app.selected, app.rows_gen);
            self.scroll_to_selected = true;
        }
        panel(self, app, ui, out);
    }
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

fn panel(view: &mut EntitiesPanel, app: &Session, ui: &mut Ui, out: &mut Vec<Command>) {
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
                    t.context_count()
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
                egui::TextEdit::singleline(&mut view.filter)
                    .hint_text("name, id or alias")
                    .desired_width(170.0),
            )
            .labelled_by(l.id);
        if r.changed() {
            view.scroll_to_selected = false;
        }
        if !view.filter.is_empty()
            && ui
                .small_button("×")
                .on_hover_text("Clear the search")
                .clicked()
        {
            view.filter.clear();
        }
        if app.table.is_some() {
            egui::ComboBox::from_id_salt("entity_show")
                .width(90.0)
                .selected_text(match view.show {
                    Show::All => "all",
                    Show::Found => "found",
                    Show::NotFound => "not found",
                })
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut view.show, Show::All, "all");
                    ui.selectable_value(&mut view.show, Show::Found, "found");
                    ui.selectable_value(&mut view.show, Show::NotFound, "not found");
                })
                .response
                .on_hover_text(
                    "Show all entities, only those found in the corpus, or only those not found",
                );
        }
    });

    let visible = view.visible(app).to_vec();
    if view.is_waiting(app) {
        ui.weak("Searching and sorting…");
    }
    keyboard_navigation(app, ui, &visible, out);

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
            let c = egui::pos2(text_right + 7.0, cell.center().y);
            super::widgets::sort_arrow(ui, c, app.state.ascending, color);
        }
        resp.widget_info(|| {
            egui::WidgetInfo::labeled(egui::Role::ColumnHeader, true, format!("Sort by {label}"))
        });
        if resp
            .on_hover_text(format!("{hover}. Click to sort."))
            .clicked()
        {
            let mut state = app.state.clone();
            if state.sort == *key {
                state.ascending = !state.ascending;
            } else {
                state.sort = *key;
                state.ascending = !matches!(key, SortKey::Contexts | SortKey::Mentions);
            }
            out.push(Command::SetState(Box::new(state)));
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
    if view.scroll_to_selected {
        if let Some(pos) = app
            .selected
            .and_then(|s| visible.iter().position(|&i| i == s))
        {
            let spacing = ui.spacing().item_spacing.y;
            scroll =
                scroll.vertical_scroll_offset(((pos as f32) * (ROW_H + spacing) - 150.0).max(0.0));
        }
        view.scroll_to_selected = false;
    }
    let footer_h = 22.0;
    let rows_h = (ui.available_height() - footer_h).max(60.0);
    scroll
        .max_height(rows_h)
        .show_rows(ui, ROW_H, visible.len(), |ui, range| {
            for &i in &visible[range] {
                if row(app, ui, i) {
                    // A click selects without scrolling the list.
                    view.seen.0 = Some(i);
                    out.push(Command::Select(i));
                }
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

/// Draws row `i`; true when it was clicked.
fn row(app: &Session, ui: &mut Ui, i: usize) -> bool {
    let selected = app.selected == Some(i);
    let (rect, resp, text_color) = super::widgets::list_row(ui, ROW_H, selected);
    let v = ui.visuals();
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
    resp.on_hover_text(entity_tooltip(app, i)).clicked()
}

fn entity_tooltip(app: &Session, i: usize) -> String {
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
fn keyboard_navigation(app: &Session, ui: &Ui, visible: &[usize], out: &mut Vec<Command>) {
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
    out.push(Command::Select(visible[next]));
}
