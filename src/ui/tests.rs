//! Headless tests of the workbench: egui_kittest drives the real `App` through AccessKit
//! queries (labels and roles, as a screen reader would) while the real worker runs the bundled
//! model. Builds write into temporary folders, never into `projects/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui::Role;
use egui_kittest::kittest::{NodeT as _, Queryable as _};
use egui_kittest::Harness;
use pelt::model::DeviceChoice;
use pelt::progress::Phase;
use pelt::project::{bundled_demo, Project};
use pelt::table::Table;

use super::session::{classify_drop, DropKind};
use super::*;

const PROBE: &str = "treatment with p53 induced [MASK] in the cells .";

/// The demo project, saved into `dir` with its table path pointing into `dir` too.
pub(super) fn demo_project_in(dir: &Path, edit: impl FnOnce(&mut Project)) -> PathBuf {
    let mut p = Project::load(&bundled_demo()).expect("the bundled demo project loads");
    p.table = Some(dir.join("demo.safetensors"));
    p.device = DeviceChoice::Cpu;
    edit(&mut p);
    let path = dir.join("demo.ron");
    p.save(&path).expect("project saved");
    path
}

pub(super) fn harness_for(project: &Path) -> Harness<'static, App> {
    let state = State {
        last_project: Some(project.to_path_buf()),
        ..State::default()
    };
    let app = App::new(&egui::Context::default(), state);
    Harness::builder()
        .with_size([1400.0, 900.0])
        .with_max_steps(12)
        .build_ui_state(|ui, app: &mut App| app.show(ui), app)
}

/// Steps the ui until `cond` holds (the worker answers in the background), at most 90 s.
pub(super) fn wait_for(h: &mut Harness<'static, App>, what: &str, cond: impl Fn(&App) -> bool) {
    let start = Instant::now();
    loop {
        h.step();
        if cond(h.state()) {
            h.run_ok();
            return;
        }
        let errors: Vec<String> = h
            .state()
            .session
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.job, e.message))
            .collect();
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "timed out waiting for {what}; errors: {errors:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Clicks a tab of the central area (not the links of the same name on the Overview tab).
pub(super) fn click_tab(h: &mut Harness<'static, App>, name: &str) {
    h.query_all_by_label(name)
        .find(|n| n.accesskit_node().role() != Role::Link)
        .unwrap_or_else(|| panic!("no tab {name}"))
        .click();
    h.run_ok();
    let tab = h.state().session.state.tab;
    assert_eq!(tab.label(), name);
    let unnamed = h.unnamed_widgets();
    assert!(
        unnamed.is_empty(),
        "widgets without an accessible name on {name}: {unnamed:?}"
    );
}

pub(super) fn has_label_containing(h: &Harness<'static, App>, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

fn select_entity(h: &mut Harness<'static, App>, name: &str) {
    h.get_by_label("Search").click();
    h.run_ok();
    h.get_by_label("Search").type_text(name);
    h.run_ok();
    h.get_by_role_and_label(Role::ListBoxOption, name).click();
    h.run_ok();
    let sel = h
        .state()
        .session
        .selected
        .map(|i| h.state().session.entity_name(i).to_string());
    assert_eq!(sel.as_deref(), Some(name));
}

#[test]
fn startup_without_table_lists_entities_and_offers_build() {
    let dir = tempfile::tempdir().unwrap();
    let project = demo_project_in(dir.path(), |_| {});
    let mut h = harness_for(&project);
    wait_for(&mut h, "the model", |a| a.session.model.is_some());
    let app = &h.state().session;
    assert!(app.table.is_none());
    assert_eq!(
        app.entity_count(),
        312,
        "the entity list is shown before any build"
    );
    assert_eq!(app.project.name, "PubMed demo");
    assert_eq!(app.model.as_ref().unwrap().mask_token, "[MASK]");
    // Every row says "not built"; the Build button and the hint are there.
    assert!(h.query_all_by_role(Role::ListBoxOption).count() > 10);
    assert!(has_label_containing(&h, "table not built"));
    assert!(has_label_containing(&h, "No table yet"));
    assert!(has_label_containing(&h, "Next: press Build"));
    assert!(!h.get_by_label("Build").accesskit_node().is_disabled());
    assert!(
        h.get_by_label("Resume").accesskit_node().is_disabled(),
        "nothing to resume yet"
    );

    // Sorting by clicking a header: the first click on Name sorts the list A to Z (ignoring
    // case), the second Z to A. Read from the displayed rows, against the names of the entity
    // file sorted here.
    let tsv = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sample/pubmed-entities.tsv"),
    )
    .unwrap();
    let mut by_name: Vec<(String, usize, String)> = tsv
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .enumerate()
        .map(|(row, l)| {
            let name = l.split('\t').nth(1).unwrap().to_string();
            (name.to_lowercase(), row, name)
        })
        .collect();
    assert_eq!(by_name.len(), 312);
    by_name.sort();
    let a_to_z: Vec<String> = by_name.iter().map(|x| x.2.clone()).collect();
    let z_to_a: Vec<String> = a_to_z.iter().rev().cloned().collect();
    let shown = |h: &Harness<'static, App>| -> Vec<String> {
        h.query_all_by_role(Role::ListBoxOption)
            .filter_map(|n| n.accesskit_node().label())
            .collect()
    };
    let before = shown(&h);
    h.get_by_label("Sort by Name").click();
    h.run_ok();
    assert_eq!(h.state().session.state.sort, SortKey::Name);
    let rows = shown(&h);
    assert!(rows.len() > 10, "{rows:?}");
    assert_eq!(rows, a_to_z[..rows.len()], "the first click sorts A to Z");
    assert_ne!(rows, before, "the click changed the order");
    h.get_by_label("Sort by Name").click();
    h.run_ok();
    let rows = shown(&h);
    assert!(rows.len() > 10, "{rows:?}");
    assert_eq!(rows, z_to_a[..rows.len()], "a second click sorts Z to A");

    // Search narrows the list (aliases count too: "apoptotic cell death" is apoptosis).
    h.get_by_label("Search").click();
    h.run_ok();
    h.get_by_label("Search").type_text("apoptotic cell death");
    h.run_ok();
    let options: Vec<String> = h
        .query_all_by_role(Role::ListBoxOption)
        .filter_map(|n| n.accesskit_node().label())
        .collect();
    assert_eq!(options, vec!["apoptosis".to_string()]);

    // The tabs work without a table and say what is missing.
    click_tab(&mut h, "Preview");
    assert!(has_label_containing(&h, "Build the table first"));
    click_tab(&mut h, "Map");
    assert!(has_label_containing(&h, "Build the table to see"));
}

