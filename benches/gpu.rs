//! GPU benchmarks: kernels and evaluator operations, at n14 and n16, each
//! measured to completion (the queue is drained inside the timed region).
//! IDs: `gpu/{kernel or op}/{log_n}`. On lavapipe these numbers only show
//! that the code runs; real timings need a real GPU (docs/perf.md).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use latent_he::backend::gpu::GpuContext;
use latent_he::ckks::gpu_eval::GpuEvaluator;
use latent_he::ckks::{encrypt_values, Params, PublicKeySet, SecretKey};
use latent_he::he_nn::kernel_rotations;
use latent_he::ring::sampler::Sampler;
use std::sync::Arc;

/// The allocator the `latent-he` binary runs with (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn gpu(c: &mut Criterion) {
    let ctx = match GpuContext::new(None) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("NO GPU ADAPTER, GPU BENCHMARKS NOT RUN: {e}");
            return;
        }
    };
    eprintln!("GPU benchmarks on {} ({})", ctx.adapter().name, ctx.adapter().backend);
    let mut group = c.benchmark_group("gpu");
    group.sample_size(10);
    for preset in ["n14", "n16"] {
        let params = Params::preset(preset).unwrap();
        let log_n = params.literal().log_n;
        let sk = SecretKey::generate(&params);
        let kernel = kernel_rotations(32, 3);
        let keys = Arc::new(PublicKeySet::generate(&sk, &kernel));
        let eval = GpuEvaluator::new(&ctx, &keys).unwrap();
        let ring = eval.ring();
        let host = params.ring();
        let poly = Sampler::from_os()
            .uniform(host, params.layout(params.max_level()))
            .into_coeff(host);
        group.bench_function(BenchmarkId::new("ntt_forward_all_limbs", log_n), |b| {
            b.iter_batched(
                || ring.upload(&poly),
                |p| {
                    let out = ring.into_eval(p).unwrap();
                    ring.sync().unwrap();
                    out
                },
                criterion::BatchSize::PerIteration,
            )
        });
        let x: Vec<f64> = (0..params.slots())
            .map(|i| ((i * 37) % 101) as f64 / 101.0 - 0.5)
            .collect();
        let cx = encrypt_values(&keys, &x).unwrap();
        let gx = eval.upload(&cx).unwrap();
        let gy = eval.upload(&encrypt_values(&keys, &x).unwrap()).unwrap();
        let level = cx.level();
        let pt_scale = params.mul_plain_scale(level, cx.scale());
        let pt = eval.encode(&x, level, pt_scale).unwrap();
        let synced = |f: &dyn Fn()| {
            f();
            ring.sync().unwrap();
        };
        group.bench_function(BenchmarkId::new("encode", log_n), |b| {
            b.iter(|| synced(&|| drop(eval.encode(&x, level, pt_scale).unwrap())))
        });
        group.bench_function(BenchmarkId::new("add", log_n), |b| {
            b.iter(|| synced(&|| drop(eval.add(&gx, &gy).unwrap())))
        });
        group.bench_function(BenchmarkId::new("mul_plain_rescale", log_n), |b| {
            b.iter(|| synced(&|| drop(eval.rescale(&eval.mul_plain(&gx, &pt).unwrap()).unwrap())))
        });
        group.bench_function(BenchmarkId::new("mul_relin_rescale", log_n), |b| {
            b.iter(|| synced(&|| drop(eval.rescale(&eval.mul_relin(&gx, &gy).unwrap()).unwrap())))
        });
        group.bench_function(BenchmarkId::new("rotate", log_n), |b| {
            b.iter(|| synced(&|| drop(eval.rotate_hoisted(&gx, &[1]).unwrap())))
        });
        group.bench_function(BenchmarkId::new("hoisted_rotate_9", log_n), |b| {
            b.iter(|| synced(&|| drop(eval.rotate_hoisted(&gx, &kernel).unwrap())))
        });
    }
    group.finish();
}

criterion_group!(benches, gpu);
criterion_main!(benches);
