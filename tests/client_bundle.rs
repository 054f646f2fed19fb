//! The client bundle through the binary: `export-client` writes no tensor
//! of the model; `keygen --client` + `encrypt` + `infer` + `decrypt` give
//! the logits of the `keygen --model` path; `infer` refuses keys made for
//! another model's fingerprint.

use ndarray::Array4;
use ndarray_npy::write_npy;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::path::{Path, PathBuf};

mod common;
use common::{json, latent_he, matrix, refused_with, temp_dir};

const PRESET: &str = "insecure-n12-deep";

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A small random ResNet20 (2x8x8 latent, 4 classes) in `dir`.
fn model_in(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    common::small_resnet(dir, 4).0
}

fn export(model: &Path, out: &Path) -> serde_json::Value {
    json(&latent_he(&[
        "export-client",
        "--model",
        &s(model),
        "--preset",
        PRESET,
        "--out",
        &s(out),
        "--json",
    ]))
}

/// Every number in `value`, in document order.
fn numbers(value: &serde_json::Value, out: &mut Vec<f64>) {
    match value {
        serde_json::Value::Number(n) => out.extend(n.as_f64()),
        serde_json::Value::Array(a) => a.iter().for_each(|v| numbers(v, out)),
        serde_json::Value::Object(o) => o.values().for_each(|v| numbers(v, out)),
        _ => {}
    }
}

#[test]
fn the_bundle_holds_no_tensor_of_the_model_and_is_small() {
    let dir = temp_dir("bundle-content");
    let model = model_in(&dir);
    let bundle = dir.join("client.json");
    let made = export(&model, &bundle);
    assert_eq!(made["preset"], PRESET);
    let text = std::fs::read_to_string(&bundle).unwrap();
    assert!(text.len() < 1 << 20, "{} bytes", text.len());
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["fingerprint"], made["fingerprint"]);
    assert!(!value["rotations"].as_array().unwrap().is_empty());
    let mut found = Vec::new();
    numbers(&value, &mut found);
    let dict = latent_he::nn::StateDict::read(&model).unwrap();
    let mut tensors = 0;
    for (name, tensor) in dict.iter() {
        tensors += 1;
        assert!(!text.contains(name), "the bundle names tensor {name}");
        // No two neighbouring weights of a tensor (as stored, f32) sit side
        // by side among the bundle's numbers.
        let values: Vec<f64> = tensor.data().iter().map(|&v| f64::from(v as f32)).collect();
        for pair in values.windows(2) {
            if pair.iter().all(|v| v.fract() != 0.0) {
                assert!(
                    !found.windows(2).any(|w| w == pair),
                    "a run of {name}'s values is in the bundle: {pair:?}"
                );
            }
        }
        assert!(
            values.iter().filter(|v| v.fract() != 0.0).all(|v| !found.contains(v)),
            "a value of {name} is in the bundle"
        );
    }
    assert!(tensors > 20, "the model has its tensors ({tensors})");
}

#[test]
fn keys_from_the_bundle_give_the_logits_of_keys_from_the_model() {
    let seed = common::seed();
    let dir = temp_dir("bundle-keys");
    let model = model_in(&dir);
    let bundle = dir.join("client.json");
    let exported = export(&model, &bundle);
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let x = Array4::<f32>::from_shape_simple_fn((2, 2, 8, 8), || rng.gen_range(-1.0..1.0));
    let input = dir.join("x.npy");
    write_npy(&input, &x).unwrap();
    let mut logits = Vec::new();
    for source in ["--client", "--model"] {
        let keys = dir.join(format!("keys{source}"));
        let path = if source == "--client" { &bundle } else { &model };
        let mut argv = vec!["keygen", source, path.to_str().unwrap()];
        let preset = ["--preset", PRESET];
        if source == "--model" {
            argv.extend(preset);
        }
        let keys_s = s(&keys);
        argv.extend(["--out", &keys_s, "--json"]);
        let made = json(&latent_he(&argv));
        assert_eq!(made["preset"], PRESET);
        if source == "--client" {
            assert_eq!(made["model_fingerprint"], exported["fingerprint"]);
        }
        let ct = s(&dir.join(format!("x{source}.ct")));
        json(&latent_he(&[
            "encrypt",
            "--keys",
            &keys_s,
            "--input",
            &s(&input),
            "--out",
            &ct,
            "--json",
        ]));
        let y = s(&dir.join(format!("y{source}.ct")));
        json(&latent_he(&[
            "infer",
            "--public-key",
            &s(&keys.join("public.key")),
            "--model",
            &s(&model),
            "--input",
            &ct,
            "--out",
            &y,
            "--backend",
            "cpu",
            "--json",
        ]));
        let decrypted = json(&latent_he(&["decrypt", "--keys", &keys_s, "--input", &y, "--json"]));
        logits.push(matrix(&decrypted["logits"]));
    }
    let plain = json(&latent_he(&[
        "predict",
        "--model",
        &s(&model),
        "--input",
        &s(&input),
        "--json",
    ]));
    let plain = matrix(&plain["logits"]);
    for got in &logits {
        for (g, w) in got.iter().flatten().zip(plain.iter().flatten()) {
            assert!((g - w).abs() < 1e-3, "logit {g} against plaintext {w}");
        }
    }
    for (a, b) in logits[0].iter().flatten().zip(logits[1].iter().flatten()) {
        assert!((a - b).abs() < 1e-3, "bundle keys {a}, model keys {b}");
    }
}

#[test]
fn the_server_refuses_keys_made_for_another_fingerprint() {
    let dir = temp_dir("bundle-wrong");
    let model = model_in(&dir.join("a"));
    let other = model_in(&dir.join("b"));
    let bundle = dir.join("client.json");
    export(&model, &bundle);
    let keys = dir.join("keys");
    json(&latent_he(&[
        "keygen",
        "--client",
        &s(&bundle),
        "--out",
        &s(&keys),
        "--json",
    ]));
    let input = dir.join("x.npy");
    write_npy(&input, &Array4::<f32>::zeros((1, 2, 8, 8))).unwrap();
    let ct = s(&dir.join("x.ct"));
    json(&latent_he(&[
        "encrypt",
        "--keys",
        &s(&keys),
        "--input",
        &s(&input),
        "--out",
        &ct,
        "--json",
    ]));
    let err = refused_with(
        &latent_he(&[
            "infer",
            "--public-key",
            &s(&keys.join("public.key")),
            "--model",
            &s(&other),
            "--input",
            &ct,
            "--out",
            &s(&dir.join("y.ct")),
            "--backend",
            "cpu",
        ]),
        3,
    );
    assert!(err.contains("fingerprint"), "{err}");
    // A bundle with a field changed is refused on read.
    let text = std::fs::read_to_string(&bundle).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["rotations"][0]["galois_element"] = serde_json::json!(3);
    let bad = dir.join("bad.json");
    std::fs::write(&bad, value.to_string()).unwrap();
    let err = refused_with(
        &latent_he(&["keygen", "--client", &s(&bad), "--out", &s(&dir.join("k2"))]),
        3,
    );
    assert!(err.contains("Galois element"), "{err}");
}
