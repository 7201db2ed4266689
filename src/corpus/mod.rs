//! Streaming corpus reader.
//!
//! Plain formats (mentions are found by matching names): `.txt`, one passage per line
//! (`text.rs`); `.jsonl` / `.ndjson`, a `text` field per line (`jsonl.rs`).
//!
//! Entity-linked formats (each sentence carries [`Link`]s, the way PELT found its mentions):
//! `.jsonl` with a `links` field; FewRel-style `.json` (`fewrel.rs`); PubTator
//! (`pubtator.rs`); WikiExtractor output written with `--links` (`wiki.rs`).
//!
//! A directory of these and `.gz` of any work too. Only regular files are read; folders are
//! walked in sorted order with symlink loops and duplicate files refused (`walk.rs`). Memory
//! is bounded: lines (and FewRel examples, PubTator documents) longer than
//! [`Corpus::max_line_bytes`] are skipped without being buffered (`open.rs`). Bad lines and
//! bad links are skipped and counted; the first few are reported with file and line
//! (`reader.rs`). Passages are split into sentences in `sentences.rs`.
//!
//! Each format is one file with a `FormatReader`, which reads its files whole and in order
//! and cuts them into units of work for the parallel reader (`parallel.rs`); `READERS` lists
//! them. Adding a format is a file, a [`Format`] variant and a line in `READERS`.

mod fewrel;
mod jsonl;
mod lines;
mod open;
mod parallel;
mod pubtator;
mod reader;
mod record;
mod sentences;
mod text;
mod walk;
mod wiki;

pub use fewrel::{fewrel_examples, for_each_fewrel_example, FewRelEntity, FewRelExample};
pub use open::{
    open_reader, read_maybe_gz, read_text_capped, CappedLine, LineReader, MAX_TEXT_LINE_BYTES,
};
pub use record::read_sentence;
pub use sentences::{split_sentences, split_sentences_around};
pub use wiki::{decode_entities, wiki_target};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use parallel::{Framed, Units};
use reader::Reader;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Jsonl,
    FewRel,
    PubTator,
    Wiki,
}

/// What a format is, for messages and for the dialogs that pick corpus files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatInfo {
    pub format: Format,
    /// How messages name it: `.txt`, `FewRel .json`, `WikiExtractor wiki_NN`.
    pub label: &'static str,
    /// Endings of its file names, lower case; each is also read with `.gz` after it.
    pub suffixes: &'static [&'static str],
    /// Whether every record carries entity links (JSON Lines records may or may not).
    pub always_linked: bool,
}

/// How the files of one format are read: whole and in order ([`FormatReader::read`]), or cut
/// by the reading thread of [`Corpus::for_each_sentence_parallel`] into units that workers
/// turn into sentences ([`FormatReader::frame`]). Both give the same sentences and report.
trait FormatReader: Sync {
    fn info(&self) -> &'static FormatInfo;

    /// How much of the (lower-case, `.gz`-less) file name `name` says it is of this format:
    /// the length of the matching ending, `None` when none matches. The longest match wins
    /// (`.pubtator.txt` is PubTator, not text; `.ndjson` is JSON Lines, not FewRel).
    fn name_match(&self, name: &str) -> Option<usize> {
        suffix_match(self.info(), name)
    }

    /// Reads the whole file of `r`, handing its sentences on; stops when they say so.
    fn read(&self, r: &mut Reader<'_>, cap: usize) -> Result<ControlFlow<()>>;

    /// Reads the file of `r` from record `from` (0-based) on: after [`Framed::From`].
    fn read_from(&self, r: &mut Reader<'_>, cap: usize, from: usize) -> Result<ControlFlow<()>> {
        let _ = (r, cap);
        bail!(
            "internal error: the reader of {} files does not start at record {from}",
            self.info().label
        )
    }

    /// Cuts the file of `units` into units of work for the parallel reader's workers.
    fn frame(&self, units: &mut Units<'_>, cap: usize) -> Result<Framed>;

    /// The function that reads one line of a format of one record a line (plain text, JSON
    /// Lines): a record is then read back from its byte offset alone.
    fn line_fn(&self) -> Option<lines::LineFn> {
        None
    }

    /// Whether the file carries entity links.
    fn has_links(&self, path: &Path, cap: usize) -> Result<bool> {
        let _ = (path, cap);
        Ok(self.info().always_linked)
    }
}

/// The length of the longest ending of `info`'s file names that `name` has.
fn suffix_match(info: &FormatInfo, name: &str) -> Option<usize> {
    info.suffixes
        .iter()
        .filter(|s| name.ends_with(*s))
        .map(|s| s.len())
        .max()
}

/// Every format, in the order messages list them.
static READERS: [&dyn FormatReader; 5] = [
    &text::Text,
    &jsonl::Jsonl,
    &fewrel::FewRel,
    &pubtator::PubTator,
    &wiki::Wiki,
];

impl Format {
    pub fn of(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        READERS
            .iter()
            .filter_map(|r| Some((r.name_match(name)?, r.info().format)))
            .max_by_key(|&(len, _)| len)
            .map(|(_, format)| format)
    }

    pub fn info(self) -> &'static FormatInfo {
        self.reader().info()
    }

    /// Formats whose every record carries entity links (JSON Lines may or may not).
    pub fn always_linked(self) -> bool {
        self.info().always_linked
    }

    fn reader(self) -> &'static dyn FormatReader {
        *READERS
            .iter()
            .find(|r| r.info().format == self)
            .expect("every format has a reader")
    }
}

