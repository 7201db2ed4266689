//! Entity-linked corpora: PELT vectors from exactly the linked spans (checked against HF
//! transformers), mention modes, entity lists from links, bad links, and reading limits.

mod common;
use common::*;

use candle_core::Device;
use pelt::build::{build_table, BuildInput, BuildOptions, BuildOutcome, BuildReport};
use pelt::contexts::{mask_mention, MentionMode};
use pelt::corpus::Corpus;
use pelt::entities::EntityList;
use pelt::model::{bundled_model_dir, Model};
use pelt::table::Table;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

fn try_build(
    model: &Model,
    corpus: &[PathBuf],
    entities: &EntityList,
    opts: &BuildOptions,
) -> anyhow::Result<(Table, BuildReport)> {
    let cancel = AtomicBool::new(false);
    let corpus = Corpus::open(corpus)?;
    match build_table(
        BuildInput {
            model,
            corpus: &corpus,
            entities,
            options: opts,
            out: None,
            tmp: None,
            checkpoint: None,
            resume: false,
            cancel: &cancel,
        },
        &mut |_| {},
    )? {
        BuildOutcome::Finished(t, r) => Ok((*t, r)),
        BuildOutcome::Cancelled { .. } => panic!("cancelled"),
    }
}

fn tiny() -> Model {
    Model::load(&fixture("models/tiny-bert"), &Device::Cpu).unwrap()
}

