//! Encrypted inference of one model inside one process, as `run`, `score`,
//! `bench` and `demo` do it: keys generated once and cached per model and
//! preset, then encrypt, evaluate on the chosen backend, decrypt.

use super::device::Chosen;
use super::keys::{generate_keys, CachedKeys, KeyDir};
use super::memory::EvalMemory;
use super::model::Planned;
use super::observer::{Observer, Silent};
use super::remote::RemoteEvaluation;
use super::server::evaluate_on;
use super::PipelineError;
use crate::backend::gpu::GpuWork;
use crate::ckks::gpu_eval::{GpuEvaluator, GpuPlaintext};
use crate::ckks::{DecryptionNoise, KeyMemory, Params, PublicKeySet, SecretKey};
use crate::he_nn::{decrypt_batches, encrypt_batches, Plan, ValueRange, WeightStore};
use crate::nn::InputClip;
use ndarray::{Array2, Array4, Axis};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Seconds of the client and server stages for one call.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StageSeconds {
    /// Encoding and encryption (client).
    pub encrypt: f64,
    /// The plan on the ciphertexts (server).
    pub infer: f64,
    /// Decryption and decoding (client).
    pub decrypt: f64,
}

impl std::iter::Sum for StageSeconds {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(StageSeconds::default(), |a, b| StageSeconds {
            encrypt: a.encrypt + b.encrypt,
            infer: a.infer + b.infer,
            decrypt: a.decrypt + b.decrypt,
        })
    }
}

impl StageSeconds {
    /// Each stage's seconds divided among `images` (at least 1).
    pub fn per_image(self, images: usize) -> Self {
        let n = images.max(1) as f64;
        StageSeconds {
            encrypt: self.encrypt / n,
            infer: self.infer / n,
            decrypt: self.decrypt / n,
        }
    }
}

/// What [`EncryptedSession::logits_apart`] gives, one entry per image in
/// the order of its input.
pub struct LogitsApart {
    /// Decrypted logits, `B x classes`.
    pub logits: Array2<f64>,
    /// Each image's seconds: its call's, shared among the call's images.
    pub seconds: Vec<StageSeconds>,
    /// Each image's peak ([`ValueRange::peaks`]).
    pub peaks: Vec<f64>,
    /// The images encrypted alone, in order.
    pub apart: Vec<usize>,
}

/// A planned model with its keys on a backend.
///
/// Invariant: the keys were generated for `planned.params` and cover every
/// rotation and level `planned.plan` uses.
pub struct EncryptedSession {
    /// The folded model, its parameters and plan.
    pub planned: Planned,
    sk: SecretKey,
    keys: Arc<PublicKeySet>,
    chosen: Chosen,
    lockstep: usize,
    /// Seconds key generation took; `None` when the keys came from the cache.
    pub keygen_seconds: Option<f64>,
    /// Which images the plan's ciphertexts can carry together.
    pub range: ValueRange,
    /// Where the keys are cached (an empty path for keys held in memory only).
    pub key_dir: KeyDir,
    /// On a GPU: the evaluator with the evaluation keys resident, made at
    /// the first call of [`Self::logits`] and kept, so that later calls (a
    /// benchmark's runs, `score`'s batches) do not expand and upload every
    /// key again.
    gpu: OnceLock<GpuEvaluator>,
    /// On a GPU: the weight plaintexts kept on the device for later calls,
    /// within [`EvalMemory::weights`].
    gpu_weights: WeightStore<GpuPlaintext>,
    /// Where the ciphertexts are evaluated when not here: a running
    /// `latent-he serve` holding this session's public keys.
    remote: Option<RemoteEvaluation>,
}

impl EncryptedSession {
    /// Keys for `planned` (from the cache directory for `model_file`'s
    /// content and the plan, generated and saved when absent) on `chosen`.
    ///
    /// # Errors
    /// Unreadable model file, no cache directory, key files that cannot be
    /// written or read.
    pub fn open(
        model_file: &Path,
        planned: Planned,
        chosen: Chosen,
        memory: EvalMemory,
    ) -> Result<Self, PipelineError> {
        let CachedKeys {
            sk,
            keys,
            keygen_seconds,
            dir: key_dir,
        } = CachedKeys::open(model_file, &planned, memory.keys)?;
        Ok(Self::with_keys(
            planned,
            chosen,
            memory,
            (sk, keys),
            keygen_seconds,
            key_dir,
        ))
    }

    /// Fresh keys for `planned`, held in memory only (benchmarks: nothing is
    /// written, key generation is always timed).
    pub fn generate(planned: Planned, chosen: Chosen, memory: EvalMemory) -> Self {
        let (sk, keys, seconds) = generate_keys(&planned.params, &planned.plan.key_levels(), memory.keys, &Silent);
        Self::with_keys(planned, chosen, memory, (sk, keys), Some(seconds), KeyDir::new(""))
    }

    /// A session on `planned` with these keys, evaluating locally.
    fn with_keys(
        planned: Planned,
        chosen: Chosen,
        memory: EvalMemory,
        (sk, keys): (SecretKey, Arc<PublicKeySet>),
        keygen_seconds: Option<f64>,
        key_dir: KeyDir,
    ) -> Self {
        EncryptedSession {
            range: ValueRange::new(&planned.model, &planned.params, &planned.plan),
            gpu_weights: WeightStore::new(&planned.params, memory.weights),
            planned,
            sk,
            keys,
            chosen,
            lockstep: memory.lockstep,
            keygen_seconds,
            key_dir,
            gpu: OnceLock::new(),
            remote: None,
        }
    }

