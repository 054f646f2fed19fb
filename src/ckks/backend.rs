//! The evaluation operations both backends provide, so that code driving
//! them (the self-test, the GPU/CPU check, the inference executor) is written
//! once. [`super::Evaluator`] is the CPU reference; [`super::gpu_eval::GpuEvaluator`]
//! keeps ciphertexts on the device and must return the same words.

use super::ciphertext::Ciphertext;
use super::encoder::{encode, EncodedCoeffs, Plaintext};
use super::error::CkksError;
use super::evaluator::{Evaluator, RotationSum};
use super::gpu_eval::{GpuCiphertext, GpuEvalError, GpuEvaluator, GpuPlaintext, GpuRotationSum};
use rayon::prelude::*;

/// A CKKS evaluator on some device. `Sync`, so that callers may encode
/// plaintexts from several threads.
pub trait EvalBackend: Sync {
    /// A ciphertext where this backend keeps it.
    type Ct;
    /// A plaintext where this backend keeps it (made by [`Self::encode`]).
    type Pt: Send;
    /// A sum of rotations in the making (see [`Self::rotation_sum_add`]).
    type RotationSum;
    /// What an operation can fail with.
    type Error: std::error::Error + Send + From<CkksError>;

    /// `"cpu"` or `"gpu"`.
    fn name(&self) -> &'static str;
    /// Moves a host ciphertext to the backend.
    fn upload(&self, ct: &Ciphertext) -> Result<Self::Ct, Self::Error>;
    /// Brings a ciphertext back to the host.
    fn download(&self, ct: &Self::Ct) -> Result<Ciphertext, Self::Error>;
    /// `a + b`.
    fn add(&self, a: &Self::Ct, b: &Self::Ct) -> Result<Self::Ct, Self::Error>;
    /// Encodes `values` (at most N/2) at `level` with `scale`; the words
    /// equal [`encode`]'s on every backend.
    fn encode(&self, values: &[f64], level: usize, scale: f64) -> Result<Self::Pt, Self::Error>;
    /// Finishes host encodings ([`super::encoder::encode_coeffs`]: the
    /// embedding and rounding) into plaintexts, in order; a backend may
    /// finish many together. The words equal [`encode`]'s.
    fn plaintexts(&self, encoded: Vec<EncodedCoeffs>) -> Result<Vec<Self::Pt>, Self::Error>;
    /// `ct + pt` (same level and scale).
    fn add_plain(&self, ct: &Self::Ct, pt: &Self::Pt) -> Result<Self::Ct, Self::Error>;
    /// `ct * pt`, not rescaled.
    fn mul_plain(&self, ct: &Self::Ct, pt: &Self::Pt) -> Result<Self::Ct, Self::Error>;
    /// `acc + ct * pt`, not rescaled (`acc` at the product's scale); the
    /// default multiplies then adds, a backend may fuse the two.
    fn mul_plain_add(&self, acc: Self::Ct, ct: &Self::Ct, pt: &Self::Pt) -> Result<Self::Ct, Self::Error> {
        self.add(&acc, &self.mul_plain(ct, pt)?)
    }
    /// `sum_t ct_t * pt_t`, not rescaled (at least one term, every product
    /// at one scale); the default folds [`Self::mul_plain_add`], a backend
    /// may sum in one pass. The words are the fold's either way.
    fn mul_plain_sum(&self, terms: &[(&Self::Ct, &Self::Pt)]) -> Result<Self::Ct, Self::Error> {
        let ((first, first_pt), rest) = terms.split_first().ok_or(CkksError::Shape {
            what: "sum of plaintext products",
            expected: 1,
            found: 0,
        })?;
        rest.iter().try_fold(self.mul_plain(first, first_pt)?, |acc, (ct, pt)| {
            self.mul_plain_add(acc, ct, pt)
        })
    }
    /// `a * b` relinearized, not rescaled.
    fn mul_relin(&self, a: &Self::Ct, b: &Self::Ct) -> Result<Self::Ct, Self::Error>;
    /// Division by the last prime.
    fn rescale(&self, ct: &Self::Ct) -> Result<Self::Ct, Self::Error>;
    /// `-ct`.
    fn neg(&self, ct: &Self::Ct) -> Result<Self::Ct, Self::Error>;
    /// `ct * c`, scaled to land on the next level's canonical scale once rescaled.
    fn mul_const(&self, ct: &Self::Ct, c: f64) -> Result<Self::Ct, Self::Error>;
    /// `ct + c` at the ciphertext's scale.
    fn add_const(&self, ct: &Self::Ct, c: f64) -> Result<Self::Ct, Self::Error>;
    /// Drops primes down to `level`, scale unchanged.
    fn drop_level(&self, ct: &Self::Ct, level: usize) -> Result<Self::Ct, Self::Error>;
    /// Rotations sharing one decomposition.
    fn rotate_hoisted(&self, ct: &Self::Ct, steps: &[i64]) -> Result<Vec<Self::Ct>, Self::Error>;
    /// `sum + rot(ct, steps)` (`rot(ct, steps)` alone for `None`), all
    /// terms at one level and scale. The key-switched parts are summed over
    /// `Q_level ++ P` and divided by `P` once, in [`Self::rotation_sum_finish`]:
    /// one ModDown per sum instead of one per rotation.
    fn rotation_sum_add(
        &self,
        sum: Option<Self::RotationSum>,
        ct: &Self::Ct,
        steps: i64,
    ) -> Result<Self::RotationSum, Self::Error>;
    /// The ciphertext of a finished sum of rotations.
    fn rotation_sum_finish(&self, sum: Self::RotationSum) -> Result<Self::Ct, Self::Error>;
    /// Waits until submitted work is done (timing boundaries).
    fn sync(&self) -> Result<(), Self::Error>;
    /// Level of a ciphertext.
    fn level(&self, ct: &Self::Ct) -> usize;
    /// Scale of a ciphertext.
    fn scale(&self, ct: &Self::Ct) -> f64;
}

