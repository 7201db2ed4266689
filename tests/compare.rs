//! `pelt compare` against an independent numpy computation (tests/fixtures/gen_compare.py):
//! two tables of the bundled sample, linked mentions against name matching; and the Compare
//! view's aligned maps against numpy's PCA and scipy's orthogonal Procrustes.

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

fn points(v: &serde_json::Value) -> Vec<[f64; 2]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()])
        .collect()
}

fn max_diff(a: &[[f64; 2]], b: &[[f64; 2]]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(p, q)| (p[0] - q[0]).abs().max((p[1] - q[1]).abs()))
        .fold(0.0, f64::max)
}

/// The signs (±1 per axis) that turn `ours` into `theirs`: a PCA axis has no sign of its own.
fn axis_signs(ours: &[[f64; 2]], theirs: &[[f64; 2]]) -> [f64; 2] {
    let dot = |ax: usize| {
        ours.iter()
            .zip(theirs)
            .map(|(p, q)| p[ax] * q[ax])
            .sum::<f64>()
    };
    [dot(0).signum(), dot(1).signum()]
}

fn flip(p: &[[f64; 2]], s: [f64; 2]) -> Vec<[f64; 2]> {
    p.iter().map(|q| [q[0] * s[0], q[1] * s[1]]).collect()
}

#[test]
fn orthogonal_procrustes_matches_scipy_on_links_against_names() {
    use pelt::analysis::compare::{aligned_maps, procrustes_2d};
    let want = json("compare/expected.json");
    let m = &want["maps"];
    let (np_a, np_b, np_aligned) = (points(&m["a"]), points(&m["b"]), points(&m["aligned"]));
    let (scale, disparity) = (
        m["scale"].as_f64().unwrap(),
        m["disparity"].as_f64().unwrap(),
    );

    // Given scipy's own inputs, the closed form finds scipy's matrix, scale and points.
    let p = procrustes_2d(&np_a, &np_b).unwrap();
    for i in 0..2 {
        for j in 0..2 {
            let r = m["rotation"][i][j].as_f64().unwrap();
            assert!(
                (p.rotation[i][j] - r).abs() < 1e-9,
                "R[{i}][{j}] {} vs {r}",
                p.rotation[i][j]
            );
        }
    }
    assert_eq!(p.reflected, m["reflected"].as_bool().unwrap());
    assert!(
        (p.scale - scale).abs() < 1e-9 * scale,
        "{} vs {scale}",
        p.scale
    );
    assert!(
        (p.disparity - disparity).abs() < 1e-9,
        "{} vs {disparity}",
        p.disparity
    );
    assert!(max_diff(&p.aligned, &np_aligned) < 1e-9);

    // From the tables: our maps (f32 PCA) are numpy's up to each axis's sign. A flip of A's
    // axes flips B's aligned points with them; a flip of B's is undone by the alignment (it
    // only turns a rotation into a reflection or back). Scale and disparity do not change.
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (
        build_sample(dir.path(), "links", &["--mentions", "links"]),
        build_sample(dir.path(), "names", &["--mentions", "names"]),
    );
    let (a, b) = (Table::load(&pa).unwrap(), Table::load(&pb).unwrap());
    assert_eq!(vectors_sha(&a), want["tables"]["links"].as_str().unwrap());
    assert_eq!(vectors_sha(&b), want["tables"]["names"].as_str().unwrap());
    let never = AtomicBool::new(false);
    let c = compare_tables(&a, &b, 10, false, &never, &mut |_, _| {})
        .unwrap()
        .unwrap();
    let maps = aligned_maps(&a, &b, &c).unwrap();
    // The first two variances lie close on this sample (σ₁/σ₂ ≈ 1.03), so the axes within
    // the plane come from the exact 2×2 step of `shared_pca`, not from the iteration (without
    // it A's map is off by a turn of the plane and this test fails); the gap still lies far
    // above f32 rounding, so the axes are determined to well within this tolerance.
    let (sa, sb) = (&m["singular_values_a"], &m["singular_values_b"]);
    assert!(
        sa[0].as_f64().unwrap() - sa[1].as_f64().unwrap() > 0.01,
        "{sa}"
    );
    assert!(
        sb[0].as_f64().unwrap() - sb[1].as_f64().unwrap() > 0.01,
        "{sb}"
    );
    let tol = 1e-5;
    let fa = axis_signs(&maps.a, &np_a);
    let fb = axis_signs(&maps.b_raw, &np_b);
    assert!(max_diff(&flip(&maps.a, fa), &np_a) < tol, "A's map");
    assert!(max_diff(&flip(&maps.b_raw, fb), &np_b) < tol, "B's map");
    assert!(
        max_diff(&flip(&maps.b.aligned, fa), &np_aligned) < tol,
        "B aligned onto A, in numpy's axes of A"
    );
    let flips = fa[0] * fa[1] * fb[0] * fb[1];
    assert_eq!(
        maps.b.reflected,
        m["reflected"].as_bool().unwrap() != (flips < 0.0),
        "a reflection exactly when the axis flips between ours and numpy's make one"
    );
    assert!(
        (maps.b.scale - scale).abs() < 1e-6 * scale,
        "{} vs {scale}",
        maps.b.scale
    );
    assert!(
        (maps.b.disparity - disparity).abs() < 1e-6,
        "{} vs {disparity}",
        maps.b.disparity
    );
}
