//! Evaluation against an independent Python reference (tests/fixtures/gen_eval.py, HF
//! transformers) on one small FewRel-style file and the bundled model: typing correct counts
//! equal for every method and k, cloze P@1 within one probe at every norm, and the same
//! numbers printed by `pelt eval typing` and `pelt eval cloze`.

mod common;
use common::*;

use candle_core::Device;
use pelt::build::{build_table, BuildInput, BuildOptions, BuildOutcome};
use pelt::contexts::MentionMode;
use pelt::corpus::Corpus;
use pelt::entities::EntityList;
use pelt::eval::{
    eval_cloze, eval_typing, labels_from_fewrel, name_vectors, probes_from_fewrel, MethodScore,
};
use pelt::model::{bundled_model_dir, Model};
use pelt::table::Table;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

fn fewrel_file() -> PathBuf {
    fixture("eval/fewrel.json")
}

fn expected() -> Value {
    json("eval/expected.json")
}

fn model() -> Model {
    Model::load(&bundled_model_dir(), &Device::Cpu).unwrap()
}

/// The table of the file's linked spans, checked against the reference's entity rows.
fn table(model: &Model, exp: &Value) -> Table {
    let cancel = AtomicBool::new(false);
    let corpus = Corpus::open(&[fewrel_file()]).unwrap();
    let entities = EntityList::from_links(&corpus, 1).unwrap();
    let opts = BuildOptions {
        mentions: MentionMode::Links,
        batch: 16,
        ..Default::default()
    };
    let table = match build_table(
        BuildInput {
            model,
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
    )
    .unwrap()
    {
        BuildOutcome::Finished(t, _) => *t,
        BuildOutcome::Cancelled { .. } => panic!("cancelled"),
    };
    // Row order matters (k-NN ties go by row, majority ties by label order of rows).
    let want = exp["entities"].as_array().unwrap();
    assert_eq!(table.len(), want.len());
    for (i, e) in want.iter().enumerate() {
        assert_eq!(table.entity_ids[i], e["id"].as_str().unwrap(), "row {i}");
        assert_eq!(
            table.entity_names[i],
            e["name"].as_str().unwrap(),
            "row {i}"
        );
        assert_eq!(
            table.counts[i],
            e["count"].as_i64().unwrap(),
            "count of row {i}"
        );
    }
    table
}

fn count(v: &Value, key: &str) -> usize {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}")) as usize
}

fn method<'a>(scores: &'a [MethodScore], name: &str) -> &'a MethodScore {
    scores
        .iter()
        .find(|s| s.method == name)
        .unwrap_or_else(|| panic!("no method {name}"))
}

#[test]
fn labels_match_the_reference() {
    let exp = expected();
    let labels = labels_from_fewrel(&[fewrel_file()], count(&exp, "min_mentions")).unwrap();
    let want: std::collections::BTreeMap<String, String> = exp["entities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                e["id"].as_str()?.to_string(),
                e["label"].as_str()?.to_string(),
            ))
        })
        .collect();
    assert_eq!(labels, want);
}

#[test]
fn typing_counts_equal_the_reference() {
    let exp = expected();
    let m = model();
    let table = table(&m, &exp);
    let labels = labels_from_fewrel(&[fewrel_file()], count(&exp, "min_mentions")).unwrap();
    let names = name_vectors(&table, &m.tokenizer, &m.encoder.word_embeddings().unwrap()).unwrap();
    for (k, want) in exp["typing"].as_object().unwrap() {
        let k: usize = k.parse().unwrap();
        let r = eval_typing(&table, &labels, Some(&names), k).unwrap();
        assert_eq!(r.entities, count(want, "entities"), "k={k}");
        assert_eq!(r.found, count(want, "found"), "k={k}");
        assert_eq!(r.labels, count(want, "labels"), "k={k}");
        assert_eq!(r.unknown_ids, count(want, "unknown_ids"), "k={k}");
        for (part, got) in [("all", &r.all), ("found_only", &r.found_only)] {
            for name in ["table", "name", "majority"] {
                let w = &want[part][name];
                let g = method(got, name);
                eprintln!(
                    "typing k={k} {part} {name}: rust {}/{}, reference {}/{}",
                    g.correct,
                    g.total,
                    count(w, "correct"),
                    count(w, "total")
                );
                assert_eq!(
                    (g.correct, g.total),
                    (count(w, "correct"), count(w, "total")),
                    "k={k} {part} {name}"
                );
                for (label, pair) in w["per_label"].as_object().unwrap() {
                    let p = pair.as_array().unwrap();
                    let p = (
                        p[0].as_u64().unwrap() as usize,
                        p[1].as_u64().unwrap() as usize,
                    );
                    assert_eq!(
                        g.per_label.get(label),
                        Some(&p),
                        "k={k} {part} {name} {label}"
                    );
                }
                assert_eq!(g.per_label.len(), w["per_label"].as_object().unwrap().len());
            }
        }
    }
}

