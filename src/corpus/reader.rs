//! What the formats share to read a file: a [`Reader`] turns passages into sentences with
//! their links, counts what it reads and skips, and says where (`file:line`).

use anyhow::Result;
use std::ops::ControlFlow;
use std::path::Path;

use super::open::LineReader;
use super::sentences::split_sentences_around;
use super::{Link, ReadReport, Sentence, NO_OFFSET};

/// `file:line`, the prefix of reading warnings.
pub(super) fn file_line(path: &Path, line: usize) -> String {
    format!("{}:{line}", path.display())
}

/// Reads file `fi` of a corpus (at `path`): hands each sentence to `f` and notes what it reads
/// and skips in `report`. Each format adds the methods that read its files (see
/// [`FormatReader`](super::FormatReader)).
pub(super) struct Reader<'a> {
    pub(super) fi: usize,
    pub(super) path: &'a Path,
    pub(super) report: &'a mut ReadReport,
    pub(super) f: &'a mut dyn FnMut(Sentence) -> Result<ControlFlow<()>>,
    /// Byte offset of the record being read in the (decompressed) file, for
    /// [`Sentence::offset`]; [`NO_OFFSET`] where the format does not say.
    pub(super) offset: u64,
}

impl<'a> Reader<'a> {
    /// A reader of file `fi` (at `path`) that knows no record offsets yet.
    pub(super) fn new(
        fi: usize,
        path: &'a Path,
        report: &'a mut ReadReport,
        f: &'a mut dyn FnMut(Sentence) -> Result<ControlFlow<()>>,
    ) -> Self {
        Reader {
            fi,
            path,
            report,
            f,
            offset: NO_OFFSET,
        }
    }

    pub(super) fn at(&self, line: usize) -> String {
        file_line(self.path, line)
    }

    /// Splits a passage (links in byte offsets, sorted, disjoint) into sentences and emits them.
    pub(super) fn emit_passage(
        &mut self,
        line: usize,
        text: &str,
        links: &[Link],
    ) -> Result<ControlFlow<()>> {
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
                offset: self.offset,
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

    /// A line as text; `None` when it was skipped (longer than the cap, or not UTF-8: reported).
    pub(super) fn text_of<'r>(
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
    pub(super) fn next_text<'r>(
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

    /// Converts code-point spans `(start, end, id, l)` to byte links, dropping (with a
    /// warning that starts with `label(l)`, e.g. `file:line: links[2]`, made only then) spans
    /// that are empty, outside the text, or overlap an earlier kept span.
    pub(super) fn char_spans_to_links<L>(
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
}
