//! Fuzzing of the parsers, as ordinary tests with a fixed seed and a bounded number of cases:
//! entity lists, table files (safetensors bytes and metadata), project files and model
//! configs. None may panic; every case must answer (Ok or a clear error) quickly.

mod common;
use common::*;

use pelt::entities::EntityList;
use pelt::model::Config;
use pelt::project::Project;
use pelt::table::Table;
use std::path::Path;

const CASES: usize = 400;

/// xorshift64*: a small deterministic generator (the seed fixes every case).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values that tend to break parsers.
const NASTY: &[&str] = &[
    "",
    "0",
    "-1",
    "NaN",
    "inf",
    "-inf",
    "1e309",
    "18446744073709551616",
    "9223372036854775807",
    "-9223372036854775808",
    "4294967296",
    "\u{0}",
    "\x1b[2J",
    "\"",
    "\\",
    "\t",
    "\n",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "/",
    "1/0",
    "0/0",
    "3/2",
    "null",
    "true",
    "é",
    "\u{202E}",
    "[[[[[[[[",
];

/// A mutation of `input`: byte flips, cuts, repeated or inserted slices, nasty tokens.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.truncate(at),
            2 => {
                let end = (at + rng.below(64)).min(v.len());
                let chunk = v[at..end].to_vec();
                v.splice(at..at, chunk);
            }
            3 => {
                let end = (at + rng.below(32)).min(v.len());
                v.drain(at..end);
            }
            _ => {
                let t = NASTY[rng.below(NASTY.len())].as_bytes();
                let end = (at + rng.below(8)).min(v.len());
                v.splice(at..end, t.iter().copied());
            }
        }
    }
    v
}

/// A table's bytes with its JSON header mutated (so the safetensors framing stays valid and
/// the metadata and tensor descriptions are what gets fuzzed).
fn mutate_header(rng: &mut Rng, bytes: &[u8]) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = mutate(rng, &bytes[8..8 + n]);
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

#[test]
fn entity_lists_never_panic() {
    let tsv = std::fs::read(fixture("pelt/entities.tsv")).unwrap();
    let txt = b"Paris\nNew York\n# comment\n\nApple\n".to_vec();
    let mut rng = Rng(1);
    for case in 0..CASES {
        let (base, is_tsv) = if case % 2 == 0 {
            (&tsv, true)
        } else {
            (&txt, false)
        };
        let text = String::from_utf8_lossy(&mutate(&mut rng, base)).into_owned();
        let _ = EntityList::parse(&text, is_tsv, "fuzz.tsv");
    }
}

#[test]
fn table_files_never_panic() {
    let model =
        pelt::model::Model::load(&fixture("models/tiny-bert"), &candle_core::Device::Cpu).unwrap();
    let tables: Vec<Vec<u8>> = [None, Some((1, 2))]
        .into_iter()
        .map(|shard| {
            let opts = pelt::build::BuildOptions {
                k: 3,
                shard,
                ..Default::default()
            };
            let corpus = [fixture("pelt/corpus.txt")];
            let (t, _) = build_from(&model, &corpus, &fixture("pelt/entities.tsv"), &opts).unwrap();
            t.to_bytes().unwrap()
        })
        .collect();
    let mut rng = Rng(2);
    let mut accepted = 0;
    for case in 0..CASES {
        let base = &tables[case % 2];
        let bytes = if case % 3 == 0 {
            mutate(&mut rng, base)
        } else {
            mutate_header(&mut rng, base)
        };
        if let Ok(t) = Table::from_bytes(&bytes) {
            accepted += 1;
            // What loads is usable: every derived view works without panicking.
            // Contexts are read where they are used: a damaged one is an error there.
            let _ = t.embeddings(t.norm);
            let _ = t.not_found();
            for ci in 0..t.context_count() {
                let _ = t.context(ci);
            }
            let _ = t.to_bytes();
            let _ = t.entity_list();
            let _ = Table::merge_with(std::slice::from_ref(&t), true);
        }
    }
    eprintln!("{accepted} of {CASES} mutated tables loaded");
    // Both branches ran: some mutations still load (and their views were used above), others
    // are refused.
    assert!(accepted > 0, "no mutated table loaded");
    assert!(accepted < CASES, "every mutated table loaded");
}

#[test]
fn project_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let p = Project {
        corpus: vec![dir.path().join("c.txt")],
        entities: Some(dir.path().join("e.tsv")),
        ..Default::default()
    };
    let path = dir.path().join("p.ron");
    p.save(&path).unwrap();
    let base = std::fs::read(&path).unwrap();
    let mut rng = Rng(3);
    for _ in 0..CASES {
        std::fs::write(&path, mutate(&mut rng, &base)).unwrap();
        let _ = Project::load(&path);
    }
}

#[test]
fn model_configs_never_panic() {
    let mut rng = Rng(4);
    let file = Path::new("config.json");
    for name in ["tiny-bert", "tiny-distilbert", "tiny-roberta"] {
        let base = std::fs::read(fixture(&format!("models/{name}/config.json"))).unwrap();
        for _ in 0..CASES / 3 {
            let bytes = mutate(&mut rng, &base);
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                let _ = Config::from_json(&v, file);
            }
        }
        // Structured: every field set to an extreme value.
        let v: serde_json::Value = serde_json::from_slice(&base).unwrap();
        for key in v.as_object().unwrap().keys() {
            for x in [
                serde_json::json!(0),
                serde_json::json!(-1),
                serde_json::json!(u64::MAX),
                serde_json::json!(1e300),
                serde_json::json!("x"),
                serde_json::Value::Null,
            ] {
                let mut w = v.clone();
                w[key] = x;
                let _ = Config::from_json(&w, file);
            }
        }
    }
}

/// Every corpus format, linked ones included: mutated files are read without a panic, and every
/// sentence the reader yields has links that are sorted, disjoint, inside its text and on
/// character boundaries.
#[test]
fn corpus_formats_never_panic_and_links_stay_inside_their_sentences() {
    let dir = tempfile::tempdir().unwrap();
    let linked = fixture("linked");
    let bases: Vec<(&str, Vec<u8>)> = vec![
        ("c.txt", std::fs::read(fixture("pelt/corpus.txt")).unwrap()),
        (
            "c.jsonl",
            std::fs::read(linked.join("links.jsonl")).unwrap(),
        ),
        ("c.json", std::fs::read(linked.join("fewrel.json")).unwrap()),
        (
            "c.pubtator",
            std::fs::read(linked.join("doc.pubtator")).unwrap(),
        ),
        ("wiki_00", std::fs::read(linked.join("wiki_00")).unwrap()),
    ];
    let mut rng = Rng(5);
    for case in 0..CASES {
        let (name, base) = &bases[case % bases.len()];
        let path = dir.path().join(name);
        std::fs::write(&path, mutate(&mut rng, base)).unwrap();
        let corpus = pelt::corpus::Corpus::open(std::slice::from_ref(&path)).unwrap();
        let _ = corpus.for_each_sentence(|s| {
            let mut last = 0;
            for l in &s.links {
                assert!(
                    l.start >= last && l.start < l.end && l.end <= s.text.len(),
                    "case {case} ({name}): link {l:?} in {:?}",
                    s.text
                );
                assert!(
                    s.text.is_char_boundary(l.start) && s.text.is_char_boundary(l.end),
                    "case {case} ({name}): link {l:?} not on character boundaries"
                );
                assert!(!l.id.is_empty());
                last = l.end;
            }
            Ok(std::ops::ControlFlow::Continue(()))
        });
    }
}
