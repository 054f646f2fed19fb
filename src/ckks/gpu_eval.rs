//! The CKKS evaluator on the GPU: the same operations as [`super::Evaluator`],
//! composed from the WGSL kernels of [`crate::backend::gpu`], with ciphertexts
//! and evaluation keys resident on the device. Every result equals the CPU
//! evaluator's word for word (`latent-he check`, `tests/gpu_eval.rs`).
//!
//! Layout, chosen so that each step is one dispatch over everything it
//! touches: a ciphertext's two halves share one buffer (c0's limbs, then
//! c1's), and the rotations of one hoisted rotation share one too (each a
//! range the kernels bind as a whole), so that a sum of their products
//! with plaintexts is one kernel; a key switch's sums share one (`b`'s extended limbs, then `a`'s);
//! a decomposition keeps every digit's converted limbs in one buffer and
//! reads each digit's own limbs from the decomposed polynomial itself; a
//! switching key holds every digit in one buffer per half. A key switch is
//! then an inverse NTT out of the ciphertext (for a product, its first pass
//! computed with the tensor product), the conversion of all digits fused
//! into the first pass of their forward NTT, one inner product over all
//! digits writing both halves with the first pass of the special limbs'
//! inverse NTT, and the rest of ModDown for both halves at once (the
//! inverse NTT's other passes, conversion fused into the forward NTT, one
//! kernel for the subtraction, the scaling and what the operation adds:
//! the rotated `c0`, the tensor product's `d0` and `d1`, or a running sum).
//! Scratch buffers come from the device's pool, so an operation repeated
//! allocates nothing.

use super::ciphertext::Ciphertext;
use super::encoder::{encode_coeffs, EncodedCoeffs, Plaintext, ScaledCoeffs};
use super::error::CkksError;
use super::gpu_cost::{per_binding, plaintext_groups, PlaintextGroup};
use super::keys::{KeyId, PublicKeySet, SwitchingKey};
use super::params::Params;
use crate::backend::gpu::kernels::{
    ConvertRow, ElementwiseOp, FinishMode, GpuKeyHalves, LimbRow, LimbwiseOp, NttInput, NttLimb, NttOutput, Sums,
};
use crate::backend::gpu::{GpuContext, GpuError, GpuRing, GpuWords, GpuWork, Limbs};
use crate::ring::automorphism::eval_permutation;
use crate::ring::RnsPoly;
use std::collections::BTreeMap;
use std::sync::Arc;
use thiserror::Error;

/// Errors of the GPU evaluator.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GpuEvalError {
    /// The operands were refused (same checks as the CPU evaluator).
    #[error(transparent)]
    Ckks(#[from] CkksError),
    /// The device failed.
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

/// A ciphertext resident on the device.
///
/// Invariant: `parts` holds `2 (level + 1)` limbs in evaluation form, c0's
/// over `Q_level`, then c1's (a whole buffer, or a range of one that other
/// ciphertexts share); `scale` and `key_id` as in [`Ciphertext`].
pub struct GpuCiphertext {
    parts: GpuWords,
    level: usize,
    scale: f64,
    key_id: KeyId,
}

impl GpuCiphertext {
    /// Current level.
    pub fn level(&self) -> usize {
        self.level
    }

    /// Current scale.
    pub fn scale(&self) -> f64 {
        self.scale
    }
}

/// A plaintext resident on the device, alone in its buffer or beside the
/// others encoded with it.
///
/// Invariant: limbs `first..first + level + 1` of `words` hold the
/// plaintext over `Q_level` (evaluation form); decoding divides by `scale`;
/// its words equal the CPU's [`Plaintext`] of the same encoding.
pub struct GpuPlaintext {
    words: GpuWords,
    first: usize,
    level: usize,
    scale: f64,
}

impl GpuPlaintext {
    fn limbs(&self) -> Limbs<'_> {
        Limbs {
            words: &self.words,
            first: self.first,
            count: Some(self.level + 1),
        }
    }

    /// Level of the plaintext.
    pub fn level(&self) -> usize {
        self.level
    }

    /// Scale the values were multiplied by.
    pub fn scale(&self) -> f64 {
        self.scale
    }
}

/// A switching key's digits on the device, over `Q_level ++ P`.
struct GpuSwitchingKey {
    halves: GpuKeyHalves,
    level: usize,
}

/// The extended digits of one polynomial (ModUp), shared by every key
/// switch of it (hoisting).
///
/// Invariant: `converted` holds, digit after digit, each digit's limbs over
/// the extended primes outside its own range, in evaluation form, in the
/// order [`GpuEvaluator::decompose`] lists them; the polynomial's own limbs
/// are limbs `own_base..own_base + level + 1` of `own`.
struct GpuDecomposed {
    own: GpuWords,
    own_base: usize,
    converted: GpuWords,
    level: usize,
    digits: usize,
}

/// The GPU evaluator: the ring's tables, the evaluation keys and the
/// automorphism permutations, all resident.
pub struct GpuEvaluator {
    params: Arc<Params>,
    ring: GpuRing,
    key_id: KeyId,
    relin: Option<GpuSwitchingKey>,
    galois: BTreeMap<u64, (GpuSwitchingKey, GpuWords)>,
}

