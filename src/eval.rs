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
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read labels {}", path.display()))?;
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

/// One cloze probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// The sentence with the mask token in place of the gold word.
    pub text: String,
    /// Byte span in `text` of the mention to plug.
    pub mention: (usize, usize),
    /// Table row of the plugged entity.
    pub entity: usize,
    pub gold: u32,
    /// Relation (FewRel) or `probes` (TSV), for the per-relation scores.
    pub relation: String,
}

/// Probes that could not be made, and why (a count per reason, a few locations).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProbeReport {
    pub made: usize,
    pub no_one_piece_gold: usize,
    pub entity_not_in_table: usize,
    pub mention_not_found: usize,
    pub warnings: Vec<String>,
}

impl ProbeReport {
    fn warn(&mut self, w: String) {
        if self.warnings.len() < 20 {
            self.warnings.push(w);
        }
    }
}

/// The id of the single non-special token covering `text[a..b]`, if it is exactly one.
fn one_piece(
    tok: &crate::model::TextTokenizer,
    text: &str,
    a: usize,
    b: usize,
) -> Result<Option<u32>> {
    let enc = tok.encode(text)?;
    let hit: Vec<u32> = enc
        .ids
        .iter()
        .zip(&enc.offsets)
        .zip(&enc.special)
        .filter(|((_, &(x, y)), &sp)| !sp && x < b && y > a)
        .map(|((&id, _), _)| id)
        .collect();
    Ok((hit.len() == 1).then(|| hit[0]))
}

/// `text` with `text[a..b]` replaced by `mask`, and where byte offset `p` lands.
fn masked(text: &str, a: usize, b: usize, mask: &str) -> (String, impl Fn(usize) -> usize) {
    let t = format!("{}{mask}{}", &text[..a], &text[b..]);
    let shift = mask.len() as isize - (b - a) as isize;
    (t, move |p: usize| {
        if p >= b {
            (p as isize + shift) as usize
        } else {
            p
        }
    })
}

/// Probes from FewRel-style files (relation → examples): in each example the tail is masked
/// when it is one word piece (else the head, when it is), and the other entity is plugged.
/// Only examples whose plugged entity has a vector in the table are kept.
pub fn probes_from_fewrel(
    paths: &[impl AsRef<Path>],
    table: &Table,
    tok: &crate::model::TextTokenizer,
) -> Result<(Vec<Probe>, ProbeReport)> {
    let mut probes = Vec::new();
    let mut rep = ProbeReport::default();
    for p in paths {
        let p = p.as_ref();
        crate::corpus::for_each_fewrel_example(
            p,
            crate::corpus::DEFAULT_MAX_LINE_BYTES,
            |i, ex| {
                let text = ex.tokens.join(" ");
                let mut starts = Vec::with_capacity(ex.tokens.len());
                let mut pos = 0usize;
                for t in &ex.tokens {
                    starts.push(pos);
                    pos += t.len() + 1;
                }
                let span = |e: &crate::corpus::FewRelEntity| -> Option<(usize, usize)> {
                    let g = e.positions.first()?;
                    let (lo, hi) = (*g.iter().min()?, *g.iter().max()?);
                    (hi < ex.tokens.len()).then(|| (starts[lo], starts[hi] + ex.tokens[hi].len()))
                };
                let (Some(h), Some(t)) = (&ex.head, &ex.tail) else {
                    return Ok(ControlFlow::Continue(()));
                };
                let (Some(hs), Some(ts)) = (span(h), span(t)) else {
                    return Ok(ControlFlow::Continue(()));
                };
                let mut made = false;
                for (ts_, other, os) in [(ts, h, hs), (hs, t, ts)] {
                    let Some(gold) = one_piece(tok, &text, ts_.0, ts_.1)? else {
                        continue;
                    };
                    let Some(row) = table
                        .index_of_id(&other.id)
                        .filter(|&r| table.counts[r] > 0)
                    else {
                        rep.entity_not_in_table += 1;
                        made = true; // counted; no other direction tried
                        break;
                    };
                    let (mtext, at) = masked(&text, ts_.0, ts_.1, tok.mask_token());
                    probes.push(Probe {
                        text: mtext,
                        mention: (at(os.0), at(os.1)),
                        entity: row,
                        gold,
                        relation: ex.relation.clone().unwrap_or_else(|| "all".into()),
                    });
                    rep.made += 1;
                    made = true;
                    break;
                }
                if !made {
                    rep.no_one_piece_gold += 1;
                    rep.warn(format!(
                        "{}:{}: neither mention is one word piece",
                        p.display(),
                        i + 1
                    ));
                }
                Ok(ControlFlow::Continue(()))
            },
        )?;
    }
    Ok((probes, rep))
}

