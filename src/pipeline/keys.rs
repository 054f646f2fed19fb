//! The key store: a key folder holds `secret.key` (the client's, owner-only
//! permissions), `public.key` (what the server gets) and, for keys made for
//! a model, `model.json` ([`ModelBinding`]). Keys that `run`, `score` and
//! `demo` make are cached in such folders under the cache directory, one
//! per model file, spec and preset.

use super::binding::ModelBinding;
use super::model::Planned;
use super::observer::{Event, Observer, Silent};
use super::PipelineError;
use crate::ckks::sealed::{load_secret_key_with, save_sealed_secret_key, Passphrase};
use crate::ckks::serialize::{load_public_keys_as, save_public_keys, save_secret_key};
use crate::ckks::{KeyLevels, KeyMemory, Params, PublicKeySet, SecretKey};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Secret key file name inside a key directory (owner-only permissions).
pub const SECRET_KEY_FILE: &str = "secret.key";
/// Public key set file name inside a key directory (what the server gets).
pub const PUBLIC_KEY_FILE: &str = "public.key";

/// A key folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDir {
    dir: PathBuf,
}

impl KeyDir {
    /// The key folder at `dir` (nothing is read yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        KeyDir { dir: dir.into() }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Where the secret key is.
    pub fn secret_path(&self) -> PathBuf {
        self.dir.join(SECRET_KEY_FILE)
    }

    /// Where the public key set is.
    pub fn public_path(&self) -> PathBuf {
        self.dir.join(PUBLIC_KEY_FILE)
    }

    /// The secret key, stored plain.
    ///
    /// # Errors
    /// A missing, damaged or foreign file; one sealed under a passphrase.
    pub fn secret_key(&self) -> Result<SecretKey, PipelineError> {
        self.secret_key_with(None)
    }

    /// The secret key, opened with `passphrase` when it is sealed
    /// (`keygen --passphrase-file`).
    ///
    /// # Errors
    /// A missing, damaged or foreign file; a sealed one without the right
    /// passphrase.
    pub fn secret_key_with(&self, passphrase: Option<&Passphrase>) -> Result<SecretKey, PipelineError> {
        Ok(load_secret_key_with(&self.secret_path(), passphrase)?)
    }

    /// The public key set, evaluation keys held as `memory` says.
    ///
    /// # Errors
    /// A missing, damaged or foreign file.
    pub fn public_keys(&self, memory: KeyMemory) -> Result<PublicKeySet, PipelineError> {
        Ok(load_public_keys_as(&self.public_path(), memory)?)
    }

    /// The folder's model binding checked against `params` (those of the
    /// keys beside it, [`ModelBinding::read_for`]); `None` when it has none.
    ///
    /// # Errors
    /// An unreadable, malformed or inconsistent binding.
    pub fn binding(&self, params: &Params) -> Result<Option<ModelBinding>, PipelineError> {
        ModelBinding::read_for(&self.dir, params)
    }

    /// Writes `sk` (sealed under `passphrase` when given), `keys` and
    /// `binding` (none: keys made without a model) into the folder,
    /// creating it. The old binding goes first: a folder never holds new
    /// keys beside the layout of old ones, even when writing stops half way.
    ///
    /// # Errors
    /// The folder or a file cannot be written.
    pub fn write(
        &self,
        sk: &SecretKey,
        keys: &PublicKeySet,
        binding: Option<&ModelBinding>,
        passphrase: Option<&Passphrase>,
    ) -> Result<(), PipelineError> {
        std::fs::create_dir_all(&self.dir).map_err(PipelineError::io(&self.dir))?;
        ModelBinding::remove(&self.dir)?;
        match passphrase {
            Some(passphrase) => save_sealed_secret_key(&self.secret_path(), sk, passphrase)?,
            None => save_secret_key(&self.secret_path(), sk)?,
        }
        save_public_keys(&self.public_path(), keys)?;
        if let Some(binding) = binding {
            binding.write(&self.dir)?;
        }
        Ok(())
    }
}

/// Fresh keys: a secret key for `params` and the public keys `levels`
/// names, held as `memory` says, with the seconds taken; the keys made so
/// far go to `observer` ([`Event::KeysGenerated`]).
pub fn generate_keys(
    params: &Arc<Params>,
    levels: &KeyLevels,
    memory: KeyMemory,
    observer: &dyn Observer,
) -> (SecretKey, Arc<PublicKeySet>, f64) {
    let start = Instant::now();
    let sk = SecretKey::generate(params);
    let keys = PublicKeySet::generate_counted(&sk, levels, memory, &mut |done, total| {
        observer.event(Event::KeysGenerated { done, total })
    });
    (sk, Arc::new(keys), start.elapsed().as_secs_f64())
}

/// Keys for one model kept between runs.
pub struct CachedKeys {
    /// The secret key.
    pub sk: SecretKey,
    /// The public keys, covering the plan's rotations and levels.
    pub keys: Arc<PublicKeySet>,
    /// Seconds key generation took; `None` when the keys were loaded.
    pub keygen_seconds: Option<f64>,
    /// The cache folder they are in.
    pub dir: KeyDir,
}

