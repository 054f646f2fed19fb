//! RNS polynomials, limb-major `[limb][N]` `u32`, with the representation
//! (coefficients or NTT evaluations) carried in the type.

use super::context::{LimbLayout, RingContext};
use super::dot::{paired_dot_limb, DotTerm};
use crate::math::Modulus;
use rayon::prelude::*;
use std::marker::PhantomData;

/// Coefficient representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coeff;
/// Evaluation (NTT, bit-reversed order) representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Eval;

/// A polynomial representation; sealed to [`Coeff`] and [`Eval`].
pub trait Domain: Copy + Send + Sync + 'static + private::Sealed {
    /// Name used in error messages and file headers.
    const NAME: &'static str;
}
impl Domain for Coeff {
    const NAME: &'static str = "coefficient";
}
impl Domain for Eval {
    const NAME: &'static str = "evaluation";
}
mod private {
    pub trait Sealed {}
    impl Sealed for super::Coeff {}
    impl Sealed for super::Eval {}
}

/// Minimum limbs per rayon task: below this the split costs more than it saves.
const PAR_MIN_LIMBS: usize = 1;

/// A polynomial in RNS form.
///
/// Invariant: `data.len() == layout.len() * n` and every word of limb `i` is
/// canonical modulo that limb's prime (see [`RingContext::modulus`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RnsPoly<D: Domain> {
    n: usize,
    layout: LimbLayout,
    data: Vec<u32>,
    _domain: PhantomData<D>,
}

impl<D: Domain> RnsPoly<D> {
    /// The zero polynomial.
    pub fn zero(n: usize, layout: LimbLayout) -> Self {
        Self::from_words(n, layout, vec![0; n * layout.len()])
    }

    /// Wraps limb-major words; the caller guarantees they are canonical.
    ///
    /// # Panics
    /// If `words.len() != n * layout.len()`.
    pub fn from_words(n: usize, layout: LimbLayout, words: Vec<u32>) -> Self {
        assert_eq!(words.len(), n * layout.len(), "word count does not match the layout");
        Self {
            n,
            layout,
            data: words,
            _domain: PhantomData,
        }
    }

    /// Ring degree.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The primes the limbs live over.
    pub fn layout(&self) -> LimbLayout {
        self.layout
    }

    /// All words, limb-major.
    pub fn words(&self) -> &[u32] {
        &self.data
    }

    /// All words, limb-major, mutable. Writers must keep them canonical.
    pub fn words_mut(&mut self) -> &mut [u32] {
        &mut self.data
    }

    /// Consumes the polynomial, returning its words.
    pub fn into_words(self) -> Vec<u32> {
        self.data
    }

    /// Limb `i`.
    pub fn limb(&self, i: usize) -> &[u32] {
        &self.data[i * self.n..(i + 1) * self.n]
    }

    /// Limb `i`, mutable.
    pub fn limb_mut(&mut self, i: usize) -> &mut [u32] {
        &mut self.data[i * self.n..(i + 1) * self.n]
    }

