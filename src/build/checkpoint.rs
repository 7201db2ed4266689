//! Checkpoints (`pelt-checkpoint/3`): how far encoding got, the sums of the window in
//! progress, and how much of the table the writer holds in its spill files; signed with
//! sha256 so that an edited or damaged one is refused.

use anyhow::Result;
use std::collections::BTreeMap;
use std::path::Path;

use super::encode::{EncodeState, EntitySum, WindowPlan};
use super::options::BuildOptions;
use crate::exact_sum::ExactSum;
use crate::io::{write_atomic, write_safetensors};
use crate::table::WriterPos;

const CHECKPOINT_FORMAT: &str = "pelt-checkpoint/3";

/// sha256 over a checkpoint's metadata (but `sha256`) and tensor bytes.
fn checkpoint_digest(meta: &BTreeMap<&str, String>, sums: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut d = Sha256::new();
    for (k, v) in meta.iter().filter(|(k, _)| **k != "sha256") {
        d.update(k.as_bytes());
        d.update([0]);
        d.update(v.as_bytes());
        d.update([0]);
    }
    d.update((sums.len() as u64).to_le_bytes());
    d.update(sums);
    format!("{:x}", d.finalize())
}

pub(crate) fn save_checkpoint(
    path: &Path,
    s: &EncodeState,
    pos: WriterPos,
    h: usize,
) -> Result<()> {
    let mut meta = BTreeMap::new();
    meta.insert("format", CHECKPOINT_FORMAT.to_string());
    meta.insert("fingerprint", s.fingerprint.clone());
    meta.insert("window", s.window.to_string());
    meta.insert("batch", s.batch.to_string());
    meta.insert("done", s.done.to_string());
    meta.insert("skipped", serde_json::to_string(&s.skipped)?);
    meta.insert("writer", serde_json::to_string(&pos)?);
    let entities: Vec<u32> = s.sums.keys().copied().collect();
    let counts: Vec<i64> = s.sums.values().map(|e| e.count).collect();
    meta.insert("entities", serde_json::to_string(&entities)?);
    meta.insert("counts", serde_json::to_string(&counts)?);
    let sums: Vec<u8> = s
        .sums
        .values()
        .flat_map(|e| e.sum.iter().flat_map(|c| c.to_le_bytes()))
        .collect();
    meta.insert("sha256", checkpoint_digest(&meta, &sums));
    // Each sum is one little-endian i128, stored as two I64 values.
    let tensors = vec![("sums", "I64", vec![entities.len(), h, 2], sums)];
    write_atomic(path, &write_safetensors(&meta, &tensors)?)
}

