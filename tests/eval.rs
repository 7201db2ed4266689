//! Evaluation against an independent Python reference (tests/fixtures/gen_eval.py, HF
//! transformers) on one small FewRel-style file and the bundled model: typing correct counts
//! equal for every method and k; every cloze probe's gold rank equal to the reference's,
//! without the table and at every norm (a rank the reference marks ambiguous, its logit
//! within the tie tolerance of another piece's, only within its range); and the same numbers
//! from `pelt eval typing` and `pelt eval cloze`.

mod common;
use common::*;

use candle_core::Device;
use pelt::build::{build_table, BuildInput, BuildOptions, BuildOutcome};
use pelt::contexts::MentionMode;
use pelt::corpus::Corpus;
use pelt::entities::EntityList;
use pelt::eval::{
    eval_cloze, eval_typing, labels_from_fewrel, name_vectors, probes_from_fewrel, ClozeReport,
    MethodScore, Probe, ProbeReport,
};
use pelt::model::{bundled_model_dir, Model};
use pelt::table::Table;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;

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

/// The reference's gold rank of every probe: `[without, with at each norm]`, and whether the
/// reference marks it ambiguous (its logit within `tie_tolerance` of another piece's).
struct RefRanks {
    norms: Vec<f32>,
    /// probe → [without, with at norms[0], …]
    ranks: Vec<Vec<usize>>,
    ambiguous: Vec<Vec<bool>>,
    /// probe → the ranks each column can take: (rank, rank), or an ambiguous rank's range.
    range: Vec<Vec<(usize, usize)>>,
}

/// The reference's scores of column `c` (0 without the table, 1 + k at norms[k]): P@1 and P@10
/// as counts, and the least and greatest MRR that the ambiguous ranks' ranges allow.
fn ref_scores(w: &RefRanks, c: usize) -> (usize, usize, f64, f64) {
    let n = w.range.len() as f64;
    let col: Vec<(usize, usize)> = w.range.iter().map(|r| r[c]).collect();
    // An ambiguous rank never straddles 1 or 10, so the counts are exact.
    for &(lo, hi) in &col {
        assert!(
            (lo == 1) == (hi == 1) && (lo <= 10) == (hi <= 10),
            "{lo}..{hi}"
        );
    }
    (
        col.iter().filter(|x| x.0 == 1).count(),
        col.iter().filter(|x| x.0 <= 10).count(),
        col.iter().map(|x| 1.0 / x.1 as f64).sum::<f64>() / n,
        col.iter().map(|x| 1.0 / x.0 as f64).sum::<f64>() / n,
    )
}

fn ref_ranks(want: &Value) -> RefRanks {
    let norms = f32s(&want["norms"]);
    let cols: Vec<&Value> = std::iter::once(&want["without"])
        .chain(want["with"].as_array().unwrap())
        .collect();
    assert_eq!(cols.len(), norms.len() + 1);
    for (w, n) in cols[1..].iter().zip(&norms) {
        assert_eq!(w["norm"].as_f64().unwrap(), *n as f64);
    }
    let n = want["probes"].as_array().unwrap().len();
    let tol = want["tie_tolerance"].as_f64().unwrap();
    let mut ranks = vec![vec![0; cols.len()]; n];
    let mut ambiguous = vec![vec![false; cols.len()]; n];
    for (c, w) in cols.iter().enumerate() {
        let (r, g) = (
            w["ranks"].as_array().unwrap(),
            w["gaps"].as_array().unwrap(),
        );
        assert_eq!((r.len(), g.len()), (n, n));
        for (i, (r, g)) in r.iter().zip(g).enumerate() {
            ranks[i][c] = r.as_u64().unwrap() as usize;
            ambiguous[i][c] = g.as_f64().unwrap() < tol;
        }
    }
    // The list of ambiguous ranks is exactly the ranks whose gap is under the tolerance.
    let mut listed = vec![vec![false; cols.len()]; n];
    let mut range: Vec<Vec<(usize, usize)>> = ranks
        .iter()
        .map(|r| r.iter().map(|&x| (x, x)).collect())
        .collect();
    for a in want["ambiguous"].as_array().unwrap() {
        let i = count(a, "probe");
        let c = match a["norm"].as_f64() {
            None => 0,
            Some(x) => 1 + norms.iter().position(|&n| n as f64 == x).unwrap(),
        };
        assert_eq!(count(a, "rank"), ranks[i][c], "{a}");
        listed[i][c] = true;
        let rr = a["rank_range"].as_array().unwrap();
        range[i][c] = (
            rr[0].as_u64().unwrap() as usize,
            rr[1].as_u64().unwrap() as usize,
        );
        assert!(
            range[i][c].0 <= ranks[i][c] && ranks[i][c] <= range[i][c].1,
            "{a}"
        );
    }
    assert_eq!(
        listed, ambiguous,
        "the fixture's ambiguous list and its gaps disagree"
    );
    RefRanks {
        norms,
        ranks,
        ambiguous,
        range,
    }
}

