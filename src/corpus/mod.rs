//! Streaming corpus reader.
//!
//! Plain formats (mentions are found by matching names):
//! - `.txt`: one passage per line, split into sentences;
//! - `.jsonl` / `.ndjson`: a `text` field per line, split into sentences.
//!
//! Entity-linked formats (each sentence carries [`Link`]s, the way PELT found its mentions):
//! - `.jsonl` with a `links` field: `{"text": "...", "links": [{"start": 0, "end": 8, "id": "Q90"}]}`,
//!   offsets in Unicode code points (as Python's `str` counts them), end exclusive;
//! - FewRel-style `.json`: one sentence per example (its tokens joined by single spaces), the
//!   `h`/`t` token positions become links to their ids;
//! - PubTator (`.pubtator`, `.pubtator.txt`): `PMID|t|title`, `PMID|a|abstract`, then
//!   `PMID<TAB>start<TAB>end<TAB>mention<TAB>type<TAB>id` lines; offsets in code points over
//!   title + " " + abstract;
//! - WikiExtractor output written with `--links` (files named `wiki_00`, `wiki_01`, … or
//!   `*.wiki`): `<doc …>` blocks whose anchors `<a href="Target%20title">anchor</a>` link to the
//!   URL-decoded title with its first letter upper-cased.
//!
//! A directory of these and `.gz` of any work too. Only regular files are read; folders are
//! walked in sorted order with symlink loops and duplicate files refused. Memory is bounded:
//! lines (and FewRel examples, PubTator documents) longer than [`Corpus::max_line_bytes`] are
//! skipped without being buffered. Bad lines and bad links are skipped and counted; the first
//! few are reported with file and line.

use anyhow::{bail, Context, Result};
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::cell::Cell;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Jsonl,
    FewRel,
    PubTator,
    Wiki,
}

impl Format {
    pub fn of(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        if name.ends_with(".pubtator") || name.ends_with(".pubtator.txt") {
            Some(Format::PubTator)
        } else if name.ends_with(".txt") || name.ends_with(".text") {
            Some(Format::Text)
        } else if name.ends_with(".jsonl") || name.ends_with(".ndjson") {
            Some(Format::Jsonl)
        } else if name.ends_with(".json") {
            Some(Format::FewRel)
        } else if name.ends_with(".wiki")
            || name
                .strip_prefix("wiki_")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            Some(Format::Wiki)
        } else {
            None
        }
    }

    /// Formats whose every record carries entity links (JSON Lines may or may not).
    pub fn always_linked(self) -> bool {
        matches!(self, Format::FewRel | Format::PubTator | Format::Wiki)
    }
}

/// What [`Format::of`] accepts, for messages.
pub const FORMATS: &str =
    ".txt, .jsonl, FewRel .json, .pubtator, WikiExtractor wiki_NN (optionally .gz)";

/// An entity link inside a sentence: byte offsets into [`Sentence::text`], end exclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub start: usize,
    pub end: usize,
    pub id: String,
}