/// Probes from `sentence with [MASK]<TAB>gold<TAB>entity id` lines: the entity's first name or
/// alias match in the sentence is plugged; the mask token is the model's (`[MASK]` or
/// `<mask>` is accepted either way).
pub fn probes_from_tsv(
    path: &Path,
    table: &Table,
    tok: &crate::model::TextTokenizer,
) -> Result<(Vec<Probe>, ProbeReport)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read probes {}", path.display()))?;
    let mut probes = Vec::new();
    let mut rep = ProbeReport::default();
    for (i, line) in text.lines().enumerate() {
        let at = format!("{}:{}", path.display(), i + 1);
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() != 3 {
            bail!(
                "{at}: expected sentence<TAB>gold<TAB>entity id, got {} columns",
                cols.len()
            );
        }
        let sentence = cols[0]
            .replace("[MASK]", tok.mask_token())
            .replace("<mask>", tok.mask_token());
        let Some(m) = sentence.find(tok.mask_token()) else {
            bail!("{at}: the sentence has no {} token", tok.mask_token());
        };
        let Some(row) = table
            .index_of_id(cols[2].trim())
            .filter(|&r| table.counts[r] > 0)
        else {
            rep.entity_not_in_table += 1;
            rep.warn(format!(
                "{at}: entity `{}` has no vector in the table",
                cols[2].trim()
            ));
            continue;
        };
        // The gold word, in place of the mask, must be one word piece.
        let filled = format!(
            "{}{}{}",
            &sentence[..m],
            cols[1].trim(),
            &sentence[m + tok.mask_token().len()..]
        );
        let Some(gold) = one_piece(tok, &filled, m, m + cols[1].trim().len())? else {
            rep.no_one_piece_gold += 1;
            rep.warn(format!(
                "{at}: gold `{}` is not one word piece",
                cols[1].trim()
            ));
            continue;
        };
        let mut one = crate::entities::EntityList {
            entities: vec![table.entity_list().entities[row].clone()],
        };
        one.entities[0].id = "x".into();
        let finder = crate::contexts::MentionFinder::new(&one, table.meta.case_sensitive)?;
        let Some(mention) = finder
            .find(&sentence)
            .into_iter()
            .find(|x| x.end <= m || x.start >= m + tok.mask_token().len())
        else {
            rep.mention_not_found += 1;
            rep.warn(format!(
                "{at}: no mention of `{}` in the sentence",
                table.entity_names[row]
            ));
            continue;
        };
        probes.push(Probe {
            text: sentence,
            mention: (mention.start, mention.end),
            entity: row,
            gold,
            relation: "probes".into(),
        });
        rep.made += 1;
    }
    Ok((probes, rep))
}

/// P@1, P@10 and mean reciprocal rank over a set of probes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ClozeScore {
    pub probes: usize,
    pub p_at_1: f64,
    pub p_at_10: f64,
    pub mrr: f64,
}

impl ClozeScore {
    fn of(ranks: &[usize]) -> Self {
        let n = ranks.len().max(1) as f64;
        ClozeScore {
            probes: ranks.len(),
            p_at_1: ranks.iter().filter(|&&r| r == 1).count() as f64 / n,
            p_at_10: ranks.iter().filter(|&&r| r <= 10).count() as f64 / n,
            mrr: ranks.iter().map(|&r| 1.0 / r as f64).sum::<f64>() / n,
        }
    }
}

