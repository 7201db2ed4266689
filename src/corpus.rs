//! Streaming corpus reader. Formats: `.txt` (one passage per line, split into sentences),
//! `.jsonl` (a `text` field per line, split into sentences), FewRel-style `.json` (one sentence
//! per example: its tokens joined by single spaces), a directory of these, and `.gz` of any.
//! Bad lines are skipped and counted; the first few are reported with file and line.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Jsonl,
    FewRel,
}

impl Format {
    pub fn of(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        if name.ends_with(".txt") || name.ends_with(".text") {
            Some(Format::Text)
        } else if name.ends_with(".jsonl") || name.ends_with(".ndjson") {
            Some(Format::Jsonl)
        } else if name.ends_with(".json") {
            Some(Format::FewRel)
        } else {
            None
        }
    }
}

/// One sentence of the corpus with its location: `file` indexes [`Corpus::files`], `line` is
/// 1-based (the example number for FewRel files), `index` counts sentences within the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentence {
    pub file: usize,
    pub line: usize,
    pub index: usize,
    pub text: String,
}

/// What reading skipped, for the user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadReport {
    pub sentences: usize,
    pub skipped_lines: usize,
    /// The first few skipped lines, as `file:line: reason`.
    pub warnings: Vec<String>,
}

impl ReadReport {
    fn warn(&mut self, msg: String) {
        self.skipped_lines += 1;
        if self.warnings.len() < 20 {
            self.warnings.push(msg);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corpus {
    pub files: Vec<PathBuf>,
    /// Lines longer than this many bytes are skipped with a warning.
    pub max_line_bytes: usize,
}

pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

impl Corpus {
    /// Expands directories (recursively, sorted) and checks that every file exists and has a
    /// known format.
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::new();
        for p in paths {
            if p.is_dir() {
                let mut found = Vec::new();
                collect_dir(p, &mut found)?;
                if found.is_empty() {
                    bail!(
                        "corpus directory {} holds no .txt, .jsonl or .json files",
                        p.display()
                    );
                }
                files.extend(found);
            } else if p.is_file() {
                if Format::of(p).is_none() {
                    bail!(
                        "corpus file {}: unknown format (expected .txt, .jsonl or FewRel .json, optionally .gz)",
                        p.display()
                    );
                }
                files.push(p.clone());
            } else {
                bail!("corpus file {} does not exist", p.display());
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

    /// Calls `f` for every sentence, in a fixed order, without holding the corpus in memory
    /// (FewRel `.json` files are single JSON documents and are parsed one file at a time).
    pub fn for_each_sentence(
        &self,
        mut f: impl FnMut(&Sentence) -> Result<ControlFlow<()>>,
    ) -> Result<ReadReport> {
        let mut report = ReadReport::default();
        for (fi, path) in self.files.iter().enumerate() {
            let flow = match Format::of(path).unwrap_or(Format::Text) {
                Format::Text | Format::Jsonl => self.read_lines(fi, path, &mut report, &mut f)?,
                Format::FewRel => {
                    let mut flow = ControlFlow::Continue(());
                    for (i, ex) in fewrel_examples(path)?.into_iter().enumerate() {
                        if ex.tokens.is_empty() {
                            report.warn(format!(
                                "{}:{}: example has no tokens",
                                path.display(),
                                i + 1
                            ));
                            continue;
                        }
                        let s = Sentence {
                            file: fi,
                            line: i + 1,
                            index: 0,
                            text: ex.tokens.join(" "),
                        };
                        report.sentences += 1;
                        flow = f(&s)?;
                        if flow.is_break() {
                            break;
                        }
                    }
                    flow
                }
            };
            if flow.is_break() {
                break;
            }
        }
        Ok(report)
    }

    fn read_lines(
        &self,
        fi: usize,
        path: &Path,
        report: &mut ReadReport,
        f: &mut impl FnMut(&Sentence) -> Result<ControlFlow<()>>,
    ) -> Result<ControlFlow<()>> {
        let jsonl = Format::of(path) == Some(Format::Jsonl);
        let mut reader = open_reader(path)?;
        let mut buf = Vec::new();
        let mut line_no = 0;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .with_context(|| format!("{}:{}: read error", path.display(), line_no + 1))?;
            if n == 0 {
                return Ok(ControlFlow::Continue(()));
            }
            line_no += 1;
            if buf.len() > self.max_line_bytes {
                report.warn(format!(
                    "{}:{line_no}: line of {} bytes is longer than the limit of {} bytes",
                    path.display(),
                    buf.len(),
                    self.max_line_bytes
                ));
                continue;
            }
            let Ok(line) = std::str::from_utf8(&buf) else {
                report.warn(format!("{}:{line_no}: not valid UTF-8", path.display()));
                continue;
            };
            let line = line.trim_end_matches(['\n', '\r']);
            let text: String = if jsonl {
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(line) {
                    Ok(v) => match v.get("text").and_then(Value::as_str) {
                        Some(t) => t.to_string(),
                        None => {
                            report.warn(format!(
                                "{}:{line_no}: no string field `text`",
                                path.display()
                            ));
                            continue;
                        }
                    },
                    Err(e) => {
                        report.warn(format!(
                            "{}:{line_no}: not valid JSON ({e})",
                            path.display()
                        ));
                        continue;
                    }
                }
            } else {
                line.to_string()
            };
            for (index, (a, b)) in split_sentences(&text).into_iter().enumerate() {
                let s = Sentence {
                    file: fi,
                    line: line_no,
                    index,
                    text: text[a..b].to_string(),
                };
                report.sentences += 1;
                if f(&s)?.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
        }
    }
}

fn collect_dir(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect_dir(&p, out)?;
        } else if Format::of(&p).is_some() {
            out.push(p);
        }
    }
    Ok(())
}

/// A buffered reader that decompresses `.gz` files.
pub fn open_reader(path: &Path) -> Result<Box<dyn BufRead>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
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

/// The whole (decompressed) content of a file.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    open_reader(path)?
        .read_to_end(&mut out)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(out)
}

/// One FewRel example: tokens and the linked head/tail entities as (name, id).
#[derive(Debug, Clone, Default)]
pub struct FewRelExample {
    pub tokens: Vec<String>,
    pub head: Option<(String, String)>,
    pub tail: Option<(String, String)>,
}

/// Reads a FewRel-style file: a list of examples, or an object mapping relation → list.
pub fn fewrel_examples(path: &Path) -> Result<Vec<FewRelExample>> {
    let bytes = read_maybe_gz(path)?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("{}:{}: not valid JSON ({e})", path.display(), e.line()))?;
    let list: Vec<&Value> = match &v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(m) => m.values().filter_map(Value::as_array).flatten().collect(),
        _ => bail!(
            "{}: expected a FewRel list of examples or an object of relation → examples",
            path.display()
        ),
    };
    let ent = |x: Option<&Value>| -> Option<(String, String)> {
        let a = x?.as_array()?;
        Some((
            a.first()?.as_str()?.to_string(),
            a.get(1)?.as_str()?.to_string(),
        ))
    };
    Ok(list
        .into_iter()
        .map(|ex| FewRelExample {
            tokens: ex
                .get("tokens")
                .and_then(Value::as_array)
                .map(|t| {
                    t.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            head: ent(ex.get("h")),
            tail: ent(ex.get("t")),
        })
        .collect())
}

const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "al", "fig",
    "figs", "no", "vol", "approx", "inc", "ltd", "co", "corp", "mt", "u.s", "u.k", "jan", "feb",
    "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "gen", "gov", "sen",
    "rep", "rev", "ref", "eq", "ca",
];

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
}
