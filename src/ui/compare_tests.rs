//! The Compare tab, driven headless like the other tabs (see `tests.rs`): the demo's table
//! (linked mentions) against a table of the same sample built by name matching.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use clap::Parser;
use egui::Role;
use egui_kittest::kittest::{NodeT as _, Queryable as _};
use egui_kittest::Harness;
use pelt::analysis::compare::{compare_tables, Comparison};
use pelt::table::Table;

use super::session::{CompareCommand, CompareState};
use super::tests::{click_tab, demo_project_in, harness_for, has_label_containing, wait_for};
use super::*;

/// `pelt build` of the bundled sample into `out` with `mentions` (links or names).
pub(super) fn build_sample(out: &Path, mentions: &str) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("assets/sample/pubmed-linked.jsonl");
    let entities = root.join("assets/sample/pubmed-entities.tsv");
    let args: Vec<String> = vec![
        "pelt".into(),
        "build".into(),
        "--corpus".into(),
        corpus.display().to_string(),
        "--entities".into(),
        entities.display().to_string(),
        "--mentions".into(),
        mentions.into(),
        "--out".into(),
        out.display().to_string(),
    ];
    crate::cli::run(crate::cli::Cli::parse_from(args)).expect("the sample builds");
}

/// The rows of the list of shared entities, as shown (their accessible labels).
fn rows(h: &Harness<'static, App>) -> Vec<String> {
    h.query_all_by_role(Role::Row)
        .filter_map(|n| n.accesskit_node().label())
        .collect()
}

fn row_label(c: &Comparison, i: usize) -> String {
    format!("{}, Jaccard {:.3}", c.shared[i].name, c.shared[i].jaccard)
}

fn compare_with(h: &mut Harness<'static, App>, b: PathBuf) {
    h.state_mut()
        .apply(Command::Compare(CompareCommand::SetTable(b)));
    h.run_ok();
    wait_for(h, "the comparison", |a| {
        a.session.compare_running().is_none()
            && (a.session.compared().is_some() || a.session.compare.error.is_some())
    });
}

#[test]
fn compare_tab_shows_jaccard_neighbours_side_by_side_and_the_aligned_maps() {
    let dir = tempfile::tempdir().unwrap();
    let project = demo_project_in(dir.path(), |_| {});
    let (a_path, b_path) = (
        dir.path().join("demo.safetensors"),
        dir.path().join("names.safetensors"),
    );
    build_sample(&a_path, "links");
    build_sample(&b_path, "names");
    let mut h = harness_for(&project);
    wait_for(&mut h, "the demo's table", |a| a.session.table.is_some());

    // Before a second table: what Compare is and how to start.
    click_tab(&mut h, "Compare");
    assert!(has_label_containing(&h, "Nothing to compare with yet"));
    assert!(has_label_containing(
        &h,
        "Jaccard@k = (neighbours in both lists) / (neighbours in either list)"
    ));
    assert!(h.query_by_label("Open a second table…").is_some());

    // The comparison on the worker, against the same computed here.
    compare_with(&mut h, b_path.clone());
    let got = h.state().session.compared().expect("compared").clone();
    let (ta, tb) = (Table::load(&a_path).unwrap(), Table::load(&b_path).unwrap());
    let never = AtomicBool::new(false);
    let st = CompareState::default();
    let want = compare_tables(&ta, &tb, st.k, st.center, &never, &mut |_, _| {})
        .unwrap()
        .unwrap();
    let c = &got.comparison;
    assert_eq!(
        (c.found_a, c.found_b, c.shared.len(), c.only_a, c.only_b),
        (
            want.found_a,
            want.found_b,
            want.shared.len(),
            want.only_a,
            want.only_b
        )
    );
    assert!((c.mean_jaccard - want.mean_jaccard).abs() < 1e-9);
    assert!(want.shared.len() > 100 && want.mean_jaccard < 1.0);
    let summary = format!(
        "{} found in A, {} in B: {} shared, {} only in A, {} only in B; mean Jaccard@{} {:.3}",
        want.found_a,
        want.found_b,
        want.shared.len(),
        want.only_a,
        want.only_b,
        want.k,
        want.mean_jaccard
    );
    assert!(has_label_containing(&h, &summary), "{summary}");
    assert!(has_label_containing(&h, "names.safetensors"));
    assert_eq!(got.maps.a.len(), c.shared.len());
    assert_eq!(got.maps.b.aligned.len(), c.shared.len());
    assert!(h
        .query_by_label("Tables A and B on one map, B aligned onto A")
        .is_some());

    // Most changed first.
    let shown = rows(&h);
    assert!(shown.len() > 10, "{shown:?}");
    let most_changed = want.most_changed();
    let expect: Vec<String> = most_changed[..shown.len()]
        .iter()
        .map(|&i| row_label(&want, i))
        .collect();
    assert_eq!(shown, expect);

    // A click on the most changed shows both neighbour lists, marks what only one has, and
    // selects the entity everywhere.
    let first = most_changed[0];
    let e = &want.shared[first];
    assert!(!has_label_containing(&h, "Nearest in A"));
    h.get_by_role_and_label(Role::Row, &row_label(&want, first))
        .click();
    h.run_ok();
    assert_eq!(h.state().session.selected, Some(e.row_a));
    assert_eq!(h.state().session.compare_selected(), Some(first));
    assert!(has_label_containing(&h, "Nearest in A"));
    assert!(has_label_containing(&h, "Nearest in B"));
    let in_b: Vec<u32> = e.neighbours_b.iter().map(|x| x.0).collect();
    let only_a = e
        .neighbours_a
        .iter()
        .filter(|x| !in_b.contains(&x.0))
        .count();
    assert!(only_a > 0, "the most changed entity has new neighbours");
    assert_eq!(h.query_all_by_label("only in A").count(), only_a);
    assert_eq!(h.query_all_by_label("only in B").count(), only_a);
    for &(j, _) in e.neighbours_a.iter().chain(&e.neighbours_b) {
        let name = &want.shared[j as usize].name;
        assert!(
            h.query_all_by_role_and_label(Role::Button, name)
                .next()
                .is_some(),
            "{name} is listed"
        );
    }
    // The selection is the session's: the other tabs follow it.
    assert_eq!(
        h.state().session.entity_name(e.row_a),
        e.name,
        "the entity selected in the window"
    );

    // Sorting: Jaccard turns around (least changed first), then by entity name.
    h.get_by_label("Sort by Jaccard").click();
    h.run_ok();
    let shown = rows(&h);
    let expect: Vec<String> = most_changed
        .iter()
        .rev()
        .take(shown.len())
        .map(|&i| row_label(&want, i))
        .collect();
    assert_eq!(shown, expect, "the highest Jaccard first");
    h.get_by_label("Sort by Entity").click();
    h.run_ok();
    let shown = rows(&h);
    let mut by_name: Vec<usize> = (0..want.shared.len()).collect();
    by_name.sort_by_key(|&i| {
        (
            want.shared[i].name.to_lowercase(),
            want.shared[i].id.clone(),
        )
    });
    let expect: Vec<String> = by_name[..shown.len()]
        .iter()
        .map(|&i| row_label(&want, i))
        .collect();
    assert_eq!(shown, expect, "A to Z");

    // A file that is not a table: said in the window, nothing else breaks.
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a table at all").unwrap();
    compare_with(&mut h, junk);
    assert!(has_label_containing(&h, "Cannot compare"));
    assert!(has_label_containing(&h, "not a usable PELT table"));
    assert!(h.state().session.compared().is_none());
    // And back to B.
    compare_with(&mut h, b_path);
    assert!(has_label_containing(&h, &summary));
}
