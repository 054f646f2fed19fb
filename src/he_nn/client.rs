//! The client's side of a plan: a tensor (or sets of images) encrypted into
//! the ciphertexts of its layout, and decrypted back. Only decryption touches
//! the secret key; every decrypted value is flooded with the
//! [`DecryptionNoise`] the caller gives.

use super::layout::SlotLayout;
use crate::ckks::{encode, encrypt, Ciphertext, CkksError, DecryptionNoise, Params, PublicKeySet, SecretKey};

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

/// Decrypts the ciphertexts of a tensor in `layout` (row-major `C x H x W`;
/// lane 0 where the layout has several), flooded with `noise`.
///
/// # Errors
/// A ciphertext of another key; another number of ciphertexts than the
/// layout has.
pub fn decrypt_tensor(
    sk: &SecretKey,
    layout: &SlotLayout,
    cts: &[Ciphertext],
    noise: DecryptionNoise,
) -> Result<Vec<f64>, CkksError> {
    Ok(layout.unpack(&decrypt_slots(sk, layout, cts, noise)?))
}

/// The slot vectors of the ciphertexts of one set in `layout`, flooded.
fn decrypt_slots(
    sk: &SecretKey,
    layout: &SlotLayout,
    cts: &[Ciphertext],
    noise: DecryptionNoise,
) -> Result<Vec<Vec<f64>>, CkksError> {
    if cts.len() != layout.cts() {
        return Err(CkksError::Shape {
            what: "encrypted tensor",
            expected: layout.cts(),
            found: cts.len(),
        });
    }
    cts.iter().map(|c| noise.decrypt(sk, c)).collect()
}

/// Encrypts images (row-major, one after another) in sets that fill the
/// tensor of `layout` (a batch stacked along the channels), each set into
/// the layout's ciphertexts at `level`; the last set is padded with zeros
/// (whole zero images when `images` holds whole images).
///
/// # Errors
/// As [`encrypt_tensor`].
pub fn encrypt_batches(
    keys: &PublicKeySet,
    params: &Params,
    layout: &SlotLayout,
    images: &[f64],
    level: usize,
) -> Result<Vec<Ciphertext>, CkksError> {
    let per_set = layout.len();
    let mut out = Vec::with_capacity(images.len().div_ceil(per_set) * layout.cts());
    for set in images.chunks(per_set) {
        let mut values = set.to_vec();
        values.resize(per_set, 0.0);
        out.extend(encrypt_tensor(keys, params, layout, &values, level)?);
    }
    Ok(out)
}

/// Decrypts sets of ciphertexts in `layout` (see [`encrypt_batches`]; each
/// set's lanes in order, as a plan's merges leave them) and keeps the first
/// `values` values: the padding images and empty lanes are dropped. Every
/// value is flooded with `noise`.
///
/// # Errors
/// As [`decrypt_tensor`].
pub fn decrypt_batches(
    sk: &SecretKey,
    layout: &SlotLayout,
    cts: &[Ciphertext],
    values: usize,
    noise: DecryptionNoise,
) -> Result<Vec<f64>, CkksError> {
    let mut out = Vec::with_capacity(values);
    for set in cts.chunks(layout.cts()) {
        let slots = decrypt_slots(sk, layout, set, noise)?;
        for m in 0..layout.lane_count() {
            if out.len() >= values {
                break;
            }
            out.extend(layout.unpack_lane(&slots, m));
        }
    }
    out.truncate(values);
    Ok(out)
}
