//! Maps of a table as the window and `pelt map` make them: the method with its parameters,
//! one function that computes any of them, and the map's TSV (`id name x y`), which is also
//! how a project keeps its maps: in its folder's `maps/`, named by the method's parameters
//! and the table's [`Table::fingerprint`], so a map is reused only for the same vectors.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use super::layout::{tsne_2d, umap_2d, MapPoints, TsneParams, UmapParams};
use crate::table::{tsv_field, Table};

/// Bumped when a layout's algorithm changes, so that maps kept by an older version are made
/// again rather than read back.
pub const LAYOUT_VERSION: u32 = 1;

/// The first line of a map's TSV.
pub const MAP_HEADER: &str = "id\tname\tx\ty";

/// How a map is laid out.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum MapMethod {
    /// The first two principal components of the unit directions (seconds at a million).
    Pca,
    /// Barnes–Hut t-SNE ([`tsne_2d`]).
    Tsne(TsneParams),
    /// UMAP ([`umap_2d`]).
    Umap(UmapParams),
}

impl Default for MapMethod {
    fn default() -> Self {
        MapMethod::Tsne(TsneParams::default())
    }
}

impl MapMethod {
    /// The three methods with their default parameters.
    pub const fn defaults() -> [MapMethod; 3] {
        [
            MapMethod::Pca,
            MapMethod::Tsne(TsneParams {
                perplexity: 30.0,
                epochs: 1000,
            }),
            MapMethod::Umap(UmapParams {
                neighbours: 15,
                min_dist: 0.1,
                epochs: 0,
                seed: 42,
            }),
        ]
    }

    pub fn label(&self) -> &'static str {
        match self {
            MapMethod::Pca => "PCA",
            MapMethod::Tsne(_) => "t-SNE",
            MapMethod::Umap(_) => "UMAP",
        }
    }

    /// Whether the method learns a layout (minutes for large tables) rather than projects.
    pub fn is_slow(&self) -> bool {
        !matches!(self, MapMethod::Pca)
    }

    /// The method and its parameters as part of a file name.
    pub fn key(&self) -> String {
        match self {
            MapMethod::Pca => "pca".into(),
            MapMethod::Tsne(p) => format!("tsne-p{}-e{}", p.perplexity, p.epochs),
            MapMethod::Umap(p) => format!(
                "umap-n{}-d{}-e{}-s{}",
                p.neighbours, p.min_dist, p.epochs, p.seed
            ),
        }
    }

    /// The file in `dir` (a project's folder) that keeps this map of `table`.
    pub fn cache_file(&self, dir: &Path, table: &Table) -> PathBuf {
        dir.join("maps").join(format!(
            "{}-v{LAYOUT_VERSION}-{}.tsv",
            self.key(),
            table.fingerprint()
        ))
    }
}

/// The map of `table`'s found entities by `method`: `(row, [x, y])`; `None` when `cancel` was
/// set. `progress(done, total)` counts epochs (PCA reports nothing).
pub fn compute_map(
    table: &Table,
    method: &MapMethod,
    cancel: &AtomicBool,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Result<Option<MapPoints>> {
    match *method {
        MapMethod::Pca => super::pca_2d(table).map(Some),
        MapMethod::Tsne(p) => tsne_2d(table, p, cancel, progress),
        MapMethod::Umap(p) => umap_2d(table, p, cancel, progress),
    }
}

/// The map as TSV: [`MAP_HEADER`], then one line per point. Coordinates are written in full
/// (they read back to the same numbers).
pub fn map_tsv(table: &Table, points: &[(usize, [f64; 2])]) -> String {
    let mut tsv = format!("{MAP_HEADER}\n");
    for (r, p) in points {
        tsv.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            tsv_field(&table.entity_ids[*r]),
            tsv_field(&table.entity_names[*r]),
            p[0],
            p[1]
        ));
    }
    tsv
}