/// One sentence of the corpus with its location: `file` indexes [`Corpus::files`], `line` is
/// 1-based (the example number for FewRel files, the title line for PubTator documents),
/// `index` counts sentences within the line or document. `links` are sorted and disjoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentence {
    pub file: usize,
    pub line: usize,
    pub index: usize,
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
                        "corpus directory {} holds no corpus files ({FORMATS})",
                        p.display()
                    );
                }
                for f in found {
                    add_file(f, &mut seen, &mut files)?;
                }
            } else if meta.is_file() {
                if Format::of(p).is_none() {
                    bail!(
                        "corpus file {}: unknown format (expected {FORMATS})",
                        p.display()
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
        Ok(Corpus {
            files,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        })
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
            match Format::of(path) {
                Some(f) if f.always_linked() => return Ok(true),
                Some(Format::Jsonl) => {
                    let mut lines = LineReader::open(path, self.max_line_bytes)?;
                    while let Some(line) = lines.next_line()? {
                        if let Ok(text) = std::str::from_utf8(line) {
                            if text.trim().is_empty() {
                                continue;
                            }
                            if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(text) {
                                if m.contains_key("links") {
                                    return Ok(true);
                                }
                            }
                        }
                        break;
                    }
                }
                _ => {}
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
            let mut r = Reader {
                fi,
                path,
                report: &mut report,
                f: &mut g,
            };
            if r.file(self.max_line_bytes)?.is_break() {
                break;
            }
        }
        Ok(report)
    }

    /// Like [`Corpus::for_each_sentence`], on `threads` threads: a reading thread cuts the
    /// corpus into units (lines of plain text and JSON Lines files, PubTator documents,
    /// WikiExtractor lines of text, the raw JSON of FewRel examples), workers parse them,
    /// split them into sentences and run `map` on every sentence, and `f` gets each sentence
    /// with its `map` result on the calling thread in corpus order. The sentences, their order
    /// and the report are the same as [`Corpus::for_each_sentence`]'s for any thread count.
    pub fn for_each_sentence_parallel<T: Send>(
        &self,
        threads: usize,
        map: impl Fn(&Sentence) -> T + Sync,
        mut f: impl FnMut(&Sentence, T) -> Result<ControlFlow<()>>,
    ) -> Result<ReadReport> {
        if threads <= 1 {
            return self.for_each_sentence(|s| {
                let t = map(s);
                f(s, t)
            });
        }
        let stop = AtomicBool::new(false);
        let cap = self.max_line_bytes;
        let mut report = ReadReport::default();
        let outcome = std::thread::scope(|scope| -> Result<()> {
            // Units of work go to the workers; their result slots go, in corpus order, to
            // this thread, which waits on each in turn.
            let (work_tx, work_rx) =
                crossbeam_channel::bounded::<(Unit, ChunkSlot<T>)>(threads * 2);
            let (order_tx, order_rx) = crossbeam_channel::bounded(threads * 4);
            let (stop, map) = (&stop, &map);
            scope.spawn(move || frame_units(self, cap, stop, &work_tx, &order_tx));
            for _ in 0..threads {
                let work_rx = work_rx.clone();
                scope.spawn(move || {
                    for (unit, slot) in work_rx.iter() {
                        if stop.load(Ordering::Relaxed) {
                            continue;
                        }
                        let _ = slot.send(unit.run(self, cap, map));
                    }
                });
            }
            drop(work_rx);
            let result = (|| -> Result<()> {
                // A FewRel file read here from some example on; its later units are dropped.
                let mut read_here = None;
                for slot in order_rx.iter() {
                    let chunk = slot.recv().map_err(|_| {
                        anyhow::anyhow!("internal error: a corpus reading thread stopped")
                    })??;
                    if read_here == Some(chunk.fi) {
                        continue;
                    }
                    for (s, t) in chunk.sentences {
                        if f(&s, t)?.is_break() {
                            return Ok(());
                        }
                    }
                    report.absorb(chunk.report);
                    if let Some(from) = chunk.resync {
                        // Examples the workers could not take, from `from` on: read the way
                        // `for_each_sentence` reads them, for the same sentences and errors.
                        read_here = Some(chunk.fi);
                        let mut part = ReadReport::default();
                        let mut g = |s: Sentence| {
                            let t = map(&s);
                            f(&s, t)
                        };
                        let mut r = Reader {
                            fi: chunk.fi,
                            path: &self.files[chunk.fi],
                            report: &mut part,
                            f: &mut g,
                        };
                        let flow = r.fewrel_from(cap, from)?;
                        report.absorb(part);
                        if flow.is_break() {
                            return Ok(());
                        }
                    }
                }
                Ok(())
            })();
            stop.store(true, Ordering::Relaxed);
            drop(order_rx);
            result
        });
        outcome?;
        Ok(report)
    }
}

/// A chunk of a corpus for a worker: raw lines of a plain text or JSON Lines file, or the
/// pieces of another format that the reading thread cut it into; the worker parses them.
enum Unit {
    Lines {
        fi: usize,
        jsonl: bool,
        buf: Vec<u8>,
        /// Line number and the line's range in `buf`, or its length when over the cap.
        lines: Vec<(usize, std::result::Result<std::ops::Range<usize>, usize>)>,
    },
    Pieces {
        fi: usize,
        pieces: Vec<Piece>,
    },
    /// File `fi` is to be read on the consumer's thread from FewRel example `from` on (the
    /// reading thread met something it does not cut: bad JSON, an over-long example, …).
    Resync {
        fi: usize,
        from: usize,
    },
}

/// One piece of a PubTator, WikiExtractor or FewRel file, in file order.
enum Piece {
    /// What the reading thread skipped before the next piece.
    Report(ReadReport),
    PubTator(PubTatorDoc),
    /// A line of text of a `<doc>` block, anchors not parsed yet.
    Wiki {
        line: usize,
        text: String,
    },
    /// The raw JSON of FewRel example `index` (0-based).
    FewRel {
        index: usize,
        json: Vec<u8>,
    },
}

impl Piece {
    fn bytes(&self) -> usize {
        match self {
            Piece::Report(_) => 0,
            Piece::PubTator(d) => {
                d.bytes
                    + d.title.as_ref().map_or(0, String::len)
                    + d.abstract_.as_ref().map_or(0, String::len)
            }
            Piece::Wiki { text, .. } => text.len(),
            Piece::FewRel { json, .. } => json.len(),
        }
    }
}

/// Sentences of one [`Unit`] in corpus order, each with its `map` result, and the unit's
/// report; `resync` asks the consumer to read file `fi` itself from that FewRel example on.
struct Chunk<T> {
    fi: usize,
    sentences: Vec<(Sentence, T)>,
    report: ReadReport,
    resync: Option<usize>,
}

type ChunkSlot<T> = crossbeam_channel::Sender<Result<Chunk<T>>>;
type OrderSender<T> = crossbeam_channel::Sender<crossbeam_channel::Receiver<Result<Chunk<T>>>>;

/// Lines (or pieces) per unit, and bytes of raw lines (or pieces) per unit.
/// `file:line`, the prefix of reading warnings.
fn file_line(path: &Path, line: usize) -> String {
    format!("{}:{line}", path.display())
}

const UNIT_LINES: usize = 2048;
const UNIT_BYTES: usize = 256 << 10;

impl Unit {
    fn run<T>(self, corpus: &Corpus, cap: usize, map: &dyn Fn(&Sentence) -> T) -> Result<Chunk<T>> {
        let mut report = ReadReport::default();
        let mut out = Vec::new();
        let mut push = |s: Sentence| {
            let t = map(&s);
            out.push((s, t));
            Ok(ControlFlow::Continue(()))
        };
        let (fi, resync) = match self {
            Unit::Resync { fi, from } => (fi, Some(from)),
            Unit::Lines {
                fi,
                jsonl,
                buf,
                lines,
            } => {
                let mut r = Reader {
                    fi,
                    path: &corpus.files[fi],
                    report: &mut report,
                    f: &mut push,
                };
                for (line_no, range) in lines {
                    let line = range.map(|r| &buf[r]);
                    if r.line(line_no, line, jsonl, cap)?.is_break() {
                        break;
                    }
                }
                (fi, None)
            }
            Unit::Pieces { fi, pieces } => {
                let mut r = Reader {
                    fi,
                    path: &corpus.files[fi],
                    report: &mut report,
                    f: &mut push,
                };
                let mut resync = None;
                // (`push` never stops the reading, so the flows returned here are ignored.)
                for piece in pieces {
                    match piece {
                        Piece::Report(part) => r.report.absorb(part),
                        Piece::PubTator(mut doc) => {
                            let _ = r.flush_pubtator(&mut doc)?;
                        }
                        Piece::Wiki { line, text } => {
                            let _ = r.wiki_passage(line, &text)?;
                        }
                        Piece::FewRel { index, json } => {
                            match serde_json::from_slice::<Value>(&json) {
                                Ok(v) => {
                                    let ex = fewrel_example(&v, None);
                                    let _ = r.fewrel_sentence(index, ex)?;
                                }
                                Err(_) => {
                                    resync = Some(index);
                                    break;
                                }
                            }
                        }
                    }
                }
                (fi, resync)
            }
        };
        Ok(Chunk {
            fi,
            sentences: out,
            report,
            resync,
        })
    }
}

/// The reading thread of [`Corpus::for_each_sentence_parallel`]: cuts the corpus into units,
/// sends each to the workers and its result slot to the consumer, in corpus order.
fn frame_units<T>(
    corpus: &Corpus,
    cap: usize,
    stop: &AtomicBool,
    work: &crossbeam_channel::Sender<(Unit, ChunkSlot<T>)>,
    order: &OrderSender<T>,
) {
    // False once the consumer or the workers are gone.
    let send = |unit: Unit| -> bool {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        work.send((unit, tx)).is_ok() && order.send(rx).is_ok()
    };
    let fail = |e: anyhow::Error| {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let _ = tx.send(Err(e));
        let _ = order.send(rx);
    };
    for (fi, path) in corpus.files.iter().enumerate() {
        let format = Format::of(path).unwrap_or(Format::Text);
        if matches!(format, Format::Text | Format::Jsonl) {
            let mut reader = match LineReader::open(path, cap) {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            let new_unit = || Unit::Lines {
                fi,
                jsonl: format == Format::Jsonl,
                buf: Vec::with_capacity(UNIT_BYTES + 4096),
                lines: Vec::with_capacity(UNIT_LINES),
            };
            let mut unit = new_unit();
            loop {
                let Unit::Lines { buf, lines, .. } = &mut unit else {
                    unreachable!("a unit of lines")
                };
                match reader.next_capped() {
                    Err(e) => return fail(e),
                    Ok(None) => break,
                    Ok(Some((line_no, line))) => {
                        let range = line.map(|b| {
                            let at = buf.len();
                            buf.extend_from_slice(b);
                            at..buf.len()
                        });
                        lines.push((line_no, range));
                        if lines.len() >= UNIT_LINES || buf.len() >= UNIT_BYTES {
                            if !send(std::mem::replace(&mut unit, new_unit())) {
                                return;
                            }
                        }
                    }
                }
            }
            if !send(unit) {
                return;
            }
            continue;
        }
        // Pieces go out in units of about UNIT_LINES pieces or UNIT_BYTES bytes.
        let mut pieces: Vec<Piece> = Vec::new();
        let mut bytes = 0usize;
        let mut gone = false;
        let mut add = |piece: Piece, pieces: &mut Vec<Piece>, gone: &mut bool| -> bool {
            bytes += piece.bytes();
            pieces.push(piece);
            if pieces.len() >= UNIT_LINES || bytes >= UNIT_BYTES {
                bytes = 0;
                let unit = Unit::Pieces {
                    fi,
                    pieces: std::mem::take(pieces),
                };
                if !send(unit) {
                    *gone = true;
                }
            }
            !*gone
        };
        let outcome = if format == Format::FewRel {
            let framed = frame_fewrel(path, cap, &mut |index, json| {
                add(Piece::FewRel { index, json }, &mut pieces, &mut gone)
            });
            match framed {
                Framed::All => Ok(()),
                Framed::Gone => return,
                Framed::From(from) => {
                    if !pieces.is_empty() {
                        let pieces = std::mem::take(&mut pieces);
                        if !send(Unit::Pieces { fi, pieces }) {
                            return;
                        }
                    }
                    if !send(Unit::Resync { fi, from }) {
                        return;
                    }
                    continue;
                }
            }
        } else {
            // The reading thread follows the document structure (and reports what it skips
            // there); the workers turn documents and lines into sentences.
            let mut report = ReadReport::default();
            let mut never = |_: Sentence| -> Result<ControlFlow<()>> {
                unreachable!("sentences are made on the workers")
            };
            let mut r = Reader {
                fi,
                path,
                report: &mut report,
                f: &mut never,
            };
            let flow = |keep: bool| {
                Ok(if keep {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                })
            };
            let read = if format == Format::PubTator {
                r.pubtator_docs(cap, |r, doc| {
                    let doc = std::mem::take(doc);
                    if doc.pmid.is_none() {
                        return flow(true);
                    }
                    hand_on_report(r.report, &mut pieces);
                    flow(add(Piece::PubTator(doc), &mut pieces, &mut gone))
                })
            } else {
                r.wiki_lines(cap, |r, line, text| {
                    hand_on_report(r.report, &mut pieces);
                    let text = text.to_string();
                    flow(add(Piece::Wiki { line, text }, &mut pieces, &mut gone))
                })
            };
            if read.is_ok() {
                hand_on_report(&mut report, &mut pieces);
            }
            read.map(|_| ())
        };
        if gone {
            return;
        }
        if !pieces.is_empty() && !send(Unit::Pieces { fi, pieces }) {
            return;
        }
        if let Err(e) = outcome {
            return fail(e);
        }
    }
}

/// Moves what the reading thread has reported so far (warnings, counts) into the stream of
/// pieces, where it is merged in order with the workers' results.
fn hand_on_report(report: &mut ReadReport, pieces: &mut Vec<Piece>) {
    if *report != ReadReport::default() {
        pieces.push(Piece::Report(std::mem::take(report)));
    }
}

/// How far [`frame_fewrel`] got.
enum Framed {
    /// Every example was handed on.
    All,
    /// The receiver is gone.
    Gone,
    /// Examples from this one on (0-based) were not handed on.
    From(usize),
}

/// JSON nesting deeper than this inside an example is left to the sequential reader (whose
/// parser counts the levels above the example too).
const FEWREL_MAX_DEPTH: usize = 100;

/// Cuts a FewRel-style file (a list of examples, or an object of relation → list) into the
/// raw JSON of its examples, handing each with its number to `example` (which returns false
/// to stop). Only the structure around the examples is checked here; the workers parse the
/// examples. On anything else — bad JSON around or between examples, an example near the
/// size limit, a read error — it stops and says from which example the file is to be read by
/// the sequential reader, which then gives the same sentences and errors as always.
fn frame_fewrel(
    path: &Path,
    cap: usize,
    example: &mut dyn FnMut(usize, Vec<u8>) -> bool,
) -> Framed {
    let Ok(inner) = open_reader(path) else {
        return Framed::From(0);
    };
    let mut src = JsonBytes {
        inner,
        since: 0,
        failed: false,
    };
    let mut index = 0usize;
    // `None` when the file is to be read sequentially from `index` on.
    let mut list = |src: &mut JsonBytes, index: &mut usize| -> Option<bool> {
        // After `[`.
        src.skip_ws();
        if src.peek()? == b']' {
            src.bump();
            return Some(true);
        }
        loop {
            let json = src.value(cap)?;
            // The sequential reader refuses examples (with what precedes them) over the cap.
            if src.since.saturating_add(64) > cap {
                return None;
            }
            src.since = 0;
            if !example(*index, json) {
                return Some(false);
            }
            *index += 1;
            if src.after_item(b']')? {
                return Some(true);
            }
        }
    };
    let framed = (|| -> Option<bool> {
        src.skip_ws();
        match src.peek()? {
            b'[' => {
                src.bump();
                if !list(&mut src, &mut index)? {
                    return Some(false);
                }
            }
            b'{' => {
                src.bump();
                src.skip_ws();
                if src.peek()? == b'}' {
                    src.bump();
                } else {
                    loop {
                        if src.peek()? != b'"' {
                            return None;
                        }
                        let key = src.value(cap)?;
                        serde_json::from_slice::<String>(&key).ok()?;
                        src.skip_ws();
                        if src.peek()? != b':' {
                            return None;
                        }
                        src.bump();
                        src.skip_ws();
                        if src.peek()? != b'[' {
                            return None;
                        }
                        src.bump();
                        if !list(&mut src, &mut index)? {
                            return Some(false);
                        }
                        if src.after_item(b'}')? {
                            break;
                        }
                    }
                }
            }
            _ => return None,
        }
        src.skip_ws();
        // Trailing data (or a read error) is for the sequential reader to report.
        if src.peek().is_some() || src.failed {
            return None;
        }
        Some(true)
    })();
    match framed {
        Some(true) => Framed::All,
        Some(false) => Framed::Gone,
        None => Framed::From(index),
    }
}

/// Bytes of a JSON file for [`frame_fewrel`]; `since` counts bytes consumed since the last
/// example, `failed` notes a read error (which then reads as the end).
struct JsonBytes {
    inner: Box<dyn BufRead>,
    since: usize,
    failed: bool,
}

impl JsonBytes {
    /// After an item of a list or object: `Some(true)` past `close`, `Some(false)` past a
    /// `,` (and the space after it), `None` on anything else.
    fn after_item(&mut self, close: u8) -> Option<bool> {
        self.skip_ws();
        match self.peek()? {
            b',' => {
                self.bump();
                self.skip_ws();
                Some(false)
            }
            c if c == close => {
                self.bump();
                Some(true)
            }
            _ => None,
        }
    }

    fn buf(&mut self) -> &[u8] {
        if self.failed {
            return &[];
        }
        loop {
            match self.inner.fill_buf() {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.failed = true;
                    return &[];
                }
            }
        }
        self.inner.fill_buf().unwrap_or(&[])
    }

    fn peek(&mut self) -> Option<u8> {
        self.buf().first().copied()
    }

    fn bump(&mut self) {
        self.inner.consume(1);
        self.since += 1;
    }

    fn skip_ws(&mut self) {
        loop {
            let buf = self.buf();
            let n = buf
                .iter()
                .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(buf.len());
            let end = n < buf.len() || buf.is_empty();
            self.inner.consume(n);
            self.since = self.since.saturating_add(n);
            if end {
                return;
            }
        }
    }

    /// The raw bytes of the JSON value that starts here: an object or array up to its closing
    /// bracket, a string up to its closing quote, anything else up to the next `,`, `]`, `}`
    /// or whitespace. Brackets and strings are followed, not checked (the parser that gets
    /// the bytes checks them). `None` at the end of the file, for an empty value, nesting
    /// deeper than [`FEWREL_MAX_DEPTH`] or more than `cap` bytes.
    fn value(&mut self, cap: usize) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let (mut depth, mut in_str, mut esc) = (0usize, false, false);
        loop {
            let buf = self.buf();
            if buf.is_empty() {
                return None;
            }
            let mut end = None;
            for (i, &b) in buf.iter().enumerate() {
                if in_str {
                    if esc {
                        esc = false;
                    } else if b == b'\\' {
                        esc = true;
                    } else if b == b'"' {
                        in_str = false;
                        if depth == 0 {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    continue;
                }
                match b {
                    b'"' => in_str = true,
                    b'{' | b'[' => {
                        depth += 1;
                        if depth > FEWREL_MAX_DEPTH {
                            return None;
                        }
                    }
                    b'}' | b']' if depth == 0 => {
                        end = Some(i);
                        break;
                    }
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    b',' | b' ' | b'\t' | b'\n' | b'\r' if depth == 0 => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let n = end.unwrap_or(buf.len());
            out.extend_from_slice(&buf[..n]);
            self.inner.consume(n);
            self.since = self.since.saturating_add(n);
            if out.len() > cap {
                return None;
            }
            if end.is_some() {
                return (!out.is_empty()).then_some(out);
            }
        }
    }
}

use crate::outpath::kind_of;

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

/// Opens a regular file, decompressing `.gz`.
pub fn open_reader(path: &Path) -> Result<Box<dyn BufRead>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        bail!(
            "{} is {}; only regular files are read",
            path.display(),
            kind_of(&meta)
        );
    }
    if path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.eq_ignore_ascii_case("gz"))
        == Some(true)
    {
        Ok(Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(
            file,
        ))))
    } else {
        Ok(Box::new(BufReader::new(file)))
    }
}