/// Every rank of `got` that differs from the reference's, ambiguous ones left out, as
/// `probe i (text), norm: got … reference …`.
fn rank_mismatches(got: &ClozeReport, want: &RefRanks) -> Vec<String> {
    assert_eq!(got.ranks.len(), want.ranks.len(), "probes");
    let norms: Vec<f32> = got.with.iter().map(|x| x.0).collect();
    assert_eq!(norms, want.norms, "norms");
    let mut out = Vec::new();
    for (i, (g, w)) in got.ranks.iter().zip(&want.ranks).enumerate() {
        assert_eq!(g.with.len(), norms.len());
        let g: Vec<usize> = std::iter::once(g.without).chain(g.with.clone()).collect();
        for (c, (g, w)) in g.iter().zip(w).enumerate() {
            if !want.ambiguous[i][c] && g != w {
                let at = match c {
                    0 => "without the table".to_string(),
                    _ => format!("norm {}", norms[c - 1]),
                };
                out.push(format!(
                    "probe {i} ({}), {at}: rank {g} against the reference's {w}",
                    got.ranks[i].text
                ));
            }
        }
    }
    out
}

/// (probe, column) where the reference's gold rank with the table differs from the one
/// without it (column 1 + k is norms[k]), neither ambiguous.
fn plug_matters(want: &RefRanks) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, r) in want.ranks.iter().enumerate() {
        for (c, rc) in r.iter().enumerate().skip(1) {
            if *rc != r[0] && !want.ambiguous[i][0] && !want.ambiguous[i][c] {
                out.push((i, c));
            }
        }
    }
    out
}

/// The reference's table, probes and cloze report, made once for the tests below.
fn cloze_setup() -> &'static (Table, Vec<Probe>, ProbeReport, Value) {
    static SETUP: OnceLock<(Table, Vec<Probe>, ProbeReport, Value)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let exp = expected();
        let m = model();
        let table = table(&m, &exp);
        let (probes, rep) = probes_from_fewrel(&[fewrel_file()], &table, &m.tokenizer).unwrap();
        (table, probes, rep, exp["cloze"].clone())
    })
}

fn run_cloze(table: &Table, norms: &[f32]) -> ClozeReport {
    let (_, probes, rep, _) = cloze_setup();
    let cancel = AtomicBool::new(false);
    eval_cloze(
        &model(),
        table,
        probes.clone(),
        rep.clone(),
        norms,
        8,
        &cancel,
    )
    .unwrap()
}

/// The cloze report of the reference's table at the reference's norms, made once.
fn cloze_report() -> &'static ClozeReport {
    static REPORT: OnceLock<ClozeReport> = OnceLock::new();
    REPORT.get_or_init(|| {
        let (table, _, _, want) = cloze_setup();
        run_cloze(table, &f32s(&want["norms"]))
    })
}

#[test]
fn cloze_probes_equal_the_reference() {
    let (table, probes, rep, want) = cloze_setup();
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
}

