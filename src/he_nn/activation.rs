//! Polynomial activations (the paper's `a*x^2 + b*x + c` and its cubic
//! sigmoid `a*x^3 + b*x + c`) on every data slot of a tensor.
//!
//! After folding (see [`crate::nn::fold`]) the leading coefficient is `+-1`
//! for a quadratic and `1` for a cubic, which saves a level:
//! - quadratic, `|a| = 1`: `a*z^2 + b*z` in one level (the square and the
//!   constant product land on the same level at the same canonical scale);
//! - quadratic, other `a`: `z * (a*z + b)`, two levels;
//! - cubic, `a = 1`: `z * (z^2 + a2*z + b)`, two levels; other `a`: three.
//!
//! The constant term is added on data slots only, so every slot outside the
//! tensor stays zero (the [`SlotLayout`] invariant).

use super::layout::SlotLayout;
use super::weights::{slots_plaintext, WeightStore};
use crate::ckks::{EvalBackend, Params};

/// A polynomial activation, coefficients constant first.
///
/// Invariant: degree 2 or 3 (`coeffs.len()` 3 or 4), leading coefficient
/// nonzero and finite.
#[derive(Clone, Debug, PartialEq)]
pub struct PolyActivation {
    name: String,
    coeffs: Vec<f64>,
}

impl PolyActivation {
    /// `None` unless the degree is 2 or 3 with a nonzero, finite leading
    /// coefficient (an activation with a zero leading coefficient is affine
    /// and should have been folded away).
    pub fn new(name: impl Into<String>, coeffs: Vec<f64>) -> Option<Self> {
        let ok = matches!(coeffs.len(), 3 | 4)
            && coeffs.iter().all(|c| c.is_finite())
            && coeffs.last().is_some_and(|&a| a != 0.0);
        ok.then(|| Self {
            name: name.into(),
            coeffs,
        })
    }

    /// The module name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The coefficients, constant first.
    pub fn coeffs(&self) -> &[f64] {
        &self.coeffs
    }

    fn lead(&self) -> f64 {
        self.coeffs[self.coeffs.len() - 1]
    }

    /// Levels one evaluation consumes.
    pub fn levels(&self) -> usize {
        match (self.coeffs.len(), self.lead()) {
            (3, a) if a.abs() == 1.0 => 1,
            (3, _) => 2,
            (_, 1.0) => 2,
            _ => 3,
        }
    }

    /// Key switches one evaluation costs per ciphertext (relinearizations).
    pub fn key_switches(&self) -> usize {
        if self.coeffs.len() == 3 && self.lead().abs() == 1.0 {
            1
        } else {
            2
        }
    }

    /// The activation on every data slot of `layout`; outputs at canonical
    /// scale, [`Self::levels`] below the input.
    ///
    /// # Errors
    /// Evaluator refusals (too few levels, missing relinearization key).
    pub fn apply<B: EvalBackend>(
        &self,
        backend: &B,
        layout: &SlotLayout,
        input: &[B::Ct],
    ) -> Result<Vec<B::Ct>, B::Error> {
        self.apply_pending(backend, layout, input)?
            .iter()
            .map(|y| backend.rescale(y))
            .collect()
    }

    /// [`Self::apply`] without its last rescale: the outputs sit one level
    /// above, at the scale of the last product (about the square of the
    /// canonical scale), and one rescale brings them to [`Self::apply`]'s.
    /// A linear layer reading them folds that rescale into its own (see
    /// [`super::HeConv::apply_pending`]), so the rounding noise of the
    /// rescale and of the layer's rotations lands at the product's scale,
    /// where it is negligible.
    ///
    /// # Errors
    /// As [`Self::apply`].
    pub fn apply_pending<B: EvalBackend>(
        &self,
        backend: &B,
        layout: &SlotLayout,
        input: &[B::Ct],
    ) -> Result<Vec<B::Ct>, B::Error> {
        self.apply_pending_with(backend, None, layout, input)
    }

    /// [`Self::apply_pending`] with the slot constants taken from
    /// `weights` when kept there under `params`, else encoded and offered
    /// to it. The words are [`Self::apply_pending`]'s.
    ///
    /// # Errors
    /// As [`Self::apply`].
    pub fn apply_pending_kept<B: EvalBackend>(
        &self,
        backend: &B,
        params: &Params,
        weights: &WeightStore<B::Pt>,
        layout: &SlotLayout,
        input: &[B::Ct],
    ) -> Result<Vec<B::Ct>, B::Error> {
        self.apply_pending_with(backend, Some((params, weights)), layout, input)
    }

