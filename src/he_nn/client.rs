//! The client's side of a plan: a tensor encrypted into the ciphertexts of
//! its layout, and decrypted back. Only these touch the secret key.

use super::layout::SlotLayout;
use crate::ckks::{decrypt, encode, encrypt, Ciphertext, CkksError, Params, PublicKeySet, SecretKey};

/// Encrypts a row-major `C x H x W` tensor into the ciphertexts of `layout`
/// at `level` (its canonical scale).
///
/// # Errors
/// Non-finite or too large values, an invalid level.
///
/// # Panics
/// If `values.len()` is not the layout's tensor size.
pub fn encrypt_tensor(
    keys: &PublicKeySet,
    params: &Params,
    layout: &SlotLayout,
    values: &[f64],
    level: usize,
) -> Result<Vec<Ciphertext>, CkksError> {
    layout
        .pack(values)
        .iter()
        .map(|slots| encrypt(keys, &encode(params, slots, level, params.scale(level))?))
        .collect()
}

/// Decrypts the ciphertexts of a tensor in `layout` (row-major `C x H x W`).
///
/// # Errors
/// A ciphertext of another key; fewer ciphertexts than the layout has.
pub fn decrypt_tensor(sk: &SecretKey, layout: &SlotLayout, cts: &[Ciphertext]) -> Result<Vec<f64>, CkksError> {
    if cts.len() != layout.cts() {
        return Err(CkksError::Shape {
            what: "encrypted tensor",
            expected: layout.cts(),
            found: cts.len(),
        });
    }
    let slots = cts.iter().map(|c| decrypt(sk, c)).collect::<Result<Vec<_>, _>>()?;
    Ok(layout.unpack(&slots))
}
