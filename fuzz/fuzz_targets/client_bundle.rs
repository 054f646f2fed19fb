//! Client bundles (`client.json`) as `keygen --client` reads them: JSON,
//! then every field checked against the parameters of its preset.
#![no_main]

use latent_he::pipeline::ClientBundle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ClientBundle::from_json(text);
    }
});