#[test]
fn cloze_within_one_probe_of_the_reference() {
    let exp = expected();
    let m = model();
    let table = table(&m, &exp);
    let want = &exp["cloze"];
    let (probes, rep) = probes_from_fewrel(&[fewrel_file()], &table, &m.tokenizer).unwrap();
    assert_eq!(rep.made, count(&want["report"], "made"));
    assert_eq!(
        rep.no_one_piece_gold,
        count(&want["report"], "no_one_piece_gold")
    );
    assert_eq!(
        rep.entity_not_in_table,
        count(&want["report"], "entity_not_in_table")
    );
    // The same probes: masked sentence, gold piece, plugged entity.
    let wp = want["probes"].as_array().unwrap();
    assert_eq!(probes.len(), wp.len());
    for (p, w) in probes.iter().zip(wp) {
        assert_eq!(p.text, w["text"].as_str().unwrap());
        assert_eq!(p.gold as u64, w["gold"].as_u64().unwrap(), "{}", p.text);
        assert_eq!(
            table.entity_ids[p.entity],
            w["entity"].as_str().unwrap(),
            "{}",
            p.text
        );
        assert_eq!(p.relation, w["relation"].as_str().unwrap(), "{}", p.text);
    }
    let norms: Vec<f32> = f32s(&want["norms"]);
    let cancel = AtomicBool::new(false);
    let r = eval_cloze(&m, &table, probes, rep, &norms, 8, &cancel).unwrap();
    let n = wp.len();
    let mut worst = (0usize, 0usize, 0f64);
    let mut check = |what: &str, got: &pelt::eval::ClozeScore, w: &Value| {
        assert_eq!(got.probes, count(w, "probes"), "{what}");
        let p1 = (got.p_at_1 * n as f64).round() as usize;
        let p10 = (got.p_at_10 * n as f64).round() as usize;
        let (w1, w10) = (count(w, "p_at_1_correct"), count(w, "p_at_10_correct"));
        let dm = (got.mrr - w["mrr"].as_f64().unwrap()).abs();
        eprintln!(
            "cloze {what}: P@1 {p1} (reference {w1}), P@10 {p10} ({w10}), MRR {:.4} ({:.4}) of {n}",
            got.mrr,
            w["mrr"].as_f64().unwrap()
        );
        worst = (
            worst.0.max(p1.abs_diff(w1)),
            worst.1.max(p10.abs_diff(w10)),
            worst.2.max(dm),
        );
        assert!(
            p1.abs_diff(w1) <= 1,
            "{what}: P@1 {p1} of {n}, reference {w1}"
        );
        assert!(
            p10.abs_diff(w10) <= 1,
            "{what}: P@10 {p10} of {n}, reference {w10}"
        );
        assert!(dm <= 0.02, "{what}: MRR {} against {}", got.mrr, w["mrr"]);
    };
    check("without", &r.without, &want["without"]);
    let ww = want["with"].as_array().unwrap();
    assert_eq!(r.with.len(), ww.len());
    for ((norm, s), w) in r.with.iter().zip(ww) {
        assert_eq!(*norm as f64, w["norm"].as_f64().unwrap());
        check(&format!("with, norm {norm}"), s, w);
    }
    eprintln!(
        "cloze max |diff|: P@1 {} probes, P@10 {} probes, MRR {:.2e}",
        worst.0, worst.1, worst.2
    );
    // Per relation, the probes add up.
    assert_eq!(
        r.per_relation
            .values()
            .map(|(w, _)| w.probes)
            .sum::<usize>(),
        n
    );
}