/// Reads the checkpoint of a build with windows `plan` (hidden size `h`) and `opts`, refusing
/// one whose content does not match its checksum or whose fields are inconsistent with each
/// other or with this build. Returns the state and the writer's position.
pub(crate) fn load_checkpoint(
    path: &Path,
    h: usize,
    plan: &[WindowPlan],
    opts: &BuildOptions,
) -> Result<(EncodeState, WriterPos)> {
    let bytes = std::fs::read(path).map_err(|e| {
        anyhow::anyhow!("cannot read checkpoint {}: {e}", crate::escape::path(path))
    })?;
    let bad = |what: &str| {
        anyhow::anyhow!(
            "{}: not a usable checkpoint ({what}); delete it or build without --resume",
            crate::escape::path(path)
        )
    };
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|_| bad("not safetensors"))?;
    let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|_| bad("header"))?;
    let meta = md.metadata().clone().unwrap_or_default();
    let field = |k: &str| {
        meta.get(k)
            .cloned()
            .ok_or_else(|| bad(&format!("missing `{k}`")))
    };
    let num = |k: &str| -> Result<u64> {
        field(k)?
            .parse()
            .map_err(|_| bad(&format!("`{k}` is not a number")))
    };
    fn json<T: serde::de::DeserializeOwned>(
        v: &str,
        k: &str,
        bad: &dyn Fn(&str) -> anyhow::Error,
    ) -> Result<T> {
        serde_json::from_str(v).map_err(|_| bad(&format!("`{k}`")))
    }
    let format = field("format")?;
    if format != CHECKPOINT_FORMAT {
        return Err(bad(&format!(
            "format `{}`, expected `{CHECKPOINT_FORMAT}`",
            crate::escape::text(&format)
        )));
    }
    let sums = st.tensor("sums").map_err(|_| bad("missing sums"))?;
    if sums.dtype() != safetensors::Dtype::I64 {
        return Err(bad("sums are not I64"));
    }
    let sorted: BTreeMap<&str, String> =
        meta.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    if field("sha256")? != checkpoint_digest(&sorted, sums.data()) {
        return Err(bad(
            "its content does not match its checksum: edited or damaged",
        ));
    }
    let entities: Vec<u32> = json(&field("entities")?, "entities", &bad)?;
    let counts: Vec<i64> = json(&field("counts")?, "counts", &bad)?;
    let skipped: Vec<usize> = json(&field("skipped")?, "skipped", &bad)?;
    let pos: WriterPos = json(&field("writer")?, "writer", &bad)?;
    if sums.shape() != [entities.len(), h, 2] || counts.len() != entities.len() {
        return Err(bad("shapes do not match this build"));
    }
    let exact = ExactSum::from_le_bytes(sums.data()).ok_or_else(|| bad("sums out of range"))?;
    let (window, batch, done) = (num("window")?, num("batch")?, num("done")?);
    // Consistency with this build: the window/batch position, the count of contexts done.
    let n_windows = plan.len() as u64;
    if window > n_windows || (window == n_windows && (batch != 0 || !entities.is_empty())) {
        return Err(bad(&format!(
            "window {window}, batch {batch} is beyond the {n_windows} windows of this build"
        )));
    }
    // A window has at most `window_batches` batches (every batch but its last holds at least
    // a window's share of contexts), more only for an entity with more than a window's
    // contexts.
    let here = plan.get(window as usize);
    let most = here.map_or(0, |w| w.records.len()) as u64;
    if batch > (opts.window_batches.max(1) as u64).max(most) {
        return Err(bad(&format!("batch {batch} is beyond a window's batches")));
    }
    if let Some(c) = counts.iter().find(|&&c| c < 1 || c as u64 > opts.k as u64) {
        return Err(bad(&format!("a count of {c} is outside 1..={}", opts.k)));
    }
    if entities.windows(2).any(|w| w[0] >= w[1]) || skipped.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad("`entities` or `skipped` is not strictly increasing"));
    }
    let (ents, recs) = here.map_or((0..0, 0..0), |w| (w.entities.clone(), w.records.clone()));
    if let Some(e) = entities.iter().find(|&&e| !ents.contains(&(e as usize))) {
        return Err(bad(&format!("entity row {e} is not in window {window}")));
    }
    if let Some(i) = skipped.iter().find(|&&i| !recs.contains(&i)) {
        return Err(bad(&format!(
            "skipped context {i} is not in window {window}"
        )));
    }
    // Contexts of the windows before this one (a shard's windows are not contiguous).
    let before: u64 = plan[..window as usize]
        .iter()
        .map(|w| w.records.len() as u64)
        .sum();
    let counted = before + skipped.len() as u64 + counts.iter().map(|&c| c as u64).sum::<u64>();
    if done != counted || done > before + recs.len() as u64 {
        return Err(bad(&format!(
            "`done` = {done} does not match its position (window {window} of {n_windows}) and sums ({counted})"
        )));
    }
    let mut map = BTreeMap::new();
    for (j, (&e, &count)) in entities.iter().zip(&counts).enumerate() {
        map.insert(
            e,
            EntitySum {
                sum: exact[j * h..(j + 1) * h].to_vec(),
                count,
            },
        );
    }
    Ok((
        EncodeState {
            fingerprint: field("fingerprint")?,
            window: window as usize,
            batch: batch as usize,
            done,
            skipped,
            sums: map,
            ..Default::default()
        },
        pos,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: usize = 4;

    fn plan() -> Vec<WindowPlan> {
        vec![
            WindowPlan {
                records: 0..4,
                entities: 0..2,
            },
            WindowPlan {
                records: 4..8,
                entities: 2..5,
            },
            WindowPlan {
                records: 8..10,
                entities: 5..6,
            },
        ]
    }

    fn state() -> EncodeState {
        let mut s = EncodeState {
            fingerprint: "f".into(),
            window: 1,
            batch: 1,
            skipped: vec![5],
            ..Default::default()
        };
        for (e, count) in [(2u32, 2i64), (4, 1)] {
            let mut sum = vec![ExactSum::default(); H];
            for (i, x) in sum.iter_mut().enumerate() {
                x.add(i as f32 * 0.25 - e as f32).unwrap();
            }
            s.sums.insert(e, EntitySum { sum, count });
        }
        s.done = 4 + 1 + 3;
        s
    }

    fn opts() -> BuildOptions {
        BuildOptions {
            k: 2,
            batch: 2,
            window_batches: 2,
            ..Default::default()
        }
    }

    fn pos() -> WriterPos {
        WriterPos {
            rows: 2,
            contexts: 4,
            text_bytes: 100,
            entity_bytes: 20,
        }
    }

    /// Rewrites a checkpoint's metadata and signs it again (as a careful forger would).
    fn resign(bytes: &[u8], edit: impl FnOnce(&mut BTreeMap<String, String>)) -> Vec<u8> {
        let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
        let (_, md) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
        let mut meta: BTreeMap<String, String> =
            md.metadata().clone().unwrap().into_iter().collect();
        edit(&mut meta);
        let sums = st.tensor("sums").unwrap();
        let mut m: BTreeMap<&str, String> =
            meta.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let digest = checkpoint_digest(&m, sums.data());
        m.insert("sha256", digest);
        let tensors = vec![("sums", "I64", sums.shape().to_vec(), sums.data().to_vec())];
        write_safetensors(&m, &tensors).unwrap()
    }

    #[test]
    fn checkpoints_round_trip_and_inconsistent_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.ckpt");
        let s = state();
        save_checkpoint(&p, &s, pos(), H).unwrap();
        let (back, at) = load_checkpoint(&p, H, &plan(), &opts()).unwrap();
        assert_eq!(at, pos());
        assert_eq!(
            (
                &back.sums,
                back.done,
                back.window,
                back.batch,
                &back.skipped
            ),
            (&s.sums, s.done, s.window, s.batch, &s.skipped)
        );
        let good = std::fs::read(&p).unwrap();
        for (field, value, expect) in [
            ("done", "9", "`done` = 9"),
            ("done", "99", "`done` = 99"),
            ("window", "9", "beyond the 3 windows"),
            ("window", "0", "not in window 0"),
            ("batch", "7", "beyond a window's batches"),
            ("skipped", "[5,5]", "strictly increasing"),
            ("skipped", "[9]", "skipped context 9 is not in window 1"),
            ("skipped", "{}", "`skipped`"),
            ("entities", "[2,9]", "entity row 9 is not in window 1"),
            ("counts", "[2,0]", "outside 1..=2"),
            ("counts", "[2]", "shapes"),
            ("writer", "[]", "`writer`"),
            ("format", "pelt-checkpoint/2", "format"),
        ] {
            std::fs::write(
                &p,
                resign(&good, |m| {
                    m.insert(field.into(), value.into());
                }),
            )
            .unwrap();
            let e = format!(
                "{:#}",
                load_checkpoint(&p, H, &plan(), &opts()).err().unwrap()
            );
            assert!(e.contains(expect), "{field} = {value}: {e}");
        }
        // A plain edit without re-signing.
        let mut edited = good.clone();
        let at = edited.windows(8).position(|w| w == b"\"done\":\"").unwrap();
        edited[at + 8] = b'3';
        std::fs::write(&p, &edited).unwrap();
        let e = format!(
            "{:#}",
            load_checkpoint(&p, H, &plan(), &opts()).err().unwrap()
        );
        assert!(e.contains("checksum"), "{e}");
    }

    #[test]
    fn fuzzed_checkpoints_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.ckpt");
        save_checkpoint(&p, &state(), pos(), H).unwrap();
        let good = std::fs::read(&p).unwrap();
        let mut rng = 0x5eed_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let nasty = [
            "",
            "-1",
            "NaN",
            "18446744073709551615",
            "18446744073709551616",
            "[]",
            "[0,1,2,3]",
            "[18446744073709551615]",
            "null",
            "1e3",
            "2",
            "0",
        ];
        let fields = [
            "window",
            "batch",
            "done",
            "skipped",
            "entities",
            "counts",
            "writer",
            "fingerprint",
            "format",
        ];
        let mut loaded = 0;
        for case in 0..400 {
            let bytes = if case % 2 == 0 {
                let f = fields[next() as usize % fields.len()];
                let v = nasty[next() as usize % nasty.len()];
                resign(&good, |m| {
                    m.insert(f.into(), v.into());
                })
            } else {
                let mut b = good.clone();
                let i = next() as usize % b.len();
                b[i] ^= 1 << (next() % 8);
                if next() % 4 == 0 {
                    b.truncate(next() as usize % b.len());
                }
                b
            };
            std::fs::write(&p, &bytes).unwrap();
            loaded += usize::from(load_checkpoint(&p, H, &plan(), &opts()).is_ok());
        }
        // Some edits leave a usable checkpoint (a new fingerprint), most do not.
        assert!(loaded > 0 && loaded < 200, "{loaded} of 400 loaded");
    }
}
