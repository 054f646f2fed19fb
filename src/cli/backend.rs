//! Which backend a command evaluates on: `--backend` as given, else the GPU
//! when a hardware adapter exists, else the CPU with a one-line note.

use super::{BackendChoice, CliError};
use crate::backend::gpu::GpuContext;
use clap::Args;
use std::sync::Arc;

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
    /// The backend these flags choose (see [`Chosen::resolve`]).
    ///
    /// # Errors
    /// `--backend gpu` with no usable adapter.
    pub fn resolve(&self) -> Result<Chosen, CliError> {
        Chosen::resolve(self.backend, self.adapter.as_deref())
    }
}

/// The backend a run uses.
#[derive(Clone)]
pub enum Chosen {
    /// The CPU reference evaluator.
    Cpu,
    /// The wgpu evaluator on this adapter.
    Gpu(Arc<GpuContext>),
}

impl Chosen {
    /// `--backend` as given; without it, the GPU when a hardware adapter
    /// exists (or one is named), else the CPU with a one-line note: a software
    /// Vulkan device such as lavapipe is slower than the CPU backend itself.
    pub fn resolve(choice: Option<BackendChoice>, adapter: Option<&str>) -> Result<Self, CliError> {
        match choice {
            Some(BackendChoice::Cpu) => Ok(Chosen::Cpu),
            Some(BackendChoice::Gpu) => Ok(Chosen::Gpu(GpuContext::new(adapter)?)),
            None => match GpuContext::new(adapter) {
                Ok(ctx) if adapter.is_some() || ctx.adapter().device_type != "Cpu" => Ok(Chosen::Gpu(ctx)),
                Ok(ctx) => {
                    eprintln!(
                        "note: the only adapter is a software one ({}); using the CPU backend (--backend gpu forces it)",
                        ctx.adapter().name
                    );
                    Ok(Chosen::Cpu)
                }
                Err(e) => {
                    eprintln!("note: {e}; using the CPU backend");
                    Ok(Chosen::Cpu)
                }
            },
        }
    }

    /// `("cpu" | "gpu", adapter name)`.
    pub fn describe(&self) -> (String, Option<String>) {
        match self {
            Chosen::Cpu => ("cpu".into(), None),
            Chosen::Gpu(ctx) => ("gpu".into(), Some(ctx.adapter().name.clone())),
        }
    }
}
