//! `pelt bench ui`: the workbench headless on a large synthetic table. Times opening the
//! table, a frame of the entity list, the Inspector and the Map (layout and tessellation, as
//! egui does them each frame; no GPU), the frames while a sort and a search are answered in
//! the background, and a neighbour query the way the worker makes it.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::bench::rss_mb;
use anyhow::{bail, Result};
use pelt::analysis::{NeighbourIndex, INDEX_MAX_VALUES};
use pelt::table::{ContextRecord, EntityRow, RowVector, Table, TableMeta, TableWriter};

use super::session::{ColourBy, MapCommand, SortKey, AUTO_LAYOUT_MAX};
use super::{App, Command, State, Tab};

/// Writes a deterministic table of `n` entities with `h`-wide vectors to `path`, row by row
/// (memory does not grow with `n`); about one in ten is not found, the others have one to
/// three contexts.
pub fn write_synthetic_table(path: &Path, n: usize, h: usize, seed: u64) -> Result<()> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    const WORDS: [&str; 12] = [
        "protein", "kinase", "receptor", "factor", "cell", "gene", "alpha", "beta", "syndrome",
        "virus", "acid", "domain",
    ];
    let meta = TableMeta {
        model: "synthetic".into(),
        model_sha256: "0".repeat(64),
        hidden_size: h,
        k: 3,
        seed,
        max_len: 64,
        corpus: "synthetic.txt".into(),
        corpus_sha256: "0".repeat(64),
        shard: "all".into(),
        case_sensitive: false,
        mentions: "links".into(),
        window: 512,
        dtype: Default::default(),
        entities_total: n,
        entity_list_sha256: "0".repeat(64),
    };
    let spill = pelt::table::spill_dir_for(path);
    let mut w = TableWriter::new(meta, 7.0, Some(&spill))?;
    let mut sum = vec![0f32; h];
    for i in 0..n {
        let name = format!(
            "{} {} {i}",
            WORDS[(next() % 12) as usize],
            WORDS[(next() % 12) as usize]
        );
        let c = if next() % 10 == 0 { 0 } else { 1 + next() % 3 };
        let contexts: Vec<ContextRecord> = (0..c)
            .map(|k| ContextRecord {
                entity: i as u32,
                file: 0,
                line: (i * 3 + k as usize) as u32 + 1,
                sentence: 0,
                start: 11,
                end: 11 + name.len() as u32,
                text: format!("we studied {name} in the cells of line {k} ."),
                linked: true,
                offset: pelt::corpus::NO_OFFSET,
                checksum: None,
                source: Default::default(),
            })
            .collect();
        for v in sum.iter_mut() {
            *v = if c == 0 {
                0.0
            } else {
                (next() % 20_000) as f32 / 10_000.0 - 1.0
            };
        }
        w.push(
            &EntityRow {
                id: &format!("Q{i}"),
                name: &name,
                aliases: &[],
                global_row: i as u32,
                vector: RowVector::Sum(&sum),
                found: c * 2,
            },
            &contexts,
        )?;
    }
    let r = w.finish(path);
    let _ = std::fs::remove_dir_all(&spill);
    r
}

/// Times of one measurement: fastest, median and slowest, in milliseconds (the fastest is the
/// best estimate of the cost itself on a machine busy with other work).
struct Frames {
    min: f64,
    median: f64,
    max: f64,
}