impl GpuEvaluator {
    /// Uploads the ring tables and every evaluation key of `keys`.
    ///
    /// # Errors
    /// [`GpuError`] from the device (a key digit larger than one binding).
    pub fn new(ctx: &Arc<GpuContext>, keys: &PublicKeySet) -> Result<Self, GpuEvalError> {
        let params = keys.params.clone();
        let ring = GpuRing::new(ctx, params.ring())?;
        let upload = |key: &SwitchingKey| -> Result<GpuSwitchingKey, GpuError> {
            let a: Vec<_> = key.digits.iter().map(|d| d.a(&params)).collect();
            let digits: Vec<(&[u32], &[u32])> = key
                .digits
                .iter()
                .zip(&a)
                .map(|(d, a)| (d.b.words(), a.words()))
                .collect();
            let key_limbs = params.extended_layout(key.level()).len();
            Ok(GpuSwitchingKey {
                halves: ring.upload_key(&digits, key_limbs)?,
                level: key.level(),
            })
        };
        let relin = keys.relin.as_ref().map(upload).transpose()?;
        let n = params.n();
        let galois = keys
            .galois
            .iter()
            .map(|(&g, key)| Ok((g, (upload(key)?, ring.upload_words(&eval_permutation(g, n))))))
            .collect::<Result<_, GpuError>>()?;
        Ok(Self {
            key_id: keys.id,
            params,
            ring,
            relin,
            galois,
        })
    }

    /// The device ring (tables and kernels).
    pub fn ring(&self) -> &GpuRing {
        &self.ring
    }

    /// The work recorded on the device since this evaluator was made
    /// (subtract two snapshots for the work of what ran between).
    pub fn work(&self) -> GpuWork {
        self.ring.work()
    }

    fn check_key(&self, id: KeyId) -> Result<(), CkksError> {
        if id != self.key_id {
            return Err(CkksError::KeyMismatch {
                what: "ciphertext",
                found: id.to_string(),
                expected: self.key_id.to_string(),
            });
        }
        Ok(())
    }

    /// The global primes of a ciphertext's limbs at `level` (both halves).
    fn ct_primes(level: usize) -> Vec<u32> {
        (0..=level).chain(0..=level).map(|i| i as u32).collect()
    }

    /// A ciphertext over fresh words.
    fn with_parts(&self, parts: GpuWords, like: &GpuCiphertext) -> GpuCiphertext {
        GpuCiphertext {
            parts,
            level: like.level,
            scale: like.scale,
            key_id: like.key_id,
        }
    }

    /// Copies a ciphertext to the device.
    ///
    /// # Errors
    /// [`CkksError::KeyMismatch`] for a ciphertext of another key.
    pub fn upload(&self, ct: &Ciphertext) -> Result<GpuCiphertext, GpuEvalError> {
        self.check_key(ct.key_id)?;
        let (c0, c1) = ct.parts();
        let words: Vec<u32> = c0.words().iter().chain(c1.words()).copied().collect();
        Ok(GpuCiphertext {
            parts: self.ring.upload_words(&words),
            level: ct.level(),
            scale: ct.scale,
            key_id: ct.key_id,
        })
    }

    /// Copies a ciphertext back to the host.
    ///
    /// # Errors
    /// [`GpuError`] from the device.
    pub fn download(&self, ct: &GpuCiphertext) -> Result<Ciphertext, GpuEvalError> {
        let mut words = self.ring.download_words(&ct.parts)?;
        let layout = self.params.layout(ct.level);
        let c1 = words.split_off(words.len() / 2);
        let n = self.ring.n();
        Ok(Ciphertext {
            c0: RnsPoly::from_words(n, layout, words),
            c1: RnsPoly::from_words(n, layout, c1),
            scale: ct.scale,
            key_id: ct.key_id,
        })
    }

    /// Encodes `values` at `level` with `scale` into a device plaintext: the
    /// embedding and rounding on the host, the rest on the device
    /// ([`Self::plaintext`]).
    ///
    /// # Errors
    /// As [`encode_coeffs`]; device errors.
    pub fn encode(&self, values: &[f64], level: usize, scale: f64) -> Result<GpuPlaintext, GpuEvalError> {
        self.plaintext(encode_coeffs(&self.params, values, level, scale)?)
    }

    /// Finishes an encoding on the device ([`Self::plaintexts`] of one).
    ///
    /// # Errors
    /// Device errors.
    pub fn plaintext(&self, encoded: EncodedCoeffs) -> Result<GpuPlaintext, GpuEvalError> {
        Ok(self.plaintexts(vec![encoded])?.remove(0))
    }

