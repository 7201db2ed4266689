//! FewRel-style `.json`: a list of examples, or an object of relation → list of examples. Each
//! example is one sentence (its tokens joined by single spaces); the `h`/`t` token positions
//! become links to their ids. Files are parsed one example at a time, so memory stays within
//! about the line cap per example.

use anyhow::{bail, Result};
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::cell::Cell;
use std::io::{BufRead, Read};
use std::ops::ControlFlow;
use std::path::Path;
use std::rc::Rc;

use super::open::open_reader;
use super::parallel::{Batch, Framed, Piece, Units};
use super::reader::Reader;
use super::{Format, FormatInfo, FormatReader, Sentence, DEFAULT_MAX_LINE_BYTES, NO_OFFSET};

pub(super) struct FewRel;

static INFO: FormatInfo = FormatInfo {
    format: Format::FewRel,
    label: "FewRel .json",
    suffixes: &[".json"],
    always_linked: true,
};

impl FormatReader for FewRel {
    fn info(&self) -> &'static FormatInfo {
        &INFO
    }

    fn read(&self, r: &mut Reader<'_>, cap: usize) -> Result<ControlFlow<()>> {
        r.fewrel_from(cap, 0)
    }

    fn read_from(&self, r: &mut Reader<'_>, cap: usize, from: usize) -> Result<ControlFlow<()>> {
        r.fewrel_from(cap, from)
    }

    /// The reading thread cuts the file into the raw JSON of its examples (see
    /// [`frame_fewrel`]); the workers parse them. What it does not cut is read on the
    /// consumer's thread ([`Framed::From`]).
    fn frame(&self, units: &mut Units<'_>, cap: usize) -> Result<Framed> {
        let path = units.path;
        let mut batch = Batch::new(units);
        let framed = frame_fewrel(path, cap, &mut |index, json| {
            batch.add(ExampleJson { index, json })
        });
        match framed {
            Framed::All => batch.finish(Ok(())),
            Framed::Gone => Ok(Framed::Gone),
            Framed::From(from) => Ok(if batch.flush() {
                Framed::From(from)
            } else {
                Framed::Gone
            }),
        }
    }
}

/// The raw JSON of FewRel example `index` (0-based), for a worker.
struct ExampleJson {
    index: usize,
    json: Vec<u8>,
}

impl Piece for ExampleJson {
    fn bytes(&self) -> usize {
        self.json.len()
    }

    /// JSON the worker cannot parse: the file is read on the consumer's thread from this
    /// example on, for the sequential reader's sentences and errors.
    fn run(self, r: &mut Reader<'_>) -> Result<Option<usize>> {
        match serde_json::from_slice::<Value>(&self.json) {
            Ok(v) => {
                let ex = fewrel_example(&v, None);
                let _ = r.fewrel_sentence(self.index, ex)?;
                Ok(None)
            }
            Err(_) => Ok(Some(self.index)),
        }
    }
}

impl Reader<'_> {
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
            offset: NO_OFFSET,
            text,
            links,
        };
        (self.f)(s)
    }
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

#[cfg(test)]
mod tests {
    use crate::corpus::tests::{read_file, seen};

    #[test]
    fn examples_give_joined_tokens_with_head_and_tail_links() {
        let text = r#"{"P17": [
            {"tokens": ["Ünï", "met", "New", "York", "."], "h": ["u", "Q1", [[0]]], "t": ["ny", "Q60", [[2, 3]]]},
            {"tokens": []},
            {"tokens": ["A", "b"], "h": ["a", "Q2", [[0, 9]]]}
        ]}"#;
        let (got, report) = read_file("a.json", text.as_bytes());
        let got = seen(&got);
        assert_eq!(
            got,
            vec![
                (
                    1,
                    "Ünï met New York .",
                    vec![("Ünï", "Q1"), ("New York", "Q60")]
                ),
                (3, "A b", vec![]),
            ]
        );
        assert_eq!(
            (report.links, report.skipped_links, report.skipped_lines),
            (2, 1, 1)
        );
        assert!(
            report.warnings[0].ends_with("a.json:2: example has no tokens"),
            "{:?}",
            report.warnings
        );
        assert!(
            report.warnings[1]
                .ends_with("a.json:3: `h` (Q2): token position 9 is outside the 2 tokens"),
            "{:?}",
            report.warnings
        );
    }
}
