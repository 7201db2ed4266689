//! The sampled contexts of a build, in memory that does not grow with the corpus, the
//! mentions or the entities: every mention the scan finds goes to a run buffer; a full buffer
//! is sorted by (entity, sample key) and written to disk as a run, keeping the k smallest keys
//! of each entity (the others are only counted). The runs are then merged in entity order; the
//! k smallest keys of each entity are its sample — the same as a per-entity heap would keep —
//! and go, in corpus order within the entity, to a file read back window by window.

use anyhow::{bail, Context, Result};
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::spill::SpillRef;
use crate::contexts::{sample_key, Mention};

/// A mention offered by the scan, with the place of its spilled sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rec {
    entity: u32,
    key: u64,
    ordinal: u64,
    start: u32,
    end: u32,
    linked: bool,
    /// Mentions of this entity that the record's run left out (beyond the k it kept); they
    /// count towards the entity's `found`.
    dropped: u32,
    at: SpillRef,
}

const REC_BYTES: usize = 65;

impl Rec {
    /// The merge order: entity, then the sampler's key (sample key, place in the corpus).
    fn order(&self) -> (u32, u64, u64, u32, u32, bool) {
        (
            self.entity,
            self.key,
            self.ordinal,
            self.start,
            self.end,
            self.linked,
        )
    }

    fn encode(&self) -> [u8; REC_BYTES] {
        let mut b = [0u8; REC_BYTES];
        let mut w = &mut b[..];
        for x in [self.key, self.ordinal, self.at.offset] {
            w[..8].copy_from_slice(&x.to_le_bytes());
            w = &mut w[8..];
        }
        for x in [
            self.entity,
            self.start,
            self.end,
            self.dropped,
            self.at.len,
            self.at.file,
            self.at.line,
            self.at.sentence,
        ] {
            w[..4].copy_from_slice(&x.to_le_bytes());
            w = &mut w[4..];
        }
        w[0] = u8::from(self.linked);
        w[1..9].copy_from_slice(&self.at.record.to_le_bytes());
        b
    }

    fn decode(b: &[u8; REC_BYTES]) -> Rec {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Rec {
            key: u64_at(0),
            ordinal: u64_at(8),
            entity: u32_at(24),
            start: u32_at(28),
            end: u32_at(32),
            dropped: u32_at(36),
            linked: b[56] != 0,
            at: SpillRef {
                offset: u64_at(16),
                len: u32_at(40),
                file: u32_at(44),
                line: u32_at(48),
                sentence: u32_at(52),
                record: u64_at(57),
            },
        }
    }
}

/// A sampled context as the encoder loads it: entity, span, and where its sentence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampled {
    pub entity: u32,
    pub start: u32,
    pub end: u32,
    pub linked: bool,
    pub at: SpillRef,
}

const SAMPLED_BYTES: usize = 45;

impl Sampled {
    fn encode(&self) -> [u8; SAMPLED_BYTES] {
        let mut b = [0u8; SAMPLED_BYTES];
        b[0..8].copy_from_slice(&self.at.offset.to_le_bytes());
        for (i, x) in [
            self.entity,
            self.start,
            self.end,
            self.at.len,
            self.at.file,
            self.at.line,
            self.at.sentence,
        ]
        .into_iter()
        .enumerate()
        {
            b[8 + 4 * i..12 + 4 * i].copy_from_slice(&x.to_le_bytes());
        }
        b[36] = u8::from(self.linked);
        b[37..45].copy_from_slice(&self.at.record.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Sampled {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Sampled {
            entity: u32_at(8),
            start: u32_at(12),
            end: u32_at(16),
            linked: b[36] != 0,
            at: SpillRef {
                offset: u64::from_le_bytes(b[0..8].try_into().expect("8 bytes")),
                len: u32_at(20),
                file: u32_at(24),
                line: u32_at(28),
                sentence: u32_at(32),
                record: u64::from_le_bytes(b[37..45].try_into().expect("8 bytes")),
            },
        }
    }
}

/// How much memory the sampling may take: the run buffer, and the read buffers of a merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortBudget {
    /// Records held before a run is written (at least 4).
    pub run_records: usize,
    /// Runs merged at once (2 to [`MAX_FAN_IN`]); more runs are merged in passes.
    pub fan_in: usize,
    /// Bytes of each buffered reader and writer.
    pub io_buffer: usize,
}

/// The most runs a merge reads at once (each an open file).
pub const MAX_FAN_IN: usize = 128;

impl SortBudget {
    /// The sampling's share of a build's memory: half for the run buffer, a quarter for
    /// the readers of a merge.
    pub fn from_bytes(bytes: u64) -> SortBudget {
        let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        let run_records = (bytes / 2 / std::mem::size_of::<Rec>()).clamp(4, u32::MAX as usize);
        let readers = bytes / 4;
        let fan_in = (readers / 4096).clamp(2, MAX_FAN_IN);
        let io_buffer = (readers / (fan_in + 1)).clamp(4096, 1 << 20);
        SortBudget {
            run_records,
            fan_in,
            io_buffer,
        }
    }

