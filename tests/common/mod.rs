//! Helpers shared by the tests that drive the `latent-he` binary.
#![allow(dead_code)] // each test binary uses its own subset

mod seed;
#[allow(unused_imports)] // as above
pub use seed::{rng, seed};

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs `latent-he` with `args`.
pub fn latent_he(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_latent-he"))
        .args(args)
        .output()
        .expect("binary runs")
}

/// The one-line JSON object a successful `--json` command printed.
pub fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(
        stdout.trim().lines().count(),
        1,
        "one JSON object on one line: {stdout}"
    );
    serde_json::from_str(&stdout).unwrap()
}

/// The one-line error of a refused command: exit status 2 (usage) or 3
/// (bad input).
pub fn refused(out: &Output) -> String {
    let code = out.status.code();
    assert!(
        matches!(code, Some(2 | 3)),
        "exit status {code:?}; stdout: {}; stderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "one-line error: {stderr}");
    stderr
}

/// The one-line error of a command refused with exit status `code`.
pub fn refused_with(out: &Output, code: i32) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}; stderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "one-line error: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// The path of a file in `tests/fixtures/nn`.
pub fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/nn")
        .join(name)
        .display()
        .to_string()
}

/// A JSON array of arrays of numbers.
pub fn matrix(v: &serde_json::Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
        .collect()
}

/// A file in `tests/fixtures/vqgan`.
pub fn vqgan_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vqgan")
        .join(name)
}

/// A 4-D `.npy` array of `tests/fixtures/vqgan`.
pub fn vqgan_array<T: ndarray_npy::ReadableElement>(name: &str) -> ndarray::Array4<T> {
    let a: ndarray::ArrayD<T> = ndarray_npy::read_npy(vqgan_fixture(name)).expect("fixture");
    a.into_dimensionality::<ndarray::Ix4>().unwrap()
}

/// A small random f=8 VQGAN without level attention (fast on 256x256
/// images), written to `dir/vq.safetensors`.
pub fn small_random_vqgan(dir: &std::path::Path) -> PathBuf {
    let cfg = latent_he::vqgan::VqganConfig {
        ch: 32,
        ch_mult: vec![1, 1, 1, 1],
        num_res_blocks: 1,
        attn_resolutions: vec![],
        embed_dim: 8,
        n_embed: 16,
        ..latent_he::vqgan::VqganConfig::preset("f8").unwrap()
    };
    let dict = latent_he::vqgan::random::random_state_dict(&cfg, seed()).unwrap();
    let path = dir.join("vq.safetensors");
    dict.write(&path, latent_he::nn::StoreDtype::F32).unwrap();
    path
}

/// A ResNet20 with random weights of realistic size on a small 2x8x8 latent
/// with `classes` classes, spec in the file's metadata, at
/// `dir/model.safetensors`; returns the path and the class names.
pub fn small_resnet(dir: &std::path::Path, classes: usize) -> (PathBuf, Vec<String>) {
    use latent_he::nn::{random_state_dict, Arch, LatentShape, ModelSpec, StoreDtype};
    let spec = ModelSpec::with_class_count(Arch::ResNet20, false, classes, LatentShape::new(2, 8, 8).unwrap()).unwrap();
    let mut dict = random_state_dict(&spec, seed()).unwrap();
    for (k, v) in spec.metadata() {
        dict.set_metadata(k, v);
    }
    let model = dir.join("model.safetensors");
    dict.write(&model, StoreDtype::F32).unwrap();
    (model, spec.classes().to_vec())
}

/// A convolution with random weights and biases in [-1, 1).
pub fn random_conv(
    rng: &mut impl rand::Rng,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    padding: latent_he::vqgan::Padding,
) -> latent_he::vqgan::ConvParams {
    latent_he::vqgan::ConvParams {
        name: format!("conv {cin}->{cout} k{k} s{stride} {padding:?}"),
        out_channels: cout,
        in_channels: cin,
        kernel: k,
        stride,
        padding,
        weight: (0..cout * cin * k * k).map(|_| rng.gen_range(-1.0..1.0)).collect(),
        bias: (0..cout).map(|_| rng.gen_range(-1.0..1.0)).collect(),
    }
}

/// A fresh folder under the system's temporary folder, named by `tag` and a
/// random number.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("latent-he-{tag}-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The largest absolute difference between two matrices of the same shape.
pub fn max_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}
