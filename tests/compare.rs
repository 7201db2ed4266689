//! `pelt compare` against an independent numpy computation (tests/fixtures/gen_compare.py):
//! two tables of the bundled sample, linked mentions against name matching.

mod common;
use common::*;

use pelt::analysis::compare::compare_tables;
use pelt::table::Table;
use sha2::{Digest, Sha256};
use std::sync::atomic::AtomicBool;

fn vectors_sha(t: &Table) -> String {
    let mut h = Sha256::new();
    for i in 0..t.len() {
        h.update(t.vector_bytes(i));
    }
    format!("{:x}", h.finalize())
}

#[test]
fn jaccard_at_k_matches_numpy_on_links_against_names() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (
        build_sample(dir.path(), "links", &["--mentions", "links"]),
        build_sample(dir.path(), "names", &["--mentions", "names"]),
    );
    let (a, b) = (Table::load(&pa).unwrap(), Table::load(&pb).unwrap());
    let want = json("compare/expected.json");
    for (t, name) in [(&a, "links"), (&b, "names")] {
        assert_eq!(
            vectors_sha(t),
            want["tables"][name].as_str().unwrap(),
            "the {name} table's vectors differ from those gen_compare.py measured: run it again"
        );
    }
    let k = want["k"].as_u64().unwrap() as usize;
    let never = AtomicBool::new(false);
    for (center, key) in [(false, "plain"), (true, "centred")] {
        let c = compare_tables(&a, &b, k, center, &never, &mut |_, _| {})
            .unwrap()
            .unwrap();
        let w = &want[key];
        assert_eq!(c.shared.len() as u64, w["shared"].as_u64().unwrap());
        assert_eq!((c.only_a, c.only_b), (a.len() - c.shared.len(), 0));
        let mut checked = 0;
        for (got, e) in c.shared.iter().zip(w["entities"].as_array().unwrap()) {
            assert_eq!(got.id, e["id"].as_str().unwrap());
            // A list whose k-th and (k+1)-th cosines lie closer than f32 rounding may differ.
            if e["gap"].as_f64().unwrap() > 1e-5 {
                assert_eq!(
                    got.jaccard,
                    e["jaccard"].as_f64().unwrap(),
                    "{key} {}",
                    got.id
                );
                checked += 1;
            }
        }
        assert!(
            checked * 10 > c.shared.len() * 9,
            "{key}: only {checked} compared"
        );
        let mean = w["mean_jaccard"].as_f64().unwrap();
        assert!(
            (c.mean_jaccard - mean).abs() < 0.005,
            "{key}: {} vs {mean}",
            c.mean_jaccard
        );
        // The most changed come first.
        let order = c.most_changed();
        assert!(order
            .windows(2)
            .all(|p| c.shared[p[0]].jaccard <= c.shared[p[1]].jaccard));
    }
    // The CLI prints the same as JSON.
    let (ok, stdout, err) = pelt(&[
        "compare",
        &pa.display().to_string(),
        &pb.display().to_string(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["pelt"], "compare");
    let mean = want["plain"]["mean_jaccard"].as_f64().unwrap();
    assert!((v["mean_jaccard"].as_f64().unwrap() - mean).abs() < 0.005);
}
