//! The server's half: a model and its plan under the client's parameters,
//! incoming ciphertexts and keys checked against them, the plan evaluated
//! on the chosen backend. The server holds no secret key.

use super::binding::ModelBinding;
use super::device::Chosen;
use super::memory::KeyMemoryChoice;
use super::observer::{Event, Observer};
use super::PipelineError;
use crate::ckks::gpu_eval::{GpuEvaluator, GpuPlaintext};
use crate::ckks::serialize::{
    ciphertexts_from_bytes, ciphertexts_to_bytes, load_public_keys_as, public_keys_params, CiphertextFile,
};
use crate::ckks::{Ciphertext, EvalBackend, Evaluator, Params, PublicKeySet};
use crate::he_nn::{Plan, WeightStore, DEFAULT_GPU_WEIGHT_BYTES, HEADROOM_LEVELS};
use crate::nn::Model;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// A folded model planned under the parameters of a client's keys.
///
/// Invariant: `plan` is `model`'s plan under `params` for `plan.batch()`
/// images per set; `gpu_weights` holds plaintexts of `plan` under `params`.
pub struct Server {
    model: Model<f64>,
    params: Arc<Params>,
    plan: Plan,
    fingerprint: Option<String>,
    gpu_weights: WeightStore<GpuPlaintext>,
}

impl Server {
    /// Plans the folded `model` under `params` (those of the client's
    /// keys) for `batch` images per set. `fingerprint` is the model's
    /// ([`super::fingerprint::model_fingerprint`]); keys whose binding records
    /// another are refused ([`Self::check_binding`]). On a GPU, up to
    /// `weight_budget` bytes of weight plaintexts stay on the device for
    /// later evaluations ([`WeightStore`]).
    ///
    /// # Errors
    /// A model that does not fit the parameters (levels, slots), with the
    /// planner's reason.
    pub fn new(
        model: Model<f64>,
        params: Arc<Params>,
        batch: usize,
        fingerprint: Option<String>,
        weight_budget: u64,
    ) -> Result<Self, crate::he_nn::PlanError> {
        let plan = Plan::for_params(&model, &params, batch)?;
        let gpu_weights = WeightStore::new(&params, weight_budget);
        Ok(Server {
            model,
            params,
            plan,
            fingerprint,
            gpu_weights,
        })
    }

