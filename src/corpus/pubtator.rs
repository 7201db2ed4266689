//! PubTator (`.pubtator`, `.pubtator.txt`): `PMID|t|title`, `PMID|a|abstract`, then
//! `PMID<TAB>start<TAB>end<TAB>mention<TAB>type<TAB>id` lines; offsets in code points over
//! title + " " + abstract. Documents are separated by blank lines (or start with a new PMID).

use anyhow::Result;
use std::ops::ControlFlow;

use super::open::LineReader;
use super::parallel::{Batch, Framed, Piece, Units};
use super::reader::Reader;
use super::{Format, FormatInfo, FormatReader, ReadReport, Sentence};

pub(super) struct PubTator;

static INFO: FormatInfo = FormatInfo {
    format: Format::PubTator,
    label: ".pubtator",
    suffixes: &[".pubtator", ".pubtator.txt"],
    always_linked: true,
};

impl FormatReader for PubTator {
    fn info(&self) -> &'static FormatInfo {
        &INFO
    }

    fn read(&self, r: &mut Reader<'_>, cap: usize) -> Result<ControlFlow<()>> {
        r.pubtator_docs(cap, |r, doc| r.flush_pubtator(doc))
    }

    /// The reading thread follows the document structure (and reports what it skips there);
    /// the workers turn documents into sentences.
    fn frame(&self, units: &mut Units<'_>, cap: usize) -> Result<Framed> {
        let (fi, path) = (units.fi, units.path);
        let mut batch = Batch::new(units);
        let mut report = ReadReport::default();
        let mut never = |_: Sentence| -> Result<ControlFlow<()>> {
            unreachable!("sentences are made on the workers")
        };
        let mut r = Reader::new(fi, path, &mut report, &mut never);
        let read = r.pubtator_docs(cap, |r, doc| {
            let doc = std::mem::take(doc);
            if doc.pmid.is_none() {
                return Ok(ControlFlow::Continue(()));
            }
            batch.report(r.report);
            Ok(if batch.add(doc) {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            })
        });
        if read.is_ok() {
            batch.report(&mut report);
        }
        batch.finish(read)
    }
}

impl Piece for PubTatorDoc {
    fn bytes(&self) -> usize {
        self.bytes
            + self.title.as_ref().map_or(0, String::len)
            + self.abstract_.as_ref().map_or(0, String::len)
    }

    fn run(mut self, r: &mut Reader<'_>) -> Result<Option<usize>> {
        // (The workers' sentences never stop the reading: the flow is always to go on.)
        let _ = r.flush_pubtator(&mut self)?;
        Ok(None)
    }
}

impl Reader<'_> {
    /// Reads the lines of a PubTator file into documents, handing each (possibly empty) to
    /// `done`, where [`Reader::flush_pubtator`] turns it into sentences.
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

    /// The sentences of a document (nothing for the empty document before the first).
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

#[cfg(test)]
mod tests {
    use crate::corpus::tests::{read_file, seen};

    #[test]
    fn documents_give_title_and_abstract_with_checked_links() {
        let text = "1|t|Aspirin helps.\n1|a|Then aspirin again.\n\
            1\t0\t7\tAspirin\tChemical\tD001241\n\
            1\t20\t27\taspirin\tChemical\tD001241\n\
            1\t0\t7\tAspirinX\tChemical\tD1\n\
            1\tCID\tD1\tD2\n\
            \n\
            2|t|Ünï title.\n\
            2\t0\t3\tÜnï\tChemical\t-\n\
            3\t0\t3\tAsp\tChemical\tD1\n";
        let (got, report) = read_file("a.pubtator", text.as_bytes());
        let got = seen(&got);
        assert_eq!(
            got,
            vec![
                (1, "Aspirin helps.", vec![("Aspirin", "D001241")]),
                (1, "Then aspirin again.", vec![("aspirin", "D001241")]),
                (8, "Ünï title.", vec![]),
            ]
        );
        assert_eq!(
            (report.links, report.skipped_links, report.skipped_lines),
            (2, 1, 1)
        );
        assert!(
            report.warnings[0].contains(
                "a.pubtator:5: span 0..7 reads `Aspirin`, not the annotated mention `AspirinX`"
            ),
            "{:?}",
            report.warnings
        );
        assert!(
            report.warnings[1].contains("a.pubtator:10: annotation for document 3 outside"),
            "{:?}",
            report.warnings
        );
    }
}