fn linked_dir() -> PathBuf {
    fixture("linked")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Byte offset of code point `c` in `s`.
fn byte_at(s: &str, c: usize) -> u32 {
    s.char_indices().nth(c).map(|(b, _)| b).unwrap_or(s.len()) as u32
}

fn check_linked_reference(model_dir: PathBuf, expected: &str) {
    let model = Model::load(&model_dir, &Device::Cpu).unwrap();
    let exp = json(&format!("pelt/{expected}"));
    let corpus = Corpus::open(&[linked_dir()]).unwrap();
    assert!(corpus.has_links().unwrap());
    let entities = EntityList::from_links(&corpus, 1).unwrap();
    let opts = BuildOptions {
        batch: 4,
        ..Default::default()
    };
    let (table, report) = try_build(&model, &[linked_dir()], &entities, &opts).unwrap();
    assert_eq!(report.mentions, MentionMode::Links, "auto picks links");
    assert_eq!(table.meta.mentions, "links");
    assert_eq!(report.unknown_links, 0);
    let norm = exp["norm"].as_f64().unwrap() as f32;
    let want = exp["entities"].as_array().unwrap();
    assert_eq!(table.len(), want.len());
    let mut worst = 0f32;
    for (i, e) in want.iter().enumerate() {
        let id = e["id"].as_str().unwrap();
        assert_eq!(table.entity_ids[i], id);
        assert_eq!(
            table.entity_names[i],
            e["name"].as_str().unwrap(),
            "name of {id}"
        );
        let aliases: Vec<String> = e["aliases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        assert_eq!(table.entity_aliases[i], aliases, "aliases of {id}");
        assert_eq!(
            table.counts[i],
            e["count"].as_i64().unwrap(),
            "count of {id}"
        );
        let d = max_abs_diff(&table.embedding_at(i, norm), &f32s(&e["embedding"]));
        worst = worst.max(d);
        assert!(d <= 1e-4, "{id}: embedding differs by {d}");
        let d = max_abs_diff(&table.sum(i), &f32s(&e["sum"]));
        assert!(d <= 1e-3, "{id}: sum differs by {d}");
    }
    eprintln!("{expected}: max |diff| of normalised vectors {worst:.2e}");
    // Exactly the linked spans, each with its masked input.
    let want = exp["contexts"].as_array().unwrap();
    assert_eq!(table.contexts().unwrap().len(), want.len());
    assert!(table.contexts().unwrap().iter().all(|c| c.linked));
    let key = |id: &str, file: &str, text: &str, s: u32, e: u32| {
        (id.to_string(), file.to_string(), text.to_string(), s, e)
    };
    let mut got: Vec<_> = table
        .contexts()
        .unwrap()
        .iter()
        .map(|c| {
            let file = corpus.files[c.file as usize]
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            key(
                &table.entity_ids[c.entity as usize],
                &file,
                &c.text,
                c.start,
                c.end,
            )
        })
        .collect();
    let mut exp_ctx: Vec<_> = want
        .iter()
        .map(|c| {
            let text = c["text"].as_str().unwrap();
            let s = byte_at(text, c["start"].as_u64().unwrap() as usize);
            let e = byte_at(text, c["end"].as_u64().unwrap() as usize);
            key(
                c["entity"].as_str().unwrap(),
                c["file"].as_str().unwrap(),
                text,
                s,
                e,
            )
        })
        .collect();
    got.sort();
    exp_ctx.sort();
    assert_eq!(got, exp_ctx);
    for c in want {
        let text = c["text"].as_str().unwrap();
        let s = byte_at(text, c["start"].as_u64().unwrap() as usize) as usize;
        let e = byte_at(text, c["end"].as_u64().unwrap() as usize) as usize;
        let m = mask_mention(&model.tokenizer, text, s, e, 64)
            .unwrap()
            .unwrap();
        assert_eq!(m.ids, u32s(&c["input_ids"]), "{text}");
        assert_eq!(m.mask_position as u64, c["mask_position"].as_u64().unwrap());
    }
}

#[test]
fn linked_vectors_match_transformers_tiny_bert() {
    check_linked_reference(
        fixture("models/tiny-bert"),
        "expected_linked_tiny-bert.json",
    );
}

#[test]
fn linked_vectors_match_transformers_bundled_model() {
    check_linked_reference(
        bundled_model_dir(),
        "expected_linked_splade-tiny-msmarco.json",
    );
}

const PARIS: &str = "Q90\tParis\tCity of Light\nQ142\tFrance\t\n";

#[test]
fn mention_modes_links_names_and_both() {
    let model = tiny();
    let d = tempfile::tempdir().unwrap();
    let ents = EntityList::parse(PARIS, true, "e.tsv").unwrap();
    let corpus = vec![linked_dir().join("links.jsonl")];
    let run = |mode| {
        let opts = BuildOptions {
            mentions: mode,
            ..Default::default()
        };
        try_build(&model, &corpus, &ents, &opts).unwrap()
    };
    let (links, r) = run(MentionMode::Links);
    assert_eq!(links.counts, vec![2, 1]);
    assert!(links.contexts().unwrap().iter().all(|c| c.linked));
    // Zürich and the Alps are linked to ids not on the list.
    assert_eq!(r.unknown_links, 2);
    assert_eq!(
        r.unknown_examples,
        vec!["Q72".to_string(), "Q1286".to_string()]
    );
    let (auto, r) = run(MentionMode::Auto);
    assert_eq!(r.mentions, MentionMode::Links);
    assert!(
        r.mentions_why.contains("carries entity links"),
        "{}",
        r.mentions_why
    );
    assert_eq!(auto.to_bytes().unwrap(), links.to_bytes().unwrap());
    let (names, r) = run(MentionMode::Names);
    assert_eq!(r.mentions, MentionMode::Names);
    assert_eq!(names.meta.mentions, "names");
    // Paris ×5, City of Light ×1; France ×2.
    assert_eq!(names.counts, vec![6, 2]);
    assert!(names.contexts().unwrap().iter().all(|c| !c.linked));
    let (both, _) = run(MentionMode::Both);
    assert_eq!(both.counts, vec![6, 2]);
    assert_eq!(
        both.contexts().unwrap().iter().filter(|c| c.linked).count(),
        3
    );
    // A name match never overlaps a link: the linked "City of Light" is one linked context.
    let all = both.contexts().unwrap();
    let col: Vec<_> = all
        .iter()
        .filter(|c| c.mention() == "City of Light")
        .collect();
    assert_eq!(col.len(), 1);
    assert!(col[0].linked);
    // The modes give different vectors and say so in the file.
    let loaded = Table::from_bytes(&both.to_bytes().unwrap()).unwrap();
    assert_eq!(loaded.meta.mentions, "both");
    assert_eq!(loaded.contexts().unwrap(), both.contexts().unwrap());
    // A plain-text corpus has no links: auto falls back to names, `links` is refused.
    let txt = write(d.path(), "c.txt", b"Paris is in France.\n");
    let opts = BuildOptions::default();
    let (t, r) = try_build(&model, std::slice::from_ref(&txt), &ents, &opts).unwrap();
    assert_eq!(
        (r.mentions, t.counts.clone()),
        (MentionMode::Names, vec![1, 1])
    );
    let opts = BuildOptions {
        mentions: MentionMode::Links,
        ..Default::default()
    };
    let e = format!("{:#}", try_build(&model, &[txt], &ents, &opts).unwrap_err());
    assert!(e.contains("carries no entity links"), "{e}");
}

#[test]
fn linked_builds_are_deterministic_and_shards_merge() {
    let model = tiny();
    let corpus = Corpus::open(&[linked_dir()]).unwrap();
    let ents = EntityList::from_links(&corpus, 1).unwrap();
    let opts = BuildOptions {
        k: 2,
        ..Default::default()
    };
    let (a, _) = try_build(&model, &[linked_dir()], &ents, &opts).unwrap();
    let (b, _) = try_build(&model, &[linked_dir()], &ents, &opts).unwrap();
    assert_eq!(a.to_bytes().unwrap(), b.to_bytes().unwrap());
    assert!(a.counts.iter().all(|&c| c <= 2));
    let q90 = a.index_of("Q90").unwrap();
    assert_eq!(
        (a.counts[q90], a.found[q90]),
        (2, 4),
        "K caps the 4 linked mentions"
    );
    let other = BuildOptions {
        seed: 7,
        ..opts.clone()
    };
    let (c, _) = try_build(&model, &[linked_dir()], &ents, &other).unwrap();
    assert_ne!(
        a.contexts().unwrap(),
        c.contexts().unwrap(),
        "another seed samples other spans"
    );
    let shard = |i| BuildOptions {
        shard: Some((i, 2)),
        ..opts.clone()
    };
    let (s0, _) = try_build(&model, &[linked_dir()], &ents, &shard(0)).unwrap();
    let (s1, _) = try_build(&model, &[linked_dir()], &ents, &shard(1)).unwrap();
    let m = Table::merge(&[s0, s1]).unwrap();
    assert_eq!(m.counts, a.counts);
    assert_eq!(m.contexts().unwrap(), a.contexts().unwrap());
    assert_eq!(
        m.to_bytes().unwrap(),
        a.to_bytes().unwrap(),
        "merged shards = the single build"
    );
}

#[test]
fn entities_from_links_and_min_count() {
    let corpus = Corpus::open(&[linked_dir()]).unwrap();
    let all = EntityList::from_links(&corpus, 1).unwrap();
    let q90 = &all.entities[all.index_of("Q90").unwrap()];
    assert_eq!(q90.name, "Paris");
    assert_eq!(q90.aliases, vec!["City of Light".to_string()]);
    let asp = &all.entities[all.index_of("MESH:D001241").unwrap()];
    assert_eq!(asp.name, "Aspirin");
    assert_eq!(asp.aliases, vec!["Acetylsalicylic acid".to_string()]);
    // The PubTator annotation with id "-" is no entity.
    assert!(all.entities.iter().all(|e| e.name != "cyclooxygenase"));
    let frequent = EntityList::from_links(&corpus, 3).unwrap();
    let ids: Vec<&str> = frequent.entities.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, vec!["MESH:D001241", "MESH:D005334", "Q90"]);
    let e = format!("{:#}", EntityList::from_links(&corpus, 100).unwrap_err());
    assert!(e.contains("no entity is linked at least 100 times"), "{e}");
}

#[test]
fn bad_links_are_skipped_with_file_and_line_and_the_build_goes_on() {
    let model = tiny();
    let d = tempfile::tempdir().unwrap();
    let ents = EntityList::parse(PARIS, true, "e.tsv").unwrap();
    let jl = write(
        d.path(),
        "c.jsonl",
        concat!(
            "{\"text\": \"Paris is in France.\", \"links\": [{\"start\": 0, \"end\": 5, \"id\": \"Q90\"}]}\n",
            "{\"text\": \"Paris again.\", \"links\": [{\"start\": 0, \"end\": 50, \"id\": \"Q90\"}]}\n",
            "{\"text\": \"Paris, France.\", \"links\": [{\"start\": 0, \"end\": 5, \"id\": \"Q90\"}, {\"start\": 3, \"end\": 13, \"id\": \"Q142\"}]}\n",
            "{\"text\": \"France.\", \"links\": [{\"start\": 0, \"id\": \"Q142\"}]}\n",
            "{\"text\": \"France.\", \"links\": \"Q142\"}\n",
        )
        .as_bytes(),
    );
    let pt = write(
        d.path(),
        "c.pubtator",
        b"7|t|Paris and France.\n7|a|In France.\n7\t0\t5\tParis\tGPE\tQ90\n7\tzero\t5\tParis\tGPE\tQ90\n7\t0\t6\tFrance\tGPE\tQ142\n7 just words\n\n",
    );
    let wiki = write(
        d.path(),
        "wiki_00",
        b"<doc id=\"1\" title=\"T\">\nT\nIn <a>Paris</a>, <a href=\"France\">France</a>.\n</doc>\n",
    );
    let (t, r) = try_build(&model, &[jl, pt, wiki], &ents, &BuildOptions::default()).unwrap();
    let w = r.read.warnings.join("\n");
    for expect in [
        "c.jsonl:2: links[0] (Q90): span 0..50 is empty or outside the text of 12 characters",
        "c.jsonl:3: links[1] (Q142): span 3..13 overlaps the link to Q90; left out",
        "c.jsonl:4: links[0]: expected {\"start\": int, \"end\": int, \"id\": non-empty string}",
        "c.jsonl:5: field `links` is not a list of links",
        "c.pubtator:4: start and end offsets must be non-negative integers",
        "c.pubtator:5: span 0..6 reads `Paris `, not the annotated mention `France`; left out",
        "c.pubtator:6: not a PubTator line",
        "wiki_00:3: `<a>` has no href; its text is kept without a link",
    ] {
        assert!(w.contains(expect), "missing `{expect}` in:\n{w}");
    }
    assert_eq!(r.read.skipped_lines, 3, "{w}");
    assert_eq!(r.read.skipped_links, 5, "{w}");
    // Good links on the same lines still count: Paris (jsonl 1, 3; PubTator). The wiki link
    // names the page `France`, an id not on this list.
    assert_eq!(t.counts, vec![3, 0]);
    assert_eq!(
        (r.unknown_links, r.unknown_examples.clone()),
        (1, vec!["France".to_string()])
    );
    // The anchor without href kept its text, unlinked; the France anchor is a link.
    let mut wiki_sentences = Vec::new();
    Corpus::open(&[d.path().join("wiki_00")])
        .unwrap()
        .for_each_sentence(|s| {
            wiki_sentences.push((s.text.clone(), s.links.clone()));
            Ok(std::ops::ControlFlow::Continue(()))
        })
        .unwrap();
    assert_eq!(wiki_sentences.len(), 1);
    assert_eq!(wiki_sentences[0].0, "In Paris, France.");
    assert_eq!(
        wiki_sentences[0].1,
        vec![pelt::corpus::Link {
            start: 10,
            end: 16,
            id: "France".into()
        }]
    );
}

#[test]
fn a_corpus_of_only_bad_lines_says_why() {
    let model = tiny();
    let d = tempfile::tempdir().unwrap();
    let ents = EntityList::parse(PARIS, true, "e.tsv").unwrap();
    let jl = write(d.path(), "c.jsonl", b"{not json\n{\"txt\": 1}\n");
    let e = format!(
        "{:#}",
        try_build(&model, &[jl], &ents, &BuildOptions::default()).unwrap_err()
    );
    assert!(e.contains("no entity of the list is mentioned"), "{e}");
    assert!(e.contains("c.jsonl:1: not valid JSON"), "{e}");
    assert!(e.contains("c.jsonl:2: no string field `text`"), "{e}");
}

#[cfg(unix)]
#[test]
fn only_regular_files_are_read_once_each() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("corpus");
    std::fs::create_dir(&dir).unwrap();
    let a = write(&dir, "a.txt", b"Paris.\n");
    // A FIFO inside a folder, and given directly: refused, never opened (opening would hang).
    let fifo = dir.join("pipe.txt");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(ok.success());
    let e = format!(
        "{:#}",
        Corpus::open(std::slice::from_ref(&dir)).unwrap_err()
    );
    assert!(e.contains("pipe.txt is a FIFO"), "{e}");
    let e = format!(
        "{:#}",
        Corpus::open(std::slice::from_ref(&fifo)).unwrap_err()
    );
    assert!(
        e.contains("is not a regular file or folder (a FIFO)"),
        "{e}"
    );
    std::fs::remove_file(&fifo).unwrap();
    // A link to a device in a folder (only read here, never written).
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.txt")).unwrap();
    let e = format!(
        "{:#}",
        Corpus::open(std::slice::from_ref(&dir)).unwrap_err()
    );
    assert!(e.contains("zero.txt is a device"), "{e}");
    std::fs::remove_file(dir.join("zero.txt")).unwrap();
    // A symlink loop.
    std::os::unix::fs::symlink(&dir, dir.join("loop")).unwrap();
    let e = format!(
        "{:#}",
        Corpus::open(std::slice::from_ref(&dir)).unwrap_err()
    );
    assert!(e.contains("a symlink loop"), "{e}");
    std::fs::remove_file(dir.join("loop")).unwrap();
    // The same file twice, directly or through a link.
    let e = format!("{:#}", Corpus::open(&[a.clone(), a.clone()]).unwrap_err());
    assert!(e.contains("is the same file as"), "{e}");
    std::os::unix::fs::symlink(&a, dir.join("b.txt")).unwrap();
    let e = format!(
        "{:#}",
        Corpus::open(std::slice::from_ref(&dir)).unwrap_err()
    );
    assert!(e.contains("b.txt is the same file as"), "{e}");
    std::fs::remove_file(dir.join("b.txt")).unwrap();
    assert_eq!(Corpus::open(&[dir]).unwrap().files, vec![a]);
    let e = format!(
        "{:#}",
        Corpus::open(&[d.path().join("none.txt")]).unwrap_err()
    );
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
fn huge_lines_and_examples_stay_bounded() {
    use std::io::Write;
    let model = tiny();
    let d = tempfile::tempdir().unwrap();
    let ents = EntityList::parse(PARIS, true, "e.tsv").unwrap();
    // 64 MiB of zeros without a newline, compressed to about 64 KiB, then a good line.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        gz.write_all(&zeros).unwrap();
    }
    gz.write_all(b"\nParis is in France.\n").unwrap();
    let p = write(d.path(), "z.txt.gz", &gz.finish().unwrap());
    let (t, r) = try_build(&model, &[p], &ents, &BuildOptions::default()).unwrap();
    assert_eq!(t.counts, vec![1, 1]);
    assert!(
        r.read.warnings[0].contains("z.txt.gz:1: line of 67108865 bytes is longer than the limit"),
        "{:?}",
        r.read.warnings
    );
    // A FewRel file whose one example is over the limit is refused, not parsed whole.
    let mut big = String::from("[{\"tokens\": [\"");
    big.push_str(&"a".repeat(2 << 20));
    big.push_str("\"]}]");
    let f = write(d.path(), "big.json", big.as_bytes());
    let e = format!(
        "{:#}",
        try_build(&model, &[f], &ents, &BuildOptions::default()).unwrap_err()
    );
    assert!(
        e.contains("big.json:1: an example is longer than the limit"),
        "{e}"
    );
}

