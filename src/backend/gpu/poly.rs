//! Device-resident RNS polynomials and the kernels that act on them: NTT
//! passes and element-wise arithmetic, batched over all limbs of a polynomial
//! in one dispatch per pass.
//!
//! Kernels and copies are recorded into one pending command encoder and
//! submitted together at the next [`GpuRing::sync`] or download (or every
//! `FLUSH_EVERY` commands): a whole operation, a key switch included, goes to
//! the device as one command buffer. An error wgpu reports surfaces at that
//! point.

use super::device::{GpuContext, GpuError};
use super::shaders::KernelFile;
use crate::math::Modulus;
use crate::ring::basis::BasisConverter;
use crate::ring::{Coeff, Domain, Eval, LimbLayout, RingContext, RnsPoly};
use bytemuck::{Pod, Zeroable};
use std::marker::PhantomData;
use std::sync::Arc;
use wgpu::util::DeviceExt;

/// Words per NTT tile (the `TILE` constant of `shaders/ntt.wgsl`).
const NTT_TILE_LOG: u32 = 12;
/// Invocations per workgroup in every kernel.
const WORKGROUP: u32 = 256;
/// Commands recorded before the pending encoder is submitted on its own,
/// bounding what one command buffer holds.
const FLUSH_EVERY: usize = 256;
/// Largest workgroup count in one dispatch dimension (WebGPU's minimum limit).
const MAX_GROUPS_PER_DIM: u32 = 65535;

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

/// Host mirror of `NttPass` in `shaders/ntt.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct NttPass {
    log_n: u32,
    bit_lo: u32,
    bit_hi: u32,
    scale: u32,
    tile_words: u32,
    limb_base: u32,
    pad: [u32; 2],
}

/// Host mirror of `Convert` in `shaders/basis.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct ConvertShape {
    n: u32,
    sources: u32,
    targets: u32,
    centered: u32,
}

/// Host mirror of `InnerProduct` in `shaders/keyswitch.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct InnerProductShape {
    n: u32,
    limbs: u32,
    use_perm: u32,
    pad: u32,
}

/// Host mirror of `Limbwise` in `shaders/limbwise.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct LimbwiseShape {
    n: u32,
    words: u32,
    source_prime: u32,
    pad: u32,
}

/// A kernel of `shaders/limbwise.wgsl`, indexing `GpuRing::limbwise`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LimbwiseOp {
    Permute = 0,
    MulScalar = 1,
    SubMulScalar = 2,
    BroadcastCentered = 3,
}

/// Host mirror of `Elementwise` in `shaders/elementwise.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct ElementwiseShape {
    n: u32,
    words: u32,
    pad: [u32; 2],
}

/// An element-wise kernel of `shaders/elementwise.wgsl`, indexing `GpuRing::elementwise`
/// in the order of its entry points (`add`, `sub`, `mul`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElementwiseOp {
    /// `a += b`.
    Add,
    /// `a -= b`.
    Sub,
    /// `a *= b` (point-wise; evaluation form).
    Mul,
}

/// A polynomial in a device buffer.
///
/// Invariant: the buffer holds `layout.len() * n` canonical words, limb-major,
/// exactly as [`RnsPoly`] on the host.
pub struct GpuPoly<D: Domain> {
    buffer: wgpu::Buffer,
    layout: LimbLayout,
    _domain: PhantomData<D>,
}

impl<D: Domain> GpuPoly<D> {
    /// The primes of the limbs.
    pub fn layout(&self) -> LimbLayout {
        self.layout
    }

    fn retag<E: Domain>(self) -> GpuPoly<E> {
        GpuPoly {
            buffer: self.buffer,
            layout: self.layout,
            _domain: PhantomData,
        }
    }
}

