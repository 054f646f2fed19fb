//! The VQGAN's structure: encoder, decoder, the 1x1 convolutions around the
//! quantizer and the codebook, with taming's tensor names. The structure is
//! generic over how a convolution (`C`) and a GroupNorm (`N`) are held, so the
//! same tree holds host weights ([`ConvParams`], [`NormParams`], as loaded)
//! and, after [`Network::map`], a backend's resident copies.

use super::config::VqganConfig;
use super::VqganError;
use crate::nn::{StateDict, WeightProblem};
use std::collections::BTreeSet;

/// Zero padding added before a convolution, in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Padding {
    /// Rows above.
    pub top: usize,
    /// Columns to the left.
    pub left: usize,
    /// Rows below.
    pub bottom: usize,
    /// Columns to the right.
    pub right: usize,
}

impl Padding {
    /// The same padding on every side.
    pub fn same(p: usize) -> Self {
        Padding {
            top: p,
            left: p,
            bottom: p,
            right: p,
        }
    }
}

/// A 2-D convolution's weights and geometry on the host.
///
/// Invariant: `weight.len() == out_channels * in_channels * kernel * kernel`
/// (PyTorch's `OIHW` order) and `bias.len() == out_channels`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvParams {
    /// The tensor name prefix (`encoder.conv_in`).
    pub name: String,
    /// Output channels.
    pub out_channels: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Square kernel side.
    pub kernel: usize,
    /// Stride on both axes.
    pub stride: usize,
    /// Zero padding.
    pub padding: Padding,
    /// Weights, `out x in x k x k`, row-major.
    pub weight: Vec<f32>,
    /// One bias per output channel.
    pub bias: Vec<f32>,
}

impl ConvParams {
    /// The output side for an input side (`None` when nothing fits).
    pub fn output_size(&self, height: usize, width: usize) -> Option<(usize, usize)> {
        let h = height + self.padding.top + self.padding.bottom;
        let w = width + self.padding.left + self.padding.right;
        if h < self.kernel || w < self.kernel {
            return None;
        }
        Some(((h - self.kernel) / self.stride + 1, (w - self.kernel) / self.stride + 1))
    }
}

/// A GroupNorm's affine parameters on the host (32 groups, eps 1e-6).
///
/// Invariant: `gamma.len() == beta.len() == channels`, a multiple of 32.
#[derive(Clone, Debug, PartialEq)]
pub struct NormParams {
    /// The tensor name prefix (`encoder.norm_out`).
    pub name: String,
    /// Channels normalised.
    pub channels: usize,
    /// Scale per channel.
    pub gamma: Vec<f32>,
    /// Shift per channel.
    pub beta: Vec<f32>,
}

/// taming's `ResnetBlock`: norm, swish, 3x3 conv, norm, swish, 3x3 conv, plus
/// a 1x1 `nin_shortcut` when the channel count changes.
#[derive(Clone, Debug)]
pub struct ResnetBlock<C, N> {
    /// First norm.
    pub norm1: N,
    /// First convolution.
    pub conv1: C,
    /// Second norm.
    pub norm2: N,
    /// Second convolution.
    pub conv2: C,
    /// The shortcut projection, when channels change.
    pub nin_shortcut: Option<C>,
}

/// taming's `AttnBlock`: single-head self-attention over the positions, with
/// 1x1 convolutions for q, k, v and the output projection.
#[derive(Clone, Debug)]
pub struct AttnBlock<C, N> {
    /// The norm before q, k, v.
    pub norm: N,
    /// Query projection.
    pub q: C,
    /// Key projection.
    pub k: C,
    /// Value projection.
    pub v: C,
    /// Output projection.
    pub proj_out: C,
}

/// One resolution level: its blocks, the attention after each block (empty
/// or one per block), and the resampling convolution (`Downsample` in the
/// encoder, `Upsample` in the decoder) unless it is the last level.
#[derive(Clone, Debug)]
pub struct Level<C, N> {
    /// The ResNet blocks, in order.
    pub blocks: Vec<ResnetBlock<C, N>>,
    /// Attention after block `j`, when the level attends.
    pub attns: Vec<AttnBlock<C, N>>,
    /// The resampling convolution.
    pub resample: Option<C>,
}

/// The middle block: ResNet, attention, ResNet.
#[derive(Clone, Debug)]
pub struct Mid<C, N> {
    /// First block.
    pub block_1: ResnetBlock<C, N>,
    /// Attention.
    pub attn_1: AttnBlock<C, N>,
    /// Second block.
    pub block_2: ResnetBlock<C, N>,
}

