//! `predict`: plaintext inference of a classifier on latents (the reference
//! the encrypted path is compared with).

use super::model_args::ModelArgs;
use super::{print_json, CliError};
use crate::pipeline::read_latents;
pub use crate::pipeline::sigmoid;
use clap::Args;
use ndarray::Array2;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Arithmetic of the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    /// f64 throughout (the reference).
    F64,
    /// f32 weights and activations (faster).
    F32,
}

/// Arguments of `predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Latents: a float32 or float64 .npy array, C x H x W or B x C x H x W.
    #[arg(long)]
    input: PathBuf,
    /// Arithmetic of the forward pass.
    #[arg(long, value_enum, default_value = "f64")]
    precision: Precision,
    /// Print one JSON object: classes, logits and sigmoid probabilities per image.
    #[arg(long)]
    json: bool,
}

/// Refuses logits of which one is not finite: the model's pass left the
/// floating-point range on the latents at `path` (far outside what it was
/// trained on), and no probability can be given for them.
///
/// # Errors
/// [`CliError::Input`] naming the first such image and class.
pub fn finite_logits(logits: &Array2<f64>, path: &Path) -> Result<(), CliError> {
    match logits.indexed_iter().find(|(_, v)| !v.is_finite()) {
        None => Ok(()),
        Some(((image, class), v)) => Err(CliError::Input {
            path: path.display().to_string(),
            reason: format!(
                "image {image}: the model's pass leaves the floating-point range (logit {class} is {v}); \
                 the latent is far outside what the model reads"
            ),
        }),
    }
}

/// Runs `predict`.
pub fn run(args: &PredictArgs) -> Result<(), CliError> {
    let model = args.model.load()?;
    let x = read_latents(&args.input)?;
    let input_err = |reason: String| CliError::Input {
        path: args.input.display().to_string(),
        reason,
    };
    let logits: Array2<f64> = match args.precision {
        Precision::F64 => model.forward(x.view()),
        Precision::F32 => model
            .cast::<f32>()
            .forward(x.mapv(|v| v as f32).view())
            .map(|y| y.mapv(f64::from)),
    }
    .map_err(|e| input_err(e.to_string()))?;
    finite_logits(&logits, &args.input)?;
    let probs = logits.mapv(sigmoid);
    let classes = model.spec().classes();
    if args.json {
        let rows = |a: &Array2<f64>| a.rows().into_iter().map(|r| r.to_vec()).collect::<Vec<_>>();
        print_json(&json!({
            "classes": classes,
            "logits": rows(&logits),
            "probabilities": rows(&probs),
        }));
    } else {
        eprintln!("model: {}", model.spec());
        for (i, row) in probs.rows().into_iter().enumerate() {
            println!("image {i}:");
            for (name, p) in classes.iter().zip(row) {
                println!("  {name:<28} {p:.4}");
            }
        }
    }
    Ok(())
}
