//! Reading one sentence back from a corpus file by its place (line, sentence index, and the
//! byte offset of its line), the way the build read it.

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::Path;

use super::open::{open_reader, LineReader};
use super::reader::Reader;
use super::{lines, reader_of, ReadReport, Sentence, NO_OFFSET};

/// Sentence `index` of record `line` (1-based; the example number for FewRel, the title line
/// for PubTator) of the corpus file `path`, read as a build reads it; `None` when the file
/// has no such sentence (any more). Lines longer than `cap` bytes are skipped, as in a build.
///
/// For the formats of one record a line (plain text, JSON Lines) with a known `offset` (the
/// byte offset of the line in the decompressed file), only that line is read: a plain file
/// is seeked to it; a `.gz` file is decompressed from its start up to it (gzip does not
/// seek). Other formats, or an unknown offset ([`NO_OFFSET`]), are read from the start of the
/// file up to the record.
pub fn read_sentence(
    path: &Path,
    line: usize,
    index: usize,
    offset: u64,
    cap: usize,
) -> Result<Option<String>> {
    let format = reader_of(path);
    let mut report = ReadReport::default();
    let mut found = None;
    let mut take = |s: Sentence| {
        if s.line > line {
            return Ok(ControlFlow::Break(()));
        }
        if s.line == line && s.index == index {
            found = Some(s.text);
            return Ok(ControlFlow::Break(()));
        }
        Ok(ControlFlow::Continue(()))
    };
    let mut r = Reader::new(0, path, &mut report, &mut take);
    match (format.line_fn(), offset) {
        (Some(per_line), at) if at != NO_OFFSET => {
            let Some(inner) = open_at(path, at)? else {
                return Ok(None);
            };
            let mut lr = LineReader::over(inner, path, cap, at, line.saturating_sub(1))?;
            if let Some((line_no, bytes)) = lr.next_capped()? {
                r.offset = at;
                let _ = lines::line_of(&mut r, line_no, bytes, per_line, cap)?;
            }
        }
        _ => {
            let _ = format.read(&mut r, cap)?;
        }
    }
    Ok(found)
}

/// `path` (a regular file), positioned at byte `at` of its decompressed content; `None` when
/// it is shorter.
fn open_at(path: &Path, at: u64) -> Result<Option<Box<dyn BufRead>>> {
    let gz = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    if gz {
        let mut r = open_reader(path)?;
        let skipped = std::io::copy(&mut (&mut r).take(at), &mut std::io::sink())
            .with_context(|| format!("cannot read {}", path.display()))?;
        return Ok((skipped == at).then_some(r));
    }
    let (mut file, meta) = super::open::open_regular(path)?;
    if at > meta.len() {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(at))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Some(Box::new(BufReader::new(file))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::Corpus;

    /// Every sentence of a corpus of one file comes back from its place, with and without
    /// its offset, for every format; a place past the end is `None`.
    #[test]
    fn every_sentence_comes_back_from_its_place() {
        let d = tempfile::tempdir().unwrap();
        let jsonl = "{\"text\": \"Aspirin helps. It is old.\"}\n\n{\"text\": \"Ünï Aspirin here.\", \"links\": [{\"start\": 4, \"end\": 11, \"id\": \"Q1\"}]}\n";
        let files: Vec<(&str, Vec<u8>)> = vec![
            ("a.txt", b"First one. Second one.\n\nThird.\n".to_vec()),
            ("b.jsonl", jsonl.as_bytes().to_vec()),
            ("c.txt.gz", {
                let mut z =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                std::io::Write::write_all(&mut z, b"One. Two.\nThree. Four.\n").unwrap();
                z.finish().unwrap()
            }),
            (
                "d.pubtator",
                b"1|t|Aspirin title.\n1|a|Aspirin helps. Really.\n1\t0\t7\tAspirin\tChemical\tD1\n\n"
                    .to_vec(),
            ),
        ];
        for (name, bytes) in files {
            let p = d.path().join(name);
            std::fs::write(&p, &bytes).unwrap();
            let c = Corpus::open(std::slice::from_ref(&p)).unwrap();
            let mut all = Vec::new();
            c.for_each_sentence(|s| {
                all.push(s.clone());
                Ok(ControlFlow::Continue(()))
            })
            .unwrap();
            assert!(all.len() >= 2, "{name}: {all:?}");
            let line_format = !name.contains("pubtator");
            for s in &all {
                assert_eq!(s.offset != NO_OFFSET, line_format, "{name}: {s:?}");
                for at in [s.offset, NO_OFFSET] {
                    let got = read_sentence(&p, s.line, s.index, at, 1 << 20).unwrap();
                    assert_eq!(got.as_deref(), Some(s.text.as_str()), "{name}: {s:?}");
                }
            }
            let last = all.last().unwrap();
            assert_eq!(
                read_sentence(&p, last.line, last.index + 1, last.offset, 1 << 20).unwrap(),
                None
            );
            assert_eq!(
                read_sentence(&p, last.line + 5, 0, NO_OFFSET, 1 << 20).unwrap(),
                None
            );
        }
        // A plain line read from its offset is that line, not the one counted to.
        let p = d.path().join("a.txt");
        assert_eq!(
            read_sentence(&p, 1, 0, 24, 1 << 20).unwrap().as_deref(),
            Some("Third.")
        );
        assert_eq!(read_sentence(&p, 3, 0, 10_000, 1 << 20).unwrap(), None);
    }
}
