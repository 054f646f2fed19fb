//! The models a server holds, and the server's half of the protocol on
//! them: checking a public key set or a ciphertext file against a model's
//! plan, and evaluating.

use super::store::KeyRecord;
use super::ServiceError;
use crate::ckks::gpu_eval::GpuEvaluator;
use crate::ckks::serialize::{load_ciphertexts, load_public_keys_as, peek_header, public_keys_params, CiphertextFile};
use crate::ckks::{Ciphertext, KeyMemory, PublicKeySet};
use crate::he_nn::{plan_for, DEFAULT_GPU_WEIGHT_BYTES, MAX_BATCH};
use crate::nn::{fold, LoadOptions, Model};
use crate::pipeline::memory::{EvalMemory, KeyMemoryChoice};
use crate::pipeline::server::evaluate_on;
use crate::pipeline::{load_model, model_fingerprint, Chosen, ClientBundle, Event, Observer, Planned, Server, Silent};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// One served model: folded once, planned per batch and preset on first use.
struct ServedModel {
    model: Model<f64>,
    /// BLAKE3 of the weight file ([`model_fingerprint`]).
    fingerprint: String,
    /// What a client needs by default: one image per set, the smallest
    /// 128-bit preset that fits.
    bundle: ClientBundle,
    plans: Mutex<HashMap<(usize, String), Arc<Server>>>,
}

/// Public keys loaded for evaluation, with the GPU evaluator made for them.
struct LoadedKeys {
    id: String,
    keys: Arc<PublicKeySet>,
    gpu: Arc<OnceLock<GpuEvaluator>>,
}

/// The served models and the backend that evaluates them.
///
/// Invariant: every model loaded, folded and planned under its default
/// preset for one image per set when the engine was opened.
pub struct Engine {
    models: BTreeMap<String, ServedModel>,
    chosen: Chosen,
    lockstep: u16,
    allow_insecure: bool,
    loaded: Mutex<Option<LoadedKeys>>,
}

/// What a checked ciphertext upload holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputInfo {
    /// Images in the file.
    pub images: usize,
    /// Sets of ciphertexts (images divided by the batch, rounded up).
    pub sets: usize,
}

