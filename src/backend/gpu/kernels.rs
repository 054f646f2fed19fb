//! The kernels as host calls: NTT passes over limbs named by a table (in
//! place, from another buffer, or from a basis conversion), element-wise and
//! per-limb arithmetic, basis conversion and the key-switching inner product
//! over all digits, each recorded into the ring's pending command encoder.
//!
//! Every call names the limbs it works on explicitly (positions in buffers
//! and their primes), so one dispatch may span both halves of a ciphertext
//! or every digit of a decomposition: the evaluator (`crate::ckks::gpu_eval`)
//! decides the layout, the kernels only follow it.

use super::commands::entry;
use super::device::GpuError;
use super::poly::{GpuPoly, GpuWords, Limbs};
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
    tile_log: u32,
    source_prime: u32,
}

/// Host mirror of `Convert` in `shaders/basis.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct ConvertShape {
    n: u32,
    log_n: u32,
    rows: u32,
    pad: u32,
}

/// Host mirror of `InnerProduct` in `shaders/keyswitch.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct InnerProductShape {
    n: u32,
    log_n: u32,
    limbs: u32,
    digits: u32,
    digit_base: u32,
    key_limbs: u32,
    use_perm: u32,
    accumulate: u32,
}

/// Host mirror of `Limbwise` in `shaders/limbwise.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct LimbwiseShape {
    n: u32,
    log_n: u32,
    words: u32,
    pad: u32,
}

/// Host mirror of `Elementwise` in `shaders/elementwise.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct ElementwiseShape {
    n: u32,
    log_n: u32,
    words: u32,
    b_words: u32,
    in_place: u32,
    terms: u32,
    pad: [u32; 2],
}

/// An element-wise kernel of `shaders/elementwise.wgsl`, indexing
/// `GpuRing::elementwise` in the order of its entry points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElementwiseOp {
    /// `out = a + b`.
    Add,
    /// `out = a - b`.
    Sub,
    /// `out = -a`.
    Neg,
    /// `out += a`.
    Accumulate,
    /// `out = a * b` (point-wise; evaluation form).
    Mul,
    /// `out += a * b` (point-wise; evaluation form).
    MulAdd,
}

impl ElementwiseOp {
    /// Entry points of `shaders/elementwise.wgsl`, in the order of the variants.
    pub(super) const ENTRY_POINTS: [&'static str; 6] = ["add", "sub", "neg", "accumulate", "mul", "mul_add"];
}

/// A kernel of `shaders/limbwise.wgsl`, indexing `GpuRing::limbwise` in
/// the order of its entry points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimbwiseOp {
    /// `out[l] = a[l'] * constant`.
    MulScalar,
    /// `out[l] = a[l'] + constant`.
    AddScalar,
    /// `out[l] += a[l'][perm[k]]`.
    AddPermuted,
    /// Signed 64-bit coefficients reduced into each limb's prime.
    ReduceSigned,
}

impl LimbwiseOp {
    /// Entry points of `shaders/limbwise.wgsl`, in the order of the variants.
    pub(super) const ENTRY_POINTS: [&'static str; 4] = ["mul_scalar", "add_scalar", "add_permuted", "reduce_signed"];
}

/// What the finishing store of an NTT ([`NttOutput::Finish`]) adds to an
/// output limb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishMode {
    /// Nothing.
    None = 0,
    /// The output's own word (a running sum).
    Own = 1,
    /// Limb `c` of the third operand.
    Add = 2,
    /// Limb `c` of the third operand read through the permutation.
    AddPermuted = 3,
}

/// One output limb of a limb-wise kernel or of an NTT's finishing store:
/// the row of `shaders/limbwise.wgsl`.
#[derive(Clone, Copy, Debug)]
pub struct LimbRow {
    /// Global prime of the output limb.
    pub prime: u32,
    /// A constant (canonical) and its Shoup quotient.
    pub value: (u32, u32),
    /// The limb of `a` the output limb reads.
    pub a: u32,
    /// The limb of `c` a finishing store adds.
    pub c: u32,
    /// What a finishing store adds.
    pub mode: FinishMode,
}

impl LimbRow {
    /// Limb `a` over `prime`, with `value`, adding nothing.
    pub fn new(prime: usize, value: (u32, u32), a: usize) -> Self {
        LimbRow {
            prime: prime as u32,
            value,
            a: a as u32,
            c: 0,
            mode: FinishMode::None,
        }
    }