    /// Memory at most, in bytes.
    pub fn bytes(&self) -> u64 {
        (self.run_records * std::mem::size_of::<Rec>() + (self.fan_in + 1) * self.io_buffer) as u64
    }
}

/// A sorted run on disk.
struct Run {
    path: PathBuf,
    records: u64,
}

/// Collects the mentions of a scan; see the module documentation.
pub struct SampleRuns {
    k: usize,
    seed: u64,
    dir: PathBuf,
    budget: SortBudget,
    buf: Vec<Rec>,
    runs: Vec<Run>,
    next_name: usize,
    /// Records left in the buffer after pruning, when no run was written.
    offered_kept: u64,
    /// Mentions offered.
    pub offered: u64,
}

/// What the merge produced: the sample of every entity, in entity order.
pub struct Collected {
    /// The sampled contexts, grouped by entity (corpus order within one).
    pub samples: SampleFile,
    /// Sampled contexts per entity.
    pub per_entity: Vec<u32>,
    /// Mentions found per entity (before sampling).
    pub found: FoundFile,
    /// Runs written to disk (0: the mentions fitted in the buffer).
    pub runs: usize,
    /// Merge passes before the last.
    pub passes: usize,
}

impl SampleRuns {
    /// A collector whose runs go to `dir` (which must exist).
    pub fn new(dir: &Path, k: usize, seed: u64, budget: SortBudget) -> SampleRuns {
        // Reserved once (its pages are taken as it fills), so that growing it never holds an
        // old and a new copy; where the system refuses that much, it grows as it goes.
        let mut buf = Vec::new();
        let _ = buf.try_reserve_exact(budget.run_records);
        SampleRuns {
            k,
            seed,
            dir: dir.to_path_buf(),
            budget,
            buf,
            runs: Vec::new(),
            next_name: 0,
            offered_kept: 0,
            offered: 0,
        }
    }

    /// Records a mention of the sentence with this ordinal, whose text was spilled at `at`.
    pub fn offer(&mut self, ordinal: u64, m: &Mention, at: SpillRef) -> Result<()> {
        self.offered += 1;
        self.buf.push(Rec {
            entity: m.entity as u32,
            key: sample_key(self.seed, ordinal, m.start),
            ordinal,
            start: m.start as u32,
            end: m.end as u32,
            linked: m.linked,
            dropped: 0,
            at,
        });
        if self.buf.len() >= self.budget.run_records {
            self.write_run()?;
        }
        Ok(())
    }

    fn new_path(&mut self, what: &str) -> PathBuf {
        self.next_name += 1;
        self.dir.join(format!("{what}-{}.bin", self.next_name))
    }

    /// Sorts the buffer, keeps the k smallest keys of each entity, and writes it as a run.
    fn write_run(&mut self) -> Result<()> {
        sort_and_prune(&mut self.buf, self.k);
        let path = self.new_path("run");
        let mut w = create(&path, self.budget.io_buffer)?;
        for r in &self.buf {
            w.write_all(&r.encode())
                .with_context(|| format!("cannot write {}", crate::escape::path(&path)))?;
        }
        finish(w, &path)?;
        self.runs.push(Run {
            path,
            records: self.buf.len() as u64,
        });
        self.buf.clear();
        Ok(())
    }

