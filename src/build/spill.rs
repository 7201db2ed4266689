//! The sentences of sampled mentions, spilled to a file during the scan so that a build's
//! memory does not grow with the contexts it keeps; read back window by window.

use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Where a spilled sentence is, and where it came from in the corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpillRef {
    pub offset: u64,
    pub len: u32,
    pub file: u32,
    pub line: u32,
    pub sentence: u32,
    /// Byte offset of the sentence's line in its corpus file ([`crate::corpus::NO_OFFSET`]
    /// where the format does not tell).
    pub record: u64,
}

/// A build's folder of spill files (sentences, sorted runs of mentions, the sample), with a
/// name no other build uses; removed with everything in it when dropped.
pub struct SpillDir {
    path: PathBuf,
}

impl SpillDir {
    /// A new folder in `root` (created if missing).
    pub fn create(root: &Path) -> Result<SpillDir> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create {}", crate::escape::path(root)))?;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        for _ in 0..64 {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = root.join(format!(".pelt-spill-{}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(SpillDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot create spill folder {}", crate::escape::path(&path))
                    })
                }
            }
        }
        anyhow::bail!(
            "cannot create a spill folder in {}",
            crate::escape::path(root)
        )
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// An append-only file of sentences, removed when dropped.
pub struct SentenceSpill {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    file: File,
    len: u64,
}

impl SentenceSpill {
    /// A new spill file in `dir` (created if missing), with a name no other build uses.
    pub fn create(dir: &Path) -> Result<SentenceSpill> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create {}", crate::escape::path(dir)))?;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        for _ in 0..64 {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.join(format!(".pelt-sentences-{}-{n}", std::process::id()));
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(f) => {
                    let file = f.try_clone()?;
                    return Ok(SentenceSpill {
                        path,
                        out: Some(BufWriter::with_capacity(1 << 20, f)),
                        file,
                        len: 0,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot create spill file {}", crate::escape::path(&path))
                    })
                }
            }
        }
        anyhow::bail!("cannot create a spill file in {}", crate::escape::path(dir))
    }

    /// Appends a sentence (of corpus file `file`, `line`, `sentence`, the line at byte
    /// `record` of the file).
    pub fn push(
        &mut self,
        text: &str,
        file: u32,
        line: u32,
        sentence: u32,
        record: u64,
    ) -> Result<SpillRef> {
        let out = self
            .out
            .as_mut()
            .context("the spill is closed for writing")?;
        out.write_all(text.as_bytes())
            .with_context(|| format!("cannot write {}", crate::escape::path(&self.path)))?;
        let r = SpillRef {
            offset: self.len,
            len: u32::try_from(text.len()).context("a sentence over 4 GiB")?,
            file,
            line,
            sentence,
            record,
        };
        self.len += text.len() as u64;
        Ok(r)
    }

    /// Ends writing; the spill is read from then on.
    pub fn close(&mut self) -> Result<()> {
        if let Some(mut out) = self.out.take() {
            out.flush()
                .with_context(|| format!("cannot write {}", crate::escape::path(&self.path)))?;
        }
        Ok(())
    }

    /// Bytes spilled.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sentence at `r` (after [`SentenceSpill::close`]; from any thread).
    pub fn read(&self, r: &SpillRef) -> Result<String> {
        let mut buf = vec![0u8; r.len as usize];
        read_at(&self.file, &mut buf, r.offset)
            .with_context(|| format!("cannot read {}", crate::escape::path(&self.path)))?;
        String::from_utf8(buf)
            .context("a spilled sentence is not UTF-8: the spill file was changed")
    }
}

impl Drop for SentenceSpill {
    fn drop(&mut self) {
        self.out = None;
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(unix)]
pub(crate) fn read_at(f: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, offset)
}

#[cfg(windows)]
pub(crate) fn read_at(f: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = f.seek_read(buf, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_come_back_and_the_file_goes_with_the_spill() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SentenceSpill::create(dir.path()).unwrap();
        let a = s.push("Aspirin lowers fever.", 0, 1, 0, 0).unwrap();
        let b = s.push("Ünïcode ok", 2, 7, 1, 40).unwrap();
        s.close().unwrap();
        assert_eq!(s.read(&b).unwrap(), "Ünïcode ok");
        assert_eq!(s.read(&a).unwrap(), "Aspirin lowers fever.");
        assert_eq!((b.file, b.line, b.sentence, b.record), (2, 7, 1, 40));
        let path = s.path.clone();
        assert!(path.exists());
        drop(s);
        assert!(!path.exists(), "the spill is removed");
    }
}
