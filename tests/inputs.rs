//! Corpus formats and bad input: clear messages with file and line, never a panic.

mod common;
use common::*;

use candle_core::Device;
use pelt::build::{build_table, BuildInput, BuildOptions, BuildOutcome, BuildReport};
use pelt::corpus::Corpus;
use pelt::entities::{load_entities, EntityList};
use pelt::model::Model;
use pelt::table::Table;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

fn tiny() -> Model {
    Model::load(&fixture("models/tiny-bert"), &Device::Cpu).unwrap()
}

fn try_build(corpus: &[PathBuf], entities: &Path) -> anyhow::Result<(Table, BuildReport)> {
    let model = tiny();
    let corpus = Corpus::open(corpus)?;
    let entities = load_entities(entities)?;
    let cancel = AtomicBool::new(false);
    // Name matching in every format (FewRel files would default to their links).
    let opts = BuildOptions {
        mentions: pelt::contexts::MentionMode::Names,
        ..Default::default()
    };
    match build_table(
        BuildInput {
            model: &model,
            corpus: &corpus,
            entities: &entities,
            options: &opts,
            out: None,
            tmp: None,
            checkpoint: None,
            resume: false,
            cancel: &cancel,
        },
        &mut |_| {},
    )? {
        BuildOutcome::Finished(t, r) => Ok((*t, r)),
        BuildOutcome::Cancelled { .. } => unreachable!(),
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

const ENTITIES: &str = "Q90\tParis\tCity of Light\nQ312\tApple\t\n";

#[test]
fn all_corpus_formats_find_the_same_mentions() {
    let d = tempfile::tempdir().unwrap();
    let ents = write(d.path(), "e.tsv", ENTITIES.as_bytes());
    let lines = [
        "Paris is big. Apple is a company.",
        "The City of Light shines.",
    ];
    let txt = write(d.path(), "c.txt", lines.join("\n").as_bytes());
    let jsonl: String = lines
        .iter()
        .map(|l| serde_json::json!({ "text": l }).to_string() + "\n")
        .collect();
    let jl = write(d.path(), "c.jsonl", jsonl.as_bytes());
    let fewrel = serde_json::json!({"rel": lines.iter().map(|l| serde_json::json!({"tokens": l.split(' ').collect::<Vec<_>>(), "h": ["x", "y", [[0]]]})).collect::<Vec<_>>()});
    let fr = write(d.path(), "c.json", fewrel.to_string().as_bytes());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(jsonl.as_bytes()).unwrap();
    let gzp = write(d.path(), "c.jsonl.gz", &gz.finish().unwrap());
    let sub = d.path().join("dir");
    std::fs::create_dir(&sub).unwrap();
    std::fs::copy(&txt, sub.join("a.txt")).unwrap();
    for c in [vec![txt], vec![jl], vec![fr], vec![gzp], vec![sub]] {
        let (t, r) = try_build(&c, &ents).unwrap_or_else(|e| panic!("{c:?}: {e:#}"));
        assert_eq!(t.counts, vec![2, 1], "{c:?}");
        assert_eq!(r.read.skipped_lines, 0);
    }
}

#[test]
fn bad_corpus_lines_are_skipped_with_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let ents = write(d.path(), "e.tsv", ENTITIES.as_bytes());
    let mut bytes = b"Paris is big.\nbad \xff\xfe bytes about Paris\n".to_vec();
    bytes.extend(std::iter::repeat_n(b'a', 1_100_000));
    bytes.extend(b" Paris\nApple pie.\n");
    let c = write(d.path(), "c.txt", &bytes);
    let (t, r) = try_build(&[c], &ents).unwrap();
    assert_eq!(t.counts, vec![1, 1]);
    assert_eq!(r.read.skipped_lines, 2);
    assert!(
        r.read.warnings[0].ends_with("c.txt:2: not valid UTF-8"),
        "{:?}",
        r.read.warnings
    );
    assert!(
        r.read.warnings[1].contains("c.txt:3: line of 1100007 bytes is longer than the limit"),
        "{:?}",
        r.read.warnings
    );
    let jl = write(
        d.path(),
        "c.jsonl",
        b"{\"text\": \"Paris\"}\n{\"txt\": \"Paris\"}\n{not json\n",
    );
    let (_, r) = try_build(&[jl], &ents).unwrap();
    assert!(
        r.read.warnings[0].ends_with("c.jsonl:2: no string field `text`"),
        "{:?}",
        r.read.warnings
    );
    assert!(
        r.read.warnings[1].contains("c.jsonl:3: not valid JSON"),
        "{:?}",
        r.read.warnings
    );
}

#[test]
fn bad_entity_lists_name_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    for (body, expect) in [
        ("Q1\tParis\n\tLondon\n", "e.tsv:2: empty entity id"),
        (
            "Q1\tParis\nQ2\t\n",
            "e.tsv:2: entity `Q2` has an empty name",
        ),
        (
            "Q1\tParis\n# comment\nQ1\tLyon\n",
            "e.tsv:3: duplicate entity id `Q1` (first defined on line 1)",
        ),
        ("\n# only a comment\n", "the entity list is empty"),
    ] {
        let p = write(d.path(), "e.tsv", body.as_bytes());
        let e = format!("{:#}", load_entities(&p).unwrap_err());
        assert!(e.contains(expect), "{body:?}: {e}");
    }
    let p = write(d.path(), "e.txt", b"Paris\nLy\xffon\n");
    let e = format!("{:#}", load_entities(&p).unwrap_err());
    assert!(e.contains("e.txt:2: not valid UTF-8"), "{e}");
    let p = write(d.path(), "e.txt", b"Paris\nParis\n");
    let e = format!("{:#}", load_entities(&p).unwrap_err());
    assert!(e.contains("e.txt:2: duplicate entity id `Paris`"), "{e}");
    let e = format!(
        "{:#}",
        load_entities(&d.path().join("missing.tsv")).unwrap_err()
    );
    assert!(e.contains("missing.tsv does not exist"), "{e}");
    // Two-column lines (no aliases) are fine and give no empty alias.
    let l = EntityList::parse("Q1\tUniverse\n", true, "x").unwrap();
    assert!(l.entities[0].aliases.is_empty());
}

