//! The CKKS canonical embedding (f64, CPU only).
//!
//! Slot `j` of a plaintext polynomial `m` is `m(zeta^(5^j))` with
//! `zeta = exp(i*pi/N)`; the conjugate slot sits at `zeta^(-5^j)`. Evaluating
//! at all odd powers `zeta^(2t+1)` is a length-N DFT of `m_k zeta^k`, so both
//! directions are one complex FFT (rustfft) plus a twist, and the slot
//! permutation is read from the rotation group `5^j mod 2N`.

use rustfft::num_complex::Complex64;
use rustfft::{Fft, FftPlanner};
use std::sync::Arc;

/// FFT plans, twist factors and the slot permutation for one ring degree.
///
/// Invariant: `slot_index[j]` is the `t` with `2t+1 = 5^j mod 2N`, and
/// `conj_index[j]` the `t` with `2t+1 = -5^j mod 2N`.
pub struct Embedding {
    n: usize,
    twist: Vec<Complex64>,
    slot_index: Vec<usize>,
    conj_index: Vec<usize>,
    forward: Arc<dyn Fft<f64>>,
    inverse: Arc<dyn Fft<f64>>,
}

impl std::fmt::Debug for Embedding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedding").field("n", &self.n).finish()
    }
}

impl Embedding {
    /// Tables for ring degree `n` (a power of two, at least 4).
    pub fn new(n: usize) -> Self {
        assert!(n.is_power_of_two() && n >= 4);
        let two_n = 2 * n;
        let twist = (0..n)
            .map(|k| Complex64::from_polar(1.0, std::f64::consts::PI * k as f64 / n as f64))
            .collect();
        let mut slot_index = Vec::with_capacity(n / 2);
        let mut conj_index = Vec::with_capacity(n / 2);
        let mut power = 1usize;
        for _ in 0..n / 2 {
            slot_index.push((power - 1) / 2);
            conj_index.push((two_n - power - 1) / 2);
            power = power * 5 % two_n;
        }
        let mut planner = FftPlanner::new();
        Self {
            n,
            twist,
            slot_index,
            conj_index,
            forward: planner.plan_fft_forward(n),
            inverse: planner.plan_fft_inverse(n),
        }
    }

    /// Number of complex slots, `N/2`.
    pub fn slots(&self) -> usize {
        self.n / 2
    }

    /// Real coefficients (not yet scaled or rounded) of the polynomial whose
    /// slots are `values` followed by zeros. `values.len() <= N/2`.
    pub fn encode(&self, values: &[Complex64]) -> Vec<f64> {
        assert!(values.len() <= self.slots());
        let mut v = vec![Complex64::new(0.0, 0.0); self.n];
        for (j, &z) in values.iter().enumerate() {
            v[self.slot_index[j]] = z;
            v[self.conj_index[j]] = z.conj();
        }
        self.forward.process(&mut v);
        let scale = 1.0 / self.n as f64;
        v.iter()
            .zip(&self.twist)
            .map(|(w, tw)| (w * tw.conj()).re * scale)
            .collect()
    }

    /// The `N/2` slots of the polynomial with real coefficients `coeffs`.
    pub fn decode(&self, coeffs: &[f64]) -> Vec<Complex64> {
        assert_eq!(coeffs.len(), self.n);
        let mut w: Vec<Complex64> = coeffs.iter().zip(&self.twist).map(|(&c, tw)| tw * c).collect();
        self.inverse.process(&mut w);
        self.slot_index.iter().map(|&t| w[t]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// Direct O(N^2) evaluation of the polynomial at zeta^(5^j).
    fn naive_slots(coeffs: &[f64]) -> Vec<Complex64> {
        let n = coeffs.len();
        let mut power = 1usize;
        (0..n / 2)
            .map(|_| {
                let root = std::f64::consts::PI * power as f64 / n as f64;
                let value = coeffs
                    .iter()
                    .enumerate()
                    .map(|(k, &c)| Complex64::from_polar(c, root * k as f64))
                    .sum();
                power = power * 5 % (2 * n);
                value
            })
            .collect()
    }

    #[test]
    fn decode_matches_direct_evaluation_and_encode_inverts_it() {
        let mut rng = crate::test_seed::rng();
        let n = 256;
        let e = Embedding::new(n);
        let coeffs: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let slots = e.decode(&coeffs);
        for (a, b) in slots.iter().zip(naive_slots(&coeffs)) {
            assert!((a - b).norm() < 1e-10);
        }
        let back = e.encode(&slots);
        for (a, b) in back.iter().zip(&coeffs) {
            assert!((a - b).abs() < 1e-12);
        }
        let values: Vec<Complex64> = (0..n / 2)
            .map(|_| Complex64::new(rng.gen_range(-1.0..1.0), 0.0))
            .collect();
        for (a, b) in e.decode(&e.encode(&values)).iter().zip(&values) {
            assert!((a - b).norm() < 1e-12);
        }
    }
}