fn run_cli(args: &[&std::ffi::OsStr]) -> String {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_pelt"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{text}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The numbers of a printed row starting with `label` (parenthesised totals included).
fn row_numbers(text: &str, label: &str) -> Vec<f64> {
    let line = text
        .lines()
        .find(|l| l.starts_with(label) && l[label.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no row `{label}` in\n{text}"));
    line[label.len()..]
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.parse().ok())
        .collect()
}

#[test]
fn cli_prints_the_reference_numbers() {
    let exp = expected();
    let m = model();
    let table = table(&m, &exp);
    let d = tempfile::tempdir().unwrap();
    let t = d.path().join("t.safetensors");
    table.save(&t).unwrap();
    let file = fewrel_file();
    let model_dir = root().join("assets/models/splade-tiny-msmarco");

    // Typing, k = 5.
    let want = &exp["typing"]["5"];
    let out = run_cli(&[
        "eval".as_ref(),
        "typing".as_ref(),
        "--table".as_ref(),
        t.as_os_str(),
        "--from-fewrel".as_ref(),
        file.as_os_str(),
        "--k".as_ref(),
        "5".as_ref(),
        "--model".as_ref(),
        model_dir.as_os_str(),
    ]);
    let n = count(want, "entities");
    assert!(
        out.contains(&format!(
            "{n} labelled entities of the table ({n} found in the corpus), {} labels",
            count(want, "labels")
        )),
        "{out}"
    );
    for name in ["table", "name", "majority"] {
        let (a, f) = (&want["all"][name], &want["found_only"][name]);
        let acc = |w: &Value| {
            format!(
                "{:.3}",
                count(w, "correct") as f64 / count(w, "total") as f64
            )
        };
        let got = row_numbers(&out, name);
        let got: Vec<String> = got.iter().map(|x| format!("{x:.3}")).collect();
        assert_eq!(
            got,
            vec![
                acc(a),
                format!("{:.3}", count(a, "total") as f64),
                acc(f),
                format!("{:.3}", count(f, "total") as f64)
            ],
            "{name}:\n{out}"
        );
    }

    // Cloze at the reference's norms.
    let want = &exp["cloze"];
    let norms: Vec<String> = want["norms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| format!("{}", x.as_f64().unwrap()))
        .collect();
    let out = run_cli(&[
        "eval".as_ref(),
        "cloze".as_ref(),
        "--table".as_ref(),
        t.as_os_str(),
        "--from-fewrel".as_ref(),
        file.as_os_str(),
        "--norms".as_ref(),
        norms.join(",").as_ref(),
        "--device".as_ref(),
        "cpu".as_ref(),
        "--model".as_ref(),
        model_dir.as_os_str(),
    ]);
    let rep = &want["report"];
    assert!(
        out.contains(&format!(
            "cloze: {} probes ({} without a one-piece gold word, {} whose entity has no vector",
            count(rep, "made"),
            count(rep, "no_one_piece_gold"),
            count(rep, "entity_not_in_table")
        )),
        "{out}"
    );
    let n = count(rep, "made") as f64;
    let close = |got: &[f64], w: &Value, what: &str| {
        assert_eq!(got.len(), 3, "{what}:\n{out}");
        let p1 = (got[0] * n).round() as i64;
        let w1 = count(w, "p_at_1_correct") as i64;
        assert!(
            (p1 - w1).abs() <= 1,
            "{what}: P@1 {} against {w1} of {n}:\n{out}",
            got[0]
        );
        let p10 = (got[1] * n).round() as i64;
        let w10 = count(w, "p_at_10_correct") as i64;
        assert!(
            (p10 - w10).abs() <= 1,
            "{what}: P@10 {} against {w10} of {n}:\n{out}",
            got[1]
        );
        assert!(
            (got[2] - w["mrr"].as_f64().unwrap()).abs() <= 0.02,
            "{what}: MRR:\n{out}"
        );
    };
    close(
        &row_numbers(&out, "without table"),
        &want["without"],
        "without",
    );
    for w in want["with"].as_array().unwrap() {
        let label = format!("with, norm {}", w["norm"].as_f64().unwrap() as f32);
        let got = row_numbers(&out, &label);
        close(&got[..3.min(got.len())], w, &label);
    }
}
