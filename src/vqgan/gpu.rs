//! The GPU backend of the VQGAN: [`GpuOps`] runs every operation of
//! [`NetOps`] as WGSL compute kernels (`shaders/vqgan_*.wgsl`) on f32 storage
//! buffers, batched over the images of a batch. Every intermediate tensor
//! stays on the device; only what [`NetOps::download`] asks for comes back.
//!
//! - Convolution is a tiled implicit GEMM (64 output pixels x 64 output
//!   channels per workgroup, a 4 x 4 micro-tile per invocation, the
//!   `in_channels * k * k` loop staged through workgroup memory), any kernel,
//!   stride and padding; 1x1 convolutions read the input as a plain matrix.
//!   Nearest 2x upsampling is lazy: [`NetOps::upsample_nearest`] returns a
//!   view of its input, which a convolution reads through (the decoder's
//!   upsample + conv never holds the wide tensor) and any other operation
//!   materialises first.
//! - GroupNorm: one workgroup per (image, group), two passes in f32 with
//!   tree reductions, then the affine map and swish.
//! - Attention: per block of queries, the scores of the block (the strided
//!   GEMM, scaled), a softmax per query, then `v` times the block (the
//!   strided GEMM again): the score buffer holds at most
//!   [`SCORE_BUDGET_BYTES`], whatever the number of positions.
//! - Tensors larger than one storage binding are processed in dispatches of
//!   as many images as fit, each binding the images' sub-range of the buffer.
//! - Activation buffers come from a pool keyed by size and return to it when
//!   their last tensor is dropped, so a forward pass allocates each size
//!   about as many times as it is live at once.

use super::network::{ConvParams, NormParams, Padding};
use super::ops::NetOps;
use super::{cpu, Vqgan, VqganError};
use crate::backend::gpu::commands::{entry, CommandRecorder, DeviceBuffer, IdleLimit};
use crate::backend::gpu::shaders::TensorKernelFile;
use crate::backend::gpu::{GpuContext, GpuError};
use crate::nn::StateDict;
use bytemuck::{Pod, Zeroable};
use ndarray::Array4;
use std::path::Path;
use std::sync::Arc;
use thiserror::Error;
use wgpu::util::DeviceExt;

/// The most bytes attention's score block takes (per dispatch, over its
/// images), unless one block of 64 queries needs more.
pub const SCORE_BUDGET_BYTES: usize = 64 << 20;

/// Output pixels (and channels) per GEMM workgroup (`TILE` in the shader).
const GEMM_TILE: usize = 64;
/// Invocations per workgroup of the element-wise and softmax kernels.
const WORKGROUP: usize = 256;
/// Largest workgroup count in one dispatch dimension (WebGPU's minimum limit).
const MAX_GROUPS_PER_DIM: usize = 65535;

/// What the GPU backend can fail with.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum VqganGpuError {
    /// The network, its weights or an input (shapes, values).
    #[error(transparent)]
    Vqgan(#[from] VqganError),
    /// The device: no adapter, a validation error, out of memory, device
    /// loss, or a tensor too large for the adapter's buffers.
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

/// A batch on the device, `N x C x H x W` f32 in NCHW order.
///
/// Invariant: the buffer holds exactly `N * C * H * W` values, or, for a
/// lazily upsampled view, `N * C * (H / 2) * (W / 2)` values whose nearest
/// 2x upsampling is the tensor (`H`, `W` even). Buffers may be shared with
/// the tensor a view was made from; no operation writes a shared buffer.
pub struct GpuTensor {
    storage: DeviceBuffer,
    shape: [usize; 4],
    upsampled: bool,
}

impl GpuTensor {
    /// The shape `[N, C, H, W]`.
    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }

    /// The shape of what the buffer holds.
    fn stored_shape(&self) -> [usize; 4] {
        let [n, c, h, w] = self.shape;
        if self.upsampled {
            [n, c, h / 2, w / 2]
        } else {
            self.shape
        }
    }

    fn buffer(&self) -> &wgpu::Buffer {
        &self.storage
    }
}

