//! Models as users already have them: the local Hugging Face cache, read offline.
//!
//! Layout (as `huggingface_hub` writes it): `<root>/models--ORG--NAME/refs/<branch or tag>`
//! holds a commit hash, `<root>/models--ORG--NAME/snapshots/<hash>/` the files (links into
//! `blobs/`). The root is `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `HF_HOME/hub`,
//! else `XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`. Nothing here touches
//! the network. (The `hf-hub` crate's `Cache` reads `HF_HOME` only and cannot list what is
//! cached, so the layout is read directly.)

use anyhow::{bail, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::config::Config;

/// The cache root from environment variables (`env` looks one up).
pub fn cache_root_from(env: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let nonempty = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = nonempty("HF_HUB_CACHE").or_else(|| nonempty("HUGGINGFACE_HUB_CACHE")) {
        return p;
    }
    if let Some(h) = nonempty("HF_HOME") {
        return h.join("hub");
    }
    if let Some(x) = nonempty("XDG_CACHE_HOME") {
        return x.join("huggingface/hub");
    }
    nonempty("HOME")
        .or_else(|| nonempty("USERPROFILE"))
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".cache/huggingface/hub")
}

static ROOT_OVERRIDE: std::sync::RwLock<Option<PathBuf>> = std::sync::RwLock::new(None);

/// Uses `root` instead of the environment's cache (for tests and embedding; `None` undoes it).
pub fn set_cache_root(root: Option<PathBuf>) {
    *ROOT_OVERRIDE.write().unwrap_or_else(|e| e.into_inner()) = root;
}

/// The cache root: the one set with [`set_cache_root`], else the environment's.
pub fn cache_root() -> PathBuf {
    if let Some(r) = ROOT_OVERRIDE
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
    {
        return r;
    }
    cache_root_from(|k| std::env::var_os(k))
}

/// `ORG/NAME@REV` or `NAME` (optionally `@REV`), as a (repo id, revision) pair, when `spec`
/// has the shape of a model id (not a path).
pub fn parse_id(spec: &str) -> Option<(String, Option<String>)> {
    let (id, rev) = match spec.rsplit_once('@') {
        Some((i, r)) if !r.is_empty() => (i, Some(r.to_string())),
        Some(_) => return None,
        None => (spec, None),
    };
    let parts: Vec<&str> = id.split('/').collect();
    let ok_part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if parts.len() > 2 || !parts.iter().all(|p| ok_part(p)) {
        return None;
    }
    Some((id.to_string(), rev))
}

fn repo_dir(root: &Path, id: &str) -> PathBuf {
    root.join(format!("models--{}", id.replace('/', "--")))
}

/// The snapshot folder of `id` at `revision` (a branch or tag under `refs/`, or a commit hash;
/// default `main`).
pub fn resolve_in(root: &Path, id: &str, revision: Option<&str>) -> Result<PathBuf> {
    let repo = repo_dir(root, id);
    if !repo.is_dir() {
        bail!(
            "model `{id}` is not in the Hugging Face cache at {}{}",
            root.display(),
            cached_hint(root)
        );
    }
    let rev = revision.unwrap_or("main");
    let snapshots = repo.join("snapshots");
    let hash = match std::fs::read_to_string(repo.join("refs").join(rev)) {
        Ok(h) => h.trim().to_string(),
        Err(_) if snapshots.join(rev).is_dir() => rev.to_string(),
        Err(_) => {
            let revs = list_dir_names(&repo.join("refs"));
            let snaps = list_dir_names(&snapshots);
            bail!(
                "model `{id}` has no revision `{rev}` in the cache ({}): refs {}, snapshots {}",
                repo.display(),
                if revs.is_empty() {
                    "none".into()
                } else {
                    revs.join(", ")
                },
                if snaps.is_empty() {
                    "none".into()
                } else {
                    snaps.join(", ")
                }
            );
        }
    };
    if hash.is_empty() || hash.contains(['/', '\\']) || hash.starts_with('.') {
        bail!(
            "{}: `refs/{rev}` does not hold a commit hash",
            repo.display()
        );
    }
    let dir = snapshots.join(&hash);
    if !dir.is_dir() {
        bail!(
            "model `{id}`: `refs/{rev}` points to snapshot {hash}, which is missing from {} (a broken cache entry; download the model again)",
            snapshots.display()
        );
    }
    if !dir.join("config.json").is_file() {
        bail!(
            "model `{id}`: snapshot {} has no config.json (an incomplete download?)",
            dir.display()
        );
    }
    Ok(dir)
}

fn list_dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn cached_hint(root: &Path) -> String {
    let ok: Vec<String> = list_cached(root)
        .into_iter()
        .filter(|m| m.problem.is_none())
        .map(|m| m.id)
        .collect();
    let have = if ok.is_empty() {
        "no masked-LM model this app can load is cached there".to_string()
    } else {
        format!("cached masked-LM models: {}", ok.join(", "))
    };
    format!(
        ".\n{have}.\nTo download one: `hf download ID` (or `huggingface-cli download ID`), or in Python `transformers.AutoModelForMaskedLM.from_pretrained(\"ID\")`; or give a model folder"
    )
}