/// The ring's tables on the device and the compiled pipelines.
///
/// Invariant: `primes[i]` belongs to global prime `i` of the ring context;
/// its twiddle tables (forward, forward Shoup, inverse, inverse Shoup; N words
/// each) sit at `primes[i].twiddle_offset` in `twiddles[twiddle_chunk[i]]`,
/// each chunk within one storage binding.
pub struct GpuRing {
    ctx: Arc<GpuContext>,
    n: usize,
    log_n: u32,
    q_count: usize,
    primes: wgpu::Buffer,
    twiddles: Vec<wgpu::Buffer>,
    twiddle_chunk: Vec<usize>,
    ntt_forward: wgpu::ComputePipeline,
    ntt_inverse: wgpu::ComputePipeline,
    elementwise: [wgpu::ComputePipeline; 3],
    convert: wgpu::ComputePipeline,
    inner_product: wgpu::ComputePipeline,
    limbwise: [wgpu::ComputePipeline; 4],
    /// Work recorded but not yet submitted, and how many commands it holds.
    pending: std::sync::Mutex<(Option<wgpu::CommandEncoder>, usize)>,
}

fn storage_usage() -> wgpu::BufferUsages {
    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
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
        let limit = ctx.limits().max_storage_buffer_binding_size;
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
        let init = |label: &str, contents: &[u8], usage: wgpu::BufferUsages| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage,
            })
        };
        let primes = init("primes", bytemuck::cast_slice(&primes), wgpu::BufferUsages::STORAGE);
        let twiddles = chunks
            .iter()
            .map(|words| init("twiddles", bytemuck::cast_slice(words), wgpu::BufferUsages::STORAGE))
            .collect();
        let module = |file: KernelFile| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(file.name()),
                source: wgpu::ShaderSource::Wgsl(file.source(ctx.wide_mul()).into()),
            })
        };
        let pipeline = |module: &wgpu::ShaderModule, entry: &str| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: ctx.pipeline_cache(),
            })
        };
        let ntt = module(KernelFile::Ntt);
        let elementwise = module(KernelFile::Elementwise);
        let basis = module(KernelFile::Basis);
        let keyswitch = module(KernelFile::KeySwitch);
        let limbwise = module(KernelFile::Limbwise);
        let ring_gpu = Self {
            ctx: ctx.clone(),
            n,
            log_n: n.trailing_zeros(),
            q_count: ring.q_count(),
            primes,
            twiddles,
            twiddle_chunk,
            ntt_forward: pipeline(&ntt, "forward"),
            ntt_inverse: pipeline(&ntt, "inverse"),
            elementwise: [
                pipeline(&elementwise, "add"),
                pipeline(&elementwise, "sub"),
                pipeline(&elementwise, "mul"),
            ],
            convert: pipeline(&basis, "convert"),
            inner_product: pipeline(&keyswitch, "inner_product"),
            limbwise: [
                pipeline(&limbwise, "permute"),
                pipeline(&limbwise, "mul_scalar"),
                pipeline(&limbwise, "sub_mul_scalar"),
                pipeline(&limbwise, "broadcast_centered"),
            ],
            pending: std::sync::Mutex::new((None, 0)),
        };
        ctx.finish()?;
        ctx.save_pipeline_cache();
        Ok(ring_gpu)
    }

    /// A uniform buffer holding `value`.
    fn uniform<T: Pod>(&self, value: &T) -> wgpu::Buffer {
        self.ctx.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("uniform"),
            contents: bytemuck::bytes_of(value),
            usage: wgpu::BufferUsages::UNIFORM,
        })
    }

    /// Queues one dispatch of `pipeline` with bind group 0 made of `entries`.
    fn dispatch(
        &self,
        pipeline: &wgpu::ComputePipeline,
        entries: &[wgpu::BindGroupEntry<'_>],
        groups: (u32, u32, u32),
    ) {
        let device = self.ctx.device();
        let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries,
        });
        self.record(|encoder| {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, groups.2);
        });
    }

    /// Records commands into the pending encoder; they run, in order, at the
    /// next [`Self::sync`] or download, or once [`FLUSH_EVERY`] commands
    /// have accumulated.
    fn record(&self, f: impl FnOnce(&mut wgpu::CommandEncoder)) {
        let mut pending = self.pending.lock().expect("pending encoder");
        let encoder = pending
            .0
            .get_or_insert_with(|| self.ctx.device().create_command_encoder(&Default::default()));
        f(encoder);
        pending.1 += 1;
        if pending.1 >= FLUSH_EVERY {
            Self::submit(&self.ctx, &mut pending);
        }
    }

    /// Submits the pending encoder, if any.
    fn flush(&self) {
        Self::submit(&self.ctx, &mut self.pending.lock().expect("pending encoder"));
    }

    fn submit(ctx: &GpuContext, pending: &mut (Option<wgpu::CommandEncoder>, usize)) {
        if let Some(encoder) = pending.0.take() {
            ctx.queue().submit([encoder.finish()]);
        }
        pending.1 = 0;
    }

    /// Copies a host polynomial to the device.
    pub fn upload<D: Domain>(&self, poly: &RnsPoly<D>) -> GpuPoly<D> {
        let buffer = self.ctx.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("poly"),
            contents: bytemuck::cast_slice(poly.words()),
            usage: storage_usage(),
        });
        GpuPoly {
            buffer,
            layout: poly.layout(),
            _domain: PhantomData,
        }
    }

    /// Copies a device polynomial back to the host.
    ///
    /// # Errors
    /// [`GpuError::Runtime`] if the device reported an error or the mapping failed.
    pub fn download<D: Domain>(&self, poly: &GpuPoly<D>) -> Result<RnsPoly<D>, GpuError> {
        let words = self.read_buffer(&poly.buffer)?;
        Ok(RnsPoly::from_words(self.n, poly.layout, words))
    }

    fn read_buffer(&self, buffer: &wgpu::Buffer) -> Result<Vec<u32>, GpuError> {
        let device = self.ctx.device();
        let size = buffer.size();
        let staging = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("staging"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.record(|encoder| encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, size));
        self.flush();
        let (sender, receiver) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = sender.send(r);
        });
        self.ctx.finish()?;
        receiver
            .recv()
            .map_err(|e| GpuError::Runtime(e.to_string()))?
            .map_err(|e| GpuError::Runtime(e.to_string()))?;
        let words = {
            let view = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| GpuError::Runtime(e.to_string()))?;
            bytemuck::cast_slice::<u8, u32>(&view).to_vec()
        };
        staging.unmap();
        Ok(words)
    }

    /// The global prime index of every limb of `layout`.
    fn prime_indices(&self, layout: LimbLayout) -> Vec<u32> {
        (0..layout.len())
            .map(|i| if i < layout.q { i } else { self.q_count + i - layout.q } as u32)
            .collect()
    }

    /// The global prime index of every limb of `layout`, as a device buffer.
    fn limb_primes(&self, layout: LimbLayout) -> wgpu::Buffer {
        let indices = self.prime_indices(layout);
        self.ctx.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("limb primes"),
            contents: bytemuck::cast_slice(&indices),
            usage: wgpu::BufferUsages::STORAGE,
        })
    }

    /// The bit ranges of the NTT passes, high bits first: each pass holds at
    /// most `NTT_TILE_LOG` butterfly bits.
    fn ntt_passes(&self) -> Vec<(u32, u32)> {
        let low_pass_bits = self.log_n.min(NTT_TILE_LOG);
        let mut passes = Vec::new();
        let mut hi = self.log_n;
        while hi > low_pass_bits {
            let lo = hi.saturating_sub(NTT_TILE_LOG).max(low_pass_bits);
            passes.push((lo, hi - 1));
            hi = lo;
        }
        passes.push((0, low_pass_bits - 1));
        passes
    }

    fn run_ntt(&self, poly: &wgpu::Buffer, prime_list: &[u32], inverse: bool) -> Result<(), GpuError> {
        let device = self.ctx.device();
        let limb_primes = self.storage_init("limb primes", prime_list);
        let tile_words = 1u32 << self.log_n.min(NTT_TILE_LOG);
        let mut passes = self.ntt_passes();
        if inverse {
            passes.reverse();
        }
        let pipeline = if inverse { &self.ntt_inverse } else { &self.ntt_forward };
        let last = passes.len() - 1;
        // Runs of consecutive limbs whose primes share a twiddle chunk.
        let chunk_of: Vec<usize> = prime_list.iter().map(|&p| self.twiddle_chunk[p as usize]).collect();
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (limb, &chunk) in chunk_of.iter().enumerate() {
            match runs.last_mut() {
                Some((start, len)) if chunk_of[*start] == chunk => *len += 1,
                _ => runs.push((limb, 1)),
            }
        }
        for &(limb_base, limbs) in &runs {
            let twiddles = &self.twiddles[chunk_of[limb_base]];
            for (index, &(bit_lo, bit_hi)) in passes.iter().enumerate() {
                let info = NttPass {
                    log_n: self.log_n,
                    bit_lo,
                    bit_hi,
                    scale: u32::from(inverse && index == last),
                    tile_words,
                    limb_base: limb_base as u32,
                    pad: [0; 2],
                };
                let uniform = self.uniform(&info);
                let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("ntt"),
                    layout: &pipeline.get_bind_group_layout(0),
                    entries: &[
                        entry(0, poly),
                        entry(1, &self.primes),
                        entry(2, &limb_primes),
                        entry(3, twiddles),
                        entry(4, &uniform),
                    ],
                });
                self.record(|encoder| {
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    pass.set_pipeline(pipeline);
                    pass.set_bind_group(0, &bind, &[]);
                    pass.dispatch_workgroups((self.n as u32) / tile_words, limbs as u32, 1);
                });
            }
        }
        Ok(())
    }

    /// Forward NTT of every limb, in place on the device.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn into_eval(&self, poly: GpuPoly<Coeff>) -> Result<GpuPoly<Eval>, GpuError> {
        self.run_ntt(&poly.buffer, &self.prime_indices(poly.layout), false)?;
        Ok(poly.retag())
    }

    /// Inverse NTT of every limb, in place on the device.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn into_coeff(&self, poly: GpuPoly<Eval>) -> Result<GpuPoly<Coeff>, GpuError> {
        self.run_ntt(&poly.buffer, &self.prime_indices(poly.layout), true)?;
        Ok(poly.retag())
    }

    /// `a = a (op) b` limb by limb; `Mul` needs evaluation form, which the
    /// signature enforces for it through [`Self::mul_assign`].
    fn elementwise<D: Domain>(&self, op: ElementwiseOp, a: &GpuPoly<D>, b: &GpuPoly<D>) -> Result<(), GpuError> {
        assert_eq!(a.layout, b.layout, "limb layouts differ");
        let words = (a.layout.len() * self.n) as u32;
        let shape = ElementwiseShape {
            n: self.n as u32,
            words,
            pad: [0; 2],
        };
        let uniform = self.uniform(&shape);
        let limb_primes = self.limb_primes(a.layout);
        let pipeline = &self.elementwise[op as usize];
        let groups = words.div_ceil(WORKGROUP);
        let x = groups.min(MAX_GROUPS_PER_DIM);
        self.dispatch(
            pipeline,
            &[
                entry(0, &a.buffer),
                entry(1, &b.buffer),
                entry(2, &self.primes),
                entry(3, &limb_primes),
                entry(4, &uniform),
            ],
            (x, groups.div_ceil(x), 1),
        );
        Ok(())
    }

    /// `a += b`.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn add_assign<D: Domain>(&self, a: &GpuPoly<D>, b: &GpuPoly<D>) -> Result<(), GpuError> {
        self.elementwise(ElementwiseOp::Add, a, b)
    }

    /// `a -= b`.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn sub_assign<D: Domain>(&self, a: &GpuPoly<D>, b: &GpuPoly<D>) -> Result<(), GpuError> {
        self.elementwise(ElementwiseOp::Sub, a, b)
    }

    /// `a *= b`, point-wise in evaluation form.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn mul_assign(&self, a: &GpuPoly<Eval>, b: &GpuPoly<Eval>) -> Result<(), GpuError> {
        self.elementwise(ElementwiseOp::Mul, a, b)
    }
}

