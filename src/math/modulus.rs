//! A word-sized prime modulus `q < 2^31` with the precomputed constants for
//! Barrett reduction of products and Shoup multiplication by constants.

/// Largest modulus accepted: every residue and every sum of two residues fits
/// in a `u32`, which is what the WGSL kernels rely on.
pub const MAX_MODULUS: u32 = 1 << 31;

/// Products of two residues summed in a `u64` before one reduction: each is
/// below 2^62 (residues below [`MAX_MODULUS`]), so four never overflow.
pub const LAZY_PRODUCTS: usize = 4;

/// A prime modulus below 2^31 with its reduction constants.
///
/// Invariant: `2 <= q < 2^31`, `barrett == floor(2^64 / q)`,
/// `two_32 == 2^32 mod q` with `two_32_shoup == self.shoup(two_32)`,
/// `one_shoup == floor(2^32 / q)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Modulus {
    q: u32,
    barrett: u64,
    /// `2^64 mod q`, for [`Self::reduce_i128`].
    two_64: u32,
    two_32: u32,
    two_32_shoup: u32,
    one_shoup: u32,
}

impl Modulus {
    /// Builds the constants for `q`.
    ///
    /// # Panics
    /// If `q < 2` or `q >= 2^31` (moduli come from the prime search, never from
    /// user input directly).
    pub fn new(q: u32) -> Self {
        assert!((2..MAX_MODULUS).contains(&q), "modulus {q} out of range");
        let barrett = (u128::from(u64::MAX) + 1) / u128::from(q);
        let two_32 = ((1u64 << 32) % u64::from(q)) as u32;
        Self {
            q,
            barrett: barrett as u64,
            two_64: ((u128::from(u64::MAX) + 1) % u128::from(q)) as u32,
            two_32,
            two_32_shoup: ((u64::from(two_32) << 32) / u64::from(q)) as u32,
            one_shoup: ((1u64 << 32) / u64::from(q)) as u32,
        }
    }

    /// The modulus itself.
    #[inline(always)]
    pub fn value(&self) -> u32 {
        self.q
    }

    /// `(a + b) mod q` for canonical `a`, `b`.
    #[inline(always)]
    pub fn add(&self, a: u32, b: u32) -> u32 {
        debug_assert!(a < self.q && b < self.q);
        let s = a + b;
        s.min(s.wrapping_sub(self.q))
    }

    /// `(a - b) mod q` for canonical `a`, `b`.
    #[inline(always)]
    pub fn sub(&self, a: u32, b: u32) -> u32 {
        debug_assert!(a < self.q && b < self.q);
        let d = a.wrapping_sub(b);
        d.min(d.wrapping_add(self.q))
    }

    /// `-a mod q` for canonical `a`.
    #[inline(always)]
    pub fn neg(&self, a: u32) -> u32 {
        debug_assert!(a < self.q);
        if a == 0 {
            0
        } else {
            self.q - a
        }
    }

    /// Barrett reduction of any 64-bit value to `[0, q)`.
    #[inline(always)]
    pub fn reduce_u64(&self, x: u64) -> u32 {
        let quotient = ((u128::from(x) * u128::from(self.barrett)) >> 64) as u64;
        let r = x.wrapping_sub(quotient.wrapping_mul(u64::from(self.q)));
        // The estimate is low by at most one multiple of q.
        let r = r as u32;
        r.min(r.wrapping_sub(self.q))
    }

