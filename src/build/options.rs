//! Build options: what a build samples, how it batches, and which shard it takes.

use anyhow::{bail, Result};

use crate::contexts::MentionMode;
use crate::table::{ContextText, VectorDtype};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct BuildOptions {
    /// Which spans are mentions: entity links, name matches, or both (`Auto`: links when the
    /// corpus carries them).
    pub mentions: MentionMode,
    pub k: usize,
    pub norm: f32,
    pub max_len: usize,
    pub seed: u64,
    /// Contexts per batch where batches run packed (the CPU), and where `batch_tokens` is 0.
    pub batch: usize,
    /// Token rows per batch, padding included, where batches are padded (GPUs, and the
    /// generic path): contexts sorted by length are added while `rows × longest ≤
    /// batch_tokens`. 0 batches by `batch` contexts there too.
    pub batch_tokens: usize,
    /// Threads for reading, mention finding and tokenization; 0 = one per core.
    pub threads: usize,
    /// Encoding threads on the fused CPU path: n ≥ 2 threads each encode whole batches with
    /// their kernels on their own thread; 1 encodes one batch at a time with each product split
    /// over the cores; 0 = one per core. Padded paths (GPUs) always encode one batch at a time.
    /// The table is the same for any number.
    pub encoders: usize,
    pub case_sensitive: bool,
    /// `(i, n)`: encode only shard i of n.
    pub shard: Option<(usize, usize)>,
    /// Contexts sorted by length together (a multiple of `batch`).
    pub window_batches: usize,
    pub checkpoint_secs: f64,
    /// How the table stores its vectors (f16 and bf16 halve the file).
    pub vectors: VectorDtype,
    /// Whether the table stores the sentences of its contexts, or only their places in the
    /// corpus (read back from it).
    pub context_text: ContextText,
    /// Memory budget in bytes for what a build holds beyond the model: the entity list (checked
    /// before the scan) and the sort of the sampled mentions, which spills to disk in runs of
    /// this size. The table is the same for any budget.
    pub memory: u64,
}

/// The memory budget of a build unless set otherwise: 1 GiB.
pub const DEFAULT_MEMORY: u64 = 1 << 30;

/// Parses a size for `--memory`: bytes, or a number with K, M, G or T (powers of 1024; `KiB`,
/// `MB`… read the same), e.g. `512M`, `1.5G`.
pub fn parse_memory(s: &str) -> Result<u64> {
    let t = s.trim();
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => bail!("--memory `{s}`: expected a size such as 512M, 2G or 1.5G (K, M, G, T)"),
    };
    let x: f64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("--memory `{s}`: expected a size such as 512M, 2G or 1.5G"))?;
    let bytes = x * (1u64 << shift) as f64;
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        bail!("--memory `{s}`: expected a size of at least one byte");
    }
    Ok(bytes as u64)
}

/// The most encoding threads a build takes ([`BuildOptions::encoders`]).
pub const MAX_ENCODERS: usize = 256;

/// Token rows per batch on padded paths (GPUs) unless set otherwise.
pub const DEFAULT_BATCH_TOKENS: usize = 16384;

/// How a build cuts the length-sorted contexts of a window into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchPlan {
    /// This many contexts per batch.
    Contexts(usize),
    /// As many contexts as fit in this many token rows, padding included (at least one).
    Tokens(usize),
}

impl std::fmt::Display for BatchPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchPlan::Contexts(n) => write!(f, "{n} contexts"),
            BatchPlan::Tokens(t) => write!(f, "{t} tokens"),
        }
    }
}

impl BatchPlan {
    /// Cuts contexts sorted by length (shortest first) into batches.
    pub(crate) fn cut<T>(self, sorted: Vec<T>, len: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
        let mut batches: Vec<Vec<T>> = Vec::new();
        let mut cur: Vec<T> = Vec::new();
        for item in sorted {
            let full = match self {
                BatchPlan::Contexts(n) => cur.len() >= n.max(1),
                // Sorted, so `item` is the longest: the batch would pad every row to it.
                BatchPlan::Tokens(t) => !cur.is_empty() && (cur.len() + 1) * len(&item) > t,
            };
            if full {
                batches.push(std::mem::take(&mut cur));
            }
            cur.push(item);
        }
        if !cur.is_empty() {
            batches.push(cur);
        }
        batches
    }
}

/// The number of threads `threads` asks for (0 = one per core).
pub fn resolve_threads(threads: usize) -> usize {
    if threads > 0 {
        threads
    } else {
        crate::model::cores()
    }
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            mentions: MentionMode::Auto,
            k: 256,
            norm: 7.0,
            max_len: 64,
            seed: 42,
            batch: 32,
            batch_tokens: DEFAULT_BATCH_TOKENS,
            threads: 0,
            encoders: 0,
            case_sensitive: false,
            shard: None,
            window_batches: 16,
            checkpoint_secs: 30.0,
            vectors: VectorDtype::F32,
            context_text: ContextText::Stored,
            memory: DEFAULT_MEMORY,
        }
    }
}

