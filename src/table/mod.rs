//! The entity table and its file formats: safetensors (`pelt-table/2`), Embedding Projector TSV.
//!
//! A table file is opened by mapping it into memory: only its small per-row columns and the
//! entity strings are read at once; vectors and contexts are read where they are used.
//!
//! Layout of a `.safetensors` table (`pelt-table/2`), tensors in file order:
//! - `embeddings` F32, F16 or BF16 `[N, H]`: each entity's vector at the table's `norm` (zero
//!   for an entity never found);
//! - `sum_norms` F32 `[N]`: the length of each raw sum before rescaling;
//! - `counts` U32 `[N]`: contexts encoded per entity; `found` U64 `[N]`: mentions seen before
//!   sampling to K;
//! - `context_refs` U32 `[C, 7]`: per supporting context, grouped by entity in row order:
//!   entity row, corpus file index (into `corpus_files`), line (1-based; the example number
//!   for FewRel, the title line for PubTator), sentence index in the line, mention start, end
//!   (bytes in the sentence), flags (1: linked);
//! - `context_offsets` U64 `[C]`: the byte offset of each context's line in its decompressed
//!   corpus file (plain text and JSON Lines; `u64::MAX` for other formats);
//! - `context_checksums` U32 `[C]`: CRC-32 of each sentence's UTF-8 bytes, so that a sentence
//!   read back from the corpus is known to be the one the table was built from;
//! - `context_text_index` U64 `[B + 1]` and `context_text` U8: the sentences, deflated in
//!   blocks of `text_block` contexts (each a u32 length and the UTF-8 bytes); absent when
//!   metadata `context_text` is `none` (the sentences are then read from the corpus);
//! - `entities` U8: JSON Lines, one `[id, name]` or `[id, name, [aliases…]]` per row;
//! - `corpus_files` U8: JSON Lines, one string per corpus file in the order of the build's
//!   walk: its path relative to the deepest folder holding them all, `/`-separated;
//! - `rows` U32 `[N]` (shard tables only): each row's place in the whole build.
//!
//! String metadata: `format`, `norm`, `k`, `seed`, `max_len`, `model`, `model_sha256`,
//! `hidden_size`, `corpus`, `corpus_sha256`, `shard`, `case_sensitive`, `mentions`, `window`,
//! `entities_total`, `entity_list_sha256`, `text_block`, `context_text` (`stored` or `none`).
//!
//! Tables written before `context_offsets`, `context_checksums`, `corpus_files` and
//! `context_text` open too: their contexts are read from their stored text only. Tables of the
//! first format (`pelt-table/1`) open too: they are converted in memory.

mod contexts;
mod legacy;
mod merge;
mod writer;

use anyhow::{bail, Context, Result};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::io::Write;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use crate::escape;
use crate::io::write_atomic;
pub use contexts::{crc32, ContextLayout, ContextRecord, ContextText, CorpusLink, TextSource};
pub use merge::{merge_into, merged_meta};
pub use writer::{EntityRow, RowVector, TableWriter, WriterPos};

pub const FORMAT: &str = "pelt-table/2";
/// Contexts per compressed text block.
pub const TEXT_BLOCK: usize = 64;

/// How a table stores its vectors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorDtype {
    #[default]
    F32,
    F16,
    BF16,
}

impl VectorDtype {
    pub fn size(self) -> usize {
        match self {
            VectorDtype::F32 => 4,
            VectorDtype::F16 | VectorDtype::BF16 => 2,
        }
    }
    /// The safetensors dtype name.
    pub fn name(self) -> &'static str {
        match self {
            VectorDtype::F32 => "F32",
            VectorDtype::F16 => "F16",
            VectorDtype::BF16 => "BF16",
        }
    }
    pub fn parse(s: &str) -> Result<VectorDtype> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(VectorDtype::F32),
            "f16" => Ok(VectorDtype::F16),
            "bf16" => Ok(VectorDtype::BF16),
            _ => bail!(
                "`{}` is not a vector type: expected f32, f16 or bf16",
                escape::text(s)
            ),
        }
    }
    fn of(d: Dtype) -> Option<VectorDtype> {
        match d {
            Dtype::F32 => Some(VectorDtype::F32),
            Dtype::F16 => Some(VectorDtype::F16),
            Dtype::BF16 => Some(VectorDtype::BF16),
            _ => None,
        }
    }
    fn encode(self, v: &[f32], out: &mut Vec<u8>) {
        match self {
            VectorDtype::F32 => out.extend(v.iter().flat_map(|x| x.to_le_bytes())),
            VectorDtype::F16 => {
                out.extend(v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()))
            }
            VectorDtype::BF16 => out.extend(
                v.iter()
                    .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()),
            ),
        }
    }
    fn decode(self, b: &[u8]) -> Vec<f32> {
        match self {
            VectorDtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect(),
            VectorDtype::F16 if cfg!(target_endian = "little") => {
                use half::slice::HalfFloatSliceExt;
                let mut out = vec![0f32; b.len() / 2];
                // SAFETY: every bit pattern is an f16; alignment is checked by align_to.
                let (pre, mid, _) = unsafe { b.align_to::<half::f16>() };
                if pre.is_empty() && mid.len() == out.len() {
                    // F16C where the CPU has it.
                    mid.convert_to_f32_slice(&mut out);
                } else {
                    let h: Vec<half::f16> = b
                        .chunks_exact(2)
                        .map(|c| half::f16::from_le_bytes([c[0], c[1]]))
                        .collect();
                    h.convert_to_f32_slice(&mut out);
                }
                out
            }
            VectorDtype::F16 => b
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            VectorDtype::BF16 => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        }
    }
}