    /// [`Self::reduce_u64`] from 32-bit products only: `x = hi 2^32 + lo`
    /// becomes `hi (2^32 mod q) + lo`, two Shoup multiplications. The same
    /// residue, but a loop over a slice of sums vectorises (x86 has no
    /// vector 64x64 -> 128-bit product for Barrett's quotient), which is
    /// what the key-switching inner product and the basis conversion spend
    /// their time on.
    #[inline(always)]
    pub fn reduce_u64_lanes(&self, x: u64) -> u32 {
        let high = mul_shoup_lazy((x >> 32) as u32, self.two_32, self.two_32_shoup, self.q);
        let low = mul_shoup_lazy(x as u32, 1, self.one_shoup, self.q);
        // Each lazy product is below 2q < 2^32; their sum below 4q < 2^33.
        let sum = u64::from(high) + u64::from(low);
        let sum = sum.min(sum.wrapping_sub(2 * u64::from(self.q))) as u32;
        sum.min(sum.wrapping_sub(self.q))
    }

    /// `a * b mod q` for canonical `a`, `b`.
    #[inline(always)]
    pub fn mul(&self, a: u32, b: u32) -> u32 {
        self.reduce_u64(u64::from(a) * u64::from(b))
    }

    /// Reduces a signed value to `[0, q)`.
    ///
    /// Branch-free: encoded plaintexts have coefficients of random sign, and
    /// a branch on the sign mispredicted half the time (it was a fifth of
    /// the encrypted ResNet20's profile).
    #[inline(always)]
    pub fn reduce_i64(&self, x: i64) -> u32 {
        self.signed((x >> 63) as u32, self.reduce_u64(x.unsigned_abs()))
    }

    /// `r` for a sign mask of 0, `-r mod q` for all ones, without a branch.
    #[inline(always)]
    fn signed(&self, negative: u32, r: u32) -> u32 {
        // q - r is in 1..=q; the min maps q (r = 0) to 0.
        let negated = self.q - r;
        let negated = negated.min(negated.wrapping_sub(self.q));
        (negated & negative) | (r & !negative)
    }

    /// Reduces a signed 128-bit value to `[0, q)` (coefficients of
    /// plaintexts encoded at a scale beyond 2^62).
    #[inline]
    pub fn reduce_i128(&self, x: i128) -> u32 {
        let magnitude = x.unsigned_abs();
        let high = self.reduce_u64((magnitude >> 64) as u64);
        let r = self.add(self.mul(high, self.two_64), self.reduce_u64(magnitude as u64));
        self.signed((x >> 127) as u32, r)
    }

    /// The centred representative of `a` in `(-q/2, q/2]`.
    #[inline(always)]
    pub fn centered(&self, a: u32) -> i64 {
        if a > self.q / 2 {
            i64::from(a) - i64::from(self.q)
        } else {
            i64::from(a)
        }
    }

    /// `a^e mod q`.
    pub fn pow(&self, mut a: u32, mut e: u64) -> u32 {
        let mut r = 1 % self.q;
        while e > 0 {
            if e & 1 == 1 {
                r = self.mul(r, a);
            }
            a = self.mul(a, a);
            e >>= 1;
        }
        r
    }

    /// Multiplicative inverse of a non-zero canonical `a` (q is prime).
    pub fn inv(&self, a: u32) -> u32 {
        debug_assert!(a != 0);
        self.pow(a, u64::from(self.q) - 2)
    }

    /// Shoup's precomputed quotient `floor(w * 2^32 / q)` for a constant `w < q`.
    #[inline(always)]
    pub fn shoup(&self, w: u32) -> u32 {
        debug_assert!(w < self.q);
        ((u64::from(w) << 32) / u64::from(self.q)) as u32
    }

    /// `a * w mod q` with `w_shoup = self.shoup(w)`; `a` may be any `u32`.
    #[inline(always)]
    pub fn mul_shoup(&self, a: u32, w: u32, w_shoup: u32) -> u32 {
        let r = mul_shoup_lazy(a, w, w_shoup, self.q);
        r.min(r.wrapping_sub(self.q))
    }
}

