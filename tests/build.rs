//! Table construction: reference equality with HF transformers, determinism, sharding,
//! cancel + resume, and the file format.

mod common;
use common::*;

use candle_core::Device;
use pelt::build::{build_table, BuildInput, BuildOptions, BuildOutcome, BuildReport};
use pelt::contexts::{mask_mention, MentionMode};
use pelt::corpus::Corpus;
use pelt::entities::load_entities;
use pelt::model::{bundled_model_dir, Model};
use pelt::progress::{Phase, Progress};
use pelt::table::{ContextText, Table, TextSource};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

fn build(
    model: &Model,
    corpus: &[PathBuf],
    entities: &Path,
    opts: &BuildOptions,
) -> (Table, BuildReport) {
    build_from(model, corpus, entities, opts).unwrap()
}

fn sample() -> (Vec<PathBuf>, PathBuf) {
    (
        vec![root().join("assets/sample/pubmed.txt")],
        root().join("assets/sample/pubmed-entities.tsv"),
    )
}

fn check_reference(model_dir: PathBuf, expected: &str) {
    let model = Model::load(&model_dir, &Device::Cpu).unwrap();
    let exp = json(&format!("pelt/{expected}"));
    let opts = BuildOptions {
        batch: 4,
        ..Default::default()
    };
    let (table, report) = build(
        &model,
        &[fixture("pelt/corpus.txt")],
        &fixture("pelt/entities.tsv"),
        &opts,
    );
    let norm = exp["norm"].as_f64().unwrap() as f32;
    let mut worst = 0f32;
    for (i, e) in exp["entities"].as_array().unwrap().iter().enumerate() {
        assert_eq!(table.entity_ids[i], e["id"].as_str().unwrap());
        assert_eq!(
            table.counts[i],
            e["count"].as_i64().unwrap(),
            "count of {}",
            table.entity_ids[i]
        );
        let d = max_abs_diff(&table.embedding_at(i, norm), &f32s(&e["embedding"]));
        worst = worst.max(d);
        assert!(
            d <= 1e-4,
            "{}: embedding differs by {d}",
            table.entity_ids[i]
        );
        let d = max_abs_diff(&table.sum(i), &f32s(&e["sum"]));
        assert!(d <= 1e-3, "{}: sum differs by {d}", table.entity_ids[i]);
    }
    eprintln!("{expected}: max |diff| of normalised vectors {worst:.2e}");
    assert_eq!(report.not_found, vec!["Q7259".to_string()]);
    // Same contexts, same masked inputs.
    let want = exp["contexts"].as_array().unwrap();
    assert_eq!(table.contexts().unwrap().len(), want.len());
    let mut got: Vec<(String, u32, u32, u32)> = table
        .contexts()
        .unwrap()
        .iter()
        .map(|c| {
            (
                table.entity_ids[c.entity as usize].clone(),
                c.line - 1,
                c.start,
                c.end,
            )
        })
        .collect();
    let mut exp_ctx: Vec<(String, u32, u32, u32)> = want
        .iter()
        .map(|c| {
            (
                c["entity"].as_str().unwrap().into(),
                c["line"].as_u64().unwrap() as u32,
                c["start"].as_u64().unwrap() as u32,
                c["end"].as_u64().unwrap() as u32,
            )
        })
        .collect();
    got.sort();
    exp_ctx.sort();
    assert_eq!(got, exp_ctx);
    for c in want {
        let all = table.contexts().unwrap();
        let rec = all
            .iter()
            .find(|r| {
                r.line - 1 == c["line"].as_u64().unwrap() as u32
                    && r.start == c["start"].as_u64().unwrap() as u32
            })
            .unwrap();
        let m = mask_mention(
            &model.tokenizer,
            &rec.text,
            rec.start as usize,
            rec.end as usize,
            64,
        )
        .unwrap()
        .unwrap();
        assert_eq!(m.ids, u32s(&c["input_ids"]));
        assert_eq!(m.mask_position as u64, c["mask_position"].as_u64().unwrap());
    }
}

#[test]
fn built_vectors_match_transformers_tiny_bert() {
    check_reference(fixture("models/tiny-bert"), "expected_tiny-bert.json");
}

#[test]
fn built_vectors_match_transformers_bundled_model() {
    check_reference(bundled_model_dir(), "expected_splade-tiny-msmarco.json");
}