impl EvalBackend for Evaluator {
    type Ct = Ciphertext;
    type Pt = Plaintext;
    type RotationSum = RotationSum;
    type Error = CkksError;

    fn name(&self) -> &'static str {
        "cpu"
    }
    fn upload(&self, ct: &Ciphertext) -> Result<Ciphertext, CkksError> {
        Ok(ct.clone())
    }
    fn download(&self, ct: &Ciphertext) -> Result<Ciphertext, CkksError> {
        Ok(ct.clone())
    }
    fn add(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, CkksError> {
        Evaluator::add(self, a, b)
    }
    fn encode(&self, values: &[f64], level: usize, scale: f64) -> Result<Plaintext, CkksError> {
        encode(self.params(), values, level, scale)
    }
    fn plaintexts(&self, encoded: Vec<EncodedCoeffs>) -> Result<Vec<Plaintext>, CkksError> {
        Ok(encoded
            .into_par_iter()
            .map(|e| e.into_plaintext(self.params()))
            .collect())
    }
    fn add_plain(&self, ct: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext, CkksError> {
        let mut out = ct.clone();
        self.add_plain_assign(&mut out, pt)?;
        Ok(out)
    }
    fn mul_plain(&self, ct: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext, CkksError> {
        Evaluator::mul_plain(self, ct, pt)
    }
    fn mul_plain_add(&self, mut acc: Ciphertext, ct: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext, CkksError> {
        self.mul_plain_add_assign(&mut acc, ct, pt)?;
        Ok(acc)
    }
    fn mul_plain_sum(&self, terms: &[(&Ciphertext, &Plaintext)]) -> Result<Ciphertext, CkksError> {
        Evaluator::mul_plain_sum(self, terms)
    }
    fn mul_relin(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext, CkksError> {
        Evaluator::mul_relin(self, a, b)
    }
    fn rescale(&self, ct: &Ciphertext) -> Result<Ciphertext, CkksError> {
        Evaluator::rescale(self, ct)
    }
    fn drop_level(&self, ct: &Ciphertext, level: usize) -> Result<Ciphertext, CkksError> {
        let mut out = ct.clone();
        self.drop_level_assign(&mut out, level)?;
        Ok(out)
    }
    fn rotate_hoisted(&self, ct: &Ciphertext, steps: &[i64]) -> Result<Vec<Ciphertext>, CkksError> {
        Evaluator::rotate_hoisted(self, ct, steps)
    }
    fn neg(&self, ct: &Ciphertext) -> Result<Ciphertext, CkksError> {
        Evaluator::neg(self, ct)
    }
    fn mul_const(&self, ct: &Ciphertext, c: f64) -> Result<Ciphertext, CkksError> {
        let mut out = ct.clone();
        self.mul_const_assign(&mut out, c)?;
        Ok(out)
    }
    fn add_const(&self, ct: &Ciphertext, c: f64) -> Result<Ciphertext, CkksError> {
        let mut out = ct.clone();
        self.add_const_assign(&mut out, c)?;
        Ok(out)
    }
    fn rotation_sum_add(
        &self,
        sum: Option<RotationSum>,
        ct: &Ciphertext,
        steps: i64,
    ) -> Result<RotationSum, CkksError> {
        Evaluator::rotation_sum_add(self, sum, ct, steps)
    }
    fn rotation_sum_finish(&self, sum: RotationSum) -> Result<Ciphertext, CkksError> {
        Ok(Evaluator::rotation_sum_finish(self, sum))
    }
    fn sync(&self) -> Result<(), CkksError> {
        Ok(())
    }
    fn level(&self, ct: &Ciphertext) -> usize {
        ct.level()
    }
    fn scale(&self, ct: &Ciphertext) -> f64 {
        ct.scale()
    }
}

impl EvalBackend for GpuEvaluator {
    type Ct = GpuCiphertext;
    type Pt = GpuPlaintext;
    type RotationSum = GpuRotationSum;
    type Error = GpuEvalError;

    fn name(&self) -> &'static str {
        "gpu"
    }
    fn upload(&self, ct: &Ciphertext) -> Result<GpuCiphertext, GpuEvalError> {
        GpuEvaluator::upload(self, ct)
    }
    fn download(&self, ct: &GpuCiphertext) -> Result<Ciphertext, GpuEvalError> {
        GpuEvaluator::download(self, ct)
    }
    fn add(&self, a: &GpuCiphertext, b: &GpuCiphertext) -> Result<GpuCiphertext, GpuEvalError> {
        GpuEvaluator::add(self, a, b)
    }
    fn encode(&self, values: &[f64], level: usize, scale: f64) -> Result<GpuPlaintext, GpuEvalError> {
        GpuEvaluator::encode(self, values, level, scale)
    }
    fn plaintexts(&self, encoded: Vec<EncodedCoeffs>) -> Result<Vec<GpuPlaintext>, GpuEvalError> {
        GpuEvaluator::plaintexts(self, encoded)
    }
    fn add_plain(&self, ct: &GpuCiphertext, pt: &GpuPlaintext) -> Result<GpuCiphertext, GpuEvalError> {
        GpuEvaluator::add_plain(self, ct, pt)
    }
    fn mul_plain(&self, ct: &GpuCiphertext, pt: &GpuPlaintext) -> Result<GpuCiphertext, GpuEvalError> {
        GpuEvaluator::mul_plain(self, ct, pt)
    }
    fn mul_plain_add(
        &self,
        acc: GpuCiphertext,
        ct: &GpuCiphertext,
        pt: &GpuPlaintext,
    ) -> Result<GpuCiphertext, GpuEvalError> {
        GpuEvaluator::mul_plain_add(self, acc, ct, pt)
    }
    fn mul_plain_sum(&self, terms: &[(&GpuCiphertext, &GpuPlaintext)]) -> Result<GpuCiphertext, GpuEvalError> {
        GpuEvaluator::mul_plain_sum(self, terms)
    }
    fn mul_relin(&self, a: &GpuCiphertext, b: &GpuCiphertext) -> Result<GpuCiphertext, GpuEvalError> {
        GpuEvaluator::mul_relin(self, a, b)
    }
    fn rescale(&self, ct: &GpuCiphertext) -> Result<GpuCiphertext, GpuEvalError> {
        GpuEvaluator::rescale(self, ct)
    }
    fn drop_level(&self, ct: &GpuCiphertext, level: usize) -> Result<GpuCiphertext, GpuEvalError> {
        GpuEvaluator::drop_level(self, ct, level)
    }
    fn rotate_hoisted(&self, ct: &GpuCiphertext, steps: &[i64]) -> Result<Vec<GpuCiphertext>, GpuEvalError> {
        GpuEvaluator::rotate_hoisted(self, ct, steps)
    }
    fn neg(&self, ct: &GpuCiphertext) -> Result<GpuCiphertext, GpuEvalError> {
        GpuEvaluator::neg(self, ct)
    }
    fn mul_const(&self, ct: &GpuCiphertext, c: f64) -> Result<GpuCiphertext, GpuEvalError> {
        GpuEvaluator::mul_const(self, ct, c)
    }
    fn add_const(&self, ct: &GpuCiphertext, c: f64) -> Result<GpuCiphertext, GpuEvalError> {
        GpuEvaluator::add_const(self, ct, c)
    }
    fn rotation_sum_add(
        &self,
        sum: Option<GpuRotationSum>,
        ct: &GpuCiphertext,
        steps: i64,
    ) -> Result<GpuRotationSum, GpuEvalError> {
        GpuEvaluator::rotation_sum_add(self, sum, ct, steps)
    }
    fn rotation_sum_finish(&self, sum: GpuRotationSum) -> Result<GpuCiphertext, GpuEvalError> {
        GpuEvaluator::rotation_sum_finish(self, sum)
    }
    fn sync(&self) -> Result<(), GpuEvalError> {
        Ok(self.ring().sync()?)
    }
    fn level(&self, ct: &GpuCiphertext) -> usize {
        ct.level()
    }
    fn scale(&self, ct: &GpuCiphertext) -> f64 {
        ct.scale()
    }
}
