//! The bundled model (SPLADE-tiny-msmarco, a small BERT MLM) and the files of the demo
//! project, found wherever the binary runs (the demo project itself is found by
//! `crate::project::demo_project_path`).
//!
//! In a checkout they are the repository's own files. With the default `bundled-model`
//! feature the binary also carries them (about 18 MB) and, when the checkout is not there (an
//! installed or copied binary), writes them once into the user's data folder
//! (`$XDG_DATA_HOME/pelt-workbench`, else `~/.local/share/pelt-workbench`; `%LOCALAPPDATA%` on
//! Windows, `~/Library/Application Support` on macOS) and uses them from there. A build
//! without the feature looks for `models/splade-tiny-msmarco` next to the executable.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

const MODEL: &str = "splade-tiny-msmarco";

fn checkout() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `(path relative to the repository, bytes)` of an embedded file set.
pub type Files = &'static [(&'static str, &'static [u8])];

#[cfg(feature = "bundled-model")]
const MODEL_FILES: Files = &[
    (
        "assets/models/splade-tiny-msmarco/config.json",
        include_bytes!("../../assets/models/splade-tiny-msmarco/config.json"),
    ),
    (
        "assets/models/splade-tiny-msmarco/tokenizer.json",
        include_bytes!("../../assets/models/splade-tiny-msmarco/tokenizer.json"),
    ),
    (
        "assets/models/splade-tiny-msmarco/tokenizer_config.json",
        include_bytes!("../../assets/models/splade-tiny-msmarco/tokenizer_config.json"),
    ),
    (
        "assets/models/splade-tiny-msmarco/model.safetensors",
        include_bytes!("../../assets/models/splade-tiny-msmarco/model.safetensors"),
    ),
    (
        "assets/models/splade-tiny-msmarco/LICENSE",
        include_bytes!("../../assets/models/splade-tiny-msmarco/LICENSE"),
    ),
    (
        "assets/models/splade-tiny-msmarco/PROVENANCE.md",
        include_bytes!("../../assets/models/splade-tiny-msmarco/PROVENANCE.md"),
    ),
];
#[cfg(not(feature = "bundled-model"))]
const MODEL_FILES: Files = &[];

#[cfg(feature = "bundled-model")]
const DEMO_FILES: Files = &[
    (
        "projects/pubmed-demo.ron",
        include_bytes!("../../projects/pubmed-demo.ron"),
    ),
    (
        "assets/sample/pubmed-linked.jsonl",
        include_bytes!("../../assets/sample/pubmed-linked.jsonl"),
    ),
    (
        "assets/sample/pubmed.txt",
        include_bytes!("../../assets/sample/pubmed.txt"),
    ),
    (
        "assets/sample/pubmed-entities.tsv",
        include_bytes!("../../assets/sample/pubmed-entities.tsv"),
    ),
    (
        "assets/sample/val_pubmed.json",
        include_bytes!("../../assets/sample/val_pubmed.json"),
    ),
    (
        "assets/sample/LICENSE-FewRel",
        include_bytes!("../../assets/sample/LICENSE-FewRel"),
    ),
    (
        "assets/sample/README.md",
        include_bytes!("../../assets/sample/README.md"),
    ),
];
#[cfg(not(feature = "bundled-model"))]
const DEMO_FILES: Files = &[];

/// The user's data folder for this app.
pub fn data_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let base = if cfg!(windows) {
        var("LOCALAPPDATA")
    } else if cfg!(target_os = "macos") {
        var("HOME").map(|h| h.join("Library/Application Support"))
    } else {
        var("XDG_DATA_HOME").or_else(|| var("HOME").map(|h| h.join(".local/share")))
    }?;
    Some(base.join("pelt-workbench"))
}

/// Writes `files` under `root` (keeping their relative paths), each to a temporary name then
/// renamed. A file already there is kept when `keep_existing` (the user may have edited it),
/// else kept only when it has the right size.
pub fn write_files(root: &Path, files: Files, keep_existing: bool) -> Result<()> {
    for (rel, bytes) in files {
        let p = root.join(rel);
        let there = std::fs::metadata(&p).ok().filter(|m| m.is_file());
        if there.is_some_and(|m| keep_existing || m.len() == bytes.len() as u64) {
            continue;
        }
        let dir = p.parent().expect("a relative path under root");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            p.file_name().expect("a file name").to_string_lossy(),
            std::process::id()
        ));
        std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &p).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}

/// Where the embedded files of a set go: the data folder, under a name that changes with the
/// app's version so that an update writes its own copy.
pub fn unpacked_root(kind: &str) -> Option<PathBuf> {
    Some(data_dir()?.join(format!("{kind}-{}", env!("CARGO_PKG_VERSION"))))
}

/// The bundled model's folder: the checkout's, else next to the executable, else the copy
/// unpacked from the binary. An error says how to get a model when there is none.
pub fn bundled_model_path() -> Result<PathBuf> {
    let src = checkout().join("assets/models").join(MODEL);
    if src.join("config.json").is_file() {
        return Ok(src);
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        let beside = exe_dir.join("models").join(MODEL);
        if beside.join("config.json").is_file() {
            return Ok(beside);
        }
    }
    if MODEL_FILES.is_empty() {
        bail!(
            "no bundled model: this build has no `bundled-model` feature and there is no models/{MODEL} folder next to the executable; copy assets/models/{MODEL} from the repository there, or give a model folder or a cached Hugging Face id (--model)"
        );
    }
    let root = unpacked_root("bundled").context(
        "no data folder to unpack the bundled model into (set HOME or XDG_DATA_HOME), or give --model",
    )?;
    write_files(&root, MODEL_FILES, false)?;
    Ok(root.join("assets/models").join(MODEL))
}

/// The embedded files, `(relative path, bytes)`: the model's and the demo project's (both
/// empty without the `bundled-model` feature).
pub fn embedded_files() -> (Files, Files) {
    (MODEL_FILES, DEMO_FILES)
}
