//! Encrypted layers of ResNet20 at f=8 on the CPU backend, n16, at the
//! levels the plan runs them: a layer-1 convolution (16 channels, one
//! ciphertext holding the tensor twice), a layer-3 convolution (64 channels
//! at gap 4 over two ciphertexts) and a quadratic activation.
//! IDs: `he_nn/{layer}/16`. The whole model: `latent-he run` (docs/perf.md).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use latent_he::ckks::{Evaluator, Params, PublicKeySet, SecretKey};
use latent_he::he_nn::{encrypt_tensor, HeConv, PolyActivation, SlotLayout};
use latent_he::nn::layers::ConvGeometry;
use std::sync::Arc;

/// The allocator the `latent-he` binary runs with (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn geometry(channels: usize) -> ConvGeometry {
    ConvGeometry {
        in_channels: channels,
        out_channels: channels,
        kernel: 3,
        stride: 1,
        padding: 1,
        groups: 1,
    }
}

fn he_nn(c: &mut Criterion) {
    latent_he::keep_freed_memory();
    let mut group = c.benchmark_group("he_nn");
    group.sample_size(10);
    let params = Params::preset("n16").unwrap();
    let full = SlotLayout::input(16, 32, 32, params.slots()).unwrap();
    let layer3 = full.strided(64, 8, 8, 4);
    let weights = |n: usize| {
        (0..n)
            .map(|i| ((i * 37) % 101) as f64 / 1010.0 - 0.05)
            .collect::<Vec<f64>>()
    };
    let conv1 = HeConv::new("layer1", geometry(16), weights(16 * 16 * 9), None, full).unwrap();
    let conv3 = HeConv::new("layer3", geometry(64), weights(64 * 64 * 9), None, layer3).unwrap();
    let mut rotations = conv1.rotations();
    rotations.extend(conv3.rotations());
    let sk = SecretKey::generate(&params);
    let keys = Arc::new(PublicKeySet::generate(&sk, &rotations));
    let eval = Evaluator::new(keys.clone());
    let act = PolyActivation::new("relu", vec![0.1, 0.5, 1.0]).unwrap();
    for (name, conv, level) in [("conv_layer1", &conv1, 29), ("conv_layer3", &conv3, 9)] {
        let layout = conv.input();
        let x = weights(layout.len());
        let cts = encrypt_tensor(&keys, &params, &layout, &x, level).unwrap();
        group.bench_function(BenchmarkId::new(name, 16), |b| {
            b.iter(|| conv.apply(&eval, &params, &cts).unwrap())
        });
        if level == 29 {
            group.bench_function(BenchmarkId::new("quadratic_layer1", 16), |b| {
                b.iter(|| act.apply(&eval, &layout, &cts).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, he_nn);
criterion_main!(benches);
