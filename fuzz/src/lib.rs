//! Shared pieces of the fuzz targets: sealing arbitrary bytes into a
//! latent-he file whose length field and checksum are right, so that the
//! body parsers are reached, and the small parameter set ciphertexts are
//! read under.

use latent_he::ckks::serialize::{CHECKSUM_LEN, FORMAT_VERSION, HEADER_LEN, MAGIC};
use latent_he::ckks::{Params, ParamsLiteral};
use std::sync::{Arc, OnceLock};

/// The passphrase the seed of the passphrase-encrypted secret key target is
/// encrypted under, and the one that target opens its inputs with.
pub const SEED_PASSPHRASE: &[u8] = b"fuzz seed passphrase";

/// `data` as a file of kind `kind` (1 secret key, 2 public keys, 3
/// ciphertexts, 4 passphrase-encrypted secret key): its first [`HEADER_LEN`] bytes become the header with the
/// magic, version, kind and body length set (the fingerprint and key id are
/// kept from `data`), the rest the body, and the BLAKE3 checksum is
/// appended. Shorter inputs are returned as they are, to reach the header
/// checks too.
pub fn seal(data: &[u8], kind: u8) -> Vec<u8> {
    if data.len() < HEADER_LEN {
        return data.to_vec();
    }
    let mut file = Vec::with_capacity(data.len() + CHECKSUM_LEN);
    file.extend_from_slice(data);
    file[..8].copy_from_slice(&MAGIC);
    file[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    file[10] = kind;
    file[11] = 0;
    file[44..52].copy_from_slice(&((data.len() - HEADER_LEN) as u64).to_le_bytes());
    let hash = blake3::hash(&file);
    file.extend_from_slice(hash.as_bytes());
    file
}

/// The parameters ciphertext files are read under: N = 2^10, two
/// ciphertext primes and one special prime (small files, fast checks).
/// `examples/make_seeds.rs` writes the seed ciphertexts under the same set.
pub fn small_params() -> Arc<Params> {
    static PARAMS: OnceLock<Arc<Params>> = OnceLock::new();
    PARAMS
        .get_or_init(|| Params::new(small_literal(), true).expect("a valid literal"))
        .clone()
}

/// The literal of [`small_params`].
pub fn small_literal() -> ParamsLiteral {
    ParamsLiteral {
        log_n: 10,
        log_q: vec![31, 30],
        log_p: vec![31],
        log_scale: 30.0,
        dnum: 2,
    }
}