/// A convolution resident on the device.
///
/// Invariant: `weight` holds the `K x out_channels` transpose of the
/// PyTorch `out x in x k x k` weights (`K = in_channels * k * k`, row
/// `(ci * k + ky) * k + kx`), `bias` the `out_channels` biases.
pub struct GpuConv {
    name: String,
    out_channels: usize,
    in_channels: usize,
    kernel: usize,
    stride: usize,
    padding: Padding,
    weight: wgpu::Buffer,
    bias: wgpu::Buffer,
}

/// A GroupNorm resident on the device.
///
/// Invariant: `affine` holds the `channels` scales, then the `channels`
/// shifts; `channels` is a multiple of the group count.
pub struct GpuNorm {
    name: String,
    channels: usize,
    affine: wgpu::Buffer,
}

/// Host mirror of `Gemm` in `shaders/vqgan_gemm.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct GemmShape {
    m: u32,
    n: u32,
    k: u32,
    alpha: f32,
    a_off: u32,
    a_ks: u32,
    a_ms: u32,
    a_bs: u32,
    b_off: u32,
    b_ks: u32,
    b_ns: u32,
    b_bs: u32,
    c_off: u32,
    c_ns: u32,
    c_bs: u32,
    has_bias: u32,
    in_h: u32,
    in_w: u32,
    up: u32,
    out_w: u32,
    kernel: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
}

/// Host mirror of `Norm` in `shaders/vqgan_norm.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct NormShape {
    channels: u32,
    hw: u32,
    per_group: u32,
    swish: u32,
    in_off: u32,
    out_off: u32,
    eps: f32,
    pad: u32,
}

/// Host mirror of `Elementwise` in `shaders/vqgan_elementwise.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct ElementwiseShape {
    count: u32,
    a_off: u32,
    b_off: u32,
    h: u32,
    w: u32,
    rows: u32,
    batch: u32,
    pad: u32,
}

/// Which operand layout the GEMM kernel reads (its `MODE` override).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GemmMode {
    /// A is the implicit im2col of a convolution's input.
    Conv = 0,
    /// A is a strided matrix.
    Strided = 1,
}

/// The compiled kernels.
struct Pipelines {
    gemm_conv: wgpu::ComputePipeline,
    gemm_strided: wgpu::ComputePipeline,
    group_norm: wgpu::ComputePipeline,
    add: wgpu::ComputePipeline,
    upsample: wgpu::ComputePipeline,
    softmax: wgpu::ComputePipeline,
}

struct Shared {
    ctx: Arc<GpuContext>,
    commands: CommandRecorder,
    pipelines: Pipelines,
    /// Bytes one storage binding may span (at most 2 GiB, so that element
    /// indices fit a `u32`).
    binding_limit: usize,
    /// Alignment of a storage binding's offset, in bytes.
    offset_align: usize,
}

/// The VQGAN's operations on a wgpu device. Cloning is cheap and shares the
/// device, kernels, pending commands and buffer pool.
///
/// Invariant: every tensor, convolution and norm it is handed was made by a
/// `GpuOps` on the same device (the types cannot be made otherwise).
#[derive(Clone)]
pub struct GpuOps {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for GpuOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuOps").field("ctx", &self.shared.ctx).finish()
    }
}

/// A binding of a sub-range of a buffer and the element offset, within the
/// binding, of the range's first value (the binding starts at the aligned
/// offset at or below it).
struct Range<'a> {
    binding: wgpu::BufferBinding<'a>,
    offset: u32,
}

impl Range<'_> {
    fn entry(&self, binding: u32) -> wgpu::BindGroupEntry<'_> {
        wgpu::BindGroupEntry {
            binding,
            resource: wgpu::BindingResource::Buffer(self.binding.clone()),
        }
    }
}

/// `usize` to the shaders' `u32`; every value passed fits, as the sizes
/// were checked against a binding of at most 2 GiB.
fn u32_of(v: usize) -> u32 {
    debug_assert!(u32::try_from(v).is_ok());
    v as u32
}

impl GpuOps {
    /// Compiles the kernels on `ctx`'s device.
    ///
    /// # Errors
    /// [`GpuError::Runtime`] on a shader or pipeline error.
    pub fn new(ctx: &Arc<GpuContext>) -> Result<Self, GpuError> {
        Self::with_binding_limit(ctx, usize::MAX)
    }

