//! The CKKS evaluator on the GPU: the same operations as [`super::Evaluator`],
//! composed from the WGSL kernels of [`crate::backend::gpu`], with ciphertexts
//! and evaluation keys resident on the device. Every result equals the CPU
//! evaluator's word for word (`latent-he check`, `tests/gpu_eval.rs`).

use super::ciphertext::Ciphertext;
use super::encoder::{encode_coeffs, EncodedCoeffs, Plaintext, ScaledCoeffs};
use super::error::CkksError;
use super::keys::{KeyId, PublicKeySet, SwitchingKey};
use super::params::Params;
use crate::backend::gpu::{GpuContext, GpuError, GpuPoly, GpuRing, GpuWords};
use crate::ring::automorphism::eval_permutation;
use crate::ring::{Eval, LimbLayout};
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
/// Invariant: `c0`, `c1` have layout `Q_level`; `scale` and `key_id` as in
/// [`Ciphertext`].
pub struct GpuCiphertext {
    c0: GpuPoly<Eval>,
    c1: GpuPoly<Eval>,
    scale: f64,
    key_id: KeyId,
}

impl GpuCiphertext {
    /// Current level.
    pub fn level(&self) -> usize {
        self.c0.layout().q - 1
    }

    /// Current scale.
    pub fn scale(&self) -> f64 {
        self.scale
    }
}

/// A plaintext resident on the device.
///
/// Invariant: `poly` has layout `Q_level` (evaluation form); decoding divides
/// by `scale`; its words equal the CPU's [`Plaintext`] of the same encoding.
pub struct GpuPlaintext {
    poly: GpuPoly<Eval>,
    level: usize,
    scale: f64,
}

