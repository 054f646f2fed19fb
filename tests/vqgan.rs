//! The VQGAN against PyTorch: small random-weight models with the shape of
//! each paper preset (`tests/fixtures/vqgan/make_fixtures.py`), their inputs
//! and PyTorch's float64 outputs. The CPU backend computes in float32.

use latent_he::nn::StateDict;
use latent_he::vqgan::cpu::{self, CpuOps};
use latent_he::vqgan::{ConvParams, Padding, Vqgan, VqganConfig, VqganError};
use ndarray::{Array4, ArrayD, Ix4};
use ndarray_npy::read_npy;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

const PRESETS: [&str; 4] = ["f2", "f4", "f8", "f16"];

mod common;

use common::{small_random_vqgan, vqgan_array, vqgan_fixture as fixture};

fn array32(name: &str) -> Array4<f32> {
    vqgan_array(name)
}

fn array64(name: &str) -> Array4<f64> {
    vqgan_array(name)
}

/// Largest absolute difference relative to the reference's largest magnitude.
fn relative_error(got: &Array4<f32>, want: &Array4<f64>) -> f64 {
    assert_eq!(got.shape(), want.shape());
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let diff = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (&g, &w)| m.max((f64::from(g) - w).abs()));
    diff / scale
}

fn load(preset: &str) -> Vqgan<CpuOps> {
    Vqgan::load_cpu(&fixture(&format!("{preset}.safetensors")), None).expect("fixture loads")
}

#[test]
fn encoder_quantizer_and_decoder_match_pytorch_for_every_preset_shape() {
    for preset in PRESETS {
        let vq = load(preset);
        assert_eq!(
            vq.config().factor(),
            VqganConfig::preset(preset).unwrap().factor(),
            "{preset}"
        );
        let x = array32(&format!("{preset}.input.npy"));
        let latent = vq.encode(x.clone()).unwrap();
        let e = relative_error(&latent, &array64(&format!("{preset}.latent.npy")));
        assert!(e < 1e-5, "{preset} latent: relative error {e:e}");

        let quantized = vq.encode_quantized(x).unwrap();
        let want_q = array64(&format!("{preset}.quantized.npy"));
        // the same codebook rows (PyTorch's straight-through sum rounds in the last bit)
        assert!(
            relative_error(&quantized, &want_q) < 1e-12,
            "{preset}: other codebook entries chosen"
        );

        let recon = vq.decode(latent, false).unwrap();
        let e = relative_error(&recon, &array64(&format!("{preset}.recon.npy")));
        assert!(e < 1e-5, "{preset} reconstruction: relative error {e:e}");
        let from_q = vq.decode(quantized, true).unwrap();
        assert_eq!(from_q, recon, "{preset}: decoding q(E(x)) differs from decoding E(x)");
    }
}

#[test]
fn config_comes_from_metadata_or_from_tensor_names() {
    for preset in ["f2", "f8"] {
        let mut dict = StateDict::read(&fixture(&format!("{preset}.safetensors"))).unwrap();
        let from_meta = VqganConfig::from_metadata(&dict)
            .unwrap()
            .expect("fixture has metadata");
        dict.remove_metadata("vqgan_config");
        let inferred = VqganConfig::resolve(&dict, None).unwrap();
        // the weights cannot tell the training resolution; the attending levels agree
        assert_eq!(
            (inferred.ch, &inferred.ch_mult, inferred.z_channels),
            (from_meta.ch, &from_meta.ch_mult, from_meta.z_channels)
        );
        let attends = |c: &VqganConfig| (0..c.ch_mult.len()).map(|l| c.attends_at(l)).collect::<Vec<_>>();
        assert_eq!(attends(&inferred), attends(&from_meta), "{preset}");
        assert_eq!(
            (inferred.embed_dim, inferred.n_embed),
            (from_meta.embed_dim, from_meta.n_embed)
        );
    }
    // a preset that contradicts the file is refused
    let dict = StateDict::read(&fixture("f8.safetensors")).unwrap();
    let err = VqganConfig::resolve(&dict, Some("f8")).unwrap_err();
    assert!(err.to_string().contains("not the preset"), "{err}");
}

