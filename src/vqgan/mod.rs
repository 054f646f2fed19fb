//! The client's compressor: a taming-transformers VQGAN (encoder, codebook
//! quantizer, decoder) that turns a preprocessed `3 x 256 x 256` image into
//! the latent the classifier reads, and a latent back into an image.
//!
//! The network's structure ([`network`]) and forward pass ([`ops`]) are
//! written once over the [`NetOps`] backend trait; [`cpu::CpuOps`] is the
//! reference implementation; [`gpu::GpuOps`] runs the same pass on a wgpu
//! device. Tensor names are taming's, so a converted
//! taming checkpoint loads as is ([`Vqgan::load`]).

pub mod config;
pub mod cpu;
pub mod gpu;
pub mod network;
pub mod ops;
pub mod random;

pub use config::VqganConfig;
pub use network::{ConvParams, Network, NormParams, Padding};
pub use ops::NetOps;

use crate::nn::{NnError, StateDict, WeightProblem};
use ndarray::Array4;
use std::path::Path;
use thiserror::Error;

/// What loading or running a VQGAN can fail with; each prints as one line.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum VqganError {
    /// The weights file cannot be read or parsed.
    #[error(transparent)]
    File(#[from] NnError),
    /// A configuration that is invalid, unknown or contradicts the file.
    #[error("VQGAN config: {0}")]
    Config(String),
    /// The tensors do not match the configuration; lists every problem.
    #[error("VQGAN weights do not match ({config}): {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Weights {
        /// The configuration, summarised.
        config: String,
        /// Every missing, mis-shaped, non-finite or unexpected tensor.
        problems: Vec<WeightProblem>,
    },
    /// A tensor of the wrong shape reached a layer.
    #[error("{layer}: input of shape {found:?}: {reason}")]
    Shape {
        /// The layer.
        layer: String,
        /// The shape it got.
        found: Vec<usize>,
        /// What it needs.
        reason: String,
    },
    /// An input batch that cannot be encoded or decoded.
    #[error("{0}")]
    Input(String),
    /// A file that holds only an encoder was asked to decode.
    #[error("the VQGAN file has no decoder (no `decoder.*` tensors), so it cannot decode")]
    NoDecoder,
    /// A file without `quant_conv.*` tensors was asked for codebook vectors.
    #[error("the VQGAN file has no quantizer (no `quant_conv.*` tensors): it encodes without --quantized only")]
    NoQuantizer,
}

/// How many times its training resolution, per side, a VQGAN takes
/// (images of `resolution`, latents of `resolution / factor`) unless told
/// otherwise ([`Vqgan::allow_any_size`]): time and memory grow with the
/// square of the side, and attention's with its fourth power (a 4x256x256
/// latent into an f8 VQGAN: 101 s and 3.5 GB).
pub const MAX_SIZE_FACTOR: usize = 2;

/// A loaded VQGAN bound to a backend.
///
/// Invariant: `net` was loaded for `config` and moved onto `ops`.
pub struct Vqgan<B: NetOps> {
    config: VqganConfig,
    net: Network<B::Conv, B::Norm>,
    ops: B,
    /// Whether inputs past [`MAX_SIZE_FACTOR`] times the training size are taken.
    any_size: bool,
}