/// The reader of a file: by its name, plain text where the name says nothing (the files
/// [`Corpus::open`] accepts all have a known format).
fn reader_of(path: &Path) -> &'static dyn FormatReader {
    Format::of(path).unwrap_or(Format::Text).reader()
}

/// Every format the reader knows, in the order messages list them.
pub fn formats() -> impl Iterator<Item = &'static FormatInfo> {
    READERS.iter().map(|r| r.info())
}

/// What [`Format::of`] accepts, for messages: `.txt, .jsonl, … (optionally .gz)`.
pub fn formats_text() -> String {
    let labels: Vec<&str> = formats().map(|f| f.label).collect();
    format!("{} (optionally .gz)", labels.join(", "))
}

/// The file extensions (without the dot) of every format, and `gz`: for file dialogs, which
/// filter on extensions (WikiExtractor's `wiki_NN` files have none).
pub fn file_extensions() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    let ext = |s: &'static str| s.rsplit('.').next().unwrap_or(s);
    for e in formats()
        .flat_map(|f| f.suffixes.iter().map(|s| ext(s)))
        .chain(["gz"])
    {
        if !out.contains(&e) {
            out.push(e);
        }
    }
    out
}

/// An entity link inside a sentence: byte offsets into [`Sentence::text`], end exclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub start: usize,
    pub end: usize,
    pub id: String,
}

/// [`Sentence::offset`] where the format does not tell the offset of its records.
pub const NO_OFFSET: u64 = u64::MAX;

/// One sentence of the corpus with its location: `file` indexes [`Corpus::files`], `line` is
/// 1-based (the example number for FewRel files, the title line for PubTator documents),
/// `index` counts sentences within the line or document. `links` are sorted and disjoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentence {
    pub file: usize,
    pub line: usize,
    pub index: usize,
    /// Byte offset of the sentence's line in the (decompressed) file, for the formats of one
    /// record a line (plain text, JSON Lines); [`NO_OFFSET`] for the others.
    pub offset: u64,
    pub text: String,
    pub links: Vec<Link>,
}

/// What reading skipped, for the user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadReport {
    pub sentences: usize,
    /// Entity links read (kept in sentences).
    pub links: usize,
    pub skipped_lines: usize,
    /// Links left out (bad offsets, overlaps, unknown ids are counted by the build).
    pub skipped_links: usize,
    /// The first few skipped lines and links, as `file:line: reason`.
    pub warnings: Vec<String>,
}

impl ReadReport {
    fn note(&mut self, msg: String) {
        if self.warnings.len() < 20 {
            self.warnings.push(msg);
        }
    }
    fn warn(&mut self, msg: String) {
        self.skipped_lines += 1;
        self.note(msg);
    }
    fn warn_link(&mut self, msg: String) {
        self.skipped_links += 1;
        self.note(msg);
    }
    /// Adds what a later part of the corpus skipped (warnings in reading order, at most 20).
    fn absorb(&mut self, later: ReadReport) {
        self.sentences += later.sentences;
        self.links += later.links;
        self.skipped_lines += later.skipped_lines;
        self.skipped_links += later.skipped_links;
        for w in later.warnings {
            self.note(w);
        }
    }

