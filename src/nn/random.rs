//! Random weights of realistic size for any architecture: benchmarks and
//! tests of encrypted inference need models whose activations look like a
//! trained network's (order 1), not zeros.

use super::fold::fold;
use super::model::{expected_tensors, Model};
use super::spec::{Arch, ModelSpec};
use super::weights::{StateDict, Tensor};
use super::NnError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// The folded model ([`fold`]) of [`random_state_dict`]`(spec, seed)`: what
/// encrypted evaluation takes. Same `seed`, same model.
///
/// # Errors
/// As [`random_state_dict`].
pub fn random_folded_model(spec: &ModelSpec, seed: u64) -> Result<Model<f64>, NnError> {
    let dict = random_state_dict(spec, seed)?;
    Ok(fold(&Model::from_state_dict_with_spec(&dict, spec.clone())?))
}

/// A state dict with every tensor of `spec`, deterministic pseudo-random
/// values: BN statistics and nonzero activation coefficients included,
/// convolution and linear weights uniform in `+-1.5/sqrt(fan_in)`, the
/// SE sigmoid close to the paper's approximation. Same `seed`, same dict.
///
/// # Errors
/// [`NnError::Architecture`] when the spec has no valid tensor list (a
/// latent too small for the architecture).
pub fn random_state_dict(spec: &ModelSpec, seed: u64) -> Result<StateDict, NnError> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut dict = StateDict::new();
    let mut shared: Option<[f64; 3]> = None;
    let tensors = expected_tensors(spec)?;
    let bn: Vec<String> = tensors
        .iter()
        .filter_map(|t| t.name.strip_suffix(".running_var"))
        .map(|p| format!("{p}."))
        .collect();
    for t in tensors {
        let in_bn = bn.iter().any(|p| t.name.starts_with(p.as_str()));
        let n: usize = t.shape.iter().product();
        let fan_in = if t.shape.len() >= 2 {
            t.shape[1..].iter().product::<usize>()
        } else {
            1
        };
        let mut draw = |lo: f64, hi: f64| (0..n).map(|_| rng.gen_range(lo..hi)).collect::<Vec<f64>>();
        let data = if t.name.ends_with("running_var") {
            draw(0.5, 2.0)
        } else if t.name.ends_with("num_batches_tracked") {
            vec![7.0]
        } else if in_bn && t.name.ends_with(".weight") {
            draw(0.6, 1.4)
        } else if in_bn {
            draw(-0.3, 0.3)
        } else if t.name.contains(".sigmoid.") {
            match t.name.rsplit('.').next() {
                Some("alpha") => draw(-0.01, -0.002),
                Some("beta") => draw(0.1, 0.2),
                _ => draw(0.4, 0.6),
            }
        } else if let Some(p) = t.name.rsplit('.').next().filter(|p| ["alpha", "beta", "c"].contains(p)) {
            let v = match p {
                "alpha" => draw(0.05, 0.15)[0] * if rng.gen_bool(0.3) { -1.0 } else { 1.0 },
                "beta" => draw(0.6, 1.0)[0],
                _ => draw(-0.1, 0.1)[0],
            };
            // Shared activations (VGG5, HefNet): every copy equal.
            let is_shared = matches!(spec.arch(), Arch::Vgg5 | Arch::HefNet) && t.name.starts_with("relu");
            if is_shared {
                let idx = ["alpha", "beta", "c"].iter().position(|q| q == &p).unwrap_or(0);
                let s = shared.get_or_insert([0.1, 0.8, 0.05]);
                if t.name.starts_with("relu1.") {
                    s[idx] = v;
                }
                vec![s[idx]]
            } else {
                vec![v]
            }
        } else {
            let bound = 1.5 / (fan_in as f64).sqrt();
            draw(-bound, bound)
        };
        dict.insert(t.name, Tensor::new(t.shape, data)?);
    }
    Ok(dict)
}