/// One probe's result: the gold piece's rank without the table and with it at each norm.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeRanks {
    /// The masked sentence.
    pub text: String,
    /// Id of the plugged entity.
    pub entity: String,
    pub gold: u32,
    pub relation: String,
    /// 1-based rank of the gold piece at the mask without the table.
    pub without: usize,
    /// Its rank with the table, at each norm of [`ClozeReport::with`] (same order).
    pub with: Vec<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClozeReport {
    pub probes: ProbeReport,
    pub without: ClozeScore,
    /// (norm, score with the table at that norm).
    pub with: Vec<(f32, ClozeScore)>,
    /// relation → (without, with at each norm).
    pub per_relation: BTreeMap<String, (ClozeScore, Vec<ClozeScore>)>,
    /// Each probe's ranks, in probe order (empty in results saved before they were kept).
    #[serde(default)]
    pub ranks: Vec<ProbeRanks>,
}

impl ClozeReport {
    /// The norm with the best P@1, then the best MRR (the smallest norm on ties).
    pub fn best_norm(&self) -> Option<f32> {
        self.with
            .iter()
            .max_by(|a, b| {
                a.1.p_at_1
                    .total_cmp(&b.1.p_at_1)
                    .then(a.1.mrr.total_cmp(&b.1.mrr))
                    .then(b.0.total_cmp(&a.0))
            })
            .map(|x| x.0)
    }
}

/// `norms` with `table_norm` added if missing, sorted: the norms a cloze run tries.
pub fn with_table_norm(norms: &[f32], table_norm: f32) -> Vec<f32> {
    let mut n = norms.to_vec();
    if !n.contains(&table_norm) {
        n.push(table_norm);
    }
    n.sort_by(f32::total_cmp);
    n
}

/// 1-based rank of `gold` in `logits`.
fn rank(logits: &[f32], gold: u32) -> usize {
    let g = logits[gold as usize];
    1 + logits.iter().filter(|&&x| x > g).count()
}

/// Runs the probes without the table and with it at each norm (batches of `batch`).
pub fn eval_cloze(
    model: &crate::model::Model,
    table: &Table,
    probes: Vec<Probe>,
    report: ProbeReport,
    norms: &[f32],
    batch: usize,
    cancel: &std::sync::atomic::AtomicBool,
) -> Result<ClozeReport> {
    eval_cloze_with_progress(
        model,
        table,
        probes,
        report,
        norms,
        batch,
        cancel,
        &mut |_| {},
    )
}

