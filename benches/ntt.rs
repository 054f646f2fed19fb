//! NTT benchmarks: one limb and all limbs of a preset's top level.
//! IDs: `ntt/forward/{log_n}/{limbs}`, `ntt/inverse/{log_n}/{limbs}`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use latent_he::ckks::Params;
use latent_he::ring::sampler::Sampler;

/// The allocator the `latent-he` binary runs with (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn ntt(c: &mut Criterion) {
    let mut group = c.benchmark_group("ntt");
    group.sample_size(20);
    for preset in ["n14", "n16"] {
        let params = Params::preset(preset).unwrap();
        let ring = params.ring();
        let log_n = params.literal().log_n;
        let all = params.max_level() + 1;
        for limbs in [1, all] {
            let coeff = Sampler::from_os()
                .uniform(ring, params.layout(limbs - 1))
                .into_coeff(ring);
            let id = format!("{log_n}/{limbs}");
            group.bench_function(BenchmarkId::new("forward", &id), |b| {
                b.iter_batched(
                    || coeff.clone(),
                    |p| p.into_eval(ring),
                    criterion::BatchSize::LargeInput,
                )
            });
            let eval = coeff.clone().into_eval(ring);
            group.bench_function(BenchmarkId::new("inverse", &id), |b| {
                b.iter_batched(
                    || eval.clone(),
                    |p| p.into_coeff(ring),
                    criterion::BatchSize::LargeInput,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, ntt);
criterion_main!(benches);
