//! A table's supporting contexts: references into the corpus (file, line, sentence, the byte
//! offset of the line, the mention span and a checksum of the sentence), with the sentences
//! stored deflated, or not at all (`--context-text none`). A table opened with its corpus
//! ([`Table::attach_corpus`]) reads each sentence back from the corpus where the file is there
//! and the sentence's checksum still matches, and falls back to the stored text; a table
//! without text says which file is missing or changed.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{writer, Table};
use crate::corpus::{Corpus, DEFAULT_MAX_LINE_BYTES, NO_OFFSET};
use crate::escape;

/// A sampled context as kept in a table: where it is, the sentence, and the mention span.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextRecord {
    /// Row of the entity in the table.
    pub entity: u32,
    /// Corpus file index, 1-based line (example number for FewRel), sentence index in the line.
    pub file: u32,
    pub line: u32,
    pub sentence: u32,
    /// Byte span of the mention in `text`.
    pub start: u32,
    pub end: u32,
    /// The sentence; empty where `source` is [`TextSource::Absent`].
    pub text: String,
    /// The mention is a linked span (not a name match).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub linked: bool,
    /// Byte offset of the sentence's line in its (decompressed) corpus file, for plain text
    /// and JSON Lines; [`NO_OFFSET`] for other formats and for tables from before offsets.
    #[serde(default = "no_offset", skip_serializing_if = "is_no_offset")]
    pub offset: u64,
    /// CRC-32 of the sentence's UTF-8 bytes as the table records it (`None`: tables from
    /// before checksums, and contexts not read from a table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<u32>,
    /// Where `text` came from.
    #[serde(skip)]
    pub source: TextSource,
}

fn no_offset() -> u64 {
    NO_OFFSET
}

fn is_no_offset(o: &u64) -> bool {
    *o == NO_OFFSET
}

/// Where a context's sentence came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TextSource {
    /// The text stored in the table (or given when the context was made).
    #[default]
    Stored,
    /// Read back from the corpus file, its checksum matching the table's.
    Corpus,
    /// Not read: the table stores no text (only its reference and checksum are known).
    Absent,
}

impl TextSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TextSource::Stored => "stored",
            TextSource::Corpus => "corpus",
            TextSource::Absent => "absent",
        }
    }
}

impl ContextRecord {
    pub fn mention(&self) -> &str {
        self.text
            .get(self.start as usize..self.end as usize)
            .unwrap_or("")
    }
    pub fn sort_key(&self) -> (u32, u32, u32, u32, u32) {
        (self.file, self.line, self.sentence, self.start, self.entity)
    }
}

/// Whether a table stores the sentences of its contexts (`--context-text`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContextText {
    /// Deflated in the table, in blocks of [`super::TEXT_BLOCK`].
    #[default]
    Stored,
    /// Not stored: sentences are read back from the corpus.
    None,
}

impl ContextText {
    pub fn as_str(self) -> &'static str {
        match self {
            ContextText::Stored => "stored",
            ContextText::None => "none",
        }
    }
    pub fn parse(s: &str) -> Result<ContextText> {
        match s {
            "stored" => Ok(ContextText::Stored),
            "none" => Ok(ContextText::None),
            _ => bail!(
                "`{}` is not a context text mode: expected stored or none",
                escape::text(s)
            ),
        }
    }
}

/// How a table keeps its contexts: with or without their sentences, and the corpus files
/// (relative paths, `/`-separated) that their file indices name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextLayout {
    pub text: ContextText,
    pub corpus_files: Vec<String>,
}

/// CRC-32 (IEEE) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(bytes);
    c.sum()
}

/// The corpus files of a table found under the paths given for its corpus.
#[derive(Debug)]
pub struct CorpusLink {
    /// The paths as given, for messages.
    given: String,
    /// Per file index of the table: the file found, if any.
    files: Vec<Option<PathBuf>>,
    /// Why the given paths could not be read as a corpus, if they could not.
    problem: Option<String>,
}

