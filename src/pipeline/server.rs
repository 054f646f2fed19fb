//! The server's half: a model and its plan under the client's parameters,
//! incoming ciphertexts and keys checked against them, the plan evaluated
//! on the chosen backend. The server holds no secret key.

use super::binding::ModelBinding;
use super::device::Chosen;
use super::memory::KeyMemoryChoice;
use super::observer::{Event, Observer};
use super::PipelineError;
use crate::ckks::gpu_eval::GpuEvaluator;
use crate::ckks::serialize::{
    ciphertexts_from_bytes, ciphertexts_to_bytes, load_public_keys_as, public_keys_params, CiphertextFile,
};
use crate::ckks::{Ciphertext, EvalBackend, Evaluator, Params, PublicKeySet};
use crate::he_nn::{Plan, HEADROOM_LEVELS};
use crate::nn::Model;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// A folded model planned under the parameters of a client's keys.
///
/// Invariant: `plan` is `model`'s plan under `params` for `plan.batch()`
/// images per set.
pub struct Server {
    model: Model<f64>,
    params: Arc<Params>,
    plan: Plan,
    fingerprint: Option<String>,
}

impl Server {
    /// Plans the folded `model` under `params` (those of the client's
    /// keys) for `batch` images per set. `fingerprint` is the model's
    /// ([`super::fingerprint::model_fingerprint`]); keys whose binding records
    /// another are refused ([`Self::check_binding`]).
    ///
    /// # Errors
    /// A model that does not fit the parameters (levels, slots), with the
    /// planner's reason.
    pub fn new(
        model: Model<f64>,
        params: Arc<Params>,
        batch: usize,
        fingerprint: Option<String>,
    ) -> Result<Self, crate::he_nn::PlanError> {
        let plan = Plan::for_params(&model, &params, batch)?;
        Ok(Server {
            model,
            params,
            plan,
            fingerprint,
        })
    }

    /// The model.
    pub fn model(&self) -> &Model<f64> {
        &self.model
    }