    /// Merges the runs: each entity's sample (the k smallest keys), in corpus order, to a
    /// file; `progress` is called with the records merged so far and their number.
    /// `None` when stopped by `cancel`.
    pub fn finish(
        mut self,
        n_entities: usize,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Option<Collected>> {
        let mut passes = 0;
        let mut sources: Vec<Box<dyn Iterator<Item = Result<Rec>>>> = Vec::new();
        let runs_written;
        if self.runs.is_empty() {
            sort_and_prune(&mut self.buf, self.k);
            self.offered_kept = self.buf.len() as u64;
            runs_written = 0;
            sources.push(Box::new(std::mem::take(&mut self.buf).into_iter().map(Ok)));
        } else {
            if !self.buf.is_empty() {
                self.write_run()?;
            }
            self.buf = Vec::new();
            runs_written = self.runs.len();
            // Merge passes until one merge reads every run.
            while self.runs.len() > self.budget.fan_in {
                passes += 1;
                let runs = std::mem::take(&mut self.runs);
                let mut chunks = runs.into_iter().peekable();
                while chunks.peek().is_some() {
                    let group: Vec<Run> = chunks.by_ref().take(self.budget.fan_in).collect();
                    let path = self.new_path("run");
                    let mut w = create(&path, self.budget.io_buffer)?;
                    let mut records = 0u64;
                    let readers = group
                        .iter()
                        .map(|r| RunReader::open(r, self.budget.io_buffer))
                        .collect::<Result<Vec<_>>>()?;
                    merge(readers, |r| {
                        records += 1;
                        w.write_all(&r.encode())
                            .with_context(|| format!("cannot write {}", crate::escape::path(&path)))
                    })?;
                    finish(w, &path)?;
                    for r in group {
                        let _ = std::fs::remove_file(&r.path);
                    }
                    self.runs.push(Run { path, records });
                }
            }
        }
        let total: u64 = match sources.first() {
            Some(_) => self.offered_kept,
            None => self.runs.iter().map(|r| r.records).sum(),
        };
        let samples_path = self.new_path("samples");
        let found_path = self.new_path("found");
        let mut out = create(&samples_path, self.budget.io_buffer)?;
        let mut found_out = create(&found_path, self.budget.io_buffer)?;
        let mut per_entity = vec![0u32; n_entities];
        let mut written = 0u64;
        let mut found_next = 0usize;
        let mut group: Vec<Rec> = Vec::new();
        let mut group_found = 0u64;
        let mut merged = 0u64;
        let k = self.k;
        let mut flush = |group: &mut Vec<Rec>, found: u64| -> Result<()> {
            let Some(first) = group.first() else {
                return Ok(());
            };
            let e = first.entity as usize;
            if e >= n_entities || e < found_next {
                bail!("internal error: sampled entity {e} out of order");
            }
            while found_next < e {
                found_out.write_all(&0u64.to_le_bytes())?;
                found_next += 1;
            }
            found_out.write_all(&found.to_le_bytes())?;
            found_next += 1;
            group.truncate(k);
            group.sort_by_key(|r| (r.ordinal, r.start, r.end, r.linked));
            for r in group.iter() {
                let s = Sampled {
                    entity: r.entity,
                    start: r.start,
                    end: r.end,
                    linked: r.linked,
                    at: r.at,
                };
                out.write_all(&s.encode()).with_context(|| {
                    format!("cannot write {}", crate::escape::path(&samples_path))
                })?;
            }
            per_entity[e] = group.len() as u32;
            written += group.len() as u64;
            group.clear();
            Ok(())
        };
        let mut take = |r: Rec| -> Result<()> {
            if group.first().is_some_and(|g| g.entity != r.entity) {
                flush(&mut group, group_found)?;
                group_found = 0;
            }
            group_found += 1 + u64::from(r.dropped);
            // Past the k smallest, a record only counts.
            if group.len() < k {
                group.push(r);
            }
            merged += 1;
            if merged.is_multiple_of(65536) {
                progress(merged, total);
                if cancel.load(Ordering::Relaxed) {
                    bail!(Cancelled);
                }
            }
            Ok(())
        };
        let merged_all = if runs_written == 0 {
            sources
                .pop()
                .expect("the buffer")
                .try_for_each(|r| take(r?))
        } else {
            self.runs
                .iter()
                .map(|r| RunReader::open(r, self.budget.io_buffer))
                .collect::<Result<Vec<_>>>()
                .and_then(|readers| merge(readers, &mut take))
        };
        for r in std::mem::take(&mut self.runs) {
            let _ = std::fs::remove_file(&r.path);
        }
        if let Err(e) = merged_all {
            if e.is::<Cancelled>() {
                return Ok(None);
            }
            return Err(e);
        }
        flush(&mut group, group_found)?;
        while found_next < n_entities {
            found_out.write_all(&0u64.to_le_bytes())?;
            found_next += 1;
        }
        finish(out, &samples_path)?;
        finish(found_out, &found_path)?;
        progress(merged, total.max(merged));
        Ok(Some(Collected {
            samples: SampleFile::open(samples_path, written)?,
            per_entity,
            found: FoundFile::open(found_path, n_entities)?,
            runs: runs_written,
            passes,
        }))
    }
}

/// A merge stopped by its cancel flag.
#[derive(Debug)]
struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("cancelled")
    }
}

impl std::error::Error for Cancelled {}