#[test]
fn same_seed_gives_byte_identical_table_and_other_seed_differs() {
    let model = Model::load(&bundled_model_dir(), &Device::Cpu).unwrap();
    let (c, e) = sample();
    let opts = BuildOptions {
        k: 8,
        ..Default::default()
    };
    let (a, _) = build(&model, &c, &e, &opts);
    let (b, _) = build(&model, &c, &e, &opts);
    assert_eq!(a.to_bytes().unwrap(), b.to_bytes().unwrap());
    assert!(a.counts.iter().all(|&n| n <= 8));
    let (d, _) = build(&model, &c, &e, &BuildOptions { seed: 7, ..opts });
    assert_ne!(
        a.contexts().unwrap(),
        d.contexts().unwrap(),
        "another seed samples other contexts"
    );
}

#[test]
fn shards_merged_equal_the_single_build() {
    let model = Model::load(&bundled_model_dir(), &Device::Cpu).unwrap();
    let (c, e) = sample();
    let opts = BuildOptions {
        k: 16,
        ..Default::default()
    };
    let (whole, _) = build(&model, &c, &e, &opts);
    let (s0, _) = build(
        &model,
        &c,
        &e,
        &BuildOptions {
            shard: Some((0, 2)),
            ..opts.clone()
        },
    );
    let (s1, _) = build(
        &model,
        &c,
        &e,
        &BuildOptions {
            shard: Some((1, 2)),
            ..opts.clone()
        },
    );
    assert!(
        s0.contexts().unwrap().len() > 100 && s1.contexts().unwrap().len() > 100,
        "both shards do real work"
    );
    assert_eq!(s0.meta.shard, "0/2");
    let merged = Table::merge(&[s1.clone(), s0.clone()]).unwrap();
    assert_eq!(merged.meta.shard, "all");
    assert_eq!(merged.counts, whole.counts);
    assert_eq!(merged.contexts().unwrap(), whole.contexts().unwrap());
    assert_eq!(
        merged.embeddings(merged.norm),
        whole.embeddings(whole.norm),
        "vectors are copied, not recomputed"
    );
    assert_eq!(
        merged.to_bytes().unwrap(),
        whole.to_bytes().unwrap(),
        "merged shards are byte-identical to the single build"
    );
    // Mismatched tables are refused.
    let other = build(
        &model,
        &c,
        &e,
        &BuildOptions {
            seed: 1,
            shard: Some((1, 2)),
            ..opts
        },
    )
    .0;
    let err = format!("{:#}", Table::merge(&[s0, other]).unwrap_err());
    assert!(err.contains("seed"), "{err}");
}

#[test]
fn text_less_tables_are_smaller_read_the_corpus_back_and_merge_like_stored_ones() {
    let model = Model::load(&bundled_model_dir(), &Device::Cpu).unwrap();
    let (c, e) = sample();
    let opts = BuildOptions {
        k: 16,
        ..Default::default()
    };
    let none = BuildOptions {
        context_text: ContextText::None,
        ..opts.clone()
    };
    let (stored, _) = build(&model, &c, &e, &opts);
    let (mut bare, _) = build(&model, &c, &e, &none);
    let (stored_bytes, bare_bytes) = (stored.to_bytes().unwrap(), bare.to_bytes().unwrap());
    eprintln!(
        "sample, k 16: {} bytes with the sentences, {} without ({} entities)",
        stored_bytes.len(),
        bare_bytes.len(),
        stored.len()
    );
    assert!(
        bare_bytes.len() * 10 < stored_bytes.len() * 7,
        "much smaller"
    );
    assert_eq!(bare.context_text(), ContextText::None);
    assert_eq!(bare.corpus_files(), ["pubmed.txt"]);
    assert_eq!(bare.embeddings(7.0), stored.embeddings(7.0));
    let err = format!("{:#}", bare.contexts().unwrap_err());
    assert!(err.contains("stores no text"), "{err}");
    // Read back from the corpus (here through its folder, which holds other files too), the
    // contexts are the stored build's.
    bare.attach_corpus(&[root().join("assets/sample")]);
    let same_source = |cs: Vec<pelt::table::ContextRecord>| -> Vec<_> {
        cs.into_iter()
            .map(|c| pelt::table::ContextRecord {
                source: TextSource::Stored,
                ..c
            })
            .collect()
    };
    let back = bare.contexts().unwrap();
    assert!(back.iter().all(|c| c.source == TextSource::Corpus));
    assert!(back.iter().all(|c| c.offset != pelt::corpus::NO_OFFSET));
    assert_eq!(same_source(back), stored.contexts().unwrap());
    // Shards without text merge to the single build's bytes; with and without text do not mix.
    let shard = |i, o: &BuildOptions| {
        build(
            &model,
            &c,
            &e,
            &BuildOptions {
                shard: Some((i, 2)),
                ..o.clone()
            },
        )
        .0
    };
    let (s0, s1) = (shard(0, &none), shard(1, &none));
    assert_eq!(
        Table::merge(&[s1.clone(), s0]).unwrap().to_bytes().unwrap(),
        bare_bytes
    );
    let err = format!("{:#}", Table::merge(&[s1, shard(0, &opts)]).unwrap_err());
    assert!(err.contains("stores its context text"), "{err}");
    // An edited sentence is never shown in place of the one the table was built from.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&c[0]).unwrap();
    let first = text.lines().next().unwrap();
    let copy = dir.path().join("pubmed.txt");
    let edit = |to: &str| {
        let line = first.replacen("the", to, 1);
        std::fs::write(&copy, text.replacen(first, &line, 1)).unwrap();
    };
    // Of the same length, so that the lines after it stay where the table says they are.
    edit("teh");
    bare.attach_corpus(std::slice::from_ref(&copy));
    let ci = (0..stored.context_count())
        .find(|&i| stored.context(i).unwrap().line == 1)
        .unwrap();
    let err = format!("{:#}", bare.context(ci).unwrap_err());
    assert!(
        err.contains("stores no text and the corpus file pubmed.txt is changed at line 1"),
        "{err}"
    );
    let later = (0..bare.context_count())
        .find(|&i| stored.context(i).unwrap().line > 1)
        .unwrap();
    assert_eq!(bare.context(later).unwrap().source, TextSource::Corpus);
    let mut with_text = stored.clone();
    with_text.attach_corpus(std::slice::from_ref(&copy));
    let fell_back = with_text.context(ci).unwrap();
    assert_eq!(fell_back.source, TextSource::Stored);
    assert_eq!(fell_back.text, stored.context(ci).unwrap().text);
    // An edit that moves the lines after it: they count as changed too, never shown wrong.
    edit("a");
    let err = format!("{:#}", bare.context(later).unwrap_err());
    assert!(err.contains("is changed at line"), "{err}");
    assert_eq!(with_text.context(later).unwrap().source, TextSource::Stored);
    // The file gone.
    std::fs::remove_file(&copy).unwrap();
    bare.attach_corpus(std::slice::from_ref(&copy));
    let err = format!("{:#}", bare.context(later).unwrap_err());
    assert!(
        err.contains("stores no text and the corpus file pubmed.txt is missing"),
        "{err}"
    );
}