    /// Finishes encodings on the device, in order. Coefficients below 2^62
    /// travel as 8 bytes each, once for all the level's primes, and are
    /// reduced and transformed there, as many plaintexts of one level
    /// together as one storage binding holds: one upload, one reduction and
    /// one NTT for all of them (a host plaintext would be `4 (level + 1)`
    /// bytes a coefficient, reduced and transformed on the CPU). Wider ones
    /// are finished on the host and uploaded. Either way the words equal
    /// [`EncodedCoeffs::into_plaintext`]'s.
    ///
    /// # Errors
    /// Device errors.
    pub fn plaintexts(&self, encoded: Vec<EncodedCoeffs>) -> Result<Vec<GpuPlaintext>, GpuEvalError> {
        let (n, limit) = (self.ring.n(), self.ring.binding_limit());
        let shape: Vec<(usize, bool)> = encoded
            .iter()
            .map(|e| (e.level(), matches!(e.coeffs(), ScaledCoeffs::Narrow(_))))
            .collect();
        let mut out = Vec::with_capacity(encoded.len());
        let mut rest = encoded.into_iter();
        for group in plaintext_groups(&shape, |level| per_binding(limit, n, level + 1)) {
            match group {
                PlaintextGroup::Host => {
                    let e = rest.next().expect("one group per encoding or run");
                    let (level, scale) = (e.level(), e.scale());
                    let words = self.ring.upload(&e.into_plaintext(&self.params).poly).words();
                    out.push(GpuPlaintext {
                        words,
                        first: 0,
                        level,
                        scale,
                    });
                }
                PlaintextGroup::Device(count) => {
                    let mut batch: Vec<EncodedCoeffs> = rest.by_ref().take(count).collect();
                    self.flush_plaintexts(&mut batch, &mut out)?;
                }
            }
        }
        Ok(out)
    }

    /// Reduces and transforms `batch` (narrow, one level) together,
    /// appending its plaintexts to `out`.
    fn flush_plaintexts(
        &self,
        batch: &mut Vec<EncodedCoeffs>,
        out: &mut Vec<GpuPlaintext>,
    ) -> Result<(), GpuEvalError> {
        let Some(level) = batch.first().map(EncodedCoeffs::level) else {
            return Ok(());
        };
        let coeffs: Vec<i64> = batch
            .iter()
            .flat_map(|e| match e.coeffs() {
                ScaledCoeffs::Narrow(c) => c.iter().copied(),
                ScaledCoeffs::Wide(_) => unreachable!("only narrow coefficients are batched"),
            })
            .collect();
        let primes: Vec<usize> = (0..=level).collect();
        let words = self.ring.reduce_signed(&coeffs, &primes)?;
        let limbs: Vec<NttLimb> = (0..batch.len())
            .flat_map(|p| primes.iter().map(move |&j| NttLimb::in_place(j, p * (level + 1) + j)))
            .collect();
        self.ring
            .ntt(&words, &limbs, NttInput::InPlace, NttOutput::InPlace, false)?;
        out.extend(batch.drain(..).enumerate().map(|(p, e)| GpuPlaintext {
            words: words.clone(),
            first: p * (level + 1),
            level,
            scale: e.scale(),
        }));
        Ok(())
    }

    /// Copies a device plaintext back to the host.
    ///
    /// # Errors
    /// [`GpuError`] from the device.
    pub fn download_plaintext(&self, pt: &GpuPlaintext) -> Result<Plaintext, GpuEvalError> {
        let n = self.ring.n();
        let words = self.ring.download_words(&pt.words)?;
        let own = words[pt.first * n..(pt.first + pt.level + 1) * n].to_vec();
        Ok(Plaintext {
            poly: RnsPoly::from_words(n, self.params.layout(pt.level), own),
            level: pt.level,
            scale: pt.scale,
        })
    }

    fn check_pair(&self, a: &GpuCiphertext, b: &GpuCiphertext) -> Result<(), CkksError> {
        self.check_key(a.key_id)?;
        self.check_key(b.key_id)?;
        super::evaluator::check_levels(a.level, b.level)
    }

    /// `out = a (op) b` over both halves of ciphertexts at `level`.
    fn both_halves(
        &self,
        op: ElementwiseOp,
        a: &GpuWords,
        b: Option<Limbs<'_>>,
        level: usize,
    ) -> Result<GpuWords, GpuEvalError> {
        let out = self.ring.scratch(2 * (level + 1));
        self.ring.elementwise(op, &out, Some(a), b, &Self::ct_primes(level))?;
        Ok(out)
    }

    /// `a + b` (same checks as the CPU evaluator).
    ///
    /// # Errors
    /// Key, level or scale mismatch; device errors.
    pub fn add(&self, a: &GpuCiphertext, b: &GpuCiphertext) -> Result<GpuCiphertext, GpuEvalError> {
        self.check_pair(a, b)?;
        super::evaluator::check_scales(a.scale, b.scale)?;
        let parts = self.both_halves(ElementwiseOp::Add, &a.parts, Some((&b.parts).into()), a.level)?;
        Ok(self.with_parts(parts, a))
    }

    /// `a - b`.
    ///
    /// # Errors
    /// Key, level or scale mismatch; device errors.
    pub fn sub(&self, a: &GpuCiphertext, b: &GpuCiphertext) -> Result<GpuCiphertext, GpuEvalError> {
        self.check_pair(a, b)?;
        super::evaluator::check_scales(a.scale, b.scale)?;
        let parts = self.both_halves(ElementwiseOp::Sub, &a.parts, Some((&b.parts).into()), a.level)?;
        Ok(self.with_parts(parts, a))
    }

