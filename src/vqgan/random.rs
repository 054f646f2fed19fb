//! Random VQGAN weights of a given config, for benchmarks and tests: PyTorch's
//! default initialisation scale (uniform in `±1/sqrt(fan_in)`), norm affines
//! near identity, a unit-normal-sized codebook. The config is recorded in the
//! metadata, so the dict loads without `--preset`.

use super::config::{VqganConfig, CONFIG_METADATA_KEY};
use super::network::Network;
use super::VqganError;
use crate::nn::{StateDict, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// A state dict with every tensor `cfg` needs (decoder included), drawn
/// from a seeded ChaCha20 stream.
///
/// # Errors
/// [`VqganError::Config`] for an invalid `cfg`.
pub fn random_state_dict(cfg: &VqganConfig, seed: u64) -> Result<StateDict, VqganError> {
    cfg.validate()?;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut dict = StateDict::new();
    for (name, shape) in Network::expected_tensors(cfg, true) {
        let n: usize = shape.iter().product();
        let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
        let bound = 1.0 / (fan_in as f64).sqrt();
        let is_norm = name.contains("norm");
        let data: Vec<f64> = (0..n)
            .map(|_| match () {
                _ if is_norm && name.ends_with(".weight") => rng.gen_range(0.8..1.2),
                _ if is_norm => rng.gen_range(-0.2..0.2),
                _ if name.starts_with("quantize.") => rng.gen_range(-1.0..1.0),
                _ => rng.gen_range(-bound..bound),
            })
            .collect();
        dict.insert(name, Tensor::new(shape, data)?);
    }
    let json = serde_json::to_string(cfg).map_err(|e| VqganError::Config(e.to_string()))?;
    dict.set_metadata(CONFIG_METADATA_KEY, json);
    Ok(dict)
}
