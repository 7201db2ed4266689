//! Classes of a table's entities for colouring a map: from the evaluation's labels (a labels
//! TSV, or FewRel's relation slots), from the entity types of a PubTator corpus, or from any
//! `id<TAB>label` file, turned into one class per row.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{labels_from_fewrel, labels_from_tsv, Labels};
use crate::table::Table;

/// Where the classes come from.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelSource {
    /// The evaluation's labels: `labels` when given, else the FewRel files' relation slots of
    /// entities with at least `min_mentions` linked mentions there.
    Evaluate {
        labels: Option<PathBuf>,
        fewrel: Vec<PathBuf>,
        min_mentions: usize,
    },
    /// The entity types of PubTator files: each id's most frequent type.
    PubTator(Vec<PathBuf>),
    /// `id<TAB>label` lines.
    Tsv(PathBuf),
}

impl LabelSource {
    pub fn read(&self) -> Result<Labels> {
        match self {
            LabelSource::Evaluate {
                labels: Some(p), ..
            } => labels_from_tsv(p),
            LabelSource::Evaluate {
                labels: None,
                fewrel,
                min_mentions,
            } => {
                if fewrel.is_empty() {
                    bail!("the project's evaluation has no labels: add FewRel files or a labels TSV on the Evaluate tab");
                }
                labels_from_fewrel(fewrel, *min_mentions)
            }
            LabelSource::PubTator(files) => labels_from_pubtator(files),
            LabelSource::Tsv(p) => labels_from_tsv(p),
        }
    }
}

/// The type each id of PubTator files is annotated with most often (the first seen on ties);
/// ids of the same annotation separated by `;` or `,` each count.
pub fn labels_from_pubtator(files: &[PathBuf]) -> Result<Labels> {
    // id -> type -> (count, first seen)
    let mut types: HashMap<String, HashMap<String, (usize, usize)>> = HashMap::new();
    let mut seen = 0usize;
    for f in files {
        let mut lines = crate::corpus::LineReader::open(f, crate::corpus::DEFAULT_MAX_LINE_BYTES)
            .with_context(|| format!("cannot read {}", crate::escape::path(f)))?;
        while let Some((_, line)) = lines.next_capped()? {
            let Ok(line) = line else { continue };
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() < 6 || cols[1].trim().parse::<usize>().is_err() {
                continue;
            }
            let ty = cols[4].trim();
            if ty.is_empty() {
                continue;
            }
            for id in cols[5].split([';', ',']).map(str::trim) {
                if id.is_empty() || id == "-" {
                    continue;
                }
                seen += 1;
                types
                    .entry(id.to_string())
                    .or_default()
                    .entry(ty.to_string())
                    .or_insert((0, seen))
                    .0 += 1;
            }
        }
    }
    if types.is_empty() {
        bail!("no typed annotations (PMID<TAB>start<TAB>end<TAB>mention<TAB>type<TAB>id) in the PubTator files");
    }
    Ok(types
        .into_iter()
        .map(|(id, t)| {
            let ty = t
                .into_iter()
                .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.1 .1.cmp(&a.1 .1)))
                .map(|(t, _)| t)
                .expect("a type");
            (id, ty)
        })
        .collect())
}

/// Rows without a class in [`RowClasses::of_row`].
pub const NO_CLASS: u16 = u16::MAX;

/// One class per row of a table, the classes most frequent first.
#[derive(Debug, Clone, PartialEq)]
pub struct RowClasses {
    /// Class names with how many rows with a vector have them; when there were more than the
    /// classes kept, the last is "other" and gathers the rest.
    pub classes: Vec<(String, usize)>,
    /// Per row: an index into `classes`, or [`NO_CLASS`].
    pub of_row: Vec<u16>,
    /// Ids of the labels not in the table.
    pub unknown_ids: usize,
}

impl RowClasses {
    /// The classes of `table`'s rows under `labels`, keeping the `max_classes` most frequent
    /// among rows with a vector (ties by name) and putting the others in "other".
    pub fn new(table: &Table, labels: &Labels, max_classes: usize) -> RowClasses {
        let rows = table.rows_by_id();
        let mut label_of: Vec<Option<&str>> = vec![None; table.len()];
        let mut unknown_ids = 0;
        for (id, l) in labels {
            match rows.get(id.as_str()) {
                Some(&r) => label_of[r] = Some(l.as_str()),
                None => unknown_ids += 1,
            }
        }
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for (r, l) in label_of.iter().enumerate() {
            if let (Some(l), true) = (l, table.counts[r] > 0) {
                *counts.entry(l).or_default() += 1;
            }
        }
        let mut order: Vec<(&str, usize)> = counts.into_iter().collect();
        order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let keep = max_classes.clamp(1, NO_CLASS as usize - 1);
        let other = order.len() > keep;
        let kept = if other { keep - 1 } else { order.len() };
        let index: HashMap<&str, u16> = order
            .iter()
            .enumerate()
            .map(|(i, (l, _))| (*l, i.min(kept) as u16))
            .collect();
        let mut classes: Vec<(String, usize)> = order[..kept]
            .iter()
            .map(|(l, c)| (l.to_string(), *c))
            .collect();
        if other {
            let rest = order[kept..].iter().map(|(_, c)| c).sum();
            classes.push((format!("other ({} labels)", order.len() - kept), rest));
        }
        let of_row = label_of
            .iter()
            .map(|l| l.and_then(|l| index.get(l).copied()).unwrap_or(NO_CLASS))
            .collect();
        RowClasses {
            classes,
            of_row,
            unknown_ids,
        }
    }

