//! Writes the seed files of the key and ciphertext targets under
//! `fuzz/seeds/`: a secret key, a public key set (relinearization key and
//! two Galois keys) and a two-ciphertext file, all under the fuzz crate's
//! small parameter set and without their checksum (the targets seal their
//! input), that secret key encrypted under [`SEED_PASSPHRASE`], parameter
//! literals, and the `model.json` of a small random ResNet20 planned at
//! `insecure-n12-deep` (with a batch of 1 and of 3). Run once from `fuzz/`:
//! `cargo run --release --example make_seeds`.

use latent_he::ckks::sealed::{sealed_secret_key_to_bytes, Passphrase};
use latent_he::ckks::serialize::{
    ciphertexts_to_bytes, public_keys_to_bytes, secret_key_to_bytes, CiphertextFile, CHECKSUM_LEN,
};
use latent_he::ckks::{encrypt_values, PublicKeySet, SecretKey};
use latent_he::pipeline::binding::ModelBinding;
use latent_he::he_nn::plan_for;
use latent_he::nn::{random_folded_model, Arch, LatentShape, ModelSpec};
use latent_he_fuzz::{small_literal, small_params, SEED_PASSPHRASE};
use std::path::Path;

/// A file as the targets take it: without its checksum, which
/// [`latent_he_fuzz::seal`] appends.
fn unsealed(file: &[u8]) -> &[u8] {
    &file[..file.len() - CHECKSUM_LEN]
}

fn write(dir: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let params = small_params();
    let sk = SecretKey::generate(&params);
    write("secret_key", "small_sk", unsealed(&secret_key_to_bytes(&sk)));
    let passphrase = Passphrase::new(SEED_PASSPHRASE.to_vec()).unwrap();
    write(
        "sealed_secret_key",
        "small_sealed_sk",
        unsealed(&sealed_secret_key_to_bytes(&sk, &passphrase)),
    );
    let latent = LatentShape::new(2, 4, 4).unwrap();
    let spec = ModelSpec::with_class_count(Arch::ResNet20, false, 5, latent).unwrap();
    let model = random_folded_model(&spec, 1).unwrap();
    for batch in [1, 3] {
        let (params, plan) = plan_for(&model, Some("insecure-n12-deep"), batch).unwrap();
        let binding = ModelBinding::new(&model, &params, &plan);
        write(
            "model_json",
            &format!("resnet20_batch{batch}.json"),
            &serde_json::to_vec_pretty(&binding).unwrap(),
        );
    }
    let keys = PublicKeySet::generate(&sk, &[1, -2]);
    write("public_keys", "small_pk", unsealed(&public_keys_to_bytes(&keys)));
    let values: Vec<f64> = (0..600).map(|i| f64::from(i) / 600.0 - 0.5).collect();
    let file = CiphertextFile {
        shape: vec![2, 300],
        values: values.len(),
        ciphertexts: vec![
            encrypt_values(&keys, &values[..512]).unwrap(),
            encrypt_values(&keys, &values[512..]).unwrap(),
        ],
    };
    write(
        "ciphertexts",
        "small_ct",
        unsealed(&ciphertexts_to_bytes(&file, &params)),
    );
    write(
        "params_literal",
        "small.json",
        &serde_json::to_vec(&small_literal()).unwrap(),
    );
    let presets = [
        r#"{"log_n":12,"log_q":[31,30,30,30,30,30,30],"log_p":[31,31],"log_scale":30.0,"dnum":4}"#,
        r#"{"log_n":14,"log_q":[31,30,30],"log_p":[31],"log_scale":29.5,"dnum":3}"#,
    ];
    for (i, text) in presets.iter().enumerate() {
        write("params_literal", &format!("literal_{i}.json"), text.as_bytes());
    }
}