#[test]
fn cloze_ranks_equal_the_reference_probe_by_probe() {
    let (_, _, _, want) = cloze_setup();
    let r = cloze_report();
    let w = ref_ranks(want);
    // The report's probes are the reference's, in its order.
    for (g, p) in r.ranks.iter().zip(want["probes"].as_array().unwrap()) {
        assert_eq!(g.text, p["text"].as_str().unwrap());
        assert_eq!(g.entity, p["entity"].as_str().unwrap());
        assert_eq!(g.gold as u64, p["gold"].as_u64().unwrap());
    }
    let bad = rank_mismatches(r, &w);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // The scores are those of these ranks: with every rank the reference's (none ambiguous),
    // equal to its scores.
    let columns: Vec<(&pelt::eval::ClozeScore, &Value)> =
        std::iter::once((&r.without, &want["without"]))
            .chain(
                r.with
                    .iter()
                    .map(|x| &x.1)
                    .zip(want["with"].as_array().unwrap()),
            )
            .collect();
    for (c, (got, wc)) in columns.into_iter().enumerate() {
        let ranks: Vec<usize> = r
            .ranks
            .iter()
            .map(|p| if c == 0 { p.without } else { p.with[c - 1] })
            .collect();
        let n = ranks.len() as f64;
        assert_eq!(got.probes, ranks.len());
        assert_eq!(
            got.p_at_1,
            ranks.iter().filter(|&&x| x == 1).count() as f64 / n
        );
        assert_eq!(
            got.p_at_10,
            ranks.iter().filter(|&&x| x <= 10).count() as f64 / n
        );
        // The reference's scores: the counts exactly, MRR within what its ambiguous ranks allow.
        let (p1, p10, lo, hi) = ref_scores(&w, c);
        assert_eq!(p1, count(wc, "p_at_1_correct"), "column {c}");
        assert_eq!(p10, count(wc, "p_at_10_correct"), "column {c}");
        let m = wc["mrr"].as_f64().unwrap();
        assert!(
            lo <= m + 1e-12 && m <= hi + 1e-12,
            "column {c}: {lo}..{hi}, {m}"
        );
        assert_eq!(got.p_at_1 * n, p1 as f64, "column {c}");
        assert_eq!(got.p_at_10 * n, p10 as f64, "column {c}");
        assert!(
            lo - 1e-12 <= got.mrr && got.mrr <= hi + 1e-12,
            "column {c}: MRR {} outside {lo}..{hi}",
            got.mrr
        );
    }
    // Per relation, the probes add up.
    assert_eq!(
        r.per_relation
            .values()
            .map(|(w, _)| w.probes)
            .sum::<usize>(),
        r.ranks.len()
    );
    // The JSON carries the ranks.
    let back: ClozeReport = serde_json::from_str(&serde_json::to_string(r).unwrap()).unwrap();
    assert_eq!(back.ranks, r.ranks);
}

#[test]
fn ambiguous_cloze_ranks_stay_within_their_range() {
    let (_, _, _, want) = cloze_setup();
    let r = cloze_report();
    let w = ref_ranks(want);
    let norms = f32s(&want["norms"]);
    let amb = want["ambiguous"].as_array().unwrap();
    eprintln!("{} ambiguous ranks in the reference", amb.len());
    for a in amb {
        let p = &r.ranks[count(a, "probe")];
        let got = match a["norm"].as_f64() {
            None => p.without,
            Some(x) => p.with[norms.iter().position(|&n| n as f64 == x).unwrap()],
        };
        let range = a["rank_range"].as_array().unwrap();
        let (lo, hi) = (
            range[0].as_u64().unwrap() as usize,
            range[1].as_u64().unwrap() as usize,
        );
        assert!(lo <= got && got <= hi, "{a}: rank {got}");
    }
    // Every other gap leaves room for the encoder's error, so those ranks are compared exactly.
    let tol = want["tie_tolerance"].as_f64().unwrap();
    assert!(tol >= 2e-4, "tolerance {tol} under twice the logits' 1e-4");
    assert_eq!(
        w.ambiguous.iter().flatten().filter(|&&x| x).count(),
        amb.len()
    );
}

