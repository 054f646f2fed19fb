//! RNS basis changes: fast basis extension (the ModUp of hybrid key
//! switching), ModDown (division by the special modulus P) and the exact
//! rescale (division by the last ciphertext prime, rounded).

use super::context::{LimbLayout, RingContext};
use super::poly::{Coeff, Eval, RnsPoly};
use crate::math::modulus::LAZY_PRODUCTS;
use crate::math::Modulus;
use rayon::prelude::*;

/// Fast (approximate) basis extension from a set of source primes to any other
/// prime of the context: `x -> sum_i [x_i * qhat_i^-1]_{q_i} * qhat_i mod t`,
/// which is `x + u * Q_S` for some `0 <= u < |S|`.
///
/// With [`Self::convert_centered`] the multiple of `Q_S` is estimated and
/// removed, giving the centred representative of `x` (up to a rare
/// off-by-one near the midpoint): what an unbiased ModDown needs.
///
/// Invariant: `qhat_inv[i]` is `(Q_S / s_i)^-1 mod s_i`, `qhat_mod[t][i]` is
/// `Q_S / s_i mod t` and `qs_mod[t]` is `Q_S mod t` for every global prime `t`
/// not in `S` (empty / zero for sources); `reciprocal[i]` is
/// `floor(2^64 / s_i)` split into high and low 32-bit words.
#[derive(Clone, Debug)]
pub struct BasisConverter {
    sources: Vec<usize>,
    source_moduli: Vec<Modulus>,
    qhat_inv: Vec<(u32, u32)>,
    qhat_mod: Vec<Vec<u32>>,
    qs_mod: Vec<u32>,
    reciprocal: Vec<(u32, u32)>,
}