/// [`eval_cloze`], reporting progress (probe runs done of all, over every pass).
#[allow(clippy::too_many_arguments)]
pub fn eval_cloze_with_progress(
    model: &crate::model::Model,
    table: &Table,
    probes: Vec<Probe>,
    report: ProbeReport,
    norms: &[f32],
    batch: usize,
    cancel: &std::sync::atomic::AtomicBool,
    progress: &mut dyn FnMut(&crate::progress::Progress),
) -> Result<ClozeReport> {
    if probes.is_empty() {
        bail!(
            "no usable probes ({} without a one-piece gold word, {} whose entity has no vector in the table, {} without a mention of the entity)",
            report.no_one_piece_gold,
            report.entity_not_in_table,
            report.mention_not_found
        );
    }
    if let Some(n) = norms.iter().find(|n| !(n.is_finite() && **n > 0.0)) {
        bail!("norm {n} is not a positive number");
    }
    let tok = &model.tokenizer;
    // Without: the masked sentence as is. With: the rewritten one.
    let mut plain = Vec::with_capacity(probes.len());
    let mut rewritten = Vec::with_capacity(probes.len());
    for p in &probes {
        let enc = tok.encode(&p.text)?;
        let mask = tok.mask_positions(&enc);
        let m = crate::contexts::Mention {
            entity: p.entity,
            start: p.mention.0,
            end: p.mention.1,
            linked: false,
        };
        let rw = crate::rewrite::rewrite(tok, &p.text, &[m], &table.entity_names)?;
        if mask.len() != 1 || rw.masks.len() != 1 || rw.plugged.len() != 1 {
            bail!(
                "probe `{}`: expected one mask and one plugged mention",
                p.text
            );
        }
        plain.push((enc.ids, mask[0]));
        rewritten.push(rw);
    }
    let total = (probes.len() * (norms.len() + 1)) as u64;
    let mut meter = crate::progress::Meter::new(crate::progress::Phase::Evaluating, 0);
    let mut done = 0u64;
    let mut run = |inputs: &[(Vec<u32>, usize, Vec<(usize, usize)>)],
                   norm: Option<f32>|
     -> Result<Vec<usize>> {
        let mut ranks = Vec::with_capacity(inputs.len());
        for (c, chunk) in inputs.chunks(batch.max(1)).enumerate() {
            if cancel.load(std::sync::atomic::Ordering::Relaxed) {
                bail!("cancelled");
            }
            let seqs: Vec<Vec<u32>> = chunk.iter().map(|x| x.0.clone()).collect();
            let pos: Vec<(usize, usize)> =
                chunk.iter().enumerate().map(|(r, x)| (r, x.1)).collect();
            let inj: Vec<crate::model::Injection> = match norm {
                None => vec![],
                Some(n) => chunk
                    .iter()
                    .enumerate()
                    .flat_map(|(r, x)| {
                        x.2.iter()
                            .map(move |&(position, e)| crate::model::Injection {
                                row: r,
                                position,
                                vector: table.embedding_at(e, n),
                            })
                    })
                    .collect(),
            };
            let out = model.encoder.forward(&seqs, &inj, &pos, true)?;
            for (r, _) in chunk.iter().enumerate() {
                let gold = probes[c * batch.max(1) + r].gold;
                ranks.push(rank(out.logits_row(r).context("logits")?, gold));
            }
            done += chunk.len() as u64;
            if meter.due() {
                progress(&meter.progress(done, Some(total)));
            }
        }
        Ok(ranks)
    };
    let plain_in: Vec<_> = plain.into_iter().map(|(ids, m)| (ids, m, vec![])).collect();
    let rw_in: Vec<_> = rewritten
        .into_iter()
        .map(|r| (r.ids, r.masks[0], r.plugged))
        .collect();
    let without = run(&plain_in, None)?;
    let mut with = Vec::new();
    for &n in norms {
        with.push((n, run(&rw_in, Some(n))?));
    }
    let mut rels: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, p) in probes.iter().enumerate() {
        rels.entry(p.relation.clone()).or_default().push(i);
    }
    let pick = |ranks: &[usize], idx: &[usize]| {
        ClozeScore::of(&idx.iter().map(|&i| ranks[i]).collect::<Vec<_>>())
    };
    let per_relation = rels
        .into_iter()
        .map(|(r, idx)| {
            let w = pick(&without, &idx);
            let ws = with.iter().map(|(_, ranks)| pick(ranks, &idx)).collect();
            (r, (w, ws))
        })
        .collect();
    let ranks = probes
        .iter()
        .enumerate()
        .map(|(i, p)| ProbeRanks {
            text: p.text.clone(),
            entity: table.entity_ids[p.entity].clone(),
            gold: p.gold,
            relation: p.relation.clone(),
            without: without[i],
            with: with.iter().map(|(_, r)| r[i]).collect(),
        })
        .collect();
    Ok(ClozeReport {
        probes: report,
        without: ClozeScore::of(&without),
        with: with.iter().map(|(n, r)| (*n, ClozeScore::of(r))).collect(),
        per_relation,
        ranks,
    })
}

/// What to evaluate a table on (the GUI's Evaluate tab; saved with the project).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvalSettings {
    /// `id<TAB>label` lines; without it, labels come from `fewrel`.
    pub labels: Option<std::path::PathBuf>,
    /// FewRel-style files (relation → examples) for labels and probes.
    pub fewrel: Vec<std::path::PathBuf>,
    /// `sentence with [MASK]<TAB>gold<TAB>entity id` lines; without it, probes come from
    /// `fewrel`.
    pub probes: Option<std::path::PathBuf>,
    pub k: usize,
    pub min_mentions: usize,
    pub norms: Vec<f32>,
}

impl Default for EvalSettings {
    fn default() -> Self {
        EvalSettings {
            labels: None,
            fewrel: vec![],
            probes: None,
            k: 5,
            min_mentions: 3,
            norms: (1..=10).map(|n| n as f32).collect(),
        }
    }
}

/// Typing and cloze results of one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResults {
    /// The table's own norm when it was evaluated.
    pub table_norm: f32,
    pub typing: Option<TypingReport>,
    pub cloze: Option<ClozeReport>,
    /// Why a part could not run (no labels, no usable probes, …).
    pub notes: Vec<String>,
}

