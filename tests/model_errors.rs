//! Bad model directories get one clear error naming the file, tensor or field; never a panic.

mod common;
use common::*;

use candle_core::{Device, Tensor};
use pelt::model::Model;
use std::collections::HashMap;

fn err(dir: &std::path::Path) -> String {
    match Model::load(dir, &Device::Cpu) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => format!("{e:#}"),
    }
}

fn tiny_bert() -> tempfile::TempDir {
    copy_dir(&fixture("models/tiny-bert"))
}

fn edit_weights(dir: &std::path::Path, f: impl FnOnce(&mut HashMap<String, Tensor>)) {
    let p = dir.join("model.safetensors");
    let mut map = candle_core::safetensors::load(&p, &Device::Cpu).unwrap();
    f(&mut map);
    candle_core::safetensors::save(&map, &p).unwrap();
}

#[test]
fn missing_directory_and_files() {
    let e = err(std::path::Path::new("/nonexistent/model"));
    assert!(
        e.contains("/nonexistent/model") && e.contains("does not exist"),
        "{e}"
    );
    for (file, expect) in [
        ("config.json", "missing config.json"),
        ("model.safetensors", "no weights file"),
    ] {
        let d = tiny_bert();
        std::fs::remove_file(d.path().join(file)).unwrap();
        let e = err(d.path());
        assert!(e.contains(expect), "{file}: {e}");
    }
    let d = tiny_bert();
    std::fs::remove_file(d.path().join("tokenizer.json")).unwrap();
    std::fs::remove_file(d.path().join("vocab.txt")).unwrap();
    let e = err(d.path());
    assert!(e.contains("no tokenizer") && e.contains("vocab.txt"), "{e}");
}

#[test]
fn missing_config_field() {
    let d = tiny_bert();
    let p = d.path().join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("num_attention_heads");
    std::fs::write(&p, v.to_string()).unwrap();
    let e = err(d.path());
    assert!(
        e.contains("config.json") && e.contains("`num_attention_heads`"),
        "{e}"
    );
    std::fs::write(&p, "{ not json").unwrap();
    let e = err(d.path());
    assert!(
        e.contains("config.json") && e.contains("not valid JSON"),
        "{e}"
    );
}

#[test]
fn missing_tensor() {
    let d = tiny_bert();
    edit_weights(d.path(), |m| {
        m.remove("bert.encoder.layer.1.attention.self.key.weight");
    });
    let e = err(d.path());
    assert!(
        e.contains("model.safetensors")
            && e.contains("missing tensor `bert.encoder.layer.1.attention.self.key.weight`"),
        "{e}"
    );
}

#[test]
fn wrong_shape() {
    let d = tiny_bert();
    edit_weights(d.path(), |m| {
        m.insert(
            "bert.encoder.layer.0.intermediate.dense.weight".into(),
            Tensor::zeros((32, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let e = err(d.path());
    assert!(e.contains("`bert.encoder.layer.0.intermediate.dense.weight` has shape [32, 32], expected [64, 32]"), "{e}");
}

#[test]
fn tokenizer_larger_than_model_vocabulary() {
    let d = tiny_bert();
    let p = d.path().join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    v["vocab_size"] = 100.into();
    std::fs::write(&p, v.to_string()).unwrap();
    let e = err(d.path());
    assert!(
        e.contains("tokenizer/model mismatch") && e.contains("vocab_size = 100"),
        "{e}"
    );
}

#[test]
fn legacy_layer_norm_names_and_unprefixed_encoder_load() {
    // gamma/beta names (the bundled model uses them too) and a checkpoint without `bert.`.
    let d = tiny_bert();
    edit_weights(d.path(), |m| {
        let old: Vec<(String, Tensor)> = m.drain().collect();
        for (k, t) in old {
            let k = k
                .replace("LayerNorm.weight", "LayerNorm.gamma")
                .replace("LayerNorm.bias", "LayerNorm.beta");
            let k = k.strip_prefix("bert.").map(str::to_string).unwrap_or(k);
            m.insert(k, t);
        }
    });
    let a = Model::load(d.path(), &Device::Cpu).unwrap();
    let b = Model::load(&fixture("models/tiny-bert"), &Device::Cpu).unwrap();
    let ids = vec![2u32, 10, 4, 11, 3];
    let x = a
        .encoder
        .forward(std::slice::from_ref(&ids), &[], &[(0, 2)], true)
        .unwrap();
    let y = b.encoder.forward(&[ids], &[], &[(0, 2)], true).unwrap();
    assert_eq!(x.transform, y.transform);
}

#[test]
fn device_choice_reports_missing_backends() {
    use pelt::model::DeviceChoice;
    if !cfg!(feature = "cuda") {
        let e = format!("{:#}", DeviceChoice::Cuda.open().unwrap_err());
        assert!(e.contains("--features cuda"), "{e}");
    }
    assert!("tpu".parse::<DeviceChoice>().is_err());
    assert!(DeviceChoice::Auto.open().is_ok());
}
