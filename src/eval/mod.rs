//! Evaluating a table: entity typing by k-nearest neighbours, and cloze probes.
//!
//! **Typing.** Each labelled entity of the table is classified by the labels of its `k` nearest other
//! labelled entities (cosine; leave-one-out), once with the table's vectors and once with the
//! mean input word-piece embedding of its name (what the model knows without the table), next
//! to a majority-label baseline. The vote is a plurality; a tie goes to the tied label whose
//! nearest member is closest.
//!
//! **Cloze.** A probe is a sentence with one mention masked (a single word piece, the gold
//! token) and another entity's mention that is plugged with the `X ( X )` rewrite. The gold
//! token's rank at the mask gives P@1, P@10 and the reciprocal rank, without the table (the
//! plain masked sentence) and with it at each norm.

mod classes;
mod cloze;
mod job;
mod probes;

pub use classes::{
    labels_from_pubtator, row_classes, source_name, LabelSource, RowClasses, NO_CLASS,
};
pub use cloze::{
    eval_cloze, eval_cloze_with_progress, with_table_norm, ClozeReport, ClozeScore, ProbeRanks,
};
pub use job::{run_eval_job, EvalJob, EvalResults, EvalSettings};
pub use probes::{probes_from_fewrel, probes_from_tsv, Probe, ProbeReport};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::path::Path;

use crate::table::Table;

/// Entity id → label.
pub type Labels = BTreeMap<String, String>;

/// Reads `id<TAB>label` lines (`#` comments and blank lines skipped).
pub fn labels_from_tsv(path: &Path) -> Result<Labels> {
    let text = crate::corpus::read_text_capped(
        path,
        crate::entities::MAX_LIST_BYTES,
        crate::corpus::MAX_TEXT_LINE_BYTES,
    )
    .with_context(|| format!("cannot read labels {}", crate::escape::path(path)))?;
    let mut out = Labels::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((id, label)) = line.split_once('\t') else {
            bail!("{}:{}: expected id<TAB>label", path.display(), i + 1);
        };
        let (id, label) = (id.trim(), label.trim());
        if id.is_empty() || label.is_empty() {
            bail!("{}:{}: empty id or label", path.display(), i + 1);
        }
        if out.insert(id.to_string(), label.to_string()).is_some() {
            bail!("{}:{}: id `{id}` is labelled twice", path.display(), i + 1);
        }
    }
    if out.is_empty() {
        bail!("{}: no labels", path.display());
    }
    Ok(out)
}

/// Labels from FewRel-style files (relation → examples): an entity's label is the relation
/// slot it fills most often, `relation/head` or `relation/tail` (the first seen on ties). Only
/// entities linked at least `min_mentions` times in these files are kept.
pub fn labels_from_fewrel(paths: &[impl AsRef<Path>], min_mentions: usize) -> Result<Labels> {
    // id -> slot -> (count, first seen)
    let mut slots: HashMap<String, HashMap<String, (usize, usize)>> = HashMap::new();
    let mut seen = 0usize;
    let mut without_relation = 0usize;
    for p in paths {
        let p = p.as_ref();
        crate::corpus::for_each_fewrel_example(
            p,
            crate::corpus::DEFAULT_MAX_LINE_BYTES,
            |_, ex| {
                let Some(rel) = &ex.relation else {
                    without_relation += 1;
                    return Ok(ControlFlow::Continue(()));
                };
                for (slot, ent) in [("head", &ex.head), ("tail", &ex.tail)] {
                    let Some(e) = ent else { continue };
                    if e.id.is_empty() {
                        continue;
                    }
                    // Linked mentions: the position groups that are spans of this example's tokens
                    // (the corpus reader drops the others as links too).
                    let n = e
                        .positions
                        .iter()
                        .filter(|g| !g.is_empty() && g.iter().all(|&t| t < ex.tokens.len()))
                        .count();
                    if n == 0 {
                        continue;
                    }
                    seen += 1;
                    slots
                        .entry(e.id.clone())
                        .or_default()
                        .entry(format!("{rel}/{slot}"))
                        .or_insert((0, seen))
                        .0 += n;
                }
                Ok(ControlFlow::Continue(()))
            },
        )?;
    }
    if slots.is_empty() {
        if without_relation > 0 {
            bail!("the FewRel files have no relation labels (a plain list of examples, not relation → examples)");
        }
        bail!("no linked entities in the FewRel files");
    }
    let out: Labels = slots
        .into_iter()
        .filter(|(_, s)| s.values().map(|v| v.0).sum::<usize>() >= min_mentions)
        .map(|(id, s)| {
            let label = s
                .into_iter()
                .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.1 .1.cmp(&a.1 .1)))
                .map(|(l, _)| l)
                .expect("a slot");
            (id, label)
        })
        .collect();
    if out.is_empty() {
        bail!("no entity has at least {min_mentions} linked mentions in the FewRel files");
    }
    Ok(out)
}