/// Shoup multiplication without the final correction: the result is in
/// `[0, 2q)`. Free function so that vectorised loops can inline it with the
/// modulus held in a register.
#[inline(always)]
pub fn mul_shoup_lazy(a: u32, w: u32, w_shoup: u32, q: u32) -> u32 {
    let quotient = ((u64::from(a) * u64::from(w_shoup)) >> 32) as u32;
    a.wrapping_mul(w).wrapping_sub(quotient.wrapping_mul(q))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PRIMES: [u32; 4] = [12289, 1_073_479_681, 2_147_352_577, 998_244_353];

    proptest! {
        #[test]
        fn arithmetic_matches_u128(qi in 0usize..4, a in any::<u32>(), b in any::<u32>(), x in any::<u64>(), s in any::<i64>(), w in any::<i128>()) {
            let q = PRIMES[qi];
            let m = Modulus::new(q);
            let (a, b) = (a % q, b % q);
            let (q128, a128, b128) = (u128::from(q), u128::from(a), u128::from(b));
            prop_assert_eq!(u128::from(m.add(a, b)), (a128 + b128) % q128);
            prop_assert_eq!(u128::from(m.sub(a, b)), (a128 + q128 - b128) % q128);
            prop_assert_eq!(u128::from(m.mul(a, b)), a128 * b128 % q128);
            prop_assert_eq!(u128::from(m.reduce_u64(x)), u128::from(x) % q128);
            prop_assert_eq!(u128::from(m.reduce_u64_lanes(x)), u128::from(x) % q128);
            prop_assert_eq!(i128::from(m.reduce_i64(s)), i128::from(s).rem_euclid(i128::from(q)));
            prop_assert_eq!(i128::from(m.reduce_i128(w)), w.rem_euclid(i128::from(q)));
            prop_assert_eq!(u128::from(m.mul_shoup(x as u32, a, m.shoup(a))), u128::from(x as u32) * a128 % q128);
            if a != 0 {
                prop_assert_eq!(m.mul(a, m.inv(a)), 1);
            }
        }
    }

    #[test]
    fn lane_reduction_at_the_edges() {
        for q in PRIMES {
            let m = Modulus::new(q);
            let q64 = u64::from(q);
            for x in [
                0,
                1,
                q64 - 1,
                q64,
                u64::from(u32::MAX),
                1 << 32,
                u64::MAX,
                u64::MAX - 1,
                (u64::MAX / q64) * q64,
                (1 << 62) - 1,
            ] {
                assert_eq!(u64::from(m.reduce_u64_lanes(x)), x % q64, "q = {q}, x = {x}");
            }
        }
    }

    /// The edges a random draw almost never hits: multiples of `q` of
    /// either sign (where the branch-free negation must give 0), +-1 and the
    /// extremes of `i64` and `i128`.
    #[test]
    fn signed_reduction_at_the_edges() {
        for q in PRIMES {
            let m = Modulus::new(q);
            let qi = i64::from(q);
            for s in [
                0,
                1,
                -1,
                qi,
                -qi,
                7 * qi,
                -7 * qi,
                qi - 1,
                1 - qi,
                i64::MAX,
                i64::MIN,
                i64::MIN + 1,
            ] {
                assert_eq!(
                    i128::from(m.reduce_i64(s)),
                    i128::from(s).rem_euclid(i128::from(q)),
                    "q = {q}, s = {s}"
                );
                let wide = i128::from(s) << 64 | i128::from(s.unsigned_abs());
                assert_eq!(
                    i128::from(m.reduce_i128(wide)),
                    wide.rem_euclid(i128::from(q)),
                    "q = {q}, w = {wide}"
                );
            }
            assert_eq!(m.reduce_i128(i128::MIN), i128::MIN.rem_euclid(i128::from(q)) as u32);
        }
    }

    #[test]
    fn centered_is_symmetric() {
        let m = Modulus::new(12289);
        assert_eq!(m.centered(0), 0);
        assert_eq!(m.centered(6144), 6144);
        assert_eq!(m.centered(6145), 6145 - 12289);
        assert_eq!(m.centered(12288), -1);
    }
}