impl CachedKeys {
    /// Keys for `planned` (from the cache directory for `model_file`'s
    /// content and the plan; generated and saved there when absent,
    /// unreadable or made for something else).
    ///
    /// Any number of processes may open the same model's keys at once
    /// (the shards of one run on a shared file system): each that
    /// generates writes into a folder of its own and renames it into
    /// place; when another got there first with valid keys, those are
    /// loaded and used instead, so the cache holds one key set and every
    /// caller ends with it or with the one it published.
    ///
    /// # Errors
    /// Unreadable model file, no cache directory, key files that cannot be
    /// written, a cache folder that cannot be replaced.
    pub fn open(model_file: &Path, planned: &Planned, memory: KeyMemory) -> Result<Self, PipelineError> {
        let dir = KeyDir::new(key_cache_dir(model_file, planned)?);
        let binding = ModelBinding::new(&planned.model, &planned.params, &planned.plan);
        if let Some(cached) = Self::load(&dir, &binding, planned, memory) {
            return Ok(cached);
        }
        let (sk, keys, seconds) = generate_keys(&planned.params, &planned.plan.key_levels(), memory, &Silent);
        let fresh = KeyDir::new(beside(dir.path(), "tmp"));
        let published = fresh
            .write(&sk, &keys, Some(&binding), None)
            .and_then(|()| Self::publish(&fresh, &dir, &binding, planned, memory));
        if published.is_err() || matches!(published, Ok(Some(_))) {
            let _ = std::fs::remove_dir_all(fresh.path());
        }
        Ok(match published? {
            Some(theirs) => CachedKeys {
                keygen_seconds: Some(seconds),
                ..theirs
            },
            None => CachedKeys {
                sk,
                keys,
                keygen_seconds: Some(seconds),
                dir,
            },
        })
    }

    /// The keys in `dir` when they are whole and made for `binding` and
    /// `planned`'s key levels; `None` otherwise (absent, damaged, half
    /// replaced, or for something else).
    fn load(dir: &KeyDir, binding: &ModelBinding, planned: &Planned, memory: KeyMemory) -> Option<Self> {
        if ModelBinding::read(dir.path()).ok()?.as_ref() != Some(binding) {
            return None;
        }
        let sk = dir.secret_key().ok()?;
        let keys = dir.public_keys(memory).ok()?;
        (keys.id() == sk.id() && keys.levels() == planned.plan.key_levels()).then(|| CachedKeys {
            sk,
            keys: Arc::new(keys),
            keygen_seconds: None,
            dir: dir.clone(),
        })
    }

    /// Renames the folder `fresh` to `dir`; `None` when it did. When `dir`
    /// already holds valid keys (another process published first), those;
    /// when it holds anything else, it is moved aside and removed first
    /// (a few tries, other processes racing on it).
    fn publish(
        fresh: &KeyDir,
        dir: &KeyDir,
        binding: &ModelBinding,
        planned: &Planned,
        memory: KeyMemory,
    ) -> Result<Option<Self>, PipelineError> {
        const TRIES: usize = 8;
        for _ in 0..TRIES {
            let error = match std::fs::rename(fresh.path(), dir.path()) {
                Ok(()) => return Ok(None),
                Err(e) => e,
            };
            if !dir.path().exists() {
                return Err(PipelineError::io(dir.path())(error));
            }
            if let Some(theirs) = Self::load(dir, binding, planned, memory) {
                return Ok(Some(theirs));
            }
            let old = beside(dir.path(), "old");
            match std::fs::rename(dir.path(), &old) {
                Ok(()) => {
                    let _ = std::fs::remove_dir_all(&old);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(PipelineError::io(dir.path())(e)),
            }
        }
        Err(PipelineError::Resources(format!(
            "{}: other processes kept replacing this key cache folder; {TRIES} tries to publish keys failed",
            dir.path().display()
        )))
    }
}

/// A name beside `path` no other process or thread picks:
/// `path.PID.RANDOM.KIND`.
fn beside(path: &Path, kind: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}.{:016x}.{kind}", std::process::id(), rand::random::<u64>()));
    PathBuf::from(name)
}

/// The key directory for `model_file` under `planned`: one per model file
/// content, spec and preset, under the cache directory.
fn key_cache_dir(model_file: &Path, planned: &Planned) -> Result<PathBuf, PipelineError> {
    let bytes = crate::bounded::read_regular(model_file, crate::nn::weights::MAX_WEIGHTS_BYTES)
        .map_err(PipelineError::io(model_file))?;
    let mut h = blake3::Hasher::new();
    h.update(&bytes);
    h.update(planned.model.spec().to_string().as_bytes());
    h.update(&planned.params.fingerprint());
    let tag = crate::ckks::params::hex(&h.finalize().as_bytes()[..12]);
    let root = crate::cache::cache_dir()
        .ok_or_else(|| PipelineError::Config("no cache directory: set LATENT_HE_CACHE_DIR or HOME".into()))?;
    Ok(root.join("keys").join(tag))
}
