use super::*;
use std::path::{Path, PathBuf};

use pelt::table::{TableMeta, TableParts};
use pelt::worker::{Event, MapPoint, MapReply, ModelInfo, Reply};

pub(super) fn session() -> Session {
    Session::new(
        Worker::spawn(|| {}),
        RowOrders::spawn(|| {}),
        State::default(),
    )
}

pub(super) fn table(names: &[&str], counts: &[i64]) -> Arc<Table> {
    let n = names.len();
    let mut parts = TableParts {
        meta: Some(TableMeta {
            model: "m".into(),
            model_sha256: "0".into(),
            hidden_size: 2,
            k: 4,
            seed: 1,
            max_len: 16,
            corpus: "c".into(),
            corpus_sha256: "0".into(),
            shard: "all".into(),
            case_sensitive: false,
            mentions: "names".into(),
            window: 512,
            dtype: Default::default(),
            entities_total: n,
            entity_list_sha256: String::new(),
        }),
        entity_ids: (0..n).map(|i| format!("Q{i}")).collect(),
        entity_names: names.iter().map(|s| s.to_string()).collect(),
        entity_aliases: vec![vec![]; n],
        sums: (0..n * 2).map(|i| i as f32 + 1.0).collect(),
        found: counts.iter().map(|&c| c as u64).collect(),
        norm: 3.0,
        contexts: vec![],
    };
    parts.add_placeholder_contexts(counts);
    Arc::new(Table::from_parts(parts).unwrap())
}

/// The id of the job in flight for `what` (the first one, in sending order).
fn job_for(s: &Session, what: impl Fn(&Pending) -> bool) -> JobId {
    *s.jobs
        .iter()
        .find(|(_, p)| what(p))
        .expect("the job is in flight")
        .0
}

fn opening(s: &Session) -> JobId {
    job_for(s, |p| *p == Pending::OpenTable)
}

fn request(s: &Session) -> JobId {
    job_for(s, |p| matches!(p, Pending::Request { .. }))
}

pub(super) fn reply(s: &Session, id: JobId, reply: Reply) -> Event {
    Event {
        id,
        generation: s.generation,
        job: "test",
        reply,
    }
}

#[test]
fn an_opened_table_lands_only_for_the_job_that_opened_it() {
    let mut s = session();
    s.apply(Command::OpenTable(PathBuf::from(
        "/nonexistent/a.safetensors",
    )));
    let id = opening(&s);
    let stranger = reply(
        &s,
        id + 100,
        Reply::TableOpened {
            table: table(&["a"], &[1]),
            path: "x".into(),
        },
    );
    assert!(!s.on_event(stranger).entities);
    assert!(s.table.is_none(), "a reply to another job is dropped");
    let ours = reply(
        &s,
        id,
        Reply::TableOpened {
            table: table(&["a", "b"], &[1, 0]),
            path: "a.safetensors".into(),
        },
    );
    let changed = s.on_event(ours);
    assert!(changed.entities && changed.selection);
    assert_eq!(s.entity_count(), 2);
    assert_eq!(s.norm(), 3.0, "the table's norm becomes the project's");
    assert_eq!(s.find_entity("Q1"), Some(1));
    assert_eq!(s.find_entity("A"), Some(0));
}

#[test]
fn replies_of_another_project_are_dropped_but_the_model_counts() {
    let mut s = session();
    s.apply(Command::OpenTable(PathBuf::from(
        "/nonexistent/a.safetensors",
    )));
    let id = opening(&s);
    let old = s.generation;
    s.apply(Command::NewProject);
    assert_eq!(s.generation, old + 1);
    let late = Event {
        id,
        generation: old,
        job: "open table",
        reply: Reply::TableOpened {
            table: table(&["a"], &[1]),
            path: "a".into(),
        },
    };
    assert_eq!(s.on_event(late), Changed::default());
    assert!(s.table.is_none());
    let failed = Event {
        id,
        generation: old,
        job: "open table",
        reply: Reply::Failed {
            message: "gone".into(),
            refused: None,
        },
    };
    s.on_event(failed);
    assert!(
        s.errors.is_empty(),
        "another project's failure is not shown"
    );
    let info = ModelInfo {
        dir: "m".into(),
        name: "m".into(),
        family: "bert".into(),
        hidden: 2,
        vocab: 10,
        layers: 1,
        device: "cpu".into(),
        dtype: "f32".into(),
        packs_tokens: true,
        sha256: "0".into(),
        mask_token: "<mask>".into(),
    };
    let model = Event {
        id: 1,
        generation: old,
        job: "load model",
        reply: Reply::ModelLoaded(info),
    };
    assert!(s.on_event(model).project);
    assert_eq!(s.mask_token(), "<mask>");
    assert!(
        s.model_loading(),
        "the new project's own load is still awaited"
    );
}