    /// As [`Self::new`], binding at most `limit` bytes of a tensor per
    /// dispatch (the adapter's `max_storage_buffer_binding_size` and 2 GiB
    /// at most): batches whose tensors exceed it run in several dispatches,
    /// and attention's score blocks shrink to fit. A smaller limit bounds
    /// what one dispatch touches; too small a limit for one image's tensor
    /// makes operations fail with [`GpuError::TooLarge`].
    ///
    /// # Errors
    /// [`GpuError::Runtime`] on a shader or pipeline error.
    pub fn with_binding_limit(ctx: &Arc<GpuContext>, limit: usize) -> Result<Self, GpuError> {
        let commands = CommandRecorder::new(ctx, IdleLimit::Unbounded);
        let module = |file: TensorKernelFile| {
            ctx.device().create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(file.name()),
                source: wgpu::ShaderSource::Wgsl(file.source().into()),
            })
        };
        let gemm = module(TensorKernelFile::Gemm);
        let norm = module(TensorKernelFile::GroupNorm);
        let elementwise = module(TensorKernelFile::Elementwise);
        let mode = |m: GemmMode| [("MODE", f64::from(m as u32))];
        let pipelines = Pipelines {
            gemm_conv: commands.pipeline(&gemm, "gemm", &mode(GemmMode::Conv)),
            gemm_strided: commands.pipeline(&gemm, "gemm", &mode(GemmMode::Strided)),
            group_norm: commands.pipeline(&norm, "group_norm", &[]),
            add: commands.pipeline(&elementwise, "add", &[]),
            upsample: commands.pipeline(&elementwise, "upsample", &[]),
            softmax: commands.pipeline(&elementwise, "softmax", &[]),
        };
        ctx.finish()?;
        ctx.save_pipeline_cache();
        let limits = ctx.limits();
        let adapter_limit = usize::try_from(limits.max_storage_buffer_binding_size).unwrap_or(usize::MAX);
        let offset_align = limits.min_storage_buffer_offset_alignment.max(4) as usize;
        let binding_limit = adapter_limit.min(1 << 31).min(limit).max(2 * offset_align);
        Ok(GpuOps {
            shared: Arc::new(Shared {
                ctx: ctx.clone(),
                commands,
                pipelines,
                binding_limit,
                offset_align,
            }),
        })
    }

    /// The device context.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.shared.ctx
    }

    /// A storage buffer holding `data`, checked against one binding.
    fn upload_weights(&self, what: &'static str, data: &[f32]) -> Result<wgpu::Buffer, GpuError> {
        let bytes = 4 * data.len().max(1);
        if bytes > self.shared.binding_limit {
            return Err(GpuError::TooLarge {
                what,
                bytes: bytes as u64,
                limit: self.shared.binding_limit as u64,
            });
        }
        let contents: &[f32] = if data.is_empty() { &[0.0] } else { data };
        Ok(self
            .shared
            .ctx
            .device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(what),
                contents: bytemuck::cast_slice(contents),
                usage: wgpu::BufferUsages::STORAGE,
            }))
    }

    /// Moves a convolution's weights to the device (transposed to
    /// `K x out_channels`, see [`GpuConv`]).
    ///
    /// # Errors
    /// [`VqganError::Shape`] when the weights or biases do not have the
    /// lengths the geometry implies; [`GpuError::TooLarge`] for weights
    /// beyond one storage binding.
    pub fn upload_conv(&self, p: ConvParams) -> Result<GpuConv, VqganGpuError> {
        let depth = p.in_channels * p.kernel * p.kernel;
        if p.weight.len() != p.out_channels * depth || p.bias.len() != p.out_channels || p.kernel == 0 || p.stride == 0
        {
            return Err(VqganError::Shape {
                layer: p.name,
                found: vec![p.weight.len(), p.bias.len()],
                reason: format!(
                    "a {0}x{0} stride-{1} convolution {2} -> {3} needs {4} weights and {3} biases",
                    p.kernel,
                    p.stride,
                    p.in_channels,
                    p.out_channels,
                    p.out_channels * depth
                ),
            }
            .into());
        }
        let mut transposed = vec![0.0f32; p.weight.len()];
        for (co, row) in p.weight.chunks(depth.max(1)).enumerate() {
            for (k, &v) in row.iter().enumerate() {
                transposed[k * p.out_channels + co] = v;
            }
        }
        Ok(GpuConv {
            weight: self.upload_weights("convolution weights", &transposed)?,
            bias: self.upload_weights("convolution biases", &p.bias)?,
            name: p.name,
            out_channels: p.out_channels,
            in_channels: p.in_channels,
            kernel: p.kernel,
            stride: p.stride,
            padding: p.padding,
        })
    }

    /// Moves a GroupNorm's scales and shifts to the device.
    ///
    /// # Errors
    /// [`VqganError::Shape`] when the channels are not a positive multiple
    /// of the group count or the affine vectors do not have that length.
    pub fn upload_norm(&self, p: NormParams) -> Result<GpuNorm, VqganGpuError> {
        let groups = super::config::NORM_GROUPS;
        if p.channels == 0
            || !p.channels.is_multiple_of(groups)
            || p.gamma.len() != p.channels
            || p.beta.len() != p.channels
        {
            return Err(VqganError::Shape {
                layer: p.name,
                found: vec![p.channels, p.gamma.len(), p.beta.len()],
                reason: format!(
                    "GroupNorm needs a positive multiple of {groups} channels and one scale and shift each"
                ),
            }
            .into());
        }
        let affine: Vec<f32> = p.gamma.iter().chain(&p.beta).copied().collect();
        Ok(GpuNorm {
            affine: self.upload_weights("GroupNorm affine", &affine)?,
            name: p.name,
            channels: p.channels,
        })
    }

    /// A tensor of `shape` with unspecified contents: a pooled buffer of
    /// its size, or a fresh one.
    fn alloc(&self, shape: [usize; 4]) -> Result<GpuTensor, GpuError> {
        let bytes = 4 * shape.iter().product::<usize>();
        let limit = self.shared.ctx.limits().max_buffer_size;
        if bytes as u64 > limit {
            return Err(GpuError::TooLarge {
                what: "a VQGAN activation",
                bytes: bytes as u64,
                limit,
            });
        }
        Ok(Self::wrap(self.shared.commands.storage(bytes as u64), shape))
    }

    fn wrap(storage: DeviceBuffer, shape: [usize; 4]) -> GpuTensor {
        GpuTensor {
            storage,
            shape,
            upsampled: false,
        }
    }

    /// Binds `len` values of `buffer` from value `start`.
    fn range<'a>(&self, buffer: &'a wgpu::Buffer, start: usize, len: usize) -> Range<'a> {
        let begin = 4 * start / self.shared.offset_align * self.shared.offset_align;
        let end = 4 * (start + len);
        Range {
            binding: wgpu::BufferBinding {
                buffer,
                offset: begin as u64,
                size: wgpu::BufferSize::new((end - begin) as u64),
            },
            offset: u32_of(start - begin / 4),
        }
    }

    /// Images per dispatch such that `per_image` values of every operand
    /// (one entry per bound tensor) fit one binding, alignment slack included.
    ///
    /// # Errors
    /// [`GpuError::TooLarge`] when one image of some operand does not fit.
    fn images_per_dispatch(&self, images: usize, per_image: &[usize]) -> Result<usize, GpuError> {
        let room = self.shared.binding_limit - self.shared.offset_align;
        let largest = per_image.iter().copied().max().unwrap_or(1).max(1);
        if 4 * largest > room {
            return Err(GpuError::TooLarge {
                what: "one image of a VQGAN activation",
                bytes: 4 * largest as u64 + self.shared.offset_align as u64,
                limit: self.shared.binding_limit as u64,
            });
        }
        Ok((room / (4 * largest)).min(images).min(MAX_GROUPS_PER_DIM))
    }

    /// A 2-D grid of 256-wide workgroups covering `count` invocations.
    fn flat_grid(count: usize) -> (u32, u32, u32) {
        let groups = count.div_ceil(WORKGROUP).max(1);
        let x = groups.min(MAX_GROUPS_PER_DIM);
        (u32_of(x), u32_of(groups.div_ceil(x)), 1)
    }

    /// Records one GEMM dispatch (see `shaders/vqgan_gemm.wgsl`) over
    /// `images` images.
    fn gemm(&self, mode: GemmMode, operands: [&Range<'_>; 4], shape: GemmShape, images: usize) {
        let pipeline = match mode {
            GemmMode::Conv => &self.shared.pipelines.gemm_conv,
            GemmMode::Strided => &self.shared.pipelines.gemm_strided,
        };
        let uniform = self.shared.commands.uniform(&shape);
        let [a, b, bias, c] = operands;
        let groups = (
            (shape.m as usize).div_ceil(GEMM_TILE),
            (shape.n as usize).div_ceil(GEMM_TILE),
        );
        self.shared.commands.dispatch(
            pipeline,
            &[a.entry(0), b.entry(1), bias.entry(2), c.entry(3), entry(4, &uniform)],
            (u32_of(groups.0), u32_of(groups.1), u32_of(images)),
        );
    }

    /// Checks that a GEMM grid of `m x n` fits the dispatch limits.
    fn check_grid(layer: &str, found: &[usize], m: usize, n: usize) -> Result<(), VqganError> {
        if m.div_ceil(GEMM_TILE) > MAX_GROUPS_PER_DIM || n.div_ceil(GEMM_TILE) > MAX_GROUPS_PER_DIM {
            return Err(VqganError::Shape {
                layer: layer.into(),
                found: found.to_vec(),
                reason: format!("more than {} positions per image", MAX_GROUPS_PER_DIM * GEMM_TILE),
            });
        }
        Ok(())
    }

    /// `x` itself, or, for a lazily upsampled view, its materialised copy
    /// (kept in `slot`).
    fn dense<'a>(&self, x: &'a GpuTensor, slot: &'a mut Option<GpuTensor>) -> Result<&'a GpuTensor, GpuError> {
        if x.upsampled {
            Ok(slot.insert(self.materialise(x)?))
        } else {
            Ok(x)
        }
    }

    /// The upsampling a view `x` stands for, in a buffer of its own.
    fn materialise(&self, x: &GpuTensor) -> Result<GpuTensor, GpuError> {
        debug_assert!(x.upsampled);
        let [n, c, h, w] = x.stored_shape();
        let out = self.alloc(x.shape)?;
        let per_image = c * h * w;
        let step = self.images_per_dispatch(n, &[per_image, 4 * per_image])?;
        for z0 in (0..n).step_by(step) {
            let images = step.min(n - z0);
            let dst = self.range(out.buffer(), 4 * z0 * per_image, 4 * images * per_image);
            let src = self.range(x.buffer(), z0 * per_image, images * per_image);
            let shape = ElementwiseShape {
                count: u32_of(4 * images * per_image),
                a_off: dst.offset,
                b_off: src.offset,
                h: u32_of(h),
                w: u32_of(w),
                ..Default::default()
            };
            let uniform = self.shared.commands.uniform(&shape);
            self.shared.commands.dispatch(
                &self.shared.pipelines.upsample,
                &[dst.entry(0), src.entry(1), entry(2, &uniform)],
                Self::flat_grid(4 * images * per_image),
            );
        }
        Ok(out)
    }

    /// The blocks of attention for images `z0..z0 + images`: for each block
    /// of `block` queries, scores, softmax, then the block's outputs.
    #[allow(clippy::too_many_arguments)] // the four operands and the geometry
    fn attention_images(
        &self,
        (q, k, v, out): (&GpuTensor, &GpuTensor, &GpuTensor, &GpuTensor),
        scores: &GpuTensor,
        (channels, positions): (usize, usize),
        block: usize,
        z0: usize,
        images: usize,
    ) {
        let span = channels * positions;
        let [q, k, v, out] = [q, k, v, out].map(|t| self.range(t.buffer(), z0 * span, images * span));
        let s = self.range(scores.buffer(), 0, images * positions * block);
        let scale = 1.0 / (channels as f32).sqrt();
        for q0 in (0..positions).step_by(block) {
            let m = block.min(positions - q0);
            // scores (positions x m) = k^T q_block / sqrt(C)
            let score_shape = GemmShape {
                m: u32_of(m),
                n: u32_of(positions),
                k: u32_of(channels),
                alpha: scale,
                a_off: q.offset + u32_of(q0),
                a_ks: u32_of(positions),
                a_ms: 1,
                a_bs: u32_of(span),
                b_off: k.offset,
                b_ks: u32_of(positions),
                b_ns: 1,
                b_bs: u32_of(span),
                c_off: s.offset,
                c_ns: u32_of(m),
                c_bs: u32_of(positions * m),
                ..Default::default()
            };
            self.gemm(GemmMode::Strided, [&q, &k, &k, &s], score_shape, images);
            let softmax = ElementwiseShape {
                count: u32_of(m),
                a_off: s.offset,
                rows: u32_of(positions),
                batch: u32_of(positions * m),
                ..Default::default()
            };
            let uniform = self.shared.commands.uniform(&softmax);
            self.shared.commands.dispatch(
                &self.shared.pipelines.softmax,
                &[s.entry(0), entry(2, &uniform)],
                (u32_of(m.div_ceil(WORKGROUP)), u32_of(images), 1),
            );
            // out block (C x m) = v (C x positions) * scores (positions x m)
            let out_shape = GemmShape {
                m: u32_of(m),
                n: u32_of(channels),
                k: u32_of(positions),
                alpha: 1.0,
                a_off: s.offset,
                a_ks: u32_of(m),
                a_ms: 1,
                a_bs: u32_of(positions * m),
                b_off: v.offset,
                b_ks: 1,
                b_ns: u32_of(positions),
                b_bs: u32_of(span),
                c_off: out.offset + u32_of(q0),
                c_ns: u32_of(positions),
                c_bs: u32_of(span),
                ..Default::default()
            };
            self.gemm(GemmMode::Strided, [&s, &v, &v, &out], out_shape, images);
        }
    }
}

