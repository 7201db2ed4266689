//! `pelt compare`: two tables entity by entity (neighbourhood overlap, Jaccard@k).

use anyhow::Result;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use pelt::analysis::compare::compare_tables;
use pelt::escape;
use pelt::table::Table;

/// `pelt compare`'s flags.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Table A.
    a: PathBuf,
    /// Table B (any model or corpus; compared over the entity ids both found).
    b: PathBuf,
    /// Neighbours per entity.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Remove each table's mean direction (over the shared entities) first.
    #[arg(long)]
    center: bool,
    /// How many of the most changed entities to list.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Print everything as JSON (every shared entity with both neighbour lists).
    #[arg(long)]
    json: bool,
}

/// `pelt compare`.
pub fn run(args: CompareArgs, out: &mut dyn Write) -> Result<()> {
    if args.k == 0 {
        anyhow::bail!("--k must be at least 1");
    }
    let (a, b) = (Table::load(&args.a)?, Table::load(&args.b)?);
    let never = AtomicBool::new(false);
    let c = compare_tables(&a, &b, args.k, args.center, &never, &mut |_, _| {})?
        .expect("not cancelled");
    if args.json {
        let mut v = serde_json::to_value(&c)?;
        v["pelt"] = "compare".into();
        v["a"] = args.a.display().to_string().into();
        v["b"] = args.b.display().to_string().into();
        writeln!(out, "{}", serde_json::to_string(&v)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "A: {} ({} entities found)\nB: {} ({} entities found)",
        escape::path(&args.a),
        c.found_a,
        escape::path(&args.b),
        c.found_b
    )?;
    writeln!(out, "{}", c.summary())?;
    if c.shared.is_empty() {
        return Ok(());
    }
    let names = |l: &[(u32, f32)]| {
        l.iter()
            .take(5)
            .map(|(j, _)| escape::text(&c.shared[*j as usize].name).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    writeln!(
        out,
        "most changed neighbourhoods (Jaccard@{}, nearest 5 in A | in B):",
        c.k
    )?;
    for &s in c.most_changed().iter().take(args.top) {
        let e = &c.shared[s];
        writeln!(
            out,
            "  {:.3}  {} ({})\n         A: {}\n         B: {}",
            e.jaccard,
            escape::text(&e.name),
            escape::text(&e.id),
            names(&e.neighbours_a),
            names(&e.neighbours_b)
        )?;
    }
    Ok(())
}