#[test]
fn plugging_changes_ranks_as_in_the_reference() {
    let (_, _, _, want) = cloze_setup();
    let r = cloze_report();
    let w = ref_ranks(want);
    let changed = plug_matters(&w);
    // The reference has probes whose rank the table changes, at every norm.
    for c in 1..=w.norms.len() {
        let n = changed.iter().filter(|x| x.1 == c).count();
        eprintln!("norm {}: the table changes {n} gold ranks", w.norms[c - 1]);
        assert!(
            n > 0,
            "norm {}: no probe whose rank the table changes",
            w.norms[c - 1]
        );
    }
    // And the norm changes some ranks.
    assert!(
        w.ranks
            .iter()
            .any(|x| x[1..].windows(2).any(|p| p[0] != p[1])),
        "no probe whose rank depends on the norm"
    );
    for &(i, c) in &changed {
        let p = &r.ranks[i];
        assert_eq!(
            (p.without, p.with[c - 1]),
            (w.ranks[i][0], w.ranks[i][c]),
            "probe {i} ({}), norm {}: (without, with)",
            p.text,
            w.norms[c - 1]
        );
    }
}

#[test]
fn a_broken_plug_in_fails_the_rank_check() {
    let (table, _, _, want) = cloze_setup();
    let w = ref_ranks(want);
    let changed = plug_matters(&w);
    let norms = f32s(&want["norms"]);
    // Each breakage must change ranks the reference has, among them ranks that plugging
    // changes (so the check does not only catch it through the probes the table cannot
    // affect).
    let must_fail = |what: &str, r: &ClozeReport| {
        let bad = rank_mismatches(r, &w);
        eprintln!("{what}: {} ranks differ from the reference", bad.len());
        assert!(!bad.is_empty(), "{what}: the check passed");
        let hit = changed.iter().any(|&(i, c)| {
            let g = &r.ranks[i];
            (if c == 0 { g.without } else { g.with[c - 1] }) != w.ranks[i][c]
        });
        assert!(hit, "{what}: no plugged rank changed");
    };
    // Zero vectors: plugging a zero embedding.
    let mut parts = table.to_parts().unwrap();
    parts.sums.iter_mut().for_each(|x| *x = 0.0);
    let zero = Table::from_parts(parts).unwrap();
    must_fail("zero vectors", &run_cloze(&zero, &norms));
    // The wrong row: each entity plugged with the next row's vector.
    let mut parts = table.to_parts().unwrap();
    parts.sums.rotate_left(table.hidden());
    let shifted = Table::from_parts(parts).unwrap();
    must_fail("next row's vectors", &run_cloze(&shifted, &norms));
    // The norm ignored: every norm plugged at the table's own.
    let mut at_table_norm = run_cloze(table, &vec![table.norm; norms.len()]);
    for (x, n) in at_table_norm.with.iter_mut().zip(&norms) {
        x.0 = *n;
    }
    must_fail("one norm for all", &at_table_norm);
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

    // Cloze at the reference's norms: every rank in the JSON, the scores as printed.
    let want = &exp["cloze"];
    let norms: Vec<String> = want["norms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| format!("{}", x.as_f64().unwrap()))
        .collect();
    let cloze_json = d.path().join("cloze.json");
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
        "--json".as_ref(),
        cloze_json.as_os_str(),
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
    let r: ClozeReport = serde_json::from_slice(&std::fs::read(&cloze_json).unwrap()).unwrap();
    let w = ref_ranks(want);
    let bad = rank_mismatches(&r, &w);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // The printed rows are the reference's scores to the printed 3 decimals: P@1 and P@10
    // exactly, MRR within its ambiguous ranks' range, widened by the rounding of printing.
    let printed = |got: &[f64], c: usize, what: &str| {
        assert_eq!(got.len(), 3, "{what}:\n{out}");
        let n = w.ranks.len() as f64;
        let (p1, p10, lo, hi) = ref_scores(&w, c);
        let f = |x: f64| format!("{x:.3}");
        assert_eq!(f(got[0]), f(p1 as f64 / n), "{what}: P@1\n{out}");
        assert_eq!(f(got[1]), f(p10 as f64 / n), "{what}: P@10\n{out}");
        assert!(
            lo - 5e-4 <= got[2] && got[2] <= hi + 5e-4,
            "{what}: MRR {} outside {lo}..{hi}\n{out}",
            got[2]
        );
    };
    printed(&row_numbers(&out, "without table"), 0, "without");
    for (c, x) in want["with"].as_array().unwrap().iter().enumerate() {
        let label = format!("with, norm {}", x["norm"].as_f64().unwrap() as f32);
        let got = row_numbers(&out, &label);
        printed(&got[..3.min(got.len())], c + 1, &label);
    }
}
