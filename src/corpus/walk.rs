//! The files of a corpus: folders walked in sorted order, regular files of a known format
//! only, symlink loops and files reached twice refused.

use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{formats_text, Format};
use crate::outpath::kind_of;

/// The corpus files `paths` name, folders expanded (recursively, sorted); see
/// [`Corpus::open`](super::Corpus::open).
pub(super) fn corpus_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| {
            if std::fs::symlink_metadata(p).is_ok() {
                anyhow::anyhow!("corpus path {} cannot be followed ({e})", p.display())
            } else {
                anyhow::anyhow!("corpus file {} does not exist", p.display())
            }
        })?;
        if meta.is_dir() {
            let mut found = Vec::new();
            let mut stack = Vec::new();
            collect_dir(p, &mut stack, &mut found)?;
            if found.is_empty() {
                bail!(
                    "corpus directory {} holds no corpus files ({})",
                    p.display(),
                    formats_text()
                );
            }
            for f in found {
                add_file(f, &mut seen, &mut files)?;
            }
        } else if meta.is_file() {
            if Format::of(p).is_none() {
                bail!(
                    "corpus file {}: unknown format (expected {})",
                    p.display(),
                    formats_text()
                );
            }
            add_file(p.clone(), &mut seen, &mut files)?;
        } else {
            bail!(
                "corpus path {} is not a regular file or folder ({}); only regular files are read",
                p.display(),
                kind_of(&meta)
            );
        }
    }
    if files.is_empty() {
        bail!("no corpus files given");
    }
    Ok(files)
}

fn add_file(p: PathBuf, seen: &mut HashSet<PathBuf>, files: &mut Vec<PathBuf>) -> Result<()> {
    let canon = std::fs::canonicalize(&p)
        .with_context(|| format!("cannot resolve corpus file {}", p.display()))?;
    if !seen.insert(canon.clone()) {
        let first = files
            .iter()
            .find(|f| std::fs::canonicalize(f).ok().as_ref() == Some(&canon))
            .map(|f| f.display().to_string())
            .unwrap_or_default();
        bail!(
            "corpus file {} is the same file as {first} (given twice, or reached twice through a link); each file is read once",
            p.display()
        );
    }
    files.push(p);
    Ok(())
}

/// Walks `dir` (sorted). `stack` holds the canonical folders being walked, to detect loops.
fn collect_dir(dir: &Path, stack: &mut Vec<PathBuf>, out: &mut Vec<PathBuf>) -> Result<()> {
    let canon = std::fs::canonicalize(dir)
        .with_context(|| format!("cannot resolve corpus folder {}", dir.display()))?;
    if stack.contains(&canon) {
        bail!(
            "corpus folder {} leads back into {} (a symlink loop)",
            dir.display(),
            canon.display()
        );
    }
    stack.push(canon);
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        let Ok(meta) = std::fs::metadata(&p) else {
            bail!(
                "corpus folder entry {} cannot be followed (a dangling link?)",
                p.display()
            );
        };
        if meta.is_dir() {
            collect_dir(&p, stack, out)?;
        } else if Format::of(&p).is_some() {
            if !meta.is_file() {
                bail!(
                    "corpus folder entry {} is {}; only regular files are read",
                    p.display(),
                    kind_of(&meta)
                );
            }
            out.push(p);
        }
    }
    stack.pop();
    Ok(())
}
