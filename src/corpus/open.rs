//! Opening corpus files: regular files only, `.gz` decompressed, and lines read with a hard cap
//! on their length.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::outpath::kind_of;

/// Opens `path`, refusing anything but a regular file; with its metadata.
pub(crate) fn open_regular(path: &Path) -> Result<(std::fs::File, std::fs::Metadata)> {
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
    Ok((file, meta))
}

/// Opens a regular file, decompressing `.gz`.
pub fn open_reader(path: &Path) -> Result<Box<dyn BufRead>> {
    let (file, _) = open_regular(path)?;
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

/// The longest line any text input (entity list, label or probe TSV, project file) may have.
pub const MAX_TEXT_LINE_BYTES: usize = 1 << 20;

/// A text input read whole (`.gz` decompressed) with the corpus readers' caps: at most
/// `max_bytes` in all, and no line longer than `max_line` bytes; an over-long line is refused
/// (naming the file and line) without being buffered. Line ends become `\n`.
pub fn read_text_capped(path: &Path, max_bytes: u64, max_line: usize) -> Result<String> {
    let mut r = LineReader::open(path, max_line)?;
    let mut out = String::new();
    while let Some((line_no, line)) = r.next_capped()? {
        let line = match line {
            Ok(l) => l,
            Err(len) => bail!(
                "{}:{line_no}: a line of {len} bytes, longer than the limit of {max_line} bytes",
                crate::escape::path(path)
            ),
        };
        let text = std::str::from_utf8(line).map_err(|_| {
            anyhow::anyhow!("{}:{line_no}: not valid UTF-8", crate::escape::path(path))
        })?;
        if (out.len() + text.len() + 1) as u64 > max_bytes {
            bail!(
                "{} is larger than the limit of {max_bytes} bytes (after decompression)",
                crate::escape::path(path)
            );
        }
        out.push_str(text);
        out.push('\n');
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
    /// Byte offset (in the decompressed file) of the line last returned.
    pub offset: u64,
    /// Bytes consumed so far.
    pos: u64,
    path: PathBuf,
}

/// One line: its 1-based number and its bytes (without the line end), or its length in bytes
/// when it was longer than the cap.
pub type CappedLine<'a> = (usize, std::result::Result<&'a [u8], usize>);

impl LineReader {
    pub fn open(path: &Path, cap: usize) -> Result<Self> {
        Self::over(open_reader(path)?, path, cap, 0, 0)
    }

    /// Reads lines from `inner`, which is at byte `offset` of `path` (decompressed), after
    /// line `line_no`.
    pub fn over(
        inner: Box<dyn BufRead>,
        path: &Path,
        cap: usize,
        offset: u64,
        line_no: usize,
    ) -> Result<Self> {
        Ok(LineReader {
            inner,
            cap,
            buf: Vec::new(),
            line_no,
            offset,
            pos: offset,
            path: path.to_path_buf(),
        })
    }

    /// The byte offset (in the decompressed file) of the line [`LineReader::next_capped`]
    /// returns next.
    pub fn next_offset(&self) -> u64 {
        self.pos
    }

    /// The next line, `None` at the end.
    pub fn next_capped(&mut self) -> Result<Option<CappedLine<'_>>> {
        self.buf.clear();
        self.offset = self.pos;
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
            self.pos += len as u64;
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
    pub(super) fn next_line(&mut self) -> Result<Option<&[u8]>> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(r.offset, 0);
        assert_eq!(r.next_capped().unwrap(), Some((2, Err(100_001))));
        assert_eq!(r.offset, 6);
        assert!(r.buf.capacity() < 5000, "{}", r.buf.capacity());
        assert_eq!(r.next_capped().unwrap(), Some((3, Ok(&b"end"[..]))));
        assert_eq!(r.offset, 100_007);
        assert_eq!(r.next_capped().unwrap(), None);
    }
}
