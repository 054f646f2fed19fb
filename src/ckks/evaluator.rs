//! Homomorphic operations on ciphertexts. Every public method validates its
//! operands (key, level, scale) before touching them; in-place variants are
//! what hot loops use, the allocating ones are built on them.

use super::ciphertext::Ciphertext;
use super::encoder::Plaintext;
use super::error::CkksError;
use super::keys::{KeyId, PublicKeySet};
use super::keyswitch::{decompose, switch, SwitchAccumulator};
use super::params::Params;
use crate::ring::automorphism::{eval_permutation, rotation_galois_element};
use crate::ring::basis::rescale;
use crate::ring::{Eval, RnsPoly};
use std::sync::Arc;

/// Relative scale difference below which two scales count as equal: scales
/// are tracked as `f64` products and quotients of the same primes, so equal
/// scales agree to a few ulps.
const SCALE_TOLERANCE: f64 = 1e-9;

/// Evaluates operations with the evaluation keys of one key set.
#[derive(Clone, Debug)]
pub struct Evaluator {
    keys: Arc<PublicKeySet>,
}

/// Refuses scales that differ by more than [`SCALE_TOLERANCE`] (relative).
pub(crate) fn check_scales(left: f64, right: f64) -> Result<(), CkksError> {
    if ((left / right) - 1.0).abs() > SCALE_TOLERANCE {
        Err(CkksError::ScaleMismatch {
            left: left.log2(),
            right: right.log2(),
        })
    } else {
        Ok(())
    }
}

/// Refuses operands at different levels.
pub(crate) fn check_levels(left: usize, right: usize) -> Result<(), CkksError> {
    if left != right {
        Err(CkksError::LevelMismatch { left, right })
    } else {
        Ok(())
    }
}

impl Evaluator {
    /// An evaluator over `keys` (public material only).
    pub fn new(keys: Arc<PublicKeySet>) -> Self {
        Self { keys }
    }

    /// The parameters.
    pub fn params(&self) -> &Arc<Params> {
        &self.keys.params
    }

    /// The key set.
    pub fn keys(&self) -> &Arc<PublicKeySet> {
        &self.keys
    }

    fn check_key(&self, ct: &Ciphertext) -> Result<(), CkksError> {
        if ct.key_id != self.keys.id {
            return Err(CkksError::KeyMismatch {
                what: "ciphertext",
                found: ct.key_id.to_string(),
                expected: self.keys.id.to_string(),
            });
        }
        Ok(())
    }

    fn check_pair(&self, a: &Ciphertext, b: &Ciphertext) -> Result<(), CkksError> {
        self.check_key(a)?;
        self.check_key(b)?;
        check_levels(a.level(), b.level())
    }

    /// `a += b`.
    ///
    /// # Errors
    /// Key, level or scale mismatch.
    pub fn add_assign(&self, a: &mut Ciphertext, b: &Ciphertext) -> Result<(), CkksError> {
        self.check_pair(a, b)?;
        check_scales(a.scale, b.scale)?;
        let ring = self.params().ring();
        a.c0.add_assign(ring, &b.c0);
        a.c1.add_assign(ring, &b.c1);
        Ok(())
    }