#[test]
fn build_cancel_resume_then_inspect_neighbours_norm_preview_map_and_export() {
    let dir = tempfile::tempdir().unwrap();
    // Small batches: many points where the build can stop, so Cancel lands mid-way.
    let project = demo_project_in(dir.path(), |p| p.options.batch = 8);
    let table_path = dir.path().join("demo.safetensors");
    let mut h = harness_for(&project);
    wait_for(&mut h, "the model", |a| a.session.model.is_some());

    // Build, and cancel once the model is encoding.
    h.get_by_label("Build").click();
    h.run_ok();
    assert!(h.state().session.building());
    wait_for(&mut h, "encoding progress", |a| {
        a.session
            .build
            .progress
            .as_ref()
            .is_some_and(|p| p.phase == Phase::Encoding && p.done > 0)
    });
    assert!(
        has_label_containing(&h, "encoding contexts:"),
        "the progress line is shown"
    );
    h.get_by_label("Cancel").click();
    h.run_ok();
    wait_for(&mut h, "the cancelled build", |a| !a.session.building());
    let session::Cancelled {
        done,
        total,
        checkpoint: ckpt,
    } = h
        .state()
        .session
        .build
        .cancelled
        .clone()
        .expect("the build was cancelled");
    assert!(
        done > 0 && done < total,
        "cancelled part way: {done}/{total}"
    );
    assert!(
        ckpt.is_some_and(|c| c.is_file()),
        "a checkpoint was written"
    );
    assert!(h.state().session.table.is_none());
    assert!(has_label_containing(&h, "Build cancelled after"));
    assert!(!h.get_by_label("Resume").accesskit_node().is_disabled());

    // Resume to the end: the table is written into the temp dir.
    h.get_by_label("Resume").click();
    h.run_ok();
    wait_for(&mut h, "the resumed build", |a| a.session.table.is_some());
    assert!(
        table_path.is_file(),
        "the build saved its table to the project's table path"
    );
    let report = h
        .state()
        .session
        .build
        .report
        .clone()
        .expect("a build report");
    assert!(
        report.resumed_from > 0,
        "the build resumed from the checkpoint"
    );
    let table = h.state().session.table.clone().unwrap();
    assert_eq!(table.len(), 312);
    assert_eq!(
        table.counts.iter().sum::<i64>() as usize,
        table.context_count()
    );
    assert_eq!(report.contexts, table.context_count());
    assert!(has_label_containing(
        &h,
        &format!("Built: {} contexts", table.context_count())
    ));
    assert!(
        has_label_containing(&h, "not found"),
        "the Overview lists what was not found"
    );

    // Select p53: the Inspector shows its masked contexts, then the model's view of them.
    select_entity(&mut h, "p53");
    let p53 = h.state().session.selected.unwrap();
    let n = table.counts[p53] as usize;
    assert!(n > 5);
    click_tab(&mut h, "Inspector");
    assert!(
        has_label_containing(&h, "mention \"p53\""),
        "the original mention is shown"
    );
    assert!(
        h.query_all_by_label_contains("[MASK]").count() >= n,
        "each context is shown masked"
    );
    wait_for(&mut h, "the inspection", |a| {
        a.session
            .inspection
            .as_ref()
            .is_some_and(|i| i.entity == p53)
    });
    let ins = h.state().session.inspection.clone().unwrap();
    assert_eq!(ins.insights.len(), n);
    assert!(ins
        .insights
        .iter()
        .all(|c| (-1.0..=1.0).contains(&c.cosine)));
    assert_eq!(
        h.query_all_by_label_contains("cos ").count(),
        n,
        "a cosine per context"
    );
    assert!(has_label_containing(&h, "model predicts:"));
    // Sorting by cosine puts the lowest first.
    h.get_by_label("lowest cosine first").click();
    h.run_ok();
    assert_eq!(h.state().session.state.inspect_sort, InspectSort::CosineLow);
    let min = ins
        .insights
        .iter()
        .map(|c| c.cosine)
        .fold(f32::MAX, f32::min);
    let first = h
        .query_all_by_label_contains("cos ")
        .next()
        .unwrap()
        .accesskit_node()
        .value()
        .unwrap();
    assert!(
        first.contains(&format!("{min:.3}")),
        "first shown {first}, lowest {min}"
    );

    // Neighbours: entities by cosine and vocabulary tokens; clicking one selects it.
    click_tab(&mut h, "Neighbours");
    wait_for(&mut h, "the neighbours", |a| {
        a.session
            .neighbours
            .as_ref()
            .is_some_and(|n| n.entity == p53)
    });
    let nb = h.state().session.neighbours.clone().unwrap();
    assert_eq!(nb.entities.len(), 15);
    assert_eq!(nb.vocab.len(), 15);
    assert!(
        nb.entities.windows(2).all(|w| w[0].1 >= w[1].1),
        "sorted by cosine"
    );
    let first_name = h.state().session.entity_name(nb.entities[0].0).to_string();
    h.get_by_role_and_label(Role::Button, &first_name).click();
    h.run_ok();
    assert_eq!(
        h.state().session.selected,
        Some(nb.entities[0].0),
        "clicking a neighbour selects it"
    );
    assert!(
        h.state().session.state.center,
        "neighbours subtract the mean by default"
    );
    h.get_by_label("subtract mean").click();
    h.run_ok();
    assert!(!h.state().session.state.center);
    let other = nb.entities[0].0;
    wait_for(&mut h, "uncentred neighbours", |a| {
        !a.session.pending(Purpose::Neighbours)
            && a.session
                .neighbours
                .as_ref()
                .is_some_and(|n| n.entity == other)
    });
    h.state_mut().apply(Command::Select(p53));

    // Norm: move the table norm, compare A and B on the probe, plot the loss.
    click_tab(&mut h, "Norm");
    h.get_by_role_and_label(Role::Slider, "table norm")
        .set_value_accesskit(3.5);
    h.run_ok();
    assert_eq!(h.state().session.norm(), 3.5);
    assert!(
        h.state().session.project_dirty,
        "the norm is a project setting"
    );
    h.get_by_role_and_label(Role::Slider, "norm B")
        .set_value_accesskit(9.0);
    h.run_ok();
    assert_eq!(h.state().session.state.norm_b, 9.0);
    wait_for(&mut h, "the A/B comparison", |a| {
        a.session
            .norm_compare
            .as_ref()
            .is_some_and(|p| p.norm_b == 9.0)
    });
    let cmp = h.state().session.norm_compare.clone().unwrap();
    assert_eq!(cmp.text, PROBE);
    assert_eq!(cmp.masks.len(), 1);
    assert!(cmp.masks[0].with_a.len() == TOP_K && cmp.masks[0].with_b.len() == TOP_K);
    assert!(has_label_containing(&h, "with vectors, norm B = 9"));
    assert!(has_label_containing(&h, "without entity vectors"));
    wait_for(&mut h, "the loss curve", |a| {
        a.session
            .inspection
            .as_ref()
            .is_some_and(|i| i.entity == p53)
    });
    let curve = h
        .state()
        .session
        .inspection
        .as_ref()
        .unwrap()
        .loss_curve
        .clone();
    assert_eq!(curve.len(), pelt::analysis::norms::loss_norms().len());
    assert!(curve.iter().all(|(_, l)| l.is_finite() && *l >= 0.0));
    assert!(has_label_containing(&h, "MLM loss against the norm: p53"));
    assert!(
        h.query_by_label("MLM loss against the norm").is_some(),
        "the plot is there"
    );

    // Preview: a sentence of our own; untick the p53 mention.
    click_tab(&mut h, "Preview");
    let text = "the p53 protein induced [MASK] in the cells .";
    h.get_by_label("Sentence").set_text_value_accesskit(text);
    h.run_ok();
    assert_eq!(h.state().session.state.preview_text, text);
    wait_for(&mut h, "the preview", |a| {
        a.session.preview.as_ref().is_some_and(|p| p.text == text)
    });
    let p = h.state().session.preview.clone().unwrap();
    assert!(p.rewritten.contains("p53 ( [[p53]] )"), "{}", p.rewritten);
    assert!(
        p.tokens.iter().any(|t| t.entity == Some(p53)),
        "a position carries p53's vector"
    );
    assert_eq!(p.masks.len(), 1);
    assert!(
        has_label_containing(&h, "[[p53]]"),
        "the token list shows the plugged position"
    );
    let mention = p
        .mentions
        .iter()
        .find(|m| m.entity == p53)
        .copied()
        .unwrap();
    h.get_by_label("p53  (entity p53)").click();
    h.run_ok();
    assert_eq!(
        h.state().session.preview_disabled,
        vec![(mention.start, mention.end)]
    );
    wait_for(&mut h, "the preview without p53", |a| {
        a.session
            .preview
            .as_ref()
            .is_some_and(|p| p.text == text && !p.rewritten.contains("[[p53]]"))
    });

    // Map: the PCA of every found entity; the selected one is labelled.
    click_tab(&mut h, "Map");
    wait_for(&mut h, "the PCA", |a| {
        matches!(a.session.pca, Pca::Ready(_))
    });
    if let Pca::Ready(points) = &h.state().session.pca {
        assert_eq!(
            points.len(),
            table.counts.iter().filter(|&&c| c > 0).count()
        );
    }
    assert!(h.query_by_label("PCA map of the entity vectors").is_some());

    // Export: the table at the slider's norm, and projector files.
    let out = dir.path().join("export/p53-norm.safetensors");
    h.state_mut().apply(Command::SaveTable(out.clone()));
    wait_for(&mut h, "the saved table", |a| {
        a.session
            .status
            .as_deref()
            .is_some_and(|s| s.starts_with("Saved"))
    });
    let saved = Table::load(&out).expect("the exported table loads");
    assert_eq!(saved.norm, 3.5);
    assert_eq!(saved.counts, table.counts);
    assert_eq!(saved.entity_ids, table.entity_ids);
    let v = saved.embedding_at(p53, saved.norm);
    let len = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(
        (len - 3.5).abs() < 1e-3,
        "embeddings scaled to the chosen norm: {len}"
    );
    let proj = dir.path().join("projector");
    h.state_mut().apply(Command::ExportProjector(proj.clone()));
    wait_for(&mut h, "the projector files", |_| {
        proj.join("metadata.tsv").is_file()
    });
    let meta = std::fs::read_to_string(proj.join("metadata.tsv")).unwrap();
    assert_eq!(meta.lines().count(), 313);

    // An error keeps what was built: a broken table file is refused with a message.
    let bogus = dir.path().join("broken.safetensors");
    std::fs::write(&bogus, b"not a table").unwrap();
    h.state_mut().apply(Command::OpenTable(bogus));
    wait_for(&mut h, "the open-table error", |a| {
        !a.session.errors.is_empty()
    });
    assert!(has_label_containing(&h, "not a usable PELT table"));
    assert_eq!(
        h.state().session.table.as_ref().map(|t| t.len()),
        Some(312),
        "the built table is still there"
    );

    // Start-up again: the project now has a table, which is opened at once.
    drop(h);
    let mut h = harness_for(&project);
    wait_for(&mut h, "the table at start-up", |a| {
        a.session.table.is_some()
    });
    assert_eq!(
        h.state().session.table_path.as_deref(),
        Some(table_path.as_path())
    );
    assert_eq!(
        h.state().session.table.as_ref().unwrap().counts,
        table.counts
    );
}

