//! VQGAN benchmarks: the encoder of the paper's f8 preset (random weights)
//! on one `3 x 256 x 256` image, on the CPU backend and, when an adapter
//! exists, on the GPU backend (the latent read back inside the timed region).
//! IDs: `vqgan/encode_f8/{cpu,gpu}`, `vqgan/encode_f8_batch4/cpu` (throughput
//! in images per second). On lavapipe one GPU encode takes
//! minutes and says nothing about a real GPU; `cargo test --release --bench
//! vqgan` runs each benchmark once.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use latent_he::backend::gpu::GpuContext;
use latent_he::vqgan::cpu::CpuOps;
use latent_he::vqgan::gpu::GpuOps;
use latent_he::vqgan::random::random_state_dict;
use latent_he::vqgan::{Vqgan, VqganConfig};
use ndarray::Array4;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The allocator the `latent-he` binary runs with (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn vqgan(c: &mut Criterion) {
    let cfg = VqganConfig::preset("f8").unwrap();
    let dict = random_state_dict(&cfg, 1).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let image = Array4::from_shape_fn((1, 3, 256, 256), |_| rng.gen_range(-1.0f32..1.0));
    let mut group = c.benchmark_group("vqgan");
    group.sample_size(10);

    let cpu = Vqgan::new(CpuOps, &dict, None, Ok, Ok).unwrap();
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("encode_f8", "cpu"), |b| {
        b.iter(|| cpu.encode(image.clone()).unwrap())
    });
    // batched throughput: four images in one forward pass
    let batch = Array4::from_shape_fn((4, 3, 256, 256), |_| rng.gen_range(-1.0f32..1.0));
    group.throughput(Throughput::Elements(4));
    group.bench_function(BenchmarkId::new("encode_f8_batch4", "cpu"), |b| {
        b.iter(|| cpu.encode(batch.clone()).unwrap())
    });
    group.throughput(Throughput::Elements(1));

    match GpuContext::new(None) {
        Ok(ctx) => {
            eprintln!(
                "VQGAN GPU benchmark on {} ({})",
                ctx.adapter().name,
                ctx.adapter().backend
            );
            let ops = GpuOps::new(&ctx).unwrap();
            let uploader = ops.clone();
            let gpu = Vqgan::new(
                ops,
                &dict,
                None,
                |p| uploader.upload_conv(p),
                |p| uploader.upload_norm(p),
            )
            .unwrap();
            group.bench_function(BenchmarkId::new("encode_f8", "gpu"), |b| {
                b.iter(|| gpu.encode(image.clone()).unwrap())
            });
        }
        Err(e) => eprintln!("NO GPU ADAPTER, VQGAN GPU BENCHMARK NOT RUN: {e}"),
    }
    group.finish();
}

criterion_group!(benches, vqgan);
criterion_main!(benches);
