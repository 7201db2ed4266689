//! The entity table and its file formats: safetensors (`pelt-table/1`), Embedding Projector TSV.
//!
//! Layout of a `.safetensors` table: tensors `embeddings` F32 [N,H], `sums` F32 [N,H],
//! `counts` I64 [N] and `contexts` U8 [bytes] (JSON Lines, one supporting context per line);
//! string metadata `format`, `entity_ids`, `entity_names` (JSON arrays in row order), `norm`,
//! `k`, `seed`, `max_len`, `model`, `model_sha256`, `hidden_size`, `corpus`, `corpus_sha256`,
//! `shard`, `case_sensitive`, `found` (JSON array: mentions seen per entity before sampling),
//! `mentions` (`links`, `names` or `both`: which spans were mentions).

use anyhow::{bail, Context, Result};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::escape;
use crate::exact_sum::ExactSum;
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
    /// The mention is a linked span (not a name match).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub linked: bool,
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
    /// `i/n` for a shard, `all` for a whole build or a complete merge, `i/n+j/n…` for a
    /// partial merge.
    pub shard: String,
    pub case_sensitive: bool,
    /// `links`, `names` or `both` (tables from before linked mentions say `names`).
    pub mentions: String,
    /// Contexts per encoding window (batch × window batches): shards split a build by whole
    /// windows, so shards merge only with shards of the same window. 0 when unknown.
    pub window: usize,
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
    /// `[N, H]` order-independent sums, kept by shard tables so that a merge is exact.
    pub exact_sums: Option<Vec<ExactSum>>,
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
        meta.insert("mentions", self.meta.mentions.clone());
        meta.insert("window", self.meta.window.to_string());
        let emb = self.embeddings(self.norm);
        let mut tensors: Vec<(&str, &str, Vec<usize>, Vec<u8>)> = vec![
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
        if let Some(exact) = &self.exact_sums {
            // Each sum is one little-endian i128, stored as two I64 values.
            let bytes = exact.iter().flat_map(|x| x.to_le_bytes()).collect();
            tensors.push(("sums_exact", "I64", vec![n, h, 2], bytes));
        }
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
        fn parse<T: std::str::FromStr>(v: &str, k: &str, what: &str) -> Result<T> {
            v.trim().parse::<T>().ok().with_context(|| {
                format!("metadata field `{k}` = `{}` is not {what}", escape::text(v))
            })
        }
        let uint = |k: &str| -> Result<usize> { parse(get(k)?, k, "a non-negative integer") };
        let entity_ids: Vec<String> = serde_json::from_str(get("entity_ids")?)
            .context("metadata `entity_ids` is not a JSON array of strings")?;
        let entity_names: Vec<String> = serde_json::from_str(get("entity_names")?)
            .context("metadata `entity_names` is not a JSON array of strings")?;
        let n = entity_ids.len();
        let h = uint("hidden_size")?;
        if h == 0 {
            bail!("metadata `hidden_size` is 0");
        }
        let nh = n
            .checked_mul(h)
            .context("metadata: entity count x hidden_size overflows")?;
        let k = uint("k")?;
        if k == 0 {
            bail!("metadata `k` is 0: a table holds at least one context per entity");
        }
        let norm: f32 = parse(get("norm")?, "norm", "a number")?;
        if !(norm.is_finite() && norm > 0.0) {
            bail!("metadata `norm` is {norm}, expected a positive finite number");
        }
        if entity_names.len() != n {
            bail!(
                "metadata has {} entity ids but {} names",
                n,
                entity_names.len()
            );
        }
        // The checked bytes of a tensor, borrowed from `bytes` (no copy: an embeddings tensor
        // of a large table is hundreds of MB).
        fn tensor_bytes<'a>(
            st: &SafeTensors<'a>,
            name: &str,
            dtype: Dtype,
            shape: &[usize],
        ) -> Result<&'a [u8]> {
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
            Ok(t.data())
        }
        let tensor =
            |name: &str, dtype: Dtype, shape: &[usize]| tensor_bytes(&st, name, dtype, shape);
        let sums = le_f32(tensor("sums", Dtype::F32, &[n, h])?);
        debug_assert_eq!(sums.len(), nh);
        if let Some(i) = sums.iter().position(|x| !x.is_finite()) {
            bail!(
                "tensor `sums`: entity row {}, column {} is {}, expected a finite number",
                i / h,
                i % h,
                sums[i]
            );
        }
        tensor("embeddings", Dtype::F32, &[n, h])?;
        let counts: Vec<i64> = tensor("counts", Dtype::I64, &[n])?
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        if let Some(i) = counts.iter().position(|&c| c < 0 || c as u64 > k as u64) {
            bail!(
                "tensor `counts`: entity row {i} has count {}, expected 0..={k} (k)",
                counts[i]
            );
        }
        let exact_sums = match st.tensor("sums_exact") {
            Err(_) => None,
            Ok(_) => {
                let b = tensor("sums_exact", Dtype::I64, &[n, h, 2])?;
                let exact = ExactSum::from_le_bytes(b)
                    .context("tensor `sums_exact` holds values out of range")?;
                if let Some(i) = (0..nh).find(|&i| exact[i].to_f32() != sums[i]) {
                    bail!(
                        "tensor `sums_exact` does not match `sums` (entity row {}, column {})",
                        i / h,
                        i % h
                    );
                }
                Some(exact)
            }
        };
        let mut contexts = Vec::new();
        let mut per_entity = vec![0i64; n];
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
                        "tensor `contexts`, line {}: entity row {} out of range (the table has {n} entities)",
                        i + 1,
                        c.entity
                    );
                }
                let (a, b) = (c.start as usize, c.end as usize);
                if a >= b || c.text.get(a..b).is_none() {
                    bail!(
                        "tensor `contexts`, line {}: mention span {a}..{b} is not inside the text ({} bytes) on character boundaries",
                        i + 1,
                        c.text.len()
                    );
                }
                per_entity[c.entity as usize] += 1;
                contexts.push(c);
            }
            if let Some(i) = (0..n).find(|&i| per_entity[i] != counts[i]) {
                bail!(
                    "entity row {i} has {} supporting contexts in tensor `contexts` but count {} in `counts`",
                    per_entity[i],
                    counts[i]
                );
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
        let found: Vec<u64> = match meta.get("found") {
            Some(s) => serde_json::from_str(s).context("metadata `found` is not a JSON array")?,
            None => counts.iter().map(|&c| c as u64).collect(),
        };
        if found.len() != n {
            bail!(
                "metadata `found` has {} values for {n} entities",
                found.len()
            );
        }
        if let Some(i) = (0..n).find(|&i| found[i] < counts[i] as u64) {
            bail!(
                "entity row {i}: metadata `found` says {} mentions, fewer than its count {}",
                found[i],
                counts[i]
            );
        }
        let shard = meta.get("shard").cloned().unwrap_or_else(|| "all".into());
        parse_shard_label(&shard).context("metadata `shard`")?;
        let case_sensitive = match meta.get("case_sensitive").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(v) => bail!(
                "metadata field `case_sensitive` = `{}` is not true or false",
                escape::text(v)
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
                mentions: match meta.get("mentions").map(String::as_str) {
                    None => "names".into(),
                    Some(m @ ("links" | "names" | "both")) => m.into(),
                    Some(other) => bail!(
                        "metadata `mentions` is `{other}`, expected `links`, `names` or `both`"
                    ),
                },
                window: match meta.get("window") {
                    Some(v) => parse(v, "window", "a non-negative integer")?,
                    None => 0,
                },
            },
            entity_ids,
            entity_names,
            entity_aliases,
            sums,
            exact_sums,
            counts,
            found,
            norm,
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

    /// Adds the sums and counts of all the shard tables of one build; see [`Table::merge_with`].
    pub fn merge(tables: &[Table]) -> Result<Table> {
        Self::merge_with(tables, false)
    }

    /// Adds the sums and counts of shard tables built with the same model, entity list,
    /// options and corpus; contexts are combined in corpus order. The shards must be distinct
    /// and of one shard count, and all of them unless `partial` (the result is then a partial
    /// table that merges with the remaining shards later). Sums are added exactly, so the
    /// result is byte-identical to the single build.
    pub fn merge_with(tables: &[Table], partial: bool) -> Result<Table> {
        let first = tables.first().context("nothing to merge")?;
        let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
        let mut count = None;
        for (t, table) in tables.iter().enumerate() {
            let Some((shards, n)) = parse_shard_label(&table.meta.shard)? else {
                bail!(
                    "table {} is a complete table (shard `all`), not a shard: only shard tables are merged",
                    t + 1
                );
            };
            match count {
                None => count = Some(n),
                Some(m) if m != n => bail!(
                    "table {} holds shards of {n} but table 1 shards of {m}: shards of one build share their count",
                    t + 1
                ),
                _ => {}
            }
            for i in shards {
                if let Some(other) = seen.insert(i, t) {
                    bail!(
                        "shard {i}/{n} is given twice (tables {} and {}): each shard is merged once",
                        other + 1,
                        t + 1
                    );
                }
            }
            if table.exact_sums.is_none() {
                bail!(
                    "table {} (shard {}) has no exact sums: rebuild it with this version of pelt",
                    t + 1,
                    escape::text(&table.meta.shard)
                );
            }
        }
        let n = count.expect("at least one table");
        let n_missing = n - seen.len();
        if n_missing > 0 && !partial {
            let shown: Vec<String> = (0..n)
                .filter(|i| !seen.contains_key(i))
                .take(20)
                .map(|i| format!("{i}/{n}"))
                .collect();
            bail!(
                "shards {}{} are missing (merge all {n} shards, or pass --partial for a partial table)",
                shown.join(", "),
                if n_missing > shown.len() {
                    format!(" and {} more", n_missing - shown.len())
                } else {
                    String::new()
                }
            );
        }
        let h = first.hidden();
        let mut out = first.clone();
        let mut exact = vec![ExactSum::default(); first.len() * h];
        out.counts = vec![0; first.len()];
        out.contexts.clear();
        for (t, table) in tables.iter().enumerate() {
            let what = |field: &str| {
                format!(
                    "table {} differs from table 1 in {field}: cannot merge",
                    t + 1
                )
            };
            if table.meta.model_sha256 != first.meta.model_sha256 || table.hidden() != h {
                bail!(what("model"));
            }
            if table.entity_ids != first.entity_ids
                || table.entity_names != first.entity_names
                || table.entity_aliases != first.entity_aliases
            {
                bail!(what("entity list"));
            }
            for (field, same) in [
                ("k", table.meta.k == first.meta.k),
                ("seed", table.meta.seed == first.meta.seed),
                ("max_len", table.meta.max_len == first.meta.max_len),
                (
                    "corpus",
                    table.meta.corpus_sha256 == first.meta.corpus_sha256,
                ),
                (
                    "case sensitivity",
                    table.meta.case_sensitive == first.meta.case_sensitive,
                ),
                ("mention mode", table.meta.mentions == first.meta.mentions),
                (
                    "window (batch size)",
                    table.meta.window == first.meta.window,
                ),
                ("norm", table.norm == first.norm),
                ("found mentions", table.found == first.found),
            ] {
                if !same {
                    bail!(what(field));
                }
            }
            let sums = table.exact_sums.as_ref().expect("checked above");
            for (e, (a, b)) in exact.iter_mut().zip(sums).enumerate() {
                a.add_sum(*b)
                    .with_context(|| format!("entity row {}: {}", e / h, what("range")))?;
            }
            for (e, (a, b)) in out.counts.iter_mut().zip(&table.counts).enumerate() {
                *a = a
                    .checked_add(*b)
                    .filter(|&c| c as u64 <= first.meta.k as u64)
                    .with_context(|| {
                        format!(
                            "entity row {e}: merged count exceeds k = {}; the shards overlap",
                            first.meta.k
                        )
                    })?;
            }
            out.contexts.extend(table.contexts.iter().cloned());
        }
        out.contexts.sort_by_key(ContextRecord::sort_key);
        out.sums = exact.iter().map(|x| x.to_f32()).collect();
        let mut all: Vec<usize> = seen.into_keys().collect();
        all.sort();
        if all.len() == n {
            out.meta.shard = "all".into();
            out.exact_sums = None;
        } else {
            out.meta.shard = all
                .iter()
                .map(|i| format!("{i}/{n}"))
                .collect::<Vec<_>>()
                .join("+");
            out.exact_sums = Some(exact);
        }
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
