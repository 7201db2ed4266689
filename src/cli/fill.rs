//! `pelt fill`: the model's own predictions at masks, without a table.

use anyhow::Result;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

use pelt::escape;
use pelt::model::DeviceChoice;

use super::{load_model, Precision};

/// `pelt fill`'s flags.
#[derive(Args, Debug)]
pub struct FillArgs {
    text: String,
    /// Model folder or cached Hugging Face id, e.g. bert-base-uncased or ORG/NAME@REV
    /// (default: the bundled model).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
}

/// `pelt fill`.
pub fn run(args: FillArgs, out: &mut dyn Write) -> Result<()> {
    let model = load_model(args.model, args.device, Precision::F32)?;
    for (i, preds) in pelt::analysis::fill_mask(&model, &args.text, args.top_k)?
        .iter()
        .enumerate()
    {
        writeln!(out, "mask {}:", i + 1)?;
        for (token, p) in preds {
            writeln!(out, "  {:<16} {p:.4}", escape::text(token))?;
        }
    }
    Ok(())
}