impl BasisConverter {
    /// A converter from the primes with global indices `sources`.
    pub fn new(ctx: &RingContext, sources: Vec<usize>) -> Self {
        let source_moduli: Vec<Modulus> = sources.iter().map(|&s| *ctx.global_table(s).modulus()).collect();
        // Q_S / s_i modulo m, as a product of the other sources.
        let qhat_mod_m = |i: usize, m: &Modulus| {
            source_moduli
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .fold(1 % m.value(), |acc, (_, s)| m.mul(acc, s.value() % m.value()))
        };
        let qhat_inv = source_moduli
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let inv = m.inv(qhat_mod_m(i, m));
                (inv, m.shoup(inv))
            })
            .collect();
        let qhat_mod = (0..ctx.global_count())
            .map(|t| {
                if sources.contains(&t) {
                    Vec::new()
                } else {
                    let m = ctx.global_table(t).modulus();
                    (0..sources.len()).map(|i| qhat_mod_m(i, m)).collect()
                }
            })
            .collect();
        let qs_mod = (0..ctx.global_count())
            .map(|t| {
                let m = ctx.global_table(t).modulus();
                source_moduli
                    .iter()
                    .fold(1 % m.value(), |acc, s| m.mul(acc, s.value() % m.value()))
            })
            .collect();
        let reciprocal = source_moduli
            .iter()
            .map(|m| {
                let r = ((1u128 << 64) / u128::from(m.value())) as u64;
                ((r >> 32) as u32, r as u32)
            })
            .collect();
        Self {
            sources,
            source_moduli,
            qhat_inv,
            qhat_mod,
            qs_mod,
            reciprocal,
        }
    }

    /// Global indices of the source primes.
    pub fn sources(&self) -> &[usize] {
        &self.sources
    }

    /// `(Q_S / s_i)^-1 mod s_i` with its Shoup quotient, per source.
    pub fn qhat_inv(&self) -> &[(u32, u32)] {
        &self.qhat_inv
    }

    /// `Q_S / s_i mod t` per source, for the global prime `t` (not a source).
    pub fn qhat_mod(&self, target: usize) -> &[u32] {
        &self.qhat_mod[target]
    }

    /// `Q_S mod t` for the global prime `t`.
    pub fn qs_mod(&self, target: usize) -> u32 {
        self.qs_mod[target]
    }

    /// `floor(2^64 / s_i)` as (high, low) 32-bit words, per source.
    pub fn reciprocal(&self) -> &[(u32, u32)] {
        &self.reciprocal
    }

    /// Extends `inputs` (one coefficient-form limb per source, in order) to
    /// the primes `outputs[j].0` (global indices, none of them a source),
    /// writing canonical coefficients into `outputs[j].1`.
    pub fn convert(&self, ctx: &RingContext, inputs: &[&[u32]], outputs: &mut [(usize, &mut [u32])]) {
        self.convert_inner(ctx, inputs, outputs, false)
    }

    /// As [`Self::convert`], but subtracts `v * Q_S` with
    /// `v = round(sum_i y_i / s_i)` (`y_i = [x_i * qhat_i^-1]_{s_i}`), which
    /// yields the centred representative of `x` modulo `Q_S`. The estimate is
    /// fixed-point: `floor(y_i * floor(2^64 / s_i) / 2^32)` summed in 64 bits,
    /// so any backend can reproduce it word for word with 32-bit operations.
    pub fn convert_centered(&self, ctx: &RingContext, inputs: &[&[u32]], outputs: &mut [(usize, &mut [u32])]) {
        self.convert_inner(ctx, inputs, outputs, true)
    }

    fn convert_inner(&self, ctx: &RingContext, inputs: &[&[u32]], outputs: &mut [(usize, &mut [u32])], centered: bool) {
        assert_eq!(inputs.len(), self.sources.len());
        let scaled: Vec<Vec<u32>> = inputs
            .par_iter()
            .zip(&self.source_moduli)
            .zip(&self.qhat_inv)
            .map(|((x, m), &(w, ws))| x.iter().map(|&v| m.mul_shoup(v, w, ws)).collect())
            .collect();
        let overflow: Option<Vec<u32>> = centered.then(|| {
            let n = scaled.first().map_or(0, Vec::len);
            let mut sum = vec![0u64; n];
            for (y, &(hi, lo)) in scaled.iter().zip(&self.reciprocal) {
                for (acc, &v) in sum.iter_mut().zip(y) {
                    let v = u64::from(v);
                    *acc += ((v * u64::from(lo)) >> 32) + v * u64::from(hi);
                }
            }
            sum.into_iter().map(|s| ((s + (1 << 31)) >> 32) as u32).collect()
        });
        outputs.par_iter_mut().for_each(|(target, out)| {
            let m = ctx.global_table(*target).modulus();
            let factors = &self.qhat_mod[*target];
            assert!(!factors.is_empty(), "basis conversion into one of its sources");
            // Each chunk's first product initialises the lazy sums and the
            // first chunk's reduction the output: no pass only to zero them.
            let mut lazy = vec![0u64; out.len()];
            for (c, (chunk_y, chunk_f)) in scaled
                .chunks(LAZY_PRODUCTS)
                .zip(factors.chunks(LAZY_PRODUCTS))
                .enumerate()
            {
                let f0 = u64::from(chunk_f[0]);
                for (l, &v) in lazy.iter_mut().zip(&chunk_y[0]) {
                    *l = u64::from(v) * f0;
                }
                for (y, &f) in chunk_y[1..].iter().zip(&chunk_f[1..]) {
                    let f = u64::from(f);
                    for (l, &v) in lazy.iter_mut().zip(y) {
                        *l += u64::from(v) * f;
                    }
                }
                if c == 0 {
                    for (a, &l) in out.iter_mut().zip(&lazy) {
                        *a = m.reduce_u64_lanes(l);
                    }
                } else {
                    for (a, &l) in out.iter_mut().zip(&lazy) {
                        *a = m.add(*a, m.reduce_u64_lanes(l));
                    }
                }
            }
            if let Some(v) = &overflow {
                let (w, ws) = (self.qs_mod[*target], m.shoup(self.qs_mod[*target]));
                for (a, &v) in out.iter_mut().zip(v) {
                    *a = m.sub(*a, m.mul_shoup(v, w, ws));
                }
            }
        });
    }
}

/// Division by the special modulus P with the tables it needs.
///
/// Invariant: `p_inv_mod_q[i] = P^-1 mod q_i` for every ciphertext prime.
#[derive(Clone, Debug)]
pub struct ModDown {
    from_p: BasisConverter,
    p_inv_mod_q: Vec<(u32, u32)>,
}

impl ModDown {
    /// Tables for the context's special primes.
    pub fn new(ctx: &RingContext) -> Self {
        let q = ctx.q_count();
        let from_p = BasisConverter::new(ctx, (q..ctx.global_count()).collect());
        let p_inv_mod_q = (0..q)
            .map(|i| {
                let m = ctx.q(i);
                let p_mod = (0..ctx.p_count()).fold(1, |acc, j| m.mul(acc, ctx.p(j).value() % m.value()));
                let inv = m.inv(p_mod);
                (inv, m.shoup(inv))
            })
            .collect();
        Self { from_p, p_inv_mod_q }
    }

