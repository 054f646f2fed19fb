//! The paper's quadratic activation `a*x^2 + b*x + c` in one level.
//!
//! Folding multiplies the preceding linear layer by `sqrt|a|`, so the
//! ciphertext holds `z = sqrt|a| * x` and the activation is
//! `sign(a) * z^2 + (b / sqrt|a|) * z + c`: the square (multiply,
//! relinearize, rescale) and the linear term (constant multiply, rescale)
//! land on the same level at the same canonical scale and add exactly.

use crate::ckks::EvalBackend;

/// A folded quadratic activation: `sign * z^2 + linear * z + constant`.
///
/// Invariant: `sign` is `1.0` or `-1.0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FoldedQuadratic {
    sign: f64,
    linear: f64,
    constant: f64,
}

impl FoldedQuadratic {
    /// Folds `a*x^2 + b*x + c` for an input already multiplied by
    /// `sqrt|a|`; `None` when `a == 0` (then the activation is linear and
    /// folds entirely into the neighbouring layers).
    pub fn fold(a: f64, b: f64, c: f64) -> Option<Self> {
        if a == 0.0 || !a.is_finite() {
            return None;
        }
        let root = a.abs().sqrt();
        Some(Self {
            sign: a.signum(),
            linear: b / root,
            constant: c,
        })
    }

    /// The factor the preceding linear layer must absorb (`sqrt|a|`).
    pub fn input_scale(a: f64) -> f64 {
        a.abs().sqrt()
    }

    /// Applies the activation to every slot; one level. Key switches: one
    /// (the relinearization).
    ///
    /// # Errors
    /// Evaluator refusals (level 0, missing relinearization key).
    pub fn apply<B: EvalBackend>(&self, backend: &B, z: &B::Ct) -> Result<B::Ct, B::Error> {
        let square = backend.rescale(&backend.mul_relin(z, z)?)?;
        let square = if self.sign < 0.0 { backend.neg(&square)? } else { square };
        let linear = backend.rescale(&backend.mul_const(z, self.linear)?)?;
        backend.add_const(&backend.add(&square, &linear)?, self.constant)
    }
}