impl CorpusLink {
    /// Finds the files of a table (`names`: its relative file paths; empty for tables that do
    /// not name them, whose file indices are then taken as the order of the walk) under
    /// `paths`, walked as a build walks them.
    fn find(names: &[String], paths: &[PathBuf]) -> CorpusLink {
        let given = paths
            .iter()
            .map(|p| escape::path(p).to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let (walked, problem) = match Corpus::open(paths) {
            Ok(c) => (c.files, None),
            Err(e) => (Vec::new(), Some(format!("{e:#}"))),
        };
        let files = if names.is_empty() {
            walked.into_iter().map(Some).collect()
        } else {
            names
                .iter()
                .enumerate()
                .map(|(fi, name)| {
                    let rel = Path::new(name);
                    if walked.get(fi).is_some_and(|p| p.ends_with(rel)) {
                        return walked.get(fi).cloned();
                    }
                    let mut hits = walked.iter().filter(|p| p.ends_with(rel));
                    match (hits.next(), hits.next()) {
                        (Some(p), None) => Some(p.clone()),
                        _ => None,
                    }
                })
                .collect()
        };
        CorpusLink {
            given,
            files,
            problem,
        }
    }
}

/// Why a context's sentence was not read from the corpus.
enum Unread {
    NoCorpus,
    NoChecksum,
    Missing(String),
    Changed(String),
}

impl Table {
    /// Opens the table with its corpus: `paths` as given to the build (files or folders, walked
    /// in the same order). From then on [`Table::context`] and [`Table::contexts_in`] read each
    /// sentence from the corpus where its file is found and the sentence's checksum matches,
    /// else from the stored text. Paths that cannot be read are noted, not refused: each
    /// context then says what it could not read.
    pub fn attach_corpus(&mut self, paths: &[PathBuf]) {
        self.corpus = Some(Arc::new(CorpusLink::find(&self.corpus_files, paths)));
    }

    /// Whether the table stores its sentences.
    pub fn context_text(&self) -> ContextText {
        if self.text.is_some() {
            ContextText::Stored
        } else {
            ContextText::None
        }
    }

    /// How the table keeps its contexts (a copy or merge keeps them the same way).
    pub fn context_layout(&self) -> ContextLayout {
        ContextLayout {
            text: self.context_text(),
            corpus_files: self.corpus_files.clone(),
        }
    }

    /// The corpus files the contexts' file indices name (relative paths; empty for tables
    /// from before they were recorded).
    pub fn corpus_files(&self) -> &[String] {
        &self.corpus_files
    }

    /// Supporting context `ci`: the sentence from the corpus or the stored text (see
    /// [`Table::attach_corpus`]).
    pub fn context(&self, ci: usize) -> Result<ContextRecord> {
        let mut v = self.contexts_in(ci..ci + 1)?;
        Ok(v.pop().expect("one context"))
    }

    /// Supporting contexts `range` (e.g. [`Table::contexts_of`]), each text block inflated
    /// once; each sentence from the corpus where one is attached and it matches, else from
    /// the stored text. A table without stored text whose sentence cannot be read from the
    /// corpus is an error that names the file and line.
    pub fn contexts_in(&self, range: Range<usize>) -> Result<Vec<ContextRecord>> {
        let mut out = self.stored_in(range.clone())?;
        for (c, ci) in out.iter_mut().zip(range) {
            let why = match self.read_back(c) {
                Ok(()) => continue,
                Err(why) => why,
            };
            if c.source == TextSource::Stored {
                continue;
            }
            let file = self.corpus_files.get(c.file as usize).map_or_else(
                || format!("number {}", c.file),
                |f| escape::text(f).to_string(),
            );
            let line = c.line;
            match why {
                Unread::NoCorpus | Unread::NoChecksum => bail!(
                    "context {ci}: the table stores no text (built with --context-text none) and no corpus is given to read it from (corpus file {file}, line {line})"
                ),
                Unread::Missing(detail) => bail!(
                    "context {ci}: the table stores no text and the corpus file {file} is missing ({detail})"
                ),
                Unread::Changed(detail) => bail!(
                    "context {ci}: the table stores no text and the corpus file {file} is changed at line {line} ({detail})"
                ),
            }
        }
        Ok(out)
    }

