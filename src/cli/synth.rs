//! `synth`: writes a synthetic chest X-ray set in NIH ChestX-ray14's layout.

use super::progress::bar;
use super::{print_json, CliError};
use crate::data::synth::{write_dataset_with, SynthConfig};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `synth`.
#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Number of images (at least 1).
    #[arg(long)]
    n: usize,
    /// Seed of every random choice: same n, seed and size give the same bytes.
    #[arg(long)]
    seed: u64,
    /// Output folder: new, empty, or a synthetic set of the same n, seed and size.
    #[arg(long)]
    out: PathBuf,
    /// Image side in pixels.
    #[arg(long, default_value_t = SynthConfig::DEFAULT_SIZE)]
    size: u32,
    /// Print one JSON object: out, n, seed, size, train, test, prevalence per class.
    #[arg(long)]
    json: bool,
}

/// Runs `synth`.
pub fn run(args: &SynthArgs) -> Result<(), CliError> {
    let config = SynthConfig::new(args.n, args.seed, args.size)?;
    let start = Instant::now();
    let progress = bar(config.n() as u64, "images", args.json);
    let summary = write_dataset_with(&config, &args.out, &|| progress.inc(1));
    progress.finish_and_clear();
    let summary = summary?;
    let seconds = start.elapsed().as_secs_f64();
    let prevalence = summary.prevalence();
    if args.json {
        let prevalence: serde_json::Map<String, serde_json::Value> = prevalence
            .iter()
            .map(|&(name, p)| (name.to_string(), json!(p)))
            .collect();
        print_json(&json!({
            "out": args.out.display().to_string(),
            "n": summary.n,
            "seed": config.seed(),
            "size": config.size(),
            "train": summary.train,
            "test": summary.test,
            "prevalence": prevalence,
        }));
    } else {
        println!(
            "{}: {} synthetic images of {size}x{size} ({} patients; train/val {}, test {})",
            args.out.display(),
            summary.n,
            summary.patients,
            summary.train,
            summary.test,
            size = config.size(),
        );
        for (name, p) in prevalence {
            println!("  {name:<20} {:6.2}%", 100.0 * p);
        }
    }
    eprintln!(
        "{:.2} s ({:.0} images/s)",
        seconds,
        summary.n as f64 / seconds.max(1e-9)
    );
    Ok(())
}