    /// `-a`.
    ///
    /// # Errors
    /// Key mismatch; device errors.
    pub fn neg(&self, a: &GpuCiphertext) -> Result<GpuCiphertext, GpuEvalError> {
        self.check_key(a.key_id)?;
        let parts = self.both_halves(ElementwiseOp::Neg, &a.parts, None, a.level)?;
        Ok(self.with_parts(parts, a))
    }

    /// A copy of a ciphertext's words.
    fn copy(&self, ct: &GpuCiphertext) -> GpuWords {
        self.ring.slice_limbs(&ct.parts, 0, 2 * (ct.level + 1))
    }

    /// `ct + pt` (same level and scale).
    ///
    /// # Errors
    /// Key, level or scale mismatch; device errors.
    pub fn add_plain(&self, ct: &GpuCiphertext, pt: &GpuPlaintext) -> Result<GpuCiphertext, GpuEvalError> {
        self.check_plain(ct, pt)?;
        super::evaluator::check_scales(ct.scale, pt.scale)?;
        let parts = self.copy(ct);
        let c0_primes: Vec<u32> = (0..=ct.level as u32).collect();
        self.ring
            .elementwise(ElementwiseOp::Add, &parts, None, Some(pt.limbs()), &c0_primes)?;
        Ok(self.with_parts(parts, ct))
    }

    /// One row per limb of both halves at `level`, reading limb `l` of `a`.
    fn ct_rows(level: usize, value: impl Fn(usize, usize) -> (u32, u32)) -> Vec<LimbRow> {
        (0..2)
            .flat_map(|h| (0..=level).map(move |i| (h, i)))
            .map(|(h, i)| LimbRow::new(i, value(h, i), h * (level + 1) + i))
            .collect()
    }

    /// `ct * c` for a real constant, scaled as [`super::Evaluator::mul_const_assign`]
    /// (rescale afterwards to land on the next level's canonical scale).
    ///
    /// # Errors
    /// Key mismatch, level 0, non-finite or overflowing constant; device errors.
    pub fn mul_const(&self, ct: &GpuCiphertext, c: f64) -> Result<GpuCiphertext, GpuEvalError> {
        self.check_key(ct.key_id)?;
        let level = ct.level;
        if level == 0 {
            return Err(CkksError::OutOfLevels { needed: 1, level: 0 }.into());
        }
        let scale = self.params.mul_plain_scale(level, ct.scale);
        let scaled = super::evaluator::scaled_constant(c, scale)?;
        let ring = self.params.ring();
        let rows = Self::ct_rows(level, |_, i| {
            let m = ring.q(i);
            let v = m.reduce_i64(scaled);
            (v, m.shoup(v))
        });
        let parts = self.ring.scratch(2 * (level + 1));
        self.ring
            .limbwise(LimbwiseOp::MulScalar, &parts, &ct.parts, None, &rows)?;
        Ok(GpuCiphertext {
            parts,
            level,
            scale: ct.scale * scale,
            key_id: ct.key_id,
        })
    }

    /// `ct + c` for a real constant at the ciphertext's scale.
    ///
    /// # Errors
    /// Key mismatch, non-finite or overflowing constant; device errors.
    pub fn add_const(&self, ct: &GpuCiphertext, c: f64) -> Result<GpuCiphertext, GpuEvalError> {
        self.check_key(ct.key_id)?;
        let scaled = super::evaluator::scaled_constant(c, ct.scale)?;
        let ring = self.params.ring();
        // A constant polynomial evaluates to the constant at every point; c1 is unchanged.
        let rows = Self::ct_rows(ct.level, |h, i| {
            if h == 0 {
                (ring.q(i).reduce_i64(scaled), 0)
            } else {
                (0, 0)
            }
        });
        let parts = self.ring.scratch(2 * (ct.level + 1));
        self.ring
            .limbwise(LimbwiseOp::AddScalar, &parts, &ct.parts, None, &rows)?;
        Ok(self.with_parts(parts, ct))
    }

    /// Drops primes down to `level` (scale unchanged).
    ///
    /// # Errors
    /// Key mismatch, [`CkksError::OutOfLevels`] above the ciphertext's level.
    pub fn drop_level(&self, ct: &GpuCiphertext, level: usize) -> Result<GpuCiphertext, GpuEvalError> {
        self.check_key(ct.key_id)?;
        if level > ct.level {
            return Err(CkksError::OutOfLevels {
                needed: level,
                level: ct.level,
            }
            .into());
        }
        let parts = self.ring.scratch(2 * (level + 1));
        self.ring.copy_limbs(&ct.parts, 0, &parts, 0, level + 1);
        self.ring
            .copy_limbs(&ct.parts, ct.level + 1, &parts, level + 1, level + 1);
        Ok(GpuCiphertext { parts, level, ..*ct })
    }

    fn check_plain(&self, ct: &GpuCiphertext, pt: &GpuPlaintext) -> Result<(), CkksError> {
        self.check_key(ct.key_id)?;
        if ct.level != pt.level {
            return Err(CkksError::LevelMismatch {
                left: ct.level,
                right: pt.level,
            });
        }
        Ok(())
    }