/// Accuracy of one method, overall and per label.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MethodScore {
    pub method: String,
    pub correct: usize,
    pub total: usize,
    pub accuracy: f64,
    /// label → (correct, total)
    pub per_label: BTreeMap<String, (usize, usize)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TypingReport {
    pub k: usize,
    /// Labelled entities of the table.
    pub entities: usize,
    /// Of those, the ones with a table vector (found in the corpus).
    pub found: usize,
    /// Labels whose id is not in the table (ignored).
    pub unknown_ids: usize,
    pub labels: usize,
    /// Over all labelled entities (an entity without a vector counts as wrong for `table`).
    pub all: Vec<MethodScore>,
    /// Over the labelled entities with a table vector.
    pub found_only: Vec<MethodScore>,
}

/// Leave-one-out k-NN predictions by cosine. `vectors[i]` `None` (or zero) gets no
/// prediction and is no one's neighbour.
pub fn knn_loo(vectors: &[Option<Vec<f32>>], labels: &[usize], k: usize) -> Vec<Option<usize>> {
    let unit: Vec<Option<Vec<f32>>> = vectors
        .iter()
        .map(|v| {
            let v = v.as_ref()?;
            let n = v
                .iter()
                .map(|x| (*x as f64) * (*x as f64))
                .sum::<f64>()
                .sqrt();
            (n > 0.0 && n.is_finite()).then(|| v.iter().map(|x| (*x as f64 / n) as f32).collect())
        })
        .collect();
    (0..vectors.len())
        .map(|i| {
            let a = unit[i].as_ref()?;
            let mut sims: Vec<(f32, usize)> = unit
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .filter_map(|(j, b)| {
                    let b = b.as_ref()?;
                    Some((a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>(), j))
                })
                .collect();
            if sims.is_empty() {
                return None;
            }
            sims.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
            sims.truncate(k.max(1));
            // label -> (votes, rank of its nearest member)
            let mut votes: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
            for (rank, (_, j)) in sims.iter().enumerate() {
                let e = votes.entry(labels[*j]).or_insert((0, rank));
                e.0 += 1;
            }
            votes
                .into_iter()
                .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.1 .1.cmp(&a.1 .1)))
                .map(|(l, _)| l)
        })
        .collect()
}

/// Leave-one-out majority label: the most frequent label among the other entities (smallest
/// label index on ties).
fn majority_loo(labels: &[usize], n_labels: usize) -> Vec<Option<usize>> {
    let mut counts = vec![0usize; n_labels];
    for &l in labels {
        counts[l] += 1;
    }
    labels
        .iter()
        .map(|&own| {
            (0..n_labels)
                .map(|l| (counts[l] - usize::from(l == own), l))
                .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
                .filter(|(c, _)| *c > 0)
                .map(|(_, l)| l)
        })
        .collect()
}

fn score(
    method: &str,
    pred: &[Option<usize>],
    gold: &[usize],
    names: &[String],
    keep: &[bool],
) -> MethodScore {
    let mut per_label: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut correct, mut total) = (0, 0);
    for i in 0..gold.len() {
        if !keep[i] {
            continue;
        }
        let ok = pred[i] == Some(gold[i]);
        let e = per_label.entry(names[gold[i]].clone()).or_default();
        e.1 += 1;
        total += 1;
        if ok {
            e.0 += 1;
            correct += 1;
        }
    }
    MethodScore {
        method: method.into(),
        correct,
        total,
        accuracy: if total > 0 {
            correct as f64 / total as f64
        } else {
            0.0
        },
        per_label,
    }
}

