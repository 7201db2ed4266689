//! JSON Lines (`.jsonl`, `.ndjson`): a `text` field per line, split into sentences. A record
//! may carry entity links, `{"text": "...", "links": [{"start": 0, "end": 8, "id": "Q90"}]}`,
//! offsets in Unicode code points (as Python's `str` counts them), end exclusive.

use anyhow::Result;
use serde_json::Value;
use std::ops::ControlFlow;
use std::path::Path;

use super::open::LineReader;
use super::parallel::{Framed, Units};
use super::reader::{file_line, Reader};
use super::{lines, Format, FormatInfo, FormatReader, Link};

pub(super) struct Jsonl;

static INFO: FormatInfo = FormatInfo {
    format: Format::Jsonl,
    label: ".jsonl",
    suffixes: &[".jsonl", ".ndjson"],
    always_linked: false,
};

impl FormatReader for Jsonl {
    fn info(&self) -> &'static FormatInfo {
        &INFO
    }

    fn read(&self, r: &mut Reader<'_>, cap: usize) -> Result<ControlFlow<()>> {
        lines::read(r, cap, record)
    }

    fn frame(&self, units: &mut Units<'_>, cap: usize) -> Result<Framed> {
        lines::frame(units, cap, record)
    }

    fn line_fn(&self) -> Option<lines::LineFn> {
        Some(record)
    }

    /// Whether the first record has a `links` field (an empty list counts).
    fn has_links(&self, path: &Path, cap: usize) -> Result<bool> {
        let mut lines = LineReader::open(path, cap)?;
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
        Ok(false)
    }
}

/// One line: a record, or blank.
fn record(r: &mut Reader<'_>, line_no: usize, line: &str) -> Result<ControlFlow<()>> {
    if line.trim().is_empty() {
        return Ok(ControlFlow::Continue(()));
    }
    match r.jsonl_record(line_no, line) {
        Some((text, links)) => r.emit_passage(line_no, &text, &links),
        None => Ok(ControlFlow::Continue(())),
    }
}

impl Reader<'_> {
    /// The text and links of a JSON Lines record; `None` (with a warning) when it has none.
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
}

#[cfg(test)]
mod tests {
    use crate::corpus::tests::{read_file, seen};

    #[test]
    fn records_give_text_and_links_in_code_points() {
        let text = concat!(
            r#"{"text": "Ünïcode Paris. Then Lyon.", "links": [{"start": 8, "end": 13, "id": "Q90"}, {"start": 20, "end": 24, "id": "Q456"}, {"start": 9, "end": 99, "id": "Q1"}]}"#,
            "\n\n",
            r#"{"text": "No links here."}"#,
            "\n{not json\n",
            r#"{"links": []}"#,
            "\n"
        );
        let (got, report) = read_file("a.jsonl", text.as_bytes());
        let got = seen(&got);
        assert_eq!(
            got,
            vec![
                (1, "Ünïcode Paris.", vec![("Paris", "Q90")]),
                (1, "Then Lyon.", vec![("Lyon", "Q456")]),
                (3, "No links here.", vec![]),
            ]
        );
        assert_eq!(
            (report.links, report.skipped_links, report.skipped_lines),
            (2, 1, 2)
        );
        assert!(
            report.warnings[0].contains("a.jsonl:1: links[2] (Q1): span 9..99"),
            "{:?}",
            report.warnings
        );
        assert!(
            report.warnings[1].contains("a.jsonl:4: not valid JSON"),
            "{:?}",
            report.warnings
        );
        assert!(
            report.warnings[2].ends_with("a.jsonl:5: no string field `text`"),
            "{:?}",
            report.warnings
        );
    }
}