    /// `a + b`.
    ///
    /// # Errors
    /// As [`Self::add_assign`].
    pub fn add(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, CkksError> {
        let mut out = a.clone();
        self.add_assign(&mut out, b)?;
        Ok(out)
    }

    /// `a -= b`.
    ///
    /// # Errors
    /// Key, level or scale mismatch.
    pub fn sub_assign(&self, a: &mut Ciphertext, b: &Ciphertext) -> Result<(), CkksError> {
        self.check_pair(a, b)?;
        check_scales(a.scale, b.scale)?;
        let ring = self.params().ring();
        a.c0.sub_assign(ring, &b.c0);
        a.c1.sub_assign(ring, &b.c1);
        Ok(())
    }

    /// `a - b`.
    ///
    /// # Errors
    /// As [`Self::sub_assign`].
    pub fn sub(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, CkksError> {
        let mut out = a.clone();
        self.sub_assign(&mut out, b)?;
        Ok(out)
    }

    /// `-a`.
    ///
    /// # Errors
    /// Key mismatch.
    pub fn neg(&self, a: &Ciphertext) -> Result<Ciphertext, CkksError> {
        self.check_key(a)?;
        let ring = self.params().ring();
        let mut out = a.clone();
        out.c0.neg_assign(ring);
        out.c1.neg_assign(ring);
        Ok(out)
    }

    fn check_plain(&self, ct: &Ciphertext, pt: &Plaintext) -> Result<(), CkksError> {
        self.check_key(ct)?;
        check_levels(ct.level(), pt.level)
    }

    /// `ct += pt` (same level and scale).
    ///
    /// # Errors
    /// Key, level or scale mismatch.
    pub fn add_plain_assign(&self, ct: &mut Ciphertext, pt: &Plaintext) -> Result<(), CkksError> {
        self.check_plain(ct, pt)?;
        check_scales(ct.scale, pt.scale)?;
        ct.c0.add_assign(self.params().ring(), &pt.poly);
        Ok(())
    }

    /// `ct *= pt` without rescaling; the scale becomes the product of scales.
    /// Encode `pt` at [`Params::mul_plain_scale`] to land on the canonical
    /// scale after [`Self::rescale_assign`].
    ///
    /// # Errors
    /// Key or level mismatch.
    pub fn mul_plain_assign(&self, ct: &mut Ciphertext, pt: &Plaintext) -> Result<(), CkksError> {
        self.check_plain(ct, pt)?;
        let ring = self.params().ring();
        ct.c0.mul_assign(ring, &pt.poly);
        ct.c1.mul_assign(ring, &pt.poly);
        ct.scale *= pt.scale;
        Ok(())
    }

    /// `acc += ct * pt` without rescaling: the product is accumulated in
    /// place, with no ciphertext allocated for it.
    ///
    /// # Errors
    /// Key or level mismatch, or an `acc` whose scale is not `ct`'s times `pt`'s.
    pub fn mul_plain_add_assign(&self, acc: &mut Ciphertext, ct: &Ciphertext, pt: &Plaintext) -> Result<(), CkksError> {
        self.check_plain(ct, pt)?;
        self.check_pair(acc, ct)?;
        check_scales(acc.scale, ct.scale * pt.scale)?;
        let ring = self.params().ring();
        acc.c0.mul_add_assign(ring, &ct.c0, &pt.poly);
        acc.c1.mul_add_assign(ring, &ct.c1, &pt.poly);
        Ok(())
    }

    /// `sum_t ct_t * pt_t` without rescaling: the words of
    /// [`Self::mul_plain`] and [`Self::mul_plain_add_assign`] term after
    /// term, in one pass that reads each plaintext once and reduces once per
    /// [`crate::math::modulus::LAZY_PRODUCTS`] products.
    ///
    /// # Errors
    /// [`CkksError::Shape`] for no terms; key or level mismatch, or products
    /// at different scales.
    pub fn mul_plain_sum(&self, terms: &[(&Ciphertext, &Plaintext)]) -> Result<Ciphertext, CkksError> {
        let (first, first_pt) = terms.first().ok_or(CkksError::Shape {
            what: "sum of plaintext products",
            expected: 1,
            found: 0,
        })?;
        let scale = first.scale * first_pt.scale;
        for (ct, pt) in terms {
            self.check_plain(ct, pt)?;
            self.check_pair(first, ct)?;
            check_scales(scale, ct.scale * pt.scale)?;
        }
        let operands: Vec<_> = terms.iter().map(|(ct, pt)| (&ct.c0, &ct.c1, &pt.poly)).collect();
        let (c0, c1) = RnsPoly::paired_dot(self.params().ring(), &operands);
        Ok(Ciphertext {
            c0,
            c1,
            scale,
            key_id: first.key_id,
        })
    }

    /// `ct * pt` without rescaling.
    ///
    /// # Errors
    /// As [`Self::mul_plain_assign`].
    pub fn mul_plain(&self, ct: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext, CkksError> {
        let mut out = ct.clone();
        self.mul_plain_assign(&mut out, pt)?;
        Ok(out)
    }

    /// `ct += c` for a real constant, at the ciphertext's scale.
    ///
    /// # Errors
    /// Key mismatch, non-finite or overflowing constant.
    pub fn add_const_assign(&self, ct: &mut Ciphertext, c: f64) -> Result<(), CkksError> {
        self.check_key(ct)?;
        let scaled = scaled_constant(c, ct.scale)?;
        // A constant polynomial evaluates to the constant everywhere.
        ct.c0.map_limbs(self.params().ring(), |m, _, limb| {
            let v = m.reduce_i64(scaled);
            limb.iter_mut().for_each(|x| *x = m.add(*x, v));
        });
        Ok(())
    }

    /// `ct *= c` for a real constant, without rescaling: the constant is
    /// scaled so that after [`Self::rescale_assign`] the result is at the
    /// canonical scale of the next level (needs level >= 1).
    ///
    /// # Errors
    /// Key mismatch, [`CkksError::OutOfLevels`] at level 0, non-finite or
    /// overflowing constant.
    pub fn mul_const_assign(&self, ct: &mut Ciphertext, c: f64) -> Result<(), CkksError> {
        self.check_key(ct)?;
        if ct.level() == 0 {
            return Err(CkksError::OutOfLevels { needed: 1, level: 0 });
        }
        let scale = self.params().mul_plain_scale(ct.level(), ct.scale);
        let scaled = scaled_constant(c, scale)?;
        let ring = self.params().ring();
        let constants: Vec<u32> = (0..=ct.level()).map(|i| ring.q(i).reduce_i64(scaled)).collect();
        ct.c0.mul_scalar_assign(ring, &constants);
        ct.c1.mul_scalar_assign(ring, &constants);
        ct.scale *= scale;
        Ok(())
    }

    /// `a * b` relinearized (not rescaled); the scale is the product.
    ///
    /// # Errors
    /// Key or level mismatch, [`CkksError::MissingRelinKey`].
    pub fn mul_relin(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, CkksError> {
        self.check_pair(a, b)?;
        let key = self.keys.relin.as_ref().ok_or(CkksError::MissingRelinKey)?;
        check_key_level("relinearization key", key.level(), a.level())?;
        let params = self.params();
        let ring = params.ring();
        let mut d0 = a.c0.clone();
        d0.mul_assign(ring, &b.c0);
        let mut d1 = a.c0.clone();
        d1.mul_assign(ring, &b.c1);
        d1.mul_add_assign(ring, &a.c1, &b.c0);
        let mut d2 = a.c1.clone();
        d2.mul_assign(ring, &b.c1);
        let (k0, k1) = switch(params, &decompose(params, &d2), key, None);
        d0.add_assign(ring, &k0);
        d1.add_assign(ring, &k1);
        Ok(Ciphertext {
            c0: d0,
            c1: d1,
            scale: a.scale * b.scale,
            key_id: a.key_id,
        })
    }

    /// Divides by the last prime `q_l` (rounded) and drops it; the scale is
    /// divided by `q_l`.
    ///
    /// # Errors
    /// Key mismatch, [`CkksError::OutOfLevels`] at level 0.
    pub fn rescale_assign(&self, ct: &mut Ciphertext) -> Result<(), CkksError> {
        self.check_key(ct)?;
        let level = ct.level();
        if level == 0 {
            return Err(CkksError::OutOfLevels { needed: 1, level: 0 });
        }
        let ring = self.params().ring();
        let n = ring.n();
        let layout = ct.c0.layout();
        let zero = || crate::ring::RnsPoly::zero(n, layout);
        ct.c0 = rescale(ring, std::mem::replace(&mut ct.c0, zero()));
        ct.c1 = rescale(ring, std::mem::replace(&mut ct.c1, zero()));
        ct.scale /= f64::from(ring.q(level).value());
        Ok(())
    }

    /// Rescaled copy.
    ///
    /// # Errors
    /// As [`Self::rescale_assign`].
    pub fn rescale(&self, ct: &Ciphertext) -> Result<Ciphertext, CkksError> {
        let mut out = ct.clone();
        self.rescale_assign(&mut out)?;
        Ok(out)
    }

    /// Drops primes down to `level` without dividing (scale unchanged).
    ///
    /// # Errors
    /// Key mismatch, [`CkksError::OutOfLevels`] when `level` is above the
    /// ciphertext's.
    pub fn drop_level_assign(&self, ct: &mut Ciphertext, level: usize) -> Result<(), CkksError> {
        self.check_key(ct)?;
        if level > ct.level() {
            return Err(CkksError::OutOfLevels {
                needed: level,
                level: ct.level(),
            });
        }
        ct.c0.truncate_q(level + 1);
        ct.c1.truncate_q(level + 1);
        Ok(())
    }

    /// Rotates the slots left by `steps` (negative: right).
    ///
    /// # Errors
    /// Key mismatch, [`CkksError::MissingRotationKey`].
    pub fn rotate(&self, ct: &Ciphertext, steps: i64) -> Result<Ciphertext, CkksError> {
        Ok(self.rotate_hoisted(ct, &[steps])?.pop().expect("one rotation"))
    }

    /// Rotations of one ciphertext by each of `steps`, sharing one
    /// decomposition (ModUp) of `c1` among all of them.
    ///
    /// # Errors
    /// Key mismatch, [`CkksError::MissingRotationKey`] (checked for every
    /// step before any work).
    pub fn rotate_hoisted(&self, ct: &Ciphertext, steps: &[i64]) -> Result<Vec<Ciphertext>, CkksError> {
        self.check_key(ct)?;
        let params = self.params();
        let n = params.n();
        let keys = rotation_keys(steps, n, ct.level(), |g| {
            self.keys.galois.get(&g).map(|k| ((g, k), k.level()))
        })?;
        let needs_keyswitch = keys.iter().any(Option::is_some);
        let decomposed = needs_keyswitch.then(|| decompose(params, &ct.c1));
        let ring = params.ring();
        Ok(keys
            .into_iter()
            .map(|entry| match (entry, &decomposed) {
                (Some((g, key)), Some(d)) => {
                    let perm = eval_permutation(g, n);
                    let (mut c0, c1) = switch(params, d, key, Some(&perm));
                    c0.add_assign(ring, &ct.c0.automorphism(&perm));
                    Ciphertext {
                        c0,
                        c1,
                        scale: ct.scale,
                        key_id: ct.key_id,
                    }
                }
                _ => ct.clone(),
            })
            .collect())
    }
}

/// A sum of rotations `sum_t rot(ct_t, steps_t)` in the making: the
/// key-switched parts stay over `Q_level ++ P` until
/// [`Evaluator::rotation_sum_finish`] divides them by `P`, once for the whole
/// sum (the giant steps of a baby-step giant-step sum).
///
/// Invariant: `c0`, `c1` have layout `Q_level`, `switched` (if any) is at
/// that level; every term had `scale` and `key_id`.
pub struct RotationSum {
    c0: RnsPoly<Eval>,
    c1: RnsPoly<Eval>,
    switched: Option<SwitchAccumulator>,
    scale: f64,
    key_id: KeyId,
}

impl Evaluator {
    /// `sum + rot(ct, steps)`; a sum of `rot(ct, steps)` alone when `sum` is
    /// `None`. A step of zero (mod N/2) adds `ct` itself.
    ///
    /// # Errors
    /// Key mismatch, level or scale mismatch with the sum's terms,
    /// [`CkksError::MissingRotationKey`].
    pub fn rotation_sum_add(
        &self,
        sum: Option<RotationSum>,
        ct: &Ciphertext,
        steps: i64,
    ) -> Result<RotationSum, CkksError> {
        self.check_key(ct)?;
        let params = self.params();
        let n = params.n();
        let ring = params.ring();
        let key = rotation_keys(&[steps], n, ct.level(), |g| {
            self.keys.galois.get(&g).map(|k| ((g, k), k.level()))
        })?
        .pop()
        .flatten();
        let mut sum = match sum {
            Some(sum) => {
                check_levels(sum.c0.layout().q - 1, ct.level())?;
                check_scales(sum.scale, ct.scale)?;
                sum
            }
            None => RotationSum {
                c0: RnsPoly::zero(n, ct.c0.layout()),
                c1: RnsPoly::zero(n, ct.c1.layout()),
                switched: None,
                scale: ct.scale,
                key_id: ct.key_id,
            },
        };
        match key {
            None => {
                sum.c0.add_assign(ring, &ct.c0);
                sum.c1.add_assign(ring, &ct.c1);
            }
            Some((g, key)) => {
                let perm = eval_permutation(g, n);
                sum.switched
                    .get_or_insert_with(|| SwitchAccumulator::new(params, ct.level()))
                    .add(params, &decompose(params, &ct.c1), key, Some(&perm));
                sum.c0.add_assign(ring, &ct.c0.automorphism(&perm));
            }
        }
        Ok(sum)
    }

    /// The ciphertext of a finished sum: one ModDown of its key-switched
    /// parts, added to the rest.
    pub fn rotation_sum_finish(&self, sum: RotationSum) -> Ciphertext {
        let RotationSum {
            mut c0,
            mut c1,
            switched,
            scale,
            key_id,
        } = sum;
        if let Some(switched) = switched {
            let ring = self.params().ring();
            let (b, a) = switched.mod_down(self.params());
            c0.add_assign(ring, &b);
            c1.add_assign(ring, &a);
        }
        Ciphertext { c0, c1, scale, key_id }
    }
}

/// For each of `steps`, `None` for a rotation by zero (mod N/2), else the
/// key `lookup` finds for its Galois element; every step is checked before
/// any work starts.
///
/// # Errors
/// [`CkksError::MissingRotationKey`] for the first step without a key.
pub(crate) fn rotation_keys<K>(
    steps: &[i64],
    n: usize,
    level: usize,
    lookup: impl Fn(u64) -> Option<(K, usize)>,
) -> Result<Vec<Option<K>>, CkksError> {
    steps
        .iter()
        .map(|&s| {
            let g = rotation_galois_element(s, n);
            if g == 1 {
                return Ok(None);
            }
            let (key, key_level) = lookup(g).ok_or(CkksError::MissingRotationKey { steps: s })?;
            check_key_level(&format!("Galois key for rotation {s}"), key_level, level)?;
            Ok(Some(key))
        })
        .collect()
}

/// Refuses a key switch at `level` with a key made for lower levels.
///
/// # Errors
/// [`CkksError::KeyLevel`].
pub(crate) fn check_key_level(what: &str, key_level: usize, level: usize) -> Result<(), CkksError> {
    if key_level < level {
        return Err(CkksError::KeyLevel {
            what: what.to_string(),
            key_level,
            level,
        });
    }
    Ok(())
}

/// `round(c * scale)` as a signed integer.
pub(crate) fn scaled_constant(c: f64, scale: f64) -> Result<i64, CkksError> {
    if !c.is_finite() {
        return Err(CkksError::NonFinite { index: 0, value: c });
    }
    let v = (c * scale).round();
    if v.abs() >= 2f64.powi(62) {
        return Err(CkksError::Overflow {
            log_scale: scale.log2(),
            log_coeff: v.abs().log2(),
        });
    }
    Ok(v as i64)
}
