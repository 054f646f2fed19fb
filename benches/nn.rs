//! Plaintext inference: `nn/{arch}/f{factor}/batch{b}` (f32 unless the id
//! says f64), on models with deterministic pseudo-random weights.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use latent_he::nn::{expected_tensors, fold, Arch, LatentShape, Model, ModelSpec, StateDict, Tensor};
use ndarray::Array4;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// The allocator the `latent-he` binary runs with (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A model of this architecture whose every tensor is uniform in [-0.1, 0.1],
/// except running variances (in [0.5, 1.5]) and activations (alpha 0.05, beta 1, c 0).
fn random_model(arch: Arch, factor: usize) -> Model<f64> {
    let latent = LatentShape::for_factor(factor).expect("paper factor");
    let spec = ModelSpec::with_class_count(arch, false, 14, latent).expect("spec");
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut dict = StateDict::new();
    for t in expected_tensors(&spec).expect("architecture fits") {
        let n: usize = t.shape.iter().product();
        let data: Vec<f64> = if t.name.ends_with("running_var") {
            (0..n).map(|_| rng.gen_range(0.5..1.5)).collect()
        } else if t.name.ends_with(".alpha") {
            vec![0.05; n]
        } else if t.name.ends_with(".beta") {
            vec![1.0; n]
        } else {
            (0..n).map(|_| rng.gen_range(-0.1..0.1)).collect()
        };
        dict.insert(t.name, Tensor::new(t.shape, data).expect("length matches"));
    }
    Model::from_state_dict_with_spec(&dict, spec).expect("weights match")
}

fn bench_inference(c: &mut Criterion) {
    let mut group = c.benchmark_group("nn");
    group.sample_size(30);
    for (arch, factor, batch) in [(Arch::ResNet20, 8, 1), (Arch::ResNet20, 8, 16), (Arch::ResNet20, 2, 1)] {
        let model64 = random_model(arch, factor);
        let model32 = model64.cast::<f32>();
        let latent = model64.spec().latent();
        let x64 = Array4::from_shape_fn(
            (batch, latent.channels(), latent.height(), latent.width()),
            |(b, c, h, w)| ((b * 31 + c * 7 + h * 3 + w) % 17) as f64 / 17.0 - 0.5,
        );
        let x32 = x64.mapv(|v| v as f32);
        let id = format!("{arch}/f{factor}");
        group.bench_with_input(BenchmarkId::new(&id, format!("batch{batch}")), &x32, |b, x| {
            b.iter(|| model32.forward(x.view()).expect("forward"))
        });
        if batch == 1 {
            group.bench_with_input(BenchmarkId::new(&id, "batch1-f64"), &x64, |b, x| {
                b.iter(|| model64.forward(x.view()).expect("forward"))
            });
            let folded = fold(&model64).cast::<f32>();
            group.bench_with_input(BenchmarkId::new(&id, "batch1-folded"), &x32, |b, x| {
                b.iter(|| folded.forward(x.view()).expect("forward"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_inference);
criterion_main!(benches);
