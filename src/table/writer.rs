//! Writes `pelt-table/2` files entity by entity, in bounded memory.
//!
//! Rows arrive in table order. Each stream (vectors, per-row numbers, entity strings, context
//! references, their record offsets and checksums, context texts) goes to its own spill file, or to memory for small tables; at
//! [`TableWriter::finish`] the texts are compressed in blocks and the streams are copied into
//! one safetensors file behind its header. The bytes depend only on what was written, so a
//! table written by a build, a merge of its shards or a conversion is the same file.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::contexts::{crc32, ContextLayout, ContextText, TextSource};
use super::{scale_to_norm, ContextRecord, TableMeta, FORMAT, TEXT_BLOCK};

/// Per-row numbers in `rows.bin`: sum norm (f32), count (u32), found (u64), global row (u32).
const ROW_BYTES: usize = 20;
/// Per-context reference in `refs.bin`: entity, file, line, sentence, start, end, flags.
pub(crate) const REF_FIELDS: usize = 7;
const REF_BYTES: usize = REF_FIELDS * 4;
/// Per-context record offset (u64) and sentence checksum (u32) in `locs.bin`.
const LOC_BYTES: usize = 12;

/// The vector of one row.
pub enum RowVector<'a> {
    /// A raw sum of transform outputs: stored as its direction at the table's norm, with its
    /// length.
    Sum(&'a [f32]),
    /// A vector of any length whose direction is stored, with the length of the sum it came
    /// from.
    Direction { v: &'a [f32], sum_norm: f32 },
    /// Bytes already in the table's dtype at the table's norm (a merge copies them).
    Encoded { bytes: &'a [u8], sum_norm: f32 },
}

/// One entity row.
pub struct EntityRow<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub aliases: &'a [String],
    /// Row in the whole build's entity list (written for shard tables).
    pub global_row: u32,
    pub vector: RowVector<'a>,
    pub found: u64,
}

/// How far a writer got: the lengths of its streams (a checkpoint records them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WriterPos {
    pub rows: u64,
    pub contexts: u64,
    pub text_bytes: u64,
    pub entity_bytes: u64,
}

/// A stream of the table: a spill file or memory.
enum Sink {
    File(BufWriter<File>, PathBuf),
    Mem(Vec<u8>),
}

impl Sink {
    fn open(dir: Option<&Path>, name: &str, keep: Option<u64>) -> Result<Sink> {
        let Some(dir) = dir else {
            return Ok(Sink::Mem(Vec::new()));
        };
        let path = dir.join(name);
        let mut f = match keep {
            None => std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path),
            Some(_) => std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path),
        }
        .with_context(|| format!("cannot open spill file {}", crate::escape::path(&path)))?;
        if let Some(len) = keep {
            let have = f.metadata()?.len();
            if have < len {
                bail!(
                    "spill file {} holds {have} bytes, fewer than the checkpoint's {len}: it was changed",
                    crate::escape::path(&path)
                );
            }
            f.set_len(len)?;
            f.seek(SeekFrom::End(0))?;
        }
        Ok(Sink::File(BufWriter::with_capacity(1 << 20, f), path))
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::File(w, _) => w,
            Sink::Mem(v) => v,
        }
    }

    fn sync(&mut self) -> Result<()> {
        if let Sink::File(w, path) = self {
            w.flush()
                .with_context(|| format!("cannot write {}", crate::escape::path(path)))?;
            w.get_ref().sync_data()?;
        }
        Ok(())
    }

    /// A reader over everything written.
    fn reader(&mut self) -> Result<Box<dyn Read + '_>> {
        Ok(match self {
            Sink::File(w, path) => {
                w.flush()
                    .with_context(|| format!("cannot write {}", crate::escape::path(path)))?;
                let f = File::open(&*path)
                    .with_context(|| format!("cannot read {}", crate::escape::path(path)))?;
                Box::new(BufReader::with_capacity(1 << 20, f))
            }
            Sink::Mem(v) => Box::new(&v[..]),
        })
    }
}