    /// One line per skipped item (at most 20), then a count of the rest.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut out = self.warnings.clone();
        let total = self.skipped_lines + self.skipped_links;
        if total > self.warnings.len() {
            out.push(format!(
                "… and {} more ({} lines and {} links skipped in all)",
                total - self.warnings.len(),
                self.skipped_lines,
                self.skipped_links
            ));
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corpus {
    pub files: Vec<PathBuf>,
    /// Lines (FewRel examples, PubTator documents) longer than this many bytes are skipped
    /// with a warning.
    pub max_line_bytes: usize,
}

pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

impl Corpus {
    /// Expands directories (recursively, sorted) and checks that every file is a regular file
    /// of a known format. Devices, FIFOs and sockets are refused, given directly or met in a
    /// folder; so are symlink loops and the same file reached twice (by canonical path).
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        Ok(Corpus {
            files: walk::corpus_files(paths)?,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        })
    }

    /// Each file's path relative to the deepest folder holding them all, `/`-separated (a
    /// table records them to find its files again under a copy of the corpus elsewhere).
    pub fn relative_names(&self) -> Vec<String> {
        use std::path::Component;
        fn parent(p: &Path) -> Vec<Component<'_>> {
            p.parent().map_or(Vec::new(), |d| d.components().collect())
        }
        let mut common = self.files.first().map(|f| parent(f)).unwrap_or_default();
        for f in &self.files {
            let d = parent(f);
            let same = common.iter().zip(&d).take_while(|(a, b)| a == b).count();
            common.truncate(same);
        }
        self.files
            .iter()
            .map(|f| {
                f.components()
                    .skip(common.len())
                    .filter_map(|c| match c {
                        Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect()
    }

    /// sha256 over the raw bytes of all files, in order.
    pub fn sha256(&self) -> Result<String> {
        let mut h = Sha256::new();
        for f in &self.files {
            let mut file =
                std::fs::File::open(f).with_context(|| format!("cannot open {}", f.display()))?;
            std::io::copy(&mut file, &mut h)
                .with_context(|| format!("cannot read {}", f.display()))?;
        }
        Ok(format!("{:x}", h.finalize()))
    }

    /// Whether the corpus carries entity links: any FewRel, PubTator or WikiExtractor file, or a
    /// JSON Lines file whose first record has a `links` field (an empty list counts).
    pub fn has_links(&self) -> Result<bool> {
        for path in &self.files {
            if let Some(format) = Format::of(path) {
                if format.reader().has_links(path, self.max_line_bytes)? {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Calls `f` for every sentence, in a fixed order, without holding the corpus in memory.
    pub fn for_each_sentence(
        &self,
        mut f: impl FnMut(&Sentence) -> Result<ControlFlow<()>>,
    ) -> Result<ReadReport> {
        let mut report = ReadReport::default();
        let mut g = |s: Sentence| f(&s);
        for (fi, path) in self.files.iter().enumerate() {
            let mut r = Reader::new(fi, path, &mut report, &mut g);
            if reader_of(path)
                .read(&mut r, self.max_line_bytes)?
                .is_break()
            {
                break;
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sentences and report of a corpus of one file, `name`, holding `bytes`.
    pub(crate) fn read_file(name: &str, bytes: &[u8]) -> (Vec<Sentence>, ReadReport) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let c = Corpus::open(&[p]).unwrap();
        let mut got = Vec::new();
        let report = c
            .for_each_sentence(|s| {
                got.push(s.clone());
                Ok(ControlFlow::Continue(()))
            })
            .unwrap();
        (got, report)
    }

    /// `(line, text, [(linked text, id), …])` of a sentence.
    pub(crate) type Seen<'a> = (usize, &'a str, Vec<(&'a str, &'a str)>);

    /// What the tests of the formats look at in each sentence.
    pub(crate) fn seen(sentences: &[Sentence]) -> Vec<Seen<'_>> {
        sentences
            .iter()
            .map(|s| {
                let links = s
                    .links
                    .iter()
                    .map(|l| (&s.text[l.start..l.end], l.id.as_str()))
                    .collect();
                (s.line, s.text.as_str(), links)
            })
            .collect()
    }

    #[test]
    fn relative_names_drop_the_common_folder() {
        let c = |files: &[&str]| Corpus {
            files: files.iter().map(PathBuf::from).collect(),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        };
        assert_eq!(c(&["/d/c/a.txt"]).relative_names(), ["a.txt"]);
        assert_eq!(
            c(&["/d/c/x/a.txt", "/d/c/y/z/b.jsonl", "/d/c/x/b.txt"]).relative_names(),
            ["x/a.txt", "y/z/b.jsonl", "x/b.txt"]
        );
        assert_eq!(
            c(&["/d/a.txt", "e/b.txt"]).relative_names(),
            ["d/a.txt", "e/b.txt"]
        );
    }

    #[test]
    fn file_names_say_the_format() {
        let of = |n: &str| Format::of(Path::new(n));
        assert_eq!(of("a.txt"), Some(Format::Text));
        assert_eq!(of("dir/A.TEXT.gz"), Some(Format::Text));
        assert_eq!(of("a.pubtator.txt"), Some(Format::PubTator));
        assert_eq!(of("a.PubTator.gz"), Some(Format::PubTator));
        assert_eq!(of("a.jsonl"), Some(Format::Jsonl));
        assert_eq!(of("a.ndjson"), Some(Format::Jsonl));
        assert_eq!(of("a.json.gz"), Some(Format::FewRel));
        assert_eq!(of("wiki_07"), Some(Format::Wiki));
        assert_eq!(of("wiki_07.gz"), Some(Format::Wiki));
        assert_eq!(of("x.wiki"), Some(Format::Wiki));
        for other in ["wiki_", "wiki_0a", "a.csv", "a.gz", "json", "a.txt.bak"] {
            assert_eq!(of(other), None, "{other}");
        }
        assert_eq!(
            formats_text(),
            ".txt, .jsonl, FewRel .json, .pubtator, WikiExtractor wiki_NN (optionally .gz)"
        );
        assert_eq!(
            file_extensions(),
            ["txt", "text", "jsonl", "ndjson", "json", "pubtator", "wiki", "gz"]
        );
        assert!(formats().all(|f| f.format.info() == f));
        assert!(Format::Wiki.always_linked() && !Format::Jsonl.always_linked());
    }
}
