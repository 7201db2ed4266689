//! The entity table and its file formats: safetensors (`pelt-table/1`), Embedding Projector TSV.
//!
//! Layout of a `.safetensors` table: tensors `embeddings` F32 [N,H], `sums` F32 [N,H],
//! `counts` I64 [N] and `contexts` U8 [bytes] (JSON Lines, one supporting context per line);
//! string metadata `format`, `entity_ids`, `entity_names` (JSON arrays in row order), `norm`,
//! `k`, `seed`, `max_len`, `model`, `model_sha256`, `hidden_size`, `corpus`, `corpus_sha256`,
//! `shard`, `case_sensitive`, `found` (JSON array: mentions seen per entity before sampling).

use anyhow::{bail, Context, Result};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::io::{write_atomic, write_safetensors};

pub const FORMAT: &str = "pelt-table/1";

/// A sampled context as kept in a table: where it is, the sentence, and the mention span.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextRecord {
    /// Row of the entity in the table.
    pub entity: u32,
    /// Corpus file index, 1-based line (example number for FewRel), sentence index in the line.
    pub file: u32,
    pub line: u32,
    pub sentence: u32,
    /// Byte span of the mention in `text`.
    pub start: u32,
    pub end: u32,
    pub text: String,
}

impl ContextRecord {
    pub fn mention(&self) -> &str {
        self.text
            .get(self.start as usize..self.end as usize)
            .unwrap_or("")
    }
    pub fn sort_key(&self) -> (u32, u32, u32, u32, u32) {
        (self.file, self.line, self.sentence, self.start, self.entity)
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
    /// `i/n` for a shard, `all` for a whole build or a complete merge.
    pub shard: String,
    pub case_sensitive: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub meta: TableMeta,
    pub entity_ids: Vec<String>,
    pub entity_names: Vec<String>,
    /// Aliases per entity (row order), used to find mentions when the table is applied.
    pub entity_aliases: Vec<Vec<String>>,
    /// `[N, H]` raw sums of transform outputs over each entity's contexts.
    pub sums: Vec<f32>,
    pub counts: Vec<i64>,
    /// Mentions found per entity before sampling to K.
    pub found: Vec<u64>,
    pub norm: f32,
    pub contexts: Vec<ContextRecord>,
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
    pub fn sum(&self, i: usize) -> &[f32] {
        let h = self.hidden();
        &self.sums[i * h..(i + 1) * h]
    }

    /// `sums[i] / ||sums[i]|| * norm`; zeros for an entity never found.
    pub fn embedding_at(&self, i: usize, norm: f32) -> Vec<f32> {
        scale_to_norm(self.sum(i), norm)
    }

    /// All embeddings at `norm`, `[N, H]` row-major.
    pub fn embeddings(&self, norm: f32) -> Vec<f32> {
        (0..self.len())
            .flat_map(|i| self.embedding_at(i, norm))
            .collect()
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

    /// Indices (into `contexts`) of the supporting contexts of entity row `entity`.
    pub fn contexts_of(&self, entity: usize) -> impl Iterator<Item = usize> + '_ {
        self.contexts
            .iter()
            .enumerate()
            .filter(move |(_, c)| c.entity as usize == entity)
            .map(|(i, _)| i)
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

    /// Serialises to safetensors bytes (deterministic: sorted keys, no timestamps).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let n = self.len();
        let h = self.hidden();
        let mut ctx_bytes = Vec::new();
        for c in &self.contexts {
            serde_json::to_writer(&mut ctx_bytes, c)?;
            ctx_bytes.push(b'\n');
        }
        let mut meta = BTreeMap::new();
        meta.insert("format", FORMAT.to_string());
        meta.insert("entity_ids", serde_json::to_string(&self.entity_ids)?);
        meta.insert("entity_names", serde_json::to_string(&self.entity_names)?);
        meta.insert(
            "entity_aliases",
            serde_json::to_string(&self.entity_aliases)?,
        );
        meta.insert("found", serde_json::to_string(&self.found)?);
        meta.insert("norm", format_f32(self.norm));
        meta.insert("k", self.meta.k.to_string());
        meta.insert("seed", self.meta.seed.to_string());
        meta.insert("max_len", self.meta.max_len.to_string());
        meta.insert("model", self.meta.model.clone());
        meta.insert("model_sha256", self.meta.model_sha256.clone());
        meta.insert("hidden_size", h.to_string());
        meta.insert("corpus", self.meta.corpus.clone());
        meta.insert("corpus_sha256", self.meta.corpus_sha256.clone());
        meta.insert("shard", self.meta.shard.clone());
        meta.insert("case_sensitive", self.meta.case_sensitive.to_string());
        let emb = self.embeddings(self.norm);
        let tensors: Vec<(&str, &str, Vec<usize>, Vec<u8>)> = vec![
            ("contexts", "U8", vec![ctx_bytes.len()], ctx_bytes),
            (
                "counts",
                "I64",
                vec![n],
                self.counts.iter().flat_map(|c| c.to_le_bytes()).collect(),
            ),
            ("embeddings", "F32", vec![n, h], f32_bytes(&emb)),
            ("sums", "F32", vec![n, h], f32_bytes(&self.sums)),
        ];
        write_safetensors(&meta, &tensors)
    }

    /// Writes atomically (temporary file + rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes()?)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read table {}", path.display()))?;
        Self::from_bytes(&bytes)
            .with_context(|| format!("{}: not a usable PELT table", path.display()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).context("not a safetensors file")?;
        let (_, md) = SafeTensors::read_metadata(bytes).context("unreadable safetensors header")?;
        let meta = md.metadata().clone().unwrap_or_default();
        let get = |k: &str| -> Result<&String> {
            meta.get(k)
                .with_context(|| format!("missing metadata field `{k}`"))
        };
        let format = get("format")?;
        if format != FORMAT {
            bail!("metadata `format` is `{format}`, expected `{FORMAT}`");
        }
        let num = |k: &str| -> Result<f64> {
            get(k)?
                .parse::<f64>()
                .with_context(|| format!("metadata field `{k}` is not a number"))
        };
        let entity_ids: Vec<String> = serde_json::from_str(get("entity_ids")?)
            .context("metadata `entity_ids` is not a JSON array of strings")?;
        let entity_names: Vec<String> = serde_json::from_str(get("entity_names")?)
            .context("metadata `entity_names` is not a JSON array of strings")?;
        let n = entity_ids.len();
        let h = num("hidden_size")? as usize;
        if entity_names.len() != n {
            bail!(
                "metadata has {} entity ids but {} names",
                n,
                entity_names.len()
            );
        }
        let tensor = |name: &str, dtype: Dtype, shape: &[usize]| -> Result<Vec<u8>> {
            let t = st
                .tensor(name)
                .with_context(|| format!("missing tensor `{name}`"))?;
            if t.dtype() != dtype {
                bail!(
                    "tensor `{name}` has dtype {:?}, expected {:?}",
                    t.dtype(),
                    dtype
                );
            }
            if t.shape() != shape {
                bail!(
                    "tensor `{name}` has shape {:?}, expected {:?}",
                    t.shape(),
                    shape
                );
            }
            Ok(t.data().to_vec())
        };
        let sums = le_f32(&tensor("sums", Dtype::F32, &[n, h])?);
        tensor("embeddings", Dtype::F32, &[n, h])?;
        let counts: Vec<i64> = tensor("counts", Dtype::I64, &[n])?
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        let mut contexts = Vec::new();
        if let Ok(t) = st.tensor("contexts") {
            for (i, line) in t.data().split(|&b| b == b'\n').enumerate() {
                if line.is_empty() {
                    continue;
                }
                let c: ContextRecord = serde_json::from_slice(line).with_context(|| {
                    format!("tensor `contexts`, line {}: not a context record", i + 1)
                })?;
                if c.entity as usize >= n {
                    bail!(
                        "tensor `contexts`, line {}: entity row {} out of range",
                        i + 1,
                        c.entity
                    );
                }
                contexts.push(c);
            }
        }
        let entity_aliases: Vec<Vec<String>> = match meta.get("entity_aliases") {
            Some(s) => serde_json::from_str(s)
                .context("metadata `entity_aliases` is not a JSON array of arrays")?,
            None => vec![vec![]; n],
        };
        if entity_aliases.len() != n {
            bail!(
                "metadata has {} entity ids but {} alias lists",
                n,
                entity_aliases.len()
            );
        }
        let found = match meta.get("found") {
            Some(s) => serde_json::from_str(s).context("metadata `found` is not a JSON array")?,
            None => counts.iter().map(|&c| c as u64).collect(),
        };
        Ok(Table {
            meta: TableMeta {
                model: get("model")?.clone(),
                model_sha256: get("model_sha256")?.clone(),
                hidden_size: h,
                k: num("k")? as usize,
                seed: num("seed")? as u64,
                max_len: num("max_len")? as usize,
                corpus: get("corpus")?.clone(),
                corpus_sha256: get("corpus_sha256")?.clone(),
                shard: meta.get("shard").cloned().unwrap_or_else(|| "all".into()),
                case_sensitive: meta
                    .get("case_sensitive")
                    .map(|s| s == "true")
                    .unwrap_or(false),
            },
            entity_ids,
            entity_names,
            entity_aliases,
            sums,
            counts,
            found,
            norm: num("norm")? as f32,
            contexts,
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

    /// Adds the sums and counts of shard tables built with the same model, entity list and
    /// options; contexts are combined in corpus order.
    pub fn merge(tables: &[Table]) -> Result<Table> {
        let first = tables.first().context("nothing to merge")?;
        let mut out = first.clone();
        for (i, t) in tables.iter().enumerate().skip(1) {
            let what = |field: &str| {
                format!(
                    "table {} differs from table 1 in {field}: cannot merge",
                    i + 1
                )
            };
            if t.meta.model_sha256 != first.meta.model_sha256 || t.hidden() != first.hidden() {
                bail!(what("model"));
            }
            if t.entity_ids != first.entity_ids
                || t.entity_names != first.entity_names
                || t.entity_aliases != first.entity_aliases
            {
                bail!(what("entity list"));
            }
            for (field, same) in [
                ("k", t.meta.k == first.meta.k),
                ("seed", t.meta.seed == first.meta.seed),
                ("max_len", t.meta.max_len == first.meta.max_len),
                ("corpus", t.meta.corpus_sha256 == first.meta.corpus_sha256),
                (
                    "case sensitivity",
                    t.meta.case_sensitive == first.meta.case_sensitive,
                ),
            ] {
                if !same {
                    bail!(what(field));
                }
            }
            for (a, b) in out.sums.iter_mut().zip(&t.sums) {
                *a = (*a as f64 + *b as f64) as f32;
            }
            for (a, b) in out.counts.iter_mut().zip(&t.counts) {
                *a += b;
            }
            out.contexts.extend(t.contexts.iter().cloned());
        }
        out.contexts.sort_by_key(ContextRecord::sort_key);
        let shards: Vec<&str> = tables.iter().map(|t| t.meta.shard.as_str()).collect();
        out.meta.shard = merged_shard_label(&shards);
        Ok(out)
    }

    /// TensorFlow Embedding Projector files: `vectors.tsv` and `metadata.tsv` (name, id, count).
    pub fn export_projector(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let h = self.hidden();
        let emb = self.embeddings(self.norm);
        let mut vectors = Vec::new();
        let mut meta = Vec::new();
        writeln!(meta, "name\tid\tcount")?;
        for i in 0..self.len() {
            let row: Vec<String> = emb[i * h..(i + 1) * h]
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

/// `all` when the shards `0/n … n-1/n` are all present, else the list.
fn merged_shard_label(shards: &[&str]) -> String {
    let parsed: Option<Vec<(usize, usize)>> = shards
        .iter()
        .map(|s| {
            s.split_once('/')
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        })
        .collect();
    if let Some(mut p) = parsed {
        p.sort();
        p.dedup();
        let n = p[0].1;
        if p.len() == n && p.iter().enumerate().all(|(i, &(a, b))| a == i && b == n) {
            return "all".into();
        }
    }
    shards.join("+")
}

fn tsv_field(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

pub fn scale_to_norm(v: &[f32], norm: f32) -> Vec<f32> {
    let len = v
        .iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt();
    if len == 0.0 {
        return vec![0.0; v.len()];
    }
    let s = norm as f64 / len;
    v.iter().map(|&x| (x as f64 * s) as f32).collect()
}

fn format_f32(x: f32) -> String {
    format!("{x}")
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn le_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect()
}
