//! The ring's tables on the device (primes, twiddles), the compiled
//! pipelines, and the plumbing every kernel shares: uploads and downloads,
//! limb copies, and the pending command encoder.
//!
//! Kernels and copies are recorded into one pending command encoder
//! (`super::commands`) and submitted together at the next [`GpuRing::sync`]
//! or download (or every few hundred commands): a whole operation, a key switch included, goes to
//! the device as one command buffer. An error wgpu reports surfaces at that
//! point.

use super::commands::{CommandRecorder, IdleLimit};
use super::device::{GpuContext, GpuError};
use super::kernels::{ElementwiseOp, LimbwiseOp};
use super::poly::{GpuPoly, GpuWords};
use super::shaders::KernelFile;
use crate::math::Modulus;
use crate::ring::{Domain, LimbLayout, RingContext, RnsPoly};
use bytemuck::{Pod, Zeroable};
use std::marker::PhantomData;
use std::sync::Arc;

/// Invocations per workgroup in every kernel.
pub(super) const WORKGROUP: u32 = 256;
/// Largest workgroup count in one dispatch dimension (WebGPU's minimum limit).
pub(super) const MAX_GROUPS_PER_DIM: u32 = 65535;

/// Bytes of idle storage buffers the ring's pool keeps; past it, the buffers
/// idle longest are released. Room for every scratch buffer of a key switch
/// at N = 2^17 several times over, far below a GPU's memory, while a pass
/// through many levels (each with buffers of its own sizes) does not pin a
/// buffer of every size it ever used.
const POOL_IDLE_BYTES: u64 = 1 << 30;

/// Host mirror of `PrimeConsts` in `shaders/modarith.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct PrimeConsts {
    q: u32,
    two32: u32,
    two32_shoup: u32,
    one_shoup: u32,
    n_inv: u32,
    n_inv_shoup: u32,
    twiddle_offset: u32,
    pad: u32,
}

/// The entry points of `shaders/ntt.wgsl`.
pub(super) struct NttPipelines {
    pub(super) forward: wgpu::ComputePipeline,
    pub(super) inverse: wgpu::ComputePipeline,
    pub(super) forward_from: wgpu::ComputePipeline,
    pub(super) inverse_from: wgpu::ComputePipeline,
    pub(super) forward_converted: wgpu::ComputePipeline,
    pub(super) forward_broadcast: wgpu::ComputePipeline,
    pub(super) forward_finish: wgpu::ComputePipeline,
    pub(super) forward_converted_finish: wgpu::ComputePipeline,
    pub(super) forward_broadcast_finish: wgpu::ComputePipeline,
    pub(super) inverse_product: wgpu::ComputePipeline,
    pub(super) inverse_tensor: wgpu::ComputePipeline,
}

/// The ring's tables on the device and the compiled pipelines.
///
/// Invariant: `primes[i]` belongs to global prime `i` of the ring context;
/// its twiddle tables (forward, forward Shoup, inverse, inverse Shoup; N words
/// each) sit at `primes[i].twiddle_offset` in `twiddles[twiddle_chunk[i]]`,
/// each chunk within one storage binding.
pub struct GpuRing {
    pub(super) n: usize,
    pub(super) log_n: u32,
    pub(super) q_count: usize,
    pub(super) primes: wgpu::Buffer,
    pub(super) twiddles: Vec<wgpu::Buffer>,
    pub(super) twiddle_chunk: Vec<usize>,
    pub(super) ntt: NttPipelines,
    pub(super) elementwise: Vec<wgpu::ComputePipeline>,
    pub(super) mul_sum: wgpu::ComputePipeline,
    pub(super) convert: wgpu::ComputePipeline,
    pub(super) inner_product: wgpu::ComputePipeline,
    pub(super) limbwise: Vec<wgpu::ComputePipeline>,
    /// Bytes one storage binding may span.
    binding_limit: u64,
    /// Work recorded but not yet submitted.
    pub(super) commands: CommandRecorder,
}