#[test]
fn results_for_an_older_table_are_dropped_by_id() {
    let mut s = session();
    let open = s.apply(Command::OpenTable("/nonexistent/t".into()));
    assert!(open.project);
    let id = opening(&s);
    s.on_event(reply(
        &s,
        id,
        Reply::TableOpened {
            table: table(&["a", "b", "c"], &[2, 2, 0]),
            path: "t".into(),
        },
    ));
    s.state.tab = Tab::Neighbours;
    s.apply(Command::Select(0));
    s.auto_requests();
    s.pump();
    assert!(s.pending(Purpose::Neighbours));
    let asked = request(&s);
    // The table changes while the request is in flight: its answer is stale.
    s.apply(Command::OpenTable("/nonexistent/u".into()));
    let id2 = opening(&s);
    s.on_event(reply(
        &s,
        id2,
        Reply::TableOpened {
            table: table(&["a", "b"], &[2, 2]),
            path: "u".into(),
        },
    ));
    let result = NeighbourResult {
        entity: 0,
        entities: vec![(1, 0.5)],
        vocab: vec![],
    };
    assert!(
        !s.on_event(reply(&s, asked, Reply::Neighbours(result.clone())))
            .results
    );
    assert!(s.neighbours.is_none());
    assert!(
        !s.pending(Purpose::Neighbours),
        "the stale answer freed its lane"
    );
    s.auto_requests();
    s.pump();
    let fresh = request(&s);
    assert!(
        s.on_event(reply(&s, fresh, Reply::Neighbours(result)))
            .results
    );
    assert_eq!(s.neighbours.as_ref().map(|n| n.entity), Some(0));
}

#[test]
fn commands_edit_the_project_and_settings() {
    let mut s = session();
    let mut p = s.project.clone();
    p.options.k = 99;
    s.apply(Command::EditProject(Box::new(p)));
    assert!(s.project_dirty);
    assert_eq!(s.project.options.k, 99);
    s.project_dirty = false;
    let mut st = s.state.clone();
    st.probe = "a [MASK] b".into();
    s.preview_disabled.push((0, 1));
    st.preview_text = "other".into();
    s.apply(Command::SetState(Box::new(st)));
    assert_eq!(
        s.project.probe, "a [MASK] b",
        "the probe is saved in the project"
    );
    assert!(s.project_dirty);
    assert!(
        s.preview_disabled.is_empty(),
        "a new sentence re-enables its mentions"
    );
    s.apply(Command::Dropped("notes.xyz".into()));
    assert_eq!(s.errors.len(), 1);
    s.apply(Command::Dropped("more.ndjson".into()));
    assert_eq!(s.project.corpus, vec![PathBuf::from("more.ndjson")]);
    s.apply(Command::DismissError(0));
    assert!(s.errors.is_empty());
}

#[test]
fn a_table_dropped_on_the_compare_tab_is_the_second_table() {
    let mut s = session();
    s.state.tab = Tab::Compare;
    s.apply(Command::Dropped("/nonexistent/b.safetensors".into()));
    assert_eq!(
        s.compare.b_path.as_deref(),
        Some(Path::new("/nonexistent/b.safetensors"))
    );
    assert!(!s.jobs.values().any(|p| *p == Pending::OpenTable));
    s.state.tab = Tab::Map;
    s.apply(Command::Dropped("/nonexistent/a.safetensors".into()));
    assert!(s.jobs.values().any(|p| *p == Pending::OpenTable));
}

#[test]
fn drops_are_classified_like_the_corpus_reader() {
    assert_eq!(classify_drop(Path::new("a.ndjson")), Some(DropKind::Corpus));
    assert_eq!(
        classify_drop(Path::new("a.jsonl.gz")),
        Some(DropKind::Corpus)
    );
    assert_eq!(classify_drop(Path::new("a.json")), Some(DropKind::Corpus));
    assert_eq!(
        classify_drop(Path::new("a.tsv.gz")),
        Some(DropKind::Entities)
    );
    assert_eq!(classify_drop(Path::new("a.ron")), Some(DropKind::Project));
    assert_eq!(
        classify_drop(Path::new("a.safetensors")),
        Some(DropKind::Table)
    );
    assert_eq!(classify_drop(Path::new("a.pdf")), None);
}

