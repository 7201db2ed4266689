//! Models as users have them: cached Hugging Face ids (offline), the bundled model wherever
//! the binary runs, and projects that store ids.

mod common;
use common::*;

use candle_core::Device;
use pelt::model::hub::{
    self, cache_root_from, list_cached, parse_id, resolve_in, resolve_with_root,
};
use pelt::model::{bundled_model_dir, embedded_files, write_files, Model};
use pelt::project::Project;
use std::ffi::OsString;
use std::path::PathBuf;

#[test]
fn cache_root_follows_the_environment() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(a, _)| *a == k)
                .map(|(_, v)| OsString::from(v))
        }
    };
    assert_eq!(
        cache_root_from(env(&[
            ("HF_HUB_CACHE", "/c"),
            ("HF_HOME", "/h"),
            ("HOME", "/u")
        ])),
        PathBuf::from("/c")
    );
    assert_eq!(
        cache_root_from(env(&[("HF_HOME", "/h"), ("HOME", "/u")])),
        PathBuf::from("/h/hub")
    );
    assert_eq!(
        cache_root_from(env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/u")])),
        PathBuf::from("/x/huggingface/hub")
    );
    assert_eq!(
        cache_root_from(env(&[("HF_HUB_CACHE", ""), ("HOME", "/u")])),
        PathBuf::from("/u/.cache/huggingface/hub")
    );
}

#[test]
fn ids_revisions_missing_ids_and_broken_snapshots() {
    assert_eq!(
        parse_id("bert-base-uncased"),
        Some(("bert-base-uncased".into(), None))
    );
    assert_eq!(
        parse_id("dmis-lab/biobert-base-cased-v1.2@main"),
        Some((
            "dmis-lab/biobert-base-cased-v1.2".into(),
            Some("main".into())
        ))
    );
    assert_eq!(parse_id("a/b/c"), None);
    assert_eq!(parse_id("../x"), None);
    assert_eq!(parse_id("x@"), None);
    let (_d, root) = fake_cache();
    let main = resolve_in(&root, "org/tiny", None).unwrap();
    assert!(
        main.ends_with("models--org--tiny/snapshots/abc"),
        "{main:?}"
    );
    assert!(resolve_in(&root, "org/tiny", Some("v1"))
        .unwrap()
        .ends_with("snapshots/def"));
    assert!(resolve_in(&root, "org/tiny", Some("def"))
        .unwrap()
        .ends_with("snapshots/def"));
    let e = format!(
        "{:#}",
        resolve_in(&root, "org/tiny", Some("v9")).unwrap_err()
    );
    assert!(
        e.contains("no revision `v9`") && e.contains("refs main, v1"),
        "{e}"
    );
    let e = format!("{:#}", resolve_with_root("org/none", &root).unwrap_err());
    assert!(
        e.contains("model `org/none` is not in the Hugging Face cache"),
        "{e}"
    );
    assert!(e.contains("cached masked-LM models: org/tiny."), "{e}");
    assert!(e.contains("hf download ID"), "{e}");
    let e = format!("{:#}", resolve_with_root("org/broken", &root).unwrap_err());
    assert!(
        e.contains("points to snapshot gone, which is missing"),
        "{e}"
    );
    // A folder wins over an id-shaped name; a missing folder that is no id says so.
    let f = fixture("models/tiny-bert");
    assert_eq!(resolve_with_root(f.to_str().unwrap(), &root).unwrap(), f);
    let e = format!("{:#}", resolve_with_root("./nowhere", &root).unwrap_err());
    assert!(e.contains("model folder ./nowhere does not exist"), "{e}");
    // Listing: what loads, and what does not with the reason.
    let list = list_cached(&root);
    let ids: Vec<&str> = list.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, vec!["org/broken", "org/encoder", "org/tiny"]);
    let tiny = &list[2];
    assert_eq!(
        (tiny.architecture.as_str(), tiny.hidden_size, tiny.layers),
        ("BertForMaskedLM", 32, 2)
    );
    assert!(tiny.problem.is_none() && tiny.size > 0);
    assert!(
        list[1]
            .problem
            .as_deref()
            .unwrap()
            .contains("not a masked language model"),
        "{:?}",
        list[1]
    );
    assert!(list[0].problem.is_some());
    // The resolved snapshot loads and equals the fixture model.
    let m = Model::load(&main, &Device::Cpu).unwrap();
    assert_eq!(m.hidden_size(), 32);
    assert_eq!(
        hub::id_of_snapshot(&root, &main).as_deref(),
        Some("org/tiny")
    );
}

#[test]
fn cli_takes_a_cached_id() {
    let (_d, root) = fake_cache();
    let run = |model: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pelt"))
            .args(["fill", "--model", model, "the [MASK] ."])
            .env("HF_HUB_CACHE", &root)
            .output()
            .unwrap()
    };
    let by_id = run("org/tiny");
    assert!(
        by_id.status.success(),
        "{}",
        String::from_utf8_lossy(&by_id.stderr)
    );
    let by_dir = run(fixture("models/tiny-bert").to_str().unwrap());
    assert_eq!(by_id.stdout, by_dir.stdout, "same model, same predictions");
    let missing = run("org/none");
    assert!(!missing.status.success());
    let e = String::from_utf8_lossy(&missing.stderr);
    assert!(e.contains("cached masked-LM models: org/tiny"), "{e}");
}

#[test]
fn the_embedded_model_unpacks_and_loads() {
    let (model_files, demo_files) = embedded_files();
    if model_files.is_empty() {
        eprintln!("built without the bundled-model feature: nothing embedded");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    write_files(d.path(), model_files, false).unwrap();
    write_files(d.path(), demo_files, true).unwrap();
    let dir = d.path().join("assets/models/splade-tiny-msmarco");
    // Same bytes as the checkout's model.
    for (rel, _) in model_files {
        assert_eq!(
            std::fs::read(d.path().join(rel)).unwrap(),
            std::fs::read(root().join(rel)).unwrap(),
            "{rel}"
        );
    }
    let m = Model::load(&dir, &Device::Cpu).unwrap();
    let c = Model::load(&bundled_model_dir(), &Device::Cpu).unwrap();
    assert_eq!(m.weights_sha256().unwrap(), c.weights_sha256().unwrap());
    // The demo project resolves its relative paths in the unpacked copy.
    let p = Project::load(&d.path().join("projects/pubmed-demo.ron")).unwrap();
    assert!(
        p.corpus[0].starts_with(d.path()) && p.corpus[0].is_file(),
        "{:?}",
        p.corpus
    );
    assert!(p.entities.as_ref().unwrap().is_file());
    // An edited project file is kept; a damaged model file is rewritten.
    std::fs::write(d.path().join("projects/pubmed-demo.ron"), "edited").unwrap();
    std::fs::write(dir.join("config.json"), "{}").unwrap();
    write_files(d.path(), model_files, false).unwrap();
    write_files(d.path(), demo_files, true).unwrap();
    assert_eq!(
        std::fs::read_to_string(d.path().join("projects/pubmed-demo.ron")).unwrap(),
        "edited"
    );
    assert!(Model::load(&dir, &Device::Cpu).is_ok());
}
