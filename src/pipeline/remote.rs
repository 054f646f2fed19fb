//! The server step of an [`super::EncryptedSession`] done by a running
//! `latent-he serve` instead of in this process: the session's public keys
//! registered once (for the model's fingerprint), each call's ciphertexts
//! uploaded as one job, the job followed, its encrypted logits fetched.
//! Nothing secret leaves the client.

use super::keys::KeyDir;
use super::observer::{Event, Observer};
use super::server::binding_beside;
use super::PipelineError;
use crate::ckks::serialize::{load_ciphertexts, public_keys_params, save_ciphertexts, CiphertextFile};
use crate::ckks::{Ciphertext, Params};
use crate::he_nn::Plan;
use crate::service::client::{ClientError, RemoteServer};
use crate::service::jobs::JobRecord;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where and as whom to reach a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteConfig {
    /// The server's base URL (`http://` or `https://`).
    pub url: String,
    /// Bearer token (none: a server without a tokens file).
    pub token: Option<String>,
    /// A PEM certificate to trust besides the system's.
    pub ca_cert: Option<PathBuf>,
    /// The model's name on the server (`GET /v1/models`); none: the model
    /// file's stem.
    pub model: Option<String>,
}

/// A server reached, with the session's keys registered on it.
///
/// Invariant: `key_id` names the public key file of the session's key
/// folder, registered for `model` under the session's preset and batch.
pub struct RemoteEvaluation {
    server: RemoteServer,
    url: String,
    model: String,
    key_id: String,
    backend: String,
    adapter: Option<String>,
    /// A private folder for the files sent and received, removed on drop.
    work: PathBuf,
}

/// `e` as a pipeline error: an unreachable server is a resource failure,
/// a refusal or a failed job names the server.
fn remote_error(url: &str) -> impl FnOnce(ClientError) -> PipelineError + '_ {
    move |e| match e {
        ClientError::Http { .. } => PipelineError::Resources(e.to_string()),
        ClientError::Io { path, source } => PipelineError::Io { path, source },
        e => PipelineError::Refused(format!("{url}: {e}")),
    }
}