#[test]
fn worker_error_is_reported_and_the_app_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("does-not-exist.txt");
    let m = missing.clone();
    let project = demo_project_in(dir.path(), move |p| p.corpus = vec![m]);
    let mut h = harness_for(&project);
    wait_for(&mut h, "the model", |a| a.session.model.is_some());
    h.get_by_label("Build").click();
    h.run_ok();
    wait_for(&mut h, "the build error", |a| {
        !a.session.building() && !a.session.errors.is_empty()
    });
    let e = h.state().session.errors[0].clone();
    assert_eq!(e.job, "build");
    assert!(e.message.contains("does-not-exist.txt"), "{}", e.message);
    // The status bar says what failed; the error list shows the whole message.
    assert!(has_label_containing(&h, "build failed: corpus file"));
    h.get_by_label("1 error").click();
    h.run_ok();
    assert!(h.state().windows.show_errors);
    assert!(h.query_all_by_label_contains("does-not-exist.txt").count() >= 2);
    h.query_all_by_label("Dismiss")
        .next()
        .expect("a Dismiss button")
        .click();
    h.run_ok();
    assert!(
        h.state().session.errors.is_empty(),
        "the error was dismissed"
    );
    assert!(!has_label_containing(&h, "build failed"));

    // Still usable: entities can be selected, tabs switched, files dropped.
    select_entity(&mut h, "p53");
    click_tab(&mut h, "Inspector");
    assert!(has_label_containing(&h, "The table is not built yet"));
    assert!(!h.get_by_label("Build").accesskit_node().is_disabled());

    let corpus = dir.path().join("extra.txt");
    std::fs::write(&corpus, "p53 is a protein .\n").unwrap();
    let weird = dir.path().join("notes.xyz");
    std::fs::write(&weird, "?").unwrap();
    for p in [corpus.clone(), weird] {
        h.input_mut().dropped_files.push(Arc::new(TestDrop(p)));
    }
    h.run_ok();
    assert!(
        h.state().session.project.corpus.contains(&corpus),
        "a dropped .txt is added to the corpus"
    );
    assert!(h.state().session.project_dirty);
    assert_eq!(h.state().session.errors.len(), 1);
    assert!(h.state().session.errors[0].message.contains("notes.xyz"));

    // With the corpus fixed the build goes through.
    h.state_mut().apply(Command::RemoveCorpus(0));
    h.state_mut().apply(Command::SetEntities(corpus.clone()));
    h.run_ok();
    assert_eq!(
        h.state().session.entity_list.as_ref().map(|l| l.len()),
        Some(1),
        "a one-line .txt entity list"
    );
    h.get_by_label("Build").click();
    wait_for(&mut h, "the small build", |a| a.session.table.is_some());
    assert_eq!(h.state().session.table.as_ref().unwrap().counts, vec![1]);
}