impl EvalResults {
    /// The norm with the best P@1, then the best MRR (the smallest norm on ties), if cloze ran.
    pub fn best_norm(&self) -> Option<f32> {
        self.cloze.as_ref()?.best_norm()
    }

    /// CSV rows: `part,method_or_norm,subset,metric,value,count`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("part,method_or_norm,subset,metric,value,count\n");
        if let Some(t) = &self.typing {
            for (subset, scores) in [("all", &t.all), ("found", &t.found_only)] {
                for m in scores {
                    out += &format!(
                        "typing,{},{subset},accuracy,{:.6},{}\n",
                        m.method, m.accuracy, m.total
                    );
                }
            }
        }
        if let Some(c) = &self.cloze {
            let mut row = |name: String, s: &ClozeScore| {
                for (metric, v) in [("p@1", s.p_at_1), ("p@10", s.p_at_10), ("mrr", s.mrr)] {
                    out += &format!("cloze,{name},all,{metric},{v:.6},{}\n", s.probes);
                }
            };
            row("without".into(), &c.without);
            for (n, s) in &c.with {
                row(format!("norm {n}"), s);
            }
        }
        out
    }
}

/// Runs what `settings` asks for on `table` with `model` (the table's): typing when there are
/// labels, cloze when there are probes. A part that cannot run says why in `notes`; an error
/// only when neither can.
pub fn evaluate(
    model: &crate::model::Model,
    table: &Table,
    settings: &EvalSettings,
    cancel: &std::sync::atomic::AtomicBool,
) -> Result<EvalResults> {
    evaluate_with_progress(model, table, settings, cancel, &mut |_| {})
}

/// [`evaluate`], reporting the cloze passes' progress.
pub fn evaluate_with_progress(
    model: &crate::model::Model,
    table: &Table,
    settings: &EvalSettings,
    cancel: &std::sync::atomic::AtomicBool,
    progress: &mut dyn FnMut(&crate::progress::Progress),
) -> Result<EvalResults> {
    let mut notes = Vec::new();
    let labels = match (&settings.labels, settings.fewrel.is_empty()) {
        (Some(p), _) => Some(labels_from_tsv(p)),
        (None, false) => Some(labels_from_fewrel(&settings.fewrel, settings.min_mentions)),
        (None, true) => None,
    };
    let typing = match labels {
        None => {
            notes.push("typing: no labels (choose a labels file or FewRel files)".into());
            None
        }
        Some(Err(e)) => {
            notes.push(format!("typing: {e:#}"));
            None
        }
        Some(Ok(l)) => {
            let names = name_vectors(table, &model.tokenizer, &model.encoder.word_embeddings()?)?;
            match eval_typing(table, &l, Some(&names), settings.k) {
                Ok(r) => Some(r),
                Err(e) => {
                    notes.push(format!("typing: {e:#}"));
                    None
                }
            }
        }
    };
    let probes = match (&settings.probes, settings.fewrel.is_empty()) {
        (Some(p), _) => Some(probes_from_tsv(p, table, &model.tokenizer)),
        (None, false) => Some(probes_from_fewrel(
            &settings.fewrel,
            table,
            &model.tokenizer,
        )),
        (None, true) => None,
    };
    let norms = with_table_norm(&settings.norms, table.norm);
    let cloze = match probes {
        None => {
            notes.push("cloze: no probes (choose a probes file or FewRel files)".into());
            None
        }
        Some(Err(e)) => {
            notes.push(format!("cloze: {e:#}"));
            None
        }
        Some(Ok((p, rep))) => {
            match eval_cloze_with_progress(model, table, p, rep, &norms, 32, cancel, progress) {
                Ok(r) => Some(r),
                Err(e) if cancel.load(std::sync::atomic::Ordering::Relaxed) => return Err(e),
                Err(e) => {
                    notes.push(format!("cloze: {e:#}"));
                    None
                }
            }
        }
    };
    if typing.is_none() && cloze.is_none() {
        bail!("nothing to evaluate: {}", notes.join("; "));
    }
    Ok(EvalResults {
        table_norm: table.norm,
        typing,
        cloze,
        notes,
    })
}

#[cfg(test)]
mod tests {
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
