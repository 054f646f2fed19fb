//! PNG, JPEG and DICOM files through decoding and the VQGAN preprocessing
//! (at 32 x 32, the same code as the paper's 256 x 256 at less cost).
#![no_main]

use latent_he::data::image::{decode_image, preprocess};
use libfuzzer_sys::fuzz_target;
use std::num::NonZeroUsize;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = decode_image(data, Path::new("fuzz")) {
        let _ = preprocess(&image, NonZeroUsize::new(32).expect("32 > 0"));
    }
});
