//! Cloze probes: made from FewRel-style files or from `sentence<TAB>gold<TAB>entity id` lines.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;
use std::path::Path;

use crate::table::Table;

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
pub(super) fn masked(
    text: &str,
    a: usize,
    b: usize,
    mask: &str,
) -> (String, impl Fn(usize) -> usize) {
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
    let text = crate::corpus::read_text_capped(
        path,
        crate::entities::MAX_LIST_BYTES,
        crate::corpus::MAX_TEXT_LINE_BYTES,
    )
    .with_context(|| format!("cannot read probes {}", crate::escape::path(path)))?;
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
