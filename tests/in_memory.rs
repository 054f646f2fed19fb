//! The pipeline's in-memory client and server (what the Python package
//! wraps): keys from a client bundle, latents encrypted to bytes, the
//! server's answer in bytes, findings decrypted; a model built from a
//! state dict in memory fingerprinted as its safetensors file; bad bytes
//! and another key's ciphertexts refused.

use latent_he::ckks::DecryptionNoise;
use latent_he::nn::{LoadOptions, StateDict};
use latent_he::pipeline::{
    load_model, model_fingerprint, model_from_state_dict, Chosen, Client, ClientBundle, KeyDir, KeyedServer,
    PipelineError, Planned, Silent,
};
use ndarray::Array4;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::path::Path;

mod common;
use common::temp_dir;

const PRESET: &str = "insecure-n12-deep";

/// A client with keys from the bundle of the model at `model` (in `dir`).
fn client_for(model: &Path, dir: &Path) -> Client {
    let bundle = ClientBundle::export(model, &LoadOptions::default(), Some(PRESET), 1).unwrap();
    Client::keygen(&bundle, KeyDir::new(dir), None).unwrap()
}

/// The server of the model at `model` for the public key file `public`.
fn server_for(model: &Path, public: &Path) -> Result<KeyedServer, PipelineError> {
    let folded = latent_he::nn::fold(&load_model(model, &LoadOptions::default()).unwrap());
    KeyedServer::open(
        folded,
        Some(model_fingerprint(model).unwrap()),
        public,
        Chosen::Cpu,
        &Silent,
    )
}

#[test]
fn bytes_round_trip_gives_the_plaintext_logits_and_bad_bytes_are_refused() {
    let seed = common::seed();
    let dir = temp_dir("in-memory");
    let (model, classes) = common::small_resnet(&dir, 3);
    let client = client_for(&model, &dir.join("keys"));
    assert_eq!(client.binding().classes, classes);
    // The server sees only the public key and the binding, in a folder without the secret key.
    let public = dir.join("server").join("public.key");
    std::fs::create_dir_all(public.parent().unwrap()).unwrap();
    std::fs::copy(client.dir().public_path(), &public).unwrap();
    std::fs::copy(
        client.dir().path().join("model.json"),
        public.with_file_name("model.json"),
    )
    .unwrap();
    let server = server_for(&model, &public).unwrap();

    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let x = Array4::from_shape_simple_fn((2, 2, 8, 8), || rng.gen_range(-1.0..1.0));
    let answer = server.infer(&client.encrypt(&x).unwrap(), &Silent).unwrap();
    let findings = client.decrypt(&answer, DecryptionNoise::none()).unwrap();
    let plain = Planned::new(&load_model(&model, &LoadOptions::default()).unwrap(), Some(PRESET), 1)
        .unwrap()
        .model
        .forward(x.view())
        .unwrap();
    assert_eq!(findings.logits.dim(), (2, 3));
    for (g, w) in findings.logits.iter().zip(plain.iter()) {
        assert!((g - w).abs() < 1e-3, "logit {g} against plaintext {w}");
    }
    for (p, l) in findings.probabilities().iter().zip(findings.logits.iter()) {
        assert!((p - 1.0 / (1.0 + (-l).exp())).abs() < 1e-12);
    }

    // Truncated bytes, wrong latent shapes and non-finite values are refused.
    let ct = client.encrypt(&x).unwrap();
    let err = server.infer(&ct[..ct.len() / 2], &Silent).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
    let err = client
        .decrypt(&answer[..answer.len() - 1], DecryptionNoise::none())
        .unwrap_err()
        .to_string();
    assert!(err.contains("truncated"), "{err}");
    let err = client.encrypt(&Array4::zeros((1, 3, 8, 8))).unwrap_err().to_string();
    assert!(err.contains("3x8x8"), "{err}");
    let mut nan = x.clone();
    nan[[1, 0, 2, 3]] = f64::NAN;
    assert!(client.encrypt(&nan).is_err());
    // The latents are not logits: decrypt refuses to read them as findings.
    let err = client.decrypt(&ct, DecryptionNoise::none()).unwrap_err().to_string();
    assert!(err.contains("not the logits"), "{err}");

    // Another client's keys for the same model: the server refuses its
    // ciphertexts, and the first client cannot decrypt its answers.
    let other = client_for(&model, &dir.join("other"));
    let theirs = other.encrypt(&x).unwrap();
    let err = server.infer(&theirs, &Silent).unwrap_err().to_string();
    assert!(err.contains("key"), "{err}");
    let their_answer = server_for(&model, &other.dir().public_path())
        .unwrap()
        .infer(&theirs, &Silent)
        .unwrap();
    let err = client
        .decrypt(&their_answer, DecryptionNoise::none())
        .unwrap_err()
        .to_string();
    assert!(err.contains("key"), "{err}");

    // A server with other weights refuses keys made for this model's fingerprint.
    std::fs::create_dir_all(dir.join("b")).unwrap();
    let (other_model, _) = common::small_resnet(&dir.join("b"), 3);
    let err = server_for(&other_model, &public).err().expect("refused").to_string();
    assert!(err.contains("fingerprint"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_state_dict_in_memory_is_the_model_and_fingerprint_of_its_file() {
    let dir = temp_dir("state-dict");
    let (model_path, _) = common::small_resnet(&dir, 4);
    let mut dict = StateDict::read(&model_path).unwrap();
    let keys: Vec<String> = dict.metadata_iter().map(|(k, _)| k.to_string()).collect();
    for key in keys {
        dict.remove_metadata(&key);
    }
    let options = LoadOptions::parse(Some("resnet20"), Some(false), Some("a,b,c,d"), Some("2x8x8"), None).unwrap();
    let (model, fingerprint) = model_from_state_dict(dict.clone(), &options).unwrap();
    let from_file = load_model(&model_path, &LoadOptions::default()).unwrap();
    assert_eq!(model.spec().to_string(), from_file.spec().to_string());
    let x = Array4::from_shape_fn((1, 2, 8, 8), |(_, c, h, w)| ((c * 64 + h * 8 + w) as f64 / 64.0).sin());
    assert_eq!(model.forward(x.view()).unwrap(), from_file.forward(x.view()).unwrap());
    // The same tensors and spec give the same fingerprint, whatever the dict's metadata.
    let mut with_metadata = dict.clone();
    for (k, v) in model.spec().metadata() {
        with_metadata.set_metadata(k, v);
    }
    assert_eq!(model_from_state_dict(with_metadata, &options).unwrap().1, fingerprint);
    assert!(
        latent_he::pipeline::fingerprint::is_fingerprint(&fingerprint),
        "{fingerprint}"
    );
    // Other classes give another fingerprint; a missing tensor is named.
    let renamed = LoadOptions::parse(Some("resnet20"), Some(false), Some("a,b,c,e"), Some("2x8x8"), None).unwrap();
    assert_ne!(model_from_state_dict(dict.clone(), &renamed).unwrap().1, fingerprint);
    dict.remove("linear.weight");
    let err = model_from_state_dict(dict, &options).unwrap_err().to_string();
    assert!(err.contains("linear.weight"), "{err}");
    assert!(LoadOptions::parse(Some("resnet21"), None, None, None, None).is_err());
    assert!(LoadOptions::parse(None, None, None, Some("4x32"), None).is_err());
    std::fs::remove_dir_all(&dir).ok();
}