    pub(super) fn words(&self) -> [u32; 8] {
        [
            self.prime,
            self.value.0,
            self.value.1,
            self.a,
            0,
            self.c,
            self.mode as u32,
            0,
        ]
    }
}

/// One limb of an NTT batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NttLimb {
    /// Global prime.
    pub prime: u32,
    /// Limb position in the buffer transformed.
    pub pos: u32,
    /// Where the first pass reads it: a limb of the source buffer
    /// ([`NttInput::Source`]) or a conversion row ([`NttInput::Converted`]);
    /// unused in place.
    pub from: u32,
}

impl NttLimb {
    /// Limb `pos` over `prime`, transformed in place.
    pub fn in_place(prime: usize, pos: usize) -> Self {
        NttLimb {
            prime: prime as u32,
            pos: pos as u32,
            from: 0,
        }
    }

    /// Limb `pos` over `prime`, whose first pass reads limb (or row) `from`.
    pub fn from(prime: usize, pos: usize, from: usize) -> Self {
        NttLimb {
            prime: prime as u32,
            pos: pos as u32,
            from: from as u32,
        }
    }
}

/// Where the first pass of an NTT reads its words.
#[derive(Clone, Copy)]
pub enum NttInput<'a> {
    /// The buffer transformed.
    InPlace,
    /// Limb [`NttLimb::from`] of another buffer (left unchanged).
    Source(&'a GpuWords),
    /// Row [`NttLimb::from`] of a basis conversion of `input` (forward only).
    Converted {
        /// The coefficient-form limbs converted.
        input: &'a GpuWords,
        /// The conversion rows.
        table: &'a ConvertTable,
    },
    /// The centred value of limb [`NttLimb::from`] of `source`, a limb over
    /// `source_prime` (forward only).
    Broadcast {
        /// The limbs broadcast.
        source: &'a GpuWords,
        /// Their global prime.
        source_prime: usize,
    },
}

/// Where the last pass of a forward NTT writes its words.
#[derive(Clone, Copy)]
pub enum NttOutput<'a> {
    /// Back into the buffer transformed.
    InPlace,
    /// Finished into `out` (see `shaders/ntt.wgsl`): limb `limbs[s].pos` of
    /// `out` is `(a[rows[s].a] - word) * rows[s].value` plus what
    /// `rows[s].mode` adds ([`FinishMode`], from `c`, through `perm`).
    Finish {
        /// The result.
        out: &'a GpuWords,
        /// The minuend.
        a: &'a GpuWords,
        /// What mode 2 or 3 adds.
        c: Option<&'a GpuWords>,
        /// The permutation of mode 3.
        perm: Option<&'a GpuWords>,
        /// One row per limb of the transform.
        rows: &'a [LimbRow],
    },
}

/// What [`GpuRing::inner_product`] does with the sums.
#[derive(Clone, Copy, Debug)]
pub enum Sums<'a> {
    /// Writes them.
    Write,
    /// Adds them to what the buffer holds.
    Accumulate,
    /// Writes them, then takes the limbs `special` of the buffer (the
    /// special limbs of both halves, each at position `half * limbs + i`
    /// with `i` at or past the limbs over Q) out of evaluation form:
    /// ModDown's first step, the first pass of its inverse NTT computed
    /// with the sums.
    Inverse(&'a [NttLimb]),
}

/// One output limb of a basis conversion.
#[derive(Clone, Copy)]
pub struct ConvertRow<'a> {
    /// The conversion (its sources' primes, in order).
    pub converter: &'a BasisConverter,
    /// Limb of the input holding the converter's first source; the others follow.
    pub first_source: usize,
    /// Global prime of the output limb.
    pub target: usize,
    /// Limb of the output it writes (the standalone conversion only).
    pub out: usize,
    /// Centred (as [`BasisConverter::convert_centered`]) or not.
    pub centered: bool,
}

/// The tables of a list of conversion rows on the device (see
/// `shaders/convert.wgsl`).
///
/// Invariant: `buffer` holds `rows` rows and every table they point to.
pub struct ConvertTable {
    buffer: wgpu::Buffer,
    rows: usize,
}