    /// `ct * pt` without rescaling.
    ///
    /// # Errors
    /// Key or level mismatch; device errors.
    pub fn mul_plain(&self, ct: &GpuCiphertext, pt: &GpuPlaintext) -> Result<GpuCiphertext, GpuEvalError> {
        self.check_plain(ct, pt)?;
        let parts = self.both_halves(ElementwiseOp::Mul, &ct.parts, Some(pt.limbs()), ct.level)?;
        Ok(GpuCiphertext {
            parts,
            level: ct.level,
            scale: ct.scale * pt.scale,
            key_id: ct.key_id,
        })
    }

    /// `acc + ct * pt` without rescaling, accumulated in `acc`'s buffer
    /// (one kernel, no product allocated).
    ///
    /// # Errors
    /// Key or level mismatch, or an `acc` whose scale is not `ct`'s times
    /// `pt`'s (the CPU evaluator's checks); device errors.
    pub fn mul_plain_add(
        &self,
        acc: GpuCiphertext,
        ct: &GpuCiphertext,
        pt: &GpuPlaintext,
    ) -> Result<GpuCiphertext, GpuEvalError> {
        self.check_plain(ct, pt)?;
        self.check_pair(&acc, ct)?;
        super::evaluator::check_scales(acc.scale, ct.scale * pt.scale)?;
        self.ring.elementwise(
            ElementwiseOp::MulAdd,
            &acc.parts,
            Some(&ct.parts),
            Some(pt.limbs()),
            &Self::ct_primes(ct.level),
        )?;
        Ok(acc)
    }

    /// `sum_t ct_t * pt_t` without rescaling, the words of the CPU's
    /// [`super::EvalBackend::mul_plain_sum`]: one kernel per run of
    /// consecutive terms whose ciphertexts share a device buffer (the
    /// rotations of one [`Self::rotate_hoisted`]) and whose plaintexts
    /// share one (those finished together by [`Self::plaintexts`]).
    ///
    /// # Errors
    /// No terms; key or level mismatch, or products of different scales
    /// (the checks of [`Self::mul_plain`] and [`Self::mul_plain_add`]);
    /// device errors.
    pub fn mul_plain_sum(&self, terms: &[(&GpuCiphertext, &GpuPlaintext)]) -> Result<GpuCiphertext, GpuEvalError> {
        let (first, first_pt) = *terms.first().ok_or(CkksError::Shape {
            what: "sum of plaintext products",
            expected: 1,
            found: 0,
        })?;
        let scale = first.scale * first_pt.scale;
        for &(ct, pt) in terms {
            self.check_plain(ct, pt)?;
            self.check_pair(first, ct)?;
            super::evaluator::check_scales(scale, ct.scale * pt.scale)?;
        }
        let parts = self.ring.scratch(2 * (first.level + 1));
        let primes = Self::ct_primes(first.level);
        let mut rest = terms;
        let mut accumulate = false;
        while let Some(&(ct, pt)) = rest.first() {
            let run = rest
                .iter()
                .take_while(|(c, p)| c.parts.shares_buffer(&ct.parts) && p.words.shares_buffer(&pt.words))
                .count();
            let run_terms: Vec<_> = rest[..run].iter().map(|(c, p)| (&c.parts, p.limbs())).collect();
            self.ring.mul_sum(&parts, &run_terms, &primes, accumulate)?;
            accumulate = true;
            rest = &rest[run..];
        }
        Ok(GpuCiphertext {
            parts,
            level: first.level,
            scale,
            key_id: first.key_id,
        })
    }

    /// Divides by the last prime and drops it: the last limb of both halves
    /// out of evaluation form, broadcast centred to the primes below, back
    /// into evaluation form, subtracted and scaled by `q_last^-1`.
    ///
    /// # Errors
    /// [`CkksError::OutOfLevels`] at level 0; device errors.
    pub fn rescale(&self, ct: &GpuCiphertext) -> Result<GpuCiphertext, GpuEvalError> {
        self.check_key(ct.key_id)?;
        let level = ct.level;
        if level == 0 {
            return Err(CkksError::OutOfLevels { needed: 1, level: 0 }.into());
        }
        let (q, last) = (level + 1, level);
        let top = self.ring.scratch(2);
        let top_limbs = [NttLimb::from(last, 0, last), NttLimb::from(last, 1, q + last)];
        self.ring
            .ntt(&top, &top_limbs, NttInput::Source(&ct.parts), NttOutput::InPlace, true)?;
        let ring = self.params.ring();
        let q_last = ring.q(last).value();
        // Per half h and prime j below the last: the broadcast of the last
        // limb, transformed, then subtracted from limb j and scaled.
        let pairs: Vec<(usize, usize)> = (0..2).flat_map(|h| (0..last).map(move |j| (h, j))).collect();
        let limbs: Vec<NttLimb> = pairs.iter().map(|&(h, j)| NttLimb::from(j, h * last + j, h)).collect();
        let rows: Vec<LimbRow> = pairs
            .iter()
            .map(|&(h, j)| {
                let m = ring.q(j);
                let inv = m.inv(q_last % m.value());
                LimbRow::new(j, (inv, m.shoup(inv)), h * q + j)
            })
            .collect();
        let (t, parts) = (self.ring.scratch(2 * last), self.ring.scratch(2 * last));
        self.ring.ntt(
            &t,
            &limbs,
            NttInput::Broadcast {
                source: &top,
                source_prime: last,
            },
            NttOutput::Finish {
                out: &parts,
                a: &ct.parts,
                c: None,
                perm: None,
                rows: &rows,
            },
            false,
        )?;
        Ok(GpuCiphertext {
            parts,
            level: last - 1,
            scale: ct.scale / f64::from(q_last),
            key_id: ct.key_id,
        })
    }

