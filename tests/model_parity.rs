//! The encoder against HF transformers: transform outputs and logits at mask positions, with
//! and without an injected vector, for BERT, RoBERTa, DistilBERT and the bundled model.
//! Fixtures: tests/fixtures/gen_fixtures.py.

mod common;
use common::*;

use candle_core::Device;
use pelt::model::{Injection, Matmul, Model};

fn check(name: &str) -> (f32, f32) {
    check_with(name, true)
}

/// Every matrix-multiply path of this build and CPU (packed sgemm per instruction set,
/// OpenBLAS when built with it, candle), the fused kernels on or off.
fn check_with(name: &str, cpu_kernels: bool) -> (f32, f32) {
    let mut worst = (0f32, 0f32);
    for matmul in Matmul::available() {
        let (t, l) = check_on(name, cpu_kernels, matmul);
        worst = (worst.0.max(t), worst.1.max(l));
    }
    worst
}

fn check_on(name: &str, cpu_kernels: bool, matmul: Matmul) -> (f32, f32) {
    let r = json(&format!("reference/{name}.json"));
    let dir = root().join(r["model"].as_str().unwrap());
    let mut model =
        Model::load_with_matmul(&dir, &Device::Cpu, candle_core::DType::F32, matmul).unwrap();
    assert_eq!(model.encoder.matmul(), matmul);
    model.encoder.set_cpu_kernels(cpu_kernels);
    assert_eq!(model.config.family.name(), r["family"].as_str().unwrap());
    let h = r["hidden_size"].as_u64().unwrap() as usize;
    let (mut worst_t, mut worst_l) = (0f32, 0f32);
    for case in r["cases"].as_array().unwrap() {
        let cname = case["name"].as_str().unwrap();
        let texts = case["texts"].as_array().unwrap();
        let ids = case["input_ids"].as_array().unwrap();
        let masks = case["attention_mask"].as_array().unwrap();
        let mut seqs = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            // Our tokenizer must produce exactly the reference ids.
            let enc = model.tokenizer.encode(t.as_str().unwrap()).unwrap();
            let len = u32s(&masks[i]).iter().filter(|&&m| m == 1).count();
            let want = &u32s(&ids[i])[..len];
            assert_eq!(enc.ids, want, "{name}/{cname}: token ids of text {i}");
            seqs.push(enc.ids);
        }
        let injections: Vec<Injection> = case["injections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| Injection {
                row: j["row"].as_u64().unwrap() as usize,
                position: j["position"].as_u64().unwrap() as usize,
                vector: f32s(&j["vector"]),
            })
            .collect();
        let positions: Vec<(usize, usize)> = case["positions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_u64().unwrap() as usize,
                    p[1].as_u64().unwrap() as usize,
                )
            })
            .collect();
        let out = model
            .encoder
            .forward(&seqs, &injections, &positions, true)
            .unwrap();
        let logit_ids = u32s(&case["logit_ids"]);
        for (k, want) in case["transform"].as_array().unwrap().iter().enumerate() {
            let d = max_abs_diff(out.transform_row(k), &f32s(want));
            assert_eq!(out.transform_row(k).len(), h);
            worst_t = worst_t.max(d);
            assert!(
                d <= 1e-4,
                "{name}/{cname} ({matmul:?}): transform at {:?} differs by {d}",
                positions[k]
            );
            let row = out.logits_row(k).unwrap();
            let got: Vec<f32> = logit_ids.iter().map(|&i| row[i as usize]).collect();
            let d = max_abs_diff(&got, &f32s(&case["logits"][k]));
            worst_l = worst_l.max(d);
            assert!(
                d <= 1e-4,
                "{name}/{cname} ({matmul:?}): logits at {:?} differ by {d}",
                positions[k]
            );
        }
        if !injections.is_empty() {
            // The injection must matter: without it the outputs differ from the reference.
            let plain = model
                .encoder
                .forward(&seqs, &[], &positions, false)
                .unwrap();
            let d = max_abs_diff(&plain.transform, &out.transform);
            assert!(d > 1e-3, "{name}/{cname}: injection changed nothing");
        }
    }
    eprintln!("{name}: max |diff| transform {worst_t:.2e}, logits {worst_l:.2e}");
    (worst_t, worst_l)
}

