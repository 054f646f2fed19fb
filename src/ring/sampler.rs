//! Randomness: a ChaCha20 CSPRNG seeded from the operating system (or from a
//! stored seed, to re-expand the uniform halves of keys), ternary secrets,
//! discrete Gaussian errors and uniform polynomials.

use super::context::{LimbLayout, RingContext};
use super::poly::{Eval, RnsPoly};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Standard deviation of the error distribution (the HE standard's 3.2).
pub const ERROR_SIGMA: f64 = 3.2;
/// Errors are cut at this many standard deviations.
const ERROR_TAIL_SIGMAS: f64 = 6.0;

/// A seed from which a uniform polynomial is re-expanded.
pub type Seed = [u8; 32];

/// A CSPRNG. `from_os` for anything secret; `from_seed` only to re-expand
/// public uniform polynomials.
pub struct Sampler {
    rng: ChaCha20Rng,
}

impl Sampler {
    /// Seeded from the operating system's entropy source.
    pub fn from_os() -> Self {
        Self {
            rng: ChaCha20Rng::from_entropy(),
        }
    }

    /// Deterministic stream from a public seed.
    pub fn from_seed(seed: Seed) -> Self {
        Self {
            rng: ChaCha20Rng::from_seed(seed),
        }
    }

    /// A fresh 32-byte seed (or key identifier material).
    pub fn seed(&mut self) -> Seed {
        let mut s = [0u8; 32];
        self.rng.fill_bytes(&mut s);
        s
    }

    /// Random bytes.
    pub fn fill_bytes(&mut self, out: &mut [u8]) {
        self.rng.fill_bytes(out);
    }

    /// Uniform value in `[0, bound)` by rejection (no modulo bias).
    fn below(&mut self, bound: u32) -> u32 {
        let zone = u32::MAX - u32::MAX % bound;
        loop {
            let x = self.rng.next_u32();
            if x < zone {
                return x % bound;
            }
        }
    }

    /// `n` coefficients uniform in `{-1, 0, 1}`.
    pub fn ternary(&mut self, n: usize) -> Vec<i64> {
        (0..n).map(|_| i64::from(self.below(3)) - 1).collect()
    }

    /// `n` coefficients from the discrete Gaussian of deviation
    /// [`ERROR_SIGMA`], cut at 6 sigma, by inversion of its 64-bit CDT.
    pub fn gaussian(&mut self, n: usize) -> Vec<i64> {
        let table = gaussian_cdt();
        (0..n)
            .map(|_| {
                let r = self.rng.next_u64();
                let magnitude = table.iter().position(|&c| r < c).unwrap_or(table.len() - 1) as i64;
                if magnitude != 0 && self.rng.next_u32() & 1 == 1 {
                    -magnitude
                } else {
                    magnitude
                }
            })
            .collect()
    }

    /// A polynomial uniform over every limb of `layout`, in evaluation form
    /// (the NTT of a uniform polynomial is uniform).
    pub fn uniform(&mut self, ctx: &RingContext, layout: LimbLayout) -> RnsPoly<Eval> {
        let n = ctx.n();
        let mut poly = RnsPoly::<Eval>::zero(n, layout);
        for i in 0..layout.len() {
            let q = ctx.modulus(layout, i).value();
            for x in poly.limb_mut(i) {
                *x = self.below(q);
            }
        }
        poly
    }
}

/// Cumulative distribution of `|x|` for the cut discrete Gaussian, scaled to
/// 2^64; the last entry is `u64::MAX`.
fn gaussian_cdt() -> &'static [u64] {
    use std::sync::OnceLock;
    static TABLE: OnceLock<Vec<u64>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let bound = (ERROR_SIGMA * ERROR_TAIL_SIGMAS).floor() as i64;
        let weight = |k: i64| {
            let w = (-(k * k) as f64 / (2.0 * ERROR_SIGMA * ERROR_SIGMA)).exp();
            if k == 0 {
                w
            } else {
                2.0 * w
            }
        };
        let total: f64 = (0..=bound).map(weight).sum();
        let mut cumulative = 0.0;
        let mut table: Vec<u64> = (0..=bound)
            .map(|k| {
                cumulative += weight(k) / total;
                (cumulative * 2f64.powi(64)).min(u64::MAX as f64) as u64
            })
            .collect();
        *table.last_mut().expect("non-empty") = u64::MAX;
        table
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_has_the_right_moments_and_tail() {
        let mut s = Sampler::from_os();
        let xs = s.gaussian(1 << 16);
        let mean = xs.iter().sum::<i64>() as f64 / xs.len() as f64;
        let var = xs.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.1, "mean {mean}");
        assert!((var.sqrt() - ERROR_SIGMA).abs() < 0.1, "sigma {}", var.sqrt());
        assert!(xs.iter().all(|x| x.abs() <= 19));
    }

    #[test]
    fn ternary_is_balanced() {
        let mut s = Sampler::from_os();
        let xs = s.ternary(30_000);
        for v in [-1, 0, 1] {
            let count = xs.iter().filter(|&&x| x == v).count();
            assert!((9_000..11_000).contains(&count), "{v}: {count}");
        }
    }

    #[test]
    fn seeded_streams_repeat() {
        let seed = Sampler::from_os().seed();
        let (mut a, mut b) = (Sampler::from_seed(seed), Sampler::from_seed(seed));
        assert_eq!(a.ternary(64), b.ternary(64));
    }
}
