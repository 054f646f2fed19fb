//! Loading a classifier (every tensor checked against its architecture),
//! folding it and planning it for CKKS.

use super::fingerprint::bytes_fingerprint;
use super::PipelineError;
use crate::ckks::Params;
use crate::he_nn::{plan_for, Plan, PlanError};
use crate::nn::{fold, LoadOptions, Model, NnError, StateDict, StoreDtype};
use std::path::Path;
use std::sync::Arc;

/// Loads the model at `path` with `options` (what its metadata may lack).
///
/// # Errors
/// Unreadable file ([`PipelineError::Io`]), conflicting options, missing
/// or misshaped tensors ([`PipelineError::Input`]).
pub fn load_model(path: &Path, options: &LoadOptions) -> Result<Model<f64>, PipelineError> {
    Model::load(path, options).map_err(|e| match e {
        NnError::Io { path, source } => PipelineError::Io { path, source },
        other => PipelineError::input(path, other.to_string()),
    })
}

/// Where errors about a state dict passed in memory point.
const IN_MEMORY: &str = "(state dict in memory)";

/// The model of an in-memory state dict (PyTorch's tensor names, every
/// tensor checked against the architecture) with `options` (what it cannot
/// tell), and its fingerprint: [`bytes_fingerprint`] of the dict as
/// safetensors bytes without metadata (f64 tensors, in name order)
/// followed by a line `key=value` for each metadata entry of the model's
/// spec, in order. Equal tensors and spec give equal fingerprints, so keys
/// from the model's client bundle serve those tensors and that spec only.
/// (A safetensors file's own metadata block has no fixed order, which is
/// why the spec is hashed apart.)
///
/// # Errors
/// Conflicting options, missing or misshaped tensors ([`PipelineError::Input`]).
pub fn model_from_state_dict(
    mut dict: StateDict,
    options: &LoadOptions,
) -> Result<(Model<f64>, String), PipelineError> {
    let path = Path::new(IN_MEMORY);
    let model = Model::from_state_dict(&dict, options).map_err(|e| PipelineError::input(path, e.to_string()))?;
    let keys: Vec<String> = dict.metadata_iter().map(|(k, _)| k.to_string()).collect();
    for key in keys {
        dict.remove_metadata(&key);
    }
    let mut bytes = dict
        .to_safetensors(StoreDtype::F64)
        .map_err(|e| PipelineError::input(path, e.to_string()))?;
    for (key, value) in model.spec().metadata() {
        bytes.extend(format!("{key}={value}\n").bytes());
    }
    Ok((model, bytes_fingerprint(&bytes)))
}

/// A model loaded, folded and planned.
///
/// Invariant: `plan` is `model`'s plan under `params`.
pub struct Planned {
    /// The folded model (the f64 reference).
    pub model: Model<f64>,
    /// Parameters the plan was made for.
    pub params: Arc<Params>,
    /// The plan.
    pub plan: Plan,
}

impl Planned {
    /// Loads `path` with `options`, folds it and plans it for `batch` images
    /// per ciphertext set under `preset` (`auto` or `None`: the smallest
    /// 128-bit preset that fits).
    ///
    /// # Errors
    /// Model loading errors; a model that fits no preset (with the levels it
    /// needs and the largest available); a layer with no encrypted form.
    pub fn load(path: &Path, options: &LoadOptions, preset: Option<&str>, batch: usize) -> Result<Self, PipelineError> {
        Self::new(&load_model(path, options)?, preset, batch).map_err(|e| PipelineError::input(path, e.to_string()))
    }

    /// Folds `model` and plans it for `batch` images per ciphertext set
    /// under `preset` (`auto` or `None`: the smallest 128-bit preset that
    /// fits).
    ///
    /// # Errors
    /// A model that fits no preset (with the levels it needs and the
    /// largest available); an unknown preset; a layer with no encrypted form.
    pub fn new(model: &Model<f64>, preset: Option<&str>, batch: usize) -> Result<Self, PlanError> {
        let model = fold(model);
        let preset = preset.filter(|p| *p != "auto");
        let (params, plan) = plan_for(&model, preset, batch)?;
        Ok(Self { model, params, plan })
    }
}