/// Writes a table row by row; see the module documentation.
pub struct TableWriter {
    meta: TableMeta,
    norm: f32,
    /// Shard tables carry the global row of each of their rows.
    shard: bool,
    dir: Option<PathBuf>,
    emb: Sink,
    rows: Sink,
    ents: Sink,
    refs: Sink,
    locs: Sink,
    text: Sink,
    layout: ContextLayout,
    pos: WriterPos,
    buf: Vec<u8>,
}

const STREAMS: [&str; 6] = [
    "vectors.bin",
    "rows.bin",
    "entities.jsonl",
    "refs.bin",
    "texts.bin",
    "locs.bin",
];

impl TableWriter {
    /// A writer whose streams spill to files in `dir` (created, and removed by `finish`), or
    /// stay in memory (`None`).
    pub fn new(meta: TableMeta, norm: f32, dir: Option<&Path>) -> Result<TableWriter> {
        Self::open(meta, norm, dir, None)
    }

    /// Reopens the spill files of a writer in `dir` at `pos` (from a checkpoint): what was
    /// written after it is dropped.
    pub fn resume(meta: TableMeta, norm: f32, dir: &Path, pos: WriterPos) -> Result<TableWriter> {
        Self::open(meta, norm, Some(dir), Some(pos))
    }

    fn open(
        meta: TableMeta,
        norm: f32,
        dir: Option<&Path>,
        pos: Option<WriterPos>,
    ) -> Result<TableWriter> {
        if !(norm.is_finite() && norm > 0.0) {
            bail!("norm must be a positive finite number, found {norm}");
        }
        if let (Some(d), None) = (dir, pos) {
            std::fs::create_dir_all(d)
                .with_context(|| format!("cannot create {}", crate::escape::path(d)))?;
            for s in STREAMS {
                let _ = std::fs::remove_file(d.join(s));
            }
        }
        let p = pos.unwrap_or_default();
        let h = meta.hidden_size as u64;
        let sz = meta.dtype.size() as u64;
        let keep = |n: u64| pos.map(|_| n);
        let shard = crate::table::parse_shard_label(&meta.shard)?.is_some();
        Ok(TableWriter {
            emb: Sink::open(dir, STREAMS[0], keep(p.rows * h * sz))?,
            rows: Sink::open(dir, STREAMS[1], keep(p.rows * ROW_BYTES as u64))?,
            ents: Sink::open(dir, STREAMS[2], keep(p.entity_bytes))?,
            refs: Sink::open(dir, STREAMS[3], keep(p.contexts * REF_BYTES as u64))?,
            text: Sink::open(dir, STREAMS[4], keep(p.text_bytes))?,
            locs: Sink::open(dir, STREAMS[5], keep(p.contexts * LOC_BYTES as u64))?,
            layout: ContextLayout::default(),
            meta,
            norm,
            shard,
            dir: dir.map(Path::to_path_buf),
            pos: p,
            buf: Vec::new(),
        })
    }

    pub fn position(&self) -> WriterPos {
        self.pos
    }

    /// Whether the table keeps its sentences, and the corpus files its contexts point into
    /// (set before the first context, and again after a resume: a table keeps its sentences,
    /// or not, throughout).
    pub fn set_contexts(&mut self, layout: ContextLayout) -> Result<()> {
        // (A writer resumed from a checkpoint is told its layout again: its spilled texts, or
        // their absence, must fit.)
        if layout.text == ContextText::Stored && self.pos.contexts > 0 && self.pos.text_bytes == 0 {
            bail!("internal error: a table without text was asked to store text after its first context");
        }
        self.layout = layout;
        Ok(())
    }

    /// Flushes and syncs every spill file (before a checkpoint names the position).
    pub fn sync(&mut self) -> Result<()> {
        for s in [
            &mut self.emb,
            &mut self.rows,
            &mut self.ents,
            &mut self.refs,
            &mut self.text,
            &mut self.locs,
        ] {
            s.sync()?;
        }
        Ok(())
    }