    /// Reads context `c`'s sentence from the attached corpus into it, if the file is there and
    /// the sentence matches the table's checksum.
    fn read_back(&self, c: &mut ContextRecord) -> std::result::Result<(), Unread> {
        let link = self.corpus.as_ref().ok_or(Unread::NoCorpus)?;
        let sum = c.checksum.ok_or(Unread::NoChecksum)?;
        let path = link
            .files
            .get(c.file as usize)
            .and_then(|p| p.as_ref())
            .ok_or_else(|| {
                Unread::Missing(match &link.problem {
                    Some(p) => format!("the corpus at {} cannot be read: {p}", link.given),
                    None => format!("not found under {}", link.given),
                })
            })?;
        let read = crate::corpus::read_sentence(
            path,
            c.line as usize,
            c.sentence as usize,
            c.offset,
            DEFAULT_MAX_LINE_BYTES,
        );
        let at = escape::path(path);
        let text = match read {
            Err(e) => return Err(Unread::Missing(format!("{at}: {e:#}"))),
            Ok(None) => {
                return Err(Unread::Changed(format!(
                    "{at} has no sentence {} there any more",
                    c.sentence
                )))
            }
            Ok(Some(t)) => t,
        };
        let (a, b) = (c.start as usize, c.end as usize);
        if crc32(text.as_bytes()) != sum || text.get(a..b).is_none() {
            return Err(Unread::Changed(format!(
                "{at}: sentence {} is not the one the table was built from",
                c.sentence
            )));
        }
        c.text = text;
        c.source = TextSource::Corpus;
        Ok(())
    }

    /// Contexts `range` as the table stores them: the stored text, or none
    /// ([`TextSource::Absent`]) for a table without text. Never reads the corpus.
    pub(super) fn stored_in(&self, range: Range<usize>) -> Result<Vec<ContextRecord>> {
        if range.end > self.context_count() {
            bail!(
                "contexts {}..{} asked for, but the table holds {}",
                range.start,
                range.end,
                self.context_count()
            );
        }
        let mut out = Vec::with_capacity(range.len());
        let mut block: Option<(usize, Vec<u8>)> = None;
        for ci in range {
            let text = match &self.text {
                None => None,
                Some(_) => {
                    let b = ci / self.text_block;
                    if block.as_ref().is_none_or(|(at, _)| *at != b) {
                        block = Some((b, self.inflate(b, ci)?));
                    }
                    let raw = &block.as_ref().expect("inflated above").1;
                    Some(self.text_of(ci, raw)?)
                }
            };
            out.push(self.record(ci, text)?);
        }
        Ok(out)
    }

    /// Text block `block`, inflated (`ci`: the context asked for, for messages).
    fn inflate(&self, block: usize, ci: usize) -> Result<Vec<u8>> {
        let text = self.text.as_ref().context("the table stores no text")?;
        let (lo, hi) = (self.text_index[block], self.text_index[block + 1]);
        let z = &self.data.bytes()[text.start + lo as usize..text.start + hi as usize];
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::DeflateDecoder::new(z), &mut raw)
            .with_context(|| format!("context {ci}: its text block is damaged"))?;
        Ok(raw)
    }

    /// The text of context `ci` in its inflated text block `raw`.
    fn text_of(&self, ci: usize, raw: &[u8]) -> Result<String> {
        let mut at = 0usize;
        for j in 0..=ci % self.text_block {
            let len = raw
                .get(at..at + 4)
                .map(|l| u32::from_le_bytes(l.try_into().expect("4 bytes")) as usize)
                .with_context(|| format!("context {ci}: its text block ends early"))?;
            let s = raw
                .get(at + 4..at + 4 + len)
                .with_context(|| format!("context {ci}: its text block ends early"))?;
            if j == ci % self.text_block {
                return String::from_utf8(s.to_vec())
                    .with_context(|| format!("context {ci}: its text is not UTF-8"));
            }
            at += 4 + len;
        }
        unreachable!("the loop returns at the context")
    }