#[derive(Debug)]
struct TestDrop(PathBuf);

impl egui::DroppedFile for TestDrop {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

#[test]
fn dropped_paths_are_classified_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(model.join("config.json"), "{}").unwrap();
    let cases = [
        ("c.txt", Some(DropKind::Corpus)),
        ("c.jsonl.gz", Some(DropKind::Corpus)),
        ("fewrel.json", Some(DropKind::Corpus)),
        ("E.TSV", Some(DropKind::Entities)),
        ("e.tsv.gz", Some(DropKind::Entities)),
        ("p.ron", Some(DropKind::Project)),
        ("t.safetensors", Some(DropKind::Table)),
        ("x.pdf", None),
    ];
    for (name, kind) in cases {
        assert_eq!(classify_drop(&dir.path().join(name)), kind, "{name}");
    }
    assert_eq!(classify_drop(&model), Some(DropKind::Model));
    assert_eq!(
        classify_drop(dir.path()),
        None,
        "a folder without config.json"
    );
}

#[test]
fn state_persists_as_ron_and_remembers_recent_projects() {
    let mut s = State::default();
    assert_eq!(
        s.startup_project(),
        bundled_demo(),
        "no last project: the demo"
    );
    for i in 0..10 {
        s.remember(Path::new(&format!("/p/{i}.ron")));
    }
    s.remember(Path::new("/p/3.ron"));
    assert_eq!(s.recent.len(), 8, "at most 8 recent projects");
    assert_eq!(s.recent[0], PathBuf::from("/p/3.ron"));
    assert_eq!(s.recent.iter().filter(|p| p.ends_with("3.ron")).count(), 1);
    assert_eq!(
        s.startup_project(),
        bundled_demo(),
        "a last project that is gone falls back to the demo"
    );
    s.tab = Tab::Norm;
    s.norm_a = 1.5;
    let text = ron::to_string(&s).unwrap();
    let back: State = ron::from_str(&text).unwrap();
    assert_eq!(back, s);
    // Fields added later get their defaults.
    let old: State = ron::from_str("(tab: Map)").unwrap();
    assert_eq!(old.tab, Tab::Map);
    assert_eq!(old.norm_b, 7.0);
    assert_eq!(Tab::parse("neighbours"), Some(Tab::Neighbours));
}