    /// Appends a row and its supporting contexts (their `entity` field is ignored: they belong
    /// to this row).
    pub fn push<'c>(
        &mut self,
        row: &EntityRow,
        contexts: impl IntoIterator<Item = &'c ContextRecord>,
    ) -> Result<()> {
        let h = self.meta.hidden_size;
        let local = u32::try_from(self.pos.rows).context("more than 2^32 rows")?;
        let sum_norm = match row.vector {
            RowVector::Sum(v) | RowVector::Direction { v, .. } => {
                if v.len() != h {
                    bail!("row {local}: vector of {} values, expected {h}", v.len());
                }
                let len = norm_of(v);
                if !len.is_finite() {
                    bail!(
                        "entity {}: its vector holds values that are not finite numbers",
                        crate::escape::text(row.id)
                    );
                }
                let dir = scale_to_norm(v, self.norm);
                self.buf.clear();
                self.meta.dtype.encode(&dir, &mut self.buf);
                self.emb.writer().write_all(&self.buf)?;
                match row.vector {
                    RowVector::Direction { sum_norm, .. } => sum_norm,
                    _ => len as f32,
                }
            }
            RowVector::Encoded { bytes, sum_norm } => {
                if bytes.len() != h * self.meta.dtype.size() {
                    bail!(
                        "row {local}: {} vector bytes, expected {}",
                        bytes.len(),
                        h * self.meta.dtype.size()
                    );
                }
                self.emb.writer().write_all(bytes)?;
                sum_norm
            }
        };
        let mut count = 0u32;
        let keep_text = self.layout.text == ContextText::Stored;
        for c in contexts {
            let (a, b) = (c.start as usize, c.end as usize);
            let has_text = c.source != TextSource::Absent;
            if a >= b || (has_text && c.text.get(a..b).is_none()) {
                bail!(
                    "entity {}: mention span {a}..{b} is not inside its sentence ({} bytes) on character boundaries",
                    crate::escape::text(row.id),
                    c.text.len()
                );
            }
            let checksum = match (has_text, c.checksum) {
                (true, _) => crc32(c.text.as_bytes()),
                (false, Some(sum)) => sum,
                (false, None) => bail!(
                    "entity {}: a context without its sentence or the sentence's checksum",
                    crate::escape::text(row.id)
                ),
            };
            if keep_text && !has_text {
                bail!(
                    "entity {}: a context without its sentence, for a table that stores its sentences (read them from the corpus first)",
                    crate::escape::text(row.id)
                );
            }
            let fields = [
                local,
                c.file,
                c.line,
                c.sentence,
                c.start,
                c.end,
                u32::from(c.linked),
            ];
            let w = self.refs.writer();
            for f in fields {
                w.write_all(&f.to_le_bytes())?;
            }
            let w = self.locs.writer();
            w.write_all(&c.offset.to_le_bytes())?;
            w.write_all(&checksum.to_le_bytes())?;
            if keep_text {
                let len = u32::try_from(c.text.len()).context("a sentence over 4 GiB")?;
                let w = self.text.writer();
                w.write_all(&len.to_le_bytes())?;
                w.write_all(c.text.as_bytes())?;
                self.pos.text_bytes += 4 + len as u64;
            }
            self.pos.contexts += 1;
            count += 1;
        }
        let w = self.rows.writer();
        w.write_all(&sum_norm.to_le_bytes())?;
        w.write_all(&count.to_le_bytes())?;
        w.write_all(&row.found.to_le_bytes())?;
        w.write_all(&row.global_row.to_le_bytes())?;
        self.buf.clear();
        if row.aliases.is_empty() {
            serde_json::to_writer(&mut self.buf, &(row.id, row.name))?;
        } else {
            serde_json::to_writer(&mut self.buf, &(row.id, row.name, row.aliases))?;
        }
        self.buf.push(b'\n');
        self.ents.writer().write_all(&self.buf)?;
        self.pos.entity_bytes += self.buf.len() as u64;
        self.pos.rows += 1;
        Ok(())
    }

    /// Writes the table atomically to `path` and removes the spill files.
    pub fn finish(mut self, path: &Path) -> Result<()> {
        crate::io::write_atomic_with(path, &mut |w| self.assemble(w))?;
        self.remove_spill();
        Ok(())
    }

    /// The table's bytes (for small tables written in memory).
    pub fn finish_bytes(mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.assemble(&mut out)?;
        self.remove_spill();
        Ok(out)
    }

    fn remove_spill(&mut self) {
        if let Some(d) = &self.dir {
            for s in STREAMS {
                let _ = std::fs::remove_file(d.join(s));
            }
            let _ = std::fs::remove_file(d.join("texts.z"));
            let _ = std::fs::remove_dir(d);
        }
    }

    fn assemble(&mut self, out: &mut dyn Write) -> Result<()> {
        let n = self.pos.rows as usize;
        let c = self.pos.contexts as usize;
        let h = self.meta.hidden_size;
        let keep_text = self.layout.text == ContextText::Stored;
        // Texts, compressed in blocks of TEXT_BLOCK contexts.
        let mut ztext = Sink::open(self.dir.as_deref(), "texts.z", None)?;
        let mut index: Vec<u64> = vec![0];
        if keep_text {
            let mut r = self.text.reader()?;
            let mut block = Vec::new();
            let mut in_block = 0usize;
            let mut written = 0u64;
            let mut flush =
                |block: &mut Vec<u8>, ztext: &mut Sink, index: &mut Vec<u64>| -> Result<()> {
                    let mut z =
                        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
                    z.write_all(block)?;
                    let bytes = z.finish()?;
                    ztext.writer().write_all(&bytes)?;
                    written += bytes.len() as u64;
                    index.push(written);
                    block.clear();
                    Ok(())
                };
            for _ in 0..c {
                let mut len = [0u8; 4];
                r.read_exact(&mut len).context("spilled texts end early")?;
                let l = u32::from_le_bytes(len) as usize;
                block.extend_from_slice(&len);
                let at = block.len();
                block.resize(at + l, 0);
                r.read_exact(&mut block[at..])
                    .context("spilled texts end early")?;
                in_block += 1;
                if in_block == TEXT_BLOCK {
                    flush(&mut block, &mut ztext, &mut index)?;
                    in_block = 0;
                }
            }
            if in_block > 0 {
                flush(&mut block, &mut ztext, &mut index)?;
            }
        }
        let ztext_len = *index.last().expect("index starts with 0");
        let mut meta: BTreeMap<&str, String> = BTreeMap::new();
        let m = &self.meta;
        meta.insert("format", FORMAT.to_string());
        meta.insert("norm", format!("{}", self.norm));
        meta.insert("k", m.k.to_string());
        meta.insert("seed", m.seed.to_string());
        meta.insert("max_len", m.max_len.to_string());
        meta.insert("model", m.model.clone());
        meta.insert("model_sha256", m.model_sha256.clone());
        meta.insert("hidden_size", h.to_string());
        meta.insert("corpus", m.corpus.clone());
        meta.insert("corpus_sha256", m.corpus_sha256.clone());
        meta.insert("shard", m.shard.clone());
        meta.insert("case_sensitive", m.case_sensitive.to_string());
        meta.insert("mentions", m.mentions.clone());
        meta.insert("window", m.window.to_string());
        meta.insert("entities_total", m.entities_total.to_string());
        meta.insert("entity_list_sha256", m.entity_list_sha256.clone());
        meta.insert("text_block", TEXT_BLOCK.to_string());
        meta.insert("context_text", self.layout.text.as_str().to_string());
        let mut files = Vec::new();
        for f in &self.layout.corpus_files {
            serde_json::to_writer(&mut files, f)?;
            files.push(b'\n');
        }
        // Tensors in file order; `embeddings` first, so that f32 rows are aligned in a mapping.
        let mut tensors: Vec<(&str, &str, Vec<usize>, usize)> = vec![
            (
                "embeddings",
                m.dtype.name(),
                vec![n, h],
                n * h * m.dtype.size(),
            ),
            ("sum_norms", "F32", vec![n], n * 4),
            ("counts", "U32", vec![n], n * 4),
            ("found", "U64", vec![n], n * 8),
            ("context_refs", "U32", vec![c, REF_FIELDS], c * REF_BYTES),
            ("context_offsets", "U64", vec![c], c * 8),
            ("context_checksums", "U32", vec![c], c * 4),
        ];
        if keep_text {
            tensors.push((
                "context_text_index",
                "U64",
                vec![index.len()],
                index.len() * 8,
            ));
            tensors.push((
                "context_text",
                "U8",
                vec![ztext_len as usize],
                ztext_len as usize,
            ));
        }
        tensors.push((
            "entities",
            "U8",
            vec![self.pos.entity_bytes as usize],
            self.pos.entity_bytes as usize,
        ));
        tensors.push(("corpus_files", "U8", vec![files.len()], files.len()));
        if self.shard {
            tensors.push(("rows", "U32", vec![n], n * 4));
        }
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), serde_json::to_value(&meta)?);
        let mut offset = 0usize;
        for (name, dtype, shape, len) in &tensors {
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len]}),
            );
            offset += len;
        }
        let mut hb = serde_json::to_vec(&header)?;
        while hb.len() % 8 != 0 {
            hb.push(b' ');
        }
        out.write_all(&(hb.len() as u64).to_le_bytes())?;
        out.write_all(&hb)?;
        copy_exact(
            &mut *self.emb.reader()?,
            out,
            (n * h * m.dtype.size()) as u64,
            "vectors",
        )?;
        // The per-row numbers, one column at a time.
        for (at, width) in [(0usize, 4usize), (4, 4), (8, 8)] {
            let mut r = self.rows.reader()?;
            let mut rec = [0u8; ROW_BYTES];
            for _ in 0..n {
                r.read_exact(&mut rec).context("spilled rows end early")?;
                out.write_all(&rec[at..at + width])?;
            }
        }
        copy_exact(
            &mut *self.refs.reader()?,
            out,
            (c * REF_BYTES) as u64,
            "context references",
        )?;
        // Record offsets, then checksums.
        for (at, width) in [(0usize, 8usize), (8, 4)] {
            let mut r = self.locs.reader()?;
            let mut rec = [0u8; LOC_BYTES];
            for _ in 0..c {
                r.read_exact(&mut rec)
                    .context("spilled context offsets end early")?;
                out.write_all(&rec[at..at + width])?;
            }
        }
        if keep_text {
            for x in &index {
                out.write_all(&x.to_le_bytes())?;
            }
            copy_exact(&mut *ztext.reader()?, out, ztext_len, "texts")?;
        }
        copy_exact(
            &mut *self.ents.reader()?,
            out,
            self.pos.entity_bytes,
            "entities",
        )?;
        out.write_all(&files)?;
        if self.shard {
            let mut r = self.rows.reader()?;
            let mut rec = [0u8; ROW_BYTES];
            for _ in 0..n {
                r.read_exact(&mut rec).context("spilled rows end early")?;
                out.write_all(&rec[16..20])?;
            }
        }
        drop(ztext);
        Ok(())
    }
}

fn copy_exact(r: &mut dyn Read, w: &mut dyn Write, len: u64, what: &str) -> Result<()> {
    let copied = std::io::copy(&mut r.take(len), w)?;
    if copied != len {
        bail!("spilled {what} hold {copied} bytes, expected {len}");
    }
    Ok(())
}

pub(crate) fn norm_of(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt()
}
