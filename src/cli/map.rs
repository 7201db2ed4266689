//! `pelt map`: a 2-D map of a table (PCA, t-SNE or UMAP) as TSV, with how much structure it
//! keeps.

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use pelt::analysis::layout::{
    centred_directions, knn_label_agreement, trustworthiness, TsneParams, UmapParams,
};
use pelt::analysis::maps::{compute_map, map_tsv, MapMethod};
use pelt::outpath::{Input, Inputs, OutputKind, Replace};
use pelt::table::Table;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Method {
    Pca,
    Tsne,
    Umap,
}

/// `pelt map`'s flags.
#[derive(Args, Debug)]
pub struct MapArgs {
    table: PathBuf,
    #[arg(long, value_enum, default_value = "tsne")]
    method: Method,
    /// t-SNE's perplexity.
    #[arg(long, default_value_t = 30.0)]
    perplexity: f32,
    /// t-SNE's epochs.
    #[arg(long, default_value_t = 1000)]
    epochs: usize,
    /// UMAP's neighbours per point.
    #[arg(long, default_value_t = 15)]
    neighbours: usize,
    /// UMAP's minimum distance.
    #[arg(long, default_value_t = 0.1)]
    min_dist: f32,
    /// UMAP's random seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Labels (id<TAB>label lines) to score the map by: the share of each labelled entity's
    /// 5 nearest labelled entities on the map with its label.
    #[arg(long, conflicts_with = "labels_from_fewrel")]
    labels: Option<PathBuf>,
    /// Labels from FewRel-style files: the relation slot each entity fills most often.
    #[arg(long, num_args = 1..)]
    labels_from_fewrel: Vec<PathBuf>,
    /// Write the map as TSV (id, name, x, y).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace an existing --out even when it is not a map of pelt.
    #[arg(long)]
    force: bool,
}

/// `pelt map`.
pub fn run(args: MapArgs, out: &mut dyn Write) -> Result<()> {
    if let Some(o) = &args.out {
        let mut inputs = Inputs::new();
        inputs.add("table", &args.table);
        inputs
            .0
            .extend(args.labels.iter().map(|l| Input::new("labels", l)));
        inputs.0.extend(
            args.labels_from_fewrel
                .iter()
                .map(|l| Input::new("FewRel file", l)),
        );
        inputs.check_output("--out", o, OutputKind::Map, Replace::forced(args.force))?;
    }
    let t = Table::load(&args.table)?;
    let never = AtomicBool::new(false);
    let start = Instant::now();
    let mut report = |_: usize, _: usize| {};
    let method = match args.method {
        Method::Pca => MapMethod::Pca,
        Method::Tsne => MapMethod::Tsne(TsneParams {
            perplexity: args.perplexity,
            epochs: args.epochs,
        }),
        Method::Umap => MapMethod::Umap(UmapParams {
            neighbours: args.neighbours,
            min_dist: args.min_dist,
            epochs: 0,
            seed: args.seed,
        }),
    };
    let map = compute_map(&t, &method, &never, &mut report)?.expect("not cancelled");
    let secs = start.elapsed().as_secs_f64();
    if map.is_empty() {
        bail!("the table has no entity with a vector");
    }
    writeln!(
        out,
        "{} map of {} entities in {secs:.1} s",
        method.label(),
        map.len()
    )?;
    let points: Vec<[f64; 2]> = map.iter().map(|p| p.1).collect();
    if map.len() <= 20_000 {
        let rows: Vec<usize> = map.iter().map(|p| p.0).collect();
        let high = centred_directions(&t, &rows);
        writeln!(
            out,
            "trustworthiness (10 neighbours, cosine of the centred directions): {:.3}",
            trustworthiness(&high, t.hidden(), &points, 10)
        )?;
    }
    let labels = match (&args.labels, args.labels_from_fewrel.is_empty()) {
        (Some(p), _) => Some(pelt::eval::labels_from_tsv(p)?),
        (None, false) => Some(pelt::eval::labels_from_fewrel(&args.labels_from_fewrel, 3)?),
        (None, true) => None,
    };
    if let Some(labels) = labels {
        let mut names: Vec<&String> = labels.values().collect();
        names.sort();
        names.dedup();
        let lab: Vec<Option<u32>> = map
            .iter()
            .map(|&(r, _)| {
                labels
                    .get(&t.entity_ids[r])
                    .and_then(|l| names.binary_search(&l).ok())
                    .map(|i| i as u32)
            })
            .collect();
        writeln!(
            out,
            "k-NN label agreement (5 nearest labelled entities, {} labelled, {} labels): {:.3}",
            lab.iter().flatten().count(),
            names.len(),
            knn_label_agreement(&points, &lab, 5)
        )?;
    }
    if let Some(o) = &args.out {
        let tsv = map_tsv(&t, &map);
        pelt::io::write_atomic(o, tsv.as_bytes())?;
        writeln!(out, "wrote {}", pelt::escape::path(o))?;
    }
    Ok(())
}
