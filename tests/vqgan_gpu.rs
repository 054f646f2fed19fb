//! The VQGAN's GPU backend against the CPU reference and PyTorch: every
//! operation on fresh random inputs (several geometries, batches split over
//! several dispatches), then whole encoders and decoders of every preset
//! shape. These tests need an adapter: without a GPU, lavapipe
//! (`mesa-vulkan-drivers`) provides one. Without any adapter they fail,
//! loudly, rather than skip.

use latent_he::backend::gpu::GpuContext;
use latent_he::vqgan::cpu::{self, CpuOps};
use latent_he::vqgan::gpu::{GpuOps, VqganGpuError};
use latent_he::vqgan::{NetOps, NormParams, Padding, Vqgan};
use ndarray::{Array4, ArrayD};
use ndarray_npy::read_npy;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

mod common;

const PRESETS: [&str; 4] = ["f2", "f4", "f8", "f16"];
/// Largest relative error allowed against the CPU and PyTorch.
const TOLERANCE: f64 = 1e-4;

fn context() -> Arc<GpuContext> {
    match GpuContext::new(None) {
        Ok(ctx) => {
            eprintln!("VQGAN GPU tests on {} ({})", ctx.adapter().name, ctx.adapter().backend);
            ctx
        }
        Err(e) => {
            panic!("VQGAN GPU TESTS CANNOT RUN: {e}. Install a Vulkan driver (apt-get install -y mesa-vulkan-drivers)")
        }
    }
}

use common::{random_conv, vqgan_fixture as fixture};

/// Largest absolute difference relative to the reference's largest magnitude.
fn relative_error<T: Copy + Into<f64>>(got: &Array4<f32>, want: &Array4<T>) -> f64 {
    assert_eq!(got.shape(), want.shape());
    let scale = want.iter().fold(0.0f64, |m, &v| m.max(v.into().abs()));
    let diff = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (&g, &w)| m.max((f64::from(g) - w.into()).abs()));
    diff / scale
}

fn random(rng: &mut ChaCha8Rng, shape: (usize, usize, usize, usize)) -> Array4<f32> {
    Array4::from_shape_fn(shape, |_| rng.gen_range(-1.0f32..1.0))
}

fn random_norm(rng: &mut ChaCha8Rng, channels: usize) -> NormParams {
    NormParams {
        name: format!("norm {channels}"),
        channels,
        gamma: (0..channels).map(|_| rng.gen_range(0.5..1.5)).collect(),
        beta: (0..channels).map(|_| rng.gen_range(-0.5..0.5)).collect(),
    }
}

fn check(what: &str, seed: u64, got: &Array4<f32>, want: &Array4<f32>) {
    let e = relative_error(got, want);
    assert!(e <= TOLERANCE, "{what}: relative error {e:e} (seed {seed})");
}

