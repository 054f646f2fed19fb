//! The client bundle (`client.json`): what a client needs to make keys for
//! a model, encrypt its latents and read its logits, and nothing more. The
//! model owner publishes it; it holds no weight, bias or activation
//! coefficient, only the parameters, the slot layouts, the rotations
//! (Galois elements) the plan needs and at which levels, the class names,
//! the latent shape, the input clamp and the model's fingerprint.

use super::binding::ModelBinding;
use super::fingerprint::{is_fingerprint, model_fingerprint};
use super::model::Planned;
use super::PipelineError;
use crate::ckks::{CkksError, KeyLevels, Params, ParamsLiteral};
use crate::nn::LoadOptions;
use crate::ring::automorphism::rotation_galois_element;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use thiserror::Error;

/// The format number this code writes and reads.
pub const BUNDLE_FORMAT: u32 = 1;

/// Longest bundle read (a ResNet20 one is a few kilobytes).
pub const MAX_BUNDLE_BYTES: u64 = 1 << 20;

/// Most Galois keys a bundle may ask for.
const MAX_ROTATIONS: usize = 4096;

/// A client bundle that cannot be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BundleError {
    /// Not JSON of a bundle's shape.
    #[error("not a client bundle: {0}")]
    Json(String),
    /// Another format number.
    #[error("client bundle format {found}; this build reads format {BUNDLE_FORMAT}")]
    Format {
        /// The number found.
        found: u32,
    },
    /// Parameters that cannot be built.
    #[error(transparent)]
    Params(#[from] CkksError),
    /// A field that contradicts the others or is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// A Galois key the plan needs: its rotation, element and level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleRotation {
    /// Slot steps (negative: to the right).
    pub step: i64,
    /// Its Galois element `5^step mod 2N`.
    pub galois_element: u64,
    /// The highest level the key serves.
    pub level: usize,
}

/// What a client needs of a model.
///
/// Invariants (checked by [`ClientBundle::from_json`]): `params` is the
/// literal of the preset `binding.preset`; `binding` fits those parameters
/// ([`ModelBinding::check`]) and records `fingerprint`; every rotation is
/// distinct, within the slots, at a level the parameters have, with its
/// own Galois element.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientBundle {
    /// [`BUNDLE_FORMAT`].
    pub format: u32,
    /// The model's fingerprint ([`model_fingerprint`]).
    pub fingerprint: String,
    /// The CKKS parameters (those of the preset `binding.preset`).
    pub params: ParamsLiteral,
    /// The model's name, classes, latent shape, input clamp, batch, start
    /// level and slot layouts, as a key folder records them.
    pub binding: ModelBinding,
    /// The level of the relinearization key, `None` when the plan needs none.
    pub relin_level: Option<usize>,
    /// The Galois keys the plan needs.
    pub rotations: Vec<BundleRotation>,
}

impl ClientBundle {
    /// The bundle of the model at `path` (loaded with `options`), planned
    /// under `preset` (`auto` or `None`: the smallest 128-bit preset that
    /// fits) for `batch` images per set.
    ///
    /// # Errors
    /// As [`Planned::load`]; an unreadable weight file.
    pub fn export(
        path: &Path,
        options: &LoadOptions,
        preset: Option<&str>,
        batch: usize,
    ) -> Result<Self, PipelineError> {
        let planned = Planned::load(path, options, preset, batch)?;
        Ok(Self::of(&planned, model_fingerprint(path)?))
    }

    /// The bundle of `planned`, whose weight file has `fingerprint`.
    pub fn of(planned: &Planned, fingerprint: String) -> Self {
        let params = &planned.params;
        let levels = planned.plan.key_levels();
        let mut binding = ModelBinding::new(&planned.model, params, &planned.plan);
        binding.fingerprint = Some(fingerprint.clone());
        ClientBundle {
            format: BUNDLE_FORMAT,
            fingerprint,
            params: params.literal().clone(),
            binding,
            relin_level: levels.relin,
            rotations: levels
                .rotations
                .iter()
                .map(|&(step, level)| BundleRotation {
                    step,
                    galois_element: rotation_galois_element(step, params.n()),
                    level,
                })
                .collect(),
        }
    }

