//! CKKS operation benchmarks at the top level of n14 and n16.
//! IDs: `ckks/{op}/{log_n}`; `*_compact_keys` switch with keys whose `a`
//! halves are re-expanded from their seeds on each use.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use latent_he::ckks::{encode, encrypt_values, Evaluator, KeyLevels, KeyMemory, Params, PublicKeySet, SecretKey};
use latent_he::he_nn::kernel_rotations;
use std::sync::Arc;

/// The allocator the `latent-he` binary runs with (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn ckks(c: &mut Criterion) {
    let mut group = c.benchmark_group("ckks");
    group.sample_size(10);
    for preset in ["n14", "n16"] {
        let params = Params::preset(preset).unwrap();
        let log_n = params.literal().log_n;
        let sk = SecretKey::generate(&params);
        let kernel = kernel_rotations(32, 3);
        let keys = Arc::new(PublicKeySet::generate(&sk, &kernel));
        let eval = Evaluator::new(keys.clone());
        let x: Vec<f64> = (0..params.slots())
            .map(|i| ((i * 37) % 101) as f64 / 101.0 - 0.5)
            .collect();
        let cx = encrypt_values(&keys, &x).unwrap();
        let cy = encrypt_values(&keys, &x).unwrap();
        let level = cx.level();
        let pt = encode(&params, &x, level, params.mul_plain_scale(level, cx.scale())).unwrap();
        group.bench_function(BenchmarkId::new("encrypt", log_n), |b| {
            b.iter(|| encrypt_values(&keys, &x).unwrap())
        });
        group.bench_function(BenchmarkId::new("mul_plain_rescale", log_n), |b| {
            b.iter(|| eval.rescale(&eval.mul_plain(&cx, &pt).unwrap()).unwrap())
        });
        group.bench_function(BenchmarkId::new("mul_relin_rescale", log_n), |b| {
            b.iter(|| eval.rescale(&eval.mul_relin(&cx, &cy).unwrap()).unwrap())
        });
        group.bench_function(BenchmarkId::new("rotate", log_n), |b| {
            b.iter(|| eval.rotate(&cx, 1).unwrap())
        });
        group.bench_function(BenchmarkId::new("hoisted_rotate_9", log_n), |b| {
            b.iter(|| eval.rotate_hoisted(&cx, &kernel).unwrap())
        });
        let compact = Arc::new(PublicKeySet::generate_at(
            &sk,
            &KeyLevels::top(&params, &kernel),
            KeyMemory::Compact,
        ));
        let compact_eval = Evaluator::new(compact);
        group.bench_function(BenchmarkId::new("rotate_compact_keys", log_n), |b| {
            b.iter(|| compact_eval.rotate(&cx, 1).unwrap())
        });
        group.bench_function(BenchmarkId::new("hoisted_rotate_9_compact_keys", log_n), |b| {
            b.iter(|| compact_eval.rotate_hoisted(&cx, &kernel).unwrap())
        });
        let squared = eval.mul_relin(&cx, &cy).unwrap();
        group.bench_function(BenchmarkId::new("rescale", log_n), |b| {
            b.iter(|| eval.rescale(&squared).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, ckks);
criterion_main!(benches);