impl<B: NetOps> Vqgan<B> {
    /// Builds the network of a state dict (config from its metadata, else
    /// its tensor names, else `preset`; see [`VqganConfig::resolve`]) and
    /// moves its weights onto `ops`.
    ///
    /// # Errors
    /// [`VqganError::Config`] / [`VqganError::Weights`] for a file that does
    /// not describe a usable VQGAN; the backend's errors from uploading.
    pub fn new(
        ops: B,
        dict: &StateDict,
        preset: Option<&str>,
        upload_conv: impl FnMut(ConvParams) -> Result<B::Conv, B::Error>,
        upload_norm: impl FnMut(NormParams) -> Result<B::Norm, B::Error>,
    ) -> Result<Self, B::Error> {
        let config = VqganConfig::resolve(dict, preset)?;
        let host = Network::load(dict, &config)?;
        let net = host.map(upload_conv, upload_norm)?;
        Ok(Vqgan {
            config,
            net,
            ops,
            any_size: false,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &VqganConfig {
        &self.config
    }

    /// Takes inputs of any size from now on, past [`MAX_SIZE_FACTOR`] times
    /// the training resolution too.
    pub fn allow_any_size(&mut self) {
        self.any_size = true;
    }

    /// Refuses a side past [`MAX_SIZE_FACTOR`] times `trained`, unless
    /// [`Self::allow_any_size`] was called.
    fn check_size(&self, x: &Array4<f32>, trained: usize, what: &str) -> Result<(), VqganError> {
        let (_, _, h, w) = x.dim();
        let limit = trained.saturating_mul(MAX_SIZE_FACTOR);
        if !self.any_size && h.max(w) > limit {
            return Err(VqganError::Input(format!(
                "{what} of {h}x{w}: past {MAX_SIZE_FACTOR} times the {trained}x{trained} this VQGAN was trained on \
                 (--allow-large-inputs takes them, at the cost of time and memory)"
            )));
        }
        Ok(())
    }

    /// The backend.
    pub fn ops(&self) -> &B {
        &self.ops
    }

    /// The latent shape `C x H x W` of an image of `height x width`.
    pub fn latent_shape(&self, height: usize, width: usize) -> [usize; 3] {
        let f = self.config.factor();
        [self.config.encoder_out_channels(), height / f, width / f]
    }

    /// Checks a batch: `N x channels x H x W` with `N >= 1`, sides positive
    /// multiples of `multiple`, values finite.
    fn check_input(x: &Array4<f32>, channels: usize, multiple: usize, what: &str) -> Result<(), VqganError> {
        let (n, c, h, w) = x.dim();
        if n == 0 || c != channels || h == 0 || w == 0 || !h.is_multiple_of(multiple) || !w.is_multiple_of(multiple) {
            return Err(VqganError::Input(format!(
                "{what} of shape {:?}: expected N x {channels} x H x W with N >= 1 and H, W positive multiples of {multiple}",
                x.shape()
            )));
        }
        if let Some((i, v)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(VqganError::Input(format!(
                "{what}: value at flat index {i} is not finite ({v})"
            )));
        }
        Ok(())
    }

    /// The encoder's output for a batch of preprocessed images
    /// (`N x in_channels x H x W`, values in `[-1, 1]`): the continuous latent
    /// before `quant_conv`, which the paper's code feeds the classifier.
    ///
    /// # Errors
    /// [`VqganError::Input`] for a batch of the wrong shape, with
    /// non-finite values or past [`MAX_SIZE_FACTOR`]; the backend's errors.
    pub fn encode(&self, images: Array4<f32>) -> Result<Array4<f32>, B::Error> {
        Self::check_input(&images, self.config.in_channels, self.config.factor(), "images")?;
        self.check_size(&images, self.config.resolution, "images")?;
        let x = self.ops.upload(images)?;
        let z = self.net.encoder.encode(&self.ops, &x)?;
        self.ops.download(&z)
    }

    /// `q(quant_conv(E(x)))`: the codebook vectors (`embed_dim` channels)
    /// nearest to the encoder's output, as the paper's text defines z.
    ///
    /// # Errors
    /// As [`Vqgan::encode`]; [`VqganError::NoQuantizer`] for an
    /// encoder-only file without a quantizer.
    pub fn encode_quantized(&self, images: Array4<f32>) -> Result<Array4<f32>, B::Error> {
        let latent = self.encode(images)?;
        self.quantize(latent)
    }

    /// `q(quant_conv(h))` of encoder outputs `h`.
    ///
    /// # Errors
    /// [`VqganError::NoQuantizer`] for a file without one; the backend's errors.
    fn quantize(&self, latent: Array4<f32>) -> Result<Array4<f32>, B::Error> {
        let (Some(quant_conv), Some(codebook)) = (&self.net.quant_conv, &self.net.codebook) else {
            return Err(VqganError::NoQuantizer.into());
        };
        let h = self.ops.upload(latent)?;
        let projected = self.ops.download(&self.ops.conv2d(&h, quant_conv)?)?;
        Ok(cpu::quantize(&projected, codebook, self.config.embed_dim)?.0)
    }

    /// Reconstructs images (`N x out_ch x H x W`, about `[-1, 1]`) from
    /// latents: encoder outputs (`z_channels`), quantized first as the
    /// VQGAN does, or, with `quantized`, codebook vectors (`embed_dim`).
    ///
    /// # Errors
    /// [`VqganError::NoDecoder`] for an encoder-only file;
    /// [`VqganError::Input`] for latents of the wrong shape or past
    /// [`MAX_SIZE_FACTOR`]; the backend's errors.
    pub fn decode(&self, latents: Array4<f32>, quantized: bool) -> Result<Array4<f32>, B::Error> {
        let (Some(post), Some(decoder)) = (&self.net.post_quant_conv, &self.net.decoder) else {
            return Err(VqganError::NoDecoder.into());
        };
        let channels = if quantized {
            self.config.embed_dim
        } else {
            self.config.encoder_out_channels()
        };
        Self::check_input(&latents, channels, 1, "latents")?;
        self.check_size(&latents, self.config.resolution / self.config.factor(), "latents")?;
        let zq = if quantized { latents } else { self.quantize(latents)? };
        let z = self.ops.conv2d(&self.ops.upload(zq)?, post)?;
        let x = decoder.decode(&self.ops, &z)?;
        self.ops.download(&x)
    }
}

impl Vqgan<cpu::CpuOps> {
    /// Loads a safetensors VQGAN for the CPU backend.
    ///
    /// # Errors
    /// As [`Vqgan::new`], plus [`VqganError::File`] for an unreadable file.
    pub fn load_cpu(path: &Path, preset: Option<&str>) -> Result<Self, VqganError> {
        let dict = StateDict::read(path)?;
        Vqgan::new(cpu::CpuOps, &dict, preset, Ok, Ok)
    }
}
