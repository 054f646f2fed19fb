//! `latent-he check`: the same random inputs through every operation on the
//! CPU and the GPU backend, compared word for word.

use super::params::ParamsSource;
use super::{print_json, CliError};
use crate::backend::gpu::kernels::{NttInput, NttLimb, NttOutput};
use crate::backend::gpu::{GpuContext, GpuWork};
use crate::ckks::gpu_eval::{GpuCiphertext, GpuEvaluator};
use crate::ckks::{encode, encrypt_values, Ciphertext, Evaluator, PublicKeySet, SecretKey};
use crate::he_nn::kernel_rotations;
use crate::ring::sampler::Sampler;
use crate::ring::{Coeff, RnsPoly};
use clap::Args;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// Width of the row-major image whose 3x3 kernel offsets are rotated
/// (a 32x32 latent, f=8).
const IMAGE_WIDTH: usize = 32;

/// Arguments of `check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    source: ParamsSource,
    /// Use the adapter whose name contains this (else $LATENT_HE_ADAPTER, else the best).
    #[arg(long)]
    adapter: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Words that differ between two word slices of equal length (all of them
/// when the lengths differ).
fn mismatched(a: &[u32], b: &[u32]) -> usize {
    if a.len() != b.len() {
        return a.len().max(b.len());
    }
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

fn ct_mismatch(a: &Ciphertext, b: &Ciphertext) -> usize {
    let ((a0, a1), (b0, b1)) = (a.parts(), b.parts());
    let scale = usize::from(a.scale() != b.scale());
    mismatched(a0.words(), b0.words()) + mismatched(a1.words(), b1.words()) + scale
}

fn timed<T, E>(f: impl FnOnce() -> Result<T, E>) -> Result<(T, f64), E> {
    let start = Instant::now();
    let out = f()?;
    Ok((out, start.elapsed().as_secs_f64() * 1e3))
}

/// Times a GPU operation to its completion (kernels are queued, not awaited).
fn timed_gpu<T>(gpu: &GpuEvaluator, f: impl FnOnce() -> Result<T, CliError>) -> Result<(T, f64), CliError> {
    timed(|| {
        let out = f()?;
        gpu.ring().sync()?;
        Ok(out)
    })
}

/// Runs a GPU operation three times: the first result (the one compared),
/// and the milliseconds and work of the third run, in steady state (the
/// second run's buffers, dropped at once, are in the pool, its bind groups
/// cached).
fn steady_gpu<T>(
    gpu: &GpuEvaluator,
    mut f: impl FnMut() -> Result<T, CliError>,
) -> Result<(T, f64, GpuWork), CliError> {
    let (first, _) = timed_gpu(gpu, &mut f)?;
    timed_gpu(gpu, &mut f)?;
    let before = gpu.work();
    let (_, ms) = timed_gpu(gpu, &mut f)?;
    Ok((first, ms, gpu.work().since(&before)))
}

/// Forward (or inverse) NTT of every limb of `poly` on the GPU, in place:
/// the words of one transform, and the milliseconds and work of one in
/// steady state.
fn ntt_on_gpu<D: crate::ring::Domain>(
    gpu: &GpuEvaluator,
    poly: &RnsPoly<D>,
    inverse: bool,
) -> Result<(Vec<u32>, f64, GpuWork), CliError> {
    let ring = gpu.ring();
    let words = ring.upload(poly).words();
    let limbs: Vec<NttLimb> = ring
        .prime_indices(poly.layout())
        .iter()
        .enumerate()
        .map(|(pos, &p)| NttLimb::in_place(p as usize, pos))
        .collect();
    let (_, ms, work) = steady_gpu(gpu, || {
        Ok(ring.ntt(&words, &limbs, NttInput::InPlace, NttOutput::InPlace, inverse)?)
    })?;
    // Several transforms ran on `words`; the words compared are one transform's.
    let fresh = ring.upload(poly).words();
    ring.ntt(&fresh, &limbs, NttInput::InPlace, NttOutput::InPlace, inverse)?;
    Ok((ring.download_words(&fresh)?, ms, work))
}

/// Runs `check`; fails with [`CliError::ChecksFailed`] when any word differs.
pub fn run(args: &CheckArgs) -> Result<(), CliError> {
    let params = args.source.resolve()?;
    let ctx = GpuContext::new(args.adapter.as_deref())?;
    let sk = SecretKey::generate(&params);
    let kernel = kernel_rotations(IMAGE_WIDTH, 3);
    let keys = Arc::new(PublicKeySet::generate(&sk, &kernel));
    let cpu = Evaluator::new(keys.clone());
    let gpu = GpuEvaluator::new(&ctx, &keys)?;
    let mut rng = ChaCha20Rng::from_entropy();
    let mut random = || -> Vec<f64> { (0..params.slots()).map(|_| rng.gen_range(-1.0..1.0)).collect() };
    let (x, y, w) = (random(), random(), random());
    let (cx, cy) = (encrypt_values(&keys, &x)?, encrypt_values(&keys, &y)?);
    let (gx, gy) = (gpu.upload(&cx)?, gpu.upload(&cy)?);
    let mut rows = Vec::new();
    let mut push = |name: &str, mismatched_words: usize, cpu_ms: f64, (gpu_ms, work): (f64, GpuWork)| {
        let round = |v: f64| (v * 1000.0).round() / 1000.0;
        rows.push(json!({
            "name": name, "mismatched_words": mismatched_words, "cpu_ms": round(cpu_ms), "gpu_ms": round(gpu_ms),
            "gpu_work": work,
        }));
    };
    let download = |g: &GpuCiphertext| gpu.download(g);

    // NTT over every limb of Q_L ++ P.
    let ring = params.ring();
    let poly: RnsPoly<Coeff> = Sampler::from_os().uniform(ring, ring.full_layout()).into_coeff(ring);
    let (want, cpu_ms) = timed(|| Ok::<_, CliError>(poly.clone().into_eval(ring)))?;
    let got = ntt_on_gpu(&gpu, &poly, false)?;
    push("ntt_forward", mismatched(want.words(), &got.0), cpu_ms, (got.1, got.2));
    let (back, cpu_ms) = timed(|| Ok::<_, CliError>(want.clone().into_coeff(ring)))?;
    let got = ntt_on_gpu(&gpu, &want, true)?;
    push("ntt_inverse", mismatched(back.words(), &got.0), cpu_ms, (got.1, got.2));

    let (want, cpu_ms) = timed(|| cpu.add(&cx, &cy))?;
    let (got, gpu_ms, work) = steady_gpu(&gpu, || Ok(gpu.add(&gx, &gy)?))?;
    push("add", ct_mismatch(&want, &download(&got)?), cpu_ms, (gpu_ms, work));

    let (want, cpu_ms) = timed(|| cpu.sub(&cx, &cy))?;
    let (got, gpu_ms, work) = steady_gpu(&gpu, || Ok(gpu.sub(&gx, &gy)?))?;
    push("sub", ct_mismatch(&want, &download(&got)?), cpu_ms, (gpu_ms, work));

    let level = cx.level();
    let pw_scale = params.mul_plain_scale(level, cx.scale());
    let (pw, cpu_ms) = timed(|| Ok::<_, CliError>(encode(&params, &w, level, pw_scale)?))?;
    let (gw, gpu_ms, work) = steady_gpu(&gpu, || Ok(gpu.encode(&w, level, pw_scale)?))?;
    push(
        "encode",
        mismatched(pw.poly().words(), gpu.download_plaintext(&gw)?.poly().words()),
        cpu_ms,
        (gpu_ms, work),
    );
    let (want, cpu_ms) = timed(|| cpu.mul_plain(&cx, &pw))?;
    let (got, gpu_ms, work) = steady_gpu(&gpu, || Ok(gpu.mul_plain(&gx, &gw)?))?;
    push(
        "mul_plain",
        ct_mismatch(&want, &download(&got)?),
        cpu_ms,
        (gpu_ms, work),
    );

    let (want, cpu_ms) = timed(|| cpu.rescale(&want))?;
    let (got, gpu_ms, work) = steady_gpu(&gpu, || Ok(gpu.rescale(&got)?))?;
    push("rescale", ct_mismatch(&want, &download(&got)?), cpu_ms, (gpu_ms, work));

    let (want, cpu_ms) = timed(|| cpu.mul_relin(&cx, &cy))?;
    let (got, gpu_ms, work) = steady_gpu(&gpu, || Ok(gpu.mul_relin(&gx, &gy)?))?;
    push(
        "mul_relin",
        ct_mismatch(&want, &download(&got)?),
        cpu_ms,
        (gpu_ms, work),
    );

    let (want, cpu_ms) = timed(|| cpu.rotate(&cx, 1))?;
    let (got, gpu_ms, work) = steady_gpu(&gpu, || Ok(gpu.rotate_hoisted(&gx, &[1])?))?;
    push(
        "rotate",
        ct_mismatch(&want, &download(&got[0])?),
        cpu_ms,
        (gpu_ms, work),
    );

    let (want, cpu_ms) = timed(|| cpu.rotate_hoisted(&cx, &kernel))?;
    let (got, gpu_ms, work) = steady_gpu(&gpu, || Ok(gpu.rotate_hoisted(&gx, &kernel)?))?;
    let mut differ = 0;
    for (w, g) in want.iter().zip(&got) {
        differ += ct_mismatch(w, &download(g)?);
    }
    push("hoisted_rotate_9", differ, cpu_ms, (gpu_ms, work));

    let sum_steps = [kernel[1], 0, kernel[7]];
    let (want, cpu_ms) = timed(|| {
        sum_steps
            .iter()
            .try_fold(None, |sum, &s| cpu.rotation_sum_add(sum, &cx, s).map(Some))
            .map(|sum| cpu.rotation_sum_finish(sum.expect("three terms")))
    })?;
    let (got, gpu_ms, work) = steady_gpu(&gpu, || {
        let sum = sum_steps
            .iter()
            .try_fold(None, |sum, &s| gpu.rotation_sum_add(sum, &gx, s).map(Some))?;
        Ok(gpu.rotation_sum_finish(sum.expect("three terms"))?)
    })?;
    push(
        "rotation_sum_3",
        ct_mismatch(&want, &download(&got)?),
        cpu_ms,
        (gpu_ms, work),
    );

    let all_equal = rows.iter().all(|r| r["mismatched_words"] == 0);
    let adapter = ctx.adapter();
    if args.json {
        print_json(&json!({
            "preset": params.name(),
            "adapter": {"name": adapter.name, "backend": adapter.backend, "device_type": adapter.device_type},
            "ops": rows,
            "all_equal": all_equal,
        }));
    } else {
        println!(
            "{} on {} ({}, {})",
            params.name().unwrap_or("literal"),
            adapter.name,
            adapter.backend,
            adapter.device_type
        );
        for r in &rows {
            println!(
                "{:<20} mismatched words {:>8}   cpu {:>10.3} ms   gpu {:>10.3} ms",
                r["name"].as_str().unwrap_or(""),
                r["mismatched_words"],
                r["cpu_ms"].as_f64().unwrap_or(0.0),
                r["gpu_ms"].as_f64().unwrap_or(0.0)
            );
        }
        println!("all equal: {all_equal}");
    }
    if all_equal {
        Ok(())
    } else {
        Err(CliError::ChecksFailed)
    }
}