#[cfg(test)]
mod dtype_tests {
    use super::VectorDtype;

    /// Each type decodes what it encoded, value by value as `half` converts one value, from an
    /// aligned and from an unaligned start.
    #[test]
    fn stored_vectors_decode_to_their_values_at_any_alignment() {
        let v: Vec<f32> = (0..37).map(|i| (i as f32 - 18.0) * 0.37).collect();
        for dtype in [VectorDtype::F32, VectorDtype::F16, VectorDtype::BF16] {
            let mut bytes = Vec::new();
            dtype.encode(&v, &mut bytes);
            let want: Vec<f32> = v
                .iter()
                .map(|&x| match dtype {
                    VectorDtype::F32 => x,
                    VectorDtype::F16 => half::f16::from_f32(x).to_f32(),
                    VectorDtype::BF16 => half::bf16::from_f32(x).to_f32(),
                })
                .collect();
            let mut shifted = vec![0u8; 1];
            shifted.extend_from_slice(&bytes);
            for b in [&bytes[..], &shifted[1..]] {
                assert_eq!(dtype.decode(b), want, "{dtype:?}");
            }
        }
    }
}

/// Where a table came from; the fields a table must agree on to be merged or used with a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableMeta {
    pub model: String,
    pub model_sha256: String,
    pub hidden_size: usize,
    pub k: usize,
    pub seed: u64,
    pub max_len: usize,
    pub corpus: String,
    pub corpus_sha256: String,
    /// `i/n` for a shard, `all` for a whole build or a complete merge, `i/n+j/n…` for a
    /// partial merge.
    pub shard: String,
    pub case_sensitive: bool,
    /// `links`, `names` or `both` (tables from before linked mentions say `names`).
    pub mentions: String,
    /// Contexts per encoding window: shards take whole windows (of whole entities), so shards
    /// merge only with shards of the same window. 0 when unknown.
    pub window: usize,
    /// How the vectors are stored.
    #[serde(default)]
    pub dtype: VectorDtype,
    /// Entities of the whole build (a shard holds some of them).
    #[serde(default)]
    pub entities_total: usize,
    /// sha256 of the whole build's entity list (shards of one build share it).
    #[serde(default)]
    pub entity_list_sha256: String,
}

/// The file behind a table: mapped, or in memory.
enum Backing {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mapped(m) => m,
            Backing::Owned(v) => v,
        }
    }
}

/// The parts of a table, for building one in memory (tests, small tables, conversions).
#[derive(Debug, Clone, Default)]
pub struct TableParts {
    pub meta: Option<TableMeta>,
    pub entity_ids: Vec<String>,
    pub entity_names: Vec<String>,
    pub entity_aliases: Vec<Vec<String>>,
    /// `[N, H]` raw sums.
    pub sums: Vec<f32>,
    pub found: Vec<u64>,
    pub norm: f32,
    /// Supporting contexts; `entity` is the row. Counts are the contexts per row.
    pub contexts: Vec<ContextRecord>,
}

impl TableParts {
    /// Gives row i `counts[i]` short made-up contexts (for tables made in tests and benchmarks,
    /// where the contexts do not matter but their counts do).
    pub fn add_placeholder_contexts(&mut self, counts: &[i64]) {
        for (e, &c) in counts.iter().enumerate() {
            for j in 0..c {
                self.contexts.push(ContextRecord {
                    entity: e as u32,
                    file: 0,
                    line: j as u32 + 1,
                    sentence: 0,
                    start: 0,
                    end: 1,
                    text: format!("x {e} {j}"),
                    linked: false,
                    offset: crate::corpus::NO_OFFSET,
                    checksum: None,
                    source: TextSource::Stored,
                });
            }
        }
    }
}