/// Sorts records into merge order and keeps the k first of each entity, counting the others
/// on the entity's first record.
fn sort_and_prune(buf: &mut Vec<Rec>, k: usize) {
    buf.sort_unstable_by_key(Rec::order);
    let mut out = 0usize;
    let mut i = 0usize;
    while i < buf.len() {
        let e = buf[i].entity;
        let mut j = i;
        while j < buf.len() && buf[j].entity == e {
            j += 1;
        }
        let keep = (j - i).min(k.max(1));
        let extra: u64 = (j - i - keep) as u64
            + buf[i + keep..j]
                .iter()
                .map(|r| u64::from(r.dropped))
                .sum::<u64>();
        for t in 0..keep {
            buf[out + t] = buf[i + t];
        }
        let first = &mut buf[out];
        first.dropped = u32::try_from(u64::from(first.dropped) + extra).unwrap_or(u32::MAX);
        out += keep;
        i = j;
    }
    buf.truncate(out);
}

fn create(path: &Path, buffer: usize) -> Result<BufWriter<File>> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create spill file {}", crate::escape::path(path)))?;
    Ok(BufWriter::with_capacity(buffer, f))
}

fn finish(mut w: BufWriter<File>, path: &Path) -> Result<()> {
    w.flush()
        .with_context(|| format!("cannot write {}", crate::escape::path(path)))
}

/// Reads a run's records in order.
struct RunReader {
    r: BufReader<File>,
    left: u64,
    path: PathBuf,
}

impl RunReader {
    fn open(run: &Run, buffer: usize) -> Result<RunReader> {
        let f = File::open(&run.path)
            .with_context(|| format!("cannot read {}", crate::escape::path(&run.path)))?;
        Ok(RunReader {
            r: BufReader::with_capacity(buffer, f),
            left: run.records,
            path: run.path.clone(),
        })
    }

    fn next(&mut self) -> Result<Option<Rec>> {
        if self.left == 0 {
            return Ok(None);
        }
        let mut b = [0u8; REC_BYTES];
        self.r.read_exact(&mut b).with_context(|| {
            format!(
                "cannot read {}: it ends early (it was changed)",
                crate::escape::path(&self.path)
            )
        })?;
        self.left -= 1;
        Ok(Some(Rec::decode(&b)))
    }
}

/// Merges sorted runs into `emit`, in merge order (ties: the earlier run first).
fn merge(mut readers: Vec<RunReader>, mut emit: impl FnMut(Rec) -> Result<()>) -> Result<()> {
    type Head = std::cmp::Reverse<((u32, u64, u64, u32, u32, bool), usize)>;
    let mut heads: Vec<Option<Rec>> = Vec::with_capacity(readers.len());
    let mut heap: BinaryHeap<Head> = BinaryHeap::with_capacity(readers.len());
    for (i, r) in readers.iter_mut().enumerate() {
        let head = r.next()?;
        if let Some(h) = &head {
            heap.push(std::cmp::Reverse((h.order(), i)));
        }
        heads.push(head);
    }
    while let Some(std::cmp::Reverse((_, i))) = heap.pop() {
        let rec = heads[i].take().expect("a head for each entry");
        let next = readers[i].next()?;
        if let Some(h) = &next {
            heap.push(std::cmp::Reverse((h.order(), i)));
        }
        heads[i] = next;
        emit(rec)?;
    }
    Ok(())
}

/// The sampled contexts on disk, read by range from any thread.
pub struct SampleFile {
    file: File,
    path: PathBuf,
    len: u64,
}

impl SampleFile {
    fn open(path: PathBuf, len: u64) -> Result<SampleFile> {
        let file = File::open(&path)
            .with_context(|| format!("cannot read {}", crate::escape::path(&path)))?;
        Ok(SampleFile { file, path, len })
    }

    /// Sampled contexts.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The contexts `r`.
    pub fn read(&self, r: Range<usize>) -> Result<Vec<Sampled>> {
        if r.end as u64 > self.len || r.start > r.end {
            bail!("internal error: contexts {r:?} of {} asked for", self.len);
        }
        let mut buf = vec![0u8; r.len() * SAMPLED_BYTES];
        super::spill::read_at(&self.file, &mut buf, (r.start * SAMPLED_BYTES) as u64)
            .with_context(|| format!("cannot read {}", crate::escape::path(&self.path)))?;
        Ok(buf
            .chunks_exact(SAMPLED_BYTES)
            .map(Sampled::decode)
            .collect())
    }
}

/// Mentions found per entity, on disk.
pub struct FoundFile {
    file: File,
    path: PathBuf,
    len: usize,
}