impl ConvertTable {
    /// Number of rows (output limbs).
    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// A switching key's halves on the device for [`GpuRing::inner_product`]:
/// every digit's `key_limbs` limbs one after another, in chunks of digits
/// that each fit one storage binding.
pub struct GpuKeyHalves {
    /// Per chunk: the first digit, the digit count, `key_b`, `key_a`.
    pub(super) chunks: Vec<(usize, usize, GpuWords, GpuWords)>,
    /// Limbs of one digit (`Q_L ++ P`).
    pub(super) key_limbs: usize,
}

impl GpuKeyHalves {
    /// Number of digits.
    pub fn digits(&self) -> usize {
        self.chunks.iter().map(|c| c.1).sum()
    }
}

/// The bit ranges of the NTT passes at ring degree `2^log_n`, high bits
/// first: each pass holds at most `NTT_TILE_LOG` butterfly bits. Its length
/// is the dispatches of one NTT over limbs sharing a twiddle binding.
pub fn ntt_pass_bits(log_n: u32) -> Vec<(u32, u32)> {
    let low_pass_bits = log_n.min(NTT_TILE_LOG);
    let mut passes = Vec::new();
    let mut hi = log_n;
    while hi > low_pass_bits {
        let lo = hi.saturating_sub(NTT_TILE_LOG).max(low_pass_bits);
        passes.push((lo, hi - 1));
        hi = lo;
    }
    passes.push((0, low_pass_bits - 1));
    passes
}

impl GpuRing {
    /// [`ntt_pass_bits`] of this ring.
    fn ntt_passes(&self) -> Vec<(u32, u32)> {
        ntt_pass_bits(self.log_n)
    }

    /// Runs `(first slot, slots, twiddle chunk)` of consecutive slots
    /// whose primes share a twiddle chunk.
    fn twiddle_runs(&self, primes: impl IntoIterator<Item = u32>) -> Vec<(usize, usize, usize)> {
        let mut runs: Vec<(usize, usize, usize)> = Vec::new();
        for (slot, prime) in primes.into_iter().enumerate() {
            let chunk = self.twiddle_chunk[prime as usize];
            match runs.last_mut() {
                Some((_, len, c)) if *c == chunk => *len += 1,
                _ => runs.push((slot, 1, chunk)),
            }
        }
        runs
    }

    /// The pass info of pass `index` of `passes`.
    fn pass_info(&self, passes: &[(u32, u32)], index: usize, inverse: bool, limb_base: usize) -> NttPass {
        let tile_words = 1u32 << self.log_n.min(NTT_TILE_LOG);
        let (bit_lo, bit_hi) = passes[index];
        NttPass {
            log_n: self.log_n,
            bit_lo,
            bit_hi,
            scale: u32::from(inverse && index == passes.len() - 1),
            tile_words,
            limb_base: limb_base as u32,
            tile_log: tile_words.trailing_zeros(),
            source_prime: 0,
        }
    }

    /// The passes of an inverse transform, in order.
    fn inverse_passes(&self) -> Vec<(u32, u32)> {
        let mut passes = self.ntt_passes();
        passes.reverse();
        passes
    }

    /// The first pass of an inverse NTT whose tiles `pipeline` computes
    /// (`inverse_product`, `inverse_tensor` of `shaders/ntt.wgsl`) into
    /// `data`: one slot per row `[prime, position, from, extra]`, one
    /// dispatch per run of slots sharing a twiddle chunk, binding `entries`
    /// beside the NTT's own.
    fn computed_inverse_pass(
        &self,
        pipeline: &wgpu::ComputePipeline,
        data: &GpuWords,
        slots: &[[u32; 4]],
        entries: &[wgpu::BindGroupEntry<'_>],
    ) {
        let table = self.commands.constant_storage(slots.as_flattened());
        let passes = self.inverse_passes();
        for (limb_base, count, chunk) in self.twiddle_runs(slots.iter().map(|s| s[0])) {
            let info = self.pass_info(&passes, 0, true, limb_base);
            let uniform = self.commands.uniform(&info);
            let mut bound = vec![
                data.bind(0),
                entry(1, &self.primes),
                entry(2, &table),
                entry(3, &self.twiddles[chunk]),
                entry(4, &uniform),
            ];
            bound.extend(entries.iter().cloned());
            self.commands
                .dispatch(pipeline, &bound, ((self.n as u32) / info.tile_words, count as u32, 1));
        }
    }

    /// Forward (or inverse) NTT of `limbs` of `data`, the first pass reading
    /// from `input`, the last writing to `output`. The positions in `data`
    /// must be distinct.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn ntt(
        &self,
        data: &GpuWords,
        limbs: &[NttLimb],
        input: NttInput<'_>,
        output: NttOutput<'_>,
        inverse: bool,
    ) -> Result<(), GpuError> {
        self.ntt_from_pass(data, limbs, input, output, inverse, 0);
        Ok(())
    }

