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

    /// A fresh uniform polynomial of `layout` (from a seed this sampler
    /// draws), in evaluation form.
    pub fn uniform(&mut self, ctx: &RingContext, layout: LimbLayout) -> RnsPoly<Eval> {
        uniform(&self.seed(), ctx, layout)
    }
}

/// The uniform polynomial of `layout` expanded from `seed`, in evaluation
/// form (the NTT of a uniform polynomial is uniform).
///
/// Invariant: the limb of global prime index `k` ([`RingContext::global_index`])
/// is [`uniform_limb`]`(seed, k, ..)` whatever the layout, so a key truncated
/// to a lower level holds exactly the limbs of the full one, and one limb can
/// be re-expanded alone.
pub fn uniform(seed: &Seed, ctx: &RingContext, layout: LimbLayout) -> RnsPoly<Eval> {
    use rayon::prelude::*;
    let mut poly = RnsPoly::<Eval>::zero(ctx.n(), layout);
    poly.words_mut()
        .par_chunks_exact_mut(ctx.n())
        .enumerate()
        .for_each(|(i, limb)| uniform_limb(seed, ctx.global_index(layout, i), ctx.modulus(layout, i).value(), limb));
    poly
}

/// Fills `out` with values uniform below `prime` from ChaCha20 stream
/// `prime_index` of `seed` (rejection sampling, no modulo bias).
pub fn uniform_limb(seed: &Seed, prime_index: usize, prime: u32, out: &mut [u32]) {
    let mut rng = ChaCha20Rng::from_seed(*seed);
    rng.set_stream(prime_index as u64);
    let mut sampler = Sampler { rng };
    for x in out {
        *x = sampler.below(prime);
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
    use rand::Rng;

    #[test]
    fn gaussian_has_the_right_moments_and_tail() {
        let mut s = Sampler::from_seed(crate::test_seed::rng().gen());
        let xs = s.gaussian(1 << 16);
        let mean = xs.iter().sum::<i64>() as f64 / xs.len() as f64;
        let var = xs.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.1, "mean {mean}");
        assert!((var.sqrt() - ERROR_SIGMA).abs() < 0.1, "sigma {}", var.sqrt());
        assert!(xs.iter().all(|x| x.abs() <= 19));
    }

    #[test]
    fn ternary_is_balanced() {
        let mut s = Sampler::from_seed(crate::test_seed::rng().gen());
        let xs = s.ternary(30_000);
        for v in [-1, 0, 1] {
            let count = xs.iter().filter(|&&x| x == v).count();
            assert!((9_000..11_000).contains(&count), "{v}: {count}");
        }
    }

    #[test]
    fn uniform_limbs_do_not_depend_on_the_layout() {
        let n = 1 << 10;
        let mut primes: Vec<u32> = Vec::new();
        for _ in 0..5 {
            primes.push(crate::math::primes::ntt_prime_near(2f64.powi(30), 2 * n as u64, &primes).unwrap());
        }
        let ctx = RingContext::new(n, &primes[..3], &primes[3..]).unwrap();
        let seed: Seed = crate::test_seed::rng().gen();
        let full = uniform(&seed, &ctx, ctx.full_layout());
        let low = LimbLayout { q: 2, p: ctx.p_count() };
        let truncated = uniform(&seed, &ctx, low);
        for i in 0..low.len() {
            let k = ctx.global_index(low, i);
            assert_eq!(truncated.limb(i), full.limb(k), "limb {i} (prime {k})");
            let mut alone = vec![0u32; ctx.n()];
            uniform_limb(&seed, k, ctx.modulus(low, i).value(), &mut alone);
            assert_eq!(alone, truncated.limb(i));
        }
        // Values are below their prime and spread over it: the mean of the
        // first limb is near q/2 (n = 1024 samples, sd about q/111; the
        // bound is 5 sd, so a correct sampler fails it about once in two
        // million runs, where 3.3 sd failed one fresh-clone CI run).
        let q = ctx.q(0).value() as f64;
        assert!(full.limb(0).iter().all(|&x| f64::from(x) < q));
        let mean = full.limb(0).iter().map(|&x| f64::from(x)).sum::<f64>() / ctx.n() as f64;
        assert!((mean / q - 0.5).abs() < 0.045, "mean {mean} of q {q}");
        assert_ne!(full.limb(0), full.limb(1), "streams differ per prime");
    }

    #[test]
    fn seeded_streams_repeat() {
        let seed: Seed = crate::test_seed::rng().gen();
        let (mut a, mut b) = (Sampler::from_seed(seed), Sampler::from_seed(seed));
        assert_eq!(a.ternary(64), b.ternary(64));
    }
}
