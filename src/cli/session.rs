//! Encrypted inference of one model inside one process, as `run`, `score`,
//! `bench` and `demo` do it: keys generated once and cached per model and
//! preset, then encrypt, evaluate on the chosen backend, decrypt.

use super::backend::Chosen;
use super::binding::{ModelBinding, Planned};
use super::crypt::{PUBLIC_KEY_FILE, SECRET_KEY_FILE};
use super::memory::EvalMemory;
use super::CliError;
use crate::backend::gpu::GpuWork;
use crate::ckks::gpu_eval::GpuEvaluator;
use crate::ckks::serialize::{load_public_keys_as, load_secret_key, save_public_keys, save_secret_key};
use crate::ckks::{Ciphertext, DecryptionNoise, EvalBackend, Evaluator, KeyMemory, Params, PublicKeySet, SecretKey};
use crate::he_nn::{decrypt_batches, encrypt_batches, Plan, ValueRange};
use crate::nn::InputClip;
use ndarray::{Array2, Array4, Axis};
use std::path::{Path, PathBuf};
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
    /// Where the keys are cached.
    pub key_dir: PathBuf,
    /// On a GPU: the evaluator with the evaluation keys resident, made at
    /// the first call of [`Self::logits`] and kept, so that later calls (a
    /// benchmark's runs, `score`'s batches) do not expand and upload every
    /// key again.
    gpu: OnceLock<GpuEvaluator>,
}

impl EncryptedSession {
    /// Keys for `planned` (from the cache directory for `model_file`'s
    /// content and the plan, generated and saved when absent) on `chosen`.
    ///
    /// # Errors
    /// Unreadable model file, no cache directory, key files that cannot be
    /// written or read.
    pub fn open(model_file: &Path, planned: Planned, chosen: Chosen, memory: EvalMemory) -> Result<Self, CliError> {
        let key_dir = key_cache_dir(model_file, &planned)?;
        let (sk, keys, keygen_seconds) = cached_keys(&key_dir, &planned, memory.keys)?;
        Ok(EncryptedSession {
            range: ValueRange::new(&planned.model, &planned.params, &planned.plan),
            planned,
            sk,
            keys,
            chosen,
            lockstep: memory.lockstep,
            keygen_seconds,
            key_dir,
            gpu: OnceLock::new(),
        })
    }

