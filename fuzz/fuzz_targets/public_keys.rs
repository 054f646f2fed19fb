//! Public key set files (kind 2), sealed so the body parser is reached.
#![no_main]

use latent_he::ckks::serialize::public_keys_from_bytes;
use latent_he_fuzz::seal;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = public_keys_from_bytes(&seal(data, 2));
});
