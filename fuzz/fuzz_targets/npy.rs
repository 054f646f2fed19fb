//! `.npy` latents as `encrypt`, `predict`, `run` and `score` read them:
//! float64, else float32 (`cli::crypt::read_npy_f64` reads files; this is
//! the same decoding on bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyError, ReadNpyExt};

fuzz_target!(|data: &[u8]| {
    if let Err(ReadNpyError::WrongDescriptor(_)) = ArrayD::<f64>::read_npy(data) {
        let _ = ArrayD::<f32>::read_npy(data);
    }
});
