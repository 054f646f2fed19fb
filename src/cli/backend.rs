//! Which backend a command evaluates on: `--backend` as given, else the GPU
//! when a hardware adapter exists, else the CPU with a one-line note.

use super::{BackendChoice, CliError};
use crate::backend::gpu::GpuContext;
use std::sync::Arc;

/// The backend a run uses.
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