#[test]
fn missing_files_and_corpora_without_mentions() {
    let d = tempfile::tempdir().unwrap();
    let ents = write(d.path(), "e.tsv", ENTITIES.as_bytes());
    let e = format!(
        "{:#}",
        try_build(&[d.path().join("nope.txt")], &ents).unwrap_err()
    );
    assert!(
        e.contains("corpus file") && e.contains("nope.txt does not exist"),
        "{e}"
    );
    let odd = write(d.path(), "c.csv", b"Paris");
    let e = format!("{:#}", try_build(&[odd], &ents).unwrap_err());
    assert!(e.contains("c.csv: unknown format"), "{e}");
    let c = write(d.path(), "c.txt", b"Nothing to see here.\nStill nothing.\n");
    let e = format!("{:#}", try_build(&[c], &ents).unwrap_err());
    assert!(
        e.contains("no entity of the list is mentioned in the corpus (2 sentences read from"),
        "{e}"
    );
    let bad = write(d.path(), "c.json", b"[{\"tokens\": [\"a\"]},\n oops]");
    let e = format!("{:#}", try_build(&[bad], &ents).unwrap_err());
    assert!(e.contains("c.json:2: not valid JSON"), "{e}");
}

#[test]
fn entities_from_fewrel_collects_ids_names_and_aliases() {
    let d = tempfile::tempdir().unwrap();
    let f = write(
        d.path(),
        "f.json",
        br#"[{"tokens": ["a"], "h": ["apoptosis", "C1", [[0]]], "t": ["cells", "C2", [[0]]]},
            {"tokens": ["b"], "h": ["apoptotic cell death", "C1", [[0]]], "t": ["cells", "C2", [[0]]]},
            {"tokens": ["c"], "h": ["Apoptosis", "C1", [[0]]], "t": ["skin", "C3", [[0]]]}]"#,
    );
    let l = EntityList::from_fewrel(&[&f], 1).unwrap();
    let ids: Vec<&str> = l.entities.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["C1", "C2", "C3"]);
    assert_eq!(l.entities[0].name, "apoptosis");
    assert_eq!(
        l.entities[0].aliases,
        vec!["apoptotic cell death".to_string()]
    );
    let l = EntityList::from_fewrel(&[&f], 2).unwrap();
    assert_eq!(l.len(), 2);
    let out = d.path().join("e.tsv");
    l.write_tsv(&out).unwrap();
    assert_eq!(load_entities(&out).unwrap(), l);
}
