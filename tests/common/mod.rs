#![allow(dead_code)]
use std::path::PathBuf;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(p: &str) -> PathBuf {
    root().join("tests/fixtures").join(p)
}

pub fn json(p: &str) -> serde_json::Value {
    let path = fixture(p);
    serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

pub fn f32s(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

pub fn u32s(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Copies a model directory into a fresh temporary directory.
pub fn copy_dir(src: &std::path::Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    dir
}

/// A fake cache: `models--org--tiny` (tiny-bert, refs/main → abc, refs/v1 → def) and a
/// non-MLM `models--org--encoder`, plus broken entries.
pub fn fake_cache() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("hub");
    let repo = root.join("models--org--tiny");
    for (rev, hash) in [("main", "abc"), ("v1", "def")] {
        let snap = repo.join("snapshots").join(hash);
        std::fs::create_dir_all(&snap).unwrap();
        for e in std::fs::read_dir(fixture("models/tiny-bert")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), snap.join(e.file_name())).unwrap();
        }
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join(rev), format!("{hash}\n")).unwrap();
    }
    // An encoder without an MLM head: listed, greyed out with the reason.
    let enc = root.join("models--org--encoder/snapshots/111");
    std::fs::create_dir_all(&enc).unwrap();
    let cfg = std::fs::read_to_string(fixture("models/tiny-bert/config.json")).unwrap();
    let cfg = cfg.replace("BertForMaskedLM", "BertModel");
    std::fs::write(enc.join("config.json"), cfg).unwrap();
    std::fs::create_dir_all(root.join("models--org--encoder/refs")).unwrap();
    std::fs::write(root.join("models--org--encoder/refs/main"), "111").unwrap();
    // refs/main points to a snapshot that is gone.
    let broken = root.join("models--org--broken");
    std::fs::create_dir_all(broken.join("refs")).unwrap();
    std::fs::create_dir_all(broken.join("snapshots")).unwrap();
    std::fs::write(broken.join("refs/main"), "gone").unwrap();
    (d, root)
}

/// Runs the `pelt` binary: (success, stdout, stderr).
pub fn pelt(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pelt"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Builds a table without checkpoints; a cancelled build is an error.
pub fn build_from(
    model: &pelt::model::Model,
    corpus: &[PathBuf],
    entities: &std::path::Path,
    opts: &pelt::build::BuildOptions,
) -> anyhow::Result<(pelt::table::Table, pelt::build::BuildReport)> {
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let corpus = pelt::corpus::Corpus::open(corpus)?;
    let entities = pelt::entities::load_entities(entities)?;
    let out = pelt::build::build_table(
        pelt::build::BuildInput {
            model,
            corpus: &corpus,
            entities: &entities,
            options: opts,
            out: None,
            tmp: None,
            checkpoint: None,
            resume: false,
            cancel: &cancel,
        },
        &mut |_| {},
    )?;
    match out {
        pelt::build::BuildOutcome::Finished(t, r) => Ok((*t, r)),
        pelt::build::BuildOutcome::Cancelled { .. } => anyhow::bail!("cancelled"),
    }
}

/// Copies of the fixture corpus, entity list and tiny model in a temporary folder.
pub struct Inputs {
    pub dir: tempfile::TempDir,
    pub corpus: PathBuf,
    pub entities: PathBuf,
    pub model: PathBuf,
}

pub fn inputs() -> Inputs {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.txt");
    let entities = dir.path().join("entities.tsv");
    std::fs::copy(fixture("pelt/corpus.txt"), &corpus).unwrap();
    std::fs::copy(fixture("pelt/entities.tsv"), &entities).unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for e in std::fs::read_dir(fixture("models/tiny-bert")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), model.join(e.file_name())).unwrap();
    }
    Inputs {
        dir,
        corpus,
        entities,
        model,
    }
}

/// `pelt build` of the bundled sample (linked PubMed sentences, its entity list, the bundled
/// model) into `dir/NAME.safetensors`, with `extra` options.
pub fn build_sample(dir: &std::path::Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(format!("{name}.safetensors"));
    let root = root();
    let (corpus, entities, o) = (
        root.join("assets/sample/pubmed-linked.jsonl")
            .display()
            .to_string(),
        root.join("assets/sample/pubmed-entities.tsv")
            .display()
            .to_string(),
        out.display().to_string(),
    );
    let mut args = vec![
        "build",
        "--corpus",
        &corpus,
        "--entities",
        &entities,
        "--out",
        &o,
    ];
    args.extend_from_slice(extra);
    let (ok, _, err) = pelt(&args);
    assert!(ok, "{err}");
    out
}
