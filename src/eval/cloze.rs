//! Cloze scoring: the gold token's rank at the mask without the table and with it at each norm.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::{Probe, ProbeReport};
use crate::table::Table;

/// P@1, P@10 and mean reciprocal rank over a set of probes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ClozeScore {
    pub probes: usize,
    pub p_at_1: f64,
    pub p_at_10: f64,
    pub mrr: f64,
}

impl ClozeScore {
    pub(super) fn of(ranks: &[usize]) -> Self {
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
pub(super) fn rank(logits: &[f32], gold: u32) -> usize {
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