impl BuildOptions {
    /// The batches of a build whose encoder packs its rows (`packs_tokens`, the fused CPU
    /// path) or pads them (GPUs, the generic path).
    pub fn batch_plan(&self, packs_tokens: bool) -> BatchPlan {
        if self.batch_tokens > 0 && !packs_tokens {
            BatchPlan::Tokens(self.batch_tokens)
        } else {
            BatchPlan::Contexts(self.batch)
        }
    }

    /// Contexts per encoding window (sorted by length together; shards take whole windows):
    /// `window_batches` batches of `batch` contexts, or of `batch_tokens / max_len` contexts
    /// when batching by tokens.
    pub fn window_size(&self, plan: BatchPlan) -> usize {
        let per_batch = match plan {
            BatchPlan::Contexts(n) => n,
            BatchPlan::Tokens(t) => (t / self.max_len.max(1)).max(1),
        };
        per_batch.saturating_mul(self.window_batches.max(1))
    }

    /// Refuses options no build can use: k or batch of 0, a norm that is not a
    /// positive finite number, a shard outside `0 ≤ i < n`.
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 {
            bail!("k (contexts per entity) must be at least 1");
        }
        if self.batch == 0 {
            bail!("batch size must be at least 1");
        }
        if self.batch.checked_mul(self.window_batches.max(1)).is_none()
            || self
                .batch_tokens
                .checked_mul(self.window_batches.max(1))
                .is_none()
        {
            bail!(
                "batch {} x window_batches {} is too large",
                self.batch,
                self.window_batches
            );
        }
        if !(self.norm.is_finite() && self.norm > 0.0) {
            bail!("norm must be a positive finite number, found {}", self.norm);
        }
        if self.max_len < 3 {
            bail!("max_len must be at least 3 tokens");
        }
        if self.encoders > MAX_ENCODERS {
            bail!(
                "encoders {}: at most {MAX_ENCODERS} encoding threads",
                self.encoders
            );
        }
        if let Some((i, n)) = self.shard {
            if n == 0 || i >= n {
                bail!("shard {i}/{n}: expected i/n with 0 <= i < n");
            }
        }
        if self.memory == 0 {
            bail!("the memory budget must be more than 0 bytes");
        }
        if self.checkpoint_secs.is_nan() || self.checkpoint_secs < 0.0 {
            bail!(
                "checkpoint interval must be a number of seconds >= 0, found {}",
                self.checkpoint_secs
            );
        }
        Ok(())
    }
}

/// Parses `i/n` (0 ≤ i < n).
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let parsed = s.split_once('/').and_then(|(a, b)| {
        Some((
            a.trim().parse::<usize>().ok()?,
            b.trim().parse::<usize>().ok()?,
        ))
    });
    match parsed {
        Some((i, n)) if n > 0 && i < n => Ok((i, n)),
        _ => bail!("--shard `{s}`: expected i/n with 0 <= i < n, e.g. 0/4"),
    }
}

/// Parses `--shard`: `i/n`, or `auto` for the shard a scheduler gives this process (see
/// [`shard_from_env`]; `count` is the shard count where the scheduler does not tell it).
pub fn parse_shard_arg(s: &str, count: Option<usize>) -> Result<(usize, usize)> {
    if s.trim() == "auto" {
        shard_from_env(|k| std::env::var(k).ok(), count)
    } else {
        parse_shard(s)
    }
}