impl FoundFile {
    fn open(path: PathBuf, len: usize) -> Result<FoundFile> {
        let file = File::open(&path)
            .with_context(|| format!("cannot read {}", crate::escape::path(&path)))?;
        Ok(FoundFile { file, path, len })
    }

    /// Mentions found of the entities `r`.
    pub fn read(&self, r: Range<usize>) -> Result<Vec<u64>> {
        if r.end > self.len || r.start > r.end {
            bail!("internal error: entities {r:?} of {} asked for", self.len);
        }
        let mut buf = vec![0u8; r.len() * 8];
        super::spill::read_at(&self.file, &mut buf, (r.start * 8) as u64)
            .with_context(|| format!("cannot read {}", crate::escape::path(&self.path)))?;
        Ok(buf
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contexts::Sampler;

    /// Mentions of a made-up corpus: (sentence ordinal, mention).
    fn mentions(n: usize, entities: usize) -> Vec<(u64, Mention)> {
        let mut x = 0x1234_5678_9abc_def1u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..n)
            .map(|i| {
                let e = (next() % entities as u64) as usize;
                let start = (next() % 40) as usize;
                (
                    (i / 3) as u64,
                    Mention {
                        entity: e,
                        start,
                        end: start + 1 + (next() % 5) as usize,
                        linked: next() % 2 == 0,
                    },
                )
            })
            .collect()
    }

    fn at(ordinal: u64) -> SpillRef {
        SpillRef {
            offset: ordinal * 10,
            len: 10,
            file: 0,
            line: ordinal as u32,
            sentence: 0,
            record: ordinal * 100,
        }
    }

    /// The sample and counts of the in-memory sampler, in build order.
    fn reference(ms: &[(u64, Mention)], n: usize, k: usize) -> (Vec<Sampled>, Vec<u64>) {
        let mut s = Sampler::<SpillRef>::new(n, k, 9);
        for (o, m) in ms {
            s.offer_with(*o, m, || at(*o));
        }
        let found = std::mem::take(&mut s.found);
        let mut v: Vec<Sampled> = s
            .finish_with()
            .into_iter()
            .map(|(sel, at)| Sampled {
                entity: sel.entity,
                start: sel.start,
                end: sel.end,
                linked: sel.linked,
                at,
            })
            .collect();
        v.sort_by_key(|s| s.entity);
        (v, found)
    }

    #[test]
    fn runs_on_disk_sample_as_the_heaps_do_for_any_budget() {
        let (n, k) = (40, 3);
        let ms = mentions(2000, n);
        let (want, want_found) = reference(&ms, n, k);
        for budget in [
            SortBudget::from_bytes(1 << 30),
            SortBudget {
                run_records: 7,
                fan_in: 2,
                io_buffer: 4096,
            },
            SortBudget {
                run_records: 100,
                fan_in: 3,
                io_buffer: 4096,
            },
        ] {
            let dir = tempfile::tempdir().unwrap();
            let mut runs = SampleRuns::new(dir.path(), k, 9, budget);
            for (o, m) in &ms {
                runs.offer(*o, m, at(*o)).unwrap();
            }
            let c = runs
                .finish(n, &AtomicBool::new(false), &mut |_, _| {})
                .unwrap()
                .unwrap();
            assert_eq!(c.samples.len(), want.len() as u64, "{budget:?}");
            assert_eq!(c.samples.read(0..want.len()).unwrap(), want, "{budget:?}");
            assert_eq!(c.found.read(0..n).unwrap(), want_found, "{budget:?}");
            let per: Vec<u32> = (0..n)
                .map(|e| want.iter().filter(|s| s.entity as usize == e).count() as u32)
                .collect();
            assert_eq!(c.per_entity, per);
            if budget.run_records == 7 {
                assert!(c.runs > 100 && c.passes > 1, "{} runs", c.runs);
            }
            // Only the output is left.
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        }
    }

    #[test]
    fn records_keep_every_field() {
        let r = Rec {
            entity: 7,
            key: u64::MAX - 3,
            ordinal: 1 << 40,
            start: 3,
            end: 9,
            linked: true,
            dropped: 12,
            at: SpillRef {
                offset: 1 << 35,
                len: 77,
                file: 2,
                line: 1 << 30,
                sentence: 4,
                record: (1 << 50) + 3,
            },
        };
        assert_eq!(Rec::decode(&r.encode()), r);
        let s = Sampled {
            entity: 5,
            start: 1,
            end: 2,
            linked: true,
            at: r.at,
        };
        assert_eq!(Sampled::decode(&s.encode()), s);
    }
}