/// The encoder (image to latent) or the decoder (latent to image): an input
/// convolution, levels, the mid block, a norm, swish and an output
/// convolution. The encoder runs `levels` then `mid`; the decoder runs `mid`
/// then `levels` from last to first (taming's `up` list is indexed by level).
#[derive(Clone, Debug)]
pub struct Coder<C, N> {
    /// `conv_in`.
    pub conv_in: C,
    /// `down` (encoder) or `up` (decoder), indexed by level.
    pub levels: Vec<Level<C, N>>,
    /// `mid`.
    pub mid: Mid<C, N>,
    /// `norm_out`.
    pub norm_out: N,
    /// `conv_out`.
    pub conv_out: C,
}

/// The whole VQGAN. The quantizer (`quant_conv`, `codebook`) and the
/// decoder half (`post_quant_conv`, `decoder`) are optional: an
/// encoder-only file encodes (its quantizer, when present, also gives the
/// codebook vectors). Invariant: a network with a decoder has a quantizer.
#[derive(Clone, Debug)]
pub struct Network<C, N> {
    /// The encoder.
    pub encoder: Coder<C, N>,
    /// The 1x1 convolution from the latent to the codebook dimension.
    pub quant_conv: Option<C>,
    /// The codebook, `n_embed x embed_dim`, row-major.
    pub codebook: Option<Vec<f32>>,
    /// The 1x1 convolution from the codebook dimension back to `z_channels`.
    pub post_quant_conv: Option<C>,
    /// The decoder.
    pub decoder: Option<Coder<C, N>>,
}

/// Reads named tensors out of a state dict as `f32`, recording every missing
/// or mis-shaped tensor instead of stopping at the first.
struct Loader<'a> {
    dict: &'a StateDict,
    used: BTreeSet<String>,
    problems: Vec<WeightProblem>,
}

impl<'a> Loader<'a> {
    /// The tensor `name` as `f32`; empty when it is missing or misshaped
    /// (recorded as a problem: a network with problems is never used, and
    /// nothing is allocated from a shape a config declares but no tensor
    /// backs).
    fn tensor(&mut self, name: &str, shape: &[usize]) -> Vec<f32> {
        self.used.insert(name.to_string());
        let Some(t) = self.dict.get(name) else {
            self.problems.push(WeightProblem::Missing {
                name: name.into(),
                shape: shape.to_vec(),
            });
            return Vec::new();
        };
        if t.shape() != shape {
            self.problems.push(WeightProblem::Shape {
                name: name.into(),
                expected: shape.to_vec(),
                found: t.shape().to_vec(),
            });
            return Vec::new();
        }
        if let Some(v) = t.data().iter().find(|v| !v.is_finite()) {
            self.problems.push(WeightProblem::Value {
                name: name.into(),
                reason: format!("holds {v}"),
            });
        }
        t.data().iter().map(|&v| v as f32).collect()
    }

    fn conv(
        &mut self,
        name: &str,
        out: usize,
        inp: usize,
        kernel: usize,
        stride: usize,
        padding: Padding,
    ) -> ConvParams {
        ConvParams {
            name: name.into(),
            out_channels: out,
            in_channels: inp,
            kernel,
            stride,
            padding,
            weight: self.tensor(&format!("{name}.weight"), &[out, inp, kernel, kernel]),
            bias: self.tensor(&format!("{name}.bias"), &[out]),
        }
    }

    fn conv3(&mut self, name: &str, out: usize, inp: usize) -> ConvParams {
        self.conv(name, out, inp, 3, 1, Padding::same(1))
    }

    fn conv1(&mut self, name: &str, out: usize, inp: usize) -> ConvParams {
        self.conv(name, out, inp, 1, 1, Padding::same(0))
    }

    fn norm(&mut self, name: &str, channels: usize) -> NormParams {
        NormParams {
            name: name.into(),
            channels,
            gamma: self.tensor(&format!("{name}.weight"), &[channels]),
            beta: self.tensor(&format!("{name}.bias"), &[channels]),
        }
    }

    fn resnet(&mut self, name: &str, inp: usize, out: usize) -> ResnetBlock<ConvParams, NormParams> {
        ResnetBlock {
            norm1: self.norm(&format!("{name}.norm1"), inp),
            conv1: self.conv3(&format!("{name}.conv1"), out, inp),
            norm2: self.norm(&format!("{name}.norm2"), out),
            conv2: self.conv3(&format!("{name}.conv2"), out, out),
            nin_shortcut: (inp != out).then(|| self.conv1(&format!("{name}.nin_shortcut"), out, inp)),
        }
    }

    fn attn(&mut self, name: &str, c: usize) -> AttnBlock<ConvParams, NormParams> {
        AttnBlock {
            norm: self.norm(&format!("{name}.norm"), c),
            q: self.conv1(&format!("{name}.q"), c, c),
            k: self.conv1(&format!("{name}.k"), c, c),
            v: self.conv1(&format!("{name}.v"), c, c),
            proj_out: self.conv1(&format!("{name}.proj_out"), c, c),
        }
    }

