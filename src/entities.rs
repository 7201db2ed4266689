//! Entity lists: `.txt` (one name per line; the id is the name) or `.tsv`
//! (`id<TAB>name<TAB>alias1|alias2…`). Blank lines and lines starting with `#` are skipped.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

/// Entity lists larger than this (after decompression) are refused.
pub const MAX_LIST_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entity {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
}

impl Entity {
    /// The name followed by the aliases: every surface string that counts as a mention.
    pub fn surfaces(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityList {
    pub entities: Vec<Entity>,
}

impl EntityList {
    pub fn len(&self) -> usize {
        self.entities.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::corpus::read_text_capped(
            path,
            MAX_LIST_BYTES,
            crate::corpus::MAX_TEXT_LINE_BYTES,
        )?;
        let tsv = path
            .to_string_lossy()
            .trim_end_matches(".gz")
            .to_ascii_lowercase()
            .ends_with(".tsv");
        Self::parse(&text, tsv, &path.display().to_string())
    }

    /// Parses an entity list; `source` names the file in error messages.
    pub fn parse(text: &str, tsv: bool, source: &str) -> Result<Self> {
        let mut entities = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let (id, name, aliases) = if tsv {
                let mut cols = line.split('\t');
                let id = cols.next().unwrap_or("").trim();
                let name = cols.next().map(str::trim).unwrap_or("");
                let aliases: Vec<String> = cols
                    .next()
                    .unwrap_or("")
                    .split('|')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .collect();
                if id.is_empty() {
                    bail!("{source}:{line_no}: empty entity id");
                }
                if name.is_empty() {
                    bail!("{source}:{line_no}: entity `{id}` has an empty name (expected id<TAB>name<TAB>aliases)");
                }
                (id.to_string(), name.to_string(), aliases)
            } else {
                let name = line.trim();
                (name.to_string(), name.to_string(), vec![])
            };
            if let Some(prev) = seen.get(&id) {
                bail!(
                    "{source}:{line_no}: duplicate entity id `{id}` (first defined on line {prev})"
                );
            }
            seen.insert(id.clone(), line_no);
            let mut aliases = aliases;
            aliases.retain(|a| a != &name);
            aliases.dedup();
            entities.push(Entity { id, name, aliases });
        }
        if entities.is_empty() {
            bail!("{source}: the entity list is empty");
        }
        Ok(EntityList { entities })
    }

    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.entities.iter().position(|e| e.id == id)
    }

    /// Writes the `.tsv` form.
    pub fn write_tsv(&self, path: &Path) -> Result<()> {
        let mut out = Vec::new();
        for e in &self.entities {
            writeln!(
                out,
                "{}\t{}\t{}",
                clean(&e.id),
                clean(&e.name),
                e.aliases
                    .iter()
                    .map(|a| clean(a))
                    .collect::<Vec<_>>()
                    .join("|")
            )?;
        }
        crate::io::write_atomic(path, &out)
    }

    /// Collects the linked entities of FewRel-style files (`h`/`t` = [name, id, positions]):
    /// the most frequent surface form becomes the name (the first seen on ties), the others
    /// aliases. Entities linked fewer than `min_count` times are left out.
    pub fn from_fewrel(paths: &[impl AsRef<Path>], min_count: usize) -> Result<Self> {
        let mut forms = FormCounter::default();
        for p in paths {
            for ex in crate::corpus::fewrel_examples(p.as_ref())? {
                for e in [ex.head, ex.tail].into_iter().flatten() {
                    forms.add(&e.id, &e.name);
                }
            }
        }
        forms.finish(min_count, "the FewRel files")
    }

    /// The entities of an entity-linked corpus: ids from its links, the most frequent anchor
    /// text as the name (the first seen on ties) and the other anchor texts as aliases. Ids
    /// linked fewer than `min_count` times are left out. The corpus is parsed on all cores
    /// (the sentences, and so the list, are the same for any number).
    pub fn from_links(corpus: &crate::corpus::Corpus, min_count: usize) -> Result<Self> {
        Ok(Self::from_links_read(corpus, min_count)?.0)
    }

    /// [`EntityList::from_links`], with what reading the corpus found (sentences, links,
    /// skipped lines).
    pub fn from_links_read(
        corpus: &crate::corpus::Corpus,
        min_count: usize,
    ) -> Result<(Self, crate::corpus::ReadReport)> {
        let mut forms = FormCounter::default();
        let threads = crate::model::cores();
        let read = corpus.for_each_sentence_parallel(
            threads,
            |_| (),
            |s, ()| {
                for l in &s.links {
                    forms.add(&l.id, &s.text[l.start..l.end]);
                }
                Ok(std::ops::ControlFlow::Continue(()))
            },
        )?;
        Ok((forms.finish(min_count, "the corpus")?, read))
    }
}

/// Surface forms per id, in order of first appearance.
#[derive(Default)]
struct FormCounter {
    order: Vec<String>,
    /// Per id: surface form -> (count, first seen).
    forms: HashMap<String, BTreeMap<String, (usize, usize)>>,
    seen: usize,
}

impl FormCounter {
    fn add(&mut self, id: &str, name: &str) {
        let (id, name) = (id.trim(), name.trim());
        if id.is_empty() || name.is_empty() {
            return;
        }
        if !self.forms.contains_key(id) {
            self.order.push(id.to_string());
        }
        self.seen += 1;
        let seen = self.seen;
        self.forms
            .entry(id.to_string())
            .or_default()
            .entry(name.to_string())
            .or_insert((0, seen))
            .0 += 1;
    }

    fn finish(self, min_count: usize, source: &str) -> Result<EntityList> {
        let FormCounter { order, forms, .. } = self;
        if order.is_empty() {
            bail!("no linked entities found in {source}");
        }
        let entities: Vec<Entity> = order
            .into_iter()
            .filter(|id| forms[id].values().map(|v| v.0).sum::<usize>() >= min_count)
            .map(|id| {
                let f = &forms[&id];
                let name = f
                    .iter()
                    .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.1 .1.cmp(&a.1 .1)))
                    .map(|(n, _)| n.clone())
                    .expect("at least one form");
                let aliases = f
                    .keys()
                    .filter(|a| !a.eq_ignore_ascii_case(&name))
                    .cloned()
                    .collect();
                Entity { id, name, aliases }
            })
            .collect();
        if entities.is_empty() {
            bail!("no entity is linked at least {min_count} times in {source}");
        }
        Ok(EntityList { entities })
    }
}

fn clean(s: &str) -> String {
    s.replace(['\t', '\n', '\r', '|'], " ")
}

/// Reads an entity list, with a clear error if the file does not exist.
pub fn load_entities(path: &Path) -> Result<EntityList> {
    if !path.exists() {
        bail!("entity list {} does not exist", path.display());
    }
    EntityList::load(path).with_context(|| format!("cannot load entity list {}", path.display()))
}
