//! A safetensors classifier and its metadata through loading, folding and
//! planning at the `insecure-n12` preset (what `plan`, `keygen` and `infer`
//! do with a model file).
#![no_main]

use latent_he::he_nn::plan_for;
use latent_he::nn::{fold, LoadOptions, Model, StateDict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dict) = StateDict::from_safetensors(data) else {
        return;
    };
    let Ok(model) = Model::from_state_dict(&dict, &LoadOptions::default()) else {
        return;
    };
    let _ = plan_for(&fold(&model), Some("insecure-n12"), 1);
});
