//! Ciphertext files (kind 3), sealed so the body parser is reached, read
//! under the small parameter set.
#![no_main]

use latent_he::ckks::serialize::ciphertexts_from_bytes;
use latent_he_fuzz::{seal, small_params};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ciphertexts_from_bytes(&seal(data, 3), &small_params());
});