/// A model given as a folder or as a cached id (`ORG/NAME[@REV]`): the folder to load.
/// A folder wins when both could be meant.
pub fn resolve(spec: &str) -> Result<PathBuf> {
    resolve_with_root(spec, &cache_root())
}

pub fn resolve_with_root(spec: &str, root: &Path) -> Result<PathBuf> {
    let p = Path::new(spec);
    if p.is_dir() {
        return Ok(p.to_path_buf());
    }
    match parse_id(spec) {
        Some((id, rev)) if !spec.starts_with('.') => resolve_in(root, &id, rev.as_deref()),
        _ => bail!("model folder {spec} does not exist"),
    }
}

/// One model of the cache, as the model picker lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedModel {
    pub id: String,
    pub dir: PathBuf,
    /// e.g. `BertForMaskedLM`.
    pub architecture: String,
    pub hidden_size: usize,
    pub layers: usize,
    /// Bytes of the snapshot's files (links followed).
    pub size: u64,
    /// Why this app cannot load it, if it cannot.
    pub problem: Option<String>,
}

/// What a model folder is, and whether this app can load it.
pub fn inspect(id: &str, dir: &Path) -> CachedModel {
    let mut m = CachedModel {
        id: id.to_string(),
        dir: dir.to_path_buf(),
        architecture: String::new(),
        hidden_size: 0,
        layers: 0,
        size: dir_size(dir),
        problem: None,
    };
    let cfg_path = dir.join("config.json");
    let v: Option<serde_json::Value> =
        super::config::read_small_text(&cfg_path, super::config::MAX_CONFIG_BYTES)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
    let Some(v) = v else {
        m.problem = Some("no readable config.json".into());
        return m;
    };
    m.architecture = v
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(|a| a.as_str())
        .or_else(|| v.get("model_type").and_then(|t| t.as_str()))
        .unwrap_or("?")
        .to_string();
    match Config::from_json(&v, &cfg_path) {
        Err(e) => m.problem = Some(format!("{e:#}")),
        Ok(c) => {
            m.hidden_size = c.hidden_size;
            m.layers = c.num_layers;
            let archs: Vec<&str> = v
                .get("architectures")
                .and_then(|a| a.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            if !archs.is_empty()
                && !archs
                    .iter()
                    .any(|a| a.contains("MaskedLM") || a.contains("ForPreTraining"))
            {
                m.problem = Some(format!(
                    "{} is not a masked language model (no MLM head to take the transform from)",
                    archs.join(", ")
                ));
            } else if super::weights::weights_file(dir).is_err() {
                m.problem = Some("no model.safetensors or pytorch_model.bin".into());
            } else if !(dir.join("tokenizer.json").is_file()
                || dir.join("vocab.txt").is_file()
                || (dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file()))
            {
                m.problem = Some(
                    "no tokenizer (tokenizer.json, vocab.txt or vocab.json + merges.txt)".into(),
                );
            }
        }
    }
    m
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::metadata(e.path()).ok())
                .filter(|md| md.is_file())
                .map(|md| md.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The models of the cache at `root` (their `main` revision, else their newest snapshot),
/// sorted by id, with what this app can load marked.
pub fn list_cached(root: &Path) -> Vec<CachedModel> {
    let mut out = Vec::new();
    for name in list_dir_names(root) {
        let Some(rest) = name.strip_prefix("models--") else {
            continue;
        };
        let id = rest.replacen("--", "/", 1);
        match resolve_in(root, &id, None) {
            Ok(dir) => out.push(inspect(&id, &dir)),
            Err(_) => {
                // No `main`: the newest snapshot, if any.
                let snaps = repo_dir(root, &id).join("snapshots");
                let newest = std::fs::read_dir(&snaps).ok().and_then(|rd| {
                    rd.filter_map(|e| e.ok())
                        .filter(|e| e.path().is_dir())
                        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
                        .map(|e| e.path())
                });
                match newest {
                    Some(dir) => out.push(inspect(&id, &dir)),
                    None => out.push(CachedModel {
                        id,
                        dir: snaps,
                        architecture: String::new(),
                        hidden_size: 0,
                        layers: 0,
                        size: 0,
                        problem: Some("no snapshot (an unfinished download?)".into()),
                    }),
                }
            }
        }
    }
    out
}

/// Where `dir` sits in the cache: its model id when it is a snapshot folder under `root`.
pub fn id_of_snapshot(root: &Path, dir: &Path) -> Option<String> {
    let rel = dir.strip_prefix(root).ok()?;
    let mut c = rel.components();
    let repo = c.next()?.as_os_str().to_str()?;
    let id = repo.strip_prefix("models--")?.replacen("--", "/", 1);
    (c.next()?.as_os_str() == "snapshots").then_some(())?;
    c.next()?;
    c.next().is_none().then_some(id)
}