    /// [`Self::ntt`] from pass `first` on (the earlier ones done by a
    /// kernel that computed the tiles: [`Self::computed_inverse_pass`]).
    fn ntt_from_pass(
        &self,
        data: &GpuWords,
        limbs: &[NttLimb],
        input: NttInput<'_>,
        output: NttOutput<'_>,
        inverse: bool,
        first: usize,
    ) {
        if limbs.is_empty() {
            return;
        }
        assert!(
            first == 0 || matches!(input, NttInput::InPlace),
            "only the first pass reads from elsewhere"
        );
        assert!(
            !inverse
                || (matches!(input, NttInput::InPlace | NttInput::Source(_)) && matches!(output, NttOutput::InPlace)),
            "conversions, broadcasts and finishing stores go with forward transforms only"
        );
        let table: Vec<u32> = limbs.iter().flat_map(|l| [l.prime, l.pos, l.from, 0]).collect();
        let table = self.commands.constant_storage(&table);
        let finish_rows = match output {
            NttOutput::Finish { rows, .. } => {
                assert_eq!(rows.len(), limbs.len(), "one finishing row per limb");
                Some(
                    self.commands
                        .constant_storage(&rows.iter().flat_map(LimbRow::words).collect::<Vec<_>>()),
                )
            }
            NttOutput::InPlace => None,
        };
        let passes = if inverse {
            self.inverse_passes()
        } else {
            self.ntt_passes()
        };
        let last = passes.len() - 1;
        let source_prime = match input {
            NttInput::Broadcast { source_prime, .. } => source_prime as u32,
            _ => 0,
        };
        for (limb_base, count, chunk) in self.twiddle_runs(limbs.iter().map(|l| l.prime)) {
            let twiddles = &self.twiddles[chunk];
            for index in first..passes.len() {
                let info = NttPass {
                    source_prime,
                    ..self.pass_info(&passes, index, inverse, limb_base)
                };
                let uniform = self.commands.uniform(&info);
                let mut entries = vec![
                    entry(1, &self.primes),
                    entry(2, &table),
                    entry(3, twiddles),
                    entry(4, &uniform),
                ];
                let load = if index == 0 { input } else { NttInput::InPlace };
                match load {
                    NttInput::InPlace => {}
                    NttInput::Source(source) | NttInput::Broadcast { source, .. } => entries.push(source.bind(5)),
                    NttInput::Converted { input, table } => {
                        entries.push(input.bind(6));
                        entries.push(entry(7, &table.buffer));
                    }
                }
                let store = if index == last { output } else { NttOutput::InPlace };
                if let (NttOutput::Finish { out, a, c, perm, .. }, Some(rows)) = (store, &finish_rows) {
                    entries.push(out.bind(8));
                    entries.push(a.bind(9));
                    entries.push(c.map_or(entry(10, &self.primes), |c| c.bind(10)));
                    entries.push(perm.map_or(entry(11, &self.primes), |p| p.bind(11)));
                    entries.push(entry(12, rows));
                }
                // `data` is bound unless one pass both loads from elsewhere and finishes elsewhere.
                let finishes = matches!(store, NttOutput::Finish { .. });
                if !(finishes && matches!(load, NttInput::Converted { .. } | NttInput::Broadcast { .. })) {
                    entries.push(data.bind(0));
                }
                let p = &self.ntt;
                let pipeline = match (load, finishes, inverse) {
                    (NttInput::InPlace, false, false) => &p.forward,
                    (NttInput::InPlace, false, true) => &p.inverse,
                    (NttInput::Source(_), false, false) => &p.forward_from,
                    (NttInput::Source(_), false, true) => &p.inverse_from,
                    (NttInput::Converted { .. }, false, _) => &p.forward_converted,
                    (NttInput::Broadcast { .. }, false, _) => &p.forward_broadcast,
                    (NttInput::InPlace, true, _) => &p.forward_finish,
                    (NttInput::Converted { .. }, true, _) => &p.forward_converted_finish,
                    (NttInput::Broadcast { .. }, true, _) => &p.forward_broadcast_finish,
                    (NttInput::Source(_), true, _) => unreachable!("a transform from another buffer is not finished"),
                };
                self.commands
                    .dispatch(pipeline, &entries, ((self.n as u32) / info.tile_words, count as u32, 1));
            }
        }
    }