    /// How the evaluation keys are held.
    pub fn key_memory(&self) -> KeyMemory {
        self.keys.memory()
    }

    /// Image sets evaluated together ([`Plan::execute_sets`]): a caller
    /// with many images gains most when it passes `lockstep * plan.batch()`
    /// of them at a time.
    pub fn lockstep(&self) -> usize {
        self.lockstep
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.planned.params
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.planned.plan
    }

    /// Evaluates on `remote` from now on instead of on this process's
    /// backend (`remote` holds this session's public keys).
    pub fn evaluate_remotely(&mut self, remote: RemoteEvaluation) {
        self.remote = Some(remote);
    }

    /// The server evaluating, when not this process.
    pub fn remote(&self) -> Option<&RemoteEvaluation> {
        self.remote.as_ref()
    }

    /// `("cpu" | "gpu", adapter name)`, or on a server `("remote:" and
    /// its backend, its URL)`.
    pub fn backend(&self) -> (String, Option<String>) {
        match &self.remote {
            Some(remote) => (remote.backend_name(), Some(remote.url().to_string())),
            None => self.chosen.describe(),
        }
    }

    /// The work recorded on the GPU since this session's evaluator was made
    /// (its keys' upload included); `None` on the CPU or before the first
    /// evaluation.
    pub fn gpu_work(&self) -> Option<GpuWork> {
        self.gpu.get().map(GpuEvaluator::work)
    }

    /// Encrypted logits of latents `x` (`B x C x H x W`, the model's latent
    /// shape, clamped here as the model's spec says), decrypted:
    /// `B x classes`, with the seconds of each stage; each group of sets
    /// evaluated is told to `observer`.
    ///
    /// # Errors
    /// Latents of the wrong shape; evaluation failures.
    pub fn logits(
        &self,
        x: &Array4<f64>,
        observer: &dyn Observer,
    ) -> Result<(Array2<f64>, StageSeconds), PipelineError> {
        let (params, plan) = (self.params(), self.plan());
        let latent = self.planned.model.spec().latent().dims();
        let (images, c, h, w) = x.dim();
        if [c, h, w] != latent {
            return Err(PipelineError::Refused(format!(
                "latents are {c}x{h}x{w}, the model reads {latent:?}"
            )));
        }
        let start = Instant::now();
        let flat = InputClip::clamped_values(self.planned.model.spec().input_clip(), x.iter());
        let inputs = encrypt_batches(&self.keys, params, &plan.input(), &flat, plan.start_level())?;
        let encrypt = start.elapsed().as_secs_f64();
        let classes = self.planned.model.spec().classes().len();
        let (logits, seconds) = match &self.remote {
            Some(remote) => remote.evaluate(
                &self.planned.params,
                plan,
                [images, c, h, w],
                classes,
                &inputs,
                observer,
            )?,
            None => {
                let (mut logits, seconds) = evaluate_on(
                    &self.chosen,
                    &self.keys,
                    (&self.gpu, &self.gpu_weights),
                    plan,
                    &[&inputs],
                    self.lockstep,
                    observer,
                )?;
                (logits.remove(0), seconds)
            }
        };
        let start = Instant::now();
        let values = decrypt_batches(
            &self.sk,
            &plan.output(),
            &logits,
            images * classes,
            DecryptionNoise::default(),
        )?;
        let logits = Array2::from_shape_vec((images, classes), values).expect("one logit per image and class");
        let seconds = StageSeconds {
            encrypt,
            infer: seconds.iter().sum(),
            decrypt: start.elapsed().as_secs_f64(),
        };
        Ok((logits, seconds))
    }

    /// [`Self::logits`] with each image kept apart from the others where it
    /// cannot share ciphertexts: every image's peak is taken
    /// ([`ValueRange::peaks`]); those the range [`ValueRange::holds`] are
    /// evaluated together, each other one alone, so that its wrapped values
    /// spoil no other image.
    ///
    /// # Errors
    /// As [`Self::logits`].
    pub fn logits_apart(&self, x: &Array4<f64>, observer: &dyn Observer) -> Result<LogitsApart, PipelineError> {
        let peaks = self
            .range
            .peaks(x.view())
            .map_err(|e| PipelineError::Refused(e.to_string()))?;
        let images = peaks.len();
        let (together, apart): (Vec<usize>, Vec<usize>) = (0..images).partition(|&i| self.range.holds(peaks[i]));
        let calls = std::iter::once(together)
            .filter(|call| !call.is_empty())
            .chain(apart.iter().map(|&i| vec![i]));
        let classes = self.planned.model.spec().classes().len();
        let mut logits = Array2::zeros((images, classes));
        let mut seconds = vec![StageSeconds::default(); images];
        for call in calls {
            let (got, stages) = self.logits(&x.select(Axis(0), &call), observer)?;
            for (row, &i) in call.iter().enumerate() {
                logits.row_mut(i).assign(&got.row(row));
                seconds[i] = stages.per_image(call.len());
            }
        }
        Ok(LogitsApart {
            logits,
            seconds,
            peaks,
            apart,
        })
    }
}