#[test]
fn bert_matches_transformers() {
    check("tiny-bert");
}

#[test]
fn roberta_matches_transformers() {
    check("tiny-roberta");
}

#[test]
fn distilbert_from_pytorch_bin_matches_transformers() {
    check("tiny-distilbert");
}

#[test]
fn bundled_model_matches_transformers() {
    check("splade-tiny-msmarco");
}

#[test]
fn generic_tensor_path_matches_transformers() {
    // candle's own attention and gelu (the path accelerators use), not the fused f32 CPU kernels.
    for name in [
        "tiny-bert",
        "tiny-roberta",
        "tiny-distilbert",
        "splade-tiny-msmarco",
    ] {
        check_with(name, false);
    }
}

/// One test per matrix-multiply path, each over every model with the fused kernels on and
/// off: `matmul::path_packed_avx512`, `…_avx2`, `…_openblas`, `…_candle`. The tests above
/// run every path this build and CPU have and say nothing of the others; here a path they lack
/// is reported as ignored, with the reason (see src/build_probe.rs), not as passed.
mod matmul {
    use super::*;
    use pelt::model::Isa;

    fn every_model_on(m: Matmul) {
        assert!(
            Matmul::available().contains(&m),
            "{m:?}: the build found it on this machine, it is not here (rebuild here)"
        );
        for name in [
            "tiny-bert",
            "tiny-roberta",
            "tiny-distilbert",
            "splade-tiny-msmarco",
        ] {
            for kernels in [true, false] {
                check_on(name, kernels, m);
            }
        }
    }

    #[test]
    #[cfg_attr(
        not(pelt_cpu_avx512),
        ignore = "this CPU has no AVX-512F: the AVX-512 sgemm is not tested"
    )]
    fn path_packed_avx512() {
        every_model_on(Matmul::Packed(Isa::Avx512));
    }

    #[test]
    #[cfg_attr(
        not(pelt_cpu_avx2),
        ignore = "this CPU has no AVX2+FMA: the AVX2 sgemm is not tested"
    )]
    fn path_packed_avx2() {
        every_model_on(Matmul::Packed(Isa::Avx2));
    }

    #[test]
    #[cfg_attr(
        not(pelt_blas),
        ignore = "built without OpenBLAS (src/build_probe.rs): that path is not tested"
    )]
    fn path_openblas() {
        every_model_on(Matmul::OpenBlas);
    }

    #[test]
    fn path_candle() {
        every_model_on(Matmul::Candle);
    }
}

#[test]
fn fallback_tokenizer_files_give_the_same_ids() {
    // Without tokenizer.json the loader builds WordPiece from vocab.txt / BPE from vocab.json+merges.txt.
    for (name, text) in [
        (
            "tiny-bert",
            "The children were playing happily in the [MASK] near the old river.",
        ),
        (
            "tiny-roberta",
            "The children were playing happily in the <mask> near the old river.",
        ),
    ] {
        let src = fixture(&format!("models/{name}"));
        let full = Model::load(&src, &Device::Cpu).unwrap();
        let dir = copy_dir(&src);
        std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
        let fallback = Model::load(dir.path(), &Device::Cpu).unwrap();
        assert!(fallback.tokenizer.source.ends_with(if name == "tiny-bert" {
            "vocab.txt"
        } else {
            "vocab.json"
        }));
        assert_eq!(
            full.tokenizer.encode(text).unwrap().ids,
            fallback.tokenizer.encode(text).unwrap().ids,
            "{name}"
        );
    }
}
