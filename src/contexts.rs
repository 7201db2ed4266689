//! Contexts: mentions from entity links or from names (all names and aliases at once, whole
//! words, leftmost-longest), seeded uniform sampling of at most K contexts per entity, and
//! masking of one mention.

use aho_corasick::{AhoCorasick, MatchKind};
use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BinaryHeap, HashMap};

use crate::corpus::Sentence;
use crate::entities::EntityList;
use crate::model::TextTokenizer;
pub use crate::table::ContextRecord;

/// One mention of an entity in a text (byte offsets): a linked span, or a match of its name or
/// an alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mention {
    pub entity: usize,
    pub start: usize,
    pub end: usize,
    pub linked: bool,
}

/// Which spans count as mentions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MentionMode {
    /// `Links` when the corpus carries entity links, else `Names`.
    #[default]
    Auto,
    /// Only linked spans (the way PELT found mentions through Wikipedia's anchors).
    Links,
    /// Matches of entity names and aliases.
    Names,
    /// Linked spans, plus name/alias matches that overlap no link.
    Both,
}

impl MentionMode {
    pub const ALL: [MentionMode; 4] = [
        MentionMode::Auto,
        MentionMode::Links,
        MentionMode::Names,
        MentionMode::Both,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            MentionMode::Auto => "auto",
            MentionMode::Links => "links",
            MentionMode::Names => "names",
            MentionMode::Both => "both",
        }
    }
    pub fn parse(s: &str) -> Option<MentionMode> {
        MentionMode::ALL.into_iter().find(|m| m.as_str() == s)
    }
    /// The mode actually used: `Auto` becomes `Links` or `Names`.
    pub fn resolve(self, corpus_has_links: bool) -> MentionMode {
        match self {
            MentionMode::Auto if corpus_has_links => MentionMode::Links,
            MentionMode::Auto => MentionMode::Names,
            m => m,
        }
    }
    pub fn uses_links(self) -> bool {
        matches!(self, MentionMode::Links | MentionMode::Both)
    }
    pub fn uses_names(self) -> bool {
        matches!(self, MentionMode::Names | MentionMode::Both)
    }
}

/// Finds the mentions of a sentence in a resolved [`MentionMode`] (not `Auto`). Finding needs
/// only `&self` ([`MentionSource::find_shared`]), so one source serves several threads; links
/// to ids that are not on the entity list are counted by [`MentionSource::count_unknown`].
pub struct MentionSource {
    mode: MentionMode,
    finder: Option<MentionFinder>,
    ids: HashMap<String, usize>,
    /// Links seen whose id is not on the entity list.
    pub unknown_links: u64,
    /// A few of those ids, for the report.
    pub unknown_examples: Vec<String>,
}

/// The mentions of one sentence, and how many of its links point to ids not on the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    pub mentions: Vec<Mention>,
    pub unknown_links: usize,
}

impl MentionSource {
    pub fn new(entities: &EntityList, mode: MentionMode, case_sensitive: bool) -> Result<Self> {
        let mode = mode.resolve(true);
        let finder = if mode.uses_names() {
            Some(MentionFinder::new(entities, case_sensitive)?)
        } else {
            None
        };
        let ids = entities
            .entities
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.clone(), i))
            .collect();
        Ok(MentionSource {
            mode,
            finder,
            ids,
            unknown_links: 0,
            unknown_examples: Vec::new(),
        })
    }

    /// Surface strings shared by several entities (name matching only).
    pub fn collisions(&self) -> Vec<String> {
        self.finder
            .as_ref()
            .map(|f| f.collisions.clone())
            .unwrap_or_default()
    }

    /// The sentence's mentions (sorted by start and disjoint), counting unknown links.
    pub fn find(&mut self, s: &Sentence) -> Vec<Mention> {
        let found = self.find_shared(s);
        let mut counts = (
            self.unknown_links,
            std::mem::take(&mut self.unknown_examples),
        );
        self.count_unknown(s, &found, &mut counts);
        (self.unknown_links, self.unknown_examples) = counts;
        found.mentions
    }

    /// Adds the unknown links of `found` (the result of [`MentionSource::find_shared`] on `s`)
    /// to `(count, first examples)`; called in corpus order, the examples are the first five.
    pub fn count_unknown(&self, s: &Sentence, found: &Found, counts: &mut (u64, Vec<String>)) {
        if found.unknown_links == 0 {
            return;
        }
        counts.0 += found.unknown_links as u64;
        for l in &s.links {
            if counts.1.len() >= 5 {
                break;
            }
            if !self.ids.contains_key(&l.id) && !counts.1.contains(&l.id) {
                counts.1.push(l.id.clone());
            }
        }
    }

    /// The sentence's mentions, sorted by start and disjoint, and its count of unknown links.
    pub fn find_shared(&self, s: &Sentence) -> Found {
        let mut out = Vec::new();
        let mut unknown = 0;
        if self.mode.uses_links() {
            for l in &s.links {
                match self.ids.get(&l.id) {
                    Some(&entity) => out.push(Mention {
                        entity,
                        start: l.start,
                        end: l.end,
                        linked: true,
                    }),
                    None => unknown += 1,
                }
            }
        }
        if let Some(f) = &self.finder {
            let names = f.find(&s.text);
            if self.mode == MentionMode::Names || s.links.is_empty() {
                return Found {
                    mentions: names,
                    unknown_links: unknown,
                };
            }
            // `Both`: names only where no link is (unknown-id links block too: they are links).
            let links = &s.links;
            out.extend(
                names
                    .into_iter()
                    .filter(|m| !links.iter().any(|l| l.start < m.end && l.end > m.start)),
            );
            out.sort_by_key(|m| m.start);
        }
        Found {
            mentions: out,
            unknown_links: unknown,
        }
    }
}