/// k-NN typing of the table's labelled entities. `name_vectors[i]`, when given, is the name
/// baseline's vector of table row `i`.
pub fn eval_typing(
    table: &Table,
    labels: &Labels,
    name_vectors: Option<&[Vec<f32>]>,
    k: usize,
) -> Result<TypingReport> {
    if k == 0 {
        bail!("k must be at least 1");
    }
    let mut rows = Vec::new();
    let mut label_names: Vec<String> = Vec::new();
    let mut label_index: HashMap<&str, usize> = HashMap::new();
    let mut gold = Vec::new();
    for (row, id) in table.entity_ids.iter().enumerate() {
        if let Some(l) = labels.get(id) {
            let li = *label_index.entry(l.as_str()).or_insert_with(|| {
                label_names.push(l.clone());
                label_names.len() - 1
            });
            rows.push(row);
            gold.push(li);
        }
    }
    let unknown_ids = labels.len() - rows.len();
    if rows.is_empty() {
        bail!(
            "none of the {} labelled ids is an entity of the table (e.g. `{}`)",
            labels.len(),
            labels.keys().next().map(String::as_str).unwrap_or("")
        );
    }
    if label_names.len() < 2 {
        bail!(
            "all {} labelled entities have the same label; typing needs at least two",
            rows.len()
        );
    }
    let table_vecs: Vec<Option<Vec<f32>>> = rows
        .iter()
        .map(|&r| (table.counts[r] > 0).then(|| table.vector(r).into_owned()))
        .collect();
    let found: Vec<bool> = table_vecs.iter().map(Option::is_some).collect();
    let everyone = vec![true; rows.len()];
    let mut methods: Vec<(&str, Vec<Option<usize>>)> =
        vec![("table", knn_loo(&table_vecs, &gold, k))];
    if let Some(nv) = name_vectors {
        let v: Vec<Option<Vec<f32>>> = rows.iter().map(|&r| Some(nv[r].clone())).collect();
        methods.push(("name", knn_loo(&v, &gold, k)));
        // The same, with neighbours only among found entities, for the found-only scores.
        let vf: Vec<Option<Vec<f32>>> = rows
            .iter()
            .zip(&found)
            .map(|(&r, &f)| f.then(|| nv[r].clone()))
            .collect();
        methods.push(("name (found)", knn_loo(&vf, &gold, k)));
    }
    methods.push(("majority", majority_loo(&gold, label_names.len())));
    let found_gold: Vec<usize> = gold.clone();
    let mut all = Vec::new();
    let mut found_only = Vec::new();
    for (m, pred) in &methods {
        if *m != "name (found)" {
            all.push(score(m, pred, &gold, &label_names, &everyone));
        }
        if *m != "name" {
            let name = if *m == "name (found)" { "name" } else { m };
            found_only.push(score(name, pred, &found_gold, &label_names, &found));
        }
    }
    Ok(TypingReport {
        k,
        entities: rows.len(),
        found: found.iter().filter(|&&f| f).count(),
        unknown_ids,
        labels: label_names.len(),
        all,
        found_only,
    })
}

/// The mean input word-piece embedding of each entity's name (special tokens left out).
pub fn name_vectors(
    table: &Table,
    tokenizer: &crate::model::TextTokenizer,
    word_emb: &[f32],
) -> Result<Vec<Vec<f32>>> {
    let h = table.hidden();
    table
        .entity_names
        .iter()
        .map(|name| {
            let enc = tokenizer.encode(name)?;
            let mut v = vec![0f32; h];
            let mut n = 0;
            for (i, &id) in enc.ids.iter().enumerate() {
                if enc.special[i] {
                    continue;
                }
                let row = word_emb
                    .get(id as usize * h..(id as usize + 1) * h)
                    .context("token id outside the embedding matrix")?;
                for (a, b) in v.iter_mut().zip(row) {
                    *a += b;
                }
                n += 1;
            }
            if n > 0 {
                v.iter_mut().for_each(|x| *x /= n as f32);
            }
            Ok(v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::cloze::rank;
    use super::probes::masked;
    use super::*;

    #[test]
    fn knn_votes_and_breaks_ties_by_the_nearest() {
        // Two clusters on the axes; entity 4 sits between, nearer to the x cluster.
        let v = |x: f32, y: f32| Some(vec![x, y]);
        let vectors = vec![
            v(1.0, 0.0),
            v(0.9, 0.1),
            v(0.0, 1.0),
            v(0.1, 0.9),
            v(0.6, 0.4),
            None,
        ];
        let labels = vec![0, 0, 1, 1, 1, 0];
        let p = knn_loo(&vectors, &labels, 1);
        assert_eq!(p, vec![Some(0), Some(0), Some(1), Some(1), Some(0), None]);
        // k = 2 for entity 4: both nearest (1 and 0) are of the x cluster.
        let p = knn_loo(&vectors, &labels, 2);
        assert_eq!(p[4], Some(0));
        // k = 3 for entity 0: neighbours 1 (0), 4 (1), 3 (1) -> label 1 by plurality.
        let p = knn_loo(&vectors, &labels, 3);
        assert_eq!(p[0], Some(1));
        assert_eq!(majority_loo(&[0, 0, 1], 2), vec![Some(0), Some(0), Some(0)]);
        assert_eq!(majority_loo(&[0, 1], 2), vec![Some(1), Some(0)]);
    }

    #[test]
    fn cloze_ranks_and_scores() {
        assert_eq!(rank(&[0.1, 0.5, 0.3], 1), 1);
        assert_eq!(rank(&[0.1, 0.5, 0.3], 0), 3);
        let s = ClozeScore::of(&[1, 2, 11, 1]);
        assert_eq!((s.probes, s.p_at_1, s.p_at_10), (4, 0.5, 0.75));
        assert!((s.mrr - (1.0 + 0.5 + 1.0 / 11.0 + 1.0) / 4.0).abs() < 1e-12);
        let (t, at) = masked("New York is big", 0, 8, "[MASK]");
        assert_eq!(t, "[MASK] is big");
        assert_eq!((at(9), at(11)), (7, 9));
    }
}
