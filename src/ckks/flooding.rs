//! Noise flooding of decrypted values: what a client adds before a
//! decryption leaves it.
//!
//! A CKKS decryption returns the message plus an error that depends on the
//! secret key. Whoever knows the ciphertext it computed and sees the
//! decrypted values can re-encode them, subtract the message and read linear
//! equations in the key; enough of them give the key away (Li and
//! Micciancio, "On the security of homomorphic encryption on approximate
//! numbers", 2021). Flooding adds fresh Gaussian noise to every decoded
//! value, so the low bits that carry the key-dependent error are random.
//!
//! The noise is added to the real parts of all N/2 slots of a ciphertext
//! after decoding, independently, with standard deviation `sigma` in the
//! units of the values. The decoding map is a scaled unitary transform, so
//! this is Gaussian noise on exactly the part of the coefficients that a
//! decoded real vector reveals. The randomness is a ChaCha20 stream seeded
//! from the operating system per ciphertext.
//!
//! The default `sigma` is [`DecryptionNoise::DEFAULT_SIGMA`] = 2^-14 (about
//! 6.1e-5): four times the error of one rescale by a 30-bit prime at
//! N = 2^16 (about 1.5e-5) and sixteen times below the 1e-3 logit bar of
//! docs/precision.md. It is a mitigation, not the statistical hiding of
//! the paper, which asks for noise 2^(s/2) times the error for s bits of
//! statistical security and would need a larger last-level scale than 30
//! bits to stay within the bar.

use super::ciphertext::{decrypt, Ciphertext};
use super::error::CkksError;
use super::keys::SecretKey;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rand_distr::{Distribution, Normal};

/// How much Gaussian noise decrypted values get before they are returned.
///
/// Invariant: `sigma` is finite and `>= 0`; 0 adds nothing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecryptionNoise {
    sigma: f64,
}

impl Default for DecryptionNoise {
    /// [`Self::DEFAULT_SIGMA`].
    fn default() -> Self {
        Self {
            sigma: Self::DEFAULT_SIGMA,
        }
    }
}

impl DecryptionNoise {
    /// The standard deviation every client path floods with unless told
    /// otherwise: 2^-14 (see the [module docs](self)).
    pub const DEFAULT_SIGMA: f64 = 1.0 / 16384.0;

    /// Noise of standard deviation `sigma` (0 for none).
    ///
    /// # Errors
    /// [`CkksError::NonFinite`] when `sigma` is negative or not finite.
    pub fn gaussian(sigma: f64) -> Result<Self, CkksError> {
        if sigma.is_finite() && sigma >= 0.0 {
            Ok(Self { sigma })
        } else {
            Err(CkksError::NonFinite { index: 0, value: sigma })
        }
    }

    /// No noise: the exact decryption, for tests of the arithmetic. Values
    /// decrypted this way must not leave the client.
    pub fn none() -> Self {
        Self { sigma: 0.0 }
    }

    /// The standard deviation.
    pub fn sigma(&self) -> f64 {
        self.sigma
    }

    /// Adds independent Gaussian noise of [`Self::sigma`] to every value,
    /// drawn from `rng`.
    pub fn flood(&self, values: &mut [f64], rng: &mut impl Rng) {
        if self.sigma == 0.0 {
            return;
        }
        let normal = Normal::new(0.0, self.sigma).expect("sigma is finite and positive");
        for v in values {
            *v += normal.sample(rng);
        }
    }

    /// Decrypts `ct` to its N/2 slot values and floods them, with a
    /// ChaCha20 stream seeded from the operating system.
    ///
    /// # Errors
    /// As [`decrypt`].
    pub fn decrypt(&self, sk: &SecretKey, ct: &Ciphertext) -> Result<Vec<f64>, CkksError> {
        let mut values = decrypt(sk, ct)?;
        self.flood(&mut values, &mut ChaCha20Rng::from_entropy());
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_sigmas_are_refused() {
        for sigma in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(DecryptionNoise::gaussian(sigma).is_err(), "{sigma}");
        }
        assert_eq!(DecryptionNoise::gaussian(0.0).unwrap(), DecryptionNoise::none());
    }

    #[test]
    fn no_noise_leaves_the_values() {
        let mut values = vec![0.25, -1.5];
        DecryptionNoise::none().flood(&mut values, &mut ChaCha20Rng::seed_from_u64(1));
        assert_eq!(values, [0.25, -1.5]);
    }
}