impl NetOps for GpuOps {
    type Tensor = GpuTensor;
    type Conv = GpuConv;
    type Norm = GpuNorm;
    type Error = VqganGpuError;

    fn upload(&self, x: Array4<f32>) -> Result<GpuTensor, VqganGpuError> {
        let (n, c, h, w) = x.dim();
        if x.is_empty() {
            return Err(VqganError::Input(format!("cannot upload an empty batch of shape {:?}", x.shape())).into());
        }
        let limit = self.shared.ctx.limits().max_buffer_size;
        let bytes = 4 * x.len() as u64;
        if bytes > limit {
            return Err(GpuError::TooLarge {
                what: "an uploaded batch",
                bytes,
                limit,
            }
            .into());
        }
        let x = x.as_standard_layout();
        let values = x.as_slice().expect("standard layout");
        let buffer = self.shared.commands.upload(bytemuck::cast_slice(values));
        Ok(Self::wrap(buffer, [n, c, h, w]))
    }

    fn download(&self, x: &GpuTensor) -> Result<Array4<f32>, VqganGpuError> {
        let mut slot = None;
        let x = self.dense(x, &mut slot)?;
        let values: Vec<f32> = self.shared.commands.read_buffer(x.buffer(), 0, x.buffer().size())?;
        let [n, c, h, w] = x.shape;
        Array4::from_shape_vec((n, c, h, w), values)
            .map_err(|e| GpuError::Runtime(format!("read-back of {:?}: {e}", x.shape)).into())
    }

