//! Output paths that never destroy inputs, nor any file this tool did not write.
//!
//! Every command that writes a file checks its output path first: an output may not be, or
//! resolve to (symbolic links, `..`, hard links), one of the files the command reads; an
//! existing output must be a regular file (not a directory, FIFO or device); and an existing
//! output must be an earlier output of the same kind (a PELT table, a checkpoint, a Projector
//! export…) or empty, unless the user agreed to replace it (`--force` on the command line; the
//! window asks). A refusal of that last kind is a [`NotOurs`] error, which a front end can
//! recognise to ask.

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

    /// Refuses `out` (named `what` in the message, e.g. `--out`) when it is one of the inputs,
    /// an existing file that is not a regular file, or (unless `replace`) an existing
    /// non-empty file that is not an earlier output of `kind` ([`NotOurs`]).
    pub fn check_output(
        &self,
        what: &str,
        out: &Path,
        kind: OutputKind,
        replace: Replace,
    ) -> Result<()> {
        self.check_not_input(what, out)?;
        check_replaceable(what, out, kind, replace)
    }

    /// Refuses `out` when it is one of the inputs or an existing file that is not a regular
    /// file (whatever it holds).
    pub fn check_not_input(&self, what: &str, out: &Path) -> Result<()> {
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

/// What an output is: an existing file at its path is replaced without asking only when it is
/// an earlier output of the same kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// A PELT table (`.safetensors` with `format` `pelt-table/…`).
    Table,
    /// A build checkpoint (`format` `pelt-checkpoint/…`).
    Checkpoint,
    /// An Embedding Projector export: `vectors.tsv` (rows of tab-separated numbers) or
    /// `metadata.tsv` (its `name<TAB>id<TAB>count` header).
    Projector,
    /// An entity list in `.tsv` form (id, name, aliases).
    EntityList,
    /// A JSON report of this tool (an object with a `"pelt"` field).
    Report,
    /// A project file (RON with a `corpus` field).
    Project,
    /// A map as TSV (`id<TAB>name<TAB>x<TAB>y` header).
    Map,
}

impl OutputKind {
    pub fn label(self) -> &'static str {
        match self {
            OutputKind::Table => "PELT table",
            OutputKind::Checkpoint => "PELT checkpoint",
            OutputKind::Projector => "Projector export",
            OutputKind::EntityList => "entity list",
            OutputKind::Report => "PELT report",
            OutputKind::Project => "PELT project",
            OutputKind::Map => "PELT map",
        }
    }

    /// Whether the file at `path`, which exists, looks like an output of this kind. Reads at
    /// most the first megabyte (a table's header at most 100 MB, as the reader allows).
    pub fn recognises(self, path: &Path) -> bool {
        use std::io::Read;
        let Ok(mut f) = std::fs::File::open(path) else {
            return false;
        };
        let mut head = Vec::new();
        if (&mut f).take(1 << 20).read_to_end(&mut head).is_err() {
            return false;
        }
        match self {
            OutputKind::Table | OutputKind::Checkpoint => {
                let prefix = match self {
                    OutputKind::Table => "pelt-table/",
                    _ => "pelt-checkpoint/",
                };
                safetensors_format(&mut f, &head).is_some_and(|fmt| fmt.starts_with(prefix))
            }
            OutputKind::Projector => {
                let Some(text) = complete_lines(&head) else {
                    return false;
                };
                text.starts_with("name\tid\tcount\n")
                    || (!text.is_empty()
                        && text
                            .lines()
                            .all(|l| l.split('\t').all(|v| v.trim().parse::<f32>().is_ok())))
            }
            OutputKind::EntityList => complete_lines(&head).is_some_and(|text| {
                text.lines().all(|l| {
                    l.starts_with('#') || {
                        let mut c = l.split('\t');
                        let (id, name) = (c.next().unwrap_or(""), c.next().unwrap_or(""));
                        !id.trim().is_empty() && !name.trim().is_empty() && c.count() <= 1
                    }
                })
            }),
            OutputKind::Map => head.starts_with(b"id\tname\tx\ty\n"),
            OutputKind::Report => serde_json::from_slice::<serde_json::Value>(&head)
                .is_ok_and(|v| v.get("pelt").is_some_and(|p| p.is_string())),
            OutputKind::Project => std::str::from_utf8(&head).is_ok_and(|t| {
                matches!(
                    ron::from_str::<ron::Value>(t),
                    Ok(ron::Value::Map(ref m)) if m.iter().any(|(k, _)| {
                        matches!(k, ron::Value::String(s) if s == "corpus")
                    })
                )
            }),
        }
    }
}