    /// The parameters.
    pub fn params(&self) -> &Arc<Params> {
        &self.params
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The images an incoming ciphertext file (read from `path`, which
    /// errors name) holds, after checking that it is what the plan reads:
    /// `B x C x H x W` latents of the model's shape, in as many ciphertexts
    /// as `B` images take in sets of the plan's batch, every one at or
    /// above the plan's start level.
    ///
    /// # Errors
    /// [`PipelineError::Input`] saying what the file holds and what the
    /// model reads.
    pub fn check_input(&self, file: &CiphertextFile, path: &Path) -> Result<usize, PipelineError> {
        let plan = &self.plan;
        let [c, h, w] = self.model.spec().latent().dims();
        let batch = plan.batch();
        let images = match file.shape.as_slice() {
            [n, cc, hh, ww]
                if [*cc, *hh, *ww] == [c, h, w] && file.ciphertexts.len() == n.div_ceil(batch) * plan.input().cts() =>
            {
                *n
            }
            _ => {
                return Err(PipelineError::input(
                    path,
                    format!(
                        "holds {} ciphertexts of shape {:?}; the model reads Bx{c}x{h}x{w} latents, {batch} image(s) in {} \
                         ciphertexts per set (encrypt with keys from `keygen --model --batch {batch}`)",
                        file.ciphertexts.len(),
                        file.shape,
                        plan.input().cts(),
                    ),
                ))
            }
        };
        let needed = plan.start_level();
        if let Some(low) = file.ciphertexts.iter().find(|ct| ct.level() < needed) {
            return Err(PipelineError::input(
                path,
                format!(
                    "ciphertexts at level {}; the model needs {} levels plus {HEADROOM_LEVELS} of headroom",
                    low.level(),
                    plan.levels()
                ),
            ));
        }
        Ok(images)
    }

    /// Checks the binding the client's keys were made with (read beside
    /// `public_key`, which errors name): the same model, batch and input
    /// layout, and, where both record one, the same model fingerprint.
    ///
    /// # Errors
    /// [`PipelineError::Input`] naming what the keys were made for.
    pub fn check_binding(&self, binding: &ModelBinding, public_key: &Path) -> Result<(), PipelineError> {
        let batch = self.plan.batch();
        if binding.batch != batch
            || binding.input != self.plan.input()
            || binding.model != self.model.spec().to_string()
        {
            return Err(PipelineError::input(
                public_key,
                format!(
                    "the keys were made for {} with --batch {} (its model.json); this is {} with --batch {batch}",
                    binding.model,
                    binding.batch,
                    self.model.spec()
                ),
            ));
        }
        if let (Some(theirs), Some(ours)) = (&binding.fingerprint, &self.fingerprint) {
            if theirs != ours {
                return Err(PipelineError::input(
                    public_key,
                    format!(
                        "the keys were made for the model with fingerprint {theirs} (its model.json); \
                         this model's is {ours}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks that `keys` (read from `path`) hold every key the plan uses.
    ///
    /// # Errors
    /// [`PipelineError::Input`] naming the first key missing.
    pub fn check_keys(&self, keys: &PublicKeySet, path: &Path) -> Result<(), PipelineError> {
        match keys.levels().first_missing(&self.plan.key_levels()) {
            None => Ok(()),
            Some(missing) => Err(PipelineError::input(
                path,
                format!(
                    "lacks {missing}, which this model's plan with --batch {} needs (keys for another model or batch?)",
                    self.plan.batch()
                ),
            )),
        }
    }

    /// Evaluates the checked `input` ([`Self::check_input`]: `images`
    /// images) with `keys` on `chosen`, `lockstep` sets at a time
    /// ([`evaluate_on`]); returns the encrypted logits (`images x classes`)
    /// and each set's seconds.
    ///
    /// # Errors
    /// Evaluation failures.
    #[allow(clippy::too_many_arguments)]
    pub fn evaluate(
        &self,
        chosen: &Chosen,
        keys: &Arc<PublicKeySet>,
        gpu: &OnceLock<GpuEvaluator>,
        input: &CiphertextFile,
        images: usize,
        lockstep: usize,
        observer: &dyn Observer,
    ) -> Result<(CiphertextFile, Vec<f64>), PipelineError> {
        let (logits, seconds) = evaluate_on(chosen, keys, gpu, &self.plan, &input.ciphertexts, lockstep, observer)?;
        let classes = self.model.spec().classes().len();
        let out = CiphertextFile {
            shape: vec![images, classes],
            values: images * classes,
            ciphertexts: logits,
        };
        Ok((out, seconds))
    }
}

/// The model binding beside the public key file `public_key` (its folder's
/// `model.json`), checked against `params` (the keys'); `None` when there
/// is none.
///
/// # Errors
/// An unreadable, malformed or inconsistent binding.
pub fn binding_beside(public_key: &Path, params: &Params) -> Result<Option<ModelBinding>, PipelineError> {
    match public_key.parent() {
        Some(dir) => ModelBinding::read_for(dir, params),
        None => Ok(None),
    }
}

/// Where errors about ciphertext bytes passed in memory point.
const IN_MEMORY: &str = "(ciphertexts in memory)";

/// A [`Server`] holding one client's public keys on a backend: it answers
/// that client's ciphertext files, in memory. It never reads a secret key.
///
/// Invariants: `keys` hold every key the plan uses; where the key folder
/// has a binding, it names this model, batch and layout (and fingerprint,
/// where both record one).
pub struct KeyedServer {
    server: Server,
    keys: Arc<PublicKeySet>,
    chosen: Chosen,
    /// The GPU evaluator with the keys resident, made at the first call.
    gpu: OnceLock<GpuEvaluator>,
}

impl KeyedServer {
    /// Plans the folded `model` (whose weights have `fingerprint`) under
    /// the parameters of the public key file `public_key`, for the batch
    /// its folder's binding records (none: one image per set), checks the
    /// binding and the keys against the plan, and loads the keys (held as
    /// [`KeyMemoryChoice::Auto`] decides) for `chosen`.
    ///
    /// # Errors
    /// An unreadable or damaged key file; keys made for another model,
    /// batch or fingerprint; keys lacking one the plan needs; a model that
    /// does not fit the keys' parameters.
    pub fn open(
        model: Model<f64>,
        fingerprint: Option<String>,
        public_key: &Path,
        chosen: Chosen,
        observer: &dyn Observer,
    ) -> Result<Self, PipelineError> {
        let params = public_keys_params(public_key)?;
        let binding = binding_beside(public_key, &params)?;
        let batch = binding.as_ref().map_or(1, |b| b.batch);
        let server = Server::new(model, params.clone(), batch, fingerprint)
            .map_err(|e| PipelineError::input(public_key, e.to_string()))?;
        if let Some(binding) = &binding {
            server.check_binding(binding, public_key)?;
        }
        let memory = KeyMemoryChoice::Auto.resolve(&params, server.plan(), observer);
        let keys = load_public_keys_as(public_key, memory)?;
        server.check_keys(&keys, public_key)?;
        Ok(KeyedServer {
            server,
            keys: Arc::new(keys),
            chosen,
            gpu: OnceLock::new(),
        })
    }

    /// The server: model, parameters and plan.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The backend evaluating: `("cpu" | "gpu", adapter name)`.
    pub fn backend(&self) -> (String, Option<String>) {
        self.chosen.describe()
    }

    /// The encrypted logits, as ciphertext file bytes, of the latents in
    /// `bytes` (a ciphertext file from the client whose keys this server
    /// holds), evaluated one set at a time; each set evaluated is told to
    /// `observer`.
    ///
    /// # Errors
    /// Bytes that are not a whole ciphertext file of the keys' parameters;
    /// a file that is not what the plan reads ([`Server::check_input`]);
    /// ciphertexts of another key; evaluation failures.
    pub fn infer(&self, bytes: &[u8], observer: &dyn Observer) -> Result<Vec<u8>, PipelineError> {
        let path = Path::new(IN_MEMORY);
        let params = self.server.params();
        let file = ciphertexts_from_bytes(bytes, params).map_err(|e| PipelineError::input(path, e.to_string()))?;
        let images = self.server.check_input(&file, path)?;
        let (out, _) = self
            .server
            .evaluate(&self.chosen, &self.keys, &self.gpu, &file, images, 1, observer)?;
        Ok(ciphertexts_to_bytes(&out, params))
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
    observer: &dyn Observer,
) -> Result<(Vec<Ciphertext>, Vec<f64>), PipelineError>
where
    PipelineError: From<B::Error>,
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
        observer.event(Event::SetsEvaluated {
            first: seconds.len() + 1 - refs.len(),
            last: seconds.len(),
            sets,
            seconds: elapsed,
            backend: backend.name(),
        });
    }
    Ok((out, seconds))
}

/// [`evaluate`] on the chosen backend. On a GPU the evaluator (with `keys`
/// resident) is taken from `gpu`, or made and left there on the first call:
/// a caller that evaluates again passes the same cell and uploads the keys
/// once; a one-shot caller passes an empty one.
///
/// # Errors
/// Evaluation failures; a GPU that cannot hold the keys.
pub fn evaluate_on(
    chosen: &Chosen,
    keys: &Arc<PublicKeySet>,
    gpu: &OnceLock<GpuEvaluator>,
    plan: &Plan,
    inputs: &[Ciphertext],
    lockstep: usize,
    observer: &dyn Observer,
) -> Result<(Vec<Ciphertext>, Vec<f64>), PipelineError> {
    let params = keys.params();
    match chosen {
        Chosen::Cpu => evaluate(&Evaluator::new(keys.clone()), params, plan, inputs, lockstep, observer),
        Chosen::Gpu(ctx) => {
            let evaluator = match gpu.get() {
                Some(evaluator) => evaluator,
                None => {
                    let made = GpuEvaluator::new(ctx, keys)?;
                    gpu.get_or_init(|| made)
                }
            };
            evaluate(evaluator, params, plan, inputs, lockstep, observer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ckks::{KeyMemory, SecretKey};
    use crate::he_nn::{decrypt_batches, encrypt_batches};
    use crate::nn::{random_folded_model, Arch, LatentShape, ModelSpec};
    use crate::pipeline::Silent;
    use ndarray::Array4;
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
        let (apart, seconds) = evaluate(&ev, &params, &plan, &inputs, 1, &Silent).unwrap();
        let (together, _) = evaluate(&ev, &params, &plan, &inputs, 3, &Silent).unwrap();
        assert_eq!(seconds.len(), 3);
        assert_eq!(apart, together, "one group of three sets, whatever the lockstep asked");
        let got = decrypt_batches(
            &sk,
            &plan.output(),
            &apart,
            3 * 5,
            crate::ckks::DecryptionNoise::default(),
        )
        .unwrap();
        let [c, h, w] = latent.dims();
        let want = model
            .forward(Array4::from_shape_vec((3, c, h, w), x).unwrap().view())
            .unwrap();
        for (g, w) in got.iter().zip(want.iter()) {
            assert!((g - w).abs() < 1e-3, "logit {g} against {w}");
        }
    }
}