    fn conv2d(&self, x: &GpuTensor, conv: &GpuConv) -> Result<GpuTensor, VqganGpuError> {
        let [n, c, h, w] = x.shape;
        let [_, _, stored_h, stored_w] = x.stored_shape();
        let geometry = ConvParams {
            name: String::new(),
            out_channels: conv.out_channels,
            in_channels: conv.in_channels,
            kernel: conv.kernel,
            stride: conv.stride,
            padding: conv.padding,
            weight: Vec::new(),
            bias: Vec::new(),
        };
        let shape_error = || VqganError::Shape {
            layer: conv.name.clone(),
            found: x.shape.to_vec(),
            reason: format!(
                "expects {} channels and room for a {}x{} kernel",
                conv.in_channels, conv.kernel, conv.kernel
            ),
        };
        if c != conv.in_channels {
            return Err(shape_error().into());
        }
        let (oh, ow) = geometry.output_size(h, w).ok_or_else(shape_error)?;
        Self::check_grid(&conv.name, &x.shape, oh * ow, conv.out_channels)?;
        let out = self.alloc([n, conv.out_channels, oh, ow])?;
        let (in_span, out_span) = (c * stored_h * stored_w, conv.out_channels * oh * ow);
        let step = self.images_per_dispatch(n, &[in_span, out_span])?;
        let pointwise = conv.kernel == 1 && conv.stride == 1 && conv.padding == Padding::same(0) && !x.upsampled;
        let mode = if pointwise { GemmMode::Strided } else { GemmMode::Conv };
        let weight = self.range(&conv.weight, 0, (conv.weight.size() / 4) as usize);
        let bias = self.range(&conv.bias, 0, (conv.bias.size() / 4) as usize);
        for z0 in (0..n).step_by(step) {
            let images = step.min(n - z0);
            let src = self.range(x.buffer(), z0 * in_span, images * in_span);
            let dst = self.range(out.buffer(), z0 * out_span, images * out_span);
            let shape = GemmShape {
                m: u32_of(oh * ow),
                n: u32_of(conv.out_channels),
                k: u32_of(c * conv.kernel * conv.kernel),
                alpha: 1.0,
                a_off: src.offset,
                a_ks: u32_of(stored_h * stored_w),
                a_ms: 1,
                a_bs: u32_of(in_span),
                b_off: 0,
                b_ks: u32_of(conv.out_channels),
                b_ns: 1,
                b_bs: 0,
                c_off: dst.offset,
                c_ns: u32_of(oh * ow),
                c_bs: u32_of(out_span),
                has_bias: 1,
                in_h: u32_of(stored_h),
                in_w: u32_of(stored_w),
                up: u32::from(x.upsampled),
                out_w: u32_of(ow),
                kernel: u32_of(conv.kernel),
                stride: u32_of(conv.stride),
                pad_top: u32_of(conv.padding.top),
                pad_left: u32_of(conv.padding.left),
            };
            self.gemm(mode, [&src, &weight, &bias, &dst], shape, images);
        }
        Ok(out)
    }

