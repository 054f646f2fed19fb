//! The encrypted layers (convolution, activation, pooling + linear head) and
//! a tiny CNN made of them, against plain f64, on both backends (GPU and CPU
//! ciphertexts must be identical).

use latent_he::backend::gpu::GpuContext;
use latent_he::ckks::gpu_eval::GpuEvaluator;
use latent_he::ckks::{decrypt, encrypt_values, EvalBackend, Evaluator, Params, PublicKeySet, SecretKey};
use latent_he::he_nn::{Conv2dSame, HeConvError, SlotLayout};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::sync::Arc;

/// Same-padding, stride-1 convolution in f64, `[out][in][ky][kx]` weights.
fn conv_reference(x: &[f64], w: &[f64], layout: SlotLayout, k: usize) -> Vec<f64> {
    let SlotLayout {
        channels: c,
        height: h,
        width: wd,
    } = layout;
    let r = (k / 2) as isize;
    let mut out = vec![0.0; c * h * wd];
    for o in 0..c {
        for y in 0..h {
            for xx in 0..wd {
                let mut acc = 0.0;
                for i in 0..c {
                    for ky in 0..k {
                        for kx in 0..k {
                            let (sy, sx) = (y as isize + ky as isize - r, xx as isize + kx as isize - r);
                            if sy >= 0 && sy < h as isize && sx >= 0 && sx < wd as isize {
                                acc += w[((o * c + i) * k + ky) * k + kx] * x[(i * h + sy as usize) * wd + sx as usize];
                            }
                        }
                    }
                }
                out[(o * h + y) * wd + xx] = acc;
            }
        }
    }
    out
}

fn case(layout: SlotLayout, k: usize, gpu: Option<&Arc<GpuContext>>) {
    let params = Params::preset("insecure-n12").unwrap();
    let mut rng = ChaCha20Rng::from_entropy();
    let weights: Vec<f64> = (0..layout.channels * layout.channels * k * k)
        .map(|_| rng.gen_range(-0.5..0.5))
        .collect();
    let conv = Conv2dSame::new(layout, k, weights.clone(), params.slots()).unwrap();
    let sk = SecretKey::generate(&params);
    let keys = Arc::new(PublicKeySet::generate(&sk, &conv.rotations()));
    let x: Vec<f64> = (0..layout.size()).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let ct = encrypt_values(&keys, &layout.pack(&x)).unwrap();
    let cpu = Evaluator::new(keys.clone());
    let out = conv.apply(&cpu, &params, &cpu.upload(&ct).unwrap()).unwrap();
    assert_eq!(out.level(), ct.level() - 1, "one level");
    assert_eq!(out.scale(), params.scale(ct.level() - 1), "canonical scale");
    let got = layout.unpack(&decrypt(&sk, &out).unwrap());
    let want = conv_reference(&x, &weights, layout, k);
    let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(err < 1e-3, "{layout:?} k={k}: max error {err}");
    if let Some(ctx) = gpu {
        let g = GpuEvaluator::new(ctx, &keys).unwrap();
        let on_gpu = g
            .download(&conv.apply(&g, &params, &g.upload(&ct).unwrap()).unwrap())
            .unwrap();
        assert_eq!(on_gpu, out, "GPU and CPU ciphertexts differ");
    }
}

#[test]
fn three_by_three_convolution_matches_plaintext_on_both_backends() {
    let ctx = GpuContext::new(None)
        .unwrap_or_else(|e| panic!("GPU TESTS CANNOT RUN: {e}. Install a Vulkan driver (mesa-vulkan-drivers)"));
    case(
        SlotLayout {
            channels: 4,
            height: 16,
            width: 16,
        },
        3,
        Some(&ctx),
    );
}

#[test]
fn five_by_five_convolution_matches_plaintext() {
    case(
        SlotLayout {
            channels: 3,
            height: 12,
            width: 10,
        },
        5,
        None,
    );
}

#[test]
fn shapes_are_checked() {
    let layout = SlotLayout {
        channels: 4,
        height: 32,
        width: 32,
    };
    assert!(matches!(
        Conv2dSame::new(layout, 3, vec![0.1; 144], 2048),
        Err(HeConvError::TooLarge { needed: 8192, .. })
    ));
    let small = SlotLayout {
        channels: 2,
        height: 4,
        width: 4,
    };
    assert!(matches!(
        Conv2dSame::new(small, 3, vec![0.1; 5], 2048),
        Err(HeConvError::WeightShape { .. })
    ));
    assert!(matches!(
        Conv2dSame::new(small, 2, vec![0.1; 16], 2048),
        Err(HeConvError::EvenKernel(2))
    ));
    assert_eq!(
        latent_he::he_nn::kernel_rotations(32, 3),
        vec![-33, -32, -31, -1, 0, 1, 31, 32, 33]
    );
    let conv = Conv2dSame::new(small, 3, vec![0.1; 36], 2048).unwrap();
    assert_eq!(conv.key_switches(), 8 + 1);
    assert_eq!(conv.rotations().len(), 8 + 1);

    use latent_he::he_nn::{HeadError, PoolLinear};
    let odd = SlotLayout {
        channels: 3,
        height: 4,
        width: 4,
    };
    assert!(matches!(
        PoolLinear::new(odd, vec![0.1; 6], vec![0.0; 2]),
        Err(HeadError::NotPowerOfTwo { .. })
    ));
    assert!(matches!(
        PoolLinear::new(small, vec![0.1; 5], vec![0.0; 2]),
        Err(HeadError::Shape { .. })
    ));
    assert!(matches!(
        PoolLinear::new(small, vec![0.1; 2 * 17], vec![0.0; 17]),
        Err(HeadError::TooManyClasses { classes: 17, block: 16 })
    ));
}

