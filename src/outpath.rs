//! Output paths that never destroy inputs.
//!
//! Every command that writes a file checks its output path first: an output may not be, or
//! resolve to (symbolic links, `..`, hard links), one of the files the command reads, and an
//! existing output must be a regular file (not a directory, FIFO or device).

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// A file a command reads, with what it is (for the message).
#[derive(Debug, Clone)]
pub struct Input {
    pub role: &'static str,
    pub path: PathBuf,
}

impl Input {
    pub fn new(role: &'static str, path: impl Into<PathBuf>) -> Self {
        Input {
            role,
            path: path.into(),
        }
    }
}

/// The inputs of a command, collected before its outputs are checked.
#[derive(Debug, Clone, Default)]
pub struct Inputs(pub Vec<Input>);

impl Inputs {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, role: &'static str, path: impl Into<PathBuf>) -> &mut Self {
        self.0.push(Input::new(role, path));
        self
    }

    pub fn add_all<P: Into<PathBuf>>(
        &mut self,
        role: &'static str,
        paths: impl IntoIterator<Item = P>,
    ) -> &mut Self {
        for p in paths {
            self.add(role, p);
        }
        self
    }

    /// Refuses `out` (named `what` in the message, e.g. `--out`) when it is one of the inputs
    /// or an existing file that is not a regular file.
    pub fn check_output(&self, what: &str, out: &Path) -> Result<()> {
        check_regular_or_absent(what, out)?;
        let out_id = FileId::of(out);
        for input in &self.0 {
            if same_file(out, out_id.as_ref(), &input.path) {
                bail!(
                    "{what} {} is the {} {}: refusing to overwrite an input (choose another output path)",
                    crate::escape::path(out),
                    input.role,
                    crate::escape::path(&input.path)
                );
            }
        }
        Ok(())
    }
}

/// Refuses an existing `path` (following symbolic links) that is not a regular file.
pub fn check_regular_or_absent(what: &str, path: &Path) -> Result<()> {
    check_kind(what, path, false)
}

/// Refuses an existing `dir` (following symbolic links) that is not a directory.
pub fn check_dir_or_absent(what: &str, dir: &Path) -> Result<()> {
    check_kind(what, dir, true)
}

fn check_kind(what: &str, path: &Path, folder: bool) -> Result<()> {
    if let Ok(m) = std::fs::metadata(path) {
        if folder != m.is_dir() || (!folder && !m.is_file()) {
            bail!(
                "{what} {} exists and is {}, {}",
                crate::escape::path(path),
                kind_of(&m),
                if folder {
                    "not a folder"
                } else {
                    "not a regular file: refusing to replace it"
                }
            );
        }
    }
    Ok(())
}

/// "a directory", "a FIFO", "a device", … for messages.
pub fn kind_of(m: &std::fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_dir() {
        return "a directory";
    }
    if t.is_file() {
        return "a regular file";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

/// A file's identity: (device, inode) on unix, so hard links compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId(u64, u64);

impl FileId {
    #[cfg(unix)]
    fn of(p: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).ok().map(|m| FileId(m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    fn of(_: &Path) -> Option<Self> {
        None
    }
}

/// `p` with its existing part resolved (symbolic links, `.`, `..`): the canonical parent joined
/// with the file name when `p` itself does not exist.
pub fn resolve(p: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => resolve(parent).join(name),
        _ => abs,
    }
}

fn same_file(out: &Path, out_id: Option<&FileId>, input: &Path) -> bool {
    if let (Some(a), Some(b)) = (out_id, FileId::of(input)) {
        if *a == b {
            return true;
        }
    }
    resolve(out) == resolve(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_missing_files_through_their_parent() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("sub");
        std::fs::create_dir(&a).unwrap();
        let via_dots = a.join("..").join("sub").join("new.bin");
        assert_eq!(resolve(&via_dots), resolve(&a.join("new.bin")));
    }

    #[test]
    fn refuses_an_input_its_links_and_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("corpus.txt");
        std::fs::write(&input, "x").unwrap();
        let mut inputs = Inputs::new();
        inputs.add("corpus file", &input);
        assert!(inputs.check_output("--out", &input).is_err());
        assert!(inputs
            .check_output("--out", &dir.path().join(".").join("corpus.txt"))
            .is_err());
        #[cfg(unix)]
        {
            let hard = dir.path().join("hard.txt");
            std::fs::hard_link(&input, &hard).unwrap();
            let e = inputs.check_output("--out", &hard).unwrap_err().to_string();
            assert!(e.contains("corpus file"), "{e}");
            let soft = dir.path().join("soft.txt");
            std::os::unix::fs::symlink(&input, &soft).unwrap();
            assert!(inputs.check_output("--out", &soft).is_err());
        }
        let e = inputs
            .check_output("--out", dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("a directory"), "{e}");
        inputs
            .check_output("--out", &dir.path().join("table.safetensors"))
            .unwrap();
    }
}