/// Words on the device without a limb layout of their own (the targets of a
/// basis conversion are an arbitrary list of primes). Cloning shares the buffer.
#[derive(Clone)]
pub struct GpuWords {
    buffer: wgpu::Buffer,
}

impl GpuRing {
    fn storage_init(&self, label: &str, words: &[u32]) -> wgpu::Buffer {
        self.ctx.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(words),
            usage: wgpu::BufferUsages::STORAGE,
        })
    }

    /// Extends the coefficient-form limbs of `input` (one per source of
    /// `converter`, in order) to the global primes `targets`, centred or not
    /// exactly as [`BasisConverter::convert_centered`] and
    /// [`BasisConverter::convert`]; limb `j` of the result is over `targets[j]`.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn convert(
        &self,
        converter: &BasisConverter,
        input: &GpuWords,
        targets: &[usize],
        centered: bool,
    ) -> Result<GpuWords, GpuError> {
        let sources = converter.sources();
        assert_eq!(
            input.buffer.size(),
            (4 * self.n * sources.len()) as u64,
            "one input limb per source"
        );
        let mut tables = Vec::with_capacity(4 * sources.len() + targets.len() * (sources.len() + 1));
        for (&(inv, inv_shoup), &(hi, lo)) in converter.qhat_inv().iter().zip(converter.reciprocal()) {
            tables.extend([inv, inv_shoup, hi, lo]);
        }
        for &t in targets {
            tables.extend_from_slice(converter.qhat_mod(t));
            tables.push(converter.qs_mod(t));
        }
        let source_prime: Vec<u32> = sources.iter().map(|&s| s as u32).collect();
        let target_prime: Vec<u32> = targets.iter().map(|&t| t as u32).collect();
        let device = self.ctx.device();
        let output = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("converted"),
            size: (4 * self.n * targets.len()) as u64,
            usage: storage_usage(),
            mapped_at_creation: false,
        });
        let shape = ConvertShape {
            n: self.n as u32,
            sources: sources.len() as u32,
            targets: targets.len() as u32,
            centered: u32::from(centered),
        };
        let uniform = self.uniform(&shape);
        let (source_buf, target_buf, table_buf) = (
            self.storage_init("source primes", &source_prime),
            self.storage_init("target primes", &target_prime),
            self.storage_init("convert tables", &tables),
        );
        self.dispatch(
            &self.convert,
            &[
                entry(0, &input.buffer),
                entry(1, &output),
                entry(2, &self.primes),
                entry(3, &source_buf),
                entry(4, &target_buf),
                entry(5, &table_buf),
                entry(6, &uniform),
            ],
            ((self.n as u32).div_ceil(WORKGROUP), targets.len() as u32, 1),
        );
        Ok(GpuWords { buffer: output })
    }

    /// `acc_b += digit * key_b`, `acc_a += digit * key_a` over the extended
    /// layout of `digit` (`Q_l ++ P`), reading the digit through `perm` when
    /// given. The key halves are resident over `Q_L ++ P` (`key_q` ciphertext
    /// limbs, then the special limbs); the accumulators have the digit's layout.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    #[allow(clippy::too_many_arguments)] // the two halves of a key and of the accumulator
    pub fn inner_product(
        &self,
        digit: &GpuPoly<Eval>,
        key_b: &GpuPoly<Eval>,
        key_a: &GpuPoly<Eval>,
        perm: Option<&GpuWords>,
        acc_b: &GpuPoly<Eval>,
        acc_a: &GpuPoly<Eval>,
    ) -> Result<(), GpuError> {
        let layout = digit.layout;
        assert!(
            acc_b.layout == layout && acc_a.layout == layout,
            "accumulators in the digit's layout"
        );
        let key_q = key_b.layout.q;
        assert!(
            key_q >= layout.q && key_b.layout.p == layout.p,
            "key covers the digit's primes"
        );
        let mut table = self.prime_indices(layout);
        table.extend((0..layout.len()).map(|i| if i < layout.q { i } else { key_q + i - layout.q } as u32));
        let table = self.storage_init("limb table", &table);
        let shape = InnerProductShape {
            n: self.n as u32,
            limbs: layout.len() as u32,
            use_perm: u32::from(perm.is_some()),
            pad: 0,
        };
        let uniform = self.uniform(&shape);
        // Without a permutation the binding still needs a buffer: the table
        // stands in, unread.
        let perm_buffer = perm.map_or(&table, |p| &p.buffer);
        self.dispatch(
            &self.inner_product,
            &[
                entry(0, &digit.buffer),
                entry(1, &key_b.buffer),
                entry(2, &key_a.buffer),
                entry(3, perm_buffer),
                entry(4, &acc_b.buffer),
                entry(5, &acc_a.buffer),
                entry(6, &self.primes),
                entry(7, &table),
                entry(8, &uniform),
            ],
            ((self.n as u32).div_ceil(WORKGROUP), layout.len() as u32, 1),
        );
        Ok(())
    }

    /// Uploads host words (an automorphism's index permutation, say).
    pub fn upload_words(&self, words: &[u32]) -> GpuWords {
        GpuWords {
            buffer: self.ctx.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("words"),
                contents: bytemuck::cast_slice(words),
                usage: storage_usage(),
            }),
        }
    }

    /// Copies device words back to the host.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn download_words(&self, words: &GpuWords) -> Result<Vec<u32>, GpuError> {
        self.read_buffer(&words.buffer)
    }
}

