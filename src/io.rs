//! File output shared by every layer: atomic writes and deterministic safetensors bytes.
//! Near the bottom of the layers: it uses only `outpath` (which outputs are refused) and
//! `escape` (printing untrusted paths).

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// A safetensors file with sorted header keys (byte-identical for identical content).
pub fn write_safetensors<S: AsRef<str>>(
    meta: &BTreeMap<&str, String>,
    tensors: &[(S, &str, Vec<usize>, Vec<u8>)],
) -> Result<Vec<u8>> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::to_value(meta)?);
    let mut sorted: Vec<&(S, &str, Vec<usize>, Vec<u8>)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
    let mut offset = 0usize;
    for (name, dtype, shape, data) in &sorted {
        header.insert(
            name.as_ref().to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + data.len()]}),
        );
        offset += data.len();
    }
    // serde_json's Map is ordered by key, so the header is deterministic.
    let mut h = serde_json::to_vec(&header)?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + offset);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    for (_, _, _, data) in sorted {
        out.extend_from_slice(data);
    }
    Ok(out)
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, renames it over `path` and
/// syncs the folder, so a crash never leaves a half-written file where the old one was and a
/// failed write leaves the old file as it was. The temporary is created exclusively (never
/// through an existing file or symbolic link at its name); an existing `path` that is not a
/// regular file (directory, FIFO, device) is refused.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, &mut |w| w.write_all(bytes).map_err(Into::into))
}

/// [`write_atomic`] for output produced piece by piece: `fill` writes the file's bytes into a
/// buffered writer on the temporary file (a large table is never held in memory whole).
pub fn write_atomic_with(
    path: &Path,
    fill: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    crate::outpath::check_regular_or_absent("output", path)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    path.file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let mut created = None;
    for attempt in 0..TEMP_ATTEMPTS {
        let tmp = temp_path(path, attempt);
        // create_new: fails on any existing entry at the name, a dangling symbolic link too.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => {
                created = Some((f, tmp));
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create {}", tmp.display()));
            }
        }
    }
    let (mut f, tmp) = created.with_context(|| {
        format!(
            "cannot create a temporary file beside {}: {TEMP_ATTEMPTS} candidate names are taken",
            path.display()
        )
    })?;
    let result = (|| -> Result<()> {
        if let Ok(old) = std::fs::metadata(path) {
            let _ = f.set_permissions(old.permissions());
        }
        {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut f);
            fill(&mut w).with_context(|| format!("cannot write {}", tmp.display()))?;
            w.flush()
                .with_context(|| format!("cannot write {}", tmp.display()))?;
        }
        f.sync_all()
            .with_context(|| format!("cannot sync {}", tmp.display()))?;
        drop(f);
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
        // The rename is durable once the folder is synced (not supported everywhere: best effort).
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// How many temporary names `write_atomic` tries before giving up.
pub const TEMP_ATTEMPTS: u32 = 64;

/// The `attempt`-th temporary name `write_atomic` tries for `path` (in its folder).
pub fn temp_path(path: &Path, attempt: u32) -> std::path::PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.tmp-{}-{attempt}", std::process::id()))
}