    /// Iterator over the limbs.
    pub fn limbs(&self) -> std::slice::ChunksExact<'_, u32> {
        self.data.chunks_exact(self.n)
    }

    /// Keeps the first `q` ciphertext limbs; only for layouts without special
    /// limbs (a level drop).
    pub fn truncate_q(&mut self, q: usize) {
        assert!(self.layout.p == 0 && q <= self.layout.q && q > 0);
        self.data.truncate(q * self.n);
        self.layout.q = q;
    }

    /// A copy with only the limbs of `layout`, which must be contained in this
    /// polynomial's layout (`layout.q <= self.q`, `layout.p <= self.p`).
    pub fn restricted(&self, layout: LimbLayout) -> Self {
        assert!(
            layout.q <= self.layout.q && layout.p <= self.layout.p,
            "layout not contained"
        );
        let n = self.n;
        let mut words = Vec::with_capacity(layout.len() * n);
        words.extend_from_slice(&self.data[..layout.q * n]);
        let p_start = self.layout.q * n;
        words.extend_from_slice(&self.data[p_start..p_start + layout.p * n]);
        Self::from_words(n, layout, words)
    }

    /// Splits the limbs off after the first `q` (for `Q ++ P` layouts),
    /// returning the `P` part as a polynomial of layout `{q: 0, p}`.
    pub fn split_off_p(&mut self) -> RnsPoly<D> {
        let p_part = self.data.split_off(self.layout.q * self.n);
        let p = self.layout.p;
        self.layout.p = 0;
        RnsPoly::from_words(self.n, LimbLayout { q: 0, p }, p_part)
    }

    /// Applies `f(modulus, limb_of_self, limb_of_other)` limb by limb, in parallel.
    fn zip_limbs<F>(&mut self, ctx: &RingContext, other: &Self, f: F)
    where
        F: Fn(&crate::math::Modulus, &mut [u32], &[u32]) + Sync,
    {
        assert_eq!(self.layout, other.layout, "limb layouts differ");
        let layout = self.layout;
        self.data
            .par_chunks_exact_mut(self.n)
            .zip(other.data.par_chunks_exact(other.n))
            .with_min_len(PAR_MIN_LIMBS)
            .enumerate()
            .for_each(|(i, (a, b))| f(ctx.modulus(layout, i), a, b));
    }

    /// Applies `f(modulus, limb_index, limb)` limb by limb, in parallel.
    pub fn map_limbs<F>(&mut self, ctx: &RingContext, f: F)
    where
        F: Fn(&crate::math::Modulus, usize, &mut [u32]) + Sync,
    {
        let layout = self.layout;
        self.data
            .par_chunks_exact_mut(self.n)
            .with_min_len(PAR_MIN_LIMBS)
            .enumerate()
            .for_each(|(i, a)| f(ctx.modulus(layout, i), i, a));
    }

    /// `self += other`.
    pub fn add_assign(&mut self, ctx: &RingContext, other: &Self) {
        self.zip_limbs(ctx, other, |m, a, b| {
            a.iter_mut().zip(b).for_each(|(x, &y)| *x = m.add(*x, y))
        });
    }

    /// `self -= other`.
    pub fn sub_assign(&mut self, ctx: &RingContext, other: &Self) {
        self.zip_limbs(ctx, other, |m, a, b| {
            a.iter_mut().zip(b).for_each(|(x, &y)| *x = m.sub(*x, y))
        });
    }

    /// `self = -self`.
    pub fn neg_assign(&mut self, ctx: &RingContext) {
        self.map_limbs(ctx, |m, _, a| a.iter_mut().for_each(|x| *x = m.neg(*x)));
    }

    /// Multiplies limb `i` by the constant `constants[i]` (canonical mod its prime).
    pub fn mul_scalar_assign(&mut self, ctx: &RingContext, constants: &[u32]) {
        assert_eq!(constants.len(), self.layout.len());
        self.map_limbs(ctx, |m, i, a| {
            let (w, ws) = (constants[i], m.shoup(constants[i]));
            a.iter_mut().for_each(|x| *x = m.mul_shoup(*x, w, ws));
        });
    }

    /// Builds the polynomial whose coefficients are the small signed integers
    /// `coeffs`, reduced into every limb of `layout`.
    pub fn from_signed(ctx: &RingContext, layout: LimbLayout, coeffs: &[i64]) -> RnsPoly<Coeff> {
        Self::from_reduced(ctx, layout, coeffs, Modulus::reduce_i64)
    }

    /// [`Self::from_signed`] for coefficients beyond 64 bits.
    pub fn from_signed_wide(ctx: &RingContext, layout: LimbLayout, coeffs: &[i128]) -> RnsPoly<Coeff> {
        Self::from_reduced(ctx, layout, coeffs, Modulus::reduce_i128)
    }

    fn from_reduced<T: Copy + Sync>(
        ctx: &RingContext,
        layout: LimbLayout,
        coeffs: &[T],
        reduce: impl Fn(&Modulus, T) -> u32 + Sync,
    ) -> RnsPoly<Coeff> {
        let n = coeffs.len();
        assert_eq!(n, ctx.n());
        let mut poly = RnsPoly::<Coeff>::zero(n, layout);
        poly.map_limbs(ctx, |m, _, a| {
            a.iter_mut().zip(coeffs).for_each(|(x, &c)| *x = reduce(m, c))
        });
        poly
    }
}

