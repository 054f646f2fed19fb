//! The paper's protocol as a service: `latent-he serve` holds the models and
//! evaluates ciphertexts for clients that hold their own secret keys.
//!
//! - [`tokens`]: bearer tokens, stored hashed; each names an owner.
//! - [`store`]: the state directory (registered public keys, jobs, their
//!   input and output ciphertexts), written atomically so that a restart
//!   finds what was stored.
//! - [`engine`]: the served models, checking uploads against their plans
//!   and evaluating.
//! - [`jobs`]: the queue and the worker that evaluates jobs, several at once
//!   when they share a model and key.
//! - `http`: the HTTP API over all of it (axum; TLS through rustls).
//! - [`client`]: the same API from the client's side (blocking reqwest).
//!
//! The server never receives a secret key: an upload whose header names
//! secret material is refused before a byte of it is written.

pub mod client;
pub mod engine;
mod http;
pub mod jobs;
pub mod store;
pub mod tokens;

pub use http::{serve, ServeConfig};

use thiserror::Error;

/// Why the service could not start or a stored file could not be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// Reading or writing a file of the service.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A file of the service that does not hold what it should.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// A configuration that cannot be served (no models, a public address
    /// without tokens, a TLS file that cannot be used).
    #[error("{0}")]
    Config(String),
}

impl ServiceError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Seconds since the Unix epoch, for the records' timestamps.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `n` random bytes from the operating system's CSPRNG, as lowercase hex.
pub(crate) fn random_hex(n: usize) -> String {
    use rand::RngCore;
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    crate::ckks::params::hex(&bytes)
}

/// Makes ring rustls's process-wide crypto provider (once; later calls do
/// nothing). ring builds with a C compiler alone; its lack of
/// post-quantum key exchange is why rustls marks it deprecated.
#[allow(deprecated)]
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