    fn group_norm(&self, x: &GpuTensor, norm: &GpuNorm, swish: bool) -> Result<GpuTensor, VqganGpuError> {
        let mut slot = None;
        let x = self.dense(x, &mut slot)?;
        let [n, c, h, w] = x.shape;
        if c != norm.channels {
            return Err(VqganError::Shape {
                layer: norm.name.clone(),
                found: x.shape.to_vec(),
                reason: format!("expects {} channels", norm.channels),
            }
            .into());
        }
        let out = self.alloc(x.shape)?;
        let span = c * h * w;
        let step = self.images_per_dispatch(n, &[span])?;
        let groups = super::config::NORM_GROUPS;
        for z0 in (0..n).step_by(step) {
            let images = step.min(n - z0);
            let src = self.range(x.buffer(), z0 * span, images * span);
            let dst = self.range(out.buffer(), z0 * span, images * span);
            let shape = NormShape {
                channels: u32_of(c),
                hw: u32_of(h * w),
                per_group: u32_of(c / groups),
                swish: u32::from(swish),
                in_off: src.offset,
                out_off: dst.offset,
                eps: cpu::NORM_EPS as f32,
                pad: 0,
            };
            let uniform = self.shared.commands.uniform(&shape);
            self.shared.commands.dispatch(
                &self.shared.pipelines.group_norm,
                &[src.entry(0), dst.entry(1), entry(2, &norm.affine), entry(3, &uniform)],
                (u32_of(groups), u32_of(images), 1),
            );
        }
        Ok(out)
    }

