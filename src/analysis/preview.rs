//! The Preview: fill-mask on a text of one's own without entity vectors and with them plugged
//! in at two norms (the Preview and Norm tabs of the workbench).

use anyhow::{Context, Result};

use super::Predictions;
use crate::contexts::MentionFinder;
use crate::model::Model;
use crate::rewrite::rewrite;
use crate::table::Table;

#[derive(Debug, Clone)]
pub struct MaskComparison {
    pub without: Predictions,
    pub with_a: Predictions,
    pub with_b: Predictions,
}

#[derive(Debug, Clone)]
pub struct PreviewResult {
    pub text: String,
    /// Each mention found in `text`.
    pub mentions: Vec<FoundMention>,
    pub rewritten: String,
    /// The rewritten text's tokens.
    pub tokens: Vec<PreviewToken>,
    pub masks: Vec<MaskComparison>,
    pub norm_a: f32,
    pub norm_b: f32,
}

/// A mention found in a preview text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundMention {
    /// Byte span in the text.
    pub start: usize,
    pub end: usize,
    pub entity: usize,
    /// Whether the entity's vector was plugged in (the mention was not switched off).
    pub plugged: bool,
}

/// One token of a rewritten preview text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewToken {
    pub id: u32,
    pub text: String,
    /// The entity whose vector sits at this position.
    pub entity: Option<usize>,
}

/// What [`preview`] runs: `text`, with the mention spans `(start, end)` in `disabled` left
/// as plain text, at two norms, keeping the `top_k` predictions per mask.
pub struct PreviewInput<'a> {
    pub text: &'a str,
    pub disabled: &'a [(usize, usize)],
    pub norm_a: f32,
    pub norm_b: f32,
    pub top_k: usize,
}

/// Fill-mask predictions for a text without entity vectors and with them at two norms;
/// `finder` finds the mentions of `table`'s entities (build it once per table).
pub fn preview(
    model: &Model,
    table: &Table,
    finder: &MentionFinder,
    input: PreviewInput,
) -> Result<PreviewResult> {
    let PreviewInput {
        text,
        disabled,
        norm_a,
        norm_b,
        top_k: k,
    } = input;
    let found: Vec<_> = finder
        .find(text)
        .into_iter()
        .filter(|m| table.counts[m.entity] > 0)
        .collect();
    let plug: Vec<_> = found
        .iter()
        .copied()
        .filter(|m| !disabled.contains(&(m.start, m.end)))
        .collect();
    let rw = rewrite(&model.tokenizer, text, &plug, &table.entity_names)?;
    let plain = model.tokenizer.encode(text)?;
    let plain_masks = model.tokenizer.mask_positions(&plain);
    let mut masks = Vec::new();
    if !plain_masks.is_empty() {
        let pos: Vec<(usize, usize)> = plain_masks.iter().map(|&p| (0, p)).collect();
        let without = model
            .encoder
            .forward(std::slice::from_ref(&plain.ids), &[], &pos, true)?;
        let pos_rw: Vec<(usize, usize)> = rw.masks.iter().map(|&p| (0, p)).collect();
        let run = |norm: f32| {
            let inj = rw.injections(0, |e| table.embedding_at(e, norm));
            model
                .encoder
                .forward(std::slice::from_ref(&rw.ids), &inj, &pos_rw, true)
        };
        let (a, b) = (run(norm_a)?, run(norm_b)?);
        for i in 0..plain_masks.len().min(rw.masks.len()) {
            masks.push(MaskComparison {
                without: super::predictions(model, logits(&without, i)?, k),
                with_a: super::predictions(model, logits(&a, i)?, k),
                with_b: super::predictions(model, logits(&b, i)?, k),
            });
        }
    }
    let tokens = rw
        .ids
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let ent = rw.plugged.iter().find(|(p, _)| *p == i).map(|&(_, e)| e);
            let tok = match ent {
                Some(e) => format!("[[{}]]", table.entity_names[e]),
                None => model.tokenizer.token(id),
            };
            PreviewToken {
                id,
                text: tok,
                entity: ent,
            }
        })
        .collect();
    Ok(PreviewResult {
        text: text.to_string(),
        mentions: found
            .iter()
            .map(|m| FoundMention {
                start: m.start,
                end: m.end,
                entity: m.entity,
                plugged: plug.contains(m),
            })
            .collect(),
        rewritten: rw.display,
        tokens,
        masks,
        norm_a,
        norm_b,
    })
}

fn logits(out: &crate::model::EncoderOutput, row: usize) -> Result<&[f32]> {
    out.logits_row(row)
        .context("the encoder returned no logits")
}