    /// The weight plaintexts a GPU evaluation of [`Self::plan`] keeps.
    pub fn gpu_weights(&self) -> &WeightStore<GpuPlaintext> {
        &self.gpu_weights
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
        let (mut logits, seconds) = evaluate_on(
            chosen,
            keys,
            (gpu, &self.gpu_weights),
            &self.plan,
            &[&input.ciphertexts],
            lockstep,
            observer,
        )?;
        let logits = logits.remove(0);
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
        let server = Server::new(model, params.clone(), batch, fingerprint, DEFAULT_GPU_WEIGHT_BYTES)
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

/// Runs the plan on each caller's ciphertexts (`callers[c]`:
/// `plan.input().cts()` per set of `plan.batch()` images) on `backend`,
/// with the weight plaintexts `weights` keeps. Each caller's sets are cut
/// into pieces of whole groups of merged sets ([`Plan::whole_groups`] of
/// `lockstep`, so that output set `j` holds the caller's input sets
/// `j*M .. (j+1)*M` as [`decrypt_batches`] reads them); pieces run together,
/// in order, up to `lockstep` sets (or one piece) at a time, a merge never
/// mixing two callers' sets ([`Plan::execute_groups`]). Returns each
/// caller's logit ciphertexts, in order, and each set's seconds (its run's
/// time shared equally), callers in order.
fn evaluate<B: EvalBackend>(
    backend: &B,
    params: &Params,
    weights: &WeightStore<B::Pt>,
    plan: &Plan,
    callers: &[&[Ciphertext]],
    lockstep: usize,
    observer: &dyn Observer,
) -> Result<(Vec<Vec<Ciphertext>>, Vec<f64>), PipelineError>
where
    PipelineError: From<B::Error>,
{
    let per_set = plan.input().cts();
    let whole = plan.whole_groups(lockstep);
    let pieces: Vec<(usize, &[Ciphertext])> = callers
        .iter()
        .enumerate()
        .flat_map(|(c, cts)| cts.chunks(per_set * whole).map(move |piece| (c, piece)))
        .collect();
    let sets = pieces.iter().map(|(_, p)| p.len() / per_set).sum();
    let mut out: Vec<Vec<Ciphertext>> = vec![Vec::new(); callers.len()];
    let mut seconds = Vec::with_capacity(sets);
    let mut rest = pieces.as_slice();
    while !rest.is_empty() {
        // The pieces of this run: the first, then as many as fit `lockstep`.
        let mut taken = rest[0].1.len() / per_set;
        let count = 1 + rest[1..]
            .iter()
            .take_while(|(_, p)| {
                taken += p.len() / per_set;
                taken <= lockstep
            })
            .count();
        let (run, after) = rest.split_at(count);
        rest = after;
        let start = Instant::now();
        let uploaded = run
            .iter()
            .map(|(_, piece)| {
                piece
                    .chunks(per_set)
                    .map(|set| set.iter().map(|c| backend.upload(c)).collect::<Result<Vec<_>, _>>())
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sets_of: Vec<Vec<&[B::Ct]>> = uploaded
            .iter()
            .map(|piece| piece.iter().map(Vec::as_slice).collect())
            .collect();
        let groups: Vec<&[&[B::Ct]]> = sets_of.iter().map(Vec::as_slice).collect();
        for ((caller, _), logits) in run.iter().zip(plan.execute_groups(backend, params, &groups, weights)?) {
            for c in logits.iter().flatten() {
                out[*caller].push(backend.download(c)?);
            }
        }
        backend.sync()?;
        let elapsed = start.elapsed().as_secs_f64();
        let in_run: usize = run.iter().map(|(_, p)| p.len() / per_set).sum();
        seconds.extend(std::iter::repeat_n(elapsed / in_run as f64, in_run));
        observer.event(Event::SetsEvaluated {
            first: seconds.len() + 1 - in_run,
            last: seconds.len(),
            sets,
            seconds: elapsed,
            backend: backend.name(),
        });
    }
    Ok((out, seconds))
}

/// [`evaluate`] on the chosen backend (one caller, or several evaluated
/// together). On a GPU the evaluator (with `keys`
/// resident) is taken from the first of `gpu`, or made and left there on
/// the first call, and the weight plaintexts are kept in its second (made
/// for `plan` under `keys`' parameters): a caller that evaluates again
/// passes the same cell and store and uploads the keys and encodes the
/// weights once; a one-shot caller passes an empty cell. The CPU encodes
/// the weights for each group of sets.
///
/// # Errors
/// Evaluation failures; a GPU that cannot hold the keys.
pub fn evaluate_on(
    chosen: &Chosen,
    keys: &Arc<PublicKeySet>,
    (gpu, weights): (&OnceLock<GpuEvaluator>, &WeightStore<GpuPlaintext>),
    plan: &Plan,
    callers: &[&[Ciphertext]],
    lockstep: usize,
    observer: &dyn Observer,
) -> Result<(Vec<Vec<Ciphertext>>, Vec<f64>), PipelineError> {
    let params = keys.params();
    match chosen {
        Chosen::Cpu => evaluate(
            &Evaluator::new(keys.clone()),
            params,
            &WeightStore::disabled(params),
            plan,
            callers,
            lockstep,
            observer,
        ),
        Chosen::Gpu(ctx) => {
            let evaluator = match gpu.get() {
                Some(evaluator) => evaluator,
                None => {
                    let made = GpuEvaluator::new(ctx, keys)?;
                    gpu.get_or_init(|| made)
                }
            };
            evaluate(evaluator, params, weights, plan, callers, lockstep, observer)
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

    /// A random ResNet20 on a 2x4x4 latent at `insecure-n12-deep`, its
    /// keys and CPU evaluator, and three random latents encrypted one set
    /// each (the seed printed).
    struct Setup {
        params: Arc<Params>,
        latent: LatentShape,
        model: Model<f64>,
        plan: Plan,
        sk: SecretKey,
        x: Vec<f64>,
        inputs: Vec<Ciphertext>,
        ev: Evaluator,
    }

    impl Setup {
        fn three_sets() -> Self {
            let seed = crate::test_seed::seed();
            let params = Params::preset("insecure-n12-deep").unwrap();
            let latent = LatentShape::new(2, 4, 4).unwrap();
            let spec = ModelSpec::with_class_count(Arch::ResNet20, false, 5, latent).unwrap();
            let model = random_folded_model(&spec, seed).unwrap();
            let plan = Plan::for_params(&model, &params, 1).unwrap();
            let sk = SecretKey::generate(&params);
            let keys = Arc::new(PublicKeySet::generate_at(&sk, &plan.key_levels(), KeyMemory::Expanded));
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let x: Vec<f64> = (0..3 * latent.len()).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let inputs = encrypt_batches(&keys, &params, &plan.input(), &x, plan.start_level()).unwrap();
            let ev = Evaluator::new(keys);
            Setup {
                params,
                latent,
                model,
                plan,
                sk,
                x,
                inputs,
                ev,
            }
        }
    }

    /// A lockstep that would split a group of merged sets is rounded up to
    /// whole groups: three sets one at a time give the ciphertexts of the
    /// three together (the second time with the weight plaintexts kept
    /// from the first, in a store on the CPU), and they decrypt to the f64
    /// forward pass.
    #[test]
    fn lockstep_is_rounded_up_to_whole_merged_groups() {
        let Setup {
            params,
            latent,
            model,
            plan,
            sk,
            x,
            inputs,
            ev,
        } = Setup::three_sets();
        assert_eq!(plan.sets_per_output(), 16);
        let weights = WeightStore::new(&params, u64::MAX);
        let (apart, seconds) = evaluate(&ev, &params, &weights, &plan, &[&inputs], 1, &Silent).unwrap();
        assert!(weights.bytes() > 0);
        let (together, _) = evaluate(&ev, &params, &weights, &plan, &[&inputs], 3, &Silent).unwrap();
        assert_eq!(seconds.len(), 3);
        assert_eq!(apart, together, "one group of three sets, whatever the lockstep asked");
        let apart = apart.concat();
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

    /// Three callers of one set each, evaluated together in one run, get
    /// the ciphertexts each gets alone: merges keep callers apart.
    #[test]
    fn callers_evaluated_together_get_their_own_output_sets() {
        let Setup {
            params,
            plan,
            inputs,
            ev,
            ..
        } = Setup::three_sets();
        let callers: Vec<&[Ciphertext]> = inputs.chunks(plan.input().cts()).collect();
        let weights = WeightStore::new(&params, u64::MAX);
        let (together, seconds) = evaluate(&ev, &params, &weights, &plan, &callers, 3, &Silent).unwrap();
        assert_eq!((together.len(), seconds.len()), (3, 3));
        for (caller, got) in callers.iter().zip(&together) {
            let (alone, _) = evaluate(&ev, &params, &weights, &plan, &[caller], 1, &Silent).unwrap();
            assert_eq!(got.len(), plan.output().cts());
            assert!(*got == alone[0], "a caller's output differs from its own evaluation");
        }
    }
}