    fn add(&self, a: GpuTensor, b: &GpuTensor) -> Result<GpuTensor, VqganGpuError> {
        if a.shape != b.shape {
            return Err(VqganError::Shape {
                layer: "add".into(),
                found: a.shape.to_vec(),
                reason: format!("cannot add {:?}", b.shape),
            }
            .into());
        }
        let mut b_slot = None;
        let b = self.dense(b, &mut b_slot)?;
        // The sum goes into `a`'s buffer unless another tensor shares it.
        let a = if a.upsampled {
            self.materialise(&a)?
        } else if Arc::strong_count(&a.storage) > 1 {
            let copy = self.alloc(a.shape)?;
            let size = a.buffer().size();
            self.shared
                .commands
                .record(|encoder| encoder.copy_buffer_to_buffer(a.buffer(), 0, copy.buffer(), 0, size));
            copy
        } else {
            a
        };
        let [n, c, h, w] = a.shape;
        let span = c * h * w;
        let step = self.images_per_dispatch(n, &[span])?;
        for z0 in (0..n).step_by(step) {
            let images = step.min(n - z0);
            let dst = self.range(a.buffer(), z0 * span, images * span);
            let src = self.range(b.buffer(), z0 * span, images * span);
            let shape = ElementwiseShape {
                count: u32_of(images * span),
                a_off: dst.offset,
                b_off: src.offset,
                ..Default::default()
            };
            let uniform = self.shared.commands.uniform(&shape);
            self.shared.commands.dispatch(
                &self.shared.pipelines.add,
                &[dst.entry(0), src.entry(1), entry(2, &uniform)],
                Self::flat_grid(images * span),
            );
        }
        Ok(a)
    }