/// The `format` metadata of a safetensors file whose first bytes are `head`.
fn safetensors_format(f: &mut std::fs::File, head: &[u8]) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let n = u64::from_le_bytes(head.get(..8)?.try_into().ok()?);
    if n > 100 << 20 {
        return None;
    }
    let header: Vec<u8> = match head.get(8..8 + n as usize) {
        Some(h) => h.to_vec(),
        None => {
            let mut h = vec![0u8; n as usize];
            f.seek(SeekFrom::Start(8)).ok()?;
            f.read_exact(&mut h).ok()?;
            h
        }
    };
    let v: serde_json::Value = serde_json::from_slice(&header).ok()?;
    Some(v.get("__metadata__")?.get("format")?.as_str()?.to_string())
}

/// `head` as UTF-8 up to its last complete line (all of it when it ends a line or the file).
fn complete_lines(head: &[u8]) -> Option<&str> {
    let end = if head.len() < 1 << 20 {
        head.len()
    } else {
        head.iter().rposition(|&b| b == b'\n')? + 1
    };
    std::str::from_utf8(&head[..end]).ok()
}

/// Whether an output may replace an existing file this tool did not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Replace {
    /// Only earlier outputs of the same kind, and empty files.
    #[default]
    OwnOnly,
    /// Any regular file (the user agreed: `--force`, or the window asked).
    Any,
}

impl Replace {
    pub fn forced(force: bool) -> Replace {
        if force {
            Replace::Any
        } else {
            Replace::OwnOnly
        }
    }
}

/// An existing file at an output path that is not an earlier output of its kind: replacing
/// it needs the user's consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotOurs {
    /// The output's role (`--out`, `checkpoint`, `table`…).
    pub what: String,
    pub path: PathBuf,
    pub size: u64,
    pub kind: OutputKind,
}

impl std::fmt::Display for NotOurs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} exists ({}) and is not a {}: refusing to replace it (choose another path, or \
             pass --force to replace it)",
            self.what,
            crate::escape::path(&self.path),
            human_size(self.size),
            self.kind.label()
        )
    }
}

impl std::error::Error for NotOurs {}

/// `1,234 bytes`, `12.3 MB`…
pub fn human_size(n: u64) -> String {
    match n {
        0..=9_999 => format!("{n} bytes"),
        10_000..=9_999_999 => format!("{:.1} kB", n as f64 / 1e3),
        10_000_000..=9_999_999_999 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.1} GB", n as f64 / 1e9),
    }
}

