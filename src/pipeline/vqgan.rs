//! The client's VQGAN (image to latent, latent to image) on the chosen
//! backend.

use super::device::Chosen;
use super::PipelineError;
use crate::data::image::{preprocess, Image8, PAPER_SIZE};
use crate::vqgan::cpu::CpuOps;
use crate::vqgan::gpu::{GpuOps, VqganGpuError};
use crate::vqgan::{Vqgan, VqganConfig, VqganError};
use ndarray::Array4;
use std::path::Path;

/// A VQGAN on a chosen backend.
pub enum LoadedVqgan {
    /// On the CPU reference backend.
    Cpu(Box<Vqgan<CpuOps>>),
    /// On a GPU through wgpu.
    Gpu(Box<Vqgan<GpuOps>>),
}

impl LoadedVqgan {
    /// Loads `path` (with its config `preset` when the file records none:
    /// f2, f4, f8, f16) onto `chosen`; returns it with the backend's name
    /// (`cpu` or `gpu (ADAPTER)`).
    ///
    /// # Errors
    /// Unreadable or unusable weights; device failures.
    pub fn load_on(path: &Path, preset: Option<&str>, chosen: &Chosen) -> Result<(Self, String), PipelineError> {
        let vqgan_error = |e: VqganError| match e {
            VqganError::File(_) => PipelineError::Vqgan(e),
            _ => PipelineError::Input {
                path: path.display().to_string(),
                reason: e.to_string(),
            },
        };
        match chosen {
            Chosen::Cpu => Ok((
                LoadedVqgan::Cpu(Box::new(Vqgan::load_cpu(path, preset).map_err(vqgan_error)?)),
                "cpu".into(),
            )),
            Chosen::Gpu(ctx) => {
                let vq = Vqgan::load_gpu(path, preset, ctx).map_err(|e| match e {
                    VqganGpuError::Vqgan(e) => vqgan_error(e),
                    VqganGpuError::Gpu(e) => PipelineError::Gpu(e),
                })?;
                Ok((LoadedVqgan::Gpu(Box::new(vq)), format!("gpu ({})", ctx.adapter().name)))
            }
        }
    }

    /// The encoder's output (or its quantization) for preprocessed images.
    ///
    /// # Errors
    /// Bad input batches; device failures.
    pub fn encode(&self, images: Array4<f32>, quantized: bool) -> Result<Array4<f32>, String> {
        match self {
            LoadedVqgan::Cpu(vq) if quantized => vq.encode_quantized(images).map_err(|e| e.to_string()),
            LoadedVqgan::Cpu(vq) => vq.encode(images).map_err(|e| e.to_string()),
            LoadedVqgan::Gpu(vq) if quantized => vq.encode_quantized(images).map_err(|e| e.to_string()),
            LoadedVqgan::Gpu(vq) => vq.encode(images).map_err(|e| e.to_string()),
        }
    }

    /// The encoder's output (or its quantization) for decoded images, each
    /// brought to the VQGAN's input by the paper's preprocessing
    /// ([`preprocess`]: shorter side to 256, centre crop, three channels,
    /// `[-1, 1]`): `B x C x H x W` latents in the order of `images`.
    ///
    /// # Errors
    /// No image; device failures.
    pub fn encode_images(&self, images: &[Image8], quantized: bool) -> Result<Array4<f32>, String> {
        if images.is_empty() {
            return Err("no image to encode".into());
        }
        let side = PAPER_SIZE.get();
        let mut batch = Array4::zeros((images.len(), 3, side, side));
        for (mut slot, image) in batch.outer_iter_mut().zip(images) {
            slot.assign(&preprocess(image, PAPER_SIZE));
        }
        self.encode(batch, quantized)
    }

    /// Reconstructions of latents.
    ///
    /// # Errors
    /// Bad latents, no decoder; device failures.
    pub fn decode(&self, latents: Array4<f32>, quantized: bool) -> Result<Array4<f32>, String> {
        match self {
            LoadedVqgan::Cpu(vq) => vq.decode(latents, quantized).map_err(|e| e.to_string()),
            LoadedVqgan::Gpu(vq) => vq.decode(latents, quantized).map_err(|e| e.to_string()),
        }
    }

    /// Takes inputs of any size ([`Vqgan::allow_any_size`]).
    pub fn allow_any_size(&mut self) {
        match self {
            LoadedVqgan::Cpu(vq) => vq.allow_any_size(),
            LoadedVqgan::Gpu(vq) => vq.allow_any_size(),
        }
    }

    /// The network's configuration.
    pub fn config(&self) -> &VqganConfig {
        match self {
            LoadedVqgan::Cpu(vq) => vq.config(),
            LoadedVqgan::Gpu(vq) => vq.config(),
        }
    }

    /// One line describing the network.
    pub fn summary(&self) -> String {
        self.config().summary()
    }
}