/// The whole (decompressed) content of a file, refused past `limit` bytes.
pub fn read_maybe_gz(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    open_reader(path)?
        .take(limit + 1)
        .read_to_end(&mut out)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if out.len() as u64 > limit {
        bail!(
            "{} is larger than the limit of {limit} bytes (after decompression)",
            path.display()
        );
    }
    Ok(out)
}

/// Reads lines with a hard cap: a longer line is skipped without being buffered.
pub struct LineReader {
    inner: Box<dyn BufRead>,
    cap: usize,
    buf: Vec<u8>,
    /// 1-based number of the line last returned.
    pub line_no: usize,
    path: PathBuf,
}

/// One line: its 1-based number and its bytes (without the line end), or its length in bytes
/// when it was longer than the cap.
pub type CappedLine<'a> = (usize, std::result::Result<&'a [u8], usize>);

impl LineReader {
    pub fn open(path: &Path, cap: usize) -> Result<Self> {
        Ok(LineReader {
            inner: open_reader(path)?,
            cap,
            buf: Vec::new(),
            line_no: 0,
            path: path.to_path_buf(),
        })
    }

    /// The next line, `None` at the end.
    pub fn next_capped(&mut self) -> Result<Option<CappedLine<'_>>> {
        self.buf.clear();
        let mut total = 0usize;
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "{}:{}: read error",
                        self.path.display(),
                        self.line_no + 1
                    )))
                }
            };
            if avail.is_empty() {
                if total == 0 {
                    return Ok(None);
                }
                break;
            }
            let (len, done) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (avail.len(), false),
            };
            if total + len <= self.cap.saturating_add(1) {
                self.buf.extend_from_slice(&avail[..len]);
            }
            total = total.saturating_add(len);
            self.inner.consume(len);
            if done {
                break;
            }
        }
        self.line_no += 1;
        if total > self.cap {
            return Ok(Some((self.line_no, Err(total))));
        }
        let mut end = self.buf.len();
        while end > 0 && matches!(self.buf[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        Ok(Some((self.line_no, Ok(&self.buf[..end]))))
    }

    /// The next line that is within the cap (over-long ones are skipped silently).
    fn next_line(&mut self) -> Result<Option<&[u8]>> {
        loop {
            match self.next_capped()? {
                None => return Ok(None),
                Some((_, Err(_))) => continue,
                Some((_, Ok(_))) => break,
            }
        }
        let mut end = self.buf.len();
        while end > 0 && matches!(self.buf[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        Ok(Some(&self.buf[..end]))
    }
}

struct Reader<'a, F> {
    fi: usize,
    path: &'a Path,
    report: &'a mut ReadReport,
    f: &'a mut F,
}

impl<F: FnMut(Sentence) -> Result<ControlFlow<()>>> Reader<'_, F> {
    fn at(&self, line: usize) -> String {
        file_line(self.path, line)
    }

    /// Splits a passage (links in byte offsets, sorted, disjoint) into sentences and emits them.
    fn emit_passage(&mut self, line: usize, text: &str, links: &[Link]) -> Result<ControlFlow<()>> {
        self.report.links += links.len();
        for (index, (a, b)) in split_sentences_around(text, links).into_iter().enumerate() {
            let links = links
                .iter()
                .filter(|l| l.start >= a && l.end <= b)
                .map(|l| Link {
                    start: l.start - a,
                    end: l.end - a,
                    id: l.id.clone(),
                })
                .collect();
            let s = Sentence {
                file: self.fi,
                line,
                index,
                text: text[a..b].to_string(),
                links,
            };
            self.report.sentences += 1;
            if (self.f)(s)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Reads the whole file in its format.
    fn file(&mut self, cap: usize) -> Result<ControlFlow<()>> {
        match Format::of(self.path).unwrap_or(Format::Text) {
            Format::Text | Format::Jsonl => self.lines(cap),
            Format::FewRel => self.fewrel(cap),
            Format::PubTator => self.pubtator(cap),
            Format::Wiki => self.wiki(cap),
        }
    }

    /// A line as text; `None` when it was skipped (longer than the cap, or not UTF-8: reported).
    fn text_of<'r>(
        &mut self,
        line_no: usize,
        line: std::result::Result<&'r [u8], usize>,
        cap: usize,
    ) -> Option<&'r str> {
        match line {
            Err(len) => {
                self.too_long(line_no, len, cap);
                None
            }
            Ok(b) => match std::str::from_utf8(b) {
                Ok(t) => Some(t),
                Err(_) => {
                    let at = self.at(line_no);
                    self.report.warn(format!("{at}: not valid UTF-8"));
                    None
                }
            },
        }
    }

    /// The next line as text, with its number; `None` as the text when the line was skipped.
    fn next_text<'r>(
        &mut self,
        reader: &'r mut LineReader,
        cap: usize,
    ) -> Result<Option<(usize, Option<&'r str>)>> {
        let Some((line_no, line)) = reader.next_capped()? else {
            return Ok(None);
        };
        Ok(Some((line_no, self.text_of(line_no, line, cap))))
    }

    fn too_long(&mut self, line_no: usize, len: usize, cap: usize) {
        let at = self.at(line_no);
        self.report.warn(format!(
            "{at}: line of {len} bytes is longer than the limit of {cap} bytes"
        ));
    }

    /// `.txt` and `.jsonl`.
    fn lines(&mut self, cap: usize) -> Result<ControlFlow<()>> {
        let jsonl = Format::of(self.path) == Some(Format::Jsonl);
        let mut reader = LineReader::open(self.path, cap)?;
        while let Some((line_no, line)) = reader.next_capped()? {
            if self.line(line_no, line, jsonl, cap)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// One line of a `.txt` or `.jsonl` file (its bytes, or its length when over the cap).
    fn line(
        &mut self,
        line_no: usize,
        line: std::result::Result<&[u8], usize>,
        jsonl: bool,
        cap: usize,
    ) -> Result<ControlFlow<()>> {
        let Some(line) = self.text_of(line_no, line, cap) else {
            return Ok(ControlFlow::Continue(()));
        };
        if !jsonl {
            return self.emit_passage(line_no, line, &[]);
        }
        if line.trim().is_empty() {
            return Ok(ControlFlow::Continue(()));
        }
        match self.jsonl_record(line_no, line) {
            Some((text, links)) => self.emit_passage(line_no, &text, &links),
            None => Ok(ControlFlow::Continue(())),
        }
    }

    fn jsonl_record(&mut self, line_no: usize, line: &str) -> Option<(String, Vec<Link>)> {
        // `file:line`, made only for a warning (most lines have none).
        let path = self.path;
        let at = move || file_line(path, line_no);
        let v = match serde_json::from_str::<Value>(line) {
            Ok(v) => v,
            Err(e) => {
                self.report.warn(format!("{}: not valid JSON ({e})", at()));
                return None;
            }
        };
        let Some(text) = v.get("text").and_then(Value::as_str) else {
            self.report
                .warn(format!("{}: no string field `text`", at()));
            return None;
        };
        let mut spans = Vec::new();
        match v.get("links") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                for (i, l) in list.iter().enumerate() {
                    let num = |k: &str| l.get(k).and_then(Value::as_u64);
                    let id = l.get("id").and_then(Value::as_str).map(str::trim);
                    match (num("start"), num("end"), id) {
                        (Some(s), Some(e), Some(id)) if !id.is_empty() => {
                            spans.push((s as usize, e as usize, id.to_string(), i))
                        }
                        _ => self.report.warn_link(format!(
                            "{}: links[{i}]: expected {{\"start\": int, \"end\": int, \"id\": non-empty string}}",
                            at()
                        )),
                    }
                }
            }
            Some(_) => {
                self.report
                    .warn(format!("{}: field `links` is not a list of links", at()));
                return None;
            }
        }
        let links = self.char_spans_to_links(text, spans, |i| format!("{}: links[{i}]", at()));
        Some((text.to_string(), links))
    }

    /// Converts code-point spans `(start, end, id, l)` to byte links, dropping (with a
    /// warning that starts with `label(l)`, e.g. `file:line: links[2]`, made only then) spans
    /// that are empty, outside the text, or overlap an earlier kept span.
    fn char_spans_to_links<L>(
        &mut self,
        text: &str,
        mut spans: Vec<(usize, usize, String, L)>,
        label: impl Fn(&L) -> String,
    ) -> Vec<Link> {
        // The byte offset of every character, and the text's length; ASCII needs no table.
        let ascii = text.is_ascii();
        let bytes_at: Vec<usize> = if ascii {
            Vec::new()
        } else {
            let mut b: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
            b.push(text.len());
            b
        };
        let n_chars = if ascii {
            text.len()
        } else {
            bytes_at.len() - 1
        };
        let byte = |c: usize| if ascii { c } else { bytes_at[c] };
        spans.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut out: Vec<Link> = Vec::with_capacity(spans.len());
        for (s, e, id, l) in spans {
            if s >= e || e > n_chars {
                self.report.warn_link(format!(
                    "{} ({id}): span {s}..{e} is empty or outside the text of {n_chars} characters",
                    label(&l)
                ));
                continue;
            }
            let (bs, be) = (byte(s), byte(e));
            if let Some(prev) = out.last() {
                if bs < prev.end {
                    if bs == prev.start && be == prev.end && id == prev.id {
                        continue;
                    }
                    self.report.warn_link(format!(
                        "{} ({id}): span {s}..{e} overlaps the link to {}; left out",
                        label(&l),
                        prev.id
                    ));
                    continue;
                }
            }
            out.push(Link {
                start: bs,
                end: be,
                id,
            });
        }
        out
    }

    /// FewRel-style `.json`, parsed one example at a time.
    fn fewrel(&mut self, cap: usize) -> Result<ControlFlow<()>> {
        self.fewrel_from(cap, 0)
    }

    /// The examples of a FewRel-style file from the `from`-th (0-based) on; the ones before
    /// are parsed and passed over.
    fn fewrel_from(&mut self, cap: usize, from: usize) -> Result<ControlFlow<()>> {
        let mut flow = ControlFlow::Continue(());
        for_each_fewrel_example(self.path, cap, |i, ex| {
            if i < from {
                return Ok(ControlFlow::Continue(()));
            }
            flow = self.fewrel_sentence(i, ex)?;
            Ok(flow)
        })?;
        Ok(flow)
    }

    /// The sentence of FewRel example `i` (0-based).
    fn fewrel_sentence(&mut self, i: usize, ex: FewRelExample) -> Result<ControlFlow<()>> {
        let line = i + 1;
        let at = self.at(line);
        if ex.tokens.is_empty() {
            self.report.warn(format!("{at}: example has no tokens"));
            return Ok(ControlFlow::Continue(()));
        }
        let text = ex.tokens.join(" ");
        let mut starts = Vec::with_capacity(ex.tokens.len());
        let mut pos = 0usize;
        for t in &ex.tokens {
            starts.push(pos);
            pos += t.chars().count() + 1;
        }
        let mut spans = Vec::new();
        for (slot, ent) in [("h", &ex.head), ("t", &ex.tail)] {
            let Some(ent) = ent else { continue };
            if ent.id.is_empty() {
                continue;
            }
            for group in &ent.positions {
                let (Some(&lo), Some(&hi)) = (group.iter().min(), group.iter().max()) else {
                    continue;
                };
                if hi >= ex.tokens.len() {
                    self.report.warn_link(format!(
                        "{at}: `{slot}` ({}): token position {hi} is outside the {} tokens",
                        ent.id,
                        ex.tokens.len()
                    ));
                    continue;
                }
                let end = starts[hi] + ex.tokens[hi].chars().count();
                spans.push((starts[lo], end, ent.id.clone(), format!("{at}: `{slot}`")));
            }
        }
        let links = self.char_spans_to_links(&text, spans, String::clone);
        self.report.sentences += 1;
        self.report.links += links.len();
        let s = Sentence {
            file: self.fi,
            line,
            index: 0,
            text,
            links,
        };
        (self.f)(s)
    }

    /// PubTator: documents of title, abstract and annotation lines, separated by blank lines.
    fn pubtator(&mut self, cap: usize) -> Result<ControlFlow<()>> {
        self.pubtator_docs(cap, |r, doc| r.flush_pubtator(doc))
    }

    /// Reads the lines of a PubTator file into documents, handing each (possibly empty) to
    /// `done` where [`Reader::flush_pubtator`] turns it into sentences.
    fn pubtator_docs(
        &mut self,
        cap: usize,
        mut done: impl FnMut(&mut Self, &mut PubTatorDoc) -> Result<ControlFlow<()>>,
    ) -> Result<ControlFlow<()>> {
        let mut reader = LineReader::open(self.path, cap)?;
        let mut doc = PubTatorDoc::default();
        loop {
            let Some((line_no, next)) = self.next_text(&mut reader, cap)? else {
                break;
            };
            let Some(line) = next.map(str::to_string) else {
                continue;
            };
            if line.trim().is_empty() {
                if done(self, &mut doc)?.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
                continue;
            }
            if let Some((pmid, kind, text)) = split_pubtator_text(&line) {
                let new_doc =
                    doc.pmid.as_deref() != Some(pmid) || (kind == "t" && doc.title.is_some());
                if new_doc && done(self, &mut doc)?.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
                if doc.pmid.is_none() {
                    doc.pmid = Some(pmid.to_string());
                    doc.line = line_no;
                }
                let slot = if kind == "t" {
                    &mut doc.title
                } else {
                    &mut doc.abstract_
                };
                if slot.is_some() {
                    let at = self.at(line_no);
                    self.report
                        .warn(format!("{at}: second `|{kind}|` line for {pmid}"));
                    continue;
                }
                *slot = Some(text.to_string());
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            let at = self.at(line_no);
            if cols.len() == 4 {
                continue; // a relation line (`PMID<TAB>CID<TAB>id<TAB>id`)
            }
            if cols.len() < 5 {
                self.report.warn(format!(
                    "{at}: not a PubTator line (expected `PMID|t|title`, `PMID|a|abstract` or PMID<TAB>start<TAB>end<TAB>mention<TAB>type<TAB>id)"
                ));
                continue;
            }
            if doc.pmid.as_deref() != Some(cols[0]) {
                self.report.warn(format!(
                    "{at}: annotation for document {} outside that document's block",
                    cols[0]
                ));
                continue;
            }
            let (Ok(s), Ok(e)) = (
                cols[1].trim().parse::<usize>(),
                cols[2].trim().parse::<usize>(),
            ) else {
                self.report.warn(format!(
                    "{at}: start and end offsets must be non-negative integers, got `{}` and `{}`",
                    cols[1], cols[2]
                ));
                continue;
            };
            let id = cols.get(5).map(|s| s.trim()).unwrap_or("");
            if id.is_empty() || id == "-" {
                continue;
            }
            doc.bytes += line.len();
            if doc.bytes > cap.saturating_mul(4) {
                if !doc.overflow {
                    self.report.warn(format!(
                        "{at}: document {} has more than {} bytes of annotations; the rest is skipped",
                        cols[0],
                        cap.saturating_mul(4)
                    ));
                }
                doc.overflow = true;
                continue;
            }
            doc.annotations
                .push((s, e, id.to_string(), cols[3].to_string(), line_no));
        }
        done(self, &mut doc)
    }

    fn flush_pubtator(&mut self, doc: &mut PubTatorDoc) -> Result<ControlFlow<()>> {
        let d = std::mem::take(doc);
        let Some(pmid) = d.pmid else {
            return Ok(ControlFlow::Continue(()));
        };
        let passage = match (d.title, d.abstract_) {
            (Some(t), Some(a)) => format!("{t} {a}"),
            (Some(t), None) => t,
            (None, Some(a)) => a,
            (None, None) => {
                let at = self.at(d.line);
                self.report
                    .warn(format!("{at}: document {pmid} has no `|t|` or `|a|` line"));
                return Ok(ControlFlow::Continue(()));
            }
        };
        let chars: Vec<char> = passage.chars().collect();
        let mut spans = Vec::new();
        for (s, e, id, mention, line_no) in d.annotations {
            let at = self.at(line_no);
            if s >= e || e > chars.len() {
                self.report.warn_link(format!(
                    "{at}: span {s}..{e} is empty or outside the document's {} characters (title + \" \" + abstract)",
                    chars.len()
                ));
                continue;
            }
            let got: String = chars[s..e].iter().collect();
            if got != mention {
                self.report.warn_link(format!(
                    "{at}: span {s}..{e} reads `{got}`, not the annotated mention `{mention}`; left out"
                ));
                continue;
            }
            spans.push((s, e, id, at));
        }
        let links = self.char_spans_to_links(&passage, spans, String::clone);
        self.emit_passage(d.line, &passage, &links)
    }

    /// WikiExtractor `--links` output.
    fn wiki(&mut self, cap: usize) -> Result<ControlFlow<()>> {
        self.wiki_lines(cap, |r, line_no, line| r.wiki_passage(line_no, line))
    }

    /// One line of text of a WikiExtractor document: anchors become links.
    fn wiki_passage(&mut self, line_no: usize, line: &str) -> Result<ControlFlow<()>> {
        let at = self.at(line_no);
        let (text, links) = parse_anchors(line, &at, self.report);
        self.emit_passage(line_no, &text, &links)
    }

    /// Reads the `<doc>` blocks of a WikiExtractor file, handing each line of text (not the
    /// repeated title) to `passage`.
    fn wiki_lines(
        &mut self,
        cap: usize,
        mut passage: impl FnMut(&mut Self, usize, &str) -> Result<ControlFlow<()>>,
    ) -> Result<ControlFlow<()>> {
        let mut reader = LineReader::open(self.path, cap)?;
        let mut in_doc = false;
        let mut title: Option<String> = None;
        while let Some((line_no, line)) = self.next_text(&mut reader, cap)? {
            let Some(line) = line else {
                continue;
            };
            let trimmed = line.trim();
            if trimmed.starts_with("<doc ") || trimmed == "<doc>" {
                in_doc = true;
                title = attribute(trimmed, "title").map(|t| decode_entities(&t));
                continue;
            }
            if trimmed == "</doc>" {
                in_doc = false;
                continue;
            }
            if trimmed.is_empty() {
                continue;
            }
            if !in_doc {
                let at = self.at(line_no);
                self.report
                    .warn(format!("{at}: text outside a <doc> block"));
                continue;
            }
            if let Some(t) = title.take() {
                if trimmed == t {
                    continue; // WikiExtractor repeats the title as the first line
                }
            }
            if passage(self, line_no, line)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}

#[derive(Default)]
struct PubTatorDoc {
    pmid: Option<String>,
    line: usize,
    title: Option<String>,
    abstract_: Option<String>,
    /// (start, end, id, mention, line) in code points.
    annotations: Vec<(usize, usize, String, String, usize)>,
    bytes: usize,
    overflow: bool,
}

/// `PMID|t|text` or `PMID|a|text`.
fn split_pubtator_text(line: &str) -> Option<(&str, &str, &str)> {
    let (pmid, rest) = line.split_once('|')?;
    let (kind, text) = rest.split_once('|')?;
    if pmid.is_empty() || pmid.contains('\t') || !matches!(kind, "t" | "a") {
        return None;
    }
    Some((pmid, kind, text))
}

/// The value of `name="…"` in a tag.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let key = format!("{name}=\"");
    let mut from = 0;
    while let Some(i) = tag[from..].find(&key) {
        let i = from + i;
        let before = tag[..i].chars().next_back();
        if before.is_none_or(char::is_whitespace) {
            let rest = &tag[i + key.len()..];
            return rest.find('"').map(|j| rest[..j].to_string());
        }
        from = i + key.len();
    }
    None
}

/// `&amp;` `&lt;` `&gt;` `&quot;` `&#39;` `&apos;` and numeric character references.
pub fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest[..rest.len().min(12)].find(';');
        let decoded = end.and_then(|e| {
            let name = &rest[1..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Percent-decodes a URL path (invalid escapes are kept as written; bytes as UTF-8, lossy).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The Wikipedia page an `href` names: URL-decoded, `_` as space, without a `#section`, first
/// letter upper-cased. `None` for links to a section of the same page or to other sites.
pub fn wiki_target(href: &str) -> Option<String> {
    let t = percent_decode(&decode_entities(href)).replace('_', " ");
    if t.contains("://") || t.starts_with("//") {
        return None;
    }
    let t = t.split('#').next().unwrap_or("").trim();
    let mut c = t.chars();
    let first = c.next()?;
    Some(first.to_uppercase().chain(c).collect())
}

/// Removes `<a href="…">…</a>` tags from a WikiExtractor line, returning the plain text and
/// byte links into it. An anchor with no `href`, or a tag left open, is reported; its text is
/// kept without a link.
fn parse_anchors(line: &str, at: &str, report: &mut ReadReport) -> (String, Vec<Link>) {
    let mut text = String::with_capacity(line.len());
    let mut links = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("<a") {
        let after = rest[i + 2..].chars().next();
        if !matches!(after, Some(c) if c == '>' || c.is_whitespace()) {
            text.push_str(&decode_entities(&rest[..i + 2]));
            rest = &rest[i + 2..];
            continue;
        }
        text.push_str(&decode_entities(&rest[..i]));
        let tag_rest = &rest[i..];
        let Some(close) = tag_rest.find('>') else {
            report.warn_link(format!(
                "{at}: `<a` tag is not closed with `>`; kept as text"
            ));
            text.push_str(&decode_entities(tag_rest));
            rest = "";
            break;
        };
        let tag = &tag_rest[..=close];
        let body_and_more = &tag_rest[close + 1..];
        let Some(end) = body_and_more.find("</a>") else {
            report.warn_link(format!("{at}: `{tag}` has no closing `</a>`; kept as text"));
            text.push_str(&decode_entities(body_and_more));
            rest = "";
            break;
        };
        let anchor = decode_entities(&body_and_more[..end]);
        let start = text.len();
        text.push_str(&anchor);
        match attribute(tag, "href") {
            None => report.warn_link(format!(
                "{at}: `{tag}` has no href; its text is kept without a link"
            )),
            Some(h) => {
                if let Some(id) = wiki_target(&h) {
                    // Anchors are trimmed of surrounding spaces so that the span covers the words.
                    let lead = anchor.len() - anchor.trim_start().len();
                    let trail = anchor.len() - anchor.trim_end().len();
                    if anchor.trim().is_empty() {
                        report.warn_link(format!("{at}: `{tag}` has an empty anchor text"));
                    } else {
                        links.push(Link {
                            start: start + lead,
                            end: text.len() - trail,
                            id,
                        });
                    }
                }
            }
        }
        rest = &body_and_more[end + 4..];
    }
    text.push_str(&decode_entities(rest));
    (text, links)
}

/// One FewRel example: tokens, the linked head/tail entities and the relation it is filed
/// under (for files that map relation → examples).
#[derive(Debug, Clone, Default)]
pub struct FewRelExample {
    pub tokens: Vec<String>,
    pub head: Option<FewRelEntity>,
    pub tail: Option<FewRelEntity>,
    pub relation: Option<String>,
}

/// `[name, id, [[token positions], …]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FewRelEntity {
    pub name: String,
    pub id: String,
    pub positions: Vec<Vec<usize>>,
}

fn fewrel_entity(v: Option<&Value>) -> Option<FewRelEntity> {
    let a = v?.as_array()?;
    Some(FewRelEntity {
        name: a.first()?.as_str()?.trim().to_string(),
        id: a.get(1)?.as_str()?.trim().to_string(),
        positions: a
            .get(2)
            .and_then(Value::as_array)
            .map(|gs| {
                gs.iter()
                    .filter_map(Value::as_array)
                    .map(|g| {
                        g.iter()
                            .filter_map(Value::as_u64)
                            .map(|x| x as usize)
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default(),
    })
}

fn fewrel_example(v: &Value, relation: Option<&str>) -> FewRelExample {
    FewRelExample {
        tokens: v
            .get("tokens")
            .and_then(Value::as_array)
            .map(|t| {
                t.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        head: fewrel_entity(v.get("h")),
        tail: fewrel_entity(v.get("t")),
        relation: relation.map(str::to_string),
    }
}

/// A reader that fails once more than `cap` bytes are read since the counter was last reset,
/// so that one FewRel example can never take more than about `cap` bytes of memory.
struct CappedReader<R> {
    inner: R,
    since: Rc<Cell<usize>>,
    cap: usize,
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.since.get() > self.cap {
            return Err(std::io::Error::other(format!(
                "an example is longer than the limit of {} bytes",
                self.cap
            )));
        }
        let n = self.inner.read(buf)?;
        self.since.set(self.since.get() + n);
        Ok(n)
    }
}

type ExampleFn<'a> = dyn FnMut(usize, FewRelExample) -> Result<ControlFlow<()>> + 'a;

struct Examples<'a, 'f> {
    f: &'a mut ExampleFn<'f>,
    since: Rc<Cell<usize>>,
    count: &'a mut usize,
    error: &'a mut Option<anyhow::Error>,
    stopped: &'a mut bool,
    relation: Option<String>,
}

impl Examples<'_, '_> {
    fn one(&mut self, v: Value) -> bool {
        self.since.set(0);
        if *self.stopped {
            return false;
        }
        let i = *self.count;
        *self.count += 1;
        match (self.f)(i, fewrel_example(&v, self.relation.as_deref())) {
            Ok(ControlFlow::Continue(())) => true,
            Ok(ControlFlow::Break(())) => {
                *self.stopped = true;
                false
            }
            Err(e) => {
                *self.error = Some(e);
                *self.stopped = true;
                false
            }
        }
    }
}

impl<'de> Visitor<'de> for Examples<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a FewRel list of examples or an object of relation → examples")
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(v) = seq.next_element::<Value>()? {
            if !self.one(v) {
                // Stops the parser; the caller tells this from a real error by `stopped`.
                return Err(serde::de::Error::custom("stopped"));
            }
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(rel) = map.next_key::<String>()? {
            self.since.set(0);
            let seed = Examples {
                f: &mut *self.f,
                since: self.since.clone(),
                count: &mut *self.count,
                error: &mut *self.error,
                stopped: &mut *self.stopped,
                relation: Some(rel),
            };
            map.next_value_seed(RelationList(seed))?;
        }
        Ok(())
    }
}

/// The value under a relation key: a list of examples (anything else is skipped).
struct RelationList<'a, 'f>(Examples<'a, 'f>);

impl<'de> DeserializeSeed<'de> for RelationList<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        struct V<'a, 'f>(Examples<'a, 'f>);
        impl<'de> Visitor<'de> for V<'_, '_> {
            type Value = ();
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of examples")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
                self.0.visit_seq(seq)
            }
        }
        d.deserialize_seq(V(self.0))
    }
}

/// Streams the examples of a FewRel-style file (a list of examples, or an object mapping
/// relation → list) to `f` with their 0-based number; memory stays within about `cap` bytes per
/// example.
pub fn for_each_fewrel_example(
    path: &Path,
    cap: usize,
    mut f: impl FnMut(usize, FewRelExample) -> Result<ControlFlow<()>>,
) -> Result<()> {
    let since = Rc::new(Cell::new(0));
    let reader = CappedReader {
        inner: open_reader(path)?,
        since: since.clone(),
        cap,
    };
    let mut de = serde_json::Deserializer::from_reader(reader);
    let mut count = 0;
    let mut error = None;
    let mut stopped = false;
    let visitor = Examples {
        f: &mut f,
        since,
        count: &mut count,
        error: &mut error,
        stopped: &mut stopped,
        relation: None,
    };
    let parsed = serde::Deserializer::deserialize_any(&mut de, visitor);
    if let Some(e) = error {
        return Err(e);
    }
    if stopped {
        return Ok(());
    }
    if let Err(e) = parsed {
        if e.is_io() {
            bail!("{}:{}: {e}", path.display(), count + 1);
        }
        bail!("{}:{}: not valid JSON ({e})", path.display(), e.line());
    }
    de.end().map_err(|e| {
        anyhow::anyhow!(
            "{}: trailing data after the JSON value ({e})",
            path.display()
        )
    })?;
    Ok(())
}

/// Reads all examples of a FewRel-style file.
pub fn fewrel_examples(path: &Path) -> Result<Vec<FewRelExample>> {
    let mut out = Vec::new();
    for_each_fewrel_example(path, DEFAULT_MAX_LINE_BYTES, |_, ex| {
        out.push(ex);
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(out)
}

const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "al", "fig",
    "figs", "no", "vol", "approx", "inc", "ltd", "co", "corp", "mt", "u.s", "u.k", "jan", "feb",
    "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "gen", "gov", "sen",
    "rep", "rev", "ref", "eq", "ca",
];

/// Sentences of `text` (byte ranges) that never cut through a link: sentences that a link
/// crosses are joined.
pub fn split_sentences_around(text: &str, links: &[Link]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (a, b) in split_sentences(text) {
        if let Some(last) = out.last_mut() {
            if links
                .iter()
                .any(|l| l.start < last.1 && l.end > last.1.min(a))
            {
                last.1 = b;
                continue;
            }
        }
        out.push((a, b));
    }
    out
}

/// Splits a passage into sentences (byte ranges, trimmed). A sentence ends at `.`, `!` or `?`
/// (plus closing quotes/brackets) followed by whitespace and an upper-case letter, digit or
/// opening quote/bracket, unless the word before is a known abbreviation or a single initial.
pub fn split_sentences(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut start = 0usize;
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        if matches!(c, '.' | '!' | '?') {
            let mut j = i + 1;
            while j < chars.len()
                && matches!(
                    chars[j].1,
                    '.' | '!' | '?' | '"' | '\'' | ')' | ']' | '”' | '’'
                )
            {
                j += 1;
            }
            let mut k = j;
            while k < chars.len() && chars[k].1.is_whitespace() {
                k += 1;
            }
            let boundary = k > j
                && k < chars.len()
                && {
                    let n = chars[k].1;
                    n.is_uppercase()
                        || n.is_ascii_digit()
                        || matches!(n, '"' | '\'' | '(' | '[' | '“' | '‘')
                }
                && !(c == '.' && is_abbreviation(&text[start..pos]));
            if boundary {
                let end = if j < chars.len() {
                    chars[j].0
                } else {
                    text.len()
                };
                push_trimmed(text, start, end, &mut out);
                start = chars[k].0;
                i = k;
                continue;
            }
            i = j;
            continue;
        }
        i += 1;
    }
    push_trimmed(text, start, text.len(), &mut out);
    out
}

fn is_abbreviation(before: &str) -> bool {
    let word = before
        .rsplit(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("");
    let lower = word.to_lowercase();
    (word.chars().count() == 1 && word.chars().all(char::is_uppercase))
        || ABBREVIATIONS.contains(&lower.as_str())
}

fn push_trimmed(text: &str, a: usize, b: usize, out: &mut Vec<(usize, usize)>) {
    let s = &text[a..b];
    let lead = s.len() - s.trim_start().len();
    let trail = s.len() - s.trim_end().len();
    if a + lead < b - trail {
        out.push((a + lead, b - trail));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sentence (with its map result) and the report of a parallel read.
    fn read_all(c: &Corpus, threads: usize) -> (Vec<(Sentence, usize)>, ReadReport) {
        let mut got = Vec::new();
        let report = c
            .for_each_sentence_parallel(
                threads,
                |s| s.text.len() + s.links.len(),
                |s, n| {
                    got.push((s.clone(), n));
                    Ok(ControlFlow::Continue(()))
                },
            )
            .unwrap();
        (got, report)
    }

    #[test]
    fn parallel_reading_gives_the_sequential_sentences_and_report() {
        let d = tempfile::tempdir().unwrap();
        // Several units of lines, with bad lines spread over them (more than 20 warnings, so
        // which ones are kept depends on their order), and files of other formats between.
        let mut jsonl = String::new();
        for i in 0..3 * UNIT_LINES + 17 {
            match i % 97 {
                0 => jsonl.push_str("{not json\n"),
                1 => jsonl.push_str(&format!("{}\n", "x".repeat(300))), // over the cap below
                2 => jsonl.push_str("{\"text\": \"bad link.\", \"links\": [{\"start\": 9, \"end\": 99, \"id\": \"Q\"}]}\n"),
                _ => jsonl.push_str(&format!(
                    "{{\"text\": \"Line {i} names Paris. And a second sentence {i}.\", \"links\": [{{\"start\": 14, \"end\": 19, \"id\": \"Q90\"}}]}}\n"
                )),
            }
        }
        std::fs::write(d.path().join("a.jsonl"), &jsonl).unwrap();
        let text: String = (0..UNIT_LINES + 5)
            .map(|i| format!("Plain line {i}. Two sentences here.\n"))
            .collect();
        std::fs::write(d.path().join("b.txt"), text).unwrap();
        std::fs::write(
            d.path().join("c.wiki"),
            "<doc id=\"1\" title=\"T\">\nT\n<a href=\"Paris\">Paris</a> is big.\n</doc>\nstray\n",
        )
        .unwrap();
        std::fs::write(d.path().join("d.txt"), b"Last file. Its end.\n\xff\xfe\n").unwrap();
        let mut c = Corpus::open(&[d.path().to_path_buf()]).unwrap();
        c.max_line_bytes = 200;
        let mut want = Vec::new();
        let want_report = c
            .for_each_sentence(|s| {
                want.push((s.clone(), s.text.len() + s.links.len()));
                Ok(ControlFlow::Continue(()))
            })
            .unwrap();
        assert!(want.len() > 7 * UNIT_LINES, "{}", want.len());
        assert!(want_report.skipped_lines > 20 && want_report.skipped_links > 20);
        assert_eq!(want_report.warnings.len(), 20);
        for threads in [1, 2, 3, 8] {
            let (got, report) = read_all(&c, threads);
            assert!(got == want, "{threads} threads: other sentences or order");
            assert_eq!(report, want_report, "{threads} threads");
        }
    }

    /// Every sentence and the report (or the error) of a sequential read.
    fn read_seq(c: &Corpus) -> (Vec<(Sentence, usize)>, Result<ReadReport, String>) {
        let mut got = Vec::new();
        let report = c.for_each_sentence(|s| {
            got.push((s.clone(), s.text.len() + s.links.len()));
            Ok(ControlFlow::Continue(()))
        });
        (got, report.map_err(|e| format!("{e:#}")))
    }

    /// The same for a parallel read.
    fn read_par(
        c: &Corpus,
        threads: usize,
    ) -> (Vec<(Sentence, usize)>, Result<ReadReport, String>) {
        let mut got = Vec::new();
        let report = c.for_each_sentence_parallel(
            threads,
            |s| s.text.len() + s.links.len(),
            |s, n| {
                got.push((s.clone(), n));
                Ok(ControlFlow::Continue(()))
            },
        );
        (got, report.map_err(|e| format!("{e:#}")))
    }

    #[test]
    fn linked_formats_read_in_parallel_give_the_sequential_sentences_and_report() {
        let d = tempfile::tempdir().unwrap();
        let n = 2 * UNIT_LINES + 300;
        // PubTator: documents with and without blank lines between them, and bad lines of
        // every kind spread over several units.
        let mut pt = String::new();
        for i in 0..n {
            let title = format!("Aspirin {i} helps.");
            pt.push_str(&format!(
                "{i}|t|{title}\n{i}|a|Then aspirin {i} again. More text.\n"
            ));
            pt.push_str(&format!("{i}\t0\t7\tAspirin\tChemical\tD001241\n"));
            match i % 89 {
                0 => pt.push_str(&format!("{i}\t0\t7\tAspirinX\tChemical\tD1\n")),
                1 => pt.push_str(&format!("{i}\t5\t900\tx\tChemical\tD1\n")),
                2 => pt.push_str("77777\t0\t3\tAsp\tChemical\tD1\n"),
                3 => pt.push_str("garbage line\n"),
                4 => pt.push_str(&format!("{i}|t|second title\n")),
                5 => pt.push_str(&format!("{i}\tCID\tD1\tD2\n")),
                6 => pt.push_str(&format!("{}\n", "y".repeat(400))),
                7 => pt.push_str(&format!("{i}\tx\t7\tAspirin\tChemical\tD1\n")),
                _ => {}
            }
            if i % 3 != 0 {
                pt.push('\n');
            }
        }
        let mut pt = pt.into_bytes();
        pt.extend(b"\xff\xfe\n9|a|only an abstract.\n");
        std::fs::write(d.path().join("a.pubtator"), pt).unwrap();
        // WikiExtractor, with text outside documents and bad anchors.
        let mut wiki = String::new();
        for i in 0..n {
            if i % 40 == 0 {
                wiki.push_str(&format!("<doc id=\"{i}\" title=\"Doc {i}\">\nDoc {i}\n"));
            }
            match i % 97 {
                0 => wiki.push_str("An <a>bare</a> anchor. Second one.\n"),
                1 => wiki.push_str("Open <a href=\"x\">never closed\n"),
                _ => wiki.push_str(&format!(
                    "Line {i} on <a href=\"paris\">Paris</a>. And <a href=\"Lyon%20city\">Lyon</a> too.\n"
                )),
            }
            if i % 40 == 39 {
                wiki.push_str("</doc>\n");
                if i % 400 == 39 {
                    wiki.push_str("stray text\n");
                }
            }
        }
        std::fs::write(d.path().join("b.wiki"), wiki).unwrap();
        // FewRel, as a list and as an object of relation → list.
        let example = |i: usize| match i % 101 {
            0 => serde_json::json!({"tokens": []}),
            1 => serde_json::json!({"tokens": ["A", "b"], "h": ["a", "Q1", [[0, 9]]]}),
            2 => {
                serde_json::json!({"tokens": ["A", "b"], "h": ["a", "Q1", [[0]]], "t": ["ab", "Q2", [[0, 1]]]})
            }
            3 => serde_json::json!(7),
            _ => serde_json::json!({"tokens": ["Ünïcode", "Paris", format!("{i}"), "."],
                "h": ["paris", "Q90", [[1]]], "t": ["n", format!("Q{i}"), [[2]]]}),
        };
        let list: Vec<_> = (0..n).map(example).collect();
        std::fs::write(
            d.path().join("c.json"),
            serde_json::to_string_pretty(&list).unwrap(),
        )
        .unwrap();
        let object = serde_json::json!({
            "P1": (0..n / 2).map(example).collect::<Vec<_>>(),
            "Pé \"2\"": [],
            "P3": (n / 2..n).map(example).collect::<Vec<_>>(),
        });
        std::fs::write(
            d.path().join("d.json"),
            serde_json::to_string(&object).unwrap(),
        )
        .unwrap();
        std::fs::write(d.path().join("e.json"), "  [ ]  ").unwrap();
        let mut c = Corpus::open(&[d.path().to_path_buf()]).unwrap();
        c.max_line_bytes = 300;
        let (want, want_report) = read_seq(&c);
        let want_report = want_report.unwrap();
        assert!(want.len() > 5 * n, "{}", want.len());
        assert!(want_report.skipped_lines > 20 && want_report.skipped_links > 20);
        for threads in [2, 3, 8] {
            let (got, report) = read_par(&c, threads);
            assert!(got == want, "{threads} threads: other sentences or order");
            assert_eq!(report.unwrap(), want_report, "{threads} threads");
        }
        // Each file alone, so that the warnings kept are each format's own.
        for f in &c.files {
            let mut one = Corpus::open(std::slice::from_ref(f)).unwrap();
            one.max_line_bytes = 300;
            let (want, want_report) = read_seq(&one);
            let want_report = want_report.unwrap();
            assert!(
                want_report.warnings.len() == 20 || f.ends_with("e.json"),
                "{f:?}"
            );
            let (got, report) = read_par(&one, 2);
            assert!(got == want, "{f:?}: other sentences or order");
            assert_eq!(report.unwrap(), want_report, "{f:?}");
        }
    }

    #[test]
    fn fewrel_files_the_workers_cannot_cut_read_as_they_do_sequentially() {
        let d = tempfile::tempdir().unwrap();
        let good =
            |i: usize| format!(r#"{{"tokens": ["Paris", "{i}"], "h": ["p", "Q90", [[0]]]}}"#);
        let many = |from: usize, to: usize| (from..to).map(good).collect::<Vec<_>>().join(",\n");
        let n = UNIT_LINES + 50;
        let after = d.path().join("after.txt");
        std::fs::write(&after, "After. The end.\n").unwrap();
        let cases: Vec<(&str, String)> = vec![
            (
                "bad-inside.json",
                format!(
                    "[{}, {{\"tokens\": [tru]}}, {}]",
                    many(0, n),
                    many(n, n + 9)
                ),
            ),
            (
                "bad-between.json",
                format!("[{} {}]", many(0, n), many(n, n + 9)),
            ),
            ("trailing-comma.json", format!("[{},]", many(0, n))),
            ("trailing-data.json", format!("[{}] x", many(0, n))),
            ("unclosed.json", format!("[{}", many(0, n))),
            (
                "long.json",
                format!(
                    "[{}, {{\"tokens\": [\"{}\"]}}, {}]",
                    many(0, n),
                    "z".repeat(5000),
                    many(n, n + 3)
                ),
            ),
            (
                "deep.json",
                format!(
                    "[{}, {}1{}, {}]",
                    many(0, 10),
                    "[".repeat(140),
                    "]".repeat(140),
                    many(10, 20)
                ),
            ),
            (
                "bad-key.json",
                format!("{{\"P1\": [{}], \"\\q\": []}}", many(0, n)),
            ),
            (
                "not-a-list.json",
                format!("{{\"P1\": [{}], \"P2\": 3}}", many(0, n)),
            ),
            ("scalar.json", "42".to_string()),
            ("empty.json", String::new()),
            (
                "bad-utf8.json",
                format!("[{}, {{\"tokens\": [\"Q\"]}}]", many(0, 5)),
            ),
        ];
        for (name, text) in cases {
            let p = d.path().join(name);
            let mut bytes = text.into_bytes();
            if name == "bad-utf8.json" {
                let at = bytes.len() - 5;
                bytes[at] = 0xff;
            }
            std::fs::write(&p, &bytes).unwrap();
            let mut c = Corpus::open(&[p, after.clone()]).unwrap();
            c.max_line_bytes = 4096;
            let (want, want_report) = read_seq(&c);
            for threads in [2, 5] {
                let (got, report) = read_par(&c, threads);
                assert!(
                    got == want,
                    "{name}, {threads} threads: other sentences ({} vs {})",
                    got.len(),
                    want.len()
                );
                assert_eq!(report, want_report, "{name}, {threads} threads");
            }
        }
    }

    #[test]
    fn parallel_reading_stops_when_asked_and_reports_errors() {
        let d = tempfile::tempdir().unwrap();
        let text: String = (0..5 * UNIT_LINES)
            .map(|i| format!("Line {i}.\n"))
            .collect();
        std::fs::write(d.path().join("a.txt"), text).unwrap();
        let c = Corpus::open(&[d.path().join("a.txt")]).unwrap();
        let mut seen = 0;
        c.for_each_sentence_parallel(
            3,
            |_| (),
            |s, ()| {
                assert_eq!(s.line, seen + 1, "in order");
                seen += 1;
                Ok(if seen == UNIT_LINES + 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                })
            },
        )
        .unwrap();
        assert_eq!(seen, UNIT_LINES + 3);
        let e = c
            .for_each_sentence_parallel(
                2,
                |_| (),
                |s, ()| {
                    if s.line == 3 * UNIT_LINES {
                        anyhow::bail!("stop at {}", s.line);
                    }
                    Ok(ControlFlow::Continue(()))
                },
            )
            .unwrap_err();
        assert!(
            format!("{e}").contains(&format!("stop at {}", 3 * UNIT_LINES)),
            "{e}"
        );
    }

    fn split(t: &str) -> Vec<&str> {
        split_sentences(t)
            .into_iter()
            .map(|(a, b)| &t[a..b])
            .collect()
    }

    #[test]
    fn splits_on_sentence_ends_but_not_abbreviations() {
        assert_eq!(
            split("Dr. Smith treated the patient. It worked! Did it? yes. See Fig. 2 for details."),
            vec![
                "Dr. Smith treated the patient.",
                "It worked!",
                "Did it? yes.",
                "See Fig. 2 for details."
            ]
        );
        assert_eq!(
            split("  J. R. R. Tolkien wrote it.  "),
            vec!["J. R. R. Tolkien wrote it."]
        );
        assert_eq!(
            split("The value was 3.5 mg. Then \"it\" ended."),
            vec!["The value was 3.5 mg.", "Then \"it\" ended."]
        );
        assert!(split("   ").is_empty());
    }

    #[test]
    fn sentences_are_not_split_inside_a_link() {
        let t = "He met the Rev. Dr. Who. Then he left. Fine.";
        // A link over "Who. Then" (made up) keeps those sentences together.
        let s = t.find("Who").unwrap();
        let e = t.find("Then").unwrap() + 4;
        let links = [Link {
            start: s,
            end: e,
            id: "x".into(),
        }];
        let got: Vec<&str> = split_sentences_around(t, &links)
            .into_iter()
            .map(|(a, b)| &t[a..b])
            .collect();
        assert_eq!(got, vec!["He met the Rev. Dr. Who. Then he left.", "Fine."]);
    }

    #[test]
    fn wiki_targets_and_anchors() {
        assert_eq!(
            wiki_target("political%20philosophy").as_deref(),
            Some("Political philosophy")
        );
        assert_eq!(
            wiki_target("%C3%A9cole_normale#History").as_deref(),
            Some("École normale")
        );
        assert_eq!(wiki_target("#Section"), None);
        assert_eq!(wiki_target("https://example.org/x"), None);
        let mut r = ReadReport::default();
        let (text, links) = parse_anchors(
            "An <a href=\"anarchism\">anarchist</a> &amp; <a>bare</a> <a href=\"Tom%20%26%20Jerry\"> Tom </a>.",
            "w:3",
            &mut r,
        );
        assert_eq!(text, "An anarchist & bare  Tom .");
        let got: Vec<(&str, &str)> = links
            .iter()
            .map(|l| (&text[l.start..l.end], l.id.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![("anarchist", "Anarchism"), ("Tom", "Tom & Jerry")]
        );
        assert_eq!(r.skipped_links, 1);
        assert!(
            r.warnings[0].starts_with("w:3: `<a>` has no href"),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn capped_lines_never_buffer_past_the_cap() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.txt");
        let mut bytes = b"short\n".to_vec();
        bytes.extend(std::iter::repeat_n(b'x', 100_000));
        bytes.extend(b"\nend");
        std::fs::write(&p, &bytes).unwrap();
        let mut r = LineReader::open(&p, 1000).unwrap();
        assert_eq!(r.next_capped().unwrap(), Some((1, Ok(&b"short"[..]))));
        assert_eq!(r.next_capped().unwrap(), Some((2, Err(100_001))));
        assert!(r.buf.capacity() < 5000, "{}", r.buf.capacity());
        assert_eq!(r.next_capped().unwrap(), Some((3, Ok(&b"end"[..]))));
        assert_eq!(r.next_capped().unwrap(), None);
    }
}