#[derive(Clone)]
pub struct Table {
    pub meta: TableMeta,
    pub entity_ids: Vec<String>,
    pub entity_names: Vec<String>,
    /// Aliases per entity (row order), used to find mentions when the table is applied.
    pub entity_aliases: Vec<Vec<String>>,
    /// Contexts encoded per entity.
    pub counts: Vec<i64>,
    /// Mentions found per entity before sampling to K.
    pub found: Vec<u64>,
    /// The norm vectors are given and saved at (a copy can change it; the file keeps its own).
    pub norm: f32,
    /// Shard tables: each row's place in the whole build.
    pub rows: Option<Vec<u32>>,
    stored_norm: f32,
    sum_norms: Vec<f32>,
    /// `N + 1` offsets into the contexts (they are grouped by row).
    context_start: Vec<u64>,
    text_index: Vec<u64>,
    text_block: usize,
    data: Arc<Backing>,
    emb: Range<usize>,
    refs: Range<usize>,
    /// `context_offsets` and `context_checksums` (tables from before them have neither).
    locs: Option<(Range<usize>, Range<usize>)>,
    /// `context_text`; `None` for a table without text.
    text: Option<Range<usize>>,
    corpus_files: Vec<String>,
    /// The corpus the sentences are read back from ([`Table::attach_corpus`]).
    corpus: Option<Arc<CorpusLink>>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("meta", &self.meta)
            .field("entities", &self.len())
            .field("contexts", &self.context_count())
            .field("norm", &self.norm)
            .finish()
    }
}

impl PartialEq for Table {
    fn eq(&self, o: &Self) -> bool {
        self.meta == o.meta
            && self.norm == o.norm
            && self.entity_ids == o.entity_ids
            && self.entity_names == o.entity_names
            && self.entity_aliases == o.entity_aliases
            && self.counts == o.counts
            && self.found == o.found
            && self.rows == o.rows
            && self.data.bytes()[self.emb.clone()] == o.data.bytes()[o.emb.clone()]
            && self.sum_norms == o.sum_norms
            && self.stored_in(0..self.context_count()).ok()
                == o.stored_in(0..o.context_count()).ok()
    }
}

impl Table {
    pub fn len(&self) -> usize {
        self.entity_ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entity_ids.is_empty()
    }
    pub fn hidden(&self) -> usize {
        self.meta.hidden_size
    }

    /// The stored bytes of row `i`'s vector: `hidden` little-endian values of the table's
    /// [`VectorDtype`], read in place from a mapped file.
    pub fn vector_bytes(&self, i: usize) -> &[u8] {
        let n = self.hidden() * self.meta.dtype.size();
        &self.data.bytes()[self.emb.start + i * n..self.emb.start + (i + 1) * n]
    }

    /// Identifies the table's content: its number of rows, and CRC-32s of its stored vectors
    /// and of its entity ids (one pass over the vectors: about a second per 3 GB).
    pub fn fingerprint(&self) -> String {
        let mut ids = flate2::Crc::new();
        for id in &self.entity_ids {
            ids.update(id.as_bytes());
            ids.update(b"\n");
        }
        let mut vectors = flate2::Crc::new();
        vectors.update(&self.data.bytes()[self.emb.clone()]);
        format!("{}-{:08x}{:08x}", self.len(), vectors.sum(), ids.sum())
    }