    /// The NTT limbs of a polynomial with `layout`, in place.
    fn poly_limbs<D: Domain>(&self, poly: &GpuPoly<D>) -> Vec<NttLimb> {
        self.prime_indices(poly.layout)
            .iter()
            .enumerate()
            .map(|(pos, &p)| NttLimb::in_place(p as usize, pos))
            .collect()
    }

    /// Forward NTT of every limb, in place on the device.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn into_eval(&self, poly: GpuPoly<Coeff>) -> Result<GpuPoly<Eval>, GpuError> {
        self.ntt(
            &poly.words(),
            &self.poly_limbs(&poly),
            NttInput::InPlace,
            NttOutput::InPlace,
            false,
        )?;
        Ok(poly.retag())
    }

    /// Inverse NTT of every limb, in place on the device.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn into_coeff(&self, poly: GpuPoly<Eval>) -> Result<GpuPoly<Coeff>, GpuError> {
        self.ntt(
            &poly.words(),
            &self.poly_limbs(&poly),
            NttInput::InPlace,
            NttOutput::InPlace,
            true,
        )?;
        Ok(poly.retag())
    }

    /// `out (op)= a, b` over the limbs whose global primes `limb_primes`
    /// lists (one per limb of `out`); `b` may be shorter than `out` (see
    /// `shaders/elementwise.wgsl`) and a range of a larger buffer; `a`
    /// `None` works in place on `out`.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn elementwise(
        &self,
        op: ElementwiseOp,
        out: &GpuWords,
        a: Option<&GpuWords>,
        b: Option<Limbs<'_>>,
        limb_primes: &[u32],
    ) -> Result<(), GpuError> {
        let words = (limb_primes.len() * self.n) as u32;
        let limb_bytes = 4 * self.n as u64;
        let b_range = b.map(|b| {
            let offset = b.first as u64 * limb_bytes;
            let size = b.count.map_or(b.words.size - offset, |c| c as u64 * limb_bytes);
            b.words.range(offset, size)
        });
        let b_words = b_range.as_ref().map_or(words, |b| (b.size / 4) as u32);
        let shape = ElementwiseShape {
            n: self.n as u32,
            log_n: self.log_n,
            words,
            b_words,
            in_place: u32::from(a.is_none()),
            terms: 0,
            pad: [0; 2],
        };
        let uniform = self.commands.uniform(&shape);
        let limb_primes = self.commands.constant_storage(limb_primes);
        let mut entries = vec![
            out.bind(0),
            entry(3, &self.primes),
            entry(4, &limb_primes),
            entry(5, &uniform),
        ];
        // In place, the kernel still binds `a` (unread): the primes stand in.
        entries.push(a.map_or(entry(1, &self.primes), |a| a.bind(1)));
        if !matches!(op, ElementwiseOp::Neg | ElementwiseOp::Accumulate) {
            entries.push(b_range.as_ref().expect("this operation reads b").bind(2));
        }
        let groups = words.div_ceil(WORKGROUP);
        let x = groups.min(MAX_GROUPS_PER_DIM);
        self.commands
            .dispatch(&self.elementwise[op as usize], &entries, (x, groups.div_ceil(x), 1));
        Ok(())
    }

    /// `out = sum_t c_t * p_t`, or `out +=` with `accumulate`, over the
    /// limbs whose global primes `limb_primes` lists (ciphertexts of two
    /// halves; each plaintext read for both): every term `(c_t, p_t)` a
    /// ciphertext of `limb_primes.len()` limbs and a plaintext of half as
    /// many, all the ciphertexts in one device buffer and all the
    /// plaintexts in one, summed in one dispatch.
    ///
    /// # Panics
    /// If the terms' ciphertexts (or plaintexts) lie in several buffers.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn mul_sum(
        &self,
        out: &GpuWords,
        terms: &[(&GpuWords, Limbs<'_>)],
        limb_primes: &[u32],
        accumulate: bool,
    ) -> Result<(), GpuError> {
        let Some(&(ct, pt)) = terms.first() else {
            return Ok(());
        };
        assert!(
            terms
                .iter()
                .all(|(c, p)| c.shares_buffer(ct) && p.words.shares_buffer(pt.words)),
            "the terms' ciphertexts in one buffer, their plaintexts in another"
        );
        let words = (limb_primes.len() * self.n) as u32;
        let shape = ElementwiseShape {
            n: self.n as u32,
            log_n: self.log_n,
            words,
            b_words: words / 2,
            in_place: u32::from(accumulate),
            terms: terms.len() as u32,
            pad: [0; 2],
        };
        let table: Vec<u32> = terms
            .iter()
            .flat_map(|(c, p)| [self.first_limb(c), self.first_limb(p.words) + p.first as u32])
            .collect();
        let uniform = self.commands.uniform(&shape);
        let table = self.commands.constant_storage(&table);
        let limb_primes = self.commands.constant_storage(limb_primes);
        let entries = [
            out.bind(0),
            entry(1, &ct.buffer),
            entry(2, &pt.words.buffer),
            entry(3, &self.primes),
            entry(4, &limb_primes),
            entry(5, &uniform),
            entry(6, &table),
        ];
        let groups = words.div_ceil(WORKGROUP);
        let x = groups.min(MAX_GROUPS_PER_DIM);
        self.commands
            .dispatch(&self.mul_sum, &entries, (x, groups.div_ceil(x), 1));
        Ok(())
    }

    /// `a (op)= b` over two polynomials of one layout.
    fn assign<D: Domain>(&self, op: ElementwiseOp, a: &GpuPoly<D>, b: &GpuPoly<D>) -> Result<(), GpuError> {
        assert_eq!(a.layout, b.layout, "limb layouts differ");
        let primes = self.prime_indices(a.layout);
        self.elementwise(op, &a.words(), None, Some((&b.words()).into()), &primes)
    }

    /// `a += b`.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn add_assign<D: Domain>(&self, a: &GpuPoly<D>, b: &GpuPoly<D>) -> Result<(), GpuError> {
        self.assign(ElementwiseOp::Add, a, b)
    }

    /// `a -= b`.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn sub_assign<D: Domain>(&self, a: &GpuPoly<D>, b: &GpuPoly<D>) -> Result<(), GpuError> {
        self.assign(ElementwiseOp::Sub, a, b)
    }

    /// `a *= b`, point-wise in evaluation form.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn mul_assign(&self, a: &GpuPoly<Eval>, b: &GpuPoly<Eval>) -> Result<(), GpuError> {
        self.assign(ElementwiseOp::Mul, a, b)
    }

    /// A table of conversion rows on the device.
    pub fn convert_table(&self, rows: &[ConvertRow<'_>]) -> ConvertTable {
        let mut words = vec![0u32; 8 * rows.len()];
        // Each converter's source entries once, then each row's target entries.
        let mut sources: Vec<(*const BasisConverter, usize)> = Vec::new();
        for (r, row) in rows.iter().enumerate() {
            let converter = row.converter;
            let key = converter as *const BasisConverter;
            let source_table = match sources.iter().find(|(k, _)| *k == key) {
                Some(&(_, offset)) => offset,
                None => {
                    let offset = words.len();
                    for ((&s, &(inv, inv_shoup)), &(hi, lo)) in converter
                        .sources()
                        .iter()
                        .zip(converter.qhat_inv())
                        .zip(converter.reciprocal())
                    {
                        words.extend([s as u32, inv, inv_shoup, hi, lo]);
                    }
                    sources.push((key, offset));
                    offset
                }
            };
            let target_table = words.len();
            words.extend_from_slice(converter.qhat_mod(row.target));
            words.push(converter.qs_mod(row.target));
            words[8 * r..8 * r + 8].copy_from_slice(&[
                row.first_source as u32,
                converter.sources().len() as u32,
                source_table as u32,
                target_table as u32,
                row.out as u32,
                row.target as u32,
                u32::from(row.centered),
                0,
            ]);
        }
        ConvertTable {
            buffer: self.commands.constant_storage(&words),
            rows: rows.len(),
        }
    }

    /// Writes every row of `table`, converted from the coefficient-form
    /// limbs of `input`, into its output limb of `output` (coefficient form).
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn convert(&self, output: &GpuWords, input: &GpuWords, table: &ConvertTable) -> Result<(), GpuError> {
        let shape = ConvertShape {
            n: self.n as u32,
            log_n: self.log_n,
            rows: table.rows as u32,
            pad: 0,
        };
        let uniform = self.commands.uniform(&shape);
        self.commands.dispatch(
            &self.convert,
            &[
                output.bind(0),
                entry(1, &self.primes),
                entry(2, &uniform),
                input.bind(6),
                entry(7, &table.buffer),
            ],
            ((self.n as u32).div_ceil(WORKGROUP), table.rows as u32, 1),
        );
        Ok(())
    }

    /// Uploads a switching key's digits (each `(b, a)` over `Q_L ++ P`) for
    /// [`Self::inner_product`], as few chunks of digits as the adapter's
    /// binding size allows.
    ///
    /// # Errors
    /// [`GpuError::TooLarge`] when one digit exceeds a binding.
    pub fn upload_key(&self, digits: &[(&[u32], &[u32])], key_limbs: usize) -> Result<GpuKeyHalves, GpuError> {
        let limit = self.binding_limit();
        let digit_bytes = (4 * self.n * key_limbs) as u64;
        if digit_bytes > limit {
            return Err(GpuError::TooLarge {
                what: "one digit of a switching key",
                bytes: digit_bytes,
                limit,
            });
        }
        let per_chunk = ((limit / digit_bytes) as usize).max(1);
        let chunks = digits
            .chunks(per_chunk)
            .enumerate()
            .map(|(c, chunk)| {
                let b: Vec<u32> = chunk.iter().flat_map(|d| d.0.iter().copied()).collect();
                let a: Vec<u32> = chunk.iter().flat_map(|d| d.1.iter().copied()).collect();
                (c * per_chunk, chunk.len(), self.upload_words(&b), self.upload_words(&a))
            })
            .collect();
        Ok(GpuKeyHalves { chunks, key_limbs })
    }

    /// `acc = sum_j digit_j * key_j` over the first `digits_used` digits
    /// for both key halves (acc_b's `limbs` limbs, then acc_a's), or `acc +=`
    /// as `sums` says. `table` is the digit table of
    /// `shaders/keyswitch.wgsl` (per limb: prime, key limb; per digit and
    /// limb: own or converted, position); digits are read through `perm`
    /// when given.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    #[allow(clippy::too_many_arguments)] // the two sources of a digit, the key, the sums and how
    pub fn inner_product(
        &self,
        own: &GpuWords,
        converted: &GpuWords,
        key: &GpuKeyHalves,
        perm: Option<&GpuWords>,
        acc: &GpuWords,
        table: &wgpu::Buffer,
        (limbs, digits_used): (usize, usize),
        sums: Sums<'_>,
    ) -> Result<(), GpuError> {
        let chunks: Vec<_> = key.chunks.iter().filter(|c| c.0 < digits_used).collect();
        for (index, (digit_base, digits, key_b, key_a)) in chunks.iter().enumerate() {
            let shape = InnerProductShape {
                n: self.n as u32,
                log_n: self.log_n,
                limbs: limbs as u32,
                digits: (*digits).min(digits_used - digit_base) as u32,
                digit_base: *digit_base as u32,
                key_limbs: key.key_limbs as u32,
                use_perm: u32::from(perm.is_some()),
                accumulate: u32::from(matches!(sums, Sums::Accumulate) || index > 0),
            };
            let uniform = self.commands.uniform(&shape);
            // Without a permutation the binding still needs a buffer: the table stands in, unread.
            let mut entries = vec![
                own.bind(13),
                converted.bind(14),
                key_b.bind(15),
                key_a.bind(16),
                perm.map_or(entry(17, table), |p| p.bind(17)),
                entry(19, table),
                entry(20, &uniform),
            ];
            match sums {
                Sums::Inverse(special) if index == chunks.len() - 1 => {
                    // Limbs over Q point-wise (their prime is their index),
                    // then each special limb's half through the first pass.
                    let slots: Vec<[u32; 4]> = (0..(limbs - special.len() / 2) as u32)
                        .map(|i| [i, 0, i, 0])
                        .chain(special.iter().map(|l| {
                            let (half, limb) = (l.pos as usize / limbs, l.pos as usize % limbs);
                            [l.prime, l.pos, limb as u32, 1 + half as u32]
                        }))
                        .collect();
                    self.computed_inverse_pass(&self.ntt.inverse_product, acc, &slots, &entries);
                    self.ntt_from_pass(acc, special, NttInput::InPlace, NttOutput::InPlace, true, 1);
                }
                _ => {
                    entries.push(acc.bind(18));
                    entries.push(entry(1, &self.primes));
                    self.commands.dispatch(
                        &self.inner_product,
                        &entries,
                        ((self.n as u32).div_ceil(WORKGROUP), limbs as u32, 1),
                    );
                }
            }
        }
        Ok(())
    }

    /// The tensor product of ciphertexts `a` and `b` (each two halves of
    /// `primes.len()` limbs over `primes`, evaluation form) into `tensor`
    /// (`d0`, `d1`, `d2`), and `d2` out of evaluation form into `coeff`:
    /// the first pass of its inverse NTT computed with the product.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn tensor_inverse(
        &self,
        a: &GpuWords,
        b: &GpuWords,
        tensor: &GpuWords,
        coeff: &GpuWords,
        primes: &[usize],
    ) -> Result<(), GpuError> {
        let half = primes.len() as u32;
        let slots: Vec<[u32; 4]> = (0..half).map(|i| [primes[i as usize] as u32, i, i, half]).collect();
        let entries = [a.bind(5), b.bind(21), tensor.bind(22)];
        self.computed_inverse_pass(&self.ntt.inverse_tensor, coeff, &slots, &entries);
        let limbs: Vec<NttLimb> = primes
            .iter()
            .enumerate()
            .map(|(i, &p)| NttLimb::in_place(p, i))
            .collect();
        self.ntt_from_pass(coeff, &limbs, NttInput::InPlace, NttOutput::InPlace, true, 1);
        Ok(())
    }

    /// A limb-wise kernel writing `rows.len()` limbs of `out`, row `l` for
    /// limb `l` (see `shaders/limbwise.wgsl`), reading `a` (and `perm` for
    /// [`LimbwiseOp::AddPermuted`]).
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn limbwise(
        &self,
        op: LimbwiseOp,
        out: &GpuWords,
        a: &GpuWords,
        perm: Option<&GpuWords>,
        rows: &[LimbRow],
    ) -> Result<(), GpuError> {
        let words = (rows.len() * self.n) as u32;
        let shape = LimbwiseShape {
            n: self.n as u32,
            log_n: self.log_n,
            words,
            pad: 0,
        };
        let uniform = self.commands.uniform(&shape);
        let table: Vec<u32> = rows.iter().flat_map(LimbRow::words).collect();
        let table = self.commands.constant_storage(&table);
        let mut entries = vec![
            out.bind(0),
            entry(3, &self.primes),
            entry(4, &table),
            entry(5, &uniform),
        ];
        entries.push(a.bind(1));
        if op == LimbwiseOp::AddPermuted {
            entries.push(perm.expect("add_permuted reads a permutation").bind(7));
        }
        let groups = words.div_ceil(WORKGROUP);
        let x = groups.min(MAX_GROUPS_PER_DIM);
        self.commands
            .dispatch(&self.limbwise[op as usize], &entries, (x, groups.div_ceil(x), 1));
        Ok(())
    }

    /// Signed 64-bit coefficients reduced into each of `primes`: for each
    /// of the `coeffs.len() / N` polynomials `p` and each `j`, limb
    /// `p * primes.len() + j` over `primes[j]`, coefficient form, equal word
    /// for word to `RnsPoly::from_signed`: the device half of encoding,
    /// several plaintexts in one upload and one dispatch. The kernel reads
    /// each coefficient as two u32 words, low then high: the layout of an
    /// `i64` on the little-endian hosts wgpu runs on.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn reduce_signed(&self, coeffs: &[i64], primes: &[usize]) -> Result<GpuWords, GpuError> {
        assert!(
            !coeffs.is_empty() && coeffs.len().is_multiple_of(self.n),
            "whole polynomials, one coefficient per ring position"
        );
        let polys = coeffs.len() / self.n;
        let source = self.upload_words(bytemuck::cast_slice(coeffs));
        let out = self.scratch(polys * primes.len());
        let rows: Vec<LimbRow> = (0..polys)
            .flat_map(|p| primes.iter().map(move |&prime| LimbRow::new(prime, (0, 0), p)))
            .collect();
        self.limbwise(LimbwiseOp::ReduceSigned, &out, &source, None, &rows)?;
        Ok(out)
    }
}
