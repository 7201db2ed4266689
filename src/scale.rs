//! `pelt bench scale`: builds and opens tables of synthetic linked corpora at growing entity
//! counts, each step in a process of its own, and prints its peak resident memory, the table's
//! size, the time to open it and the time of an exact neighbour query. Width decides memory,
//! depth only time: the model is a random BERT of the given width with one layer.
//!
//! `pelt bench open`: the open-and-query half, on any table.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::bench::{rss_mb, write_random_bert, Shape};
use pelt::table::Table;

/// One line per entity, one linked mention each: `{"text": …, "links": [{start, end, id}]}`.
pub fn write_linked_corpus(path: &Path, entities: usize, seed: u64) -> Result<()> {
    const WORDS: [&str; 16] = [
        "protein", "kinase", "receptor", "factor", "cell", "gene", "alpha", "beta", "syndrome",
        "virus", "acid", "domain", "river", "county", "league", "album",
    ];
    const FRAMES: [(&str, &str); 4] = [
        (
            "In the cohort study, ",
            " was measured again after treatment .",
        ),
        ("We report that ", " binds the complex in vitro ."),
        ("The history of ", " is described in the second chapter ."),
        ("Levels of ", " rose sharply in the treated group ."),
    ];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    pelt::io::write_atomic_with(path, &mut |w| {
        for i in 0..entities {
            let name = format!(
                "{} {} {i}",
                WORDS[(next() % 16) as usize],
                WORDS[(next() % 16) as usize]
            );
            let (pre, post) = FRAMES[(next() % 4) as usize];
            let start = pre.chars().count();
            let end = start + name.chars().count();
            let rec = serde_json::json!({
                "text": format!("{pre}{name}{post}"),
                "links": [{"start": start, "end": end, "id": format!("E{i}")}],
            });
            serde_json::to_writer(&mut *w, &rec)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}

/// Runs `pelt` (this binary) with `args`, returning its wall seconds, its own peak resident
/// memory in MB (Linux: `ru_maxrss` from `wait4`) and its standard output.
fn run_measured(args: &[&str]) -> Result<(f64, f64, String)> {
    use std::io::Read;
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let t = Instant::now();
    let mut child = std::process::Command::new(exe)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot start pelt")?;
    let (mut so, mut se) = (
        child.stdout.take().expect("piped"),
        child.stderr.take().expect("piped"),
    );
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let (ok, peak) = wait_measured(&mut child)?;
    let secs = t.elapsed().as_secs_f64();
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    if !ok {
        bail!("pelt {} failed:\n{err}", args.join(" "));
    }
    Ok((secs, peak, out))
}

/// Waits for `child`: whether it succeeded, and its peak resident memory in MB.
#[cfg(target_os = "linux")]
fn wait_measured(child: &mut std::process::Child) -> Result<(bool, f64)> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: wait4 fills the status and the struct it is given; the child is ours.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::wait4(pid, &mut status, 0, &mut ru) } != pid {
        bail!("cannot wait for pelt: {}", std::io::Error::last_os_error());
    }
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    Ok((ok, ru.ru_maxrss as f64 / 1024.0))
}

#[cfg(not(target_os = "linux"))]
fn wait_measured(child: &mut std::process::Child) -> Result<(bool, f64)> {
    Ok((child.wait()?.success(), f64::NAN))
}

/// `pelt bench open`: opens `table`, then runs `queries` exact neighbour queries (10 nearest,
/// streamed over the vectors) on the fastest scan loop this CPU has, the same queries on the
/// portable loop (the reference), and centred ones with the mean direction computed once, as
/// the window does; prints one JSON line. The queries alternate between the two loops so that
/// a busy machine slows both alike.
pub fn open_and_query(table: &Path, queries: usize) -> Result<serde_json::Value> {
    use pelt::analysis::{mean_direction, nearest_scan, ScanKernel};
    let before = rss_mb();
    let t = Instant::now();
    let tab = Table::load(table)?;
    let open_secs = t.elapsed().as_secs_f64();
    let open_rss = rss_mb();
    let found: Vec<usize> = (0..tab.len()).filter(|&i| tab.counts[i] > 0).collect();
    if found.is_empty() {
        bail!("the table has no entity with a vector");
    }
    let best = ScanKernel::best(tab.meta.dtype);
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
    let (mut times, mut portable) = (Vec::new(), Vec::new());
    for q in 0..queries.max(1) {
        let i = found[(q * 7919) % found.len()];
        let t = Instant::now();
        let n = nearest_scan(&tab, i, 10, None, 0, best)?;
        times.push(ms(t));
        let t = Instant::now();
        let r = nearest_scan(&tab, i, 10, None, 0, ScanKernel::Portable)?;
        portable.push(ms(t));
        if n.is_empty() && found.len() > 1 {
            bail!("no neighbours found for row {i}");
        }
        let ids = |v: &[(usize, f32)]| v.iter().map(|p| p.0).collect::<Vec<_>>();
        if ids(&n) != ids(&r) {
            bail!("the {} and portable scans disagree on row {i}", best.name());
        }
    }
    let t = Instant::now();
    let mean = mean_direction(&tab, 0);
    let mean_ms = ms(t);
    let mut centred = Vec::new();
    for q in 0..queries.max(1) {
        let i = found[(q * 7919) % found.len()];
        let t = Instant::now();
        nearest_scan(&tab, i, 10, Some(&mean), 0, best)?;
        centred.push(ms(t));
    }
    let stats = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        (s[0], s[s.len() / 2], s[s.len() - 1])
    };
    let (min, median, max) = stats(&times);
    let (pmin, pmedian, pmax) = stats(&portable);
    let (cmin, cmedian, cmax) = stats(&centred);
    Ok(serde_json::json!({
        "entities": tab.len(),
        "vectors": tab.meta.dtype.name(),
        "open_secs": open_secs,
        "rss_before_mb": before,
        "rss_open_mb": open_rss,
        "scan": best.name(),
        "query_ms": times,
        "query_ms_min": min,
        "query_ms_median": median,
        "query_ms_max": max,
        "portable_query_ms_min": pmin,
        "portable_query_ms_median": pmedian,
        "portable_query_ms_max": pmax,
        "mean_direction_ms": mean_ms,
        "centred_query_ms_min": cmin,
        "centred_query_ms_median": cmedian,
        "centred_query_ms_max": cmax,
        "rss_after_queries_mb": rss_mb(),
    }))
}

