//! PELT's input rewriting: `… COVID-19 have …` → `… COVID-19 ( COVID-19 ) have …`, where the
//! bracketed copy is one input position whose word embedding is the entity vector.

use anyhow::Result;

use crate::contexts::Mention;
use crate::model::{Injection, TextTokenizer};

/// A sentence prepared for the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Rewritten {
    /// Human-readable text: each plugged copy is shown as `[[name]]`.
    pub display: String,
    pub ids: Vec<u32>,
    /// `(position, entity row)` for every position that carries an entity vector.
    pub plugged: Vec<(usize, usize)>,
    /// Positions of the user's own mask tokens.
    pub masks: Vec<usize>,
}

impl Rewritten {
    /// Injections of the entity vectors, each `vector(entity)`.
    pub fn injections(
        &self,
        row: usize,
        mut vector: impl FnMut(usize) -> Vec<f32>,
    ) -> Vec<Injection> {
        self.plugged
            .iter()
            .map(|&(position, e)| Injection {
                row,
                position,
                vector: vector(e),
            })
            .collect()
    }
}

/// Rewrites `text`, appending ` ( X )` after each mention in `plug` (X becomes one position
/// carrying the entity vector). `names[e]` is used for display only.
pub fn rewrite(
    tok: &TextTokenizer,
    text: &str,
    plug: &[Mention],
    names: &[String],
) -> Result<Rewritten> {
    let placeholder = tok.mask_token();
    let mut model_text = String::new();
    let mut display = String::new();
    let mut slots: Vec<(usize, usize, usize)> = Vec::new();
    let mut last = 0;
    let mut plug: Vec<&Mention> = plug.iter().collect();
    plug.sort_by_key(|m| m.start);
    for m in plug {
        if m.start < last || m.end > text.len() {
            continue;
        }
        model_text.push_str(&text[last..m.end]);
        display.push_str(&text[last..m.end]);
        model_text.push_str(" ( ");
        let a = model_text.len();
        model_text.push_str(placeholder);
        slots.push((a, model_text.len(), m.entity));
        model_text.push_str(" )");
        let name = names.get(m.entity).map(String::as_str).unwrap_or("?");
        display.push_str(&format!(" ( [[{name}]] )"));
        last = m.end;
    }
    model_text.push_str(&text[last..]);
    display.push_str(&text[last..]);
    let enc = tok.encode(&model_text)?;
    let mut plugged = Vec::new();
    let mut masks = Vec::new();
    for (i, (&id, &(a, b))) in enc.ids.iter().zip(&enc.offsets).enumerate() {
        if id != tok.mask_id() {
            continue;
        }
        // The mask token may carry a leading space in its offsets (RoBERTa's lstrip).
        match slots.iter().find(|&&(sa, sb, _)| a < sb && b > sa) {
            Some(&(_, _, e)) => plugged.push((i, e)),
            None => masks.push(i),
        }
    }
    Ok(Rewritten {
        display,
        ids: enc.ids,
        plugged,
        masks,
    })
}
