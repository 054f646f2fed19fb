//! Which backend a command evaluates on: `--backend` as given, else the GPU
//! when a hardware adapter exists, else the CPU with a one-line note
//! ([`Chosen::resolve`]).

use super::progress::Stderr;
use super::{BackendChoice, CliError};
pub use crate::pipeline::Chosen;
use clap::Args;

/// `--backend` and `--adapter`, shared by the commands that evaluate.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Backend for the evaluation (default: gpu when a hardware adapter exists).
    #[arg(long, value_enum)]
    pub backend: Option<BackendChoice>,
    /// GPU adapter name substring (else $LATENT_HE_ADAPTER, else the best).
    #[arg(long)]
    pub adapter: Option<String>,
}

impl DeviceArgs {
    /// The backend these flags choose (see [`Chosen::resolve`]); notes go
    /// to stderr.
    ///
    /// # Errors
    /// `--backend gpu` with no usable adapter.
    pub fn resolve(&self) -> Result<Chosen, CliError> {
        Ok(Chosen::resolve(
            self.backend.map(Into::into),
            self.adapter.as_deref(),
            &Stderr::notes(),
        )?)
    }
}
