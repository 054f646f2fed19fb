//! The flags every command that reads a classifier takes (`predict`, `plan`,
//! `keygen --model`, `infer`, `run`), and loading the model they name.

use super::CliError;
use crate::nn::spec::parse_classes;
use crate::nn::{Arch, InputClip, LatentShape, LoadOptions, Model, NnError};
use crate::pipeline::load_model;
use clap::Args;
use std::path::PathBuf;

/// A classifier: its safetensors file and what its metadata may lack.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Weights: a PyTorch state dict saved as safetensors (reference tensor names).
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub hints: ModelHints,
}

/// What a state dict's metadata may lack.
#[derive(Args, Debug, Clone, Default)]
pub struct ModelHints {
    /// Architecture, when the file's metadata lacks it (resnet20, resnet32,
    /// resnet44, resnet56, lenet5, vgg5, hefnet); inferred from the tensor names otherwise.
    #[arg(long, value_parser = parse_arch)]
    pub arch: Option<Arch>,
    /// The model has the squeeze-and-excitation block (`--se` or `--se true|false`;
    /// else from metadata or the tensors).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub se: Option<bool>,
    /// Class names: nih15, chexpert14 or a,b,c (else from metadata, or class_0, class_1, ...).
    #[arg(long)]
    pub classes: Option<String>,
    /// Latent shape CxHxW or f2/f4/f8/f16 (else from metadata or conv1's input channels).
    #[arg(long, value_parser = parse_latent)]
    pub latent: Option<LatentShape>,
    /// Clamp every latent value to +-this before the model (else from the
    /// `input_clip` metadata, else no clamp); what `train.py --input-clip` trained with.
    #[arg(long, value_parser = parse_input_clip)]
    pub input_clip: Option<InputClip>,
}

/// `--batch`: images sharing one set of ciphertexts, 1 to
/// [`crate::he_nn::MAX_BATCH`].
///
/// # Errors
/// Anything else, as clap reports it (exit status 2).
pub fn parse_batch(s: &str) -> Result<usize, String> {
    let max = crate::he_nn::MAX_BATCH;
    match s.parse::<usize>() {
        Ok(b) if (1..=max).contains(&b) => Ok(b),
        _ => Err(format!("expected a number of images from 1 to {max}")),
    }
}

fn parse_arch(s: &str) -> Result<Arch, String> {
    s.parse().map_err(|e: NnError| e.to_string())
}

fn parse_latent(s: &str) -> Result<LatentShape, String> {
    s.parse().map_err(|e: NnError| e.to_string())
}

fn parse_input_clip(s: &str) -> Result<InputClip, String> {
    s.parse().map_err(|e: NnError| e.to_string())
}

impl ModelArgs {
    /// Loads the model, every tensor checked against its architecture.
    ///
    /// # Errors
    /// Unreadable file, conflicting flags, missing or misshaped tensors.
    pub fn load(&self) -> Result<Model<f64>, CliError> {
        Ok(load_model(&self.model, &self.hints.options()?)?)
    }
}

impl ModelHints {
    /// The hints as load options.
    ///
    /// # Errors
    /// Class names that do not parse (a usage error).
    pub fn options(&self) -> Result<LoadOptions, CliError> {
        let classes = self
            .classes
            .as_deref()
            .map(parse_classes)
            .transpose()
            .map_err(|e| CliError::Usage(e.to_string()))?;
        Ok(LoadOptions {
            arch: self.arch,
            se: self.se,
            classes,
            latent: self.latent,
            input_clip: self.input_clip,
        })
    }
}
