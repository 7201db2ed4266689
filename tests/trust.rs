//! Files from other people: outputs never replace a file this tool did not write without the
//! user's consent, and every text input is read with a cap.

mod common;
use common::*;

use std::path::{Path, PathBuf};

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A folder with copies of the fixture corpus, entity list and tiny model.
struct Inputs {
    dir: tempfile::TempDir,
    corpus: PathBuf,
    entities: PathBuf,
    model: PathBuf,
}

fn inputs() -> Inputs {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.txt");
    let entities = dir.path().join("entities.tsv");
    std::fs::copy(fixture("pelt/corpus.txt"), &corpus).unwrap();
    std::fs::copy(fixture("pelt/entities.tsv"), &entities).unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for e in std::fs::read_dir(fixture("models/tiny-bert")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), model.join(e.file_name())).unwrap();
    }
    Inputs {
        dir,
        corpus,
        entities,
        model,
    }
}

fn build(i: &Inputs, out: &Path, extra: &[&str]) -> (bool, String, String) {
    let (c, e, m, o) = (s(&i.corpus), s(&i.entities), s(&i.model), s(out));
    let mut args = vec![
        "build",
        "--corpus",
        &c,
        "--entities",
        &e,
        "--model",
        &m,
        "--out",
        &o,
        "--k",
        "2",
    ];
    args.extend_from_slice(extra);
    pelt(&args)
}

const THESIS: &[u8] = b"Chapter 1. Introduction\nEntity vectors from a domain corpus.\n";

/// `pelt build --out` over a file that is not a table is refused, naming the file and its
/// size, and the file is left as it was; `--force` replaces it; a table replaces a table.
#[test]
fn build_out_over_a_stranger_file_needs_force() {
    let i = inputs();
    let thesis = i.dir.path().join("thesis.txt");
    std::fs::write(&thesis, THESIS).unwrap();
    let (ok, _, err) = build(&i, &thesis, &[]);
    assert!(!ok, "a build over thesis.txt must be refused");
    assert!(
        err.contains("thesis.txt")
            && err.contains(&format!("{} bytes", THESIS.len()))
            && err.contains("not a PELT table")
            && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&thesis).unwrap(), THESIS, "thesis.txt intact");
    // Its checkpoint path is guarded too.
    let out = i.dir.path().join("t.safetensors");
    std::fs::write(i.dir.path().join("t.safetensors.ckpt"), THESIS).unwrap();
    let (ok, _, err) = build(&i, &out, &[]);
    assert!(
        !ok && err.contains("checkpoint") && err.contains("not a PELT checkpoint"),
        "{err}"
    );
    std::fs::remove_file(i.dir.path().join("t.safetensors.ckpt")).unwrap();
    // With --force the stranger's file is replaced by a table.
    let (ok, _, err) = build(&i, &thesis, &["--force"]);
    assert!(ok, "{err}");
    pelt::table::Table::load(&thesis).unwrap();
    // A table is replaced without --force.
    let (ok, _, err) = build(&i, &thesis, &[]);
    assert!(ok, "{err}");
}

/// The other commands that write files guard their outputs the same way.
#[test]
fn renorm_merge_export_and_entity_lists_refuse_a_stranger_file_without_force() {
    let i = inputs();
    let table = i.dir.path().join("t.safetensors");
    let (ok, _, err) = build(&i, &table, &[]);
    assert!(ok, "{err}");
    let shard = i.dir.path().join("shard.safetensors");
    let (ok, _, err) = build(&i, &shard, &["--shard", "0/2"]);
    assert!(ok, "{err}");
    let sh = s(&shard);
    let thesis = i.dir.path().join("thesis.txt");
    let export = i.dir.path().join("export");
    std::fs::create_dir(&export).unwrap();
    let (t, th, ex) = (s(&table), s(&thesis), s(&export));
    let fewrel = s(&fixture("linked/fewrel.json"));
    let cases: Vec<(Vec<&str>, PathBuf)> = vec![
        (
            vec!["renorm", &t, "--norm", "5", "--out", &th],
            thesis.clone(),
        ),
        (vec!["merge", &sh, "--partial", "--out", &th], thesis.clone()),
        (
            vec!["export-projector", "--table", &t, "--out", &ex],
            export.join("vectors.tsv"),
        ),
        (
            vec!["entities-from-fewrel", &fewrel, "--out", &th],
            thesis.clone(),
        ),
    ];
    for (args, victim) in cases {
        std::fs::write(&victim, THESIS).unwrap();
        let (ok, _, err) = pelt(&args);
        assert!(!ok && err.contains("--force"), "{args:?}: {err}");
        assert_eq!(std::fs::read(&victim).unwrap(), THESIS, "{args:?}");
        let mut forced = args.clone();
        forced.push("--force");
        let (ok, _, err) = pelt(&forced);
        assert!(ok, "{forced:?}: {err}");
        assert_ne!(std::fs::read(&victim).unwrap(), THESIS, "{forced:?}");
        // Now an output of its own kind: replaced without --force.
        let (ok, _, err) = pelt(&args);
        assert!(ok, "{args:?} again: {err}");
    }
}
