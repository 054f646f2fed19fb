//! `demo`: the whole product on bundled defaults. Makes a few synthetic
//! chest X-rays, compresses them with the bundled VQGAN, classifies the
//! latents in plaintext and under CKKS encryption with the bundled ResNet20
//! (the scorer, encrypted), and prints each image's top findings with both
//! probabilities side by side, the timings and where the report went.

use super::backend::DeviceArgs;
use super::memory::DEFAULT_LOCKSTEP;
use super::progress::Stderr;
use super::CliError;
use crate::data::dataset::UncertainPolicy;
use crate::data::synth::{write_dataset, SynthConfig};
use crate::data::TextTable;
use crate::he_nn::DEFAULT_GPU_WEIGHT_BYTES;
use crate::nn::LoadOptions;
use crate::pipeline::memory::KeyMemoryChoice;
use crate::pipeline::score::{score, DatasetLayout, ScoreConfig};
use clap::Args;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The bundled models' folder in this source tree (used when `./models`
/// does not exist, e.g. when the binary runs from another directory).
const SOURCE_MODELS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models");
/// The bundled VQGAN, under the models folder.
pub const BUNDLED_VQGAN: &str = "vqgan_f8.safetensors";
/// The bundled classifier, under the models folder.
pub const BUNDLED_CLASSIFIER: &str = "resnet20_f8.safetensors";
/// The synthetic set's seed (any fixed value: the demo is reproducible).
const DEMO_SEED: u64 = 2026;

/// Arguments of `demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Synthetic images to run.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1000))]
    n: u32,
    /// Output folder (the synthetic images and the report).
    #[arg(long, default_value = "latent-he-demo")]
    out: PathBuf,
    /// Folder with the bundled models (default: ./models, else the source tree's).
    #[arg(long)]
    models: Option<PathBuf>,
    /// Skip the encrypted run (plaintext only).
    #[arg(long)]
    plaintext_only: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

fn models_dir(args: &DemoArgs) -> PathBuf {
    args.models.clone().unwrap_or_else(|| {
        let local = PathBuf::from("models");
        if local.join(BUNDLED_CLASSIFIER).exists() {
            local
        } else {
            PathBuf::from(SOURCE_MODELS)
        }
    })
}

/// The scorer's configuration the demo runs.
fn score_config(args: &DemoArgs, data: &Path, split: &Path, models: &Path) -> ScoreConfig {
    ScoreConfig {
        dataset: DatasetLayout::Nih,
        root: data.to_path_buf(),
        split: Some(split.to_path_buf()),
        csv: None,
        uncertain: UncertainPolicy::Zeros,
        model: models.join(BUNDLED_CLASSIFIER),
        model_options: LoadOptions::default(),
        vqgan: Some(models.join(BUNDLED_VQGAN)),
        vqgan_preset: None,
        encrypted: !args.plaintext_only,
        server: None,
        preset: "auto".into(),
        batch: 1,
        backend: args.device.backend.map(Into::into),
        adapter: args.device.adapter.clone(),
        key_memory: KeyMemoryChoice::Auto,
        lockstep: usize::from(DEFAULT_LOCKSTEP),
        weight_memory: DEFAULT_GPU_WEIGHT_BYTES,
        offset: 0,
        limit: None,
        shard: None,
        out: args.out.join("report"),
    }
}