#[test]
fn switching_projects_mid_build_and_mid_load_keeps_old_results_out() {
    let dir = tempfile::tempdir().unwrap();
    let first = demo_project_in(dir.path(), |p| p.options.batch = 8);
    let other = tempfile::tempdir().unwrap();
    let second = demo_project_in(other.path(), |p| p.name = "Second".into());
    let mut h = harness_for(&first);
    wait_for(&mut h, "the model", |a| a.session.model.is_some());

    // Mid-build: the first project's build is encoding when the second project is opened.
    h.get_by_label("Build").click();
    h.run_ok();
    wait_for(&mut h, "encoding progress", |a| {
        a.session
            .build
            .progress
            .as_ref()
            .is_some_and(|p| p.phase == Phase::Encoding && p.done > 0)
    });
    h.state_mut().apply(Command::OpenProject(second.clone()));
    h.run_ok();
    wait_for(&mut h, "the worker to finish the old build", |a| {
        !a.session.is_busy()
    });
    h.run_ok();
    let s = &h.state().session;
    assert_eq!(s.project.name, "Second");
    assert!(s.table.is_none(), "the old build's table did not land");
    assert!(!s.building(), "the new project has no build running");
    assert!(s.build.cancelled.is_none() && s.build.report.is_none());
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert!(
        !has_label_containing(&h, "Build cancelled"),
        "the old build's end is not reported in the new project"
    );
    assert!(
        pelt::build::checkpoint_path(&dir.path().join("demo.safetensors")).is_file(),
        "the old build stopped with a checkpoint"
    );

    // Mid-load: the second project (now with a table) is opened and left at once.
    h.get_by_label("Build").click();
    wait_for(&mut h, "the second project's table", |a| {
        a.session.table.is_some()
    });
    assert!(other.path().join("demo.safetensors").is_file());
    h.state_mut().apply(Command::OpenProject(second));
    h.state_mut().apply(Command::OpenProject(first));
    wait_for(&mut h, "the worker to open the old table", |a| {
        !a.session.is_busy()
    });
    h.run_ok();
    let s = &h.state().session;
    assert_eq!(s.project.name, "PubMed demo");
    assert!(
        s.table.is_none(),
        "the second project's table did not land in the first"
    );
    assert!(s.build.checkpoint, "the first project can resume its build");
    assert!(s.errors.is_empty(), "{:?}", s.errors);
}

