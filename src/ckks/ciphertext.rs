//! Ciphertexts and public-key encryption / secret-key decryption.

use super::encoder::{decode, encode, Plaintext};
use super::error::CkksError;
use super::keys::{KeyId, PublicKeySet, SecretKey};
use super::params::Params;
use crate::ring::sampler::Sampler;
use crate::ring::{Coeff, Eval, RnsPoly};

/// A CKKS ciphertext `(c0, c1)` decrypting to `c0 + c1*s`.
///
/// Invariant: `c0` and `c1` have the same layout, `level + 1` ciphertext limbs
/// and no special limbs; `scale` is the factor the message was multiplied by.
#[derive(Clone, Debug, PartialEq)]
pub struct Ciphertext {
    pub(crate) c0: RnsPoly<Eval>,
    pub(crate) c1: RnsPoly<Eval>,
    pub(crate) scale: f64,
    pub(crate) key_id: KeyId,
}

impl Ciphertext {
    /// Current level (limbs - 1).
    pub fn level(&self) -> usize {
        self.c0.layout().q - 1
    }

    /// Current scale.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The key the ciphertext was encrypted under.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The two polynomials.
    pub fn parts(&self) -> (&RnsPoly<Eval>, &RnsPoly<Eval>) {
        (&self.c0, &self.c1)
    }
}

/// Encrypts an encoded plaintext with the public key. A zero is encrypted
/// over `Q_l ++ P` as `(v*b + e0, v*a + e1)` (ternary `v`, Gaussian errors,
/// OS-seeded CSPRNG) and divided by `P`, so the fresh noise is only the
/// rounding of that division; then the message is added.
///
/// # Errors
/// [`CkksError::InvalidLevel`] if the plaintext level does not exist.
pub fn encrypt(keys: &PublicKeySet, pt: &Plaintext) -> Result<Ciphertext, CkksError> {
    let params = &keys.params;
    params.check_level(pt.level)?;
    let ring = params.ring();
    let ext = params.extended_layout(pt.level);
    let n = params.n();
    let mut sampler = Sampler::from_os();
    let v = RnsPoly::<Coeff>::from_signed(ring, ext, &sampler.ternary(n)).into_eval(ring);
    let mut sample = |base: &RnsPoly<Eval>| {
        let mut c = base.restricted(ext);
        c.mul_assign(ring, &v);
        let e = RnsPoly::<Coeff>::from_signed(ring, ext, &sampler.gaussian(n)).into_eval(ring);
        c.add_assign(ring, &e);
        params.mod_down().apply(ring, c)
    };
    let mut c0 = sample(&keys.public.pair.b);
    let c1 = sample(&keys.public.pair.a(params));
    c0.add_assign(ring, &pt.poly);
    Ok(Ciphertext {
        c0,
        c1,
        scale: pt.scale,
        key_id: keys.id,
    })
}

/// Encodes `values` at the top level and its canonical scale, then encrypts.
///
/// # Errors
/// As [`encode`].
pub fn encrypt_values(keys: &PublicKeySet, values: &[f64]) -> Result<Ciphertext, CkksError> {
    let params = &keys.params;
    let level = params.max_level();
    encrypt(keys, &encode(params, values, level, params.scale(level))?)
}

/// Decrypts to the N/2 slot values.
///
/// # Errors
/// [`CkksError::KeyMismatch`] when the ciphertext was made under another key.
pub fn decrypt(sk: &SecretKey, ct: &Ciphertext) -> Result<Vec<f64>, CkksError> {
    if ct.key_id != sk.id {
        return Err(CkksError::KeyMismatch {
            what: "ciphertext",
            found: ct.key_id.to_string(),
            expected: sk.id.to_string(),
        });
    }
    let params: &Params = &sk.params;
    let ring = params.ring();
    let mut m = sk.eval_q(ct.level() + 1);
    m.mul_assign(ring, &ct.c1);
    m.add_assign(ring, &ct.c0);
    Ok(decode(params, &m.into_coeff(ring), ct.scale))
}