#[test]
fn table_bytes_do_not_depend_on_the_thread_count() {
    let model = Model::load(&bundled_model_dir(), &Device::Cpu).unwrap();
    let sample = |f: &str| root().join("assets/sample").join(f);
    let e = sample("pubmed-entities.tsv");
    // Linked JSON Lines, plain text and FewRel are parsed and matched in parallel. Unknown
    // links and name matches exercise the merged counts.
    for (corpus, mentions) in [
        (vec![sample("pubmed-linked.jsonl")], MentionMode::Links),
        (vec![sample("pubmed.txt")], MentionMode::Names),
        (
            vec![sample("val_pubmed.json"), sample("pubmed.txt")],
            MentionMode::Both,
        ),
    ] {
        let opts = |threads, encoders| BuildOptions {
            k: 8,
            mentions,
            threads,
            encoders,
            ..Default::default()
        };
        let (one, r1) = build(&model, &corpus, &e, &opts(1, 1));
        assert!(
            one.contexts().unwrap().len() > 1000,
            "{}",
            one.contexts().unwrap().len()
        );
        // Host threads and batches encoded at a time (each on its own thread, kernels kept
        // there) change nothing in the table.
        for (n, encoders) in [(2, 2), (5, 3)] {
            let (many, rn) = build(&model, &corpus, &e, &opts(n, encoders));
            assert!(
                many.to_bytes().unwrap() == one.to_bytes().unwrap(),
                "{mentions:?}: {n} threads and {encoders} encoders give other bytes than 1 and 1"
            );
            assert_eq!(rn.stages[3].threads, encoders);
            assert_eq!(rn.read, r1.read);
            assert_eq!(
                (rn.sentences, rn.unknown_links, &rn.unknown_examples),
                (r1.sentences, r1.unknown_links, &r1.unknown_examples)
            );
            assert_eq!(rn.threads, n);
        }
        if mentions == MentionMode::Links {
            assert!(r1.unknown_links > 0 && r1.unknown_examples.len() == 5);
        }
        let names: Vec<&str> = r1.stages.iter().map(|s| s.name).collect();
        assert_eq!(names, ["scan", "collect", "tokenize", "encode", "write"]);
        assert_eq!(r1.stages[0].items, r1.sentences);
        assert_eq!(
            r1.stages[3].items as usize,
            r1.contexts + r1.skipped_contexts
        );
        assert!(r1
            .stages
            .iter()
            .all(|s| s.secs > 0.0 && s.describe().contains(s.unit)));
        assert_eq!((r1.device.as_str(), r1.dtype.as_str()), ("cpu", "f32"));
        assert_eq!(r1.batch, "32 contexts");
    }
}