#[test]
fn the_linked_demo_builds_from_links_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let project = demo_project_in(dir.path(), |_| {});
    let mut h = harness_for(&project);
    wait_for(&mut h, "the model", |a| a.session.model.is_some());
    assert!(
        h.query_all_by_label("mention mode").next().is_some(),
        "the project panel offers the mention mode"
    );
    h.get_by_label("Build").click();
    h.run_ok();
    wait_for(&mut h, "the build", |a| a.session.table.is_some());
    let report = h.state().session.build.report.clone().unwrap();
    assert_eq!(report.mentions, pelt::contexts::MentionMode::Links);
    let table = h.state().session.table.clone().unwrap();
    assert_eq!(table.meta.mentions, "links");
    assert!(table.contexts().unwrap().iter().all(|c| c.linked));
    assert!(
        table.not_found().is_empty(),
        "every listed entity is linked"
    );
    assert!(has_label_containing(&h, "contexts from links"));
    select_entity(&mut h, "p53");
    click_tab(&mut h, "Inspector");
    assert!(has_label_containing(&h, "linked mention \"p53\""));
    // An explicit other mode makes the table stale until rebuilt.
    let mut p = h.state().session.project.clone();
    p.options.mentions = pelt::contexts::MentionMode::Names;
    h.state_mut()
        .session
        .apply(Command::EditProject(Box::new(p)));
    h.run_ok();
    assert!(has_label_containing(&h, "mentions links to names"));
}

#[test]
fn the_model_picker_lists_the_cache_and_a_missing_model_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/tiny-bert");
    for (repo, arch) in [
        ("models--org--tiny", "BertForMaskedLM"),
        ("models--org--encoder", "BertModel"),
    ] {
        let snap = root.join(repo).join("snapshots/abc");
        std::fs::create_dir_all(&snap).unwrap();
        for e in std::fs::read_dir(&fixture).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), snap.join(e.file_name())).unwrap();
        }
        let cfg = std::fs::read_to_string(snap.join("config.json")).unwrap();
        std::fs::write(
            snap.join("config.json"),
            cfg.replace("BertForMaskedLM", arch),
        )
        .unwrap();
        std::fs::create_dir_all(root.join(repo).join("refs")).unwrap();
        std::fs::write(root.join(repo).join("refs/main"), "abc").unwrap();
    }
    pelt::model::hub::set_cache_root(Some(root));
    let project = demo_project_in(dir.path(), |_| {});
    let mut h = harness_for(&project);
    wait_for(&mut h, "the model", |a| a.session.model.is_some());
    h.get_by_label("Cached…").click();
    h.run_ok();
    let tiny = "org/tiny  ·  BertForMaskedLM, hidden 32, 2 layers";
    assert!(has_label_containing(&h, tiny), "the cached MLM is listed");
    let enc = h
        .query_all_by_label_contains("org/encoder")
        .next()
        .expect("the encoder is listed too");
    assert!(
        enc.accesskit_node().is_disabled(),
        "a model without an MLM head is greyed out"
    );
    h.query_all_by_label_contains(tiny).next().unwrap().click();
    h.run_ok();
    wait_for(&mut h, "the cached model", |a| {
        a.session.model.as_ref().is_some_and(|m| m.hidden == 32)
    });
    assert_eq!(
        h.state().session.project.model_id.as_deref(),
        Some("org/tiny")
    );
    // A project whose model is not cached: the error names it.
    let gone = demo_project_in(dir.path(), |p| p.model_id = Some("org/gone".into()));
    h.state_mut().session.apply(Command::OpenProject(gone));
    h.run_ok();
    wait_for(&mut h, "the missing-model error", |a| {
        !a.session.errors.is_empty()
    });
    let e = &h.state().session.errors.last().unwrap().message;
    assert!(
        e.contains("org/gone") && e.contains("org/tiny") && e.contains("Pick another model"),
        "{e}"
    );
    pelt::model::hub::set_cache_root(None);
}