    /// Context `ci` from its reference and its stored text (if any), checked.
    fn record(&self, ci: usize, text: Option<String>) -> Result<ContextRecord> {
        let b = self.data.bytes();
        let at = self.refs.start + ci * writer::REF_FIELDS * 4;
        let f: Vec<u32> = b[at..at + writer::REF_FIELDS * 4]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let (start, end) = (f[4] as usize, f[5] as usize);
        let bad_span = match &text {
            Some(t) => start >= end || t.get(start..end).is_none(),
            None => start >= end,
        };
        if bad_span {
            bail!(
                "context {ci}: mention span {start}..{end} is not inside the text ({} bytes) on character boundaries",
                text.as_ref().map_or(0, String::len)
            );
        }
        if f[0] as usize >= self.len() || !self.contexts_of(f[0] as usize).contains(&ci) {
            bail!("context {ci}: entity row {} does not hold it", f[0]);
        }
        let (offset, checksum) = match &self.locs {
            Some((offsets, sums)) => {
                let o = offsets.start + ci * 8;
                let s = sums.start + ci * 4;
                (
                    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes")),
                    Some(u32::from_le_bytes(b[s..s + 4].try_into().expect("4 bytes"))),
                )
            }
            None => (NO_OFFSET, None),
        };
        let source = if text.is_some() {
            TextSource::Stored
        } else {
            TextSource::Absent
        };
        Ok(ContextRecord {
            entity: f[0],
            file: f[1],
            line: f[2],
            sentence: f[3],
            start: f[4],
            end: f[5],
            text: text.unwrap_or_default(),
            linked: f[6] & 1 == 1,
            offset,
            checksum,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{EntityRow, RowVector, TableMeta, TableWriter};
    use std::ops::ControlFlow;

    fn meta() -> TableMeta {
        TableMeta {
            k: 64,
            ..crate::table::test_meta(2, 2)
        }
    }

    /// A corpus folder of a plain text file and a gzipped JSON Lines file in a subfolder.
    fn corpus(dir: &Path) {
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(
            dir.join("a.txt"),
            "Aspirin lowers fever. Ibuprofen too.\n\nNaproxen is older. Ünïcode stays.\n",
        )
        .unwrap();
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(
            &mut z,
            b"{\"text\": \"Heparin thins blood. Warfarin too.\"}\n{\"text\": \"Insulin works.\"}\n",
        )
        .unwrap();
        std::fs::write(dir.join("sub/b.jsonl.gz"), z.finish().unwrap()).unwrap();
    }

    /// Every sentence of the corpus as a context of row `i % 2` (in table order), the mention
    /// its first word.
    fn records(dir: &Path) -> (Vec<ContextRecord>, Vec<String>) {
        let c = Corpus::open(&[dir.to_path_buf()]).unwrap();
        let mut out = Vec::new();
        c.for_each_sentence(|s| {
            out.push(ContextRecord {
                entity: (out.len() % 2) as u32,
                file: s.file as u32,
                line: s.line as u32,
                sentence: s.index as u32,
                start: 0,
                end: s.text.find(' ').unwrap_or(s.text.len()) as u32,
                text: s.text.clone(),
                linked: false,
                offset: s.offset,
                checksum: None,
                source: TextSource::Stored,
            });
            Ok(ControlFlow::Continue(()))
        })
        .unwrap();
        out.sort_by_key(|c| c.entity);
        (out, c.relative_names())
    }

    fn write(records: &[ContextRecord], layout: ContextLayout) -> Table {
        let mut w = TableWriter::new(meta(), 7.0, None).unwrap();
        w.set_contexts(layout).unwrap();
        for (row, id) in ["Q0", "Q1"].iter().enumerate() {
            w.push(
                &EntityRow {
                    id,
                    name: id,
                    aliases: &[],
                    global_row: row as u32,
                    vector: RowVector::Sum(&[1.0, row as f32]),
                    found: 64,
                },
                records.iter().filter(|c| c.entity as usize == row),
            )
            .unwrap();
        }
        Table::from_vec(w.finish_bytes().unwrap()).unwrap()
    }

    /// What a context is, whatever its text came from: its place, span, text and offset.
    type Seen<'a> = (u32, u32, u32, u32, u32, u32, &'a str, u64);

    fn all_seen(cs: &[ContextRecord]) -> Vec<Seen<'_>> {
        cs.iter()
            .map(|c| {
                let (e, f, l, s) = (c.entity, c.file, c.line, c.sentence);
                (e, f, l, s, c.start, c.end, c.text.as_str(), c.offset)
            })
            .collect()
    }

    fn err(t: &Table) -> String {
        format!("{:#}", t.contexts().unwrap_err())
    }

    #[test]
    fn text_less_tables_read_their_sentences_from_the_corpus_or_say_why_not() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("corpus");
        corpus(&root);
        let (recs, names) = records(&root);
        assert_eq!(names, ["a.txt", "sub/b.jsonl.gz"]);
        assert_eq!(recs.len(), 7);
        let layout = |text| ContextLayout {
            text,
            corpus_files: names.clone(),
        };
        let stored = write(&recs, layout(ContextText::Stored));
        let mut bare = write(&recs, layout(ContextText::None));
        assert!(bare.data.bytes().len() < stored.data.bytes().len());
        assert_eq!(bare.context_text(), ContextText::None);
        assert_eq!(bare.corpus_files(), &names[..]);
        // The stored table reads as it was written.
        let want = stored.contexts().unwrap();
        assert_eq!(all_seen(&want), all_seen(&recs));
        assert!(want.iter().all(|c| c.source == TextSource::Stored));
        // Without a corpus a text-less table says so.
        assert!(err(&bare).contains("stores no text"), "{}", err(&bare));
        // With it, every sentence comes back from the corpus, the same as the stored ones.
        bare.attach_corpus(std::slice::from_ref(&root));
        let got = bare.contexts().unwrap();
        assert_eq!(all_seen(&got), all_seen(&want));
        assert!(got.iter().all(|c| c.source == TextSource::Corpus));
        assert_eq!(got[3].mention(), want[3].mention());
        // A copy of the corpus elsewhere, named by its file (the walk then differs), serves too.
        let moved = d.path().join("moved/deeper");
        std::fs::create_dir_all(&moved).unwrap();
        std::fs::copy(root.join("a.txt"), moved.join("a.txt")).unwrap();
        let mut one = bare.clone();
        one.attach_corpus(&[moved.join("a.txt")]);
        let ci = recs.iter().position(|c| c.file == 0).unwrap();
        assert_eq!(one.context(ci).unwrap().text, recs[ci].text);
        assert_eq!(one.context(ci).unwrap().source, TextSource::Corpus);
        let gz = recs.iter().position(|c| c.file == 1).unwrap();
        let e = format!("{:#}", one.context(gz).unwrap_err());
        assert!(
            e.contains("stores no text and the corpus file sub/b.jsonl.gz is missing"),
            "{e}"
        );
        // Saving keeps the table without text, byte for byte.
        assert_eq!(
            bare.to_bytes().unwrap(),
            Table::from_vec(bare.to_bytes().unwrap())
                .unwrap()
                .to_bytes()
                .unwrap()
        );
        assert!(Table::from_vec(bare.to_bytes().unwrap())
            .unwrap()
            .text
            .is_none());

        // An edited sentence is never shown: the text-less table names the file and line, the
        // stored one falls back to its own text.
        let mut with_text = stored.clone();
        with_text.attach_corpus(std::slice::from_ref(&root));
        assert!(with_text
            .contexts()
            .unwrap()
            .iter()
            .all(|c| c.source == TextSource::Corpus));
        std::fs::write(
            root.join("a.txt"),
            "Aspirin lowers fevers. Ibuprofen too.\n\nNaproxen is older. Ünïcode stays.\n",
        )
        .unwrap();
        let e = err(&bare);
        assert!(
            e.contains("context 0: the table stores no text and the corpus file a.txt is changed at line 1"),
            "{e}"
        );
        let back = with_text.contexts().unwrap();
        assert_eq!(all_seen(&back), all_seen(&want));
        assert_eq!(back[0].source, TextSource::Stored);
        assert!(back.iter().any(|c| c.source == TextSource::Corpus));
        // A file gone: the text-less table says which.
        std::fs::remove_file(root.join("sub/b.jsonl.gz")).unwrap();
        let e = format!("{:#}", bare.context(gz).unwrap_err());
        assert!(
            e.contains("stores no text and the corpus file sub/b.jsonl.gz is missing"),
            "{e}"
        );
        assert_eq!(with_text.context(gz).unwrap().text, recs[gz].text);
        // The whole corpus gone.
        std::fs::remove_dir_all(&root).unwrap();
        bare.attach_corpus(std::slice::from_ref(&root));
        let e = format!("{:#}", bare.context(0).unwrap_err());
        assert!(
            e.contains("is missing") && e.contains("cannot be read"),
            "{e}"
        );
    }