/// A session with a table open, the map computing, the table being saved and a neighbours
/// request in flight.
fn busy_session() -> (Session, JobId, JobId, JobId) {
    let mut s = session();
    s.apply(Command::OpenTable("/nonexistent/t".into()));
    let id = opening(&s);
    s.on_event(reply(
        &s,
        id,
        Reply::TableOpened {
            table: table(&["a", "b", "c"], &[2, 2, 0]),
            path: "t".into(),
        },
    ));
    assert_eq!(s.jobs_in_flight(), 0);
    s.apply(Command::SaveTable("/nonexistent/out.safetensors".into()));
    s.state.tab = Tab::Map;
    s.auto_requests();
    s.state.tab = Tab::Neighbours;
    s.apply(Command::Select(0));
    s.auto_requests();
    s.pump();
    let save = job_for(&s, |p| *p == Pending::Save);
    let pca = job_for(&s, |p| matches!(p, Pending::Map { .. }));
    let neighbours = request(&s);
    assert_eq!(s.jobs_in_flight(), 3);
    (s, save, pca, neighbours)
}

#[test]
fn a_failure_clears_exactly_the_job_that_failed() {
    let (mut s, save, pca, neighbours) = busy_session();
    let failed = |s: &Session, id| {
        reply(
            s,
            id,
            Reply::Failed {
                message: "no model is loaded".into(),
                refused: None,
            },
        )
    };
    s.on_event(failed(&s, neighbours));
    assert_eq!(s.job(neighbours), None);
    assert!(!s.pending(Purpose::Neighbours), "its lane is free");
    assert_eq!(s.job(save), Some(&Pending::Save));
    assert!(s.map_computing());
    assert_eq!(s.jobs_in_flight(), 2);
    assert_eq!(s.errors.len(), 1);
    s.on_event(failed(&s, pca));
    assert!(!s.map_computing());
    assert_eq!(s.job(save), Some(&Pending::Save));
    assert_eq!(s.jobs_in_flight(), 1);
}

#[test]
fn a_reply_with_an_unknown_id_changes_nothing() {
    let (mut s, save, pca, neighbours) = busy_session();
    let stranger = neighbours.max(save).max(pca) + 100;
    let before = s.jobs.clone();
    let status = s.status.clone();
    let replies = [
        Reply::Failed {
            message: "gone".into(),
            refused: None,
        },
        Reply::TableOpened {
            table: table(&["x"], &[1]),
            path: "x".into(),
        },
        Reply::Mapped(Box::new(map_reply(MapMethod::Pca, Some(vec![])))),
        Reply::Neighbours(NeighbourResult {
            entity: 0,
            entities: vec![],
            vocab: vec![],
        }),
        Reply::Saved { path: "x".into() },
    ];
    for r in replies {
        assert_eq!(s.on_event(reply(&s, stranger, r)), Changed::default());
    }
    assert_eq!(s.jobs, before);
    assert!(s.errors.is_empty());
    assert_eq!(s.status, status);
    assert_eq!(s.entity_count(), 3);
    assert!(s.map.layout.is_none() && s.neighbours.is_none());
    // An opening overtaken by another is no longer waited for.
    s.apply(Command::OpenTable("/nonexistent/u".into()));
    let first = opening(&s);
    s.apply(Command::OpenTable("/nonexistent/v".into()));
    assert_ne!(opening(&s), first);
    let late = Reply::TableOpened {
        table: table(&["u"], &[1]),
        path: "u".into(),
    };
    assert_eq!(s.on_event(reply(&s, first, late)), Changed::default());
    assert_eq!(s.entity_count(), 3);
}

#[test]
fn a_failed_build_ends_the_build_and_nothing_else() {
    let (mut s, save, _, _) = busy_session();
    s.project.corpus = vec!["/nonexistent/c.txt".into()];
    s.project.entities = Some("/nonexistent/e.tsv".into());
    s.apply(Command::Build { resume: false });
    assert!(s.building());
    s.apply(Command::CancelBuild);
    assert!(s.build.cancelling);
    let build = job_for(&s, |p| *p == Pending::Build);
    let changed = s.on_event(reply(
        &s,
        build,
        Reply::Failed {
            message: "no corpus".into(),
            refused: None,
        },
    ));
    assert!(changed.project);
    assert!(!s.building() && !s.build.cancelling);
    assert_eq!(s.job(save), Some(&Pending::Save));
    assert_eq!(s.jobs_in_flight(), 3);
}

