//! Merging the shard tables of one build: shards hold disjoint rows, so a merge streams them
//! in row order, copying each row as stored; the merge of all shards is the single build's file.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;

use super::{parse_shard_label, Table, TableMeta, TableWriter};

/// The metadata of the merge of `tables` (shards of one build); refuses tables that do not
/// belong together, shards given twice, and missing shards unless `partial`.
pub fn merged_meta(tables: &[Table], partial: bool) -> Result<TableMeta> {
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
        let what = |field: &str| {
            format!(
                "table {} differs from table 1 in {field}: cannot merge",
                t + 1
            )
        };
        let (a, b) = (&table.meta, &first.meta);
        if a.model_sha256 != b.model_sha256 || a.hidden_size != b.hidden_size {
            bail!(what("model"));
        }
        for (field, same) in [
            (
                "entity list",
                a.entity_list_sha256 == b.entity_list_sha256
                    && a.entities_total == b.entities_total,
            ),
            ("k", a.k == b.k),
            ("seed", a.seed == b.seed),
            ("max_len", a.max_len == b.max_len),
            ("corpus", a.corpus_sha256 == b.corpus_sha256),
            ("case sensitivity", a.case_sensitive == b.case_sensitive),
            ("mention mode", a.mentions == b.mentions),
            ("window (batch size)", a.window == b.window),
            ("vector type", a.dtype == b.dtype),
            (
                "norm",
                table.norm == first.norm && table.stored_norm == first.stored_norm,
            ),
        ] {
            if !same {
                bail!(what(field));
            }
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
    let mut meta = first.meta.clone();
    let all: Vec<usize> = seen.into_keys().collect();
    meta.shard = if all.len() == n {
        "all".into()
    } else {
        all.iter()
            .map(|i| format!("{i}/{n}"))
            .collect::<Vec<_>>()
            .join("+")
    };
    Ok(meta)
}

/// Streams the rows of shard tables (checked by [`merged_meta`]) into `w` in the order of the
/// whole build: vectors and context references are copied as stored (the text too, where the
/// shards keep it), so the merge of all shards is byte-identical to the single build. Refuses
/// rows held by two shards, and shards that keep their contexts differently.
pub fn merge_into(tables: &[Table], w: &mut TableWriter) -> Result<()> {
    let layout = tables.first().context("nothing to merge")?.context_layout();
    for (t, table) in tables.iter().enumerate().skip(1) {
        let other = table.context_layout();
        if other.text != layout.text {
            bail!(
                "table {} stores its context text `{}` but table 1 `{}`: shards of one build keep their text the same way",
                t + 1,
                other.text.as_str(),
                layout.text.as_str()
            );
        }
        if other.corpus_files != layout.corpus_files {
            bail!(
                "table {} names other corpus files than table 1: cannot merge",
                t + 1
            );
        }
    }
    w.set_contexts(layout)?;
    let mut next = vec![0usize; tables.len()];
    loop {
        // The shard holding the lowest row not written yet.
        let mut holder: Option<(usize, u32)> = None;
        for (t, table) in tables.iter().enumerate() {
            let rows = table.rows.as_ref().context("a shard table without rows")?;
            let Some(&r) = rows.get(next[t]) else {
                continue;
            };
            match holder {
                Some((other, lowest)) if lowest == r => bail!(
                    "entity row {r} is in tables {} and {}: the shards overlap",
                    other + 1,
                    t + 1
                ),
                Some((_, lowest)) if lowest < r => {}
                _ => holder = Some((t, r)),
            }
        }
        let Some((t, row)) = holder else { break };
        let i = next[t];
        next[t] += 1;
        tables[t].push_row(i, row, w)?;
    }
    Ok(())
}