    /// The bytes of `t` without the tensors and metadata added for corpus references: a table
    /// as written before them.
    fn old_layout(t: &Table) -> Vec<u8> {
        let b = t.data.bytes();
        let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
        let mut tensors: Vec<(String, serde_json::Value)> = header
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| {
                !["context_offsets", "context_checksums", "corpus_files"].contains(&k.as_str())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        tensors.sort_by_key(|(_, v)| v["data_offsets"][0].as_u64().unwrap_or(0));
        let mut out_header = serde_json::Map::new();
        let mut data = Vec::new();
        for (k, mut v) in tensors {
            if k == "__metadata__" {
                v.as_object_mut().unwrap().remove("context_text");
                out_header.insert(k, v);
                continue;
            }
            let (lo, hi) = (
                v["data_offsets"][0].as_u64().unwrap() as usize,
                v["data_offsets"][1].as_u64().unwrap() as usize,
            );
            let at = data.len();
            data.extend_from_slice(&b[8 + n + lo..8 + n + hi]);
            v["data_offsets"] = serde_json::json!([at, data.len()]);
            out_header.insert(k, v);
        }
        let mut hb = serde_json::to_vec(&out_header).unwrap();
        while !hb.len().is_multiple_of(8) {
            hb.push(b' ');
        }
        let mut out = (hb.len() as u64).to_le_bytes().to_vec();
        out.extend(hb);
        out.extend(data);
        out
    }

    #[test]
    fn tables_from_before_corpus_references_open_and_read_their_stored_text() {
        let d = tempfile::tempdir().unwrap();
        corpus(d.path());
        let (recs, names) = records(d.path());
        let t = write(
            &recs,
            ContextLayout {
                text: ContextText::Stored,
                corpus_files: names,
            },
        );
        let bytes = old_layout(&t);
        let mut old = Table::from_vec(bytes.clone()).unwrap();
        assert!(old.locs.is_none() && old.corpus_files.is_empty());
        assert_eq!(old.context_text(), ContextText::Stored);
        let got = old.contexts().unwrap();
        assert_eq!(
            got.iter()
                .map(|c| (&c.text, c.start, c.end))
                .collect::<Vec<_>>(),
            recs.iter()
                .map(|c| (&c.text, c.start, c.end))
                .collect::<Vec<_>>()
        );
        assert!(got
            .iter()
            .all(|c| c.offset == NO_OFFSET && c.checksum.is_none()));
        // No checksums to check a read-back against: the stored text is what it shows.
        old.attach_corpus(&[d.path().to_path_buf()]);
        assert!(old
            .contexts()
            .unwrap()
            .iter()
            .all(|c| c.source == TextSource::Stored));
        // Saved again, it gains checksums from its text (and reads back from the walk order).
        let mut again = Table::from_vec(old.to_bytes().unwrap()).unwrap();
        assert!(again.locs.is_some());
        again.attach_corpus(&[d.path().to_path_buf()]);
        let back = again.contexts().unwrap();
        assert_eq!(all_seen(&back)[..].len(), recs.len());
        assert!(back.iter().all(|c| c.source == TextSource::Corpus));
        // A text-less table stripped of its references is refused, not read.
        let bare = write(
            &recs,
            ContextLayout {
                text: ContextText::None,
                corpus_files: vec![],
            },
        );
        let e = format!("{:#}", Table::from_vec(old_layout(&bare)).unwrap_err());
        assert!(e.contains("missing tensor `context_text_index`"), "{e}");
    }
}