#[test]
fn cli_builds_from_links_without_an_entity_list() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("t.safetensors");
    let tsv = d.path().join("e.tsv");
    let bin = env!("CARGO_BIN_EXE_pelt");
    let run = |args: &[&std::ffi::OsStr]| {
        let o = std::process::Command::new(bin).args(args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.success(), text)
    };
    let corpus = linked_dir();
    let (ok, text) = run(&[
        "entities-from-links".as_ref(),
        corpus.as_os_str(),
        "--out".as_ref(),
        tsv.as_os_str(),
        "--min-count".as_ref(),
        "2".as_ref(),
    ]);
    assert!(ok, "{text}");
    let list = pelt::entities::load_entities(&tsv).unwrap();
    assert_eq!(list.len(), 5, "{list:?}");
    let (ok, text) = run(&[
        "build".as_ref(),
        "--corpus".as_ref(),
        corpus.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--model".as_ref(),
        fixture("models/tiny-bert").as_os_str(),
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("mentions: links (auto: the corpus carries entity links)"),
        "{text}"
    );
    assert!(
        text.contains("entities: 16 ids from the corpus's links"),
        "{text}"
    );
    // The read for the entity list is the summary's first stage, over the sentences the scan
    // reads again.
    let sentences = |stage: &str| -> Option<u64> {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("  {stage}: ")))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    let at = |stage: &str| text.find(&format!("\n  {stage}: "));
    assert!(
        at("entities").is_some() && at("entities") < at("scan"),
        "{text}"
    );
    assert!(sentences("entities").is_some_and(|n| n > 0), "{text}");
    assert_eq!(sentences("entities"), sentences("scan"), "{text}");
    let t = Table::load(&out).unwrap();
    assert_eq!((t.len(), t.meta.mentions.as_str()), (16, "links"));
    let (ok, text) = run(&[
        "build".as_ref(),
        "--corpus".as_ref(),
        fixture("pelt/corpus.txt").as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--mentions".as_ref(),
        "linked".as_ref(),
    ]);
    assert!(!ok);
    assert!(
        text.contains("expected auto, links, names or both"),
        "{text}"
    );
}

