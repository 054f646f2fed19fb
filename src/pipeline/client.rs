//! The client's half: keys (from a model's plan or a client bundle),
//! latents laid out and encrypted as the model reads them, results
//! decrypted. The client never needs the model's weights.

use super::binding::ModelBinding;
use super::keys::{generate_keys, KeyDir};
use super::observer::Observer;
use super::PipelineError;
use crate::ckks::sealed::Passphrase;
use crate::ckks::serialize::CiphertextFile;
use crate::ckks::{encrypt_values, DecryptionNoise, KeyLevels, KeyMemory, Params, PublicKeySet, SecretKey};
use crate::he_nn::{decrypt_batches, encrypt_batches};
use crate::nn::InputClip;
use ndarray::Array4;
use std::path::Path;
use std::sync::Arc;

/// `levels` (a model's keys at the levels its plan uses them, or none)
/// with Galois keys for the `extra` rotations it lacks, at the top level of
/// `params`.
pub fn key_levels_with(levels: Option<KeyLevels>, params: &Params, extra: &[i64]) -> KeyLevels {
    let mut levels = levels.unwrap_or_else(|| KeyLevels::top(params, &[]));
    for &r in extra {
        if !levels.rotations.iter().any(|&(s, _)| s == r) {
            levels.rotations.push((r, params.max_level()));
        }
    }
    levels
}

/// Keys written into a key folder by [`make_keys`].
pub struct MadeKeys {
    /// The secret key (also in the folder).
    pub sk: SecretKey,
    /// The public key set, evaluation keys compact (they are written, not
    /// evaluated with).
    pub keys: Arc<PublicKeySet>,
    /// Seconds key generation took.
    pub seconds: f64,
}

/// Makes a secret key for `params` and the public keys `levels` names,
/// and writes them into `dir` with `binding` ([`KeyDir::write`]). The
/// folder is created before the keys are generated, so that an unusable
/// folder costs no key generation. Progress goes to `observer`.
///
/// # Errors
/// The folder or a file cannot be written.
pub fn make_keys(
    dir: &KeyDir,
    params: &Arc<Params>,
    levels: &KeyLevels,
    binding: Option<&ModelBinding>,
    passphrase: Option<&Passphrase>,
    observer: &dyn Observer,
) -> Result<MadeKeys, PipelineError> {
    std::fs::create_dir_all(dir.path()).map_err(PipelineError::io(dir.path()))?;
    let (sk, keys, seconds) = generate_keys(params, levels, KeyMemory::Compact, observer);
    dir.write(&sk, &keys, binding, passphrase)?;
    Ok(MadeKeys { sk, keys, seconds })
}

/// Latents `x` (`B x C x H x W`, read from `path`, which errors name)
/// encrypted as the binding's model reads them: clamped as its inputs
/// are, each set of `binding.batch` images in the plan's input layout at
/// its start level.
///
/// # Errors
/// Latents of another shape than the binding's; values the parameters
/// cannot encode.
pub fn encrypt_latents(
    keys: &PublicKeySet,
    binding: &ModelBinding,
    x: &Array4<f64>,
    path: &Path,
) -> Result<CiphertextFile, PipelineError> {
    let (images, c, h, w) = x.dim();
    if [c, h, w] != binding.latent {
        return Err(PipelineError::input(
            path,
            format!(
                "latents are {c}x{h}x{w}; the keys were made for {} reading {:?}",
                binding.model, binding.latent
            ),
        ));
    }
    let params = keys.params();
    let flat = InputClip::clamped_values(binding.input_clip, x.iter());
    let ciphertexts = encrypt_batches(keys, params, &binding.input, &flat, binding.start_level)?;
    Ok(CiphertextFile {
        shape: vec![images, c, h, w],
        values: images * c * h * w,
        ciphertexts,
    })
}

/// `values` (of an array of `shape`, read from `path`) packed in order into
/// as many ciphertexts as needed.
///
/// # Errors
/// An empty array; values the parameters cannot encode.
pub fn encrypt_packed(
    keys: &PublicKeySet,
    shape: Vec<usize>,
    values: &[f64],
    path: &Path,
) -> Result<CiphertextFile, PipelineError> {
    if values.is_empty() {
        return Err(PipelineError::input(path, "the array is empty"));
    }
    let ciphertexts = values
        .chunks(keys.params().slots())
        .map(|chunk| encrypt_values(keys, chunk))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CiphertextFile {
        shape,
        values: values.len(),
        ciphertexts,
    })
}

/// What a ciphertext file holds, read against a key folder's binding.
#[derive(Clone, Copy, Debug)]
pub enum Contents<'a> {
    /// `B x K` logits, each image in the binding's output layout.
    Logits(&'a ModelBinding),
    /// `B x C x H x W` latents in the binding's input layout.
    Latents(&'a ModelBinding),
    /// Values packed in order.
    Packed,
}

impl<'a> Contents<'a> {
    /// What `file` holds: its shape and ciphertext count against `binding`
    /// (none: packed values).
    pub fn of(binding: Option<&'a ModelBinding>, file: &CiphertextFile) -> Self {
        let Some(b) = binding else { return Contents::Packed };
        let count = file.ciphertexts.len();
        let sets = |n: usize| n.div_ceil(b.batch.max(1));
        // The server's merges leave the logits of `lane_count` input sets in one output set.
        let output_sets = |n: usize| sets(n).div_ceil(b.output.lane_count());
        match file.shape.as_slice() {
            [n, k] if *k == b.classes.len() && count == output_sets(*n) * b.output.cts() => Contents::Logits(b),
            [n, c, h, w] if [*c, *h, *w] == b.latent && count == sets(*n) * b.input.cts() => Contents::Latents(b),
            _ => Contents::Packed,
        }
    }

    /// The values of `file` decrypted with `sk` and flooded with `noise`,
    /// read in this layout and trimmed to the recorded count.
    ///
    /// # Errors
    /// Ciphertexts that do not decrypt under `sk` or do not fit the layout.
    pub fn decrypt(
        self,
        sk: &SecretKey,
        file: &CiphertextFile,
        noise: DecryptionNoise,
    ) -> Result<Vec<f64>, PipelineError> {
        Ok(match self {
            Contents::Logits(b) => decrypt_batches(sk, &b.output, &file.ciphertexts, file.values, noise)?,
            Contents::Latents(b) => decrypt_batches(sk, &b.input, &file.ciphertexts, file.values, noise)?,
            Contents::Packed => decrypt_file(sk, file, noise)?,
        })
    }
}

/// Decrypts every ciphertext of `file`, flooded with `noise`, and trims to
/// the recorded values.
///
/// # Errors
/// Ciphertexts that do not decrypt under `sk`.
pub fn decrypt_file(sk: &SecretKey, file: &CiphertextFile, noise: DecryptionNoise) -> Result<Vec<f64>, PipelineError> {
    let mut values = Vec::with_capacity(file.values);
    for ct in &file.ciphertexts {
        values.extend(noise.decrypt(sk, ct)?);
    }
    values.truncate(file.values);
    Ok(values)
}
