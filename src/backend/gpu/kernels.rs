//! The kernels as host calls: NTT passes, element-wise and per-limb
//! arithmetic, basis conversion and the key-switching inner product, each
//! recorded into the ring's pending command encoder.

use super::commands::{entry, storage_usage};
use super::device::GpuError;
use super::poly::{GpuPoly, GpuWords};
use super::ring::{GpuRing, MAX_GROUPS_PER_DIM, WORKGROUP};
use crate::ring::basis::BasisConverter;
use crate::ring::{Coeff, Domain, Eval};
use bytemuck::{Pod, Zeroable};

/// Words per NTT tile (the `TILE` constant of `shaders/ntt.wgsl`).
const NTT_TILE_LOG: u32 = 12;

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
    ReduceSigned = 4,
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
/// in the order of its entry points (`add`, `sub`, `mul`, `mul_add`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElementwiseOp {
    /// `a += b`.
    Add,
    /// `a -= b`.
    Sub,
    /// `a *= b` (point-wise; evaluation form).
    Mul,
    /// `a += b * c` (point-wise; evaluation form).
    MulAdd,
}

impl GpuRing {
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
        let limb_primes = self.commands.constant_storage(prime_list);
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
                let uniform = self.commands.uniform(&info);
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
                self.commands.record(|encoder| {
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
        self.elementwise_with(op, a, b, None)
    }

    /// [`Self::elementwise`] with the third operand `c` of `mul_add`.
    fn elementwise_with<D: Domain>(
        &self,
        op: ElementwiseOp,
        a: &GpuPoly<D>,
        b: &GpuPoly<D>,
        c: Option<&GpuPoly<D>>,
    ) -> Result<(), GpuError> {
        assert_eq!(a.layout, b.layout, "limb layouts differ");
        assert_eq!(op == ElementwiseOp::MulAdd, c.is_some(), "mul_add and only it takes c");
        if let Some(c) = c {
            assert_eq!(a.layout, c.layout, "limb layouts differ");
        }
        let words = (a.layout.len() * self.n) as u32;
        let shape = ElementwiseShape {
            n: self.n as u32,
            words,
            pad: [0; 2],
        };
        let uniform = self.commands.uniform(&shape);
        let limb_primes = self.limb_primes(a.layout);
        let pipeline = &self.elementwise[op as usize];
        let groups = words.div_ceil(WORKGROUP);
        let x = groups.min(MAX_GROUPS_PER_DIM);
        let mut entries = vec![
            entry(0, &a.buffer),
            entry(1, &b.buffer),
            entry(2, &self.primes),
            entry(3, &limb_primes),
            entry(4, &uniform),
        ];
        if let Some(c) = c {
            entries.push(entry(5, &c.buffer));
        }
        self.commands.dispatch(pipeline, &entries, (x, groups.div_ceil(x), 1));
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

    /// `a += b * c`, point-wise in evaluation form.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn mul_add_assign(&self, a: &GpuPoly<Eval>, b: &GpuPoly<Eval>, c: &GpuPoly<Eval>) -> Result<(), GpuError> {
        self.elementwise_with(ElementwiseOp::MulAdd, a, b, Some(c))
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
        let uniform = self.commands.uniform(&shape);
        let (source_buf, target_buf, table_buf) = (
            self.commands.constant_storage(&source_prime),
            self.commands.constant_storage(&target_prime),
            self.commands.constant_storage(&tables),
        );
        self.commands.dispatch(
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
        let table = self.commands.constant_storage(&table);
        let shape = InnerProductShape {
            n: self.n as u32,
            limbs: layout.len() as u32,
            use_perm: u32::from(perm.is_some()),
            pad: 0,
        };
        let uniform = self.commands.uniform(&shape);
        // Without a permutation the binding still needs a buffer: the table
        // stands in, unread.
        let perm_buffer = perm.map_or(&table, |p| &p.buffer);
        self.commands.dispatch(
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
        let uniform = self.commands.uniform(&shape);
        let list: Vec<u32> = primes.iter().map(|&p| p as u32).collect();
        let limb_primes = self.commands.constant_storage(&list);
        let pipeline = &self.limbwise[op as usize];
        let mut entries = vec![entry(0, &a.buffer), entry(4, &uniform)];
        if !matches!(op, LimbwiseOp::BroadcastCentered | LimbwiseOp::ReduceSigned) {
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
        self.commands.dispatch(pipeline, &entries, (x, groups.div_ceil(x), 1));
        Ok(())
    }

    fn constants(&self, constants: &[(u32, u32)]) -> GpuWords {
        let flat: Vec<u32> = constants.iter().flat_map(|&(v, s)| [v, s]).collect();
        GpuWords {
            buffer: self.commands.constant_storage(&flat),
        }
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

    /// Signed 64-bit coefficients reduced into each of `primes` (limb `j`
    /// over `primes[j]`), coefficient form, equal word for word to
    /// `RnsPoly::from_signed`: the device half of encoding. The kernel reads
    /// each coefficient as two u32 words, low then high: the layout of an
    /// `i64` on the little-endian hosts wgpu runs on.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn reduce_signed(&self, coeffs: &[i64], primes: &[usize]) -> Result<GpuWords, GpuError> {
        assert_eq!(coeffs.len(), self.n, "one coefficient per ring position");
        let source = self.upload_words(bytemuck::cast_slice(coeffs));
        let out = self.zeros(primes.len());
        self.limbwise(LimbwiseOp::ReduceSigned, &out, primes, Some(&source), &source, 0)?;
        Ok(out)
    }
}
