//! Loading a classifier (every tensor checked against its architecture),
//! folding it and planning it for CKKS.

use super::PipelineError;
use crate::ckks::Params;
use crate::he_nn::{plan_for, Plan};
use crate::nn::{fold, LoadOptions, Model, NnError};
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
        let model = fold(&load_model(path, options)?);
        let preset = preset.filter(|p| *p != "auto");
        let (params, plan) = plan_for(&model, preset, batch).map_err(|e| PipelineError::input(path, e.to_string()))?;
        Ok(Self { model, params, plan })
    }
}
