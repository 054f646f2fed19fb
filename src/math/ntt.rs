//! Negacyclic number-theoretic transform over `Z_q[X]/(X^N + 1)`.
//!
//! Forward: Cooley-Tukey with the powers of a primitive 2N-th root `psi` in
//! bit-reversed order, natural-order input, bit-reversed output: output `i`
//! is the evaluation at `psi^(2 * bitrev(i) + 1)`. Inverse: Gentleman-Sande,
//! bit-reversed input, natural-order output, scaled by `N^-1`. All values are
//! canonical in and out; each butterfly reduces fully, which keeps every
//! intermediate in a `u32` for primes up to 2^31.

use super::modulus::{mul_shoup_lazy, Modulus};
use super::primes::primitive_root_of_unity;

/// Precomputed twiddles for one prime and one ring degree.
///
/// Invariant: `n` is a power of two in `2..=2^17`, `q = 1 mod 2n`, and the
/// tables hold `psi^bitrev(i)` (and inverses) with their Shoup quotients.
#[derive(Clone, Debug)]
pub struct NttTable {
    modulus: Modulus,
    n: usize,
    psi: u32,
    psi_rev: Vec<u32>,
    psi_rev_shoup: Vec<u32>,
    psi_inv_rev: Vec<u32>,
    psi_inv_rev_shoup: Vec<u32>,
    n_inv: u32,
    n_inv_shoup: u32,
    /// `n_inv * psi_inv_rev[1]`, the fused factor of the last inverse stage.
    n_inv_psi: u32,
    n_inv_psi_shoup: u32,
}

/// Reverses the low `bits` bits of `i`.
#[inline]
pub fn bit_reverse(i: usize, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        i.reverse_bits() >> (usize::BITS - bits)
    }
}

impl NttTable {
    /// Tables for `q` and degree `n`; `None` if `q` is not `1 mod 2n` or `n`
    /// is not a power of two of at least 2.
    pub fn new(q: u32, n: usize) -> Option<Self> {
        if !n.is_power_of_two() || n < 2 {
            return None;
        }
        let modulus = Modulus::new(q);
        let psi = primitive_root_of_unity(q, 2 * n as u64)?;
        let psi_inv = modulus.inv(psi);
        let bits = n.trailing_zeros();
        let mut psi_rev = vec![0u32; n];
        let mut psi_inv_rev = vec![0u32; n];
        let (mut p, mut pi) = (1u32, 1u32);
        for i in 0..n {
            let r = bit_reverse(i, bits);
            psi_rev[r] = p;
            psi_inv_rev[r] = pi;
            p = modulus.mul(p, psi);
            pi = modulus.mul(pi, psi_inv);
        }
        let shoup = |v: &[u32]| v.iter().map(|&w| modulus.shoup(w)).collect::<Vec<_>>();
        let n_inv = modulus.inv(n as u32 % q);
        let n_inv_psi = modulus.mul(n_inv, psi_inv_rev[1]);
        Some(Self {
            modulus,
            n,
            psi,
            psi_rev_shoup: shoup(&psi_rev),
            psi_inv_rev_shoup: shoup(&psi_inv_rev),
            psi_rev,
            psi_inv_rev,
            n_inv,
            n_inv_shoup: modulus.shoup(n_inv),
            n_inv_psi,
            n_inv_psi_shoup: modulus.shoup(n_inv_psi),
        })
    }

    /// The prime.
    pub fn modulus(&self) -> &Modulus {
        &self.modulus
    }

    /// The ring degree.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The primitive 2N-th root of unity the tables are built on.
    pub fn psi(&self) -> u32 {
        self.psi
    }

    /// Forward twiddles `psi^bitrev(i)` (entry `m + i` is used by stage `m`).
    pub fn psi_rev(&self) -> &[u32] {
        &self.psi_rev
    }

    /// Inverse twiddles `psi^-bitrev(i)`.
    pub fn psi_inv_rev(&self) -> &[u32] {
        &self.psi_inv_rev
    }

    /// `N^-1 mod q`.
    pub fn n_inv(&self) -> u32 {
        self.n_inv
    }