    /// Rows with a vector that have a class.
    pub fn labelled(&self) -> usize {
        self.classes.iter().map(|c| c.1).sum()
    }
}

/// Reads `source` and classes `table`'s rows by it (see [`RowClasses::new`]).
pub fn row_classes(table: &Table, source: &LabelSource, max_classes: usize) -> Result<RowClasses> {
    let labels = source.read()?;
    let c = RowClasses::new(table, &labels, max_classes);
    if c.classes.is_empty() {
        bail!(
            "none of the {} labelled ids is an entity of the table with a vector",
            labels.len()
        );
    }
    Ok(c)
}

/// A label file's name for messages.
pub fn source_name(source: &LabelSource) -> String {
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.display().to_string())
    };
    match source {
        LabelSource::Evaluate {
            labels: Some(p), ..
        } => format!("labels {}", name(p)),
        LabelSource::Evaluate { fewrel, .. } => format!(
            "FewRel relation slots ({})",
            fewrel
                .iter()
                .map(|p| name(p))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        LabelSource::PubTator(f) => format!(
            "PubTator types ({})",
            f.iter().map(|p| name(p)).collect::<Vec<_>>().join(", ")
        ),
        LabelSource::Tsv(p) => name(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::TableParts;

    fn table(ids: &[&str], counts: &[i64]) -> Table {
        let n = ids.len();
        let mut parts = TableParts {
            meta: Some(crate::table::test_meta(4, n)),
            entity_ids: ids.iter().map(|s| s.to_string()).collect(),
            entity_names: ids.iter().map(|s| format!("name of {s}")).collect(),
            entity_aliases: vec![vec![]; n],
            sums: (0..n * 4).map(|i| (i % 5) as f32 + 1.0).collect(),
            found: counts.iter().map(|&c| c as u64).collect(),
            norm: 7.0,
            contexts: vec![],
        };
        parts.add_placeholder_contexts(counts);
        Table::from_parts(parts).expect("a table")
    }

    #[test]
    fn classes_are_counted_over_found_rows_and_the_rare_ones_are_other() {
        let t = table(&["a", "b", "c", "d", "e", "f"], &[1, 1, 1, 1, 1, 0]);
        let labels: Labels = [
            ("a", "X"),
            ("b", "X"),
            ("c", "Y"),
            ("d", "Z"),
            ("f", "Z"),
            ("zz", "X"),
        ]
        .iter()
        .map(|(i, l)| (i.to_string(), l.to_string()))
        .collect();
        let all = RowClasses::new(&t, &labels, 10);
        assert_eq!(
            all.classes,
            vec![("X".into(), 2), ("Y".into(), 1), ("Z".into(), 1)],
            "f has no vector, so Z counts 1"
        );
        assert_eq!(all.of_row, vec![0, 0, 1, 2, NO_CLASS, 2]);
        assert_eq!(all.unknown_ids, 1);
        assert_eq!(all.labelled(), 4);
        let two = RowClasses::new(&t, &labels, 2);
        assert_eq!(
            two.classes,
            vec![("X".into(), 2), ("other (2 labels)".into(), 2)]
        );
        assert_eq!(two.of_row, vec![0, 0, 1, 1, NO_CLASS, 1]);
    }

    #[test]
    fn pubtator_types_take_each_ids_most_frequent_type() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.pubtator");
        std::fs::write(
            &f,
            "1|t|Aspirin and headache\n1|a|Aspirin helps.\n\
             1\t0\t7\tAspirin\tChemical\tD001241\n\
             1\t12\t20\theadache\tDisease\tD006261\n\
             1\t22\t29\tAspirin\tDisease\tD001241\n\
             1\t22\t29\tAspirin\tChemical\tD001241;D000001\n\
             1\tCID\tD001241\tD006261\n\n",
        )
        .unwrap();
        let l = labels_from_pubtator(std::slice::from_ref(&f)).unwrap();
        assert_eq!(l.get("D001241").map(String::as_str), Some("Chemical"));
        assert_eq!(l.get("D006261").map(String::as_str), Some("Disease"));
        assert_eq!(l.get("D000001").map(String::as_str), Some("Chemical"));
        assert_eq!(l.len(), 3);
        std::fs::write(&f, "1|t|nothing typed\n").unwrap();
        let e = labels_from_pubtator(&[f]).unwrap_err().to_string();
        assert!(e.contains("no typed annotations"), "{e}");
    }
}