impl GpuRing {
    /// Uploads the ring's NTT tables and compiles the kernels.
    ///
    /// # Errors
    /// [`GpuError::TooLarge`] when the twiddle tables exceed one storage
    /// binding; [`GpuError::Runtime`] on a shader or pipeline error.
    pub fn new(ctx: &Arc<GpuContext>, ring: &RingContext) -> Result<Self, GpuError> {
        let n = ring.n();
        let count = ring.global_count();
        let limit = ctx
            .limits()
            .max_storage_buffer_binding_size
            .min(ctx.limits().max_buffer_size);
        let prime_bytes = 16 * n as u64;
        if prime_bytes > limit {
            return Err(GpuError::TooLarge {
                what: "the NTT twiddle tables of one prime",
                bytes: prime_bytes,
                limit,
            });
        }
        let primes_per_chunk = (limit / prime_bytes) as usize;
        let mut chunks: Vec<Vec<u32>> = Vec::new();
        let mut twiddle_chunk = Vec::with_capacity(count);
        let mut primes = Vec::with_capacity(count);
        for i in 0..count {
            if i % primes_per_chunk == 0 {
                chunks.push(Vec::with_capacity(4 * n * primes_per_chunk.min(count - i)));
            }
            twiddle_chunk.push(chunks.len() - 1);
            let words = chunks.last_mut().expect("a chunk was pushed");
            let table = ring.global_table(i);
            let m: &Modulus = table.modulus();
            let shoup = |v: &[u32]| v.iter().map(|&w| m.shoup(w)).collect::<Vec<_>>();
            let two32 = ((1u64 << 32) % u64::from(m.value())) as u32;
            primes.push(PrimeConsts {
                q: m.value(),
                two32,
                two32_shoup: m.shoup(two32),
                one_shoup: ((1u64 << 32) / u64::from(m.value())) as u32,
                n_inv: table.n_inv(),
                n_inv_shoup: m.shoup(table.n_inv()),
                twiddle_offset: words.len() as u32,
                pad: 0,
            });
            words.extend_from_slice(table.psi_rev());
            words.extend(shoup(table.psi_rev()));
            words.extend_from_slice(table.psi_inv_rev());
            words.extend(shoup(table.psi_inv_rev()));
        }
        let device = ctx.device();
        let commands = CommandRecorder::new(ctx, IdleLimit::Bytes(POOL_IDLE_BYTES));
        let table = |label: &str, contents: &[u8]| commands.created_init(label, contents, wgpu::BufferUsages::STORAGE);
        let primes = table("primes", bytemuck::cast_slice(&primes));
        let twiddles = chunks
            .iter()
            .map(|words| table("twiddles", bytemuck::cast_slice(words)))
            .collect();
        let module = |file: KernelFile| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(file.name()),
                source: wgpu::ShaderSource::Wgsl(file.source(ctx.wide_mul()).into()),
            })
        };
        let pipeline = |module: &wgpu::ShaderModule, entry: &str| commands.pipeline(module, entry, &[]);
        let ntt = module(KernelFile::Ntt);
        let elementwise = module(KernelFile::Elementwise);
        let basis = module(KernelFile::Basis);
        let limbwise = module(KernelFile::Limbwise);
        let ring_gpu = Self {
            n,
            log_n: n.trailing_zeros(),
            q_count: ring.q_count(),
            primes,
            twiddles,
            twiddle_chunk,
            ntt: NttPipelines {
                forward: pipeline(&ntt, "forward"),
                inverse: pipeline(&ntt, "inverse"),
                forward_from: pipeline(&ntt, "forward_from"),
                inverse_from: pipeline(&ntt, "inverse_from"),
                forward_converted: pipeline(&ntt, "forward_converted"),
                forward_broadcast: pipeline(&ntt, "forward_broadcast"),
                forward_finish: pipeline(&ntt, "forward_finish"),
                forward_converted_finish: pipeline(&ntt, "forward_converted_finish"),
                forward_broadcast_finish: pipeline(&ntt, "forward_broadcast_finish"),
                inverse_product: pipeline(&ntt, "inverse_product"),
                inverse_tensor: pipeline(&ntt, "inverse_tensor"),
            },
            elementwise: ElementwiseOp::ENTRY_POINTS
                .iter()
                .map(|e| pipeline(&elementwise, e))
                .collect(),
            mul_sum: pipeline(&elementwise, "mul_sum"),
            convert: pipeline(&basis, "convert"),
            inner_product: pipeline(&ntt, "inner_product"),
            limbwise: LimbwiseOp::ENTRY_POINTS
                .iter()
                .map(|e| pipeline(&limbwise, e))
                .collect(),
            binding_limit: limit,
            commands,
        };
        ctx.finish()?;
        ctx.save_pipeline_cache();
        Ok(ring_gpu)
    }

    /// Copies a host polynomial to the device.
    pub fn upload<D: Domain>(&self, poly: &RnsPoly<D>) -> GpuPoly<D> {
        GpuPoly {
            buffer: self.commands.upload(bytemuck::cast_slice(poly.words())),
            layout: poly.layout(),
            _domain: PhantomData,
        }
    }

    /// Copies a device polynomial back to the host.
    ///
    /// # Errors
    /// [`GpuError::Runtime`] if the device reported an error or the mapping failed.
    pub fn download<D: Domain>(&self, poly: &GpuPoly<D>) -> Result<RnsPoly<D>, GpuError> {
        let words = self.commands.read_buffer(&poly.buffer, 0, poly.buffer.size())?;
        Ok(RnsPoly::from_words(self.n, poly.layout, words))
    }

    /// The global prime index of every limb of `layout`.
    pub fn prime_indices(&self, layout: LimbLayout) -> Vec<u32> {
        (0..layout.len())
            .map(|i| if i < layout.q { i } else { self.q_count + i - layout.q } as u32)
            .collect()
    }
}