#[test]
fn broken_weights_are_listed_not_panicked_on() {
    let mut dict = StateDict::read(&fixture("f4.safetensors")).unwrap();
    dict.remove("encoder.mid.attn_1.q.weight");
    let mut bad = dict.get("encoder.conv_out.bias").unwrap().clone();
    bad.data_mut()[0] = f64::NAN;
    dict.insert("encoder.conv_out.bias", bad);
    let err = Vqgan::new(CpuOps, &dict, None, Ok, Ok).err().expect("refused");
    let text = err.to_string();
    assert!(matches!(err, VqganError::Weights { .. }), "{text}");
    assert!(
        text.contains("missing encoder.mid.attn_1.q.weight") && text.contains("encoder.conv_out.bias"),
        "{text}"
    );

    let vq = load("f4");
    let wrong_channels = Array4::<f32>::ones((1, 1, 32, 32));
    assert!(matches!(vq.encode(wrong_channels), Err(VqganError::Input(_))));
    let not_divisible = Array4::<f32>::ones((1, 3, 30, 30));
    assert!(matches!(vq.encode(not_divisible), Err(VqganError::Input(_))));
    let mut nan = Array4::<f32>::ones((1, 3, 32, 32));
    nan[[0, 1, 2, 3]] = f32::INFINITY;
    assert!(matches!(vq.encode(nan), Err(VqganError::Input(m)) if m.contains("not finite")));
}

/// A direct convolution in f64, the definition.
fn naive_conv(x: &Array4<f32>, p: &ConvParams) -> Array4<f64> {
    let (n, _, h, w) = x.dim();
    let (oh, ow) = p.output_size(h, w).unwrap();
    let k = p.kernel;
    Array4::from_shape_fn((n, p.out_channels, oh, ow), |(b, co, oy, ox)| {
        let mut acc = f64::from(p.bias[co]);
        for ci in 0..p.in_channels {
            for ky in 0..k {
                for kx in 0..k {
                    let iy = (oy * p.stride + ky) as isize - p.padding.top as isize;
                    let ix = (ox * p.stride + kx) as isize - p.padding.left as isize;
                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                        let wv = p.weight[((co * p.in_channels + ci) * k + ky) * k + kx];
                        acc += f64::from(wv) * f64::from(x[[b, ci, iy as usize, ix as usize]]);
                    }
                }
            }
        }
        acc
    })
}

#[test]
fn convolution_blocks_equal_a_direct_convolution() {
    let mut rng = ChaCha8Rng::seed_from_u64(common::seed());
    // sizes that split into several pixel blocks, odd sides, stride 2 with
    // taming's right/bottom padding, 1x1
    for (cin, cout, k, stride, padding, side) in [
        (5, 7, 3, 1, Padding::same(1), 67),
        (
            4,
            6,
            3,
            2,
            Padding {
                top: 0,
                left: 0,
                bottom: 1,
                right: 1,
            },
            40,
        ),
        (9, 3, 1, 1, Padding::same(0), 81),
    ] {
        let p = common::random_conv(&mut rng, cin, cout, k, stride, padding);
        let x = Array4::from_shape_fn((2, cin, side, side + 3), |_| rng.gen_range(-1.0f32..1.0));
        let got = cpu::conv2d(&x, &p).unwrap();
        let e = relative_error(&got, &naive_conv(&x, &p));
        assert!(e < 1e-6, "k{k} s{stride}: relative error {e:e}");
    }
}

#[test]
fn attention_in_query_blocks_equals_the_whole_softmax() {
    let mut rng = ChaCha8Rng::seed_from_u64(common::seed());
    // 20x30 = 600 positions: three query blocks, the last one partial
    let (c, h, w) = (6, 20, 30);
    let mk = |rng: &mut ChaCha8Rng| Array4::from_shape_fn((1, c, h, w), |_| rng.gen_range(-2.0f32..2.0));
    let (q, k, v) = (mk(&mut rng), mk(&mut rng), mk(&mut rng));
    let got = cpu::attention(&q, &k, &v).unwrap();
    let p = h * w;
    let flat = |t: &Array4<f32>, ch: usize, i: usize| f64::from(t[[0, ch, i / w, i % w]]);
    let want = Array4::from_shape_fn((1, c, h, w), |(_, ch, y, x)| {
        let i = y * w + x;
        let scores: Vec<f64> = (0..p)
            .map(|j| (0..c).map(|d| flat(&q, d, i) * flat(&k, d, j)).sum::<f64>() / (c as f64).sqrt())
            .collect();
        let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        (0..p).map(|j| weights[j] / total * flat(&v, ch, j)).sum()
    });
    let e = relative_error(&got, &want);
    assert!(e < 1e-5, "relative error {e:e}");
}