    fn attention(&self, q: &GpuTensor, k: &GpuTensor, v: &GpuTensor) -> Result<GpuTensor, VqganGpuError> {
        if q.shape != k.shape || q.shape != v.shape {
            return Err(VqganError::Shape {
                layer: "attention".into(),
                found: q.shape.to_vec(),
                reason: format!("q, k and v differ: {:?}, {:?}, {:?}", q.shape, k.shape, v.shape),
            }
            .into());
        }
        let mut slots = [None, None, None];
        let [qs, ks, vs] = &mut slots;
        let (q, k, v) = (self.dense(q, qs)?, self.dense(k, ks)?, self.dense(v, vs)?);
        let [n, c, h, w] = q.shape;
        let positions = h * w;
        Self::check_grid("attention", &q.shape, positions, positions.max(c))?;
        // Queries per block: as many as the score budget holds, a multiple
        // of the GEMM tile, at least one tile.
        let budget = SCORE_BUDGET_BYTES.min(self.shared.binding_limit - self.shared.offset_align);
        let block = (budget / (4 * positions) / GEMM_TILE * GEMM_TILE)
            .max(GEMM_TILE)
            .min(positions);
        let images = self
            .images_per_dispatch(n, &[c * positions, positions * block])?
            .min((budget / (4 * positions * block)).max(1));
        let out = self.alloc(q.shape)?;
        let scores = self.alloc([images, 1, positions, block])?;
        for z0 in (0..n).step_by(images) {
            let count = images.min(n - z0);
            self.attention_images((q, k, v, &out), &scores, (c, positions), block, z0, count);
        }
        Ok(out)
    }

    fn upsample_nearest(&self, x: &GpuTensor) -> Result<GpuTensor, VqganGpuError> {
        let mut slot = None;
        let x = self.dense(x, &mut slot)?;
        let [n, c, h, w] = x.shape;
        Ok(GpuTensor {
            storage: x.storage.clone(),
            shape: [n, c, 2 * h, 2 * w],
            upsampled: true,
        })
    }
}

impl Vqgan<GpuOps> {
    /// Loads a safetensors VQGAN onto the device of `ctx`: the weights are
    /// uploaded once, every forward pass then runs on the device.
    ///
    /// # Errors
    /// As [`Vqgan::new`] and [`Vqgan::load_cpu`]; the device's errors.
    pub fn load_gpu(path: &Path, preset: Option<&str>, ctx: &Arc<GpuContext>) -> Result<Self, VqganGpuError> {
        let dict = StateDict::read(path).map_err(VqganError::from)?;
        let ops = GpuOps::new(ctx)?;
        let uploader = ops.clone();
        Vqgan::new(
            ops,
            &dict,
            preset,
            |p| uploader.upload_conv(p),
            |p| uploader.upload_norm(p),
        )
    }
}
