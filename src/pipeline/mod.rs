//! The paper's protocol as a library: what the CLI, a server or any other
//! front end calls, so that they cannot drift apart.
//!
//! - the client bundle ([`ClientBundle`], `client.json`): what a client
//!   needs of a model, without its weights;
//! - the client ([`client`]): keys from a model's plan or a client bundle, encryption of
//!   latents in the model's layout, decryption of logits; a key folder
//!   opened for all of it in memory ([`Client`]);
//! - the server ([`Server`]): a model planned under the client's
//!   parameters, incoming ciphertexts and keys checked against the plan and
//!   the model's [`fingerprint`], the plan evaluated; one client's keys
//!   held to answer its ciphertexts in memory ([`KeyedServer`]);
//! - a plan described ([`plan_report`]);
//! - the key store ([`KeyDir`], [`keys::CachedKeys`]);
//! - a whole encrypted inference in one process ([`EncryptedSession`]),
//!   or with its server step on a running `latent-he serve`
//!   ([`RemoteEvaluation`]);
//! - the scorer of a test set ([`score::score`], from a plain
//!   [`score::ScoreConfig`]).
//!
//! Nothing here prints: progress and notes go to an [`Observer`]. Failures
//! are [`PipelineError`]s.

pub mod binding;
pub mod bundle;
pub mod client;
pub mod device;
pub mod error;
pub mod fingerprint;
pub mod keys;
pub mod latents;
pub mod memory;
pub mod model;
pub mod observer;
pub mod plan_report;
pub mod remote;
pub mod score;
pub mod server;
pub mod session;
pub mod vqgan;

pub use binding::ModelBinding;
pub use bundle::ClientBundle;
pub use client::{Client, Findings};
pub use device::{BackendKind, Chosen};
pub use error::PipelineError;
pub use fingerprint::{bytes_fingerprint, model_fingerprint};
pub use keys::KeyDir;
pub use latents::{read_latents, read_npy_f64};
pub use model::{load_model, model_from_state_dict, Planned};
pub use observer::{Event, Observer, Silent};
pub use remote::{RemoteConfig, RemoteEvaluation, RemoteKeyed};
pub use server::{KeyedServer, Server};
pub use session::{EncryptedSession, LogitsApart, StageSeconds};
pub use vqgan::LoadedVqgan;

/// The logistic function, without overflow for large `|x|`: a logit's
/// probability.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}