#[test]
fn evaluate_tab_runs_typing_and_cloze_on_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let fewrel =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval/fewrel.json");
    // A linked corpus without an entity list: the entities are its links.
    let project = demo_project_in(dir.path(), |p| {
        p.corpus = vec![fewrel.clone()];
        p.entities = None;
        p.eval.fewrel = vec![fewrel.clone()];
        p.eval.norms = vec![1.0, 20.0];
    });
    let mut h = harness_for(&project);
    wait_for(&mut h, "the model", |a| a.session.model.is_some());
    h.get_by_label("Build").click();
    h.run_ok();
    wait_for(&mut h, "the build", |a| a.session.table.is_some());
    click_tab(&mut h, "Evaluate");
    assert!(has_label_containing(&h, "No results yet"));
    h.get_by_label("Run evaluation").click();
    h.run_ok();
    assert!(
        h.state().session.evaluating(),
        "the evaluation runs on the worker"
    );
    wait_for(&mut h, "the evaluation", |a| {
        a.session.project.eval_results.is_some()
    });
    let got = h.state().session.project.eval_results.clone().unwrap();
    let t = got.typing.as_ref().expect("typing ran");
    let c = got.cloze.as_ref().expect("cloze ran");
    assert_eq!(
        c.with.iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![1.0, 7.0, 20.0],
        "the table's norm is added"
    );
    // The reference's numbers (HF transformers, tests/fixtures/gen_eval.py), which has the
    // same table (the file's links), k and norms.
    matches_the_reference(&got, h.state().session.project.eval.k);
    let table_row = &t.all[0];
    assert!(has_label_containing(
        &h,
        &format!(
            "{:.3} ({}/{})",
            table_row.accuracy, table_row.correct, table_row.total
        )
    ));
    assert!(has_label_containing(
        &h,
        &format!(
            "{} probes · P@1 without the table {:.3}",
            c.probes.made, c.without.p_at_1
        )
    ));
    assert!(h
        .query_all_by_label("P@1 against the norm")
        .next()
        .is_some());
    // Exports and persistence.
    let json = dir.path().join("eval.json");
    let csv = dir.path().join("eval.csv");
    h.state_mut()
        .session
        .apply(Command::ExportEval(json.clone()));
    h.state_mut()
        .session
        .apply(Command::ExportEval(csv.clone()));
    let back: pelt::eval::EvalResults =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    same_results(&back, &got);
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert!(
        rows.starts_with(
            "part,method_or_norm,subset,metric,value,count\ntyping,table,all,accuracy,"
        ),
        "{rows}"
    );
    h.state_mut().session.apply(Command::SaveProject);
    let saved = Project::load(&project).unwrap();
    same_results(
        saved
            .eval_results
            .as_ref()
            .expect("results saved with the project"),
        &got,
    );
}

/// `r` against tests/fixtures/eval/expected.json: the typing counts at `k` of every method,
/// and every cloze rank that the reference does not mark ambiguous.
fn matches_the_reference(r: &pelt::eval::EvalResults, k: usize) {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval/expected.json");
    let exp: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let n = |v: &serde_json::Value| v.as_u64().unwrap() as usize;
    let t = r.typing.as_ref().unwrap();
    let want = &exp["typing"][k.to_string()];
    for (part, scores) in [("all", &t.all), ("found_only", &t.found_only)] {
        assert_eq!(scores.len(), 3, "{part}");
        for m in scores {
            let w = &want[part][m.method.as_str()];
            assert_eq!(
                (m.correct, m.total),
                (n(&w["correct"]), n(&w["total"])),
                "typing k={k} {part} {}",
                m.method
            );
        }
    }
    let c = r.cloze.as_ref().unwrap();
    let want = &exp["cloze"];
    let probes = want["probes"].as_array().unwrap();
    assert_eq!(c.ranks.len(), probes.len());
    let columns: Vec<&serde_json::Value> = std::iter::once(&want["without"])
        .chain(want["with"].as_array().unwrap())
        .collect();
    assert_eq!(
        c.with.iter().map(|x| x.0 as f64).collect::<Vec<_>>(),
        columns[1..]
            .iter()
            .map(|w| w["norm"].as_f64().unwrap())
            .collect::<Vec<_>>()
    );
    let tol = want["tie_tolerance"].as_f64().unwrap();
    let mut compared = 0;
    for (i, (p, w)) in c.ranks.iter().zip(probes).enumerate() {
        assert_eq!(p.text, w["text"].as_str().unwrap());
        let got: Vec<usize> = std::iter::once(p.without).chain(p.with.clone()).collect();
        for (col, w) in columns.iter().enumerate() {
            if w["gaps"][i].as_f64().unwrap() >= tol {
                assert_eq!(
                    got[col],
                    n(&w["ranks"][i]),
                    "probe {i} ({}), column {col}",
                    p.text
                );
                compared += 1;
            }
        }
    }
    assert!(compared > c.ranks.len(), "only {compared} ranks compared");
}