    /// The ModUp digits of the polynomial at limbs `base..base + level + 1`
    /// of `src` (evaluation form): its inverse NTT out of `src`, then
    /// [`Self::extend`].
    fn decompose(&self, src: &GpuWords, base: usize, level: usize) -> Result<GpuDecomposed, GpuEvalError> {
        let coeff = self.ring.scratch(level + 1);
        let coeff_limbs: Vec<NttLimb> = (0..=level).map(|i| NttLimb::from(i, i, base + i)).collect();
        self.ring
            .ntt(&coeff, &coeff_limbs, NttInput::Source(src), NttOutput::InPlace, true)?;
        self.extend(&coeff, src, base, level)
    }

    /// The ModUp digits of the polynomial at limbs `base..base + level + 1`
    /// of `src` (evaluation form), whose coefficient form `coeff` holds:
    /// every digit's conversion to the other extended primes fused into the
    /// first pass of their forward NTT.
    fn extend(
        &self,
        coeff: &GpuWords,
        src: &GpuWords,
        base: usize,
        level: usize,
    ) -> Result<GpuDecomposed, GpuEvalError> {
        let params = &self.params;
        let ring = params.ring();
        let ext = params.extended_layout(level);
        let digits = params.digits(level);
        let mut rows = Vec::new();
        for range in &digits {
            for i in (0..ext.len()).filter(|i| !range.contains(i)) {
                rows.push(ConvertRow {
                    converter: params.mod_up(range),
                    first_source: range.start,
                    target: ring.global_index(ext, i),
                    out: rows.len(),
                    centered: true,
                });
            }
        }
        let converted = self.ring.scratch(rows.len());
        let limbs: Vec<NttLimb> = rows.iter().map(|r| NttLimb::from(r.target, r.out, r.out)).collect();
        let table = self.ring.convert_table(&rows);
        self.ring.ntt(
            &converted,
            &limbs,
            NttInput::Converted {
                input: coeff,
                table: &table,
            },
            NttOutput::InPlace,
            false,
        )?;
        Ok(GpuDecomposed {
            own: src.clone(),
            own_base: base,
            converted,
            level,
            digits: digits.len(),
        })
    }

    /// The inner product's table for `decomposed` against a key of
    /// `key_level` (see `shaders/keyswitch.wgsl`).
    fn inner_product_table(&self, decomposed: &GpuDecomposed, key_level: usize) -> wgpu::Buffer {
        let params = &self.params;
        let ring = params.ring();
        let level = decomposed.level;
        let ext = params.extended_layout(level);
        let key_q = key_level + 1;
        let mut table: Vec<u32> = (0..ext.len())
            .flat_map(|i| {
                let key_limb = if i < ext.q { i } else { key_q + i - ext.q };
                [ring.global_index(ext, i) as u32, key_limb as u32]
            })
            .collect();
        let mut converted = 0u32;
        for range in params.digits(level) {
            for i in 0..ext.len() {
                if range.contains(&i) {
                    table.extend([1, (decomposed.own_base + i) as u32]);
                } else {
                    table.extend([0, converted]);
                    converted += 1;
                }
            }
        }
        self.ring.constant_buffer(&table)
    }

    /// `acc (+)= sum_j digit_j * key_j` over `Q_level ++ P`, both halves,
    /// as `sums` says.
    fn switch_into(
        &self,
        decomposed: &GpuDecomposed,
        key: &GpuSwitchingKey,
        perm: Option<&GpuWords>,
        acc: &GpuWords,
        sums: Sums<'_>,
    ) -> Result<(), GpuEvalError> {
        let table = self.inner_product_table(decomposed, key.level);
        let limbs = self.params.extended_layout(decomposed.level).len();
        self.ring.inner_product(
            &decomposed.own,
            &decomposed.converted,
            &key.halves,
            perm,
            acc,
            &table,
            (limbs, decomposed.digits),
            sums,
        )?;
        Ok(())
    }

    /// The special limbs of both halves of a key switch's sums at `level`.
    fn special_limbs(&self, level: usize) -> Vec<NttLimb> {
        let q_count = self.params.ring().q_count();
        let ext = self.params.extended_layout(level);
        (0..2)
            .flat_map(|h| (0..ext.p).map(move |k| (h, k)))
            .map(|(h, k)| NttLimb::in_place(q_count + k, h * ext.len() + ext.q + k))
            .collect()
    }