/// Every operation of `ops` against the CPU on a batch of `batch`.
fn every_op(ops: &GpuOps, batch: usize) {
    let seed = common::seed();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let down = Padding {
        top: 0,
        left: 0,
        bottom: 1,
        right: 1,
    };
    // 3x3 pad 1, stride 2 with taming's padding, 1x1, odd sides, channels
    // that are not multiples of the 64-wide tiles, a deep K loop
    for (cin, cout, k, stride, padding, (h, w)) in [
        (5, 7, 3, 1, Padding::same(1), (33, 35)),
        (8, 12, 3, 2, down, (40, 41)),
        (9, 70, 1, 1, Padding::same(0), (17, 19)),
        (3, 130, 3, 1, Padding::same(1), (16, 16)),
        (67, 5, 3, 1, Padding::same(1), (9, 11)),
        (4, 6, 2, 3, Padding::same(0), (13, 14)),
    ] {
        let p = random_conv(&mut rng, cin, cout, k, stride, padding);
        let x = random(&mut rng, (batch, cin, h, w));
        let want = cpu::conv2d(&x, &p).unwrap();
        let conv = ops.upload_conv(p.clone()).unwrap();
        let got = ops
            .download(&ops.conv2d(&ops.upload(x.clone()).unwrap(), &conv).unwrap())
            .unwrap();
        check(&p.name, seed, &got, &want);

        // the same convolution read through a lazy nearest 2x upsampling
        let wide = cpu::upsample_nearest(&x);
        let want = cpu::conv2d(&wide, &p).unwrap();
        let view = ops.upsample_nearest(&ops.upload(x).unwrap()).unwrap();
        let got = ops.download(&ops.conv2d(&view, &conv).unwrap()).unwrap();
        check(&format!("{} after upsampling", p.name), seed, &got, &want);
    }

    for swish in [false, true] {
        let (c, h, w) = (64, 30, 31);
        let p = random_norm(&mut rng, c);
        // an offset mean and a wide range, as activations have
        let x = random(&mut rng, (batch, c, h, w)).mapv(|v| 3.0 * v + 0.5);
        let want = cpu::group_norm(&x, &p, swish).unwrap();
        let norm = ops.upload_norm(p.clone()).unwrap();
        let got = ops
            .download(&ops.group_norm(&ops.upload(x.clone()).unwrap(), &norm, swish).unwrap())
            .unwrap();
        check(&format!("group norm (swish {swish})"), seed, &got, &want);
        // through an upsampled view, which the norm materialises first
        let small = random(&mut rng, (batch, c, 15, 16));
        let want = cpu::group_norm(&cpu::upsample_nearest(&small), &p, swish).unwrap();
        let view = ops.upsample_nearest(&ops.upload(small).unwrap()).unwrap();
        let got = ops.download(&ops.group_norm(&view, &norm, swish).unwrap()).unwrap();
        check(
            &format!("group norm of an upsampled view (swish {swish})"),
            seed,
            &got,
            &want,
        );
    }

    let (a, b) = (
        random(&mut rng, (batch, 32, 45, 46)),
        random(&mut rng, (batch, 32, 45, 46)),
    );
    let got = ops
        .download(
            &ops.add(ops.upload(a.clone()).unwrap(), &ops.upload(b.clone()).unwrap())
                .unwrap(),
        )
        .unwrap();
    check("add", seed, &got, &(&a + &b));
    let a = random(&mut rng, (batch, 32, 15, 16));
    let view = ops.upsample_nearest(&ops.upload(a.clone()).unwrap()).unwrap();
    let wide_b = random(&mut rng, (batch, 32, 30, 32));
    let got = ops
        .download(&ops.add(view, &ops.upload(wide_b.clone()).unwrap()).unwrap())
        .unwrap();
    check(
        "add to an upsampled view",
        seed,
        &got,
        &(&cpu::upsample_nearest(&a) + &wide_b),
    );
    let got = ops
        .download(&ops.upsample_nearest(&ops.upload(a.clone()).unwrap()).unwrap())
        .unwrap();
    check("nearest 2x upsampling", seed, &got, &cpu::upsample_nearest(&a));

    // 20x30 = 600 positions; with a small binding limit, several query blocks
    for (c, h, w) in [(6, 20, 30), (70, 7, 9)] {
        let mk = |rng: &mut ChaCha8Rng| random(rng, (batch, c, h, w)).mapv(|v| 2.0 * v);
        let (q, k, v) = (mk(&mut rng), mk(&mut rng), mk(&mut rng));
        let want = cpu::attention(&q, &k, &v).unwrap();
        let up = |t: &Array4<f32>| ops.upload(t.clone()).unwrap();
        let got = ops
            .download(&ops.attention(&up(&q), &up(&k), &up(&v)).unwrap())
            .unwrap();
        check(&format!("attention {c}x{h}x{w}"), seed, &got, &want);
    }
}

#[test]
fn every_operation_matches_the_cpu_reference() {
    let ctx = context();
    every_op(&GpuOps::new(&ctx).unwrap(), 2);
}

#[test]
fn batches_beyond_one_binding_run_in_several_dispatches() {
    let ctx = context();
    // 1 MiB a binding: most batches below span several, at offsets that are
    // not multiples of the binding alignment; attention takes two query blocks
    let ops = GpuOps::with_binding_limit(&ctx, 1 << 20).unwrap();
    every_op(&ops, 5);
    // one image larger than a binding is refused, not truncated
    let big = Array4::<f32>::zeros((1, 64, 64, 65));
    let norm = ops.upload_norm(NormParams {
        name: "big".into(),
        channels: 64,
        gamma: vec![1.0; 64],
        beta: vec![0.0; 64],
    });
    let err = ops
        .group_norm(&ops.upload(big).unwrap(), &norm.unwrap(), false)
        .err()
        .expect("refused");
    assert!(matches!(err, VqganGpuError::Gpu(_)), "{err}");
}