/// Save-as never replaces one of the project's inputs, and replaces a file that is not a
/// project only once the user agrees.
#[test]
fn save_as_is_checked_against_the_inputs_and_asks_before_replacing_a_stranger_file() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(&corpus, "Aspirin lowers fever .\n").unwrap();
    let mut s = session();
    s.project.corpus = vec![corpus.clone()];
    s.apply(Command::SaveProjectTo(corpus.clone()));
    assert!(s.question.is_none());
    let e = &s.errors.last().expect("refused").message;
    assert!(e.contains("refusing to overwrite an input"), "{e}");
    assert_eq!(
        std::fs::read_to_string(&corpus).unwrap(),
        "Aspirin lowers fever .\n"
    );
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "my notes\n").unwrap();
    s.apply(Command::SaveProjectTo(notes.clone()));
    let q = s.question.clone().expect("asked");
    assert!(
        q.text.contains("notes.txt") && q.text.contains("9 bytes"),
        "{}",
        q.text
    );
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my notes\n");
    s.apply(Command::Answer(false));
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my notes\n");
    s.apply(Command::SaveProjectTo(notes.clone()));
    s.apply(Command::Answer(true));
    assert!(s.question.is_none());
    pelt::project::Project::load(&notes).expect("now a project");
    // A project replaces a project without asking.
    s.apply(Command::SaveProjectTo(notes.clone()));
    assert!(s.question.is_none() && s.project_path.as_deref() == Some(notes.as_path()));
}

/// Opens `table` as the session's table (a reply to its own opening job).
fn open_table(s: &mut Session, table: Arc<Table>) {
    s.apply(Command::OpenTable("/nonexistent/t.safetensors".into()));
    let id = opening(s);
    s.on_event(reply(
        s,
        id,
        Reply::TableOpened {
            table,
            path: "t".into(),
        },
    ));
}
fn map_reply(method: MapMethod, points: Option<Vec<MapPoint>>) -> MapReply {
    MapReply {
        method,
        points: points.map(Arc::new),
        cache: None,
        from_cache: false,
        cache_error: None,
        secs: 0.5,
    }
}

/// A session showing the Map tab of a table with `n` found entities.
fn map_session(n: usize) -> Session {
    let mut s = session();
    s.apply(Command::OpenTable("/nonexistent/t.safetensors".into()));
    let id = opening(&s);
    let names: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    s.on_event(reply(
        &s,
        id,
        Reply::TableOpened {
            table: table(&names, &vec![1; n]),
            path: "t".into(),
        },
    ));
    s.state.tab = Tab::Map;
    s.state.map_colour = ColourBy::Contexts;
    s
}

fn map_job(s: &Session) -> Option<(JobId, MapMethod, bool)> {
    s.jobs.iter().find_map(|(id, p)| match p {
        Pending::Map { method, read_only } => Some((*id, *method, *read_only)),
        _ => None,
    })
}

#[test]
fn a_large_learnt_map_is_only_read_back_until_the_user_asks() {
    let mut s = map_session(AUTO_LAYOUT_MAX + 1);
    let tsne = s.state.map_method;
    assert!(tsne.is_slow());
    s.auto_requests();
    let (id, method, read_only) = map_job(&s).expect("a map job");
    assert_eq!((method, read_only), (tsne, true));
    // Not kept in the project's folder: held, and not asked for again.
    s.on_event(reply(
        &s,
        id,
        Reply::Mapped(Box::new(map_reply(tsne, None))),
    ));
    assert_eq!(s.map.held(tsne), Some(&MapHeld::Large(AUTO_LAYOUT_MAX + 1)));
    s.auto_requests();
    assert!(map_job(&s).is_none());
    // PCA is made at once whatever the size; back on t-SNE, still held.
    s.apply(Command::Map(MapCommand::SetMethod(MapMethod::Pca)));
    s.auto_requests();
    let (id, method, read_only) = map_job(&s).expect("a PCA job");
    assert_eq!((method, read_only), (MapMethod::Pca, false));
    let pts = vec![MapPoint {
        entity: 0,
        xy: [1.0, 2.0],
    }];
    s.on_event(reply(
        &s,
        id,
        Reply::Mapped(Box::new(map_reply(MapMethod::Pca, Some(pts)))),
    ));
    assert_eq!(
        s.map.layout.as_ref().map(|l| l.method),
        Some(MapMethod::Pca)
    );
    s.apply(Command::Map(MapCommand::SetMethod(tsne)));
    s.auto_requests();
    assert!(map_job(&s).is_none(), "held until asked");
    s.apply(Command::Map(MapCommand::Compute));
    assert_eq!(map_job(&s).map(|j| (j.1, j.2)), Some((tsne, false)));
    assert!(s.map.held(tsne).is_none());
}

