//! `latent-he predict` end to end on the fixtures of `tests/fixtures/nn`:
//! logits equal PyTorch's, probabilities are their sigmoid, refusals are one line.

use ndarray::{ArrayD, Axis, Ix2};
use ndarray_npy::{read_npy, write_npy};
use std::process::Output;

mod common;
use common::{fixture, json, latent_he, matrix, refused};

fn run(args: &[&str]) -> Output {
    let mut all = vec!["predict"];
    all.extend_from_slice(args);
    latent_he(&all)
}

#[test]
fn predict_batch_matches_pytorch() {
    let want: ArrayD<f64> = read_npy(fixture("resnet20_f8.logits.npy")).unwrap();
    let want = want.into_dimensionality::<Ix2>().unwrap();
    for precision in ["f64", "f32"] {
        let out = run(&[
            "--model",
            &fixture("resnet20_f8.safetensors"),
            "--input",
            &fixture("resnet20_f8.input.npy"),
            "--precision",
            precision,
            "--json",
        ]);
        let v = json(&out);
        assert_eq!(v["classes"].as_array().unwrap().len(), 15);
        assert_eq!(v["classes"][0], "Atelectasis");
        let logits = matrix(&v["logits"]);
        let probs = matrix(&v["probabilities"]);
        let tol = if precision == "f64" { 1e-9 } else { 1e-4 };
        assert_eq!(logits.len(), 2);
        for (b, row) in logits.iter().enumerate() {
            for (k, &l) in row.iter().enumerate() {
                assert!(
                    (l - want[[b, k]]).abs() < tol,
                    "{precision}: logit {b},{k}: {l} vs {}",
                    want[[b, k]]
                );
                let p = 1.0 / (1.0 + (-want[[b, k]]).exp());
                assert!((probs[b][k] - p).abs() < tol, "probability {b},{k}");
            }
        }
    }
}

#[test]
fn predict_single_image_with_explicit_options() {
    let dir = tempfile::tempdir().unwrap();
    let x: ArrayD<f32> = read_npy(fixture("hefnet_f8.input.npy")).unwrap();
    let one = x.index_axis(Axis(0), 1).to_owned();
    let path = dir.path().join("one.npy");
    write_npy(&path, &one).unwrap();
    let want: ArrayD<f64> = read_npy(fixture("hefnet_f8.logits.npy")).unwrap();
    // hefnet_f8 has no metadata: the options name the classes.
    let out = run(&[
        "--model",
        &fixture("hefnet_f8.safetensors"),
        "--input",
        path.to_str().unwrap(),
        "--arch",
        "hefnet",
        "--classes",
        "x,y,z",
        "--json",
    ]);
    let v = json(&out);
    assert_eq!(v["classes"], serde_json::json!(["x", "y", "z"]));
    let logits = matrix(&v["logits"]);
    assert_eq!(logits.len(), 1);
    for (k, l) in logits[0].iter().enumerate() {
        assert!((l - want[[1, k]]).abs() < 1e-9);
    }
}

#[test]
fn predict_refusals_are_one_line() {
    let model = fixture("resnet20_f8.safetensors");
    let input = fixture("resnet20_f8.input.npy");
    let err = refused(&run(&["--model", &model, "--input", &fixture("vgg5_f8.logits.npy")]));
    assert!(err.contains("neither CxHxW nor BxCxHxW"), "{err}");
    let err = refused(&run(&["--model", &model, "--input", &fixture("resnet20_f2.input.npy")]));
    assert!(err.contains("does not match the model's latent 4x32x32"), "{err}");
    let err = refused(&run(&["--model", &model, "--input", &input, "--arch", "vgg5"]));
    assert!(err.contains("metadata says resnet20"), "{err}");
    let err = refused(&run(&["--model", &model, "--input", &input, "--classes", "chexpert14"]));
    assert!(err.contains("classes"), "{err}");
    let err = refused(&run(&["--model", &fixture("resnet20_f8.input.npy"), "--input", &input]));
    assert!(err.contains("safetensors"), "{err}");
    let err = refused(&run(&["--model", &fixture("missing.safetensors"), "--input", &input]));
    assert!(err.contains("missing.safetensors"), "{err}");
}
