//! Passphrase-encrypted secret key files (kind 4), sealed so the body
//! parser is reached, opened under the passphrase the seed was made with.
#![no_main]

use latent_he::ckks::sealed::{sealed_secret_key_from_bytes, Passphrase};
use latent_he_fuzz::{seal, SEED_PASSPHRASE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let passphrase = Passphrase::new(SEED_PASSPHRASE.to_vec()).expect("a valid passphrase");
    let _ = sealed_secret_key_from_bytes(&seal(data, 4), &passphrase);
});
