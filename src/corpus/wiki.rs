//! WikiExtractor output written with `--links` (files named `wiki_00`, `wiki_01`, … or
//! `*.wiki`): `<doc …>` blocks whose anchors `<a href="Target%20title">anchor</a>` link to the
//! URL-decoded title with its first letter upper-cased.

use anyhow::Result;
use std::ops::ControlFlow;

use super::open::LineReader;
use super::parallel::{Batch, Framed, Piece, Units};
use super::reader::Reader;
use super::{suffix_match, Format, FormatInfo, FormatReader, Link, ReadReport, Sentence};

pub(super) struct Wiki;

static INFO: FormatInfo = FormatInfo {
    format: Format::Wiki,
    label: "WikiExtractor wiki_NN",
    suffixes: &[".wiki"],
    always_linked: true,
};

impl FormatReader for Wiki {
    fn info(&self) -> &'static FormatInfo {
        &INFO
    }

    /// `*.wiki`, or WikiExtractor's own names: `wiki_` and digits.
    fn name_match(&self, name: &str) -> Option<usize> {
        let numbered = name
            .strip_prefix("wiki_")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if numbered {
            Some(name.len())
        } else {
            suffix_match(&INFO, name)
        }
    }

    fn read(&self, r: &mut Reader<'_>, cap: usize) -> Result<ControlFlow<()>> {
        r.wiki_lines(cap, |r, line_no, line| r.wiki_passage(line_no, line))
    }

    /// The reading thread follows the `<doc>` blocks (and reports what it skips there); the
    /// workers turn lines of text into sentences.
    fn frame(&self, units: &mut Units<'_>, cap: usize) -> Result<Framed> {
        let (fi, path) = (units.fi, units.path);
        let mut batch = Batch::new(units);
        let mut report = ReadReport::default();
        let mut never = |_: Sentence| -> Result<ControlFlow<()>> {
            unreachable!("sentences are made on the workers")
        };
        let mut r = Reader::new(fi, path, &mut report, &mut never);
        let read = r.wiki_lines(cap, |r, line, text| {
            batch.report(r.report);
            let text = text.to_string();
            Ok(if batch.add(WikiLine { line, text }) {
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

/// A line of text of a `<doc>` block, anchors not parsed yet, for a worker.
struct WikiLine {
    line: usize,
    text: String,
}

impl Piece for WikiLine {
    fn bytes(&self) -> usize {
        self.text.len()
    }

    fn run(self, r: &mut Reader<'_>) -> Result<Option<usize>> {
        // (The workers' sentences never stop the reading: the flow is always to go on.)
        let _ = r.wiki_passage(self.line, &self.text)?;
        Ok(None)
    }
}

impl Reader<'_> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn doc_blocks_give_their_lines_of_text_but_not_the_title() {
        let text = "<doc id=\"1\" title=\"Paris &amp; co\">\nParis & co\n\n\
            <a href=\"Paris\">Paris</a> is big. It is <a href=\"France\">French</a>.\n</doc>\n\
            stray\n";
        let (got, report) = crate::corpus::tests::read_file("wiki_00", text.as_bytes());
        let got = crate::corpus::tests::seen(&got);
        assert_eq!(
            got,
            vec![
                (4, "Paris is big.", vec![("Paris", "Paris")]),
                (4, "It is French.", vec![("French", "France")]),
            ]
        );
        assert_eq!((report.links, report.skipped_lines), (2, 1));
        assert!(
            report.warnings[0].ends_with("wiki_00:6: text outside a <doc> block"),
            "{:?}",
            report.warnings
        );
    }
}