#[test]
fn quadratic_activation_after_a_convolution_matches_plaintext_on_both_backends() {
    use latent_he::he_nn::FoldedQuadratic;
    let ctx = GpuContext::new(None).unwrap_or_else(|e| panic!("GPU TESTS CANNOT RUN: {e}"));
    let params = Params::preset("insecure-n12").unwrap();
    let mut rng = ChaCha20Rng::from_entropy();
    let layout = SlotLayout {
        channels: 2,
        height: 8,
        width: 8,
    };
    let (a, b, c) = (-0.3, 0.8, 0.05);
    // The conv absorbs sqrt|a|, as folding does.
    let weights: Vec<f64> = (0..2 * 2 * 9).map(|_| rng.gen_range(-0.4..0.4)).collect();
    let folded: Vec<f64> = weights.iter().map(|w| w * FoldedQuadratic::input_scale(a)).collect();
    let conv = Conv2dSame::new(layout, 3, folded, params.slots()).unwrap();
    let act = FoldedQuadratic::fold(a, b, c).unwrap();
    assert!(FoldedQuadratic::fold(0.0, b, c).is_none());
    let sk = SecretKey::generate(&params);
    let keys = Arc::new(PublicKeySet::generate(&sk, &conv.rotations()));
    let x: Vec<f64> = (0..layout.size()).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let ct = encrypt_values(&keys, &layout.pack(&x)).unwrap();
    let cpu = Evaluator::new(keys.clone());
    let out = act.apply(&cpu, &conv.apply(&cpu, &params, &ct).unwrap()).unwrap();
    assert_eq!(out.level(), ct.level() - 2, "conv and activation: two levels");
    let got = layout.unpack(&decrypt(&sk, &out).unwrap());
    let want: Vec<f64> = conv_reference(&x, &weights, layout, 3)
        .iter()
        .map(|y| a * y * y + b * y + c)
        .collect();
    let err = got.iter().zip(&want).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
    assert!(err < 1e-3, "max error {err}");
    let g = GpuEvaluator::new(&ctx, &keys).unwrap();
    let on_gpu = act
        .apply(&g, &conv.apply(&g, &params, &g.upload(&ct).unwrap()).unwrap())
        .unwrap();
    assert_eq!(g.download(&on_gpu).unwrap(), out, "GPU and CPU ciphertexts differ");
}

#[test]
fn a_tiny_cnn_runs_encrypted_end_to_end_on_both_backends() {
    use latent_he::he_nn::{FoldedQuadratic, PoolLinear};
    let ctx = GpuContext::new(None).unwrap_or_else(|e| panic!("GPU TESTS CANNOT RUN: {e}"));
    let params = Params::preset("insecure-n12").unwrap();
    let mut rng = ChaCha20Rng::from_entropy();
    let layout = SlotLayout {
        channels: 4,
        height: 8,
        width: 8,
    };
    let classes = 3;
    let (a, b, c) = (0.2, 0.9, -0.1);
    let conv_w: Vec<f64> = (0..4 * 4 * 9).map(|_| rng.gen_range(-0.4..0.4)).collect();
    let head_w: Vec<f64> = (0..classes * 4).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let head_b: Vec<f64> = (0..classes).map(|_| rng.gen_range(-0.5..0.5)).collect();
    let folded: Vec<f64> = conv_w.iter().map(|w| w * FoldedQuadratic::input_scale(a)).collect();
    let conv = Conv2dSame::new(layout, 3, folded, params.slots()).unwrap();
    let act = FoldedQuadratic::fold(a, b, c).unwrap();
    let head = PoolLinear::new(layout, head_w.clone(), head_b.clone()).unwrap();
    let mut rotations = conv.rotations();
    rotations.extend(head.rotations());
    let sk = SecretKey::generate(&params);
    let keys = Arc::new(PublicKeySet::generate(&sk, &rotations));
    let x: Vec<f64> = (0..layout.size()).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let ct = encrypt_values(&keys, &layout.pack(&x)).unwrap();

    // Plaintext reference: conv, activation, global average pool, linear.
    let hidden: Vec<f64> = conv_reference(&x, &conv_w, layout, 3)
        .iter()
        .map(|y| a * y * y + b * y + c)
        .collect();
    let pooled: Vec<f64> = hidden
        .chunks(layout.block())
        .map(|ch| ch.iter().sum::<f64>() / ch.len() as f64)
        .collect();
    let want: Vec<f64> = (0..classes)
        .map(|k| head_b[k] + (0..4).map(|ch| head_w[k * 4 + ch] * pooled[ch]).sum::<f64>())
        .collect();

    let cpu = Evaluator::new(keys.clone());
    let run = |backend: &Evaluator| {
        head.apply(
            backend,
            &params,
            &act.apply(backend, &conv.apply(backend, &params, &ct)?)?,
        )
    };
    let out = run(&cpu).unwrap();
    assert_eq!(out.level(), ct.level() - 3, "three levels");
    let got = decrypt(&sk, &out).unwrap();
    let err = (0..classes).map(|k| (got[k] - want[k]).abs()).fold(0.0, f64::max);
    assert!(err < 1e-3, "logits {:?} vs {want:?}: {err}", &got[..classes]);

    let g = GpuEvaluator::new(&ctx, &keys).unwrap();
    let gx = g.upload(&ct).unwrap();
    let on_gpu = head
        .apply(
            &g,
            &params,
            &act.apply(&g, &conv.apply(&g, &params, &gx).unwrap()).unwrap(),
        )
        .unwrap();
    assert_eq!(g.download(&on_gpu).unwrap(), out, "GPU and CPU ciphertexts differ");
    assert_eq!(head.key_switches(), 6 + 2 + 2);
}
