//! A key folder's `model.json` (the model binding) through parsing, the
//! check against the keys' parameters (`insecure-n12-deep`) and, when it passes,
//! the packing and unpacking `encrypt` and `decrypt` do with its layouts.
#![no_main]

use latent_he::ckks::Params;
use latent_he::pipeline::binding::ModelBinding;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(binding) = serde_json::from_slice::<ModelBinding>(data) else {
        return;
    };
    let params = Params::preset("insecure-n12-deep").expect("a preset");
    if binding.check(&params).is_err() {
        return;
    }
    binding.input.pack(&vec![0.5; binding.input.len()]);
    let slots = binding.output.pack(&vec![0.5; binding.output.len()]);
    for lane in 0..binding.output.lane_count() {
        binding.output.unpack_lane(&slots, lane);
    }
});
