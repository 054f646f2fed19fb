//! Which backend evaluates: the CPU reference or a GPU through wgpu.

use super::observer::{Event, Observer};
use super::PipelineError;
use crate::backend::gpu::GpuContext;
use std::sync::Arc;

/// A backend asked for by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// The CPU reference (rayon across limbs).
    Cpu,
    /// WGSL kernels through wgpu.
    Gpu,
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
    /// `choice` as given (`adapter`: a substring of the adapter's name);
    /// without one, the GPU when a hardware adapter exists (or one is
    /// named), else the CPU with a [`Event::Note`]: a software Vulkan
    /// device such as lavapipe is slower than the CPU backend itself.
    ///
    /// # Errors
    /// [`BackendKind::Gpu`] with no usable adapter.
    pub fn resolve(
        choice: Option<BackendKind>,
        adapter: Option<&str>,
        observer: &dyn Observer,
    ) -> Result<Self, PipelineError> {
        match choice {
            Some(BackendKind::Cpu) => Ok(Chosen::Cpu),
            Some(BackendKind::Gpu) => Ok(Chosen::Gpu(GpuContext::new(adapter)?)),
            None => match GpuContext::new(adapter) {
                Ok(ctx) if adapter.is_some() || ctx.adapter().device_type != "Cpu" => Ok(Chosen::Gpu(ctx)),
                Ok(ctx) => {
                    observer.event(Event::Note(&format!(
                        "note: the only adapter is a software one ({}); using the CPU backend (--backend gpu forces it)",
                        ctx.adapter().name
                    )));
                    Ok(Chosen::Cpu)
                }
                Err(e) => {
                    observer.event(Event::Note(&format!("note: {e}; using the CPU backend")));
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
