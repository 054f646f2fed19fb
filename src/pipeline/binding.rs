//! `model.json` in a key directory made by `keygen --model`: the model the
//! keys serve and where its input and logits sit in the slots, so that
//! `encrypt` lays out latents and `decrypt` reads logits without the model.
//! It holds nothing secret.

use super::PipelineError;
use crate::ckks::Params;
use crate::he_nn::{Plan, SlotLayout, MAX_BATCH};
use crate::nn::spec::MAX_LATENT_VALUES;
use crate::nn::{InputClip, LatentShape, Model};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// File name of the binding inside a key directory.
pub const BINDING_FILE: &str = "model.json";

/// Longest binding file read (a real one is a few kilobytes).
const MAX_BINDING_BYTES: u64 = 1 << 20;

/// Most classes a binding may name.
const MAX_CLASSES: usize = 4096;

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
    /// The fingerprint of the model's weight file
    /// ([`super::fingerprint::model_fingerprint`]) when the keys were made from a
    /// client bundle; a server with another model refuses them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
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
            fingerprint: None,
        }
    }

    /// The binding in `dir`, checked against the parameters of the keys
    /// it sits beside ([`Self::check`]); `None` when the directory has none.
    ///
    /// # Errors
    /// An unreadable, malformed or inconsistent file.
    pub fn read_for(dir: &Path, params: &Params) -> Result<Option<Self>, PipelineError> {
        let Some(binding) = Self::read(dir)? else {
            return Ok(None);
        };
        binding.check(params).map_err(|reason| PipelineError::Input {
            path: dir.join(BINDING_FILE).display().to_string(),
            reason: format!("does not fit the keys beside it: {reason}"),
        })?;
        Ok(Some(binding))
    }

    /// Checks every field against `params` (the keys' parameters): the
    /// preset, a start level the parameters have, a batch of 1 to
    /// [`MAX_BATCH`], a latent shape within [`MAX_LATENT_VALUES`], one or
    /// more classes, the input layout that [`SlotLayout::input`] gives for
    /// the batch of latents, and an output layout that holds one value per
    /// class and image and fits the slots ([`SlotLayout::check`]).
    ///
    /// # Errors
    /// A one-line reason.
    pub fn check(&self, params: &Params) -> Result<(), String> {
        let preset = params.name().unwrap_or("literal");
        if self.preset != preset {
            return Err(format!("made for preset `{}`, the keys are `{preset}`", self.preset));
        }
        if self.start_level > params.max_level() {
            return Err(format!(
                "start level {} is past the keys' top level {}",
                self.start_level,
                params.max_level()
            ));
        }
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return Err(format!("a batch of {} (1 to {MAX_BATCH})", self.batch));
        }
        let [c, h, w] = self.latent;
        LatentShape::new(c, h, w).map_err(|e| e.to_string())?;
        if self.classes.is_empty() || self.classes.len() > MAX_CLASSES {
            return Err(format!("{} classes (1 to {MAX_CLASSES})", self.classes.len()));
        }
        let input = SlotLayout::input(c * self.batch, h, w, params.slots()).map_err(|e| e.to_string())?;
        if self.input != input {
            return Err(format!(
                "the input layout is not the one of {} {c}x{h}x{w} latent(s) in {} slots",
                self.batch,
                params.slots()
            ));
        }
        let logits = self.classes.len() * self.batch;
        self.output
            .check(params.slots(), MAX_LATENT_VALUES)
            .map_err(|e| format!("output layout: {e}"))?;
        if self.output.len() != logits {
            return Err(format!(
                "the output layout holds {} values, not one per class and image ({logits})",
                self.output.len()
            ));
        }
        Ok(())
    }

    /// The binding in `dir` as written, `None` when the directory has none
    /// (unchecked: [`Self::read_for`] checks it against the keys).
    ///
    /// # Errors
    /// An unreadable or malformed file.
    pub fn read(dir: &Path) -> Result<Option<Self>, PipelineError> {
        let path = dir.join(BINDING_FILE);
        let text = match crate::bounded::read_regular_text(&path, MAX_BINDING_BYTES) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(PipelineError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        serde_json::from_str(&text).map(Some).map_err(|e| PipelineError::Input {
            path: path.display().to_string(),
            reason: format!("not a model binding: {e}"),
        })
    }

    /// Writes the binding into `dir`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write(&self, dir: &Path) -> Result<(), PipelineError> {
        let path = dir.join(BINDING_FILE);
        let text = serde_json::to_string_pretty(self).expect("a binding serializes");
        std::fs::write(&path, text).map_err(|source| PipelineError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Removes the binding from `dir`, if any: keys made without a model
    /// must not be read with the layout of earlier ones.
    ///
    /// # Errors
    /// The file exists and cannot be removed.
    pub fn remove(dir: &Path) -> Result<(), PipelineError> {
        let path = dir.join(BINDING_FILE);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(PipelineError::Io {
                path: path.display().to_string(),
                source: e,
            }),
            _ => Ok(()),
        }
    }
}