    /// A whole key switch of `decomposed` by `key` (digits read through
    /// `perm`) into `out`: the inner product with the first pass of the
    /// special limbs' inverse NTT, then ModDown ([`Self::mod_down_into`],
    /// `modes` and `add` as there).
    #[allow(clippy::too_many_arguments)] // what is switched, by what key, and where the result goes
    fn key_switch_into(
        &self,
        decomposed: &GpuDecomposed,
        key: &GpuSwitchingKey,
        perm: Option<&GpuWords>,
        out: &GpuWords,
        modes: [FinishMode; 2],
        add: Option<&GpuWords>,
    ) -> Result<(), GpuEvalError> {
        let level = decomposed.level;
        let acc = self.switch_sums(level);
        let special = self.special_limbs(level);
        self.switch_into(decomposed, key, perm, &acc, Sums::Inverse(&special))?;
        self.mod_down_into(&acc, level, out, modes, add, perm)
    }

    /// Fresh sums of a key switch at `level` (both halves), unspecified contents.
    fn switch_sums(&self, level: usize) -> GpuWords {
        self.ring.scratch(2 * self.params.extended_layout(level).len())
    }

    /// `out[h] = round(acc[h] / P) + extra[h]` over `Q_level` for both halves
    /// `h`, `extra` as `modes` says (limb `h (level + 1) + t` of `add`, read
    /// through `perm` for [`FinishMode::AddPermuted`]). The special limbs of
    /// `acc` ([`Self::special_limbs`]) are in coefficient form, the others
    /// in evaluation form.
    fn mod_down_into(
        &self,
        acc: &GpuWords,
        level: usize,
        out: &GpuWords,
        modes: [FinishMode; 2],
        add: Option<&GpuWords>,
        perm: Option<&GpuWords>,
    ) -> Result<(), GpuEvalError> {
        let ext = self.params.extended_layout(level);
        let q = ext.q;
        let mod_down = self.params.mod_down();
        let rows: Vec<ConvertRow> = (0..2)
            .flat_map(|h| (0..q).map(move |t| (h, t)))
            .map(|(h, t)| ConvertRow {
                converter: mod_down.converter(),
                first_source: h * ext.len() + q,
                target: t,
                out: h * q + t,
                centered: true,
            })
            .collect();
        let table = self.ring.convert_table(&rows);
        let converted = self.ring.scratch(2 * q);
        let limbs: Vec<NttLimb> = rows.iter().map(|r| NttLimb::from(r.target, r.out, r.out)).collect();
        let p_inv = mod_down.p_inv_mod_q();
        let finish: Vec<LimbRow> = rows
            .iter()
            .map(|r| {
                let h = r.out / q;
                LimbRow {
                    c: r.out as u32,
                    mode: modes[h],
                    ..LimbRow::new(r.target, p_inv[r.target], h * ext.len() + r.target)
                }
            })
            .collect();
        self.ring.ntt(
            &converted,
            &limbs,
            NttInput::Converted {
                input: acc,
                table: &table,
            },
            NttOutput::Finish {
                out,
                a: acc,
                c: add,
                perm,
                rows: &finish,
            },
            false,
        )?;
        Ok(())
    }

    /// `a * b` relinearized (not rescaled): the tensor product computed
    /// with the first pass of `d2`'s inverse NTT, then `d2` key-switched and
    /// added to `(d0, d1)` by ModDown's last kernel.
    ///
    /// # Errors
    /// Key or level mismatch, [`CkksError::MissingRelinKey`]; device errors.
    pub fn mul_relin(&self, a: &GpuCiphertext, b: &GpuCiphertext) -> Result<GpuCiphertext, GpuEvalError> {
        self.check_pair(a, b)?;
        let key = self.relin.as_ref().ok_or(CkksError::MissingRelinKey)?;
        super::evaluator::check_key_level("relinearization key", key.level, a.level)?;
        let level = a.level;
        let q_primes: Vec<usize> = (0..=level).collect();
        let (tensor, coeff) = (self.ring.scratch(3 * (level + 1)), self.ring.scratch(level + 1));
        self.ring
            .tensor_inverse(&a.parts, &b.parts, &tensor, &coeff, &q_primes)?;
        let decomposed = self.extend(&coeff, &tensor, 2 * (level + 1), level)?;
        let parts = self.ring.scratch(2 * (level + 1));
        self.key_switch_into(&decomposed, key, None, &parts, [FinishMode::Add; 2], Some(&tensor))?;
        Ok(GpuCiphertext {
            parts,
            level,
            scale: a.scale * b.scale,
            key_id: a.key_id,
        })
    }

