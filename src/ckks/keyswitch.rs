//! Hybrid key switching (Han-Ki): decompose a polynomial into `dnum` digits
//! of `alpha` primes, extend each digit to `Q_l ++ P` (ModUp), take the inner
//! product with the key's digits, divide by `P` (ModDown). Digits are extended
//! as centred integers: a digit with a non-zero mean would multiply the key's
//! error by a near-constant polynomial, whose canonical embedding piles the
//! error onto the slots nearest the root 1. The decomposition
//! does not depend on the key, so one decomposition serves many rotations
//! (hoisting): an automorphism commutes with basis extension, so it is applied
//! to the extended digits through an index permutation.

use super::keys::SwitchingKey;
use super::params::Params;
use crate::ring::dot::{paired_dot_limb, DotTerm};
use crate::ring::{Eval, RnsPoly};
use rayon::prelude::*;

/// The ModUp digits of one polynomial at one level.
///
/// Invariant: every digit has layout `params.extended_layout(level)`.
pub struct Decomposed {
    level: usize,
    digits: Vec<RnsPoly<Eval>>,
}

impl Decomposed {
    /// Level of the decomposed polynomial.
    pub fn level(&self) -> usize {
        self.level
    }
}

/// Splits `c` (evaluation form, `level + 1` limbs) into its extended digits.
pub fn decompose(params: &Params, c: &RnsPoly<Eval>) -> Decomposed {
    let ring = params.ring();
    let n = params.n();
    let level = c.layout().q - 1;
    let ext = params.extended_layout(level);
    let coeff = c.clone().into_coeff(ring);
    let digits = params
        .digits(level)
        .into_iter()
        .map(|range| {
            let mut digit = RnsPoly::<Eval>::zero(n, ext);
            let inputs: Vec<&[u32]> = range.clone().map(|i| coeff.limb(i)).collect();
            let mut targets: Vec<(usize, &mut [u32])> = digit
                .words_mut()
                .chunks_exact_mut(n)
                .enumerate()
                .filter(|(i, _)| !range.contains(i))
                .map(|(i, limb)| (ring.global_index(ext, i), limb))
                .collect();
            params.mod_up(&range).convert_centered(ring, &inputs, &mut targets);
            digit
                .words_mut()
                .par_chunks_exact_mut(n)
                .enumerate()
                .for_each(|(i, limb)| {
                    if range.contains(&i) {
                        limb.copy_from_slice(c.limb(i));
                    } else {
                        ring.table(ext, i).forward(limb);
                    }
                });
            digit
        })
        .collect();
    Decomposed { level, digits }
}

/// `ModDown(sum_j digit_j * key_j)` for both halves of the key, with the
/// digits read through `perm` (an automorphism in evaluation form) if given.
/// The result is over `Q_level`.
pub fn switch(
    params: &Params,
    decomposed: &Decomposed,
    key: &SwitchingKey,
    perm: Option<&[u32]>,
) -> (RnsPoly<Eval>, RnsPoly<Eval>) {
    let mut acc = SwitchAccumulator::new(params, decomposed.level);
    acc.add(params, decomposed, key, perm);
    acc.mod_down(params)
}

/// Key-switched products summed over `Q_level ++ P`, before the division by
/// `P`: several key switches into one accumulator cost one ModDown in all
/// (the giant steps of a baby-step giant-step sum), and the result carries
/// one rounding instead of one per switch.
///
/// Invariant: both halves have layout `params.extended_layout(level)`.
pub struct SwitchAccumulator {
    level: usize,
    b: RnsPoly<Eval>,
    a: RnsPoly<Eval>,
}

impl SwitchAccumulator {
    /// Zero sums at `level`.
    pub fn new(params: &Params, level: usize) -> Self {
        let ext = params.extended_layout(level);
        Self {
            level,
            b: RnsPoly::zero(params.n(), ext),
            a: RnsPoly::zero(params.n(), ext),
        }
    }

    /// Level of the sums.
    pub fn level(&self) -> usize {
        self.level
    }

    /// Adds `sum_j digit_j * key_j` for both key halves, the digits read
    /// through `perm` if given. The caller checks that `decomposed` is at
    /// this accumulator's level and that the key reaches it.
    pub fn add(&mut self, params: &Params, decomposed: &Decomposed, key: &SwitchingKey, perm: Option<&[u32]>) {
        debug_assert_eq!(decomposed.level, self.level, "the caller checks the levels");
        debug_assert!(self.level <= key.level(), "the caller checks the key's level");
        let ring = params.ring();
        let n = params.n();
        let ext = params.extended_layout(self.level);
        // Key limbs: Q primes of the key's level, then P.
        let q_top = key.level() + 1;
        self.b
            .words_mut()
            .par_chunks_exact_mut(n)
            .zip(self.a.words_mut().par_chunks_exact_mut(n))
            .enumerate()
            .for_each(|(i, (out_b, out_a))| {
                // Key limbs are over Q_L ++ P; skip the primes above the level.
                let key_limb = if i < ext.q { i } else { q_top + i - ext.q };
                let digits: Vec<&[u32]> = decomposed.digits.iter().map(|d| d.limb(i)).collect();
                let key_b: Vec<&[u32]> = key.digits.iter().map(|k| k.b.limb(key_limb)).collect();
                // A compact key's `a` limbs are re-expanded here, one per digit.
                let mut scratch = vec![0u32; if key.is_compact() { key.digits.len() * n } else { 0 }];
                let mut scratch_limbs = scratch.chunks_exact_mut(n.max(1));
                let key_a: Vec<&[u32]> = key
                    .digits
                    .iter()
                    .map(|k| k.a_limb(params, key_limb, scratch_limbs.next().unwrap_or_default()))
                    .collect();
                let terms: Vec<DotTerm> = key_b
                    .iter()
                    .zip(&key_a)
                    .zip(&digits)
                    .map(|((b, a), d)| (*b, *a, *d))
                    .collect();
                paired_dot_limb(ring.modulus(ext, i), &terms, perm, out_b, out_a);
            });
    }

    /// `round(sum / P)` of both halves, over `Q_level`.
    pub fn mod_down(self, params: &Params) -> (RnsPoly<Eval>, RnsPoly<Eval>) {
        let ring = params.ring();
        let mod_down = params.mod_down();
        (mod_down.apply(ring, self.b), mod_down.apply(ring, self.a))
    }
}