    /// The stored vector of row `i` (at the norm the file was written with): its direction is
    /// the entity's; zeros for an entity never found. Borrowed from the file where it is f32.
    pub fn vector(&self, i: usize) -> Cow<'_, [f32]> {
        let b = self.vector_bytes(i);
        if self.meta.dtype == VectorDtype::F32 && cfg!(target_endian = "little") {
            // SAFETY: f32 has no invalid bit patterns; alignment is checked by align_to.
            let (pre, mid, _) = unsafe { b.align_to::<f32>() };
            if pre.is_empty() && mid.len() == self.hidden() {
                return Cow::Borrowed(mid);
            }
        }
        Cow::Owned(self.meta.dtype.decode(b))
    }

    /// The raw sum of row `i`: its direction at the length it had before rescaling.
    pub fn sum(&self, i: usize) -> Vec<f32> {
        scale_to_norm(&self.vector(i), self.sum_norms[i])
    }

    /// The length of row `i`'s raw sum.
    pub fn sum_norm(&self, i: usize) -> f32 {
        self.sum_norms[i]
    }

    /// `sums[i] / ||sums[i]|| * norm`; zeros for an entity never found.
    pub fn embedding_at(&self, i: usize, norm: f32) -> Vec<f32> {
        let v = self.vector(i);
        if norm == self.stored_norm {
            v.into_owned()
        } else {
            scale_to_norm(&v, norm)
        }
    }

    /// All embeddings at `norm`, `[N, H]` row-major.
    pub fn embeddings(&self, norm: f32) -> Vec<f32> {
        (0..self.len())
            .flat_map(|i| self.embedding_at(i, norm))
            .collect()
    }

    /// Each entity id's row.
    pub fn rows_by_id(&self) -> std::collections::HashMap<&str, usize> {
        self.entity_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect()
    }

    /// The row of the entity with exactly this id.
    pub fn index_of_id(&self, id: &str) -> Option<usize> {
        self.entity_ids.iter().position(|x| x == id)
    }

    pub fn index_of(&self, id_or_name: &str) -> Option<usize> {
        self.entity_ids
            .iter()
            .position(|x| x == id_or_name)
            .or_else(|| self.entity_names.iter().position(|x| x == id_or_name))
            .or_else(|| {
                self.entity_names
                    .iter()
                    .position(|x| x.eq_ignore_ascii_case(id_or_name))
            })
    }

    /// Supporting contexts in the table.
    pub fn context_count(&self) -> usize {
        *self.context_start.last().unwrap_or(&0) as usize
    }

    /// Indices (for [`Table::context`]) of the supporting contexts of entity row `entity`.
    pub fn contexts_of(&self, entity: usize) -> Range<usize> {
        self.context_start[entity] as usize..self.context_start[entity + 1] as usize
    }

    /// Whether supporting context `ci` is a linked span (read without its text).
    pub fn context_linked(&self, ci: usize) -> bool {
        let at = self.refs.start + ci * writer::REF_FIELDS * 4 + 24;
        self.data.bytes()[at] & 1 == 1
    }

    /// Every supporting context (grouped by row), read as [`Table::contexts_in`] reads them;
    /// for small tables and tests.
    pub fn contexts(&self) -> Result<Vec<ContextRecord>> {
        self.contexts_in(0..self.context_count())
    }

    /// The table's entities as an entity list (to find their mentions in new text).
    pub fn entity_list(&self) -> crate::entities::EntityList {
        crate::entities::EntityList {
            entities: (0..self.len())
                .map(|i| crate::entities::Entity {
                    id: self.entity_ids[i].clone(),
                    name: self.entity_names[i].clone(),
                    aliases: self.entity_aliases.get(i).cloned().unwrap_or_default(),
                })
                .collect(),
        }
    }

    pub fn not_found(&self) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.counts[i] == 0).collect()
    }

    /// A table built in memory from its parts.
    pub fn from_parts(p: TableParts) -> Result<Table> {
        let n = p.entity_ids.len();
        let meta = p.meta.context("table parts without metadata")?;
        let h = meta.hidden_size;
        if p.sums.len() != n * h || p.entity_names.len() != n || p.found.len() != n {
            bail!("table parts of inconsistent lengths");
        }
        let mut contexts: Vec<Vec<&ContextRecord>> = vec![Vec::new(); n];
        for c in &p.contexts {
            contexts
                .get_mut(c.entity as usize)
                .with_context(|| format!("context of entity row {} out of range", c.entity))?
                .push(c);
        }
        let mut w = TableWriter::new(meta, p.norm, None)?;
        for (i, ctx) in contexts.iter().enumerate() {
            w.push(
                &EntityRow {
                    id: &p.entity_ids[i],
                    name: &p.entity_names[i],
                    aliases: p.entity_aliases.get(i).map_or(&[][..], |a| &a[..]),
                    global_row: i as u32,
                    vector: RowVector::Sum(&p.sums[i * h..(i + 1) * h]),
                    found: p.found[i],
                },
                ctx.iter().copied(),
            )?;
        }
        Self::from_vec(w.finish_bytes()?)
    }

    /// The table's parts in memory, its raw sums rebuilt from direction and length (for small
    /// tables: tests, and tables changed on purpose).
    pub fn to_parts(&self) -> Result<TableParts> {
        Ok(TableParts {
            meta: Some(self.meta.clone()),
            entity_ids: self.entity_ids.clone(),
            entity_names: self.entity_names.clone(),
            entity_aliases: self.entity_aliases.clone(),
            sums: (0..self.len()).flat_map(|i| self.sum(i)).collect(),
            found: self.found.clone(),
            norm: self.norm,
            contexts: self.contexts()?,
        })
    }

    /// Writes this table's rows (at `self.norm`) into `w`, whose metadata matches.
    fn write_rows(&self, w: &mut TableWriter) -> Result<()> {
        for i in 0..self.len() {
            self.push_row(i, self.rows.as_ref().map_or(i as u32, |r| r[i]), w)?;
        }
        Ok(())
    }

    /// Appends row `i` (as row `global_row` of its build) and its contexts to `w`: the stored
    /// vector as it is, or rescaled where `self.norm` is not the stored norm.
    fn push_row(&self, i: usize, global_row: u32, w: &mut TableWriter) -> Result<()> {
        let ctx = self.stored_in(self.contexts_of(i))?;
        let sz = self.meta.dtype.size() * self.hidden();
        let v;
        let vector = if self.norm == self.stored_norm {
            RowVector::Encoded {
                bytes: &self.data.bytes()[self.emb.start + i * sz..self.emb.start + (i + 1) * sz],
                sum_norm: self.sum_norms[i],
            }
        } else {
            v = self.vector(i);
            RowVector::Direction {
                v: &v,
                sum_norm: self.sum_norms[i],
            }
        };
        w.push(
            &EntityRow {
                id: &self.entity_ids[i],
                name: &self.entity_names[i],
                aliases: &self.entity_aliases[i],
                global_row,
                vector,
                found: self.found[i],
            },
            &ctx,
        )
    }

    /// Serialises to safetensors bytes at `self.norm` (deterministic: sorted keys, no
    /// timestamps).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut w = TableWriter::new(self.meta.clone(), self.norm, None)?;
        w.set_contexts(self.context_layout())?;
        self.write_rows(&mut w)?;
        w.finish_bytes()
    }

    /// Writes atomically (temporary file + rename) at `self.norm`, spilling beside `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let dir = spill_dir_for(path);
        let mut w = TableWriter::new(self.meta.clone(), self.norm, Some(&dir))?;
        let r = w
            .set_contexts(self.context_layout())
            .and_then(|()| self.write_rows(&mut w))
            .and_then(|()| w.finish(path));
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    /// Opens a table file: `pelt-table/2` is mapped into memory; `pelt-table/1` is read and
    /// converted.
    pub fn load(path: &Path) -> Result<Self> {
        let open = || -> Result<Table> {
            let f = std::fs::File::open(path)
                .with_context(|| format!("cannot read table {}", escape::path(path)))?;
            // SAFETY: the mapping is read-only; a table file changed by another program while it
            // is open may show changed bytes, which every read checks as it would a file's.
            let map = unsafe { memmap2::Mmap::map(&f) }
                .with_context(|| format!("cannot map table {}", escape::path(path)))?;
            if legacy::is_v1(&map) {
                return Self::from_vec(map.to_vec());
            }
            Self::from_backing(Arc::new(Backing::Mapped(map)))
        };
        open().with_context(|| format!("{}: not a usable PELT table", escape::path(path)))
    }

    /// A table from its file's bytes (copied).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::from_vec(bytes.to_vec())
    }

    /// A table from its file's bytes.
    pub fn from_vec(bytes: Vec<u8>) -> Result<Self> {
        if legacy::is_v1(&bytes) {
            let parts = legacy::parts_from_v1(&bytes)?;
            return Self::from_parts(parts);
        }
        Self::from_backing(Arc::new(Backing::Owned(bytes)))
    }

    fn from_backing(data: Arc<Backing>) -> Result<Self> {
        let bytes = data.bytes();
        let st = SafeTensors::deserialize(bytes).context("not a safetensors file")?;
        let (_, md) = SafeTensors::read_metadata(bytes).context("unreadable safetensors header")?;
        let data_start = 8 + u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
        let meta = md.metadata().clone().unwrap_or_default();
        let get = |k: &str| -> Result<&String> {
            meta.get(k)
                .with_context(|| format!("missing metadata field `{k}`"))
        };
        let format = get("format")?;
        if format != FORMAT {
            bail!(
                "metadata `format` is `{}`, expected `{FORMAT}`",
                escape::text(format)
            );
        }
        fn parse<T: std::str::FromStr>(v: &str, k: &str, what: &str) -> Result<T> {
            v.trim().parse::<T>().ok().with_context(|| {
                format!("metadata field `{k}` = `{}` is not {what}", escape::text(v))
            })
        }
        let uint = |k: &str| -> Result<usize> { parse(get(k)?, k, "a non-negative integer") };
        let h = uint("hidden_size")?;
        if h == 0 {
            bail!("metadata `hidden_size` is 0");
        }
        let k = uint("k")?;
        if k == 0 {
            bail!("metadata `k` is 0: a table holds at least one context per entity");
        }
        let norm: f32 = parse(get("norm")?, "norm", "a number")?;
        if !(norm.is_finite() && norm > 0.0) {
            bail!("metadata `norm` is {norm}, expected a positive finite number");
        }
        let text_block = uint("text_block")?;
        if text_block == 0 {
            bail!("metadata `text_block` is 0");
        }
        let infos = md.tensors();
        let range = |name: &str| -> Result<(Range<usize>, Dtype, Vec<usize>)> {
            let t = infos
                .get(name)
                .with_context(|| format!("missing tensor `{name}`"))?;
            let info = st
                .tensor(name)
                .with_context(|| format!("tensor `{name}`"))?;
            Ok((
                data_start + t.data_offsets.0..data_start + t.data_offsets.1,
                info.dtype(),
                info.shape().to_vec(),
            ))
        };
        let expect = |name: &str, dtype: Dtype, shape: &[usize]| -> Result<Range<usize>> {
            let (r, d, s) = range(name)?;
            if d != dtype {
                bail!("tensor `{name}` has dtype {d:?}, expected {dtype:?}");
            }
            if s != shape {
                bail!("tensor `{name}` has shape {s:?}, expected {shape:?}");
            }
            Ok(r)
        };
        let (emb, emb_dtype, emb_shape) = range("embeddings")?;
        let dtype = VectorDtype::of(emb_dtype).with_context(|| {
            format!("tensor `embeddings` has dtype {emb_dtype:?}, expected F32, F16 or BF16")
        })?;
        if emb_shape.len() != 2 || emb_shape[1] != h {
            bail!("tensor `embeddings` has shape {emb_shape:?}, expected [N, {h}]");
        }
        let n = emb_shape[0];
        let le_u32 = |r: Range<usize>| -> Vec<u32> {
            bytes[r]
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect()
        };
        let le_u64 = |r: Range<usize>| -> Vec<u64> {
            bytes[r]
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect()
        };
        let sum_norms: Vec<f32> = le_u32(expect("sum_norms", Dtype::F32, &[n])?)
            .into_iter()
            .map(f32::from_bits)
            .collect();
        if let Some(i) = sum_norms.iter().position(|x| !(x.is_finite() && *x >= 0.0)) {
            bail!(
                "tensor `sum_norms`: entity row {i} is {}, expected a finite number >= 0",
                sum_norms[i]
            );
        }
        let counts: Vec<i64> = le_u32(expect("counts", Dtype::U32, &[n])?)
            .into_iter()
            .map(i64::from)
            .collect();
        if let Some(i) = counts.iter().position(|&c| c as u64 > k as u64) {
            bail!(
                "tensor `counts`: entity row {i} has count {}, expected 0..={k} (k)",
                counts[i]
            );
        }
        let found = le_u64(expect("found", Dtype::U64, &[n])?);
        if let Some(i) = (0..n).find(|&i| found[i] < counts[i] as u64) {
            bail!(
                "entity row {i}: `found` says {} mentions, fewer than its count {}",
                found[i],
                counts[i]
            );
        }
        let mut context_start = Vec::with_capacity(n + 1);
        let mut total = 0u64;
        context_start.push(0);
        for &c in &counts {
            total += c as u64;
            context_start.push(total);
        }
        let refs = expect(
            "context_refs",
            Dtype::U32,
            &[total as usize, writer::REF_FIELDS],
        )
        .context("the contexts do not add up to the counts")?;
        let c = total as usize;
        let locs = match (
            infos.contains_key("context_offsets"),
            infos.contains_key("context_checksums"),
        ) {
            (true, true) => Some((
                expect("context_offsets", Dtype::U64, &[c])?,
                expect("context_checksums", Dtype::U32, &[c])?,
            )),
            (false, false) => None,
            _ => bail!("a table with only one of `context_offsets` and `context_checksums`"),
        };
        let stored = match meta.get("context_text").map(String::as_str) {
            None | Some("stored") => true,
            Some("none") => false,
            Some(v) => bail!(
                "metadata `context_text` is `{}`, expected `stored` or `none`",
                escape::text(v)
            ),
        };
        let (text, text_index) = if stored {
            let blocks = c.div_ceil(text_block);
            let text_index = le_u64(expect("context_text_index", Dtype::U64, &[blocks + 1])?);
            let (text, d, _) = range("context_text")?;
            if d != Dtype::U8 {
                bail!("tensor `context_text` has dtype {d:?}, expected U8");
            }
            if text_index[0] != 0
                || text_index.windows(2).any(|w| w[0] > w[1])
                || *text_index.last().expect("blocks + 1 entries") != text.len() as u64
            {
                bail!("tensor `context_text_index` does not index `context_text`");
            }
            (Some(text), text_index)
        } else {
            if infos.contains_key("context_text") || infos.contains_key("context_text_index") {
                bail!("metadata `context_text` is `none`, but the table holds context text");
            }
            if locs.is_none() {
                bail!("a table without context text or context checksums");
            }
            (None, Vec::new())
        };
        let corpus_files = match infos.contains_key("corpus_files") {
            false => Vec::new(),
            true => {
                let (r, d, _) = range("corpus_files")?;
                if d != Dtype::U8 {
                    bail!("tensor `corpus_files` has dtype {d:?}, expected U8");
                }
                bytes[r]
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .enumerate()
                    .map(|(i, l)| {
                        serde_json::from_slice::<String>(l).with_context(|| {
                            format!("tensor `corpus_files`, line {}: not a JSON string", i + 1)
                        })
                    })
                    .collect::<Result<Vec<_>>>()?
            }
        };
        let (ents, d, _) = range("entities")?;
        if d != Dtype::U8 {
            bail!("tensor `entities` has dtype {d:?}, expected U8");
        }
        let mut entity_ids = Vec::with_capacity(n);
        let mut entity_names = Vec::with_capacity(n);
        let mut entity_aliases = Vec::with_capacity(n);
        for (i, line) in bytes[ents]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            let (id, name, aliases): (String, String, Vec<String>) =
                match serde_json::from_slice::<(String, String)>(line) {
                    Ok((a, b)) => (a, b, Vec::new()),
                    Err(_) => serde_json::from_slice(line).with_context(|| {
                        format!(
                            "tensor `entities`, line {}: not [id, name, [aliases]]",
                            i + 1
                        )
                    })?,
                };
            entity_ids.push(id);
            entity_names.push(name);
            entity_aliases.push(aliases);
        }
        if entity_ids.len() != n {
            bail!(
                "tensor `entities` names {} entities, but the table has {n} rows",
                entity_ids.len()
            );
        }
        let shard = get("shard")?.clone();
        let shard_parsed = parse_shard_label(&shard).context("metadata `shard`")?;
        let entities_total = uint("entities_total")?;
        let rows = match (&shard_parsed, infos.contains_key("rows")) {
            (None, false) => {
                if entities_total != n {
                    bail!("metadata `entities_total` is {entities_total}, but the whole table has {n} rows");
                }
                None
            }
            (Some(_), true) => {
                let r = le_u32(expect("rows", Dtype::U32, &[n])?);
                if r.windows(2).any(|w| w[0] >= w[1])
                    || r.last().is_some_and(|&l| l as usize >= entities_total)
                {
                    bail!("tensor `rows` is not increasing below `entities_total`");
                }
                Some(r)
            }
            (None, true) => bail!("a whole table (shard `all`) with a `rows` tensor"),
            (Some(_), false) => bail!("a shard table without its `rows` tensor"),
        };
        let case_sensitive = match get("case_sensitive")?.as_str() {
            "false" => false,
            "true" => true,
            v => bail!(
                "metadata field `case_sensitive` = `{}` is not true or false",
                escape::text(v)
            ),
        };
        let mentions = match get("mentions")?.as_str() {
            m @ ("links" | "names" | "both") => m.to_string(),
            other => bail!(
                "metadata `mentions` is `{}`, expected `links`, `names` or `both`",
                escape::text(other)
            ),
        };
        Ok(Table {
            meta: TableMeta {
                model: get("model")?.clone(),
                model_sha256: get("model_sha256")?.clone(),
                hidden_size: h,
                k,
                seed: parse(get("seed")?, "seed", "a non-negative integer")?,
                max_len: uint("max_len")?,
                corpus: get("corpus")?.clone(),
                corpus_sha256: get("corpus_sha256")?.clone(),
                shard,
                case_sensitive,
                mentions,
                window: uint("window")?,
                dtype,
                entities_total,
                entity_list_sha256: get("entity_list_sha256")?.clone(),
            },
            entity_ids,
            entity_names,
            entity_aliases,
            counts,
            found,
            norm,
            rows,
            stored_norm: norm,
            sum_norms,
            context_start,
            text_index,
            text_block,
            emb,
            refs,
            locs,
            text,
            corpus_files,
            corpus: None,
            data: data.clone(),
        })
    }

    /// Refuses a table built with another model.
    pub fn check_model(&self, model_name: &str, model_sha256: &str, hidden: usize) -> Result<()> {
        if self.meta.model_sha256 != model_sha256 || self.hidden() != hidden {
            bail!(
                "this table was built with model `{}` (weights sha256 {}…, hidden size {}), but the loaded model is `{}` (sha256 {}…, hidden size {}); a table only fits the model that built it",
                self.meta.model,
                &self.meta.model_sha256.get(..12).unwrap_or(&self.meta.model_sha256),
                self.hidden(),
                model_name,
                model_sha256.get(..12).unwrap_or(model_sha256),
                hidden
            );
        }
        Ok(())
    }

    /// Merges the shard tables of one build in memory; see [`merge_into`].
    pub fn merge(tables: &[Table]) -> Result<Table> {
        Self::merge_with(tables, false)
    }

    /// [`Table::merge`], also of some shards only when `partial`.
    pub fn merge_with(tables: &[Table], partial: bool) -> Result<Table> {
        let meta = merged_meta(tables, partial)?;
        let mut w = TableWriter::new(meta, tables[0].norm, None)?;
        merge_into(tables, &mut w)?;
        Self::from_vec(w.finish_bytes()?)
    }

    /// TensorFlow Embedding Projector files: `vectors.tsv` and `metadata.tsv` (name, id, count).
    pub fn export_projector(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut vectors = Vec::new();
        let mut meta = Vec::new();
        writeln!(meta, "name\tid\tcount")?;
        for i in 0..self.len() {
            let row: Vec<String> = self
                .embedding_at(i, self.norm)
                .iter()
                .map(|v| format!("{v}"))
                .collect();
            writeln!(vectors, "{}", row.join("\t"))?;
            writeln!(
                meta,
                "{}\t{}\t{}",
                tsv_field(&self.entity_names[i]),
                tsv_field(&self.entity_ids[i]),
                self.counts[i]
            )?;
        }
        write_atomic(&dir.join("vectors.tsv"), &vectors)?;
        write_atomic(&dir.join("metadata.tsv"), &meta)
    }
}

