//! Automorphisms `X -> X^g` of `Z_Q[X]/(X^N + 1)` for odd `g` (Galois
//! elements): rotations of the CKKS slots are `g = 5^r mod 2N`, conjugation
//! is `g = 2N - 1`.

use super::context::RingContext;
use super::poly::{Coeff, Eval, RnsPoly};
use crate::math::ntt::bit_reverse;
use rayon::prelude::*;

/// The Galois element rotating the slots left by `steps` (negative: right).
pub fn rotation_galois_element(steps: i64, n: usize) -> u64 {
    let slots = (n / 2) as i64;
    let r = steps.rem_euclid(slots) as u64;
    let two_n = 2 * n as u64;
    let mut g = 1u64;
    for _ in 0..r {
        g = g * 5 % two_n;
    }
    g
}

/// The Galois element of complex conjugation.
pub fn conjugation_galois_element(n: usize) -> u64 {
    2 * n as u64 - 1
}

/// For evaluation-form polynomials: `out[i] = in[perm[i]]` applies `X -> X^g`.
///
/// Output `i` of the forward NTT is the evaluation at `psi^(2*bitrev(i)+1)`,
/// and `a(X^g)` at that point is `a` at `psi^(g*(2*bitrev(i)+1))`.
pub fn eval_permutation(g: u64, n: usize) -> Vec<u32> {
    assert!(g % 2 == 1, "Galois elements are odd");
    let bits = n.trailing_zeros();
    let two_n = 2 * n as u64;
    (0..n)
        .map(|i| {
            let e = 2 * bit_reverse(i, bits) as u64 + 1;
            let target = g * e % two_n;
            bit_reverse(((target - 1) / 2) as usize, bits) as u32
        })
        .collect()
}

impl RnsPoly<Eval> {
    /// `X -> X^g` through a permutation from [`eval_permutation`].
    pub fn automorphism(&self, perm: &[u32]) -> RnsPoly<Eval> {
        let n = self.n();
        assert_eq!(perm.len(), n);
        let mut out = RnsPoly::<Eval>::zero(n, self.layout());
        out.words_mut()
            .par_chunks_exact_mut(n)
            .zip(self.words().par_chunks_exact(n))
            .for_each(|(dst, src)| {
                for (d, &p) in dst.iter_mut().zip(perm) {
                    *d = src[p as usize];
                }
            });
        out
    }
}

impl RnsPoly<Coeff> {
    /// `X -> X^g` on coefficients: `X^k` goes to `X^(g k mod 2N)`, negated
    /// when the exponent wraps past N.
    pub fn automorphism(&self, ctx: &RingContext, g: u64) -> RnsPoly<Coeff> {
        let n = self.n();
        let two_n = 2 * n as u64;
        let layout = self.layout();
        let mut out = RnsPoly::<Coeff>::zero(n, layout);
        out.words_mut()
            .par_chunks_exact_mut(n)
            .zip(self.words().par_chunks_exact(n))
            .enumerate()
            .for_each(|(limb, (dst, src))| {
                let m = ctx.modulus(layout, limb);
                for (k, &c) in src.iter().enumerate() {
                    let e = (g * k as u64 % two_n) as usize;
                    if e < n {
                        dst[e] = c;
                    } else {
                        dst[e - n] = m.neg(c);
                    }
                }
            });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::primes::ntt_prime_near;
    use crate::ring::context::LimbLayout;
    use crate::ring::sampler::Sampler;
    use rand::Rng;

    #[test]
    fn evaluation_permutation_matches_coefficient_automorphism() {
        let n = 1 << 10;
        let q0 = ntt_prime_near(2f64.powi(30), 2 * n as u64, &[]).unwrap();
        let q1 = ntt_prime_near(2f64.powi(30), 2 * n as u64, &[q0]).unwrap();
        let ctx = RingContext::new(n, &[q0, q1], &[]).unwrap();
        let layout = LimbLayout::q_only(2);
        let a = Sampler::from_seed(crate::test_seed::rng().gen())
            .uniform(&ctx, layout)
            .into_coeff(&ctx);
        for g in [
            rotation_galois_element(1, n),
            rotation_galois_element(-7, n),
            conjugation_galois_element(n),
        ] {
            let via_coeff = a.automorphism(&ctx, g).into_eval(&ctx);
            let via_eval = a.clone().into_eval(&ctx).automorphism(&eval_permutation(g, n));
            assert_eq!(via_coeff, via_eval, "g = {g}");
        }
    }
}
