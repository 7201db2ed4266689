//! A build's memory budget ([`BuildOptions::memory`](super::BuildOptions::memory)): what it
//! must hold per entity (the entity list, the id map and the name matcher that resolve
//! mentions), checked before the scan, and the share left for what grows with the corpus and
//! the samples (the sorted runs of mentions and their merge). The budget never changes the
//! table: only how the sampled mentions are sorted on disk.

use anyhow::{bail, Result};

use super::samples::SortBudget;
use crate::contexts::MentionMode;
use crate::entities::{Entity, EntityList};

/// Bytes a heap allocation of `len` bytes takes (16-byte chunks of at least 32 bytes, as the
/// common allocators hand them out).
fn alloc(len: usize) -> u64 {
    if len == 0 {
        0
    } else {
        ((len + 8).div_ceil(16) * 16).max(32) as u64
    }
}

/// Bytes of a hash table of `n` entries of `entry` bytes (7/8 full at most, a control byte
/// per bucket, a power of two of buckets).
fn table(n: usize, entry: usize) -> u64 {
    if n == 0 {
        return 0;
    }
    let buckets = (n * 8).div_ceil(7).next_power_of_two();
    (buckets * (entry + 1)) as u64
}

/// What a build holds per entity for the whole build, in bytes: the entity list, the map from
/// ids to rows (links), and for name matching the matcher over the names and aliases (an
/// estimate: about 64 bytes per byte of the surface strings).
pub fn entity_bytes(list: &EntityList, mode: MentionMode) -> u64 {
    let n = list.entities.len();
    let mut bytes = (list.entities.capacity() * std::mem::size_of::<Entity>()) as u64;
    let mut ids = 0u64;
    let mut surfaces = 0u64;
    let mut patterns = 0usize;
    for e in &list.entities {
        bytes += alloc(e.name.len())
            + alloc(e.aliases.capacity() * std::mem::size_of::<String>())
            + e.aliases.iter().map(|a| alloc(a.len())).sum::<u64>();
        ids += alloc(e.id.len());
        for s in e.surfaces() {
            surfaces += s.len() as u64;
            patterns += 1;
        }
    }
    // The list's ids, and the map's copy of them.
    bytes += 2 * ids + table(n, std::mem::size_of::<(String, usize)>());
    if mode.resolve(true).uses_names() {
        bytes += 64 * surfaces + table(patterns, std::mem::size_of::<(String, usize)>());
    }
    bytes
}

/// The least the sort of the mentions is given.
pub const MIN_SORT: u64 = 16 << 10;

/// Buffers of the spill files and the table's streams.
const BUFFERS: u64 = 8 << 20;

/// What a build holds whatever the corpus, in bytes (an estimate): the buffers of its spill
/// files and of the table's streams, and the encoding windows — the sums of a window's
/// entities (`window` contexts at most, `hidden` exact sums each) and the tokenized windows
/// read ahead (one per thread, and the one encoded).
pub fn working_bytes(window: usize, hidden: usize, max_len: usize, threads: usize) -> u64 {
    let per_context = 16 * hidden + (threads + 1) * (8 * max_len + 1024);
    BUFFERS + (window * per_context) as u64
}

/// The plan for a budget of `memory` bytes, of which the entity list needs `entities` and the
/// build's buffers and windows `working`: what the sort of the sampled mentions may take (the
/// rest). Fails, saying how much is needed, where the entity list does not fit.
pub fn plan(memory: u64, entities: u64, working: u64, n_entities: usize) -> Result<SortBudget> {
    let need = entities + working + MIN_SORT;
    if memory < need {
        bail!(
            "--memory {}: too small for the entity list: its {n_entities} entities need about {} in memory (names, ids and the map that resolves mentions), and the build about {} more for its buffers and encoding windows; use --memory {} or more",
            show(memory),
            show(entities),
            show(working + MIN_SORT),
            show_up(need)
        );
    }
    Ok(SortBudget::from_bytes(memory - entities - working))
}

/// A size in bytes, e.g. `512 MiB`, `1.5 GiB`, `900 KiB`.
pub fn show(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1024 => format!("{bytes} bytes"),
        1024..1_048_576 => format!("{:.0} KiB", b / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.0} MiB", b / 1_048_576.0),
        _ => format!("{:.1} GiB", b / 1_073_741_824.0),
    }
}

/// A size as `--memory` takes it, rounded up to whole MiB (`37M`).
fn show_up(bytes: u64) -> String {
    format!("{}M", bytes.div_ceil(1 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(n: usize) -> EntityList {
        EntityList {
            entities: (0..n)
                .map(|i| Entity {
                    id: format!("Q{i}"),
                    name: format!("entity number {i}"),
                    aliases: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_entity_list_is_counted_and_a_budget_below_it_is_refused() {
        let small = entity_bytes(&list(1000), MentionMode::Links);
        let large = entity_bytes(&list(100_000), MentionMode::Links);
        // About a hundred and fifty bytes an entity, growing with the list.
        assert!((100_000..300_000).contains(&small), "{small}");
        assert!(large > 80 * small, "{large} vs {small}");
        assert!(entity_bytes(&list(1000), MentionMode::Names) > small);
        let work = working_bytes(512, 768, 64, 2);
        assert!((10 << 20..20 << 20).contains(&work), "{work}");
        let err = plan(large + work, large, work, 100_000)
            .unwrap_err()
            .to_string();
        assert!(err.contains("100000 entities need about"), "{err}");
        let need = show_up(large + work + MIN_SORT);
        assert!(
            err.contains(&format!("use --memory {need} or more")),
            "{err}"
        );
        let ok = plan(large + work + (64 << 20), large, work, 100_000).unwrap();
        assert!(ok.bytes() <= 64 << 20, "{ok:?}");
        assert!(ok.run_records > 100_000, "{ok:?}");
    }
}
