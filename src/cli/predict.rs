//! `predict`: plaintext inference of a classifier on latents (the reference
//! the encrypted path is compared with).

use super::crypt::read_npy_f64;
use super::{print_json, CliError};
use crate::nn::spec::parse_classes;
use crate::nn::{Arch, LatentShape, LoadOptions, Model, NnError};
use clap::Args;
use ndarray::{Array2, Array4};
use serde_json::json;
use std::path::PathBuf;

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
    /// Weights: a PyTorch state dict saved as safetensors (reference tensor names).
    #[arg(long)]
    model: PathBuf,
    /// Latents: a float32 or float64 .npy array, C x H x W or B x C x H x W.
    #[arg(long)]
    input: PathBuf,
    /// Architecture, when the file's metadata lacks it (resnet20, resnet32,
    /// resnet44, resnet56, lenet5, vgg5, hefnet); inferred from the tensor names otherwise.
    #[arg(long, value_parser = parse_arch)]
    arch: Option<Arch>,
    /// The model has the squeeze-and-excitation block (else from metadata or the tensors).
    #[arg(long)]
    se: bool,
    /// Class names: nih15, chexpert14 or a,b,c (else from metadata, or class_0, class_1, ...).
    #[arg(long)]
    classes: Option<String>,
    /// Latent shape CxHxW or f2/f4/f8/f16 (else from metadata or conv1's input channels).
    #[arg(long, value_parser = parse_latent)]
    latent: Option<LatentShape>,
    /// Arithmetic of the forward pass.
    #[arg(long, value_enum, default_value = "f64")]
    precision: Precision,
    /// Print one JSON object: classes, logits and sigmoid probabilities per image.
    #[arg(long)]
    json: bool,
}

fn parse_arch(s: &str) -> Result<Arch, String> {
    s.parse().map_err(|e: NnError| e.to_string())
}

fn parse_latent(s: &str) -> Result<LatentShape, String> {
    s.parse().map_err(|e: NnError| e.to_string())
}

/// The logistic function, without overflow for large `|x|`.
fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Runs `predict`.
pub fn run(args: &PredictArgs) -> Result<(), CliError> {
    let model_err = |e: NnError| CliError::Input {
        path: args.model.display().to_string(),
        reason: e.to_string(),
    };
    let classes = args
        .classes
        .as_deref()
        .map(parse_classes)
        .transpose()
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let opts = LoadOptions {
        arch: args.arch,
        se: args.se.then_some(true),
        classes,
        latent: args.latent,
    };
    let model = Model::load(&args.model, &opts).map_err(|e| match e {
        NnError::Io { path, source } => CliError::Io { path, source },
        other => model_err(other),
    })?;
    let input_err = |reason: String| CliError::Input {
        path: args.input.display().to_string(),
        reason,
    };
    let (shape, values) = read_npy_f64(&args.input)?;
    let dims = match shape.as_slice() {
        [c, h, w] => [1, *c, *h, *w],
        [b, c, h, w] => [*b, *c, *h, *w],
        _ => return Err(input_err(format!("shape {shape:?} is neither CxHxW nor BxCxHxW"))),
    };
    let x = Array4::from_shape_vec(dims, values).map_err(|e| input_err(e.to_string()))?;
    let logits: Array2<f64> = match args.precision {
        Precision::F64 => model.forward(x.view()),
        Precision::F32 => model
            .cast::<f32>()
            .forward(x.mapv(|v| v as f32).view())
            .map(|y| y.mapv(f64::from)),
    }
    .map_err(|e| input_err(e.to_string()))?;
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