impl<D: Domain> GpuPoly<D> {
    /// The device words.
    pub fn words(&self) -> GpuWords {
        GpuWords {
            buffer: self.buffer.clone(),
        }
    }

    /// Wraps device words holding `layout.len()` limbs in the domain `D`.
    ///
    /// # Panics
    /// If the buffer size does not match the layout.
    pub fn from_words(words: GpuWords, layout: LimbLayout, n: usize) -> Self {
        assert_eq!(
            words.buffer.size(),
            (4 * n * layout.len()) as u64,
            "buffer size does not match the layout"
        );
        GpuPoly {
            buffer: words.buffer,
            layout,
            _domain: PhantomData,
        }
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
        self.flush();
        self.ctx.finish()
    }

    /// Fresh zeroed device words for `limbs` limbs.
    pub fn zeros(&self, limbs: usize) -> GpuWords {
        GpuWords {
            buffer: self.ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("limbs"),
                size: (4 * self.n * limbs) as u64,
                usage: storage_usage(),
                mapped_at_creation: false,
            }),
        }
    }

    /// Copies `count` limbs from limb `from` of `src` to limb `to` of `dst`.
    pub fn copy_limbs(&self, src: &GpuWords, from: usize, dst: &GpuWords, to: usize, count: usize) {
        let limb = (4 * self.n) as u64;
        self.record(|encoder| {
            encoder.copy_buffer_to_buffer(
                &src.buffer,
                from as u64 * limb,
                &dst.buffer,
                to as u64 * limb,
                count as u64 * limb,
            )
        });
    }

    /// A new buffer with limbs `from..from + count` of `src`.
    pub fn slice_limbs(&self, src: &GpuWords, from: usize, count: usize) -> GpuWords {
        let out = self.zeros(count);
        self.copy_limbs(src, from, &out, 0, count);
        out
    }

    /// Forward (or inverse) NTT of limbs over the global primes `primes`.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn ntt_words(&self, words: &GpuWords, primes: &[usize], inverse: bool) -> Result<(), GpuError> {
        let list: Vec<u32> = primes.iter().map(|&p| p as u32).collect();
        self.run_ntt(&words.buffer, &list, inverse)
    }

    fn limbwise(
        &self,
        op: LimbwiseOp,
        a: &GpuWords,
        primes: &[usize],
        b: Option<&GpuWords>,
        table: &GpuWords,
        source_prime: usize,
    ) -> Result<(), GpuError> {
        let words = (primes.len() * self.n) as u32;
        let shape = LimbwiseShape {
            n: self.n as u32,
            words,
            source_prime: source_prime as u32,
            pad: 0,
        };
        let uniform = self.uniform(&shape);
        let list: Vec<u32> = primes.iter().map(|&p| p as u32).collect();
        let limb_primes = self.storage_init("limb primes", &list);
        let pipeline = &self.limbwise[op as usize];
        let mut entries = vec![entry(0, &a.buffer), entry(4, &uniform)];
        if op != LimbwiseOp::BroadcastCentered {
            entries.push(entry(5, &table.buffer));
        }
        if let Some(b) = b {
            entries.push(entry(1, &b.buffer));
        }
        if op != LimbwiseOp::Permute {
            entries.push(entry(2, &self.primes));
            entries.push(entry(3, &limb_primes));
        }
        let groups = words.div_ceil(WORKGROUP);
        let x = groups.min(MAX_GROUPS_PER_DIM);
        self.dispatch(pipeline, &entries, (x, groups.div_ceil(x), 1));
        Ok(())
    }

    fn constants(&self, constants: &[(u32, u32)]) -> GpuWords {
        let flat: Vec<u32> = constants.iter().flat_map(|&(v, s)| [v, s]).collect();
        self.upload_words(&flat)
    }

    /// `out[limb][k] = src[limb][perm[k]]`: an automorphism in evaluation form.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn permute(&self, src: &GpuPoly<Eval>, perm: &GpuWords) -> Result<GpuPoly<Eval>, GpuError> {
        let out = self.zeros(src.layout.len());
        let primes: Vec<usize> = self.prime_indices(src.layout).iter().map(|&p| p as usize).collect();
        self.limbwise(LimbwiseOp::Permute, &out, &primes, Some(&src.words()), perm, 0)?;
        Ok(GpuPoly::from_words(out, src.layout, self.n))
    }

    /// `a[limb] *= constants[limb]` (value, Shoup quotient) over `primes`.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn mul_scalar_assign(&self, a: &GpuWords, primes: &[usize], constants: &[(u32, u32)]) -> Result<(), GpuError> {
        self.limbwise(LimbwiseOp::MulScalar, a, primes, None, &self.constants(constants), 0)
    }

    /// `a[limb] = (a[limb] - b[limb]) * constants[limb]` over `primes`.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn sub_mul_scalar_assign(
        &self,
        a: &GpuWords,
        b: &GpuWords,
        primes: &[usize],
        constants: &[(u32, u32)],
    ) -> Result<(), GpuError> {
        self.limbwise(
            LimbwiseOp::SubMulScalar,
            a,
            primes,
            Some(b),
            &self.constants(constants),
            0,
        )
    }

    /// One limb over `source_prime`, its centred value reduced into each of
    /// `primes` (new words, one limb per prime).
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn broadcast_centered(
        &self,
        limb: &GpuWords,
        source_prime: usize,
        primes: &[usize],
    ) -> Result<GpuWords, GpuError> {
        let out = self.zeros(primes.len());
        self.limbwise(
            LimbwiseOp::BroadcastCentered,
            &out,
            primes,
            Some(limb),
            limb,
            source_prime,
        )?;
        Ok(out)
    }
}

fn entry(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    }
}
