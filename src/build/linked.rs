//! The entity list of an entity-linked corpus, counted in a few tens of bytes per id: the
//! same list as [`EntityList::from_links_read`] (ids in order of first link, the most frequent
//! anchor text as the name, the first seen on ties, the other anchor texts as aliases), with
//! the ids and first anchor texts in two strings and an id index of 32-bit slots; only ids
//! linked with more than one anchor text get a map of their texts.

use anyhow::{bail, Result};
use std::collections::{BTreeMap, HashMap};

use crate::corpus::{Corpus, ReadReport};
use crate::entities::{Entity, EntityList};

const EMPTY: u32 = u32::MAX;

/// Anchor texts per id; see the module documentation.
#[derive(Default)]
struct LinkForms {
    /// The ids, one after another; id i ends at `id_end[i]`.
    ids: String,
    id_end: Vec<u64>,
    /// Open addressing over the ids (linear probing), at most half full.
    slots: Vec<u32>,
    /// Each id's first anchor text, in `forms`.
    form_start: Vec<u64>,
    form_len: Vec<u32>,
    /// Links per id, and when its first anchor text was first seen.
    count: Vec<u64>,
    first_seen: Vec<u64>,
    /// Ids linked with more than one anchor text: text -> (count, first seen).
    multi: HashMap<u32, BTreeMap<String, (usize, usize)>>,
    forms: String,
    seen: usize,
}

fn hash(s: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in s.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^ (h >> 29)
}

impl LinkForms {
    fn id(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.id_end[i - 1] };
        &self.ids[start as usize..self.id_end[i] as usize]
    }

    fn form(&self, i: usize) -> &str {
        let start = self.form_start[i] as usize;
        &self.forms[start..start + self.form_len[i] as usize]
    }

    /// The slot of `id`: where it is, or the empty slot where it would go.
    fn slot(&self, id: &str) -> usize {
        let mask = self.slots.len() - 1;
        let mut at = hash(id) as usize & mask;
        loop {
            let e = self.slots[at];
            if e == EMPTY || self.id(e as usize) == id {
                return at;
            }
            at = (at + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let n = (self.slots.len() * 2).max(1024);
        self.slots = vec![EMPTY; n];
        for i in 0..self.id_end.len() {
            let at = self.slot(self.id(i));
            self.slots[at] = i as u32;
        }
    }

    fn add(&mut self, id: &str, name: &str) -> Result<()> {
        let (id, name) = (id.trim(), name.trim());
        if id.is_empty() || name.is_empty() {
            return Ok(());
        }
        if (self.id_end.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        self.seen += 1;
        let at = self.slot(id);
        let e = self.slots[at];
        if e == EMPTY {
            let i = self.id_end.len();
            if i >= EMPTY as usize {
                bail!("the corpus links more than 2^32 - 1 ids");
            }
            self.slots[at] = i as u32;
            self.ids.push_str(id);
            self.id_end.push(self.ids.len() as u64);
            self.form_start.push(self.forms.len() as u64);
            self.form_len.push(u32::try_from(name.len())?);
            self.forms.push_str(name);
            self.count.push(1);
            self.first_seen.push(self.seen as u64);
            return Ok(());
        }
        let i = e as usize;
        self.count[i] += 1;
        if let Some(m) = self.multi.get_mut(&e) {
            m.entry(name.to_string()).or_insert((0, self.seen)).0 += 1;
        } else if self.form(i) != name {
            let mut m = BTreeMap::new();
            m.insert(
                self.form(i).to_string(),
                ((self.count[i] - 1) as usize, self.first_seen[i] as usize),
            );
            m.insert(name.to_string(), (1, self.seen));
            self.multi.insert(e, m);
        }
        Ok(())
    }

    fn finish(mut self, min_count: usize) -> Result<EntityList> {
        if self.id_end.is_empty() {
            bail!("no linked entities found in the corpus");
        }
        self.slots = Vec::new();
        let keep = (0..self.id_end.len())
            .filter(|&i| self.count[i] >= min_count as u64)
            .count();
        let mut entities = Vec::with_capacity(keep);
        for i in 0..self.id_end.len() {
            if self.count[i] < min_count as u64 {
                continue;
            }
            let (name, aliases) = match self.multi.remove(&(i as u32)) {
                None => (self.form(i).to_string(), Vec::new()),
                Some(f) => {
                    let name = f
                        .iter()
                        .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.1 .1.cmp(&a.1 .1)))
                        .map(|(n, _)| n.clone())
                        .expect("at least one form");
                    let aliases = f
                        .into_keys()
                        .filter(|a| !a.eq_ignore_ascii_case(&name))
                        .collect();
                    (name, aliases)
                }
            };
            entities.push(Entity {
                id: self.id(i).to_string(),
                name,
                aliases,
            });
        }
        if entities.is_empty() {
            bail!("no entity is linked at least {min_count} times in the corpus");
        }
        Ok(EntityList { entities })
    }
}

/// The entities of an entity-linked corpus, as [`EntityList::from_links_read`] gives them,
/// with what reading the corpus found.
pub fn entity_list_from_links(
    corpus: &Corpus,
    min_count: usize,
) -> Result<(EntityList, ReadReport)> {
    let mut forms = LinkForms::default();
    let read = corpus.for_each_sentence_parallel(
        crate::model::cores(),
        |_| (),
        |s, ()| {
            for l in &s.links {
                forms.add(&l.id, &s.text[l.start..l.end])?;
            }
            Ok(std::ops::ControlFlow::Continue(()))
        },
    )?;
    Ok((forms.finish(min_count)?, read))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_the_one_the_entity_module_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let mut lines = Vec::new();
        // Ids with one text, several (ties, case variants, blanks), and many ids (the index
        // grows and probes).
        let texts = ["Aspirin", "aspirin", "ASA", " Aspirin ", "Bayer", "ASA"];
        for i in 0..3000usize {
            let id = if i % 7 == 0 {
                format!("Q{}", i % 11)
            } else {
                format!("E{i}")
            };
            let name = if i % 7 == 0 {
                texts[i % texts.len()]
            } else {
                "Ibuprofen"
            };
            let text = format!("{name} is taken . ");
            let end = name.chars().count();
            lines.push(serde_json::json!({
                "text": text,
                "links": [{"start": 0, "end": end, "id": id}, {"start": 0, "end": end, "id": " "}],
            }));
        }
        // A tie between two texts of one id: the first seen is the name.
        for name in ["Zeta", "Alpha"] {
            lines.push(serde_json::json!({
                "text": format!("{name} ."),
                "links": [{"start": 0, "end": name.len(), "id": "T"}],
            }));
        }
        let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, body).unwrap();
        let corpus = Corpus::open(&[path]).unwrap();
        for min_count in [1, 2, 40] {
            let want = EntityList::from_links_read(&corpus, min_count);
            let got = entity_list_from_links(&corpus, min_count);
            match (want, got) {
                (Ok((w, wr)), Ok((g, gr))) => {
                    assert_eq!(g, w, "min_count {min_count}");
                    assert_eq!(gr, wr);
                    if min_count == 1 {
                        assert!(g.entities.iter().any(|e| e.aliases.len() > 1));
                        let t = g.entities.iter().find(|e| e.id == "T").unwrap();
                        assert_eq!(
                            (t.name.as_str(), &t.aliases[..]),
                            ("Zeta", &["Alpha".to_string()][..])
                        );
                    }
                }
                (Err(w), Err(g)) => assert_eq!(g.to_string(), w.to_string()),
                (w, g) => panic!("min_count {min_count}: {:?} vs {:?}", w.err(), g.err()),
            }
        }
    }
}