/// The folder a table written to `path` spills to while it is assembled.
pub fn spill_dir_for(path: &Path) -> std::path::PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.spill-{}", std::process::id()))
}

/// Parses a `shard` label: `None` for `all`, else the shard numbers and their count
/// (`i/n`, or `i/n+j/n…` for a partial merge).
pub fn parse_shard_label(label: &str) -> Result<Option<(Vec<usize>, usize)>> {
    if label == "all" {
        return Ok(None);
    }
    let mut shards = Vec::new();
    let mut count = None;
    for part in label.split('+') {
        let parsed = part
            .split_once('/')
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
        match parsed {
            Some((i, n)) if i < n && count.is_none_or(|c| c == n) && !shards.contains(&i) => {
                shards.push(i);
                count = Some(n);
            }
            _ => bail!(
                "`{}` is not `all`, `i/n` or distinct shards of one count joined by `+`",
                escape::text(label)
            ),
        }
    }
    Ok(Some((shards, count.expect("split yields a part"))))
}

/// Metadata of a table made in a test: `n` rows of `hidden` values, built by name matching.
#[cfg(test)]
pub(crate) fn test_meta(hidden: usize, n: usize) -> TableMeta {
    TableMeta {
        model: "m".into(),
        model_sha256: "0".into(),
        hidden_size: hidden,
        k: 8,
        seed: 0,
        max_len: 8,
        corpus: "c".into(),
        corpus_sha256: "0".into(),
        shard: "all".into(),
        case_sensitive: false,
        mentions: "names".into(),
        window: 512,
        dtype: Default::default(),
        entities_total: n,
        entity_list_sha256: String::new(),
    }
}

pub fn tsv_field(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

pub fn scale_to_norm(v: &[f32], norm: f32) -> Vec<f32> {
    let len = writer::norm_of(v);
    if len == 0.0 {
        return vec![0.0; v.len()];
    }
    let s = norm as f64 / len;
    v.iter().map(|&x| (x as f64 * s) as f32).collect()
}
