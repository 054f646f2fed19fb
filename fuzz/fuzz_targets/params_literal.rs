//! Parameter literals as `--literal` reads them: JSON, then the parameter
//! set built (insecure sets allowed, to reach the prime search).
#![no_main]

use latent_he::ckks::{Params, ParamsLiteral};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(literal) = serde_json::from_slice::<ParamsLiteral>(data) {
        let _ = Params::new(literal, true);
    }
});