    /// The bundle as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a bundle serializes")
    }

    /// Parses and checks a bundle ([`Self::check`]).
    ///
    /// # Errors
    /// Malformed JSON, an unknown or missing field, or a field that breaks
    /// an invariant of [`ClientBundle`].
    pub fn from_json(text: &str) -> Result<Self, BundleError> {
        let bundle: ClientBundle = serde_json::from_str(text).map_err(|e| BundleError::Json(e.to_string()))?;
        bundle.params()?;
        Ok(bundle)
    }

    /// Reads and checks the bundle at `path` (at most [`MAX_BUNDLE_BYTES`]).
    ///
    /// # Errors
    /// An unreadable or oversized file; as [`Self::from_json`].
    pub fn read(path: &Path) -> Result<Self, PipelineError> {
        let text = crate::bounded::read_regular_text(path, MAX_BUNDLE_BYTES).map_err(PipelineError::io(path))?;
        Self::from_json(&text).map_err(|e| PipelineError::input(path, e.to_string()))
    }

    /// Writes the bundle to `path`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write(&self, path: &Path) -> Result<(), PipelineError> {
        std::fs::write(path, self.to_json()).map_err(PipelineError::io(path))
    }

    /// The parameters, after checking every field against them.
    ///
    /// # Errors
    /// A field that breaks an invariant of [`ClientBundle`].
    pub fn params(&self) -> Result<Arc<Params>, BundleError> {
        let invalid = |reason: String| Err(BundleError::Invalid(reason));
        if self.format != BUNDLE_FORMAT {
            return Err(BundleError::Format { found: self.format });
        }
        if !is_fingerprint(&self.fingerprint) {
            return invalid(format!(
                "fingerprint `{}` is not blake3:<64 hex digits>",
                self.fingerprint
            ));
        }
        if self.binding.fingerprint.as_ref() != Some(&self.fingerprint) {
            return invalid("the binding records another fingerprint".into());
        }
        let preset = &self.binding.preset;
        if !crate::ckks::params::PRESETS.contains(&preset.as_str()) {
            return invalid(format!("unknown preset `{preset}`"));
        }
        if ParamsLiteral::preset(preset)? != self.params {
            return invalid(format!("the parameters are not those of preset `{preset}`"));
        }
        let params = Params::preset(preset)?;
        self.binding.check(&params).map_err(BundleError::Invalid)?;
        let top = params.max_level();
        if self.relin_level.is_some_and(|l| l > top) {
            return invalid(format!("relinearization key level past the top level {top}"));
        }
        if self.rotations.len() > MAX_ROTATIONS {
            return invalid(format!("{} rotations (at most {MAX_ROTATIONS})", self.rotations.len()));
        }
        let slots = params.slots() as i64;
        for (i, r) in self.rotations.iter().enumerate() {
            if r.step == 0 || r.step.abs() >= slots {
                return invalid(format!(
                    "rotation {i}: step {} (a nonzero step within {slots} slots)",
                    r.step
                ));
            }
            if r.level > top {
                return invalid(format!("rotation {i}: level {} past the top level {top}", r.level));
            }
            if r.galois_element != rotation_galois_element(r.step, params.n()) {
                return invalid(format!("rotation {i}: Galois element is not that of step {}", r.step));
            }
            if self.rotations[..i].iter().any(|o| o.step == r.step) {
                return invalid(format!("rotation {i}: step {} twice", r.step));
            }
        }
        Ok(params)
    }

    /// The keys the plan needs, at the levels it uses them.
    pub fn key_levels(&self) -> KeyLevels {
        KeyLevels {
            relin: self.relin_level,
            rotations: self.rotations.iter().map(|r| (r.step, r.level)).collect(),
        }
    }
}