    /// [`Self::apply_pending`], with `kept` (parameters and store) or not.
    fn apply_pending_with<B: EvalBackend>(
        &self,
        backend: &B,
        kept: Kept<'_, B>,
        layout: &SlotLayout,
        input: &[B::Ct],
    ) -> Result<Vec<B::Ct>, B::Error> {
        let constants = layout.constant(self.coeffs[0]);
        // Only the `z * (inner)` forms (more than one level) read these.
        let inner_constants = if self.levels() > 1 {
            layout.constant(self.coeffs[1])
        } else {
            vec![Vec::new(); input.len()]
        };
        input
            .iter()
            .zip(constants.iter().zip(&inner_constants))
            .map(|(z, (constant, inner_constant))| {
                let y = self.without_constant(backend, kept, z, inner_constant)?;
                add_on_slots(backend, kept, &y, constant)
            })
            .collect()
    }

    /// `p(z) - p(0)`, zero wherever `z` is zero, before its last rescale.
    ///
    /// The forms `z * (inner)` add the linear coefficient to `inner` on the
    /// data slots only (`inner_constant`, [`SlotLayout::constant`]): on the
    /// others `inner` then stays near zero, and so does the product with
    /// the noise `z` holds there. Added on every slot, it would multiply
    /// that noise by the coefficient; an SE gate's broadcast then sums the
    /// noise of `H*W` such slots into every gate value.
    fn without_constant<B: EvalBackend>(
        &self,
        backend: &B,
        kept: Kept<'_, B>,
        z: &B::Ct,
        inner_constant: &[f64],
    ) -> Result<B::Ct, B::Error> {
        let c = &self.coeffs;
        let lead = self.lead();
        let square = |x: &B::Ct| backend.mul_relin(x, x);
        let times = |x: &B::Ct, k: f64| backend.mul_const(x, k);
        let rescaled = |y: Result<B::Ct, B::Error>| backend.rescale(&y?);
        if c.len() == 3 {
            if lead.abs() == 1.0 {
                // Both terms at the square's scale: the canonical scale of
                // the level below times the prime a rescale removes.
                let sq = square(z)?;
                let sq = if lead < 0.0 { backend.neg(&sq)? } else { sq };
                return backend.add(&sq, &times(z, c[1])?);
            }
            let inner = add_on_slots(backend, kept, &rescaled(times(z, lead))?, inner_constant)?;
            return backend.mul_relin(&bring_to(backend, z, backend.level(&inner))?, &inner);
        }
        let mut inner = rescaled(square(z))?;
        if lead != 1.0 {
            inner = rescaled(times(&inner, lead))?;
        }
        if c[2] != 0.0 {
            let linear = bring_to(backend, &rescaled(times(z, c[2]))?, backend.level(&inner))?;
            inner = backend.add(&inner, &linear)?;
        }
        let inner = add_on_slots(backend, kept, &inner, inner_constant)?;
        backend.mul_relin(&bring_to(backend, z, backend.level(&inner))?, &inner)
    }
}

/// `ct + values` where `values` is a slot vector (encoded at the
/// ciphertext's level and scale, or taken from the store kept for those
/// parameters); nothing to do for an all-zero vector.
fn add_on_slots<B: EvalBackend>(backend: &B, kept: Kept<'_, B>, ct: &B::Ct, values: &[f64]) -> Result<B::Ct, B::Error> {
    if values.iter().all(|&v| v == 0.0) {
        return backend.drop_level(ct, backend.level(ct));
    }
    let (level, scale) = (backend.level(ct), backend.scale(ct));
    match kept {
        Some((params, weights)) => {
            let pt = slots_plaintext(backend, params, weights, values, level, scale)?;
            backend.add_plain(ct, pt[0].as_ref().expect("a slot vector's plaintext is always present"))
        }
        None => backend.add_plain(ct, &backend.encode(values, level, scale)?),
    }
}

/// The parameters and the store an activation's constants are kept in, if any.
type Kept<'a, B> = Option<(&'a Params, &'a WeightStore<<B as EvalBackend>::Pt>)>;

/// `ct` at `level` and that level's canonical scale: primes dropped down to
/// `level + 1`, then a product with 1 and a rescale (no key switch). A
/// ciphertext already at `level` is returned as is (it must then already be
/// at the canonical scale, as every layer output is).
///
/// # Errors
/// [`crate::ckks::CkksError::OutOfLevels`] when `ct` is below `level`.
pub fn bring_to<B: EvalBackend>(backend: &B, ct: &B::Ct, level: usize) -> Result<B::Ct, B::Error> {
    let current = backend.level(ct);
    if current <= level {
        return backend.drop_level(ct, level);
    }
    let dropped = backend.drop_level(ct, level + 1)?;
    backend.rescale(&backend.mul_const(&dropped, 1.0)?)
}