#[test]
fn cancelled_then_resumed_build_equals_uninterrupted() {
    let model = Model::load(&bundled_model_dir(), &Device::Cpu).unwrap();
    let (c, e) = sample();
    let opts = BuildOptions {
        k: 16,
        batch: 4,
        encoders: 1,
        ..Default::default()
    };
    let (whole, _) = build(&model, &c, &e, &opts);
    // Interrupted and resumed with three batches encoded at a time: those in flight when the
    // build is cancelled are added before the checkpoint, which stays a point to go on from.
    let opts = BuildOptions {
        encoders: 3,
        ..opts
    };
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("t.safetensors.ckpt");
    let corpus = Corpus::open(&c).unwrap();
    let entities = load_entities(&e).unwrap();
    let run = |options: &BuildOptions,
               resume: bool,
               cancel: &AtomicBool,
               progress: &mut dyn FnMut(&Progress)| {
        build_table(
            BuildInput {
                model: &model,
                corpus: &corpus,
                entities: &entities,
                options,
                out: None,
                tmp: None,
                checkpoint: Some(ckpt.clone()),
                resume,
                cancel,
            },
            progress,
        )
    };
    let cancel = AtomicBool::new(false);
    let mut at = 0;
    let out = run(&opts, false, &cancel, &mut |p| {
        if p.phase == Phase::Encoding && p.done * 2 >= p.total.unwrap() && at == 0 {
            at = p.done;
            cancel.store(true, Ordering::SeqCst);
        }
    })
    .unwrap();
    let BuildOutcome::Cancelled {
        done,
        total,
        checkpoint,
    } = out
    else {
        panic!("expected a cancelled build")
    };
    assert!(
        done >= at && done < total,
        "stopped part-way: {done}/{total}"
    );
    assert_eq!(checkpoint.as_ref(), Some(&ckpt));
    assert!(ckpt.exists());
    let out = run(&opts, true, &AtomicBool::new(false), &mut |_| {}).unwrap();
    let BuildOutcome::Finished(resumed, report) = out else {
        panic!("resume did not finish")
    };
    assert_eq!(report.resumed_from, done);
    assert_eq!(resumed.to_bytes().unwrap(), whole.to_bytes().unwrap());
    // A finished build removes its checkpoint and the rows spilled beside it.
    assert!(!ckpt.exists());
    assert!(!pelt::build::checkpoint_spill_dir(&ckpt).exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing left behind"
    );
    // A checkpoint from other options is refused.
    let cancel = AtomicBool::new(false);
    let out = run(&opts, false, &cancel, &mut |p| {
        if p.phase == Phase::Encoding && p.done > 0 {
            cancel.store(true, Ordering::SeqCst);
        }
    })
    .unwrap();
    assert!(matches!(out, BuildOutcome::Cancelled { .. }));
    let other = BuildOptions { seed: 3, ..opts };
    let err = run(&other, true, &AtomicBool::new(false), &mut |_| {});
    let err = format!(
        "{:#}",
        err.err().expect("mismatched checkpoint must be refused")
    );
    assert!(
        err.contains("checkpoint belongs to a build with other inputs"),
        "{err}"
    );
}

