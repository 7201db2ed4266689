//! Entity lists: `.txt` (one name per line; the id is the name) or `.tsv`
//! (`id<TAB>name<TAB>alias1|alias2…`). Blank lines and lines starting with `#` are skipped.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

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
        let bytes = crate::corpus::read_maybe_gz(path)?;
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let pos = e.utf8_error().valid_up_to();
                let line = e.as_bytes()[..pos].iter().filter(|&&b| b == b'\n').count() + 1;
                bail!("{}:{line}: not valid UTF-8", path.display());
            }
        };
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
        // Per id: surface form -> (count, first seen).
        let mut order: Vec<String> = Vec::new();
        let mut forms: HashMap<String, BTreeMap<String, (usize, usize)>> = HashMap::new();
        let mut seen = 0usize;
        for p in paths {
            for ex in crate::corpus::fewrel_examples(p.as_ref())? {
                for (name, id) in [ex.head, ex.tail].into_iter().flatten() {
                    let (name, id) = (name.trim().to_string(), id.trim().to_string());
                    if id.is_empty() || name.is_empty() {
                        continue;
                    }
                    if !forms.contains_key(&id) {
                        order.push(id.clone());
                    }
                    seen += 1;
                    forms
                        .entry(id)
                        .or_default()
                        .entry(name)
                        .or_insert((0, seen))
                        .0 += 1;
                }
            }
        }
        if order.is_empty() {
            bail!("no linked entities found in the FewRel files");
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
            bail!("no entity is linked at least {min_count} times in the FewRel files");
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