    fn mid(&mut self, name: &str, c: usize) -> Mid<ConvParams, NormParams> {
        Mid {
            block_1: self.resnet(&format!("{name}.block_1"), c, c),
            attn_1: self.attn(&format!("{name}.attn_1"), c),
            block_2: self.resnet(&format!("{name}.block_2"), c, c),
        }
    }

    fn encoder(&mut self, cfg: &VqganConfig) -> Coder<ConvParams, NormParams> {
        let conv_in = self.conv3("encoder.conv_in", cfg.ch, cfg.in_channels);
        let mut block_in = cfg.ch;
        let mut levels = Vec::new();
        for level in 0..cfg.ch_mult.len() {
            let out = cfg.level_channels(level);
            let mut blocks = Vec::new();
            let mut attns = Vec::new();
            for j in 0..cfg.num_res_blocks {
                blocks.push(self.resnet(&format!("encoder.down.{level}.block.{j}"), block_in, out));
                block_in = out;
                if cfg.attends_at(level) {
                    attns.push(self.attn(&format!("encoder.down.{level}.attn.{j}"), out));
                }
            }
            let resample = (level + 1 < cfg.ch_mult.len()).then(|| {
                let padding = Padding {
                    top: 0,
                    left: 0,
                    bottom: 1,
                    right: 1,
                };
                self.conv(
                    &format!("encoder.down.{level}.downsample.conv"),
                    out,
                    out,
                    3,
                    2,
                    padding,
                )
            });
            levels.push(Level {
                blocks,
                attns,
                resample,
            });
        }
        Coder {
            conv_in,
            levels,
            mid: self.mid("encoder.mid", block_in),
            norm_out: self.norm("encoder.norm_out", block_in),
            conv_out: self.conv3("encoder.conv_out", cfg.encoder_out_channels(), block_in),
        }
    }

    fn decoder(&mut self, cfg: &VqganConfig) -> Coder<ConvParams, NormParams> {
        let top = cfg.ch_mult.len() - 1;
        let mut block_in = cfg.level_channels(top);
        let conv_in = self.conv3("decoder.conv_in", block_in, cfg.z_channels);
        let mid = self.mid("decoder.mid", block_in);
        let mut levels = Vec::new();
        for level in (0..=top).rev() {
            let out = cfg.level_channels(level);
            let mut blocks = Vec::new();
            let mut attns = Vec::new();
            for j in 0..=cfg.num_res_blocks {
                blocks.push(self.resnet(&format!("decoder.up.{level}.block.{j}"), block_in, out));
                block_in = out;
                if cfg.attends_at(level) {
                    attns.push(self.attn(&format!("decoder.up.{level}.attn.{j}"), out));
                }
            }
            let resample = (level > 0).then(|| self.conv3(&format!("decoder.up.{level}.upsample.conv"), out, out));
            levels.push(Level {
                blocks,
                attns,
                resample,
            });
        }
        levels.reverse();
        Coder {
            conv_in,
            levels,
            mid,
            norm_out: self.norm("decoder.norm_out", block_in),
            conv_out: self.conv3("decoder.conv_out", cfg.out_ch, block_in),
        }
    }
}

impl Network<ConvParams, NormParams> {
    /// Reads the network `cfg` describes out of a taming state dict. Tensors
    /// outside `encoder.`, `decoder.`, `quant_conv.`, `post_quant_conv.` and
    /// `quantize.` (a checkpoint's discriminator under `loss.`, say) are
    /// ignored; the decoder half is loaded when `decoder.conv_in.weight` is
    /// present, the quantizer when `quant_conv.weight` or the decoder is.
    ///
    /// # Errors
    /// [`VqganError::Config`] for an invalid `cfg`; [`VqganError::Weights`]
    /// listing every missing, mis-shaped, non-finite or unexpected tensor.
    pub fn load(dict: &StateDict, cfg: &VqganConfig) -> Result<Self, VqganError> {
        cfg.validate()?;
        let has_decoder = dict.get("decoder.conv_in.weight").is_some();
        let has_quantizer = has_decoder || dict.get("quant_conv.weight").is_some();
        let (net, mut loader) = Self::read(dict, cfg, has_quantizer, has_decoder);
        let ours = ["encoder.", "decoder.", "quant_conv.", "post_quant_conv.", "quantize."];
        for (name, tensor) in dict.iter() {
            if ours.iter().any(|p| name.starts_with(p)) && !loader.used.contains(name) {
                loader.problems.push(WeightProblem::Extra {
                    name: name.into(),
                    shape: tensor.shape().to_vec(),
                });
            }
        }
        if !loader.problems.is_empty() {
            return Err(VqganError::Weights {
                config: cfg.summary(),
                problems: loader.problems,
            });
        }
        Ok(net)
    }