/// Reads a map of `table` written by [`map_tsv`]. Every line must name an entity of the table
/// with a vector, once, by its id; the map must place every found entity. Errors name the
/// file, line and field.
pub fn read_map_tsv(path: &Path, table: &Table) -> Result<MapPoints> {
    let text = crate::corpus::read_text_capped(
        path,
        crate::entities::MAX_LIST_BYTES,
        crate::corpus::MAX_TEXT_LINE_BYTES,
    )
    .with_context(|| format!("cannot read the map {}", crate::escape::path(path)))?;
    let at = |line: usize| format!("{}:{line}", path.display());
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim_end_matches('\r') == MAP_HEADER => {}
        _ => bail!(
            "{}: the first line must be `id<TAB>name<TAB>x<TAB>y`",
            at(1)
        ),
    }
    let rows = table.rows_by_id();
    let mut placed = vec![false; table.len()];
    let mut out = MapPoints::new();
    for (i, line) in lines {
        let line = line.trim_end_matches('\r');
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() != 4 {
            bail!("{}: expected 4 fields, found {}", at(i + 1), cols.len());
        }
        let Some(&r) = rows.get(cols[0]) else {
            bail!("{}: field id: `{}` is not in the table", at(i + 1), cols[0]);
        };
        if table.counts[r] == 0 {
            bail!("{}: field id: `{}` has no vector", at(i + 1), cols[0]);
        }
        if std::mem::replace(&mut placed[r], true) {
            bail!("{}: field id: `{}` is placed twice", at(i + 1), cols[0]);
        }
        let mut xy = [0f64; 2];
        for (v, (field, s)) in xy.iter_mut().zip([("x", cols[2]), ("y", cols[3])]) {
            *v = s
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .with_context(|| format!("{}: field {field}: `{s}` is not a number", at(i + 1)))?;
        }
        out.push((r, xy));
    }
    let found = table.counts.iter().filter(|&&c| c > 0).count();
    if out.len() != found {
        bail!(
            "{}: places {} entities; the table has {found} with a vector",
            path.display(),
            out.len()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::TableParts;

    fn table(n: usize) -> Table {
        let h = 4;
        let mut parts = TableParts {
            meta: Some(crate::table::test_meta(h, n)),
            entity_ids: (0..n).map(|i| format!("Q{i}")).collect(),
            entity_names: (0..n).map(|i| format!("entity {i}")).collect(),
            entity_aliases: vec![vec![]; n],
            sums: (0..n * h).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect(),
            found: vec![1; n],
            norm: 7.0,
            contexts: vec![],
        };
        let mut counts = vec![1i64; n];
        counts[n - 1] = 0;
        parts.found[n - 1] = 0;
        parts.add_placeholder_contexts(&counts);
        Table::from_parts(parts).expect("a table")
    }

    #[test]
    fn a_map_reads_back_exactly_and_bad_lines_are_named() {
        let t = table(6);
        let dir = tempfile::tempdir().unwrap();
        let pca = compute_map(&t, &MapMethod::Pca, &AtomicBool::new(false), &mut |_, _| {})
            .unwrap()
            .unwrap();
        assert_eq!(pca.len(), 5, "the entity without a vector is left out");
        let f = dir.path().join("m.tsv");
        std::fs::write(&f, map_tsv(&t, &pca)).unwrap();
        assert_eq!(read_map_tsv(&f, &t).unwrap(), pca);
        assert!(crate::outpath::OutputKind::Map.recognises(&f));

        let good = map_tsv(&t, &pca);
        let cases = [
            (
                good.replacen("Q0\t", "Q99\t", 1),
                ":2: field id: `Q99` is not in",
            ),
            (
                good.replacen("Q1\t", "Q0\t", 1),
                ":3: field id: `Q0` is placed twice",
            ),
            (
                good.replacen("\tentity 2\t", "\tentity 2\tnan\t", 1),
                ":4: expected 4 fields",
            ),
            (
                format!("{good}Q5\tentity 5\t1\t2\n"),
                ":7: field id: `Q5` has no vector",
            ),
            (
                good.lines().take(3).map(|l| format!("{l}\n")).collect(),
                "places 2 entities",
            ),
            (good.replacen("id\t", "ID\t", 1), ":1: the first line"),
        ];
        for (text, want) in cases {
            std::fs::write(&f, &text).unwrap();
            let e = format!("{:#}", read_map_tsv(&f, &t).unwrap_err());
            assert!(e.contains(want), "{e} lacks {want}");
        }
        let mut bad_y = good.lines().map(String::from).collect::<Vec<_>>();
        let cols: Vec<&str> = bad_y[2].split('\t').collect();
        bad_y[2] = format!("{}\t{}\t{}\tinf", cols[0], cols[1], cols[2]);
        std::fs::write(&f, bad_y.join("\n")).unwrap();
        let e = format!("{:#}", read_map_tsv(&f, &t).unwrap_err());
        assert!(e.contains(":3: field y: `inf` is not a number"), "{e}");
    }

    #[test]
    fn the_cache_file_names_the_parameters_and_the_vectors() {
        let (a, b) = (table(6), table(7));
        let dir = Path::new("/p");
        let [pca, tsne, umap] = MapMethod::defaults();
        let names: Vec<PathBuf> = [pca, tsne, umap]
            .iter()
            .map(|m| m.cache_file(dir, &a))
            .collect();
        assert!(names.iter().all(|n| n.parent() == Some(&dir.join("maps"))));
        assert_ne!(names[1], names[2]);
        assert_ne!(tsne.cache_file(dir, &a), tsne.cache_file(dir, &b));
        let other = MapMethod::Tsne(TsneParams {
            perplexity: 5.0,
            epochs: 1000,
        });
        assert_ne!(other.cache_file(dir, &a), names[1]);
        assert_eq!(tsne.cache_file(dir, &a), tsne.cache_file(dir, &table(6)));
    }
}