#[test]
fn shapes_that_do_not_fit_are_errors() {
    let ctx = context();
    let ops = GpuOps::new(&ctx).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let conv = ops
        .upload_conv(random_conv(&mut rng, 4, 8, 3, 1, Padding::same(1)))
        .unwrap();
    let x = ops.upload(Array4::zeros((1, 5, 8, 8))).unwrap();
    assert!(matches!(ops.conv2d(&x, &conv), Err(VqganGpuError::Vqgan(_))));
    let a = ops.upload(Array4::zeros((1, 4, 8, 8))).unwrap();
    assert!(matches!(ops.add(a, &x), Err(VqganGpuError::Vqgan(_))));
    let mut broken = random_conv(&mut rng, 4, 8, 3, 1, Padding::same(1));
    broken.weight.pop();
    assert!(matches!(ops.upload_conv(broken), Err(VqganGpuError::Vqgan(_))));
    assert!(ops.upload(Array4::zeros((0, 3, 8, 8))).is_err());
}

fn array64(name: &str) -> Array4<f64> {
    common::vqgan_array(name)
}

fn array32(name: &str) -> Array4<f32> {
    common::vqgan_array(name)
}

#[test]
fn gpu_encoder_and_decoder_match_the_cpu_and_pytorch_for_every_preset_shape() {
    let ctx = context();
    for preset in PRESETS {
        let path = fixture(&format!("{preset}.safetensors"));
        let gpu = Vqgan::<GpuOps>::load_gpu(&path, None, &ctx).unwrap();
        let cpu: Vqgan<CpuOps> = Vqgan::load_cpu(&path, None).unwrap();
        let x = array32(&format!("{preset}.input.npy"));
        let start = std::time::Instant::now();
        let latent = gpu.encode(x.clone()).unwrap();
        let encode_time = start.elapsed();
        let cpu_latent = cpu.encode(x.clone()).unwrap();
        let e = relative_error(&latent, &cpu_latent);
        assert!(e <= TOLERANCE, "{preset} latent vs CPU: {e:e}");
        let e = relative_error(&latent, &array64(&format!("{preset}.latent.npy")));
        assert!(e <= TOLERANCE, "{preset} latent vs PyTorch: {e:e}");

        let quantized = gpu.encode_quantized(x.clone()).unwrap();
        assert_eq!(
            quantized,
            cpu.encode_quantized(x).unwrap(),
            "{preset}: other codebook entries chosen"
        );

        let start = std::time::Instant::now();
        let recon = gpu.decode(latent, false).unwrap();
        let decode_time = start.elapsed();
        let e = relative_error(&recon, &cpu.decode(cpu_latent, false).unwrap());
        assert!(e <= TOLERANCE, "{preset} reconstruction vs CPU: {e:e}");
        let e = relative_error(&recon, &array64(&format!("{preset}.recon.npy")));
        assert!(e <= TOLERANCE, "{preset} reconstruction vs PyTorch: {e:e}");
        let from_q = gpu.decode(quantized, true).unwrap();
        assert!(
            relative_error(&from_q, &recon) <= TOLERANCE,
            "{preset}: decoding q(E(x))"
        );
        eprintln!(
            "{preset}: GPU encode {encode_time:?}, decode {decode_time:?} (batch of {})",
            recon.dim().0
        );
    }
}

#[test]
fn encode_command_on_the_gpu_equals_the_cpu() {
    context();
    let dir = tempfile::tempdir().unwrap();
    let weights = fixture("f16.safetensors").display().to_string();
    let input = fixture("f16.input.npy").display().to_string();
    let mut latents = Vec::new();
    for backend in ["gpu", "cpu"] {
        let z = dir.path().join(format!("{backend}.npy"));
        let out = common::json(&common::latent_he(&[
            "encode",
            "--vqgan",
            &weights,
            "--input",
            &input,
            "--out",
            &z.display().to_string(),
            "--backend",
            backend,
            "--json",
        ]));
        assert!(out["backend"].as_str().unwrap().starts_with(backend), "{out}");
        let a: ArrayD<f32> = read_npy(&z).unwrap();
        latents.push(a);
    }
    let scale = latents[1].iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let diff = latents[0]
        .iter()
        .zip(latents[1].iter())
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff / scale < 1e-4,
        "GPU and CPU latents differ by {diff} (scale {scale})"
    );
}