/// Equal counts, and scores equal up to the last bits a text round trip may change.
fn same_results(a: &pelt::eval::EvalResults, b: &pelt::eval::EvalResults) {
    let (ta, tb) = (a.typing.as_ref().unwrap(), b.typing.as_ref().unwrap());
    for (x, y) in ta
        .all
        .iter()
        .chain(&ta.found_only)
        .zip(tb.all.iter().chain(&tb.found_only))
    {
        assert_eq!(
            (&x.method, x.correct, x.total, &x.per_label),
            (&y.method, y.correct, y.total, &y.per_label)
        );
    }
    let (ca, cb) = (a.cloze.as_ref().unwrap(), b.cloze.as_ref().unwrap());
    assert_eq!(ca.probes, cb.probes);
    assert_eq!(ca.ranks, cb.ranks);
    let close = |x: &pelt::eval::ClozeScore, y: &pelt::eval::ClozeScore| {
        assert_eq!(x.probes, y.probes);
        for (u, v) in [(x.p_at_1, y.p_at_1), (x.p_at_10, y.p_at_10), (x.mrr, y.mrr)] {
            assert!((u - v).abs() < 1e-12, "{u} vs {v}");
        }
    };
    close(&ca.without, &cb.without);
    assert_eq!(ca.with.len(), cb.with.len());
    for ((n, x), (m, y)) in ca.with.iter().zip(&cb.with) {
        assert_eq!(n, m);
        close(x, y);
    }
}

/// A shared project whose table path names someone's text file: Build asks before replacing it
/// (naming it and its size) and leaves it as it was when told not to, replaces it when told to;
/// a table outside the project's folder is asked about before the first write there.
#[test]
fn a_shared_project_never_replaces_a_file_without_asking() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("shared");
    std::fs::create_dir(&folder).unwrap();
    let thesis = folder.join("thesis.txt");
    let words = b"Chapter 1. Entity vectors from a domain corpus.\n";
    std::fs::write(&thesis, words).unwrap();
    let project = demo_project_in(&folder, |p| {
        p.table = Some(thesis.clone());
        p.options.k = 8;
    });
    let mut h = harness_for(&project);
    wait_for(&mut h, "the model", |a| a.session.model.is_some());
    h.get_by_label("Build").click();
    h.run_ok();
    wait_for(&mut h, "the question", |a| a.session.question.is_some());
    let text = h.state().session.question.clone().unwrap().text;
    assert!(
        text.contains("thesis.txt") && text.contains(&format!("{} bytes", words.len())),
        "{text}"
    );
    assert!(has_label_containing(&h, "is not a PELT table"));
    assert_eq!(
        std::fs::read(&thesis).unwrap(),
        words,
        "nothing written yet"
    );
    h.get_by_label("Don't write").click();
    h.run_ok();
    assert!(h.state().session.question.is_none());
    assert_eq!(std::fs::read(&thesis).unwrap(), words, "told not to");
    h.get_by_label("Build").click();
    h.run_ok();
    wait_for(&mut h, "the question again", |a| {
        a.session.question.is_some()
    });
    h.get_by_label("Write it").click();
    h.run_ok();
    wait_for(&mut h, "the build", |a| a.session.table.is_some());
    Table::load(&thesis).expect("replaced by the table, as agreed");

    // A table outside the project's folder: asked once, before anything is written.
    let outside = dir.path().join("elsewhere.safetensors");
    let mut p = h.state().session.project.clone();
    p.table = Some(outside.clone());
    h.state_mut()
        .session
        .apply(Command::EditProject(Box::new(p)));
    h.run_ok();
    assert!(has_label_containing(&h, "outside the project's folder"));
    h.get_by_label("Build").click();
    h.run_ok();
    let q = h
        .state()
        .session
        .question
        .clone()
        .expect("asked about the folder");
    assert!(q.text.contains("elsewhere.safetensors"), "{}", q.text);
    assert!(!outside.exists());
    h.get_by_label("Write it").click();
    h.run_ok();
    wait_for(&mut h, "the build outside", |_| outside.is_file());
}
