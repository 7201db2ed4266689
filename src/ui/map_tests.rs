//! Headless tests of the Map tab on the bundled demo table: layouts (made, kept in the
//! project's folder and read back), colouring by the evaluation's labels with a legend that
//! hides classes, search highlighting, lines to the nearest neighbours, and box and lasso
//! sets that filter the entity list and export as an entity list.

use egui::Pos2;
use egui_kittest::kittest::Queryable as _;
use egui_kittest::Harness;

use pelt::analysis::maps::{read_map_tsv, MapMethod};
use pelt::entities::EntityList;

use super::map::{classes_of, rows_in_box};
use super::session::{ColourBy, MapCommand};
use super::tests::{click_tab, demo_project_in, harness_for, has_label_containing, wait_for};
use super::*;

/// Drags on the map from `from` through `via` to `to` (screen points), a frame per step.
fn drag(h: &mut Harness<'static, App>, path: &[Pos2]) {
    h.hover_at(path[0]);
    h.run_ok();
    h.drag_at(path[0]);
    h.run_ok();
    for p in &path[1..] {
        h.hover_at(*p);
        h.run_ok();
    }
    h.drop_at(*path.last().expect("a path"));
    h.run_ok();
}

fn map_rect(h: &Harness<'static, App>, method: &str) -> egui::Rect {
    h.get_by_label(&format!("{method} map of the entity vectors"))
        .rect()
}