impl RemoteEvaluation {
    /// Connects to the server `config` names, checks that it serves the
    /// model (`config.model`, else `model_file`'s stem), and registers the
    /// public keys of `keys` (made under `params` for `plan`) unless it has
    /// them, bound to `model_file`'s fingerprint: a server with other
    /// weights refuses them.
    ///
    /// # Errors
    /// An unreachable server, a model it does not serve, keys it refuses.
    pub fn connect(
        config: &RemoteConfig,
        model_file: &Path,
        keys: &KeyDir,
        params: &Params,
        plan: &Plan,
    ) -> Result<Self, PipelineError> {
        let url = config.url.as_str();
        let model = match &config.model {
            Some(name) => name.clone(),
            None => model_file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .ok_or_else(|| PipelineError::input(model_file, "no file name to serve it by; give its server name"))?,
        };
        let server =
            RemoteServer::new(url, config.token.clone(), config.ca_cert.as_deref()).map_err(remote_error(url))?;
        let models = server.models().map_err(remote_error(url))?;
        let served: Vec<&str> = models["models"]
            .as_array()
            .map(|list| list.iter().filter_map(|m| m["name"].as_str()).collect())
            .unwrap_or_default();
        if !served.contains(&model.as_str()) {
            return Err(PipelineError::Config(format!(
                "{url} does not serve a model `{model}` (it serves: {}); name it with its server name",
                served.join(", ")
            )));
        }
        let fingerprint = super::model_fingerprint(model_file)?;
        let preset = params.name().unwrap_or("literal");
        let key_id = server
            .ensure_keys(&model, plan.batch(), preset, Some(&fingerprint), &keys.public_path())
            .map_err(remote_error(url))?
            .key_id;
        let work = work_dir()?;
        Ok(RemoteEvaluation {
            server,
            url: url.to_string(),
            model,
            key_id,
            backend: models["backend"].as_str().unwrap_or("unknown").to_string(),
            adapter: models["adapter"].as_str().map(str::to_string),
            work,
        })
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The model's name on the server.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The registered key's id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The backend a session evaluating here reports: `remote:` and the
    /// server's backend.
    pub fn backend_name(&self) -> String {
        format!("remote:{}", self.backend)
    }

    /// What a summary records of the server: its URL, the model's name
    /// there, its backend and adapter.
    pub fn describe(&self) -> Value {
        serde_json::json!({
            "url": self.url,
            "model": self.model,
            "backend": self.backend,
            "adapter": self.adapter,
        })
    }

    /// Evaluates `inputs` (the plan's input sets of `shape[0]` latents of
    /// shape `shape[1..]`, encrypted under the registered keys) as one job
    /// on the server; returns the logit ciphertexts, as local evaluation
    /// lays them out, and each set's seconds (the server's evaluation time
    /// shared equally).
    ///
    /// # Errors
    /// An unreachable server, a refused or failed job, an answer that is
    /// not the logits of `shape[0]` images.
    pub fn evaluate(
        &self,
        params: &Arc<Params>,
        plan: &Plan,
        shape: [usize; 4],
        classes: usize,
        inputs: &[Ciphertext],
        observer: &dyn Observer,
    ) -> Result<(Vec<Ciphertext>, Vec<f64>), PipelineError> {
        let url = self.url.as_str();
        let images = shape[0];
        let (sent, received) = (self.work.join("input.ct"), self.work.join("output.ct"));
        let file = CiphertextFile {
            shape: shape.to_vec(),
            values: shape.iter().product(),
            ciphertexts: inputs.to_vec(),
        };
        save_ciphertexts(&sent, &file, params)?;
        let (job_id, job) = run_job(&self.server, url, &self.key_id, &sent, &received)?;
        let out = load_ciphertexts(&received, params)?;
        let sets = images.div_ceil(plan.batch());
        let expected = sets.div_ceil(plan.output().lane_count()) * plan.output().cts();
        if out.shape != [images, classes] || out.ciphertexts.len() != expected {
            return Err(PipelineError::Refused(format!(
                "{url}: job {job_id} sent {} ciphertexts of shape {:?}; expected the logits of {images} image(s) in {expected}",
                out.ciphertexts.len(),
                out.shape
            )));
        }
        let seconds = job.seconds.unwrap_or(0.0);
        observer.event(Event::SetsEvaluated {
            first: 1,
            last: sets,
            sets,
            seconds,
            backend: &self.backend,
        });
        Ok((out.ciphertexts, vec![seconds / sets.max(1) as f64; sets]))
    }
}

impl Drop for RemoteEvaluation {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// A private folder for the files sent to and received from a server.
fn work_dir() -> Result<PathBuf, PipelineError> {
    let work = std::env::temp_dir().join(format!("latent-he-remote-{}", crate::service::random_hex(8)));
    std::fs::create_dir_all(&work).map_err(PipelineError::io(&work))?;
    Ok(work)
}

/// Submits the ciphertext file `sent` under `key_id` as one job, waits for
/// it and writes its encrypted logits to `received`; returns the job's id
/// and record.
fn run_job(
    server: &RemoteServer,
    url: &str,
    key_id: &str,
    sent: &Path,
    received: &Path,
) -> Result<(String, JobRecord), PipelineError> {
    let job_id = server.submit(key_id, sent).map_err(remote_error(url))?;
    let job = server.wait(&job_id, &mut |_| {}).map_err(remote_error(url))?;
    server.download(&job_id, received).map_err(remote_error(url))?;
    Ok((job_id, job))
}

/// A running `latent-he serve` holding one client's public keys for a
/// model it serves: it answers that client's ciphertext files in memory,
/// as [`super::KeyedServer`] does in this process. Nothing secret is sent.
///
/// Invariant: `key_id` names the public key file registered for the model
/// under the preset, batch and fingerprint of its folder's binding.
pub struct RemoteKeyed {
    server: RemoteServer,
    url: String,
    key_id: String,
    /// A private folder for the files sent and received, removed on drop.
    work: PathBuf,
}

impl RemoteKeyed {
    /// Connects to the server `config` names and registers the public key
    /// file `public_key` there (unless it has it) for the model
    /// `config.model`, with the preset, batch and fingerprint that the
    /// binding beside the key records: a server with other weights refuses
    /// them. Keys the server already holds keep the model they were
    /// registered for.
    ///
    /// # Errors
    /// No model name; a key file without a binding beside it; an
    /// unreachable server; keys it refuses.
    pub fn connect(config: &RemoteConfig, public_key: &Path) -> Result<Self, PipelineError> {
        let url = config.url.as_str();
        let model = config
            .model
            .as_deref()
            .ok_or_else(|| PipelineError::Config("name the model as the server serves it (GET /v1/models)".into()))?;
        let params = public_keys_params(public_key)?;
        let binding = binding_beside(public_key, &params)?.ok_or_else(|| {
            PipelineError::input(public_key, "has no model.json beside it: make the keys for a model")
        })?;
        let server =
            RemoteServer::new(url, config.token.clone(), config.ca_cert.as_deref()).map_err(remote_error(url))?;
        let key_id = server
            .ensure_keys(
                model,
                binding.batch,
                &binding.preset,
                binding.fingerprint.as_deref(),
                public_key,
            )
            .map_err(remote_error(url))?
            .key_id;
        Ok(RemoteKeyed {
            server,
            url: url.to_string(),
            key_id,
            work: work_dir()?,
        })
    }

    /// The registered key's id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The encrypted logits, as ciphertext file bytes, of the latents in
    /// `bytes` (a ciphertext file under the registered keys), evaluated as
    /// one job on the server.
    ///
    /// # Errors
    /// An unreachable server; a refused or failed job (the server's reason).
    pub fn infer(&self, bytes: &[u8]) -> Result<Vec<u8>, PipelineError> {
        let (sent, received) = (self.work.join("input.ct"), self.work.join("output.ct"));
        std::fs::write(&sent, bytes).map_err(PipelineError::io(&sent))?;
        run_job(&self.server, &self.url, &self.key_id, &sent, &received)?;
        std::fs::read(&received).map_err(PipelineError::io(&received))
    }
}

impl Drop for RemoteKeyed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
    }
}