/// The shard of this process from its scheduler's variables: a Slurm job array
/// (`SLURM_ARRAY_TASK_ID` from `SLURM_ARRAY_TASK_MIN`, `SLURM_ARRAY_TASK_COUNT` tasks, or
/// `count`), or a Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`, with `count` given: the
/// Job's `completions`).
pub fn shard_from_env(
    env: impl Fn(&str) -> Option<String>,
    count: Option<usize>,
) -> Result<(usize, usize)> {
    let num = |k: &str| -> Result<Option<usize>> {
        match env(k) {
            None => Ok(None),
            Some(v) => match v.trim().parse::<usize>() {
                Ok(x) => Ok(Some(x)),
                Err(_) => bail!(
                    "--shard auto: ${k} is `{}`, not a whole number",
                    crate::escape::text(&v)
                ),
            },
        }
    };
    let check = |i: usize, n: usize, from: &str| -> Result<(usize, usize)> {
        if n == 0 || i >= n {
            bail!("--shard auto: {from} gives shard {i} of {n}: expected 0 <= i < n");
        }
        Ok((i, n))
    };
    if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let n = match (num("SLURM_ARRAY_TASK_COUNT")?, count) {
            (Some(n), _) | (None, Some(n)) => n,
            (None, None) => {
                bail!("--shard auto: $SLURM_ARRAY_TASK_COUNT is not set; give --shard-count")
            }
        };
        if let Some(c) = count.filter(|&c| c != n) {
            bail!("--shard auto: --shard-count {c} differs from the job array's {n} tasks");
        }
        if id < min {
            bail!("--shard auto: $SLURM_ARRAY_TASK_ID {id} is below $SLURM_ARRAY_TASK_MIN {min}");
        }
        return check(id - min, n, "the Slurm job array");
    }
    if let Some(i) = num("JOB_COMPLETION_INDEX")? {
        let n = count.ok_or_else(|| {
            anyhow::anyhow!("--shard auto in a Kubernetes Indexed Job needs --shard-count (the Job's completions)")
        })?;
        return check(i, n, "the Kubernetes Indexed Job");
    }
    bail!("--shard auto: neither a Slurm job array ($SLURM_ARRAY_TASK_ID) nor a Kubernetes Indexed Job ($JOB_COMPLETION_INDEX) is running this process")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_auto_reads_slurm_arrays_and_indexed_jobs() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_MIN", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(shard_from_env(slurm, None).unwrap(), (2, 4));
        assert_eq!(shard_from_env(slurm, Some(4)).unwrap(), (2, 4));
        assert!(shard_from_env(slurm, Some(3)).is_err());
        let k8s = env(&[("JOB_COMPLETION_INDEX", "3")]);
        assert_eq!(shard_from_env(k8s, Some(8)).unwrap(), (3, 8));
        let e = shard_from_env(k8s, None).unwrap_err().to_string();
        assert!(e.contains("--shard-count"), "{e}");
        assert!(shard_from_env(k8s, Some(3)).is_err(), "index 3 of 3");
        let bad = env(&[("SLURM_ARRAY_TASK_ID", "x")]);
        assert!(shard_from_env(bad, Some(2))
            .unwrap_err()
            .to_string()
            .contains("`x`"));
        assert!(shard_from_env(env(&[]), Some(2)).is_err());
    }

    #[test]
    fn batches_by_tokens_fit_the_budget_and_by_contexts_the_count() {
        let lens: Vec<usize> = (0..200).map(|i| 3 + (i * 7919) % 60).collect();
        let mut sorted = lens.clone();
        sorted.sort();
        let by_tokens = BatchPlan::Tokens(256).cut(sorted.clone(), |&l| l);
        assert_eq!(by_tokens.concat(), sorted, "every context once, in order");
        for (i, b) in by_tokens.iter().enumerate() {
            let padded = b.len() * b.iter().max().unwrap();
            assert!(padded <= 256, "batch {i}: {padded} token rows");
            if let Some(next) = by_tokens.get(i + 1) {
                // Full: one more context would not have fitted.
                assert!((b.len() + 1) * next[0] > 256, "batch {i} was cut early");
            }
        }
        // A context longer than the budget still gets a batch of its own.
        assert_eq!(
            BatchPlan::Tokens(4).cut(vec![5, 6], |&l| l),
            vec![vec![5], vec![6]]
        );
        let by_count = BatchPlan::Contexts(32).cut(sorted.clone(), |&l| l);
        assert_eq!(by_count.len(), 7);
        assert!(by_count[..6].iter().all(|b| b.len() == 32) && by_count[6].len() == 8);
        // At most `window_batches` batches fill a window, whichever the plan.
        let o = BuildOptions {
            max_len: 64,
            ..Default::default()
        };
        let window = o.window_size(BatchPlan::Tokens(256));
        assert_eq!(window, 4 * o.window_batches);
        let long: Vec<usize> = (0..window).map(|i| 8 + i % 57).collect();
        let mut long_sorted = long.clone();
        long_sorted.sort();
        assert!(BatchPlan::Tokens(256).cut(long_sorted, |&l| l).len() <= o.window_batches);
        assert_eq!(o.batch_plan(true), BatchPlan::Contexts(32));
        assert_eq!(o.batch_plan(false), BatchPlan::Tokens(DEFAULT_BATCH_TOKENS));
        let none = BuildOptions {
            batch_tokens: 0,
            ..o
        };
        assert_eq!(none.batch_plan(false), BatchPlan::Contexts(32));
    }

    #[test]
    fn memory_sizes_parse_with_units_and_old_options_get_the_default() {
        assert_eq!(parse_memory("2G").unwrap(), 2 << 30);
        assert_eq!(parse_memory("512M").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_memory(" 64 kb").unwrap(), 64 << 10);
        assert_eq!(parse_memory("4096").unwrap(), 4096);
        for bad in ["", "G", "2X", "-1G", "0", "1..2M"] {
            let e = parse_memory(bad).unwrap_err().to_string();
            assert!(e.contains("--memory"), "{bad}: {e}");
        }
        let old: BuildOptions = serde_json::from_str(r#"{"k": 8}"#).unwrap();
        assert_eq!((old.k, old.memory), (8, DEFAULT_MEMORY));
    }
}
