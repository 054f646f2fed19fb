//! `model.json` in a key directory made by `keygen --model`: the model the
//! keys serve and where its input and logits sit in the slots, so that
//! `encrypt` lays out latents and `decrypt` reads logits without the model.
//! It holds nothing secret.

use super::model_args::{ModelArgs, ModelHints};
use super::CliError;
use crate::ckks::Params;
use crate::he_nn::{plan_for, Plan, SlotLayout};
use crate::nn::{fold, InputClip, Model};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// File name of the binding inside a key directory.
pub const BINDING_FILE: &str = "model.json";

/// What a key directory remembers about its model.
///
/// Invariants: `input` lays out a `latent` tensor and `output` one value per
/// class, both for the slots of `preset`; `start_level` is the level inputs
/// are encrypted at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelBinding {
    /// The model as described by its spec (architecture, SE, classes, latent).
    pub model: String,
    /// Class names, one per logit.
    pub classes: Vec<String>,
    /// Latent shape `[C, H, W]`.
    pub latent: [usize; 3],
    /// Parameter preset the keys were made for.
    pub preset: String,
    /// Level the input is encrypted at.
    pub start_level: usize,
    /// Layout of one encrypted set of `batch` latents.
    pub input: SlotLayout,
    /// Layout of one set's encrypted logits (image `b`'s class `k` is channel `b*K + k`).
    pub output: SlotLayout,
    /// Images sharing one set of ciphertexts (`--batch`).
    #[serde(default = "one")]
    pub batch: usize,
    /// The clamp `encrypt` applies to each latent value first (the model's
    /// `input_clip`; absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_clip: Option<InputClip>,
}

fn one() -> usize {
    1
}

impl ModelBinding {
    /// The binding of `model` planned as `plan` under `params`.
    pub fn new(model: &Model<f64>, params: &Params, plan: &Plan) -> Self {
        Self {
            model: model.spec().to_string(),
            classes: model.spec().classes().to_vec(),
            latent: model.spec().latent().dims(),
            preset: params.name().unwrap_or("literal").to_string(),
            start_level: plan.start_level(),
            input: plan.input(),
            output: plan.output(),
            batch: plan.batch(),
            input_clip: model.spec().input_clip(),
        }
    }

    /// The binding in `dir`, `None` when the directory has none.
    ///
    /// # Errors
    /// An unreadable or malformed file.
    pub fn read(dir: &Path) -> Result<Option<Self>, CliError> {
        let path = dir.join(BINDING_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CliError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        serde_json::from_str(&text).map(Some).map_err(|e| CliError::Input {
            path: path.display().to_string(),
            reason: format!("not a model binding: {e}"),
        })
    }

    /// Writes the binding into `dir`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write(&self, dir: &Path) -> Result<(), CliError> {
        let path = dir.join(BINDING_FILE);
        let text = serde_json::to_string_pretty(self).expect("a binding serializes");
        std::fs::write(&path, text).map_err(|source| CliError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

/// A model loaded, folded and planned: under `preset` (`auto` or `None`:
/// the smallest 128-bit preset that fits).
pub struct Planned {
    /// The folded model (the f64 reference).
    pub model: Model<f64>,
    /// Parameters the plan was made for.
    pub params: Arc<Params>,
    /// The plan.
    pub plan: Plan,
}

impl Planned {
    /// Loads, folds and plans for `batch` images per ciphertext set.
    ///
    /// # Errors
    /// Model loading errors; a model that fits no preset (with the levels it
    /// needs and the largest available); a layer with no encrypted form.
    pub fn load(args: &ModelArgs, preset: Option<&str>, batch: usize) -> Result<Self, CliError> {
        Self::load_from(&args.model, &args.hints, preset, batch)
    }

    /// [`Self::load`] for a path and its hints.
    ///
    /// # Errors
    /// As [`Self::load`].
    pub fn load_from(path: &Path, hints: &ModelHints, preset: Option<&str>, batch: usize) -> Result<Self, CliError> {
        let model = fold(&hints.load(path)?);
        let preset = preset.filter(|p| *p != "auto");
        let (params, plan) = plan_for(&model, preset, batch).map_err(|e| CliError::Input {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self { model, params, plan })
    }
}
