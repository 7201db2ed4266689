//! Tables of the first format (`pelt-table/1`): f32 embeddings and f32 sums, the entity
//! strings in the header, contexts as JSON Lines. They open by conversion to the current format.

use anyhow::{bail, Context, Result};
use safetensors::{Dtype, SafeTensors};

use super::{parse_shard_label, ContextRecord, TableMeta, TableParts, VectorDtype};
use crate::escape;

const FORMAT: &str = "pelt-table/1";

/// Whether `bytes` start like a safetensors file whose `format` is `pelt-table/1`.
pub(super) fn is_v1(bytes: &[u8]) -> bool {
    let Some(n) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8")))
    else {
        return false;
    };
    let Some(header) = usize::try_from(n)
        .ok()
        .and_then(|n| bytes.get(8..8usize.checked_add(n)?))
    else {
        return false;
    };
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "__metadata__")]
        meta: Option<std::collections::HashMap<String, String>>,
    }
    serde_json::from_slice::<Head>(header)
        .ok()
        .and_then(|h| h.meta)
        .is_some_and(|m| m.get("format").map(String::as_str) == Some(FORMAT))
}

pub(super) fn parts_from_v1(bytes: &[u8]) -> Result<TableParts> {
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
        v.trim()
            .parse::<T>()
            .ok()
            .with_context(|| format!("metadata field `{k}` = `{}` is not {what}", escape::text(v)))
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
    let tensor = |name: &str, dtype: Dtype, shape: &[usize]| tensor_bytes(&st, name, dtype, shape);
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
    if st.tensor("sums_exact").is_ok() {
        bail!("a shard table of the first format (pelt-table/1): build the shards again with this version and merge them");
    }
    if st.tensor("contexts").is_err() && counts.iter().any(|&c| c > 0) {
        bail!("a table of the first format without its contexts: build it again with this version");
    }
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
    Ok(TableParts {
        meta: Some(TableMeta {
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
                Some(other) => {
                    bail!("metadata `mentions` is `{other}`, expected `links`, `names` or `both`")
                }
            },
            window: match meta.get("window") {
                Some(v) => parse(v, "window", "a non-negative integer")?,
                None => 0,
            },
            dtype: VectorDtype::F32,
            entities_total: n,
            entity_list_sha256: String::new(),
        }),
        entity_ids,
        entity_names,
        entity_aliases,
        sums,
        found,
        norm,
        contexts,
    })
}

fn le_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect()
}
