//! The client's half: keys (from a model's plan or a client bundle),
//! latents laid out and encrypted as the model reads them, results
//! decrypted. The client never needs the model's weights.

use super::binding::ModelBinding;
use super::bundle::ClientBundle;
use super::keys::{generate_keys, KeyDir};
use super::observer::{Observer, Silent};
use super::PipelineError;
use crate::ckks::sealed::Passphrase;
use crate::ckks::serialize::{ciphertexts_from_bytes, ciphertexts_to_bytes, CiphertextFile};
use crate::ckks::{encrypt_values, DecryptionNoise, KeyLevels, KeyMemory, Params, PublicKeySet, SecretKey};
use crate::he_nn::{decrypt_batches, encrypt_batches};
use crate::nn::InputClip;
use ndarray::{Array2, Array4};
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

/// Where errors about an array passed in memory point.
const IN_MEMORY: &str = "(latents in memory)";

/// Where errors about ciphertext bytes passed in memory point.
const IN_MEMORY_CIPHERTEXTS: &str = "(ciphertexts in memory)";

/// A model's decrypted findings for a batch of images.
///
/// Invariant: `logits` is `images x classes.len()`.
#[derive(Clone, Debug, PartialEq)]
pub struct Findings {
    /// Class names, one per logit.
    pub classes: Vec<String>,
    /// The decrypted logits, one row per image.
    pub logits: Array2<f64>,
}

impl Findings {
    /// Each logit's probability ([`super::sigmoid`]: the classes are
    /// independent, multi-label).
    pub fn probabilities(&self) -> Array2<f64> {
        self.logits.mapv(super::sigmoid)
    }
}

/// A client's key folder made for one model, opened: the secret key, the
/// public key and the model binding, so that latents can be encrypted in
/// the model's layout and its encrypted logits read, in memory, without
/// the model's weights.
///
/// Invariant: `keys` and `sk` are one key pair, and `binding` fits their
/// parameters ([`ModelBinding::check`]).
pub struct Client {
    dir: KeyDir,
    sk: SecretKey,
    keys: Arc<PublicKeySet>,
    binding: ModelBinding,
}

impl Client {
    /// Makes keys for the model of `bundle` (its preset, the Galois keys
    /// its plan needs, its binding and fingerprint) into `dir`, as `keygen
    /// --client` does, and opens them. `passphrase` seals the secret key.
    ///
    /// # Errors
    /// A bundle whose fields break its invariants; a folder that cannot be
    /// written.
    pub fn keygen(bundle: &ClientBundle, dir: KeyDir, passphrase: Option<&Passphrase>) -> Result<Self, PipelineError> {
        let params = bundle
            .params()
            .map_err(|e| PipelineError::Refused(format!("client bundle: {e}")))?;
        let levels = key_levels_with(Some(bundle.key_levels()), &params, &[]);
        let made = make_keys(&dir, &params, &levels, Some(&bundle.binding), passphrase, &Silent)?;
        Ok(Client {
            dir,
            sk: made.sk,
            keys: made.keys,
            binding: bundle.binding.clone(),
        })
    }

    /// Opens the key folder `dir` made for a model (`keygen --model` or
    /// `--client`), the secret key with `passphrase` when it is sealed.
    ///
    /// # Errors
    /// Missing, damaged or foreign key files; keys of two different pairs;
    /// a folder without a model binding, or one that does not fit its keys.
    pub fn open(dir: KeyDir, passphrase: Option<&Passphrase>) -> Result<Self, PipelineError> {
        let sk = dir.secret_key_with(passphrase)?;
        let keys = dir.public_keys(KeyMemory::Compact)?;
        if keys.id() != sk.id() {
            return Err(PipelineError::input(
                &dir.public_path(),
                format!("key {} is not the public half of secret key {}", keys.id(), sk.id()),
            ));
        }
        let binding = dir.binding(keys.params())?.ok_or_else(|| {
            PipelineError::input(
                dir.path(),
                "has no model.json: make the keys for a model (keygen --model or --client)",
            )
        })?;
        Ok(Client {
            dir,
            sk,
            keys: Arc::new(keys),
            binding,
        })
    }

    /// The key folder.
    pub fn dir(&self) -> &KeyDir {
        &self.dir
    }

    /// The model the keys serve: its classes, latent shape and layouts.
    pub fn binding(&self) -> &ModelBinding {
        &self.binding
    }

    /// Latents `x` (`B x C x H x W`, the binding's latent shape) encrypted
    /// in the model's layout ([`encrypt_latents`]), as the bytes of a
    /// ciphertext file: what the server's `infer` reads.
    ///
    /// # Errors
    /// Latents of another shape; non-finite values or values the
    /// parameters cannot encode.
    pub fn encrypt(&self, x: &Array4<f64>) -> Result<Vec<u8>, PipelineError> {
        let file = encrypt_latents(&self.keys, &self.binding, x, Path::new(IN_MEMORY))?;
        Ok(ciphertexts_to_bytes(&file, self.keys.params()))
    }

    /// The findings in `bytes`, a ciphertext file of the model's encrypted
    /// logits, decrypted and flooded with `noise`.
    ///
    /// # Errors
    /// Bytes that are not a whole ciphertext file of these parameters;
    /// ciphertexts of another key; a file that does not hold this model's
    /// logits.
    pub fn decrypt(&self, bytes: &[u8], noise: DecryptionNoise) -> Result<Findings, PipelineError> {
        let path = Path::new(IN_MEMORY_CIPHERTEXTS);
        let file =
            ciphertexts_from_bytes(bytes, self.sk.params()).map_err(|e| PipelineError::input(path, e.to_string()))?;
        let kind = Contents::of(Some(&self.binding), &file);
        if !matches!(kind, Contents::Logits(_)) {
            return Err(PipelineError::input(
                path,
                format!(
                    "holds {} ciphertexts of shape {:?}, not the logits of {} ({} classes)",
                    file.ciphertexts.len(),
                    file.shape,
                    self.binding.model,
                    self.binding.classes.len()
                ),
            ));
        }
        let values = kind.decrypt(&self.sk, &file, noise)?;
        let classes = self.binding.classes.clone();
        let logits = Array2::from_shape_vec((file.values / classes.len(), classes.len()), values)
            .map_err(|e| PipelineError::input(path, e.to_string()))?;
        Ok(Findings { classes, logits })
    }
}