/// Prints each image's three most probable findings, plaintext and
/// encrypted, from `results.csv`.
fn print_findings(results: &Path, encrypted: bool) -> Result<(), CliError> {
    let text = std::fs::read_to_string(results).map_err(|source| CliError::Io {
        path: results.display().to_string(),
        source,
    })?;
    let table = TextTable::parse(&text).map_err(|e| CliError::Input {
        path: results.display().to_string(),
        reason: e.to_string(),
    })?;
    let header = table.columns();
    let classes: Vec<&str> = header.iter().filter_map(|h| h.strip_prefix("plain:")).collect();
    let column = |name: String| header.iter().position(|h| *h == name);
    for record in table.rows() {
        let row = &record.fields;
        let value = |name: String| {
            column(name)
                .and_then(|i| row.get(i))
                .and_then(|v| v.parse::<f64>().ok())
        };
        let truth: Vec<&str> = classes
            .iter()
            .copied()
            .filter(|c| value(format!("label:{c}")) == Some(1.0))
            .collect();
        println!(
            "{}  (synthetic; true labels: {})",
            row.first().map_or("", String::as_str),
            truth.join(", ")
        );
        let mut ranked: Vec<(&str, f64)> = classes
            .iter()
            .map(|c| (*c, value(format!("plain:{c}")).unwrap_or(0.0)))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        println!(
            "    {:<22} {:>9} {:>10}",
            "finding",
            "plaintext",
            if encrypted { "encrypted" } else { "" }
        );
        for (class, p) in ranked.into_iter().take(3) {
            let he = value(format!("he:{class}")).map_or(String::new(), |v| format!("{v:>10.4}"));
            println!("    {class:<22} {p:>9.4} {he}");
        }
    }
    Ok(())
}

fn seconds(summary: &Value, stage: &str) -> f64 {
    summary["seconds_per_image"][stage]["mean"].as_f64().unwrap_or(0.0)
}

/// Runs `demo`.
pub fn run(args: &DemoArgs) -> Result<(), CliError> {
    let models = models_dir(args);
    for file in [BUNDLED_VQGAN, BUNDLED_CLASSIFIER] {
        if !models.join(file).exists() {
            return Err(CliError::Usage(format!(
                "no bundled model {} (pass --models DIR holding {BUNDLED_VQGAN} and {BUNDLED_CLASSIFIER})",
                models.join(file).display()
            )));
        }
    }
    let data = args.out.join(format!("synthetic-n{}-seed{DEMO_SEED}", args.n));
    let config = SynthConfig::new(args.n as usize, DEMO_SEED, SynthConfig::DEFAULT_SIZE)?;
    write_dataset(&config, &data)?;
    let mut images: Vec<String> = std::fs::read_dir(data.join("images"))
        .map_err(|source| CliError::Io {
            path: data.display().to_string(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    images.sort();
    let split = data.join("demo_list.txt");
    std::fs::write(&split, images.join("\n") + "\n").map_err(|source| CliError::Io {
        path: split.display().to_string(),
        source,
    })?;
    eprintln!("{} synthetic chest X-rays in {}", images.len(), data.display());
    let observer = Stderr::scoring(false);
    let summary = score(&score_config(args, &data, &split, &models), &observer);
    observer.finish();
    let summary = summary?;
    let encrypted = !args.plaintext_only;
    println!();
    print_findings(&args.out.join("report").join("results.csv"), encrypted)?;
    println!();
    println!(
        "seconds per image: VQGAN encode {:.2}, plaintext {:.4}{}",
        seconds(&summary, "encode"),
        seconds(&summary, "plain"),
        if encrypted {
            format!(
                ", encrypt {:.2}, encrypted inference {:.1}, decrypt {:.3} (backend {}; key generation {})",
                seconds(&summary, "encrypt"),
                seconds(&summary, "infer"),
                seconds(&summary, "decrypt"),
                summary["backend"].as_str().unwrap_or("?"),
                summary["keygen_seconds"]
                    .as_f64()
                    .map_or("cached".to_string(), |s| format!("{s:.1} s")),
            )
        } else {
            String::new()
        }
    );
    if let Some(d) = summary["abs_difference"].as_object() {
        let worst = d.values().filter_map(Value::as_f64).fold(0.0, f64::max);
        println!("largest |encrypted - plaintext| over the AUROC and F1 averages: {worst:.4}");
    }
    println!(
        "report: {} (summary.md, summary.json, results.csv, roc.png)",
        args.out.join("report").display()
    );
    Ok(())
}