    /// Reads every tensor `cfg` needs (the quantizer when `quantizer`, the
    /// decoder half when `decoder`), leaving the problems in the returned
    /// loader.
    fn read<'a>(dict: &'a StateDict, cfg: &VqganConfig, quantizer: bool, decoder: bool) -> (Self, Loader<'a>) {
        let mut loader = Loader {
            dict,
            used: BTreeSet::new(),
            problems: Vec::new(),
        };
        let net = Network {
            encoder: loader.encoder(cfg),
            quant_conv: quantizer.then(|| loader.conv1("quant_conv", cfg.embed_dim, cfg.encoder_out_channels())),
            codebook: quantizer.then(|| loader.tensor("quantize.embedding.weight", &[cfg.n_embed, cfg.embed_dim])),
            post_quant_conv: decoder.then(|| loader.conv1("post_quant_conv", cfg.z_channels, cfg.embed_dim)),
            decoder: decoder.then(|| loader.decoder(cfg)),
        };
        (net, loader)
    }

    /// The names and shapes of the tensors a state dict for `cfg` holds
    /// (the decoder half too when `decoder`), in loading order.
    pub fn expected_tensors(cfg: &VqganConfig, decoder: bool) -> Vec<(String, Vec<usize>)> {
        let empty = StateDict::new();
        let (_, loader) = Self::read(&empty, cfg, true, decoder);
        loader
            .problems
            .into_iter()
            .filter_map(|p| match p {
                WeightProblem::Missing { name, shape } => Some((name, shape)),
                _ => None,
            })
            .collect()
    }
}

impl<C, N> ResnetBlock<C, N> {
    fn map<C2, N2, E>(
        self,
        fc: &mut impl FnMut(C) -> Result<C2, E>,
        fnorm: &mut impl FnMut(N) -> Result<N2, E>,
    ) -> Result<ResnetBlock<C2, N2>, E> {
        Ok(ResnetBlock {
            norm1: fnorm(self.norm1)?,
            conv1: fc(self.conv1)?,
            norm2: fnorm(self.norm2)?,
            conv2: fc(self.conv2)?,
            nin_shortcut: self.nin_shortcut.map(&mut *fc).transpose()?,
        })
    }
}

impl<C, N> AttnBlock<C, N> {
    fn map<C2, N2, E>(
        self,
        fc: &mut impl FnMut(C) -> Result<C2, E>,
        fnorm: &mut impl FnMut(N) -> Result<N2, E>,
    ) -> Result<AttnBlock<C2, N2>, E> {
        Ok(AttnBlock {
            norm: fnorm(self.norm)?,
            q: fc(self.q)?,
            k: fc(self.k)?,
            v: fc(self.v)?,
            proj_out: fc(self.proj_out)?,
        })
    }
}

impl<C, N> Coder<C, N> {
    fn map<C2, N2, E>(
        self,
        fc: &mut impl FnMut(C) -> Result<C2, E>,
        fnorm: &mut impl FnMut(N) -> Result<N2, E>,
    ) -> Result<Coder<C2, N2>, E> {
        let mut levels = Vec::with_capacity(self.levels.len());
        for level in self.levels {
            levels.push(Level {
                blocks: level
                    .blocks
                    .into_iter()
                    .map(|b| b.map(fc, fnorm))
                    .collect::<Result<_, E>>()?,
                attns: level
                    .attns
                    .into_iter()
                    .map(|a| a.map(fc, fnorm))
                    .collect::<Result<_, E>>()?,
                resample: level.resample.map(&mut *fc).transpose()?,
            });
        }
        Ok(Coder {
            conv_in: fc(self.conv_in)?,
            levels,
            mid: Mid {
                block_1: self.mid.block_1.map(fc, fnorm)?,
                attn_1: self.mid.attn_1.map(fc, fnorm)?,
                block_2: self.mid.block_2.map(fc, fnorm)?,
            },
            norm_out: fnorm(self.norm_out)?,
            conv_out: fc(self.conv_out)?,
        })
    }
}

impl<C, N> Network<C, N> {
    /// The same network with every convolution and norm converted (uploaded
    /// to a device, say); stops at the first error.
    pub fn map<C2, N2, E>(
        self,
        mut fc: impl FnMut(C) -> Result<C2, E>,
        mut fnorm: impl FnMut(N) -> Result<N2, E>,
    ) -> Result<Network<C2, N2>, E> {
        Ok(Network {
            encoder: self.encoder.map(&mut fc, &mut fnorm)?,
            quant_conv: self.quant_conv.map(&mut fc).transpose()?,
            codebook: self.codebook,
            post_quant_conv: self.post_quant_conv.map(&mut fc).transpose()?,
            decoder: self.decoder.map(|d| d.map(&mut fc, &mut fnorm)).transpose()?,
        })
    }
}