    /// Fresh keys for `planned`, held in memory only (benchmarks: nothing is
    /// written, key generation is always timed).
    pub fn generate(planned: Planned, chosen: Chosen, memory: EvalMemory) -> Self {
        let (sk, keys, seconds) = generate_keys(&planned, memory.keys);
        EncryptedSession {
            range: ValueRange::new(&planned.model, &planned.params, &planned.plan),
            planned,
            sk,
            keys,
            chosen,
            lockstep: memory.lockstep,
            keygen_seconds: Some(seconds),
            key_dir: PathBuf::new(),
            gpu: OnceLock::new(),
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

    /// `("cpu" | "gpu", adapter name)`.
    pub fn backend(&self) -> (String, Option<String>) {
        self.chosen.describe()
    }

    /// The work recorded on the GPU since this session's evaluator was made
    /// (its keys' upload included); `None` on the CPU or before the first
    /// evaluation.
    pub fn gpu_work(&self) -> Option<GpuWork> {
        self.gpu.get().map(GpuEvaluator::work)
    }

    /// Encrypted logits of latents `x` (`B x C x H x W`, the model's latent
    /// shape, clamped here as the model's spec says), decrypted:
    /// `B x classes`, with the seconds of each stage.
    ///
    /// # Errors
    /// Latents of the wrong shape; evaluation failures.
    pub fn logits(&self, x: &Array4<f64>, quiet: bool) -> Result<(Array2<f64>, StageSeconds), CliError> {
        let (params, plan) = (self.params(), self.plan());
        let latent = self.planned.model.spec().latent().dims();
        let (images, c, h, w) = x.dim();
        if [c, h, w] != latent {
            return Err(CliError::Refused(format!(
                "latents are {c}x{h}x{w}, the model reads {latent:?}"
            )));
        }
        let start = Instant::now();
        let flat = InputClip::clamped_values(self.planned.model.spec().input_clip(), x.iter());
        let inputs = encrypt_batches(&self.keys, params, &plan.input(), &flat, plan.start_level())?;
        let encrypt = start.elapsed().as_secs_f64();
        let (logits, seconds) = evaluate_on(&self.chosen, &self.keys, &self.gpu, plan, &inputs, self.lockstep, quiet)?;
        let start = Instant::now();
        let classes = self.planned.model.spec().classes().len();
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
    pub fn logits_apart(&self, x: &Array4<f64>, quiet: bool) -> Result<LogitsApart, CliError> {
        let peaks = self
            .range
            .peaks(x.view())
            .map_err(|e| CliError::Refused(e.to_string()))?;
        let images = peaks.len();
        let (together, apart): (Vec<usize>, Vec<usize>) = (0..images).partition(|&i| self.range.holds(peaks[i]));
        let calls = std::iter::once(together)
            .filter(|call| !call.is_empty())
            .chain(apart.iter().map(|&i| vec![i]));
        let classes = self.planned.model.spec().classes().len();
        let mut logits = Array2::zeros((images, classes));
        let mut seconds = vec![StageSeconds::default(); images];
        for call in calls {
            let (got, stages) = self.logits(&x.select(Axis(0), &call), quiet)?;
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

/// Runs the plan on each set's ciphertexts (`plan.input().cts()` per set of
/// `plan.batch()` images) on `backend`, `lockstep` sets at a time, rounded
/// up to whole groups of merged sets ([`Plan::whole_groups`], so that
/// output set `j` holds input sets `j*M .. (j+1)*M` as [`decrypt_batches`]
/// reads them); returns each set's logit ciphertexts, in order, and each
/// set's seconds (its group's time shared equally).
fn evaluate<B: EvalBackend>(
    backend: &B,
    params: &Params,
    plan: &Plan,
    inputs: &[Ciphertext],
    lockstep: usize,
    quiet: bool,
) -> Result<(Vec<Ciphertext>, Vec<f64>), CliError>
where
    CliError: From<B::Error>,
{
    let per_set = plan.input().cts();
    let sets = inputs.len() / per_set;
    let mut out = Vec::with_capacity(sets * plan.output().cts());
    let mut seconds = Vec::with_capacity(sets);
    for group in inputs.chunks(per_set * plan.whole_groups(lockstep)) {
        let start = Instant::now();
        let uploaded = group
            .chunks(per_set)
            .map(|set| set.iter().map(|c| backend.upload(c)).collect::<Result<Vec<_>, _>>())
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&[B::Ct]> = uploaded.iter().map(Vec::as_slice).collect();
        for logits in plan.execute_sets(backend, params, &refs)? {
            for c in &logits {
                out.push(backend.download(c)?);
            }
        }
        backend.sync()?;
        let elapsed = start.elapsed().as_secs_f64();
        seconds.extend(std::iter::repeat_n(elapsed / refs.len() as f64, refs.len()));
        if !quiet {
            eprintln!(
                "sets {}..={} of {sets}: {elapsed:.2} s on the {}",
                seconds.len() + 1 - refs.len(),
                seconds.len(),
                backend.name()
            );
        }
    }
    Ok((out, seconds))
}

/// [`evaluate`] on the chosen backend. On a GPU the evaluator (with `keys`
/// resident) is taken from `gpu`, or made and left there on the first call:
/// a caller that evaluates again passes the same cell and uploads the keys
/// once; a one-shot caller passes an empty one.
pub fn evaluate_on(
    chosen: &Chosen,
    keys: &Arc<PublicKeySet>,
    gpu: &OnceLock<GpuEvaluator>,
    plan: &Plan,
    inputs: &[Ciphertext],
    lockstep: usize,
    quiet: bool,
) -> Result<(Vec<Ciphertext>, Vec<f64>), CliError> {
    let params = keys.params();
    match chosen {
        Chosen::Cpu => evaluate(&Evaluator::new(keys.clone()), params, plan, inputs, lockstep, quiet),
        Chosen::Gpu(ctx) => {
            let evaluator = match gpu.get() {
                Some(evaluator) => evaluator,
                None => {
                    let made = GpuEvaluator::new(ctx, keys)?;
                    gpu.get_or_init(|| made)
                }
            };
            evaluate(evaluator, params, plan, inputs, lockstep, quiet)
        }
    }
}

/// The key directory for `model_file` under `planned`: one per model file
/// content, spec and preset, under the cache directory.
fn key_cache_dir(model_file: &Path, planned: &Planned) -> Result<PathBuf, CliError> {
    let bytes = crate::bounded::read_regular(model_file, crate::nn::weights::MAX_WEIGHTS_BYTES).map_err(|source| {
        CliError::Io {
            path: model_file.display().to_string(),
            source,
        }
    })?;
    let mut h = blake3::Hasher::new();
    h.update(&bytes);
    h.update(planned.model.spec().to_string().as_bytes());
    h.update(&planned.params.fingerprint());
    let tag = crate::ckks::params::hex(&h.finalize().as_bytes()[..12]);
    let root = crate::cache::cache_dir()
        .ok_or_else(|| CliError::Usage("no cache directory: set LATENT_HE_CACHE_DIR or HOME".into()))?;
    Ok(root.join("keys").join(tag))
}

/// Keys for `planned` from `dir`, generated (and saved there) when absent;
/// returns them with the seconds key generation took (`None` when loaded).
fn cached_keys(
    dir: &Path,
    planned: &Planned,
    memory: KeyMemory,
) -> Result<(SecretKey, Arc<PublicKeySet>, Option<f64>), CliError> {
    let (secret, public) = (dir.join(SECRET_KEY_FILE), dir.join(PUBLIC_KEY_FILE));
    let binding = ModelBinding::new(&planned.model, &planned.params, &planned.plan);
    if secret.exists() && public.exists() && ModelBinding::read(dir)?.as_ref() == Some(&binding) {
        let sk = load_secret_key(&secret)?;
        let keys = load_public_keys_as(&public, memory)?;
        if keys.id() == sk.id() && keys.levels() == planned.plan.key_levels() {
            return Ok((sk, Arc::new(keys), None));
        }
    }
    let (sk, keys, seconds) = generate_keys(planned, memory);
    std::fs::create_dir_all(dir).map_err(|source| CliError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    save_secret_key(&secret, &sk)?;
    save_public_keys(&public, &keys)?;
    binding.write(dir)?;
    Ok((sk, keys, Some(seconds)))
}

/// A secret key and the public keys `planned` needs, held as `memory`
/// says, with the seconds taken.
fn generate_keys(planned: &Planned, memory: KeyMemory) -> (SecretKey, Arc<PublicKeySet>, f64) {
    let start = Instant::now();
    let sk = SecretKey::generate(&planned.params);
    let keys = PublicKeySet::generate_at(&sk, &planned.plan.key_levels(), memory);
    (sk, Arc::new(keys), start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{random_folded_model, Arch, LatentShape, ModelSpec};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    /// A lockstep that would split a group of merged sets is rounded up to
    /// whole groups: three sets one at a time give the ciphertexts of the
    /// three together, and they decrypt to the f64 forward pass.
    #[test]
    fn lockstep_is_rounded_up_to_whole_merged_groups() {
        let params = Params::preset("insecure-n12-deep").unwrap();
        let latent = LatentShape::new(2, 4, 4).unwrap();
        let spec = ModelSpec::with_class_count(Arch::ResNet20, false, 5, latent).unwrap();
        let model = random_folded_model(&spec, rand::random()).unwrap();
        let plan = Plan::for_params(&model, &params, 1).unwrap();
        assert_eq!(plan.sets_per_output(), 16);
        let sk = SecretKey::generate(&params);
        let keys = Arc::new(PublicKeySet::generate_at(&sk, &plan.key_levels(), KeyMemory::Expanded));
        let mut rng = ChaCha20Rng::from_entropy();
        let x: Vec<f64> = (0..3 * latent.len()).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let inputs = encrypt_batches(&keys, &params, &plan.input(), &x, plan.start_level()).unwrap();
        let ev = Evaluator::new(keys.clone());
        let (apart, seconds) = evaluate(&ev, &params, &plan, &inputs, 1, true).unwrap();
        let (together, _) = evaluate(&ev, &params, &plan, &inputs, 3, true).unwrap();
        assert_eq!(seconds.len(), 3);
        assert_eq!(apart, together, "one group of three sets, whatever the lockstep asked");
        let got = decrypt_batches(&sk, &plan.output(), &apart, 3 * 5, DecryptionNoise::default()).unwrap();
        let [c, h, w] = latent.dims();
        let want = model
            .forward(Array4::from_shape_vec((3, c, h, w), x).unwrap().view())
            .unwrap();
        for (g, w) in got.iter().zip(want.iter()) {
            assert!((g - w).abs() < 1e-3, "logit {g} against {w}");
        }
    }
}