/// Refuses (with [`NotOurs`]) an existing, non-empty regular file at `path` that is not an
/// earlier output of `kind`, unless `replace` is [`Replace::Any`]. Anything not a regular
/// file is refused whatever `replace` says.
pub fn check_replaceable(
    what: &str,
    path: &Path,
    kind: OutputKind,
    replace: Replace,
) -> Result<()> {
    check_regular_or_absent(what, path)?;
    let Ok(m) = std::fs::metadata(path) else {
        return Ok(());
    };
    if replace == Replace::Any || m.len() == 0 || kind.recognises(path) {
        return Ok(());
    }
    Err(NotOurs {
        what: what.to_string(),
        path: path.to_path_buf(),
        size: m.len(),
        kind,
    }
    .into())
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
        assert!(inputs.check_not_input("--out", &input).is_err());
        assert!(inputs
            .check_not_input("--out", &dir.path().join(".").join("corpus.txt"))
            .is_err());
        #[cfg(unix)]
        {
            let hard = dir.path().join("hard.txt");
            std::fs::hard_link(&input, &hard).unwrap();
            let e = inputs
                .check_not_input("--out", &hard)
                .unwrap_err()
                .to_string();
            assert!(e.contains("corpus file"), "{e}");
            let soft = dir.path().join("soft.txt");
            std::os::unix::fs::symlink(&input, &soft).unwrap();
            assert!(inputs.check_not_input("--out", &soft).is_err());
        }
        let e = inputs
            .check_not_input("--out", dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("a directory"), "{e}");
        inputs
            .check_not_input("--out", &dir.path().join("table.safetensors"))
            .unwrap();
    }

    fn table_bytes(format: &str) -> Vec<u8> {
        let mut meta = std::collections::BTreeMap::new();
        meta.insert("format", format.to_string());
        crate::io::write_safetensors(&meta, &[("x", "U8", vec![1], vec![7u8])]).unwrap()
    }

    /// Each kind replaces its own earlier outputs and empty files, and refuses a stranger's
    /// file (naming it and its size) unless told to replace any file.
    #[test]
    fn an_existing_file_is_replaced_only_when_it_is_an_output_of_its_kind() {
        let dir = tempfile::tempdir().unwrap();
        let put = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let thesis = put(
            "thesis.txt",
            b"Chapter 1\nIt was a dark and stormy night.\n",
        );
        let cases: Vec<(OutputKind, PathBuf)> = vec![
            (
                OutputKind::Table,
                put("t.safetensors", &table_bytes("pelt-table/2")),
            ),
            (
                OutputKind::Checkpoint,
                put("c.ckpt", &table_bytes("pelt-checkpoint/3")),
            ),
            (
                OutputKind::Projector,
                put("vectors.tsv", b"0.5\t-1e-3\t2\n1\t2\t3\n"),
            ),
            (
                OutputKind::Projector,
                put("metadata.tsv", b"name\tid\tcount\nA\tQ1\t3\n"),
            ),
            (
                OutputKind::EntityList,
                put("e.tsv", b"Q1\tAspirin\tASA|acetylsalicylic acid\n"),
            ),
            (
                OutputKind::Report,
                put("r.json", br#"{"pelt": "typing", "accuracy": 0.5}"#),
            ),
            (
                OutputKind::Project,
                put("p.ron", b"(corpus: \"c.txt\", k: 256)"),
            ),
            (
                OutputKind::Map,
                put("map.tsv", b"id\tname\tx\ty\nQ1\tA\t0.5\t-2\n"),
            ),
        ];
        for (kind, own) in &cases {
            check_replaceable("--out", own, *kind, Replace::OwnOnly)
                .unwrap_or_else(|e| panic!("{kind:?} refused its own output: {e}"));
            let e = check_replaceable("--out", &thesis, *kind, Replace::OwnOnly).unwrap_err();
            let not_ours = e.downcast_ref::<NotOurs>().expect("a NotOurs refusal");
            let size = std::fs::metadata(&thesis).unwrap().len();
            assert_eq!((not_ours.size, not_ours.kind), (size, *kind));
            let msg = e.to_string();
            let named = msg.contains("thesis.txt") && msg.contains(&format!("{size} bytes"));
            assert!(named && msg.contains("--force"), "{msg}");
            check_replaceable("--out", &thesis, *kind, Replace::Any).unwrap();
        }
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("projects/pubmed-demo.ron");
        assert!(OutputKind::Project.recognises(&demo));
        let other_format = put("other.safetensors", &table_bytes("someone-else/1"));
        assert!(!OutputKind::Table.recognises(&other_format));
        let empty = put("empty.bin", b"");
        check_replaceable("--out", &empty, OutputKind::Table, Replace::OwnOnly).unwrap();
        check_replaceable(
            "--out",
            &dir.path().join("new.bin"),
            OutputKind::Table,
            Replace::OwnOnly,
        )
        .unwrap();
        // A folder is refused even when any file may be replaced.
        assert!(check_replaceable("--out", dir.path(), OutputKind::Table, Replace::Any).is_err());
        // A report is JSON with a "pelt" field; other JSON is a stranger's.
        let cfg = put("config.json", br#"{"hidden_size": 768}"#);
        assert!(!OutputKind::Report.recognises(&cfg));
    }
}
