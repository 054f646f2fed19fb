//! Secret key files (kind 1), sealed so the body parser is reached.
#![no_main]

use latent_he::ckks::serialize::secret_key_from_bytes;
use latent_he_fuzz::seal;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = secret_key_from_bytes(&seal(data, 1));
});