    /// Rotations by each of `steps`, sharing one decomposition of `c1`.
    ///
    /// # Errors
    /// [`CkksError::MissingRotationKey`] (checked before any work); device errors.
    pub fn rotate_hoisted(&self, ct: &GpuCiphertext, steps: &[i64]) -> Result<Vec<GpuCiphertext>, GpuEvalError> {
        self.check_key(ct.key_id)?;
        let n = self.params.n();
        let keys =
            super::evaluator::rotation_keys(steps, n, ct.level, |g| self.galois.get(&g).map(|k| (k, k.0.level)))?;
        let decomposed = if keys.iter().any(Option::is_some) {
            Some(self.decompose(&ct.parts, ct.level + 1, ct.level)?)
        } else {
            None
        };
        let outputs = self.ct_buffers(keys.len(), ct.level);
        keys.into_iter()
            .zip(outputs)
            .map(|(entry, parts)| match (entry, &decomposed) {
                (Some((key, perm)), Some(decomposed)) => {
                    self.key_switch_into(
                        decomposed,
                        key,
                        Some(perm),
                        &parts,
                        [FinishMode::AddPermuted, FinishMode::None],
                        Some(&ct.parts),
                    )?;
                    Ok(self.with_parts(parts, ct))
                }
                _ => {
                    self.ring.copy_limbs(&ct.parts, 0, &parts, 0, 2 * (ct.level + 1));
                    Ok(self.with_parts(parts, ct))
                }
            })
            .collect()
    }

    /// Words for `count` ciphertexts at `level`, as many in one device
    /// buffer as one storage binding holds, so that a sum of their products
    /// ([`Self::mul_plain_sum`]) reads them in one dispatch.
    fn ct_buffers(&self, count: usize, level: usize) -> Vec<GpuWords> {
        let limbs = 2 * (level + 1);
        let per_buffer = per_binding(self.ring.binding_limit(), self.ring.n(), limbs);
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            let here = per_buffer.min(count - out.len());
            let words = self.ring.scratch(here * limbs);
            out.extend((0..here).map(|k| self.ring.view(&words, k * limbs, limbs)));
        }
        out
    }
}

/// A sum of rotations on the device, as [`super::evaluator::RotationSum`]:
/// the key-switched parts stay over `Q_level ++ P` until
/// [`GpuEvaluator::rotation_sum_finish`].
///
/// Invariant: `parts` holds both halves at `level`, `switched` (if any) the
/// two halves of the sums over that level's extended layout; every term had
/// `scale` and `key_id`.
pub struct GpuRotationSum {
    parts: GpuWords,
    switched: Option<GpuWords>,
    level: usize,
    scale: f64,
    key_id: KeyId,
}

impl GpuEvaluator {
    /// `sum + rot(ct, steps)`, the words of
    /// [`super::Evaluator::rotation_sum_add`].
    ///
    /// # Errors
    /// As the CPU evaluator's; device errors.
    pub fn rotation_sum_add(
        &self,
        sum: Option<GpuRotationSum>,
        ct: &GpuCiphertext,
        steps: i64,
    ) -> Result<GpuRotationSum, GpuEvalError> {
        self.check_key(ct.key_id)?;
        let n = self.params.n();
        let key =
            super::evaluator::rotation_keys(&[steps], n, ct.level, |g| self.galois.get(&g).map(|k| (k, k.0.level)))?
                .pop()
                .flatten();
        let mut sum = match sum {
            Some(sum) => {
                super::evaluator::check_levels(sum.level, ct.level)?;
                super::evaluator::check_scales(sum.scale, ct.scale)?;
                sum
            }
            None => GpuRotationSum {
                parts: self.ring.zeros(2 * (ct.level + 1)),
                switched: None,
                level: ct.level,
                scale: ct.scale,
                key_id: ct.key_id,
            },
        };
        match key {
            None => {
                self.ring.elementwise(
                    ElementwiseOp::Accumulate,
                    &sum.parts,
                    Some(&ct.parts),
                    None,
                    &Self::ct_primes(ct.level),
                )?;
            }
            Some((key, perm)) => {
                let decomposed = self.decompose(&ct.parts, ct.level + 1, ct.level)?;
                let sums = if sum.switched.is_some() {
                    Sums::Accumulate
                } else {
                    Sums::Write
                };
                let acc = sum.switched.get_or_insert_with(|| self.switch_sums(ct.level));
                self.switch_into(&decomposed, key, Some(perm), acc, sums)?;
                let rows: Vec<LimbRow> = (0..=ct.level).map(|t| LimbRow::new(t, (0, 0), t)).collect();
                self.ring
                    .limbwise(LimbwiseOp::AddPermuted, &sum.parts, &ct.parts, Some(perm), &rows)?;
            }
        }
        Ok(sum)
    }

    /// The ciphertext of a finished sum, the words of
    /// [`super::Evaluator::rotation_sum_finish`].
    ///
    /// # Errors
    /// Device errors.
    pub fn rotation_sum_finish(&self, sum: GpuRotationSum) -> Result<GpuCiphertext, GpuEvalError> {
        if let Some(acc) = &sum.switched {
            let special = self.special_limbs(sum.level);
            self.ring
                .ntt(acc, &special, NttInput::InPlace, NttOutput::InPlace, true)?;
            self.mod_down_into(acc, sum.level, &sum.parts, [FinishMode::Own; 2], None, None)?;
        }
        Ok(GpuCiphertext {
            parts: sum.parts,
            level: sum.level,
            scale: sum.scale,
            key_id: sum.key_id,
        })
    }
}
