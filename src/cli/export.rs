//! `export-client`: the client bundle of a model (`client.json`), what a
//! client needs to make keys, encrypt and decrypt without the weights.

use super::infer::PlanChoice;
use super::model_args::ModelArgs;
use super::{print_json, CliError};
use crate::pipeline::ClientBundle;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;

/// Arguments of `export-client`.
#[derive(Args, Debug)]
pub struct ExportClientArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    choice: PlanChoice,
    /// The bundle to write (JSON).
    #[arg(long)]
    out: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs `export-client`.
pub fn run(args: &ExportClientArgs) -> Result<(), CliError> {
    let bundle = ClientBundle::export(
        &args.model.model,
        &args.model.hints.options()?,
        Some(&args.choice.preset),
        args.choice.batch,
    )?;
    bundle.write(&args.out)?;
    let bytes = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    if args.json {
        print_json(&json!({
            "out": args.out.display().to_string(),
            "bytes": bytes,
            "model": bundle.binding.model,
            "fingerprint": bundle.fingerprint,
            "preset": bundle.binding.preset,
            "galois_keys": bundle.rotations.len(),
        }));
    } else {
        println!(
            "wrote {} ({bytes} bytes) for {}, preset {}, model fingerprint {}",
            args.out.display(),
            bundle.binding.model,
            bundle.binding.preset,
            bundle.fingerprint
        );
    }
    Ok(())
}
