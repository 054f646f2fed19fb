//! The service's API from the client's side: register a public key set,
//! submit a ciphertext file, follow the job, fetch the encrypted logits.
//! Nothing secret is sent; the caller encrypts before and decrypts after.

use super::jobs::{JobRecord, JobState};
use std::path::Path;
use std::time::Duration;
use thiserror::Error;

/// Why a call to the server failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server could not be reached or the connection failed.
    #[error("{url}: {source}")]
    Http {
        /// What was asked.
        url: String,
        /// Why it failed.
        source: reqwest::Error,
    },
    /// The server refused the request; `message` is its own.
    #[error("the server answered {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The job ended failed.
    #[error("job {id} failed: {reason}")]
    JobFailed {
        /// The job.
        id: String,
        /// The server's reason.
        reason: String,
    },
}

/// A key set as the server holds it after [`RemoteServer::ensure_keys`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    /// The key id (the handle jobs name).
    pub key_id: String,
    /// Whether this call uploaded the keys (`false`: the server had them).
    pub uploaded: bool,
}

/// A `latent-he serve` at a base URL, with a bearer token.
pub struct RemoteServer {
    base: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

/// The key id the server gives the key file `path`: BLAKE3 of its bytes,
/// the first 16 bytes as hex.
///
/// # Errors
/// An unreadable file.
pub fn key_id_of(path: &Path) -> Result<String, ClientError> {
    let mut hasher = blake3::Hasher::new();
    std::fs::File::open(path)
        .and_then(|mut f| std::io::copy(&mut f, &mut hasher))
        .map_err(|source| ClientError::Io {
            path: path.display().to_string(),
            source,
        })?;
    Ok(crate::ckks::params::hex(&hasher.finalize().as_bytes()[..16]))
}

impl RemoteServer {
    /// A client for the server at `base` (`http://` or `https://`), trusting
    /// the system's roots and, when given, the PEM certificate `ca`.
    ///
    /// # Errors
    /// An unreadable or invalid certificate, a TLS set-up that fails.
    pub fn new(base: &str, token: Option<String>, ca: Option<&Path>) -> Result<Self, ClientError> {
        super::install_crypto_provider();
        let mut builder = reqwest::blocking::Client::builder()
            .timeout(None)
            .connect_timeout(Duration::from_secs(30));
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).map_err(|source| ClientError::Io {
                path: ca.display().to_string(),
                source,
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|source| ClientError::Http {
                url: ca.display().to_string(),
                source,
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|source| ClientError::Http {
            url: base.to_string(),
            source,
        })?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    fn send(
        &self,
        request: reqwest::blocking::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::blocking::Response, ClientError> {
        let request = match &self.token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        let response = request.send().map_err(|source| ClientError::Http {
            url: url.to_string(),
            source,
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        Err(ClientError::Refused { status, message })
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::blocking::RequestBuilder,
        url: &str,
    ) -> Result<T, ClientError> {
        self.send(request, url)?.json().map_err(|source| ClientError::Http {
            url: url.to_string(),
            source,
        })
    }

    /// `GET /v1/models`.
    ///
    /// # Errors
    /// As every call: unreachable, refused.
    pub fn models(&self) -> Result<serde_json::Value, ClientError> {
        let url = format!("{}/v1/models", self.base);
        self.json(self.http.get(&url), &url)
    }

    /// Registers the public key file at `path` (made under `preset` for
    /// `model` with `batch` images per set, and for the weights with
    /// `fingerprint` when known) unless the server has it; returns the key
    /// id and whether it was uploaded.
    ///
    /// # Errors
    /// As every call; the server's refusal of the keys.
    pub fn ensure_keys(
        &self,
        model: &str,
        batch: usize,
        preset: &str,
        fingerprint: Option<&str>,
        path: &Path,
    ) -> Result<Registered, ClientError> {
        let id = key_id_of(path)?;
        let url = format!("{}/v1/keys/{id}", self.base);
        match self.send(self.http.get(&url), &url) {
            Ok(_) => {
                return Ok(Registered {
                    key_id: id,
                    uploaded: false,
                })
            }
            Err(ClientError::Refused { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
        let url = format!("{}/v1/keys", self.base);
        let batch = batch.to_string();
        let mut query = vec![("model", model), ("preset", preset), ("batch", &batch)];
        query.extend(fingerprint.map(|f| ("fingerprint", f)));
        let file = std::fs::File::open(path).map_err(|source| ClientError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let reply: serde_json::Value = self.json(self.http.post(&url).query(&query).body(file), &url)?;
        Ok(Registered {
            key_id: reply["key_id"].as_str().unwrap_or(&id).to_string(),
            uploaded: true,
        })
    }

    /// Submits the ciphertext file at `path` under key `key_id`; returns
    /// the job id.
    ///
    /// # Errors
    /// As every call; the server's refusal of the file.
    pub fn submit(&self, key_id: &str, path: &Path) -> Result<String, ClientError> {
        let url = format!("{}/v1/jobs", self.base);
        let file = std::fs::File::open(path).map_err(|source| ClientError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let reply: serde_json::Value = self.json(self.http.post(&url).query(&[("key", key_id)]).body(file), &url)?;
        reply["job_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ClientError::Refused {
                status: 200,
                message: format!("no job id in {reply}"),
            })
    }

    /// `GET /v1/jobs/ID`.
    ///
    /// # Errors
    /// As every call.
    pub fn job(&self, id: &str) -> Result<JobRecord, ClientError> {
        let url = format!("{}/v1/jobs/{id}", self.base);
        self.json(self.http.get(&url), &url)
    }

    /// Polls job `id` until it is done (returned) or failed (an error),
    /// telling `progress` each record seen.
    ///
    /// # Errors
    /// As every call; [`ClientError::JobFailed`].
    pub fn wait(&self, id: &str, progress: &mut dyn FnMut(&JobRecord)) -> Result<JobRecord, ClientError> {
        let mut pause = Duration::from_millis(100);
        loop {
            let job = self.job(id)?;
            progress(&job);
            match job.state {
                JobState::Done => return Ok(job),
                JobState::Failed => {
                    return Err(ClientError::JobFailed {
                        id: id.to_string(),
                        reason: job.reason.unwrap_or_default(),
                    })
                }
                JobState::Queued | JobState::Running => std::thread::sleep(pause),
            }
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Writes job `id`'s encrypted logits to `out`.
    ///
    /// # Errors
    /// As every call; `out` unwritable.
    pub fn download(&self, id: &str, out: &Path) -> Result<(), ClientError> {
        let url = format!("{}/v1/jobs/{id}/output", self.base);
        let bytes = self
            .send(self.http.get(&url), &url)?
            .bytes()
            .map_err(|source| ClientError::Http { url, source })?;
        std::fs::write(out, &bytes).map_err(|source| ClientError::Io {
            path: out.display().to_string(),
            source,
        })
    }
}
