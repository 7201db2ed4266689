//! What the formats of one record a line (plain text, JSON Lines) share: reading a file line
//! by line, and cutting it into units of raw lines for the parallel workers.

use anyhow::Result;
use std::ops::ControlFlow;

use super::open::LineReader;
use super::parallel::{Framed, Units, Work, UNIT_BYTES, UNIT_LINES};
use super::reader::Reader;

/// What a format does with one line of text (line number, text).
pub(super) type LineFn = fn(&mut Reader<'_>, usize, &str) -> Result<ControlFlow<()>>;

/// Reads the file of `r` line by line, handing each line to `per_line`.
pub(super) fn read(r: &mut Reader<'_>, cap: usize, per_line: LineFn) -> Result<ControlFlow<()>> {
    let mut reader = LineReader::open(r.path, cap)?;
    loop {
        let at = reader.next_offset();
        let Some((line_no, line)) = reader.next_capped()? else {
            break;
        };
        r.offset = at;
        if line_of(r, line_no, line, per_line, cap)?.is_break() {
            return Ok(ControlFlow::Break(()));
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// One line (its bytes, or its length when over the cap): skipped with a warning when over
/// the cap or not UTF-8, else handed to `per_line`.
pub(super) fn line_of(
    r: &mut Reader<'_>,
    line_no: usize,
    line: std::result::Result<&[u8], usize>,
    per_line: LineFn,
    cap: usize,
) -> Result<ControlFlow<()>> {
    let Some(line) = r.text_of(line_no, line, cap) else {
        return Ok(ControlFlow::Continue(()));
    };
    per_line(r, line_no, line)
}

/// Cuts the file into units of raw lines (the workers check and parse them).
pub(super) fn frame(units: &mut Units<'_>, cap: usize, per_line: LineFn) -> Result<Framed> {
    let mut reader = LineReader::open(units.path, cap)?;
    let new_unit = || Lines {
        per_line,
        buf: Vec::with_capacity(UNIT_BYTES + 4096),
        lines: Vec::with_capacity(UNIT_LINES),
    };
    let mut unit = new_unit();
    while let Some((line_no, line)) = reader.next_capped()? {
        let range = line.map(|b| {
            let at = unit.buf.len();
            unit.buf.extend_from_slice(b);
            at..unit.buf.len()
        });
        unit.lines.push((line_no, reader.offset, range));
        if unit.lines.len() >= UNIT_LINES || unit.buf.len() >= UNIT_BYTES {
            let full = std::mem::replace(&mut unit, new_unit());
            if !units.send(Box::new(full)) {
                return Ok(Framed::Gone);
            }
        }
    }
    if !units.send(Box::new(unit)) {
        return Ok(Framed::Gone);
    }
    Ok(Framed::All)
}

/// Raw lines of a file for a worker.
struct Lines {
    per_line: LineFn,
    buf: Vec<u8>,
    /// Line number, the line's byte offset in the file, and its range in `buf` (or its length
    /// when over the cap).
    lines: Vec<(
        usize,
        u64,
        std::result::Result<std::ops::Range<usize>, usize>,
    )>,
}

impl Work for Lines {
    fn run(self: Box<Self>, r: &mut Reader<'_>, cap: usize) -> Result<Option<usize>> {
        let Lines {
            per_line,
            buf,
            lines,
        } = *self;
        for (line_no, offset, range) in lines {
            let line = range.map(|r| &buf[r]);
            r.offset = offset;
            if line_of(r, line_no, line, per_line, cap)?.is_break() {
                break;
            }
        }
        Ok(None)
    }
}