    /// The converter from the special primes.
    pub fn converter(&self) -> &BasisConverter {
        &self.from_p
    }

    /// `P^-1 mod q_i` with its Shoup quotient, per ciphertext prime.
    pub fn p_inv_mod_q(&self) -> &[(u32, u32)] {
        &self.p_inv_mod_q
    }

    /// `round(x / P)` (off by one only near ties), for `x` over `Q_l ++ P` in
    /// evaluation form; the result lives over `Q_l`. The centred conversion
    /// keeps the error unbiased.
    pub fn apply(&self, ctx: &RingContext, mut x: RnsPoly<Eval>) -> RnsPoly<Eval> {
        let layout = x.layout();
        assert_eq!(layout.p, ctx.p_count(), "ModDown needs every special limb");
        let p_part = x.split_off_p().into_coeff(ctx);
        let n = ctx.n();
        let mut converted = RnsPoly::<Coeff>::zero(n, LimbLayout::q_only(layout.q));
        {
            let inputs: Vec<&[u32]> = p_part.limbs().collect();
            let mut outputs: Vec<(usize, &mut [u32])> = converted.words_mut().chunks_exact_mut(n).enumerate().collect();
            self.from_p.convert_centered(ctx, &inputs, &mut outputs);
        }
        let converted = converted.into_eval(ctx);
        let p_inv = &self.p_inv_mod_q;
        x.words_mut()
            .par_chunks_exact_mut(n)
            .zip(converted.words().par_chunks_exact(n))
            .enumerate()
            .for_each(|(i, (a, c))| {
                let m = ctx.q(i);
                let (w, ws) = p_inv[i];
                for (a, &c) in a.iter_mut().zip(c) {
                    *a = m.mul_shoup(m.sub(*a, c), w, ws);
                }
            });
        x
    }
}

