//! Encoding real vectors into plaintext polynomials and back.

use super::error::CkksError;
use super::params::Params;
use crate::ring::{Coeff, Eval, RnsPoly};
use rustfft::num_complex::Complex64;

/// Scaled coefficients below 2^62 take the fast signed 64-bit path.
const NARROW_COEFF_LOG2: f64 = 62.0;
/// Largest scaled coefficient magnitude accepted (signed 128-bit headroom;
/// a ciphertext with one rescale pending has a scale near 2^60).
const MAX_COEFF_LOG2: f64 = 120.0;

/// An encoded vector: a polynomial in evaluation form over `Q_level`.
///
/// Invariant: `poly` has `level + 1` limbs; decoding divides by `scale`.
#[derive(Clone, Debug)]
pub struct Plaintext {
    pub(crate) poly: RnsPoly<Eval>,
    pub(crate) level: usize,
    pub(crate) scale: f64,
}

impl Plaintext {
    /// Level of the plaintext.
    pub fn level(&self) -> usize {
        self.level
    }

    /// Scale the values were multiplied by.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The polynomial.
    pub fn poly(&self) -> &RnsPoly<Eval> {
        &self.poly
    }
}

/// The scaled, rounded coefficients of an encoded vector, before they are
/// reduced into the primes: the part of encoding every backend shares (the
/// CPU reduces and transforms them itself, the GPU on the device).
#[derive(Clone, Debug)]
pub enum ScaledCoeffs {
    /// Every coefficient below 2^62 in magnitude.
    Narrow(Vec<i64>),
    /// Some coefficient at or above 2^62 (below 2^120).
    Wide(Vec<i128>),
}

/// An encoded vector not yet reduced into the primes of its level.
///
/// Invariant: `coeffs` holds N coefficients, each `round(c * scale)` of the
/// canonical embedding's coefficients `c`, all below 2^120 in magnitude;
/// `level` is a valid level of the parameters it was made for.
#[derive(Clone, Debug)]
pub struct EncodedCoeffs {
    coeffs: ScaledCoeffs,
    level: usize,
    scale: f64,
}

impl EncodedCoeffs {
    /// The rounded coefficients.
    pub fn coeffs(&self) -> &ScaledCoeffs {
        &self.coeffs
    }

    /// Level the plaintext is for.
    pub fn level(&self) -> usize {
        self.level
    }

    /// Scale the values were multiplied by.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Reduces the coefficients into the primes of the level and moves them
    /// to evaluation form: the plaintext [`encode`] gives.
    pub fn into_plaintext(self, params: &Params) -> Plaintext {
        let (ring, layout) = (params.ring(), params.layout(self.level));
        let poly = match &self.coeffs {
            ScaledCoeffs::Narrow(c) => RnsPoly::<Coeff>::from_signed(ring, layout, c),
            ScaledCoeffs::Wide(c) => RnsPoly::<Coeff>::from_signed_wide(ring, layout, c),
        }
        .into_eval(ring);
        Plaintext {
            poly,
            level: self.level,
            scale: self.scale,
        }
    }
}

/// Encodes `values` (at most N/2, the rest of the slots zero) at `level`
/// with `scale`.
///
/// # Errors
/// As [`encode_coeffs`].
pub fn encode(params: &Params, values: &[f64], level: usize, scale: f64) -> Result<Plaintext, CkksError> {
    Ok(encode_coeffs(params, values, level, scale)?.into_plaintext(params))
}

/// The first half of [`encode`]: the canonical embedding's coefficients of
/// `values`, scaled and rounded.
///
/// # Errors
/// [`CkksError::TooManyValues`], [`CkksError::NonFinite`],
/// [`CkksError::InvalidLevel`], [`CkksError::Overflow`] when a scaled
/// coefficient reaches 2^120.
pub fn encode_coeffs(params: &Params, values: &[f64], level: usize, scale: f64) -> Result<EncodedCoeffs, CkksError> {
    params.check_level(level)?;
    if values.len() > params.slots() {
        return Err(CkksError::TooManyValues {
            values: values.len(),
            slots: params.slots(),
        });
    }
    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(CkksError::NonFinite { index, value });
    }
    if !(scale.is_finite() && scale > 0.0) {
        return Err(CkksError::NonFinite { index: 0, value: scale });
    }
    let slots: Vec<Complex64> = values.iter().map(|&v| Complex64::new(v, 0.0)).collect();
    let coeffs = params.embedding().encode(&slots);
    let largest = coeffs.iter().fold(0f64, |m, c| m.max((c * scale).abs()));
    if largest >= 2f64.powf(MAX_COEFF_LOG2) {
        return Err(CkksError::Overflow {
            log_scale: scale.log2(),
            log_coeff: largest.log2(),
        });
    }
    let coeffs = if largest < 2f64.powf(NARROW_COEFF_LOG2) {
        ScaledCoeffs::Narrow(coeffs.iter().map(|c| (c * scale).round() as i64).collect())
    } else {
        ScaledCoeffs::Wide(coeffs.iter().map(|c| (c * scale).round() as i128).collect())
    };
    Ok(EncodedCoeffs { coeffs, level, scale })
}

/// The real parts of the N/2 slots of a coefficient-form polynomial at `scale`.
pub fn decode(params: &Params, poly: &RnsPoly<Coeff>, scale: f64) -> Vec<f64> {
    let coeffs: Vec<f64> = poly
        .to_centered_f64(params.ring())
        .into_iter()
        .map(|c| c / scale)
        .collect();
    params.embedding().decode(&coeffs).into_iter().map(|z| z.re).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn encode_decode_round_trip() {
        let params = Params::preset("insecure-n12").unwrap();
        let mut rng = crate::test_seed::rng();
        let values: Vec<f64> = (0..params.slots()).map(|_| rng.gen_range(-1.0..1.0)).collect();
        for level in [0, params.max_level()] {
            let pt = encode(&params, &values, level, params.scale(level)).unwrap();
            let back = decode(&params, &pt.poly.clone().into_coeff(params.ring()), pt.scale);
            let err = values.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(err < 2f64.powi(-20), "level {level}: {err}");
        }
    }

    #[test]
    fn a_scale_beyond_64_bits_round_trips() {
        // The scale of a product not yet rescaled: coefficients past 2^62.
        let params = Params::preset("insecure-n12").unwrap();
        let mut rng = crate::test_seed::rng();
        let values: Vec<f64> = (0..params.slots()).map(|_| rng.gen_range(-50.0..50.0)).collect();
        let level = params.max_level();
        let scale = params.scale(level) * params.scale(level);
        let pt = encode(&params, &values, level, scale).unwrap();
        let back = decode(&params, &pt.poly.clone().into_coeff(params.ring()), pt.scale);
        let err = values.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(err < 1e-9, "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        let params = Params::preset("insecure-n12").unwrap();
        let s = params.scale(0);
        assert!(matches!(
            encode(&params, &[1.0, f64::NAN], 0, s),
            Err(CkksError::NonFinite { index: 1, .. })
        ));
        assert!(matches!(
            encode(&params, &[1e40], 0, s),
            Err(CkksError::Overflow { .. })
        ));
        let too_many = vec![0.5; params.slots() + 1];
        assert!(matches!(
            encode(&params, &too_many, 0, s),
            Err(CkksError::TooManyValues { .. })
        ));
        assert!(matches!(
            encode(&params, &[0.5], 99, s),
            Err(CkksError::InvalidLevel { .. })
        ));
    }
}