#[test]
fn table_file_round_trip_renorm_and_model_check() {
    let model = Model::load(&bundled_model_dir(), &Device::Cpu).unwrap();
    let (c, e) = sample();
    let (t, _) = build(
        &model,
        &c,
        &e,
        &BuildOptions {
            k: 4,
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.safetensors");
    t.save(&p).unwrap();
    t.save(&p).unwrap(); // overwriting leaves no temporary files behind
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let back = Table::load(&p).unwrap();
    assert_eq!(back, t);
    // Stored embeddings have the stored norm; renorm keeps the sums.
    let i = (0..t.len()).find(|&i| t.counts[i] > 0).unwrap();
    let n: f32 = t
        .embedding_at(i, t.norm)
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt();
    assert!((n - 7.0).abs() < 1e-4);
    let mut r = back.clone();
    r.norm = 2.5;
    let r2 = Table::from_bytes(&r.to_bytes().unwrap()).unwrap();
    assert_eq!(r2.norm, 2.5);
    for i in 0..t.len() {
        // Same direction and the same raw length, at the new norm.
        assert_eq!(r2.sum_norm(i), t.sum_norm(i));
        let (a, b) = (r2.embedding_at(i, 7.0), t.embedding_at(i, 7.0));
        assert!(max_abs_diff(&a, &b) <= 1e-5, "row {i}");
    }
    // Model check: the right model passes, another is refused with a clear message.
    back.check_model(
        &model.name(),
        &model.weights_sha256().unwrap(),
        model.hidden_size(),
    )
    .unwrap();
    let tiny = Model::load(&fixture("models/tiny-bert"), &Device::Cpu).unwrap();
    let err = format!(
        "{:#}",
        back.check_model(
            &tiny.name(),
            &tiny.weights_sha256().unwrap(),
            tiny.hidden_size()
        )
        .unwrap_err()
    );
    assert!(err.contains("only fits the model that built it"), "{err}");
    // Projector export.
    let pd = dir.path().join("proj");
    t.export_projector(&pd).unwrap();
    let vectors = std::fs::read_to_string(pd.join("vectors.tsv")).unwrap();
    let meta = std::fs::read_to_string(pd.join("metadata.tsv")).unwrap();
    assert_eq!(vectors.lines().count(), t.len());
    assert_eq!(
        vectors.lines().next().unwrap().split('\t').count(),
        t.hidden()
    );
    assert_eq!(meta.lines().count(), t.len() + 1);
    assert_eq!(meta.lines().next().unwrap(), "name\tid\tcount");
}

#[test]
fn damaged_table_files_are_refused_clearly() {
    let model = Model::load(&bundled_model_dir(), &Device::Cpu).unwrap();
    let (c, e) = sample();
    let (t, _) = build(
        &model,
        &c,
        &e,
        &BuildOptions {
            k: 2,
            ..Default::default()
        },
    );
    let bytes = t.to_bytes().unwrap();
    let err = format!(
        "{:#}",
        Table::from_bytes(&bytes[..bytes.len() / 2]).unwrap_err()
    );
    assert!(err.contains("safetensors"), "{err}");
    // Another format tag.
    let mut edited = bytes.clone();
    let at = edited
        .windows(12)
        .position(|w| w == b"pelt-table/2")
        .unwrap();
    edited[at + 11] = b'9';
    let err = format!("{:#}", Table::from_bytes(&edited).unwrap_err());
    assert!(
        err.contains("format") && err.contains("pelt-table/9"),
        "{err}"
    );
}

#[test]
fn the_memory_budget_changes_no_byte_and_one_below_the_entity_list_is_refused() {
    use pelt::build::budget::{entity_bytes, working_bytes, MIN_SORT};
    let model = Model::load(&bundled_model_dir(), &Device::Cpu).unwrap();
    let sample = |f: &str| root().join("assets/sample").join(f);
    let e = sample("pubmed-entities.tsv");
    let list = load_entities(&e).unwrap();
    for (corpus, mentions) in [
        (vec![sample("pubmed-linked.jsonl")], MentionMode::Links),
        (vec![sample("pubmed.txt")], MentionMode::Names),
    ] {
        let opts = |memory| BuildOptions {
            k: 8,
            mentions,
            memory,
            ..Default::default()
        };
        let (large, rl) = build(&model, &corpus, &e, &opts(4 << 30));
        assert_eq!((rl.sort_runs, rl.memory), (0, 4 << 30), "{mentions:?}");
        // The least budget the build takes: the sort of the mentions gets 16 KiB, so it
        // spills many runs and merges them in several passes.
        let o = opts(0);
        let window = o.window_size(o.batch_plan(model.encoder.packs_tokens()));
        let threads = pelt::build::resolve_threads(0);
        let need = entity_bytes(&list, mentions)
            + working_bytes(window, model.hidden_size(), o.max_len, threads)
            + MIN_SORT;
        let (tiny, rt) = build(&model, &corpus, &e, &opts(need));
        assert!(
            rt.sort_runs > 8 && rt.sort_passes >= 1,
            "{mentions:?}: {} runs, {} passes",
            rt.sort_runs,
            rt.sort_passes
        );
        assert_eq!(rt.mentions_found, rl.mentions_found);
        assert!(
            tiny.to_bytes().unwrap() == large.to_bytes().unwrap(),
            "{mentions:?}: the memory budget changed the table"
        );
        let err = format!(
            "{:#}",
            build_from(&model, &corpus, &e, &opts(need - 1)).unwrap_err()
        );
        assert!(
            err.contains("too small for the entity list")
                && err.contains(&format!("{} entities need about", list.len()))
                && err.contains(&format!("use --memory {}M or more", need.div_ceil(1 << 20))),
            "{err}"
        );
    }
}
