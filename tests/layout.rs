//! Maps: the metrics against scikit-learn and numpy (tests/fixtures/gen_layout.py), and
//! t-SNE on the sample against PCA by those metrics, with the FewRel relation labels.

mod common;
use common::*;

use pelt::analysis::layout::{
    knn_label_agreement, trustworthiness, tsne_2d, umap_2d, TsneParams, UmapParams,
};
use pelt::table::Table;
use std::sync::atomic::AtomicBool;

#[test]
fn map_metrics_match_scikit_learn_and_numpy() {
    let want = json("layout/expected.json");
    let d = want["dims"].as_u64().unwrap() as usize;
    let points: Vec<f32> = want["points"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(f32s)
        .collect();
    let labels: Vec<Option<u32>> = want["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| Some(l.as_u64().unwrap() as u32))
        .collect();
    for (name, m) in want["maps"].as_object().unwrap() {
        let coords: Vec<[f64; 2]> = m["coords"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()])
            .collect();
        for k in [5usize, 12] {
            let t = trustworthiness(&points, d, &coords, k);
            let wt = m["trustworthiness"][k.to_string()].as_f64().unwrap();
            assert!(
                (t - wt).abs() < 1e-9,
                "{name} k={k}: trustworthiness {t} vs {wt}"
            );
            let a = knn_label_agreement(&coords, &labels, k);
            let wa = m["agreement"][k.to_string()].as_f64().unwrap();
            assert!((a - wa).abs() < 1e-9, "{name} k={k}: agreement {a} vs {wa}");
        }
    }
}

/// On the sample, t-SNE and UMAP maps group entities of the same FewRel relation slot more
/// than the PCA map does, keep their neighbourhoods better, and are the same when run again.
#[test]
fn tsne_and_umap_show_more_label_structure_than_pca_on_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    let out = build_sample(dir.path(), "t", &[]);
    let root = root();
    let t = Table::load(&out).unwrap();
    let labels =
        pelt::eval::labels_from_fewrel(&[root.join("assets/sample/val_pubmed.json")], 3).unwrap();
    let never = AtomicBool::new(false);
    let params = TsneParams {
        perplexity: 20.0,
        epochs: 750,
    };
    let tsne = tsne_2d(&t, params, &never, &mut |_, _| {})
        .unwrap()
        .unwrap();
    let again = tsne_2d(&t, params, &never, &mut |_, _| {})
        .unwrap()
        .unwrap();
    assert_eq!(
        tsne, again,
        "the same table and parameters give the same map"
    );
    let pca = pelt::analysis::pca_2d(&t).unwrap();
    assert_eq!(
        pca.iter().map(|p| p.0).collect::<Vec<_>>(),
        tsne.iter().map(|p| p.0).collect::<Vec<_>>()
    );
    let mut names: Vec<&String> = labels.values().collect();
    names.sort();
    names.dedup();
    let lab: Vec<Option<u32>> = tsne
        .iter()
        .map(|&(r, _)| {
            labels
                .get(&t.entity_ids[r])
                .map(|l| names.binary_search(&l).unwrap() as u32)
        })
        .collect();
    assert!(lab.iter().flatten().count() > 50);
    let rows: Vec<usize> = tsne.iter().map(|p| p.0).collect();
    let high = pelt::analysis::layout::centred_directions(&t, &rows);
    let pts = |m: &[(usize, [f64; 2])]| m.iter().map(|p| p.1).collect::<Vec<_>>();
    let (tp, pp) = (pts(&tsne), pts(&pca));
    let (at, ap) = (
        knn_label_agreement(&tp, &lab, 5),
        knn_label_agreement(&pp, &lab, 5),
    );
    let (tt, tw) = (
        trustworthiness(&high, t.hidden(), &tp, 10),
        trustworthiness(&high, t.hidden(), &pp, 10),
    );
    let umap = umap_2d(&t, UmapParams::default(), &never, &mut |_, _| {})
        .unwrap()
        .unwrap();
    let umap_again = umap_2d(&t, UmapParams::default(), &never, &mut |_, _| {})
        .unwrap()
        .unwrap();
    assert_eq!(
        umap, umap_again,
        "the same table and parameters give the same map"
    );
    let up = pts(&umap);
    let (au, tu) = (
        knn_label_agreement(&up, &lab, 5),
        trustworthiness(&high, t.hidden(), &up, 10),
    );
    eprintln!("k-NN label agreement (k=5): t-SNE {at:.3}, UMAP {au:.3}, PCA {ap:.3}; trustworthiness (k=10): t-SNE {tt:.3}, UMAP {tu:.3}, PCA {tw:.3}");
    assert!(at > ap + 0.05, "t-SNE {at} vs PCA {ap}");
    assert!(tt > tw + 0.05, "t-SNE {tt} vs PCA {tw}");
    assert!(au > ap + 0.05, "UMAP {au} vs PCA {ap}");
    assert!(tu > tw + 0.05, "UMAP {tu} vs PCA {tw}");
    assert!(umap_2d(
        &t,
        UmapParams::default(),
        &AtomicBool::new(true),
        &mut |_, _| {}
    )
    .unwrap()
    .is_none());
    // A cancelled map stops and says so.
    let stop = AtomicBool::new(true);
    assert!(tsne_2d(&t, params, &stop, &mut |_, _| {})
        .unwrap()
        .is_none());
}