impl Frames {
    fn of(mut t: Vec<f64>) -> Frames {
        t.sort_by(f64::total_cmp);
        Frames {
            min: t[0],
            median: t[t.len() / 2],
            max: t[t.len() - 1],
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Headless {
    ctx: egui::Context,
    app: App,
}

impl Headless {
    fn frame(&mut self) -> Duration {
        let input = egui::RawInput {
            screen_rect: Some(egui::Rect::from_min_size(
                egui::Pos2::ZERO,
                egui::vec2(1400.0, 900.0),
            )),
            ..Default::default()
        };
        let t = Instant::now();
        let mut out = self.ctx.run_ui(input, |ui| self.app.show(ui));
        let _ = self.ctx.tessellate(out.shapes, out.pixels_per_point);
        // No GPU to upload the font atlas to.
        out.textures_delta.clear();
        t.elapsed()
    }

    /// Draws frames until the entity list shows the rows of the current search and sort;
    /// returns the slowest of those frames (ms) and the time until then.
    fn until_rows_current(&mut self, limit: Duration) -> Result<(f64, Duration)> {
        let start = Instant::now();
        let mut worst = 0f64;
        loop {
            worst = worst.max(ms(self.frame()));
            if self.app.entities.is_current(&self.app.session) {
                return Ok((worst, start.elapsed()));
            }
            if start.elapsed() > limit {
                bail!("timed out waiting for the entity rows");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Draws frames until `ready` holds (at most `limit`), then times `n` more.
    fn measure(
        &mut self,
        n: usize,
        limit: Duration,
        ready: impl Fn(&App) -> bool,
    ) -> Result<Frames> {
        let start = Instant::now();
        while !ready(&self.app) {
            if start.elapsed() > limit {
                bail!("timed out waiting for the view to be ready");
            }
            self.frame();
            std::thread::sleep(Duration::from_millis(5));
        }
        for _ in 0..3 {
            self.frame();
        }
        Ok(Frames::of(
            (0..n.max(1)).map(|_| ms(self.frame())).collect(),
        ))
    }
}

/// Runs the benchmark and prints one line per measurement.
pub fn run(entities: usize, hidden: usize, frames: usize, dir: &Path) -> Result<()> {
    let t = Instant::now();
    let path = dir.join(format!("synthetic-{entities}x{hidden}.safetensors"));
    write_synthetic_table(&path, entities, hidden, 42)?;
    println!(
        "synthetic table: {entities} entities, hidden {hidden}, {:.0} MB ({:.1} s to write)",
        std::fs::metadata(&path)?.len() as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let before = rss_mb();
    let t = Instant::now();
    let table = Table::load(&path)?;
    println!(
        "Table::load alone: {:.2} s, resident memory {:.0} MB -> {:.0} MB ({} contexts)",
        t.elapsed().as_secs_f64(),
        before,
        rss_mb(),
        table.context_count()
    );
    let e = (0..table.len()).find(|&i| table.counts[i] > 0).unwrap_or(0);
    // The worker's way: an index (a centred copy of the vectors) for a table that fits
    // `INDEX_MAX_VALUES`, a scan of the vectors in place for a larger one.
    let (how, query): (&str, Box<dyn Fn() -> Result<()> + '_>) = if table.len() * table.hidden()
        > INDEX_MAX_VALUES
    {
        println!(
                "neighbour index: none ({} values > {INDEX_MAX_VALUES}: the worker scans the vectors in place)",
                table.len() * table.hidden()
            );
        let table = &table;
        let t = Instant::now();
        let mean = pelt::analysis::mean_direction(table, 0);
        println!(
            "mean direction: {:.0} ms (once per table, kept by the worker)",
            ms(t.elapsed())
        );
        let kernel = pelt::analysis::ScanKernel::best(table.meta.dtype);
        (
            "scanned in place",
            Box::new(move || {
                pelt::analysis::nearest_scan(table, e, 15, Some(&mean), 0, kernel).map(drop)
            }),
        )
    } else {
        let t = Instant::now();
        let index = NeighbourIndex::new(&table, true)?;
        println!(
            "neighbour index: {:.0} ms to build (once per table, on the worker)",
            ms(t.elapsed())
        );
        (
            "one matrix product",
            Box::new(move || index.entity_neighbours(e, 15).map(drop)),
        )
    };
    let mut times = vec![];
    for _ in 0..if how == "scanned in place" { 5 } else { 20 } {
        let t = Instant::now();
        query()?;
        times.push(ms(t.elapsed()));
    }
    let q = Frames::of(times);
    println!(
        "neighbour query (15 nearest of {entities}, mean removed, {how}): fastest {:.1} ms, median {:.1} ms, slowest {:.1} ms",
        q.min, q.median, q.max
    );
    drop(query);
    drop(table);

    let ctx = egui::Context::default();
    let state = State {
        tab: Tab::Overview,
        ..State::default()
    };
    let mut h = Headless {
        app: App::without_project(&ctx, state),
        ctx,
    };
    let t = Instant::now();
    h.app.apply(Command::OpenTable(path.clone()));
    let limit = Duration::from_secs(120);
    h.measure(1, limit, |a| {
        a.session.table.is_some() || !a.session.errors.is_empty()
    })?;
    if let Some(err) = h.app.session.errors.first() {
        bail!("{}: {}", err.job, err.message);
    }
    println!(
        "open the table (read, check, shown): {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let report = |what: &str, f: &Frames| {
        println!(
            "frame, {what}: fastest {:.1} ms, median {:.1} ms, slowest {:.1} ms ({frames} frames)",
            f.min, f.median, f.max
        )
    };
    let f = h.measure(frames, limit, |_| true)?;
    report("entity list + Overview", &f);

    let mut state = h.app.session.state.clone();
    state.sort = SortKey::Name;
    h.app.apply(Command::SetState(Box::new(state)));
    let (worst, answered) = h.until_rows_current(limit)?;
    println!(
        "sort {entities} entities by name: answered after {:.2} s, worst frame meanwhile {worst:.1} ms",
        answered.as_secs_f64()
    );
    let f = h.measure(frames, limit, |_| true)?;
    report("entity list sorted by name", &f);

    // A search typed one key a frame, then frames until its rows are shown.
    let query = "kinase 7";
    let mut typing = vec![];
    for k in 1..=query.len() {
        h.app.entities.filter = query[..k].to_string();
        typing.push(ms(h.frame()));
    }
    let (worst, answered) = h.until_rows_current(limit)?;
    let worst_typing = typing.iter().copied().fold(0.0, f64::max);
    println!(
        "search {query:?} typed over {entities} entities sorted by name ({} keystrokes, one frame each): worst frame while typing {worst_typing:.1} ms; rows shown {:.2} s after the last key, worst frame meanwhile {worst:.1} ms ({} rows)",
        query.len(),
        answered.as_secs_f64(),
        h.app.entities.visible(&h.app.session).len()
    );
    h.app.entities.filter.clear();
    h.until_rows_current(limit)?;

    h.app.apply(Command::Select(e));
    h.app.apply(Command::SetTab(Tab::Inspector));
    // With no model loaded the inspection fails at once; the contexts are still listed.
    let f = h.measure(frames, limit, |a| !a.session.is_busy())?;
    report("entity list + Inspector", &f);

    let mut state = h.app.session.state.clone();
    state.map_method = pelt::analysis::maps::MapMethod::Pca;
    h.app.apply(Command::SetState(Box::new(state)));
    h.app.apply(Command::SetTab(Tab::Map));
    let t = Instant::now();
    h.measure(1, limit, |a| a.session.map.layout.is_some())?;
    println!(
        "PCA of the map (on the worker): {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let (total, drawn) = h.app.map.shown;
    let f = h.measure(frames, limit, |_| true)?;
    report(
        &format!("entity list + Map ({drawn} of {total} points drawn)"),
        &f,
    );

    // Colours from a labels file of every entity (12 classes kept, the rest "other").
    let labels = dir.join(format!("synthetic-{entities}-labels.tsv"));
    let shown = h.app.session.table.clone().expect("the table is open");
    let mut tsv = String::new();
    for (i, id) in shown.entity_ids.iter().enumerate() {
        tsv.push_str(&format!("{id}\tclass {}\n", (i * 7919) % 20));
    }
    std::fs::write(&labels, tsv)?;
    h.app
        .apply(Command::Map(MapCommand::ColourBy(ColourBy::File(
            labels.clone(),
        ))));
    let t = Instant::now();
    h.measure(1, limit, |a| a.session.map.classes.is_some())?;
    println!(
        "map colours from a labels file of {} ids (on the worker): {:.2} s",
        shown.len(),
        t.elapsed().as_secs_f64()
    );
    let f = h.measure(frames, limit, |_| true)?;
    report("entity list + Map coloured by 20 labels", &f);

    // A search typed on the map: every keystroke matches all names again.
    let mut typing = vec![];
    for k in 1..=query.len() {
        h.app.map.find = query[..k].to_string();
        typing.push(ms(h.frame()));
    }
    let f = Frames::of(typing);
    println!(
        "Map search {query:?} typed over {total} points ({} keystrokes, one frame each): fastest {:.1} ms, median {:.1} ms, slowest {:.1} ms",
        query.len(),
        f.min,
        f.median,
        f.max
    );

    // A set of a third of the rows, shown alone in the entity list.
    let set: Vec<usize> = (0..shown.len()).step_by(3).collect();
    drop(shown);
    h.app.apply(Command::Map(MapCommand::SetSet(set)));
    h.app.apply(Command::Map(MapCommand::FilterToSet(true)));
    let (worst, answered) = h.until_rows_current(limit)?;
    println!(
        "entity list limited to a set of {} rows: shown after {:.2} s, worst frame meanwhile {worst:.1} ms",
        h.app.entities.visible(&h.app.session).len(),
        answered.as_secs_f64()
    );
    let f = h.measure(frames, limit, |_| true)?;
    report(
        "entity list (the set) + Map with the set ringed and a search",
        &f,
    );

    // A learnt map of a large table waits for the user (it is not kept in a project).
    let mut state = h.app.session.state.clone();
    state.map_method = pelt::analysis::maps::MapMethod::default();
    h.app.apply(Command::SetState(Box::new(state)));
    let f = h.measure(frames, limit, |a| {
        let m = a.session.state.map_method;
        a.session.map.held(m).is_some()
    })?;
    report(
        &format!("Map with t-SNE held ({total} entities > {AUTO_LAYOUT_MAX}: made when asked)"),
        &f,
    );
    let _ = std::fs::remove_file(&labels);
    let _ = std::fs::remove_file(&path);
    Ok(())
}