impl Engine {
    /// Loads every `*.safetensors` in `dir` (named by its file stem) and
    /// plans it for one image per set under the smallest 128-bit preset
    /// that fits; evaluation runs on `chosen`, up to `lockstep` sets at a
    /// time. Keys under insecure presets are refused unless
    /// `allow_insecure`.
    ///
    /// # Errors
    /// A folder with no model, a model that cannot be loaded or planned.
    pub fn open(dir: &Path, chosen: Chosen, lockstep: u16, allow_insecure: bool) -> Result<Self, ServiceError> {
        let mut models = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(ServiceError::io(dir))? {
            let path = entry.map_err(ServiceError::io(dir))?.path();
            if path.extension().is_none_or(|e| e != "safetensors") {
                continue;
            }
            let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_string) else {
                continue;
            };
            let invalid = |reason: String| ServiceError::Invalid {
                path: path.display().to_string(),
                reason,
            };
            let model = fold(&load_model(&path, &LoadOptions::default()).map_err(|e| invalid(e.to_string()))?);
            let fingerprint = model_fingerprint(&path).map_err(|e| invalid(e.to_string()))?;
            let (params, plan) = plan_for(&model, None, 1).map_err(|e| invalid(e.to_string()))?;
            let planned = Planned {
                model: model.clone(),
                params,
                plan,
            };
            let bundle = ClientBundle::of(&planned, fingerprint.clone());
            models.insert(
                name,
                ServedModel {
                    model,
                    fingerprint,
                    bundle,
                    plans: Mutex::new(HashMap::new()),
                },
            );
        }
        if models.is_empty() {
            return Err(ServiceError::Config(format!(
                "{}: no .safetensors model to serve",
                dir.display()
            )));
        }
        Ok(Self {
            models,
            chosen,
            lockstep,
            allow_insecure,
            loaded: Mutex::new(None),
        })
    }

    /// The served models' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }

    /// `("cpu" | "gpu", adapter)`.
    pub fn backend(&self) -> (String, Option<String>) {
        self.chosen.describe()
    }

    fn served(&self, name: &str) -> Result<&ServedModel, String> {
        self.models
            .get(name)
            .ok_or_else(|| format!("no model named {name:?} is served"))
    }

    /// The client bundle of `name` (one image per set, the smallest
    /// 128-bit preset that fits): what `keygen --client` makes keys from.
    ///
    /// # Errors
    /// An unknown model.
    pub fn bundle(&self, name: &str) -> Result<&ClientBundle, String> {
        Ok(&self.served(name)?.bundle)
    }

    /// `name` planned under `preset` for `batch` images per set (planned
    /// once, then kept).
    ///
    /// # Errors
    /// An unknown model, a batch out of range, an insecure preset the
    /// engine refuses, a preset the model does not fit.
    pub fn planned(&self, name: &str, batch: usize, preset: &str) -> Result<Arc<Server>, String> {
        let served = self.served(name)?;
        if !(1..=MAX_BATCH).contains(&batch) {
            return Err(format!("batch {batch} is outside 1..={MAX_BATCH}"));
        }
        if preset.starts_with("insecure") && !self.allow_insecure {
            return Err(format!(
                "{preset} is not a 128-bit parameter set; this server refuses it (serve --allow-insecure takes it)"
            ));
        }
        let mut plans = served.plans.lock().expect("the plan cache is not poisoned");
        if let Some(p) = plans.get(&(batch, preset.to_string())) {
            return Ok(p.clone());
        }
        let (params, plan) = plan_for(&served.model, Some(preset), batch).map_err(|e| e.to_string())?;
        drop(plan);
        let server = Arc::new(
            Server::new(
                served.model.clone(),
                params,
                batch,
                Some(served.fingerprint.clone()),
                DEFAULT_GPU_WEIGHT_BYTES,
            )
            .map_err(|e| e.to_string())?,
        );
        plans.insert((batch, preset.to_string()), server.clone());
        Ok(server)
    }

    fn key_plan(&self, key: &KeyRecord) -> Result<Arc<Server>, String> {
        self.planned(&key.model, key.batch, &key.preset)
    }

    /// Checks that the public key set at `path` serves `name`'s plan for
    /// `batch` under `preset`: a whole public key file (header, length,
    /// checksum) made under those parameters, with every key the plan
    /// needs, and (when the client says) made for this model's fingerprint.
    ///
    /// # Errors
    /// Why the keys cannot serve the model, in words.
    pub fn check_keys(
        &self,
        name: &str,
        batch: usize,
        preset: &str,
        fingerprint: Option<&str>,
        path: &Path,
    ) -> Result<(), String> {
        let served = self.served(name)?;
        if let Some(theirs) = fingerprint.filter(|f| *f != served.fingerprint) {
            return Err(format!(
                "the keys were made for the model with fingerprint {theirs}; {name} has {}",
                served.fingerprint
            ));
        }
        let server = self.planned(name, batch, preset)?;
        let params = public_keys_params(path).map_err(|e| e.innermost().to_string())?;
        if params.fingerprint() != server.params().fingerprint() {
            return Err(format!(
                "the keys are not made under {preset}, as the request says (their parameters: {})",
                params.name().unwrap_or("a literal set")
            ));
        }
        let keys = load_public_keys_as(path, KeyMemory::Compact).map_err(|e| e.innermost().to_string())?;
        server
            .check_keys(&keys, Path::new("the keys"))
            .map_err(|e| e.to_string())
    }

    /// Checks the ciphertext file at `path` against `key` (its file at
    /// `key_path`): made under the key's parameters, encrypted under it,
    /// what the key's model reads ([`Server::check_input`]).
    ///
    /// # Errors
    /// Why the file cannot be evaluated, in words.
    pub fn check_input(&self, key: &KeyRecord, key_path: &Path, path: &Path) -> Result<InputInfo, String> {
        let server = self.key_plan(key)?;
        let file = load_ciphertexts(path, server.params()).map_err(|e| e.innermost().to_string())?;
        let key_header = std::fs::read(key_path)
            .map_err(|e| e.to_string())
            .and_then(|b| peek_header(&b).map_err(|e| e.to_string()))?;
        if file.key_id() != Some(key_header.key_id) {
            return Err(format!("the ciphertexts were not encrypted under key {}", key.id));
        }
        let images = server
            .check_input(&file, Path::new("the ciphertexts"))
            .map_err(|e| e.to_string())?;
        if images == 0 {
            return Err("the ciphertexts hold no image".into());
        }
        Ok(InputInfo {
            images,
            sets: images.div_ceil(server.plan().batch()),
        })
    }

    /// Key switches the evaluation of `sets` sets of `key`'s model takes.
    pub fn key_switches(&self, key: &KeyRecord, sets: usize) -> usize {
        self.key_plan(key).map_or(0, |p| p.plan().key_switches_for(sets))
    }

    /// Evaluates the ciphertext files `inputs` (each checked by
    /// [`Self::check_input`] for `key`) together, and returns each file's
    /// encrypted logits as a ciphertext file. `progress` hears the sets
    /// done and the sets in all after each group.
    ///
    /// The files' sets run together in lockstep, but a merge never mixes
    /// two files' images in one output ciphertext: each file gets the
    /// ciphertexts it would alone.
    ///
    /// # Errors
    /// The keys or a file unreadable, the backend failing.
    pub fn evaluate(
        &self,
        key: &KeyRecord,
        key_path: &Path,
        inputs: &[PathBuf],
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Vec<CiphertextFile>, String> {
        let server = self.key_plan(key)?;
        let (params, plan) = (server.params(), server.plan());
        let files = inputs
            .iter()
            .map(|p| load_ciphertexts(p, params).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let per_set = plan.input().cts();
        let total: usize = files.iter().map(|f| f.ciphertexts.len() / per_set).sum();
        let memory = EvalMemory::resolve(
            KeyMemoryChoice::Auto,
            usize::from(self.lockstep),
            params,
            plan,
            total,
            &Silent,
        );
        let (keys, gpu) = self.keys(key, key_path, memory.keys)?;
        let callers: Vec<&[Ciphertext]> = files.iter().map(|f| f.ciphertexts.as_slice()).collect();
        progress(0, total);
        let (logits, _) = evaluate_on(
            &self.chosen,
            &keys,
            (&gpu, server.gpu_weights()),
            plan,
            &callers,
            memory.lockstep,
            &SetsDone(progress),
        )
        .map_err(|e| e.to_string())?;
        let classes = server.model().spec().classes().len();
        Ok(files
            .iter()
            .zip(logits)
            .map(|(file, ciphertexts)| {
                let images = file.shape[0];
                CiphertextFile {
                    shape: vec![images, classes],
                    values: images * classes,
                    ciphertexts,
                }
            })
            .collect())
    }

    /// `key`'s public keys held as `memory` says, loaded from `path` unless
    /// they are the ones loaded last; with their GPU evaluator's cell.
    fn keys(
        &self,
        key: &KeyRecord,
        path: &Path,
        memory: KeyMemory,
    ) -> Result<(Arc<PublicKeySet>, Arc<OnceLock<GpuEvaluator>>), String> {
        let mut loaded = self.loaded.lock().expect("the key cache is not poisoned");
        if let Some(l) = loaded.as_ref().filter(|l| l.id == key.id) {
            return Ok((l.keys.clone(), l.gpu.clone()));
        }
        // Drop the previous keys before loading the next: one set at a time.
        *loaded = None;
        let keys = Arc::new(load_public_keys_as(path, memory).map_err(|e| e.to_string())?);
        let gpu = Arc::new(OnceLock::new());
        *loaded = Some(LoadedKeys {
            id: key.id.clone(),
            keys: keys.clone(),
            gpu: gpu.clone(),
        });
        Ok((keys, gpu))
    }
}

/// An observer that tells `progress` the sets done and the sets in all
/// after each group of sets evaluated.
struct SetsDone<'a>(&'a (dyn Fn(usize, usize) + Sync));

impl Observer for SetsDone<'_> {
    fn event(&self, event: Event<'_>) {
        if let Event::SetsEvaluated { last, sets, .. } = event {
            (self.0)(last, sets);
        }
    }
}