#[test]
fn a_cancelled_or_failed_map_is_not_asked_for_again_by_itself() {
    let mut s = map_session(10);
    s.auto_requests();
    let (id, tsne, read_only) = map_job(&s).expect("a map job");
    assert!(!read_only, "small maps are made at once");
    s.on_event(reply(
        &s,
        id,
        Reply::Mapped(Box::new(map_reply(tsne, None))),
    ));
    assert_eq!(s.map.held(tsne), Some(&MapHeld::Cancelled));
    s.auto_requests();
    assert!(map_job(&s).is_none());
    s.apply(Command::Map(MapCommand::Compute));
    let (id, _, _) = map_job(&s).expect("asked again");
    s.on_event(reply(
        &s,
        id,
        Reply::Failed {
            message: "perplexity too large".into(),
            refused: None,
        },
    ));
    assert!(matches!(s.map.held(tsne), Some(MapHeld::Failed(m)) if m.contains("perplexity")));
    for _ in 0..3 {
        s.auto_requests();
    }
    assert!(
        map_job(&s).is_none(),
        "a failed map is not retried every frame"
    );
    // A new table forgets all of it.
    open_table(&mut s, table(&["a", "b", "c", "d", "e"], &[1; 5]));
    assert!(s.map.held.is_empty());
    s.auto_requests();
    assert!(map_job(&s).is_some());
}

#[test]
fn a_set_made_on_the_map_filters_the_entity_list_and_goes_with_its_table() {
    let mut s = map_session(6);
    assert!(s.set_filter().is_none());
    s.apply(Command::Map(MapCommand::SetSet(vec![4, 1, 4, 2])));
    assert_eq!(s.map.set.as_deref(), Some(&vec![1, 2, 4]));
    assert!(
        s.set_filter().is_none(),
        "the list is filtered only when asked"
    );
    let c = s.apply(Command::Map(MapCommand::FilterToSet(true)));
    assert!(c.entities);
    assert_eq!(s.set_filter().as_deref(), Some(&vec![1, 2, 4]));
    s.apply(Command::Map(MapCommand::ClearSet));
    assert!(s.set_filter().is_none());
    s.apply(Command::Map(MapCommand::SetSet(vec![0])));
    open_table(&mut s, table(&["a"], &[1]));
    assert!(s.map.set.is_none(), "rows of another table");
}

#[test]
fn colours_come_from_the_projects_sources_and_a_failure_is_not_retried() {
    let mut s = map_session(6);
    s.state.map_colour = ColourBy::Evaluate;
    assert_eq!(s.label_source(&ColourBy::Evaluate), None);
    assert_eq!(s.label_source(&ColourBy::PubTator), None);
    s.auto_requests();
    assert!(!s.classes_computing(), "no labels in this project");
    s.project.eval.fewrel = vec!["/nonexistent/val.json".into()];
    s.project.corpus = vec!["a.txt".into(), "b.pubtator".into()];
    assert_eq!(
        s.label_source(&ColourBy::PubTator),
        Some(LabelSource::PubTator(vec!["b.pubtator".into()]))
    );
    s.auto_requests();
    let id = job_for(&s, |p| matches!(p, Pending::Classes(_)));
    s.on_event(reply(
        &s,
        id,
        Reply::Failed {
            message: "cannot read val.json".into(),
            refused: None,
        },
    ));
    s.auto_requests();
    assert!(!s.classes_computing(), "not retried by itself");
    s.apply(Command::Map(MapCommand::ColourBy(ColourBy::Evaluate)));
    s.auto_requests();
    assert!(s.classes_computing(), "choosing it again retries");
}