/// `pelt bench scale`.
pub fn run(
    sizes: &[usize],
    hidden: usize,
    runs: usize,
    dir: &Path,
    vectors: &str,
    memory: &str,
    out: &mut dyn Write,
) -> Result<()> {
    if hidden == 0 || !hidden.is_multiple_of(64) {
        bail!("--hidden must be a positive multiple of 64 (heads of 64)");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let model = dir.join(format!("bert-h{hidden}-l1"));
    if !model.join("model.safetensors").exists() {
        write_random_bert(
            &model,
            Shape {
                hidden,
                layers: 1,
                heads: hidden / 64,
                intermediate: 4 * hidden,
                vocab: 30522,
                max_positions: 512,
            },
            7,
        )?;
    }
    let weights_mb = std::fs::metadata(model.join("model.safetensors"))?.len() as f64 / 1e6;
    writeln!(
        out,
        "model: random BERT, hidden {hidden}, 1 layer ({weights_mb:.0} MB of weights); one linked mention per entity; vectors {vectors}; build --memory {memory}"
    )?;
    writeln!(
        out,
        "entities  run  build s  build peak MB  table MB  bytes/entity  open s  open RSS MB  query ms (min/median)  query peak MB"
    )?;
    for &n in sizes {
        let corpus = dir.join(format!("linked-{n}.jsonl"));
        if !corpus.exists() {
            write_linked_corpus(&corpus, n, 42)?;
        }
        for run in 0..runs.max(1) {
            let table: PathBuf = dir.join(format!("table-{n}.safetensors"));
            let _ = std::fs::remove_file(&table);
            let s = |p: &Path| p.to_string_lossy().into_owned();
            let (build_secs, build_rss, _) = run_measured(&[
                "build",
                "--corpus",
                &s(&corpus),
                "--out",
                &s(&table),
                "--model",
                &s(&model),
                "--vectors",
                vectors,
                "--checkpoint-secs",
                "1000000",
                "--memory",
                memory,
            ])?;
            let size = std::fs::metadata(&table)?.len() as f64;
            let (_, query_rss, json) =
                run_measured(&["bench", "open", "--table", &s(&table), "--queries", "5"])?;
            let v: serde_json::Value = serde_json::from_str(json.trim())
                .with_context(|| format!("unexpected output of pelt bench open: {json}"))?;
            let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
            writeln!(
                out,
                "{n:>8}  {run:>3}  {build_secs:>7.1}  {build_rss:>13.0}  {:>8.0}  {:>12.0}  {:>6.2}  {:>11.0}  {:>9.0} / {:<9.0}  {query_rss:>13.0}",
                size / 1e6,
                size / n as f64,
                f("open_secs"),
                f("rss_open_mb"),
                f("query_ms_min"),
                f("query_ms_median"),
            )?;
            out.flush()?;
            let _ = std::fs::remove_file(&table);
        }
    }
    Ok(())
}