/// Exact rescale: `round(x / q_l)` for `x` over `Q_l` (no special limbs,
/// `l >= 1`) in evaluation form; the result lives over `Q_{l-1}`.
pub fn rescale(ctx: &RingContext, mut x: RnsPoly<Eval>) -> RnsPoly<Eval> {
    let layout = x.layout();
    assert!(layout.p == 0 && layout.q >= 2, "rescale needs two ciphertext limbs");
    let last = layout.q - 1;
    let n = ctx.n();
    let mut top = x.limb(last).to_vec();
    ctx.global_table(last).inverse(&mut top);
    let q_last = ctx.q(last);
    let centered: Vec<i64> = top.iter().map(|&c| q_last.centered(c)).collect();
    x.truncate_q(last);
    x.words_mut().par_chunks_exact_mut(n).enumerate().for_each(|(i, a)| {
        let m = ctx.q(i);
        let table = ctx.global_table(i);
        let mut t: Vec<u32> = centered.iter().map(|&c| m.reduce_i64(c)).collect();
        table.forward(&mut t);
        let inv = m.inv(q_last.value() % m.value());
        let inv_shoup = m.shoup(inv);
        for (a, &t) in a.iter_mut().zip(&t) {
            *a = m.mul_shoup(m.sub(*a, t), inv, inv_shoup);
        }
    });
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::primes::ntt_prime_near;
    use crate::ring::sampler::Sampler;
    use num_bigint::{BigInt, BigUint};
    use rand::Rng;

    fn context(n: usize, q: usize, p: usize) -> RingContext {
        let mut primes = Vec::new();
        for _ in 0..q + p {
            let next = ntt_prime_near(2f64.powi(30), 2 * n as u64, &primes).unwrap();
            primes.push(next);
        }
        RingContext::new(n, &primes[..q], &primes[q..]).unwrap()
    }

    /// The centred integer of each coefficient, by CRT over all limbs.
    fn crt(ctx: &RingContext, x: &RnsPoly<Coeff>) -> Vec<BigInt> {
        let layout = x.layout();
        let moduli = ctx.moduli(layout);
        let big_q: BigUint = moduli.iter().map(|m| BigUint::from(m.value())).product();
        (0..ctx.n())
            .map(|k| {
                let mut v = BigUint::from(0u32);
                for (i, m) in moduli.iter().enumerate() {
                    let qi = BigUint::from(m.value());
                    let qhat = &big_q / &qi;
                    let inv = qhat.modpow(&(&qi - 2u32), &qi);
                    v += BigUint::from(x.limb(i)[k]) * qhat * inv;
                }
                let v = BigInt::from(v % &big_q);
                let half = BigInt::from(big_q.clone()) / 2;
                if v > half {
                    v - BigInt::from(big_q.clone())
                } else {
                    v
                }
            })
            .collect()
    }

    #[test]
    fn basis_extension_is_exact_up_to_a_multiple_of_the_source_modulus() {
        let ctx = context(1 << 10, 5, 2);
        let src = LimbLayout::q_only(3);
        let x = Sampler::from_seed(crate::test_seed::rng().gen())
            .uniform(&ctx, src)
            .into_coeff(&ctx);
        let conv = BasisConverter::new(&ctx, vec![0, 1, 2]);
        let n = ctx.n();
        let mut out = vec![vec![0u32; n]; 4];
        {
            let inputs: Vec<&[u32]> = x.limbs().collect();
            let mut outputs: Vec<(usize, &mut [u32])> = [3usize, 4, 5, 6]
                .into_iter()
                .zip(out.iter_mut().map(|v| v.as_mut_slice()))
                .collect();
            conv.convert(&ctx, &inputs, &mut outputs);
        }
        let big_qs: BigUint = (0..3).map(|i| BigUint::from(ctx.q(i).value())).product();
        #[allow(clippy::needless_range_loop)] // k indexes several arrays
        for k in 0..n {
            let mut value = BigUint::from(0u32);
            let ints: Vec<BigUint> = (0..3).map(|i| BigUint::from(x.limb(i)[k])).collect();
            // Exact CRT value of the source residues.
            for (i, int) in ints.iter().enumerate() {
                let qi = BigUint::from(ctx.q(i).value());
                let qhat = &big_qs / &qi;
                value += int * &qhat * qhat.modpow(&(&qi - 2u32), &qi);
            }
            let value = value % &big_qs;
            for (j, t) in [3usize, 4, 5, 6].into_iter().enumerate() {
                let m = BigUint::from(ctx.global_table(t).modulus().value());
                let got = BigUint::from(out[j][k]);
                let ok = (0u32..3).any(|u| (&value + &big_qs * u) % &m == got);
                assert!(ok, "coefficient {k}, target {t}");
            }
        }
    }

    #[test]
    fn rescale_divides_and_rounds() {
        let ctx = context(1 << 10, 4, 0);
        let layout = LimbLayout::q_only(4);
        let x = Sampler::from_seed(crate::test_seed::rng().gen()).uniform(&ctx, layout);
        let before = crt(&ctx, &x.clone().into_coeff(&ctx));
        let after = crt(&ctx, &rescale(&ctx, x).into_coeff(&ctx));
        let q_last = BigInt::from(ctx.q(3).value());
        let half = BigInt::from(ctx.q(3).value() / 2);
        for (b, a) in before.iter().zip(&after) {
            // Rounded division: |a * q - b| <= q / 2 (the centred residue).
            let residual = a * &q_last - b;
            assert!(residual.magnitude() <= half.magnitude(), "{b} -> {a}");
        }
    }

    #[test]
    fn mod_down_divides_by_p() {
        let ctx = context(1 << 10, 3, 2);
        let full = LimbLayout { q: 3, p: 2 };
        let x = Sampler::from_seed(crate::test_seed::rng().gen()).uniform(&ctx, full);
        let before = crt(&ctx, &x.clone().into_coeff(&ctx));
        let after = crt(&ctx, &ModDown::new(&ctx).apply(&ctx, x).into_coeff(&ctx));
        let big_p = BigInt::from(ctx.p(0).value()) * BigInt::from(ctx.p(1).value());
        let big_q: BigInt = (0..3).map(|i| BigInt::from(ctx.q(i).value())).product();
        for (b, a) in before.iter().zip(&after) {
            // a = (b - e) / P mod Q for a small e; check |a*P - b mod Q| is small.
            let half_q: BigInt = &big_q / BigInt::from(2);
            let mut d: BigInt = (a * &big_p - b) % &big_q;
            if d > half_q {
                d -= &big_q;
            }
            if d < -half_q.clone() {
                d += &big_q;
            }
            // Rounded division: |a*P - b| <= P/2, plus P for a rare tie miss.
            let bound: BigInt = &big_p * BigInt::from(3) / BigInt::from(2);
            assert!(d.magnitude() <= bound.magnitude(), "residual {d}");
        }
    }
}