impl RnsPoly<Eval> {
    /// `self = self * other` (point-wise, both in evaluation form).
    pub fn mul_assign(&mut self, ctx: &RingContext, other: &Self) {
        self.zip_limbs(ctx, other, |m, a, b| {
            a.iter_mut().zip(b).for_each(|(x, &y)| *x = m.mul(*x, y))
        });
    }

    /// `self += a * b` (point-wise).
    pub fn mul_add_assign(&mut self, ctx: &RingContext, a: &Self, b: &Self) {
        assert_eq!(a.layout, b.layout);
        let layout = self.layout;
        assert_eq!(layout, a.layout);
        let n = self.n;
        self.data
            .par_chunks_exact_mut(n)
            .zip(a.data.par_chunks_exact(n).zip(b.data.par_chunks_exact(n)))
            .enumerate()
            .for_each(|(i, (acc, (x, y)))| {
                let m = ctx.modulus(layout, i);
                for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
                    *s = m.add(*s, m.mul(x, y));
                }
            });
    }

    /// `(sum_t a_t * w_t, sum_t b_t * w_t)` point-wise, for `terms` of
    /// `(a_t, b_t, w_t)` (a ciphertext's two halves and a plaintext), by
    /// [`paired_dot_limb`] on each limb: the words of `mul_add_assign` term
    /// after term, in one pass.
    ///
    /// # Panics
    /// If `terms` is empty or its polynomials differ in layout.
    pub fn paired_dot(ctx: &RingContext, terms: &[(&Self, &Self, &Self)]) -> (Self, Self) {
        let (first, _, _) = terms.first().expect("at least one term");
        let (n, layout) = (first.n, first.layout);
        assert!(
            terms
                .iter()
                .all(|(a, b, w)| [a, b, w].iter().all(|p| p.layout == layout)),
            "every operand has one layout"
        );
        let (mut out_a, mut out_b) = (Self::zero(n, layout), Self::zero(n, layout));
        out_a
            .data
            .par_chunks_exact_mut(n)
            .zip(out_b.data.par_chunks_exact_mut(n))
            .enumerate()
            .for_each(|(i, (sum_a, sum_b))| {
                let limbs: Vec<DotTerm> = terms
                    .iter()
                    .map(|(a, b, w)| (a.limb(i), b.limb(i), w.limb(i)))
                    .collect();
                paired_dot_limb(ctx.modulus(layout, i), &limbs, None, sum_a, sum_b);
            });
        (out_a, out_b)
    }

    /// Inverse NTT of every limb.
    pub fn into_coeff(mut self, ctx: &RingContext) -> RnsPoly<Coeff> {
        let layout = self.layout;
        self.data
            .par_chunks_exact_mut(self.n)
            .enumerate()
            .for_each(|(i, a)| ctx.table(layout, i).inverse(a));
        RnsPoly::from_words(self.n, layout, self.data)
    }
}

impl RnsPoly<Coeff> {
    /// Forward NTT of every limb.
    pub fn into_eval(mut self, ctx: &RingContext) -> RnsPoly<Eval> {
        let layout = self.layout;
        self.data
            .par_chunks_exact_mut(self.n)
            .enumerate()
            .for_each(|(i, a)| ctx.table(layout, i).forward(a));
        RnsPoly::from_words(self.n, layout, self.data)
    }
}
