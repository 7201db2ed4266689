//! Plain text (`.txt`, `.text`): one passage per line, split into sentences. Mentions are
//! found by matching names.

use anyhow::Result;
use std::ops::ControlFlow;

use super::parallel::{Framed, Units};
use super::reader::Reader;
use super::{lines, Format, FormatInfo, FormatReader};

pub(super) struct Text;

static INFO: FormatInfo = FormatInfo {
    format: Format::Text,
    label: ".txt",
    suffixes: &[".txt", ".text"],
    always_linked: false,
};

impl FormatReader for Text {
    fn info(&self) -> &'static FormatInfo {
        &INFO
    }

    fn read(&self, r: &mut Reader<'_>, cap: usize) -> Result<ControlFlow<()>> {
        lines::read(r, cap, passage)
    }

    fn frame(&self, units: &mut Units<'_>, cap: usize) -> Result<Framed> {
        lines::frame(units, cap, passage)
    }

    fn line_fn(&self) -> Option<lines::LineFn> {
        Some(passage)
    }
}

/// A line is a passage.
fn passage(r: &mut Reader<'_>, line_no: usize, line: &str) -> Result<ControlFlow<()>> {
    r.emit_passage(line_no, line, &[])
}

#[cfg(test)]
mod tests {
    use crate::corpus::tests::read_file;

    #[test]
    fn each_line_is_a_passage_split_into_sentences() {
        let (got, report) = read_file("a.txt", b"First one. Second one.\n\n  \nThird.\n\xff\n");
        let got: Vec<(usize, usize, &str)> = got
            .iter()
            .map(|s| (s.line, s.index, s.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 0, "First one."),
                (1, 1, "Second one."),
                (4, 0, "Third.")
            ]
        );
        assert_eq!((report.sentences, report.skipped_lines), (3, 1));
        assert!(
            report.warnings[0].ends_with("a.txt:5: not valid UTF-8"),
            "{:?}",
            report.warnings
        );
    }
}