#[test]
fn map_layouts_colours_search_neighbours_and_sets() {
    let dir = tempfile::tempdir().unwrap();
    // The demo's table, built from its links (a fresh clone has none in projects/).
    super::compare_tests::build_sample(&dir.path().join("demo.safetensors"), "links");
    let project = demo_project_in(dir.path(), |_| {});
    let mut h = harness_for(&project);
    wait_for(&mut h, "the table", |a| a.session.table.is_some());
    let table = h.state().session.table.clone().unwrap();
    assert_eq!(h.state().session.state.map_colour, ColourBy::Evaluate);
    click_tab(&mut h, "Map");

    // The default layout is t-SNE, kept in the project's folder under maps/.
    wait_for(&mut h, "the t-SNE map and its colours", |a| {
        a.session.map.layout.is_some() && a.session.map.classes.is_some()
    });
    let tsne = h.state().session.map.layout.clone().unwrap();
    assert_eq!(tsne.method.label(), "t-SNE");
    assert!(!tsne.from_cache);
    let kept = tsne.method.cache_file(dir.path(), &table);
    assert_eq!(tsne.cache.as_ref(), Some(&kept));
    let read: Vec<(usize, [f64; 2])> = read_map_tsv(&kept, &table).unwrap();
    let shown: Vec<(usize, [f64; 2])> = tsne.points.iter().map(|p| (p.entity, p.xy)).collect();
    assert_eq!(read, shown, "the kept map is the one shown");

    // Colours: the FewRel relation slots of val_pubmed.json, as the library reads them.
    let source = h.state().session.label_source(&ColourBy::Evaluate).unwrap();
    let classes = pelt::eval::row_classes(&table, &source, super::session::MAX_CLASSES).unwrap();
    let drawn = classes_of(&table, &tsne.points, Some(&classes));
    for (name, count) in &classes.classes {
        let c = drawn
            .iter()
            .find(|c| c.name == *name)
            .expect("a class per label");
        assert_eq!(c.count, *count);
        assert!(
            h.query_by_label(&format!("{name} ({count})")).is_some(),
            "legend entry {name} ({count})"
        );
    }
    // The legend hides a class.
    let (top, top_count) = classes.classes[0].clone();
    let before = h.state().map.shown.1;
    h.get_by_label(&format!("{top} ({top_count})")).click();
    h.run_ok();
    assert_eq!(h.state().map.hidden, vec![top.clone()]);
    assert_eq!(h.state().map.shown.1, before - top_count);
    h.get_by_label(&format!("{top} ({top_count})")).click();
    h.run_ok();
    assert_eq!(h.state().map.shown.1, before);

    // Search: the matches are counted (and ringed).
    let want = tsne
        .points
        .iter()
        .filter(|p| table.entity_names[p.entity].to_lowercase().contains("cell"))
        .count();
    assert!(want > 1);
    h.get_by_label("Find:").click();
    h.run_ok();
    h.get_by_label("Find:").type_text("cell");
    h.run_ok();
    assert!(has_label_containing(&h, &format!("{want} match “cell”")));

    // The selected entity is joined to its nearest neighbours (the Neighbours tab's list).
    let e = table.index_of("apoptosis").unwrap();
    h.state_mut().apply(Command::Select(e));
    wait_for(&mut h, "the neighbours", |a| {
        a.session.neighbours.as_ref().is_some_and(|n| n.entity == e)
    });
    h.run_ok();
    let k = h
        .state()
        .session
        .neighbours
        .as_ref()
        .unwrap()
        .entities
        .len();
    assert_eq!(h.state().map.lines, k);
    h.get_by_label(&format!(
        "Lines to the {} nearest",
        h.state().session.state.neighbours_k
    ))
    .click();
    h.run_ok();
    assert_eq!(h.state().map.lines, 0);

    // UMAP, then back to t-SNE: read back from the project's folder, the same map.
    h.get_by_label("UMAP").click();
    h.run_ok();
    wait_for(&mut h, "the UMAP map", |a| {
        a.session
            .map
            .layout
            .as_ref()
            .is_some_and(|l| l.method.label() == "UMAP")
    });
    assert!(dir.path().join("maps").read_dir().unwrap().count() == 2);
    h.get_by_label("t-SNE").click();
    h.run_ok();
    wait_for(&mut h, "the kept t-SNE map", |a| {
        a.session
            .map
            .layout
            .as_ref()
            .is_some_and(|l| l.method.label() == "t-SNE")
    });
    let again = h.state().session.map.layout.clone().unwrap();
    assert!(again.from_cache);
    assert_eq!(again.points, tsne.points);
    assert!(matches!(again.method, MapMethod::Tsne(_)));

    // Box: a rectangle over the upper left quarter of the map makes a set.
    h.get_by_label("Box").click();
    h.run_ok();
    let r = map_rect(&h, "t-SNE");
    let (a, b) = (r.min + egui::vec2(5.0, 5.0), r.center());
    drag(&mut h, &[a, r.center() - egui::vec2(40.0, 40.0), b]);
    let set = h
        .state()
        .session
        .map
        .set
        .clone()
        .expect("a set from the box");
    assert!(
        !set.is_empty() && set.len() < tsne.points.len(),
        "{} of {}",
        set.len(),
        tsne.points.len()
    );
    // The set is what lies in the box, whatever the zoom: check its corners against the
    // points inside and outside.
    let inside: Vec<[f64; 2]> = set
        .iter()
        .map(|r| tsne.points.iter().find(|p| p.entity == *r).unwrap().xy)
        .collect();
    let (x1, y0) = (
        inside.iter().map(|p| p[0]).fold(f64::MIN, f64::max),
        inside.iter().map(|p| p[1]).fold(f64::MAX, f64::min),
    );
    let mut boxed = rows_in_box(&tsne.points, [f64::MIN, y0], [x1, f64::MAX]);
    boxed.sort_unstable();
    assert_eq!(
        *set, boxed,
        "the set is every point up and left of its own extremes"
    );

    // The entity list shows only the set, when asked.
    h.get_by_label("Show only these in the entity list").click();
    h.run_ok();
    let state = h.state_mut();
    let mut visible = state.entities.visible(&state.session).to_vec();
    visible.sort_unstable();
    assert_eq!(visible, *set);

    // Exported as an entity list.
    let out = dir.path().join("set.tsv");
    h.state_mut()
        .apply(Command::Map(MapCommand::ExportSet(out.clone())));
    wait_for(&mut h, "the set written", |a| {
        a.session
            .status
            .as_deref()
            .is_some_and(|s| s.starts_with("Saved"))
    });
    let list = EntityList::load(&out).unwrap();
    let ids: Vec<&str> = set.iter().map(|&r| table.entity_ids[r].as_str()).collect();
    assert_eq!(
        list.entities
            .iter()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>(),
        ids
    );

    // Lasso: a triangle in the lower right makes another set, none of it in the upper left.
    h.get_by_label("Lasso").click();
    h.run_ok();
    let (c, m) = (r.center(), r.max - egui::vec2(5.0, 5.0));
    drag(
        &mut h,
        &[
            c,
            Pos2::new(m.x, c.y),
            m,
            Pos2::new(c.x, m.y),
            c + egui::vec2(0.0, 2.0),
        ],
    );
    let lasso = h
        .state()
        .session
        .map
        .set
        .clone()
        .expect("a set from the lasso");
    assert!(!lasso.is_empty());
    assert!(lasso.iter().all(|r| set.binary_search(r).is_err()));
    h.get_by_label("Clear set").click();
    h.run_ok();
    assert!(h.state().session.map.set.is_none());
}