#[test]
fn encode_and_decode_commands_write_the_latents_and_psnr() {
    let dir = tempfile::tempdir().unwrap();
    let weights = fixture("f4.safetensors").display().to_string();
    let input = fixture("f4.input.npy").display().to_string();
    let z = dir.path().join("z.npy").display().to_string();
    let out = common::json(&common::latent_he(&[
        "encode",
        "--vqgan",
        &weights,
        "--input",
        &input,
        "--out",
        &z,
        "--backend",
        "cpu",
        "--batch-size",
        "1",
        "--json",
    ]));
    assert_eq!(out["shape"], serde_json::json!([2, 3, 8, 8]));
    let latent: ArrayD<f32> = read_npy(&z).unwrap();
    let e = relative_error(&latent.into_dimensionality::<Ix4>().unwrap(), &array64("f4.latent.npy"));
    assert!(e < 1e-5, "latent from the command: relative error {e:e}");

    let recon_dir = dir.path().join("recon").display().to_string();
    let out = common::json(&common::latent_he(&[
        "decode",
        "--vqgan",
        &weights,
        "--input",
        &z,
        "--out",
        &recon_dir,
        "--psnr-against",
        &input,
        "--backend",
        "cpu",
        "--json",
    ]));
    let psnr = out["psnr_db"].as_array().unwrap();
    assert_eq!(psnr.len(), 2);
    // random weights reconstruct badly but finitely
    assert!(psnr.iter().all(|p| p.as_f64().unwrap().is_finite()), "{out}");

    let err = common::refused(&common::latent_he(&[
        "encode",
        "--vqgan",
        &input,
        "--input",
        &input,
        "--out",
        &z,
        "--backend",
        "cpu",
    ]));
    assert!(err.contains("safetensors"), "{err}");
}

#[test]
fn encode_reads_png_and_dicom_folders_and_decode_writes_pngs() {
    let dir = tempfile::tempdir().unwrap();
    let weights = small_random_vqgan(dir.path()).display().to_string();
    let images = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images/real");
    let images = images.display().to_string();
    let z = dir.path().join("z.npy").display().to_string();
    let out = common::json(&common::latent_he(&[
        "encode",
        "--vqgan",
        &weights,
        "--input",
        &images,
        "--out",
        &z,
        "--backend",
        "cpu",
        "--json",
    ]));
    assert_eq!(out["shape"], serde_json::json!([3, 4, 32, 32]));
    let names: Vec<&str> = out["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        names[0].ends_with("00000001_000.png") && names[2].ends_with("rsna-pneumonia-sample.dcm"),
        "{names:?}"
    );

    let recon = dir.path().join("recon");
    let out = common::json(&common::latent_he(&[
        "decode",
        "--vqgan",
        &weights,
        "--input",
        &z,
        "--out",
        &recon.display().to_string(),
        "--psnr-against",
        &images,
        "--backend",
        "cpu",
        "--json",
    ]));
    assert_eq!(out["psnr_db"].as_array().unwrap().len(), 3);
    let png = recon.join("rsna-pneumonia-sample.png");
    let decoded = latent_he::data::image::read_image(&png).expect("reconstruction is a PNG");
    assert_eq!((decoded.height(), decoded.width()), (256, 256));

    // an undecodable file in the folder: an error naming it
    std::fs::write(dir.path().join("broken.png"), b"\x89PNG\r\n\x1a\n truncated").unwrap();
    std::fs::copy(png, dir.path().join("good.png")).unwrap();
    let err = common::refused(&common::latent_he(&[
        "encode",
        "--vqgan",
        &weights,
        "--input",
        &dir.path().display().to_string(),
        "--out",
        &z,
        "--backend",
        "cpu",
    ]));
    assert!(err.contains("broken.png"), "{err}");
}