impl GpuRing {
    /// Uploads host words (an automorphism's index permutation, say).
    pub fn upload_words(&self, words: &[u32]) -> GpuWords {
        GpuWords::whole(self.commands.upload(bytemuck::cast_slice(words)))
    }

    /// Copies device words back to the host.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn download_words(&self, words: &GpuWords) -> Result<Vec<u32>, GpuError> {
        self.commands.read_buffer(&words.buffer, words.offset, words.size)
    }
}

impl GpuRing {
    /// Ring degree.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Waits for all submitted work.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn sync(&self) -> Result<(), GpuError> {
        self.commands.sync()
    }

    /// Zeroed device words for `limbs` limbs.
    pub fn zeros(&self, limbs: usize) -> GpuWords {
        GpuWords::whole(self.commands.zeroed(self.limb_bytes(limbs)))
    }

    /// Device words for `limbs` limbs with unspecified contents, for a
    /// kernel that writes every word before anything reads it.
    pub fn scratch(&self, limbs: usize) -> GpuWords {
        GpuWords::whole(self.commands.storage(self.limb_bytes(limbs)))
    }

    fn limb_bytes(&self, limbs: usize) -> u64 {
        (4 * self.n * limbs) as u64
    }

    /// Copies `count` limbs from limb `from` of `src` to limb `to` of `dst`.
    pub fn copy_limbs(&self, src: &GpuWords, from: usize, dst: &GpuWords, to: usize, count: usize) {
        let limb = self.limb_bytes(1);
        self.commands.copy(
            &src.buffer,
            src.offset + from as u64 * limb,
            &dst.buffer,
            dst.offset + to as u64 * limb,
            count as u64 * limb,
        );
    }

    /// Limbs `first..first + count` of `words`, as words of their own
    /// (shared, not copied).
    pub fn view(&self, words: &GpuWords, first: usize, count: usize) -> GpuWords {
        words.range(self.limb_bytes(first), self.limb_bytes(count))
    }

    /// The first limb of `view` in its device buffer.
    pub(super) fn first_limb(&self, view: &GpuWords) -> u32 {
        (view.offset / self.limb_bytes(1)) as u32
    }

    /// A new buffer with limbs `from..from + count` of `src`.
    pub fn slice_limbs(&self, src: &GpuWords, from: usize, count: usize) -> GpuWords {
        let out = self.scratch(count);
        self.copy_limbs(src, from, &out, 0, count);
        out
    }

    /// A read-only storage buffer holding `words`, shared with every other
    /// request for the same words (tables that depend only on the
    /// parameters and the level).
    pub fn constant_buffer(&self, words: &[u32]) -> wgpu::Buffer {
        self.commands.constant_storage(words)
    }

    /// Bytes one storage binding may span on this device.
    pub fn binding_limit(&self) -> u64 {
        self.binding_limit
    }

    /// The work recorded on this ring's device since it was opened.
    pub fn work(&self) -> crate::backend::gpu::GpuWork {
        self.commands.work()
    }
}