impl GpuPlaintext {
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
    digits: Vec<(GpuPoly<Eval>, GpuPoly<Eval>)>,
    level: usize,
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
    /// [`GpuError`] from the device.
    pub fn new(ctx: &Arc<GpuContext>, keys: &PublicKeySet) -> Result<Self, GpuEvalError> {
        let params = keys.params.clone();
        let ring = GpuRing::new(ctx, params.ring())?;
        let upload = |key: &SwitchingKey| GpuSwitchingKey {
            digits: key
                .digits
                .iter()
                .map(|d| (ring.upload(&d.b), ring.upload(&d.a(&params))))
                .collect(),
            level: key.level(),
        };
        let relin = keys.relin.as_ref().map(upload);
        let n = params.n();
        let galois = keys
            .galois
            .iter()
            .map(|(&g, key)| (g, (upload(key), ring.upload_words(&eval_permutation(g, n)))))
            .collect();
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

    /// Copies a ciphertext to the device.
    ///
    /// # Errors
    /// [`CkksError::KeyMismatch`] for a ciphertext of another key.
    pub fn upload(&self, ct: &Ciphertext) -> Result<GpuCiphertext, GpuEvalError> {
        self.check_key(ct.key_id)?;
        Ok(GpuCiphertext {
            c0: self.ring.upload(&ct.c0),
            c1: self.ring.upload(&ct.c1),
            scale: ct.scale,
            key_id: ct.key_id,
        })
    }

    /// Copies a ciphertext back to the host.
    ///
    /// # Errors
    /// [`GpuError`] from the device.
    pub fn download(&self, ct: &GpuCiphertext) -> Result<Ciphertext, GpuEvalError> {
        Ok(Ciphertext {
            c0: self.ring.download(&ct.c0)?,
            c1: self.ring.download(&ct.c1)?,
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

    /// Finishes an encoding on the device. Coefficients below 2^62 travel as
    /// 8 bytes each, once for all the level's primes, and are reduced and
    /// transformed there (a host plaintext would be `4 (level + 1)` bytes a
    /// coefficient, reduced and transformed on the CPU); wider ones are
    /// finished on the host and uploaded. Either way the words equal
    /// [`EncodedCoeffs::into_plaintext`]'s.
    ///
    /// # Errors
    /// Device errors.
    pub fn plaintext(&self, encoded: EncodedCoeffs) -> Result<GpuPlaintext, GpuEvalError> {
        let (level, scale) = (encoded.level(), encoded.scale());
        let poly = if let ScaledCoeffs::Narrow(coeffs) = encoded.coeffs() {
            let primes: Vec<usize> = (0..=level).collect();
            let words = self.ring.reduce_signed(coeffs, &primes)?;
            self.ring.ntt_words(&words, &primes, false)?;
            GpuPoly::from_words(words, self.params.layout(level), self.ring.n())
        } else {
            self.ring.upload(&encoded.into_plaintext(&self.params).poly)
        };
        Ok(GpuPlaintext { poly, level, scale })
    }

    /// Copies a device plaintext back to the host.
    ///
    /// # Errors
    /// [`GpuError`] from the device.
    pub fn download_plaintext(&self, pt: &GpuPlaintext) -> Result<Plaintext, GpuEvalError> {
        Ok(Plaintext {
            poly: self.ring.download(&pt.poly)?,
            level: pt.level,
            scale: pt.scale,
        })
    }

    fn copy(&self, p: &GpuPoly<Eval>) -> GpuPoly<Eval> {
        let words = self.ring.slice_limbs(&p.words(), 0, p.layout().len());
        GpuPoly::from_words(words, p.layout(), self.ring.n())
    }

    fn check_pair(&self, a: &GpuCiphertext, b: &GpuCiphertext) -> Result<(), CkksError> {
        self.check_key(a.key_id)?;
        self.check_key(b.key_id)?;
        super::evaluator::check_levels(a.level(), b.level())
    }

    /// `a + b` (same checks as the CPU evaluator).
    ///
    /// # Errors
    /// Key, level or scale mismatch; device errors.
    pub fn add(&self, a: &GpuCiphertext, b: &GpuCiphertext) -> Result<GpuCiphertext, GpuEvalError> {
        self.check_pair(a, b)?;
        super::evaluator::check_scales(a.scale, b.scale)?;
        let (c0, c1) = (self.copy(&a.c0), self.copy(&a.c1));
        self.ring.add_assign(&c0, &b.c0)?;
        self.ring.add_assign(&c1, &b.c1)?;
        Ok(GpuCiphertext { c0, c1, ..*a })
    }

    /// `a - b`.
    ///
    /// # Errors
    /// Key, level or scale mismatch; device errors.
    pub fn sub(&self, a: &GpuCiphertext, b: &GpuCiphertext) -> Result<GpuCiphertext, GpuEvalError> {
        self.check_pair(a, b)?;
        super::evaluator::check_scales(a.scale, b.scale)?;
        let (c0, c1) = (self.copy(&a.c0), self.copy(&a.c1));
        self.ring.sub_assign(&c0, &b.c0)?;
        self.ring.sub_assign(&c1, &b.c1)?;
        Ok(GpuCiphertext { c0, c1, ..*a })
    }

    /// `-a`.
    ///
    /// # Errors
    /// Key mismatch; device errors.
    pub fn neg(&self, a: &GpuCiphertext) -> Result<GpuCiphertext, GpuEvalError> {
        self.check_key(a.key_id)?;
        let layout = a.c0.layout();
        let n = self.ring.n();
        let (c0, c1) = (
            GpuPoly::from_words(self.ring.zeros(layout.len()), layout, n),
            GpuPoly::from_words(self.ring.zeros(layout.len()), layout, n),
        );
        self.ring.sub_assign(&c0, &a.c0)?;
        self.ring.sub_assign(&c1, &a.c1)?;
        Ok(GpuCiphertext { c0, c1, ..*a })
    }

    /// `ct + pt` (same level and scale).
    ///
    /// # Errors
    /// Key, level or scale mismatch; device errors.
    pub fn add_plain(&self, ct: &GpuCiphertext, pt: &GpuPlaintext) -> Result<GpuCiphertext, GpuEvalError> {
        self.check_plain(ct, pt)?;
        super::evaluator::check_scales(ct.scale, pt.scale)?;
        let c0 = self.copy(&ct.c0);
        self.ring.add_assign(&c0, &pt.poly)?;
        Ok(GpuCiphertext {
            c0,
            c1: self.copy(&ct.c1),
            ..*ct
        })
    }

    /// `ct * c` for a real constant, scaled as [`super::Evaluator::mul_const_assign`]
    /// (rescale afterwards to land on the next level's canonical scale).
    ///
    /// # Errors
    /// Key mismatch, level 0, non-finite or overflowing constant; device errors.
    pub fn mul_const(&self, ct: &GpuCiphertext, c: f64) -> Result<GpuCiphertext, GpuEvalError> {
        self.check_key(ct.key_id)?;
        let level = ct.level();
        if level == 0 {
            return Err(CkksError::OutOfLevels { needed: 1, level: 0 }.into());
        }
        let scale = self.params.mul_plain_scale(level, ct.scale);
        let scaled = super::evaluator::scaled_constant(c, scale)?;
        let ring = self.params.ring();
        let constants: Vec<(u32, u32)> = (0..=level)
            .map(|i| {
                let m = ring.q(i);
                let v = m.reduce_i64(scaled);
                (v, m.shoup(v))
            })
            .collect();
        let primes: Vec<usize> = (0..=level).collect();
        let (c0, c1) = (self.copy(&ct.c0), self.copy(&ct.c1));
        self.ring.mul_scalar_assign(&c0.words(), &primes, &constants)?;
        self.ring.mul_scalar_assign(&c1.words(), &primes, &constants)?;
        Ok(GpuCiphertext {
            c0,
            c1,
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
        let layout = ct.c0.layout();
        // A constant polynomial evaluates to the constant at every point.
        let mut constant = crate::ring::RnsPoly::<Eval>::zero(ring.n(), layout);
        constant.map_limbs(ring, |m, _, limb| limb.fill(m.reduce_i64(scaled)));
        let c0 = self.copy(&ct.c0);
        self.ring.add_assign(&c0, &self.ring.upload(&constant))?;
        Ok(GpuCiphertext {
            c0,
            c1: self.copy(&ct.c1),
            ..*ct
        })
    }

    /// Drops primes down to `level` (scale unchanged).
    ///
    /// # Errors
    /// Key mismatch, [`CkksError::OutOfLevels`] above the ciphertext's level.
    pub fn drop_level(&self, ct: &GpuCiphertext, level: usize) -> Result<GpuCiphertext, GpuEvalError> {
        self.check_key(ct.key_id)?;
        if level > ct.level() {
            return Err(CkksError::OutOfLevels {
                needed: level,
                level: ct.level(),
            }
            .into());
        }
        let n = self.ring.n();
        let keep = |p: &GpuPoly<Eval>| {
            GpuPoly::from_words(
                self.ring.slice_limbs(&p.words(), 0, level + 1),
                LimbLayout::q_only(level + 1),
                n,
            )
        };
        Ok(GpuCiphertext {
            c0: keep(&ct.c0),
            c1: keep(&ct.c1),
            ..*ct
        })
    }

    fn check_plain(&self, ct: &GpuCiphertext, pt: &GpuPlaintext) -> Result<(), CkksError> {
        self.check_key(ct.key_id)?;
        if ct.level() != pt.level {
            return Err(CkksError::LevelMismatch {
                left: ct.level(),
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
        let (c0, c1) = (self.copy(&ct.c0), self.copy(&ct.c1));
        self.ring.mul_assign(&c0, &pt.poly)?;
        self.ring.mul_assign(&c1, &pt.poly)?;
        Ok(GpuCiphertext {
            c0,
            c1,
            scale: ct.scale * pt.scale,
            key_id: ct.key_id,
        })
    }

    /// `acc + ct * pt` without rescaling, accumulated in `acc`'s buffers
    /// (one kernel a half, no product allocated).
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
        self.ring.mul_add_assign(&acc.c0, &ct.c0, &pt.poly)?;
        self.ring.mul_add_assign(&acc.c1, &ct.c1, &pt.poly)?;
        Ok(acc)
    }

    /// Exact rescale of one polynomial by its last prime.
    fn rescale_poly(&self, x: &GpuPoly<Eval>) -> Result<GpuPoly<Eval>, GpuEvalError> {
        let q = x.layout().q;
        let last = q - 1;
        let top = self.ring.slice_limbs(&x.words(), last, 1);
        self.ring.ntt_words(&top, &[last], true)?;
        let lower: Vec<usize> = (0..last).collect();
        let t = self.ring.broadcast_centered(&top, last, &lower)?;
        self.ring.ntt_words(&t, &lower, false)?;
        let out = self.ring.slice_limbs(&x.words(), 0, last);
        let ring = self.params.ring();
        let q_last = ring.q(last).value();
        let inverses: Vec<(u32, u32)> = lower
            .iter()
            .map(|&i| {
                let m = ring.q(i);
                let inv = m.inv(q_last % m.value());
                (inv, m.shoup(inv))
            })
            .collect();
        self.ring.sub_mul_scalar_assign(&out, &t, &lower, &inverses)?;
        Ok(GpuPoly::from_words(out, LimbLayout::q_only(last), self.ring.n()))
    }

    /// Divides by the last prime and drops it.
    ///
    /// # Errors
    /// [`CkksError::OutOfLevels`] at level 0; device errors.
    pub fn rescale(&self, ct: &GpuCiphertext) -> Result<GpuCiphertext, GpuEvalError> {
        self.check_key(ct.key_id)?;
        let level = ct.level();
        if level == 0 {
            return Err(CkksError::OutOfLevels { needed: 1, level: 0 }.into());
        }
        Ok(GpuCiphertext {
            c0: self.rescale_poly(&ct.c0)?,
            c1: self.rescale_poly(&ct.c1)?,
            scale: ct.scale / f64::from(self.params.ring().q(level).value()),
            key_id: ct.key_id,
        })
    }

    /// The ModUp digits of `c` (evaluation form, `Q_level`), each over
    /// `Q_level ++ P`.
    fn decompose(&self, c: &GpuPoly<Eval>) -> Result<Vec<GpuPoly<Eval>>, GpuEvalError> {
        let params = &self.params;
        let ring = params.ring();
        let level = c.layout().q - 1;
        let ext = params.extended_layout(level);
        let all_q: Vec<usize> = (0..=level).collect();
        let coeff = self.ring.slice_limbs(&c.words(), 0, level + 1);
        self.ring.ntt_words(&coeff, &all_q, true)?;
        params
            .digits(level)
            .into_iter()
            .map(|range| {
                let targets: Vec<usize> = (0..ext.len())
                    .filter(|i| !range.contains(i))
                    .map(|i| ring.global_index(ext, i))
                    .collect();
                let sources = self.ring.slice_limbs(&coeff, range.start, range.len());
                let converted = self.ring.convert(params.mod_up(&range), &sources, &targets, true)?;
                self.ring.ntt_words(&converted, &targets, false)?;
                let digit = self.ring.zeros(ext.len());
                self.ring.copy_limbs(&converted, 0, &digit, 0, range.start);
                self.ring
                    .copy_limbs(&c.words(), range.start, &digit, range.start, range.len());
                self.ring
                    .copy_limbs(&converted, range.start, &digit, range.end, ext.len() - range.end);
                Ok(GpuPoly::from_words(digit, ext, self.ring.n()))
            })
            .collect()
    }

    /// `round(x / P)` over `Q_level`, for `x` over `Q_level ++ P`.
    fn mod_down(&self, x: &GpuPoly<Eval>) -> Result<GpuPoly<Eval>, GpuEvalError> {
        let ring = self.params.ring();
        let layout = x.layout();
        let special: Vec<usize> = (ring.q_count()..ring.global_count()).collect();
        let lower: Vec<usize> = (0..layout.q).collect();
        let p_part = self.ring.slice_limbs(&x.words(), layout.q, layout.p);
        self.ring.ntt_words(&p_part, &special, true)?;
        let mod_down = self.params.mod_down();
        let converted = self.ring.convert(mod_down.converter(), &p_part, &lower, true)?;
        self.ring.ntt_words(&converted, &lower, false)?;
        let out = self.ring.slice_limbs(&x.words(), 0, layout.q);
        self.ring
            .sub_mul_scalar_assign(&out, &converted, &lower, &mod_down.p_inv_mod_q()[..layout.q])?;
        Ok(GpuPoly::from_words(out, LimbLayout::q_only(layout.q), self.ring.n()))
    }

    /// `ModDown(sum_j digit_j * key_j)` for both key halves.
    fn switch(
        &self,
        digits: &[GpuPoly<Eval>],
        key: &GpuSwitchingKey,
        perm: Option<&GpuWords>,
    ) -> Result<(GpuPoly<Eval>, GpuPoly<Eval>), GpuEvalError> {
        let acc = self.switch_accumulator(digits[0].layout());
        self.switch_add(&acc, digits, key, perm)?;
        Ok((self.mod_down(&acc.0)?, self.mod_down(&acc.1)?))
    }

    /// Zero key-switching sums (both halves) over `ext` (`Q_level ++ P`).
    fn switch_accumulator(&self, ext: LimbLayout) -> (GpuPoly<Eval>, GpuPoly<Eval>) {
        let n = self.ring.n();
        (
            GpuPoly::from_words(self.ring.zeros(ext.len()), ext, n),
            GpuPoly::from_words(self.ring.zeros(ext.len()), ext, n),
        )
    }

    /// Adds `sum_j digit_j * key_j` (digits read through `perm`) to `acc`.
    fn switch_add(
        &self,
        acc: &(GpuPoly<Eval>, GpuPoly<Eval>),
        digits: &[GpuPoly<Eval>],
        key: &GpuSwitchingKey,
        perm: Option<&GpuWords>,
    ) -> Result<(), GpuEvalError> {
        for (d, (kb, ka)) in digits.iter().zip(&key.digits) {
            self.ring.inner_product(d, kb, ka, perm, &acc.0, &acc.1)?;
        }
        Ok(())
    }

    /// `a * b` relinearized (not rescaled).
    ///
    /// # Errors
    /// Key or level mismatch, [`CkksError::MissingRelinKey`]; device errors.
    pub fn mul_relin(&self, a: &GpuCiphertext, b: &GpuCiphertext) -> Result<GpuCiphertext, GpuEvalError> {
        self.check_pair(a, b)?;
        let key = self.relin.as_ref().ok_or(CkksError::MissingRelinKey)?;
        super::evaluator::check_key_level("relinearization key", key.level, a.level())?;
        let d0 = self.copy(&a.c0);
        self.ring.mul_assign(&d0, &b.c0)?;
        let d1 = self.copy(&a.c0);
        self.ring.mul_assign(&d1, &b.c1)?;
        let cross = self.copy(&a.c1);
        self.ring.mul_assign(&cross, &b.c0)?;
        self.ring.add_assign(&d1, &cross)?;
        let d2 = self.copy(&a.c1);
        self.ring.mul_assign(&d2, &b.c1)?;
        let (k0, k1) = self.switch(&self.decompose(&d2)?, key, None)?;
        self.ring.add_assign(&d0, &k0)?;
        self.ring.add_assign(&d1, &k1)?;
        Ok(GpuCiphertext {
            c0: d0,
            c1: d1,
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
            super::evaluator::rotation_keys(steps, n, ct.level(), |g| self.galois.get(&g).map(|k| (k, k.0.level)))?;
        let digits = if keys.iter().any(Option::is_some) {
            self.decompose(&ct.c1)?
        } else {
            Vec::new()
        };
        keys.into_iter()
            .map(|entry| match entry {
                Some((key, perm)) => {
                    let (c0, c1) = self.switch(&digits, key, Some(perm))?;
                    self.ring.add_assign(&c0, &self.ring.permute(&ct.c0, perm)?)?;
                    Ok(GpuCiphertext {
                        c0,
                        c1,
                        scale: ct.scale,
                        key_id: ct.key_id,
                    })
                }
                None => Ok(GpuCiphertext {
                    c0: self.copy(&ct.c0),
                    c1: self.copy(&ct.c1),
                    scale: ct.scale,
                    key_id: ct.key_id,
                }),
            })
            .collect()
    }
}

/// A sum of rotations on the device, as [`super::evaluator::RotationSum`]:
/// the key-switched parts stay over `Q_level ++ P` until
/// [`GpuEvaluator::rotation_sum_finish`].
///
/// Invariant: `c0`, `c1` have layout `Q_level`, `switched` (if any) that
/// level's extended layout; every term had `scale` and `key_id`.
pub struct GpuRotationSum {
    c0: GpuPoly<Eval>,
    c1: GpuPoly<Eval>,
    switched: Option<(GpuPoly<Eval>, GpuPoly<Eval>)>,
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
            super::evaluator::rotation_keys(&[steps], n, ct.level(), |g| self.galois.get(&g).map(|k| (k, k.0.level)))?
                .pop()
                .flatten();
        let mut sum = match sum {
            Some(sum) => {
                super::evaluator::check_levels(sum.c0.layout().q - 1, ct.level())?;
                super::evaluator::check_scales(sum.scale, ct.scale)?;
                sum
            }
            None => {
                let layout = ct.c0.layout();
                GpuRotationSum {
                    c0: GpuPoly::from_words(self.ring.zeros(layout.len()), layout, n),
                    c1: GpuPoly::from_words(self.ring.zeros(layout.len()), layout, n),
                    switched: None,
                    scale: ct.scale,
                    key_id: ct.key_id,
                }
            }
        };
        match key {
            None => {
                self.ring.add_assign(&sum.c0, &ct.c0)?;
                self.ring.add_assign(&sum.c1, &ct.c1)?;
            }
            Some((key, perm)) => {
                let digits = self.decompose(&ct.c1)?;
                let acc = sum
                    .switched
                    .get_or_insert_with(|| self.switch_accumulator(digits[0].layout()));
                self.switch_add(acc, &digits, key, Some(perm))?;
                self.ring.add_assign(&sum.c0, &self.ring.permute(&ct.c0, perm)?)?;
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
        if let Some((b, a)) = &sum.switched {
            self.ring.add_assign(&sum.c0, &self.mod_down(b)?)?;
            self.ring.add_assign(&sum.c1, &self.mod_down(a)?)?;
        }
        Ok(GpuCiphertext {
            c0: sum.c0,
            c1: sum.c1,
            scale: sum.scale,
            key_id: sum.key_id,
        })
    }
}