/// Finds mentions of all entities at once.
pub struct MentionFinder {
    ac: AhoCorasick,
    owner: Vec<usize>,
    /// Surface strings shared by several entities (they go to the first one listed).
    pub collisions: Vec<String>,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl MentionFinder {
    /// Case-insensitive matching folds ASCII letters.
    pub fn new(entities: &EntityList, case_sensitive: bool) -> Result<Self> {
        let mut patterns: Vec<String> = Vec::new();
        let mut owner = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut collisions = Vec::new();
        for (i, e) in entities.entities.iter().enumerate() {
            for s in e.surfaces() {
                let s = s.trim();
                if s.is_empty() {
                    continue;
                }
                let key = if case_sensitive {
                    s.to_string()
                } else {
                    s.to_ascii_lowercase()
                };
                match seen.get(&key) {
                    Some(&j) if j != i => collisions.push(format!(
                        "`{s}` names both `{}` and `{}`; mentions go to `{}`",
                        entities.entities[j].id, e.id, entities.entities[j].id
                    )),
                    Some(_) => {}
                    None => {
                        seen.insert(key, i);
                        patterns.push(s.to_string());
                        owner.push(i);
                    }
                }
            }
        }
        let ac = AhoCorasick::builder()
            .ascii_case_insensitive(!case_sensitive)
            .match_kind(MatchKind::Standard)
            .build(&patterns)
            .context("cannot build the mention matcher")?;
        Ok(MentionFinder {
            ac,
            owner,
            collisions,
        })
    }

    /// Whole-word mentions in `text`: among overlapping candidates the one starting first wins,
    /// then the longest; scanning resumes after it.
    pub fn find(&self, text: &str) -> Vec<Mention> {
        let mut cands: Vec<(usize, usize, usize)> = self
            .ac
            .find_overlapping_iter(text)
            .filter(|m| {
                let before = text[..m.start()].chars().next_back();
                let after = text[m.end()..].chars().next();
                !before.is_some_and(is_word_char) && !after.is_some_and(is_word_char)
            })
            .map(|m| (m.start(), m.end(), self.owner[m.pattern().as_usize()]))
            .collect();
        cands.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut out = Vec::new();
        let mut next_free = 0;
        for (start, end, entity) in cands {
            if start >= next_free {
                out.push(Mention {
                    entity,
                    start,
                    end,
                    linked: false,
                });
                next_free = end;
            }
        }
        out
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The random priority of a mention: the K smallest per entity form a uniform sample without
/// replacement that depends only on the seed and the mention's place in the corpus.
pub fn sample_key(seed: u64, sentence_ordinal: u64, start: usize) -> u64 {
    splitmix64(
        splitmix64(seed ^ 0x5045_4C54)
            ^ splitmix64(sentence_ordinal).rotate_left(17)
            ^ (start as u64),
    )
}

/// Keeps, per entity, the `k` mentions with the smallest sample keys, each with a payload
/// `P` (e.g. its sentence, so that the corpus need not be read again for it).
pub struct Sampler<P = ()> {
    k: usize,
    seed: u64,
    heaps: Vec<BinaryHeap<Kept<P>>>,
    pub found: Vec<u64>,
}

/// A mention in a [`Sampler`]'s heap: ordered by its sample key (then its place), never by
/// its payload.
struct Kept<P> {
    key: (u64, u64, u32, u32, bool),
    payload: P,
}

impl<P> PartialEq for Kept<P> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl<P> Eq for Kept<P> {}
impl<P> PartialOrd for Kept<P> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<P> Ord for Kept<P> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

/// A selected mention: sentence ordinal and span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Selected {
    pub ordinal: u64,
    pub start: u32,
    pub end: u32,
    pub entity: u32,
    pub linked: bool,
}

impl Selected {
    /// The context of this mention in its sentence `text` (file, line and sentence index as
    /// the corpus reader gave them).
    pub fn record(self, file: u32, line: u32, sentence: u32, text: String) -> ContextRecord {
        ContextRecord {
            entity: self.entity,
            file,
            line,
            sentence,
            start: self.start,
            end: self.end,
            text,
            linked: self.linked,
            offset: crate::corpus::NO_OFFSET,
            checksum: None,
            source: Default::default(),
        }
    }
}

impl Sampler<()> {
    pub fn offer(&mut self, ordinal: u64, m: &Mention) {
        self.offer_with(ordinal, m, || ());
    }

    /// The selected mentions in corpus order.
    pub fn finish(self) -> Vec<Selected> {
        self.finish_with().into_iter().map(|(s, ())| s).collect()
    }
}

impl<P> Sampler<P> {
    pub fn new(n_entities: usize, k: usize, seed: u64) -> Self {
        Sampler {
            k,
            seed,
            heaps: (0..n_entities).map(|_| BinaryHeap::new()).collect(),
            found: vec![0; n_entities],
        }
    }

    /// Offers a mention; `payload` is called only when the mention is kept (for now).
    pub fn offer_with(&mut self, ordinal: u64, m: &Mention, payload: impl FnOnce() -> P) {
        self.found[m.entity] += 1;
        if self.k == 0 {
            return;
        }
        let key = (
            sample_key(self.seed, ordinal, m.start),
            ordinal,
            m.start as u32,
            m.end as u32,
            m.linked,
        );
        let heap = &mut self.heaps[m.entity];
        if heap.len() == self.k {
            if key >= heap.peek().expect("non-empty heap").key {
                return;
            }
            heap.pop();
        }
        heap.push(Kept {
            key,
            payload: payload(),
        });
    }

    /// The selected mentions in corpus order, with their payloads.
    pub fn finish_with(self) -> Vec<(Selected, P)> {
        let mut out: Vec<(Selected, P)> = self
            .heaps
            .into_iter()
            .enumerate()
            .flat_map(|(e, h)| {
                h.into_iter().map(move |kept| {
                    let (_, ordinal, start, end, linked) = kept.key;
                    let s = Selected {
                        ordinal,
                        start,
                        end,
                        entity: e as u32,
                        linked,
                    };
                    (s, kept.payload)
                })
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// A context ready for the model: token ids with exactly one mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedInput {
    pub ids: Vec<u32>,
    pub mask_position: usize,
}

/// Replaces the tokens of `text[start..end]` by one mask token and cuts the sequence to
/// `max_len` tokens (special tokens included), keeping the mask inside and centred where
/// possible. `None` when no token covers the span.
pub fn mask_mention(
    tok: &TextTokenizer,
    text: &str,
    start: usize,
    end: usize,
    max_len: usize,
) -> Result<Option<MaskedInput>> {
    let enc = tok.encode(text)?;
    let mut ids = Vec::with_capacity(enc.ids.len());
    let mut mask_position = None;
    let mut lead = 0;
    let mut trail = 0;
    for (i, (&id, &(a, b))) in enc.ids.iter().zip(&enc.offsets).enumerate() {
        if enc.special[i] {
            if mask_position.is_none() && ids.len() == lead {
                lead += 1;
            } else {
                trail += 1;
            }
            ids.push(id);
            continue;
        }
        trail = 0;
        let overlaps = a < end && b > start;
        if overlaps {
            if mask_position.is_none() {
                mask_position = Some(ids.len());
                ids.push(tok.mask_id());
            }
        } else {
            ids.push(id);
        }
    }
    let Some(mask) = mask_position else {
        return Ok(None);
    };
    Ok(Some(cut_window(ids, mask, lead, trail, max_len)))
}

/// Keeps `lead` leading and `trail` trailing special tokens and a window of the body around
/// `mask` so that the result has at most `max_len` tokens.
fn cut_window(
    ids: Vec<u32>,
    mask: usize,
    lead: usize,
    trail: usize,
    max_len: usize,
) -> MaskedInput {
    if ids.len() <= max_len || max_len <= lead + trail {
        return MaskedInput {
            ids,
            mask_position: mask,
        };
    }
    let body_start = lead;
    let body_end = ids.len() - trail;
    let room = max_len - lead - trail;
    let mut left = mask.saturating_sub((room - 1) / 2).max(body_start);
    if left + room > body_end {
        left = body_end - room;
    }
    let mut out = Vec::with_capacity(max_len);
    out.extend_from_slice(&ids[..lead]);
    out.extend_from_slice(&ids[left..left + room]);
    out.extend_from_slice(&ids[body_end..]);
    MaskedInput {
        ids: out,
        mask_position: lead + (mask - left),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(tsv: &str) -> EntityList {
        EntityList::parse(tsv, true, "test.tsv").unwrap()
    }

    #[test]
    fn longest_whole_word_case_insensitive() {
        let l = list("ny\tNew York\tNYC\nnyt\tNew York Times\t\ncov\tCOVID-19\tcovid\n");
        let f = MentionFinder::new(&l, false).unwrap();
        let t = "The new york times said NYC and New Yorkers had covid-19, COVID.";
        let got: Vec<(&str, usize)> = f
            .find(t)
            .iter()
            .map(|m| (&t[m.start..m.end], m.entity))
            .collect();
        assert_eq!(
            got,
            vec![
                ("new york times", 1),
                ("NYC", 0),
                ("covid-19", 2),
                ("COVID", 2)
            ]
        );
        let cs = MentionFinder::new(&l, true).unwrap();
        let got: Vec<&str> = cs.find(t).iter().map(|m| &t[m.start..m.end]).collect();
        // `covid` is a whole word inside `covid-19` (the hyphen is a boundary).
        assert_eq!(got, vec!["NYC", "covid"]);
    }

    #[test]
    fn falls_back_to_shorter_name_when_longer_is_not_a_whole_word() {
        let l = list("ny\tNew York\t\nnyt\tNew York Times\t\n");
        let f = MentionFinder::new(&l, false).unwrap();
        let t = "New York Timesx";
        let got: Vec<(usize, usize, usize)> = f
            .find(t)
            .iter()
            .map(|m| (m.start, m.end, m.entity))
            .collect();
        assert_eq!(got, vec![(0, 8, 0)]);
    }

    #[test]
    fn sampler_keeps_k_and_is_order_independent() {
        let mut a = Sampler::<()>::new(1, 3, 7);
        let mut b = Sampler::<()>::new(1, 3, 7);
        let ms: Vec<(u64, Mention)> = (0..50)
            .map(|i| {
                (
                    i,
                    Mention {
                        entity: 0,
                        start: 0,
                        end: 1,
                        linked: false,
                    },
                )
            })
            .collect();
        for (o, m) in &ms {
            a.offer(*o, m);
        }
        for (o, m) in ms.iter().rev() {
            b.offer(*o, m);
        }
        assert_eq!(a.found, vec![50]);
        let (sa, sb) = (a.finish(), b.finish());
        assert_eq!(sa.len(), 3);
        assert_eq!(sa, sb);
        let mut c = Sampler::<()>::new(1, 3, 8);
        for (o, m) in &ms {
            c.offer(*o, m);
        }
        assert_ne!(c.finish(), sa, "another seed picks other contexts");
    }

    #[test]
    fn window_keeps_mask_centred_and_specials() {
        let ids: Vec<u32> = (0..20).collect();
        let w = cut_window(ids.clone(), 10, 1, 1, 8);
        assert_eq!(w.ids.len(), 8);
        assert_eq!(w.ids[0], 0);
        assert_eq!(*w.ids.last().unwrap(), 19);
        assert_eq!(w.ids[w.mask_position], 10);
        assert_eq!(w.ids[1..7], [8, 9, 10, 11, 12, 13]);
        let w = cut_window(ids.clone(), 2, 1, 1, 8);
        assert_eq!(w.ids[w.mask_position], 2);
        assert_eq!(w.ids[1..7], [1, 2, 3, 4, 5, 6]);
        let w = cut_window(ids, 18, 1, 1, 8);
        assert_eq!(w.ids[w.mask_position], 18);
        assert_eq!(w.ids[1..7], [13, 14, 15, 16, 17, 18]);
    }
}