    /// In-place forward transform of one limb (`a.len() == n`, canonical).
    pub fn forward(&self, a: &mut [u32]) {
        assert_eq!(a.len(), self.n);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { forward_avx2(self, a) };
            return;
        }
        forward_body(self, a);
    }

    /// In-place inverse transform of one limb (`a.len() == n`, canonical).
    pub fn inverse(&self, a: &mut [u32]) {
        assert_eq!(a.len(), self.n);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { inverse_avx2(self, a) };
            return;
        }
        inverse_body(self, a);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn forward_avx2(t: &NttTable, a: &mut [u32]) {
    forward_body(t, a)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn inverse_avx2(t: &NttTable, a: &mut [u32]) {
    inverse_body(t, a)
}

#[inline(always)]
fn reduce_once(x: u32, q: u32) -> u32 {
    x.min(x.wrapping_sub(q))
}

#[inline(always)]
fn forward_body(t: &NttTable, a: &mut [u32]) {
    let q = t.modulus.value();
    let n = t.n;
    let mut half = n;
    let mut m = 1;
    while m < n {
        half >>= 1;
        let (tw, tws) = (&t.psi_rev[m..2 * m], &t.psi_rev_shoup[m..2 * m]);
        // Short strides get a block size known at compile time, so the
        // butterflies of a block unroll into vector lanes.
        match half {
            1 => forward_stage_fixed::<2>(a, tw, tws, q),
            2 => forward_stage_fixed::<4>(a, tw, tws, q),
            4 => forward_stage_fixed::<8>(a, tw, tws, q),
            8 => forward_stage_fixed::<16>(a, tw, tws, q),
            _ => {
                for ((block, &w), &ws) in a.chunks_exact_mut(2 * half).zip(tw).zip(tws) {
                    let (x, y) = block.split_at_mut(half);
                    for (x, y) in x.iter_mut().zip(y.iter_mut()) {
                        forward_butterfly(x, y, w, ws, q);
                    }
                }
            }
        }
        m <<= 1;
    }
}

/// One Cooley-Tukey butterfly on canonical values.
#[inline(always)]
fn forward_butterfly(x: &mut u32, y: &mut u32, w: u32, ws: u32, q: u32) {
    let v = reduce_once(mul_shoup_lazy(*y, w, ws, q), q);
    let u = *x;
    *x = reduce_once(u + v, q);
    let d = u.wrapping_sub(v);
    *y = d.min(d.wrapping_add(q));
}

/// A forward stage whose blocks hold `B` words (pairs `B/2` apart).
#[inline(always)]
fn forward_stage_fixed<const B: usize>(a: &mut [u32], tw: &[u32], tws: &[u32], q: u32) {
    for ((block, &w), &ws) in a.chunks_exact_mut(B).zip(tw).zip(tws) {
        let block: &mut [u32; B] = block.try_into().expect("chunks_exact gives B words");
        let (x, y) = block.split_at_mut(B / 2);
        for (x, y) in x.iter_mut().zip(y.iter_mut()) {
            forward_butterfly(x, y, w, ws, q);
        }
    }
}

#[inline(always)]
fn inverse_body(t: &NttTable, a: &mut [u32]) {
    let q = t.modulus.value();
    let n = t.n;
    let mut half = 1;
    let mut m = n;
    while m > 2 {
        let h = m >> 1;
        for (i, block) in a.chunks_exact_mut(2 * half).enumerate() {
            let w = t.psi_inv_rev[h + i];
            let ws = t.psi_inv_rev_shoup[h + i];
            let (x, y) = block.split_at_mut(half);
            for (x, y) in x.iter_mut().zip(y.iter_mut()) {
                let (u, v) = (*x, *y);
                *x = reduce_once(u + v, q);
                let d = u.wrapping_sub(v);
                let d = d.min(d.wrapping_add(q));
                *y = reduce_once(mul_shoup_lazy(d, w, ws, q), q);
            }
        }
        half <<= 1;
        m = h;
    }
    // Last stage fused with the scaling by N^-1.
    let (x, y) = a.split_at_mut(half);
    let (ni, nis, nw, nws) = (t.n_inv, t.n_inv_shoup, t.n_inv_psi, t.n_inv_psi_shoup);
    for (x, y) in x.iter_mut().zip(y.iter_mut()) {
        let (u, v) = (*x, *y);
        let s = reduce_once(u + v, q);
        let d = u.wrapping_sub(v);
        let d = d.min(d.wrapping_add(q));
        *x = reduce_once(mul_shoup_lazy(s, ni, nis, q), q);
        *y = reduce_once(mul_shoup_lazy(d, nw, nws, q), q);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::primes::ntt_prime_near;
    use rand::Rng;
    use rand_chacha::ChaCha20Rng;

    fn random_poly(rng: &mut ChaCha20Rng, n: usize, q: u32) -> Vec<u32> {
        (0..n).map(|_| rng.gen_range(0..q)).collect()
    }

    /// Schoolbook multiplication in Z_q[X]/(X^n + 1) with u128 accumulators.
    fn naive_negacyclic(a: &[u32], b: &[u32], q: u32) -> Vec<u32> {
        let n = a.len();
        let q = u128::from(q);
        let mut acc = vec![0u128; n];
        for (i, &ai) in a.iter().enumerate() {
            for (j, &bj) in b.iter().enumerate() {
                let p = u128::from(ai) * u128::from(bj) % q;
                let k = (i + j) % n;
                acc[k] = if i + j < n {
                    (acc[k] + p) % q
                } else {
                    (acc[k] + q - p) % q
                };
            }
        }
        acc.into_iter().map(|x| x as u32).collect()
    }

    #[test]
    fn multiplication_through_ntt_matches_schoolbook() {
        let mut rng = crate::test_seed::rng();
        for (log_n, bits) in [(4u32, 30), (8, 31), (10, 30), (10, 20)] {
            let n = 1usize << log_n;
            let q = ntt_prime_near(2f64.powi(bits), 2 * n as u64, &[]).unwrap();
            let t = NttTable::new(q, n).unwrap();
            let m = t.modulus();
            let (a, b) = (random_poly(&mut rng, n, q), random_poly(&mut rng, n, q));
            let expected = naive_negacyclic(&a, &b, q);
            let (mut fa, mut fb) = (a.clone(), b.clone());
            t.forward(&mut fa);
            t.forward(&mut fb);
            let mut prod: Vec<u32> = fa.iter().zip(&fb).map(|(&x, &y)| m.mul(x, y)).collect();
            t.inverse(&mut prod);
            assert_eq!(prod, expected, "log_n = {log_n}, q = {q}");
        }
    }

    #[test]
    fn forward_output_is_evaluation_at_bit_reversed_odd_powers() {
        let mut rng = crate::test_seed::rng();
        let n = 64;
        let q = ntt_prime_near(2f64.powi(30), 2 * n as u64, &[]).unwrap();
        let t = NttTable::new(q, n).unwrap();
        let m = t.modulus();
        let a = random_poly(&mut rng, n, q);
        let mut fa = a.clone();
        t.forward(&mut fa);
        for (i, &value) in fa.iter().enumerate() {
            let point = m.pow(t.psi(), 2 * bit_reverse(i, 6) as u64 + 1);
            let eval = a.iter().rev().fold(0, |acc, &c| m.add(m.mul(acc, point), c));
            assert_eq!(value, eval, "index {i}");
        }
    }

    #[test]
    fn round_trip_at_every_supported_degree() {
        let mut rng = crate::test_seed::rng();
        for log_n in 10..=17 {
            let n = 1usize << log_n;
            let q = ntt_prime_near(2f64.powi(31), 2 * n as u64, &[]).unwrap();
            let t = NttTable::new(q, n).unwrap();
            let a = random_poly(&mut rng, n, q);
            let mut b = a.clone();
            t.forward(&mut b);
            assert_ne!(a, b);
            t.inverse(&mut b);
            assert_eq!(a, b, "log_n = {log_n}");
        }
    }
}
