//! Reconstruction of the centred integer behind each RNS coefficient, as an
//! `f64`, through a balanced mixed-radix (Garner) representation.

use super::context::RingContext;
use super::poly::{Coeff, RnsPoly};
use rayon::prelude::*;

/// Coefficients per rayon task.
const CHUNK: usize = 1024;

impl RnsPoly<Coeff> {
    /// The centred value in `(-Q/2, Q/2]` of every coefficient (`Q` the product
    /// of the limbs' primes), rounded to `f64`.
    ///
    /// Balanced mixed-radix digits `a_i` in `(-q_i/2, q_i/2]` with
    /// `x = sum a_i * q_0 ... q_{i-1}` span exactly the centred range, and
    /// Horner's rule from the top digit keeps small values exact.
    ///
    /// Fast path: decrypted values are usually far below `q_0 q_1 / 2`. The
    /// two-limb value `v` is tried first and kept when it agrees with every
    /// other residue (then `v = x` by CRT uniqueness); only coefficients that
    /// disagree pay for the full O(limbs^2) reconstruction.
    pub fn to_centered_f64(&self, ctx: &RingContext) -> Vec<f64> {
        let layout = self.layout();
        let moduli = ctx.moduli(layout);
        let limbs = moduli.len();
        // inv[i][j] = q_j^-1 mod q_i for j < i, with Shoup quotients.
        let inv: Vec<Vec<(u32, u32)>> = (0..limbs)
            .map(|i| {
                let m = &moduli[i];
                (0..i)
                    .map(|j| {
                        let v = m.inv(moduli[j].value() % m.value());
                        (v, m.shoup(v))
                    })
                    .collect()
            })
            .collect();
        let n = self.n();
        let mut out = vec![0f64; n];
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(chunk, values)| {
            let mut digits = vec![0i64; limbs];
            for (offset, value) in values.iter_mut().enumerate() {
                let k = chunk * CHUNK + offset;
                if limbs > 2 {
                    let (m0, m1) = (&moduli[0], &moduli[1]);
                    let d0 = m0.centered(self.limb(0)[k]);
                    let (w, ws) = inv[1][0];
                    let d1 = m1.centered(m1.mul_shoup(m1.sub(self.limb(1)[k], m1.reduce_i64(d0)), w, ws));
                    let v = d0 + d1 * i64::from(m0.value());
                    if (2..limbs).all(|i| moduli[i].reduce_i64(v) == self.limb(i)[k]) {
                        *value = v as f64;
                        continue;
                    }
                }
                for i in 0..limbs {
                    let m = &moduli[i];
                    let mut t = self.limb(i)[k];
                    for j in 0..i {
                        let d = m.reduce_i64(digits[j]);
                        let (w, ws) = inv[i][j];
                        t = m.mul_shoup(m.sub(t, d), w, ws);
                    }
                    digits[i] = m.centered(t);
                }
                let mut v = 0f64;
                for i in (0..limbs).rev() {
                    v = v * f64::from(moduli[i].value()) + digits[i] as f64;
                }
                *value = v;
            }
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::math::primes::ntt_prime_near;
    use crate::ring::{LimbLayout, RingContext, RnsPoly};
    use rand::Rng;

    #[test]
    fn recovers_signed_values_of_every_size() {
        let n = 1 << 10;
        let mut primes = Vec::new();
        for _ in 0..5 {
            primes.push(ntt_prime_near(2f64.powi(30), 2 * n as u64, &primes).unwrap());
        }
        let ctx = RingContext::new(n, &primes, &[]).unwrap();
        let mut rng = crate::test_seed::rng();
        let values: Vec<i64> = (0..n)
            .map(|k| {
                let bits = 1 + (k % 62) as u32;
                rng.gen_range(-(1i64 << (bits - 1))..(1i64 << (bits - 1)))
            })
            .collect();
        for q in 1..=5 {
            let poly = RnsPoly::<crate::ring::Coeff>::from_signed(&ctx, LimbLayout::q_only(q), &values);
            let back = poly.to_centered_f64(&ctx);
            let limit = (0..q).map(|i| f64::from(primes[i])).product::<f64>() / 2.0;
            for (v, b) in values.iter().zip(&back) {
                let v = *v as f64;
                if v.abs() < limit {
                    // Exact below 2^53, correctly rounded to a few ulps above.
                    assert!((v - b).abs() <= v.abs() * 2f64.powi(-50), "q = {q}: {v} vs {b}");
                }
            }
        }
    }
}