#[test]
fn eval_typing_reports_table_name_and_majority_and_refuses_unknown_ids() {
    let model = tiny();
    let corpus = Corpus::open(&[linked_dir()]).unwrap();
    let ents = EntityList::from_links(&corpus, 1).unwrap();
    let (t, _) = try_build(&model, &[linked_dir()], &ents, &BuildOptions::default()).unwrap();
    let labels = pelt::eval::labels_from_fewrel(&[linked_dir().join("fewrel.json")], 1).unwrap();
    // P17: Paris (Q90, head once and tail once: the first wins), France, Eiffel Tower; P131: Zurich, Switzerland.
    assert_eq!(labels.get("Q90").map(String::as_str), Some("P17/head"));
    assert_eq!(labels.get("Q39").map(String::as_str), Some("P131/tail"));
    let emb = model.encoder.word_embeddings().unwrap();
    let names = pelt::eval::name_vectors(&t, &model.tokenizer, &emb).unwrap();
    let r = pelt::eval::eval_typing(&t, &labels, Some(&names), 1).unwrap();
    assert_eq!((r.entities, r.found, r.labels, r.unknown_ids), (5, 5, 4, 0));
    let methods: Vec<&str> = r.all.iter().map(|m| m.method.as_str()).collect();
    assert_eq!(methods, vec!["table", "name", "majority"]);
    for m in r.all.iter().chain(&r.found_only) {
        assert_eq!(m.total, 5);
        assert_eq!(m.per_label.values().map(|v| v.1).sum::<usize>(), 5);
        assert!((m.accuracy - m.correct as f64 / 5.0).abs() < 1e-12);
    }
    let mut unknown = pelt::eval::Labels::new();
    unknown.insert("Q999".into(), "x".into());
    let e = format!(
        "{:#}",
        pelt::eval::eval_typing(&t, &unknown, None, 5).unwrap_err()
    );
    assert!(
        e.contains("none of the 1 labelled ids is an entity of the table"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        pelt::eval::labels_from_fewrel(&[linked_dir().join("fewrel.json")], 50).unwrap_err()
    );
    assert!(
        e.contains("no entity has at least 50 linked mentions"),
        "{e}"
    );
}

#[test]
fn cloze_probes_plug_the_entity_and_change_ranks() {
    let model = Model::load(&bundled_model_dir(), &Device::Cpu).unwrap();
    let corpus = Corpus::open(&[linked_dir()]).unwrap();
    let ents = EntityList::from_links(&corpus, 1).unwrap();
    let (t, _) = try_build(&model, &[linked_dir()], &ents, &BuildOptions::default()).unwrap();
    let (probes, rep) =
        pelt::eval::probes_from_fewrel(&[linked_dir().join("fewrel.json")], &t, &model.tokenizer)
            .unwrap();
    assert_eq!(rep.made, probes.len());
    assert!(!probes.is_empty());
    for p in &probes {
        assert_eq!(p.text.matches("[MASK]").count(), 1, "{}", p.text);
        assert_eq!(
            &p.text[p.mention.0..p.mention.1],
            t.entity_names[p.entity],
            "{p:?}"
        );
    }
    let cancel = AtomicBool::new(false);
    let r = pelt::eval::eval_cloze(&model, &t, probes, rep, &[0.5, 7.0, 50.0], 2, &cancel).unwrap();
    eprintln!("{r:?}");
    // Rank by rank: at every norm the entity's vector changes ranks, against the rewritten
    // sentences with a zero vector plugged (a plug-in that ignored the vector would give
    // those). These two probes' ranks do not move between norms 0.5 and 50; the norm's effect,
    // and the ranks themselves, are compared with transformers' in tests/eval.rs.
    let mut parts = t.to_parts().unwrap();
    parts.sums.iter_mut().for_each(|x| *x = 0.0);
    let zero = Table::from_parts(parts).unwrap();
    let (probes, rep) =
        pelt::eval::probes_from_fewrel(&[linked_dir().join("fewrel.json")], &t, &model.tokenizer)
            .unwrap();
    let z =
        pelt::eval::eval_cloze(&model, &zero, probes, rep, &[0.5, 7.0, 50.0], 2, &cancel).unwrap();
    let column = |c: usize| -> Vec<usize> {
        r.ranks
            .iter()
            .map(|p| if c == 0 { p.without } else { p.with[c - 1] })
            .collect()
    };
    assert_eq!(r.ranks.len(), r.without.probes);
    for (c, (norm, _)) in r.with.iter().enumerate() {
        let zeroed: Vec<usize> = z.ranks.iter().map(|p| p.with[c]).collect();
        eprintln!("norm {norm}: {:?}, zero vector {zeroed:?}", column(c + 1));
        assert_ne!(
            column(c + 1),
            zeroed,
            "norm {norm}: the entity's vector changed no rank"
        );
    }
}
