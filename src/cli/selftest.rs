//! `latent-he selftest`: every CKKS operation on fresh random data, timed
//! (median of several runs) and checked against the same computation on f64
//! vectors.

use super::backend::{Chosen, DeviceArgs};
use super::params::ParamsSource;
use super::{print_json, CliError};
use crate::ckks::gpu_eval::GpuEvaluator;
use crate::ckks::{decrypt, encrypt_values, Ciphertext, EvalBackend, Evaluator, Params, PublicKeySet, SecretKey};
use crate::he_nn::kernel_rotations;
use crate::ring::sampler::Sampler;
use clap::Args;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// Row width of the 3x3 kernel offsets used by `hoisted_rotate_9` (a 32x32
/// latent laid out row-major in the slots).
const KERNEL_ROW: usize = 32;

/// Arguments of `selftest`.
#[derive(Args, Debug)]
pub struct SelftestArgs {
    #[command(flatten)]
    source: ParamsSource,
    #[command(flatten)]
    device: DeviceArgs,
    /// Timed runs per operation (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Precision of `got` against `want`: (-log2 mean error, -log2 max error).
pub fn precision_bits(got: &[f64], want: &[f64]) -> (f64, f64) {
    let errors: Vec<f64> = got.iter().zip(want).map(|(a, b)| (a - b).abs()).collect();
    let mean = errors.iter().sum::<f64>() / errors.len().max(1) as f64;
    let max = errors.iter().copied().fold(0.0, f64::max);
    let bits = |e: f64| -(e.max(f64::MIN_POSITIVE)).log2();
    (bits(mean), bits(max))
}

/// Runs `f` once to warm up, then `repeats` times; returns the last result
/// and the median time in milliseconds.
fn timed<T>(repeats: usize, mut f: impl FnMut() -> Result<T, CliError>) -> Result<(T, f64), CliError> {
    let mut out = f()?;
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        out = f()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((out, times[times.len() / 2]))
}

struct Report {
    rows: Vec<serde_json::Value>,
}

impl Report {
    fn push(&mut self, name: &str, precision: Option<(f64, f64)>, median_ms: f64) {
        let round = |x: f64| (x * 100.0).round() / 100.0;
        self.rows.push(json!({
            "name": name,
            "precision_bits": precision.map(|p| round(p.0)),
            "min_precision_bits": precision.map(|p| round(p.1)),
            "median_ms": (median_ms * 1000.0).round() / 1000.0,
        }));
    }
}

fn rotate_left(v: &[f64], steps: i64) -> Vec<f64> {
    let n = v.len() as i64;
    (0..n).map(|i| v[(i + steps).rem_euclid(n) as usize]).collect()
}

/// Runs `selftest`: encryption and decryption (the client's side) on the CPU,
/// the evaluation operations on the chosen backend.
pub fn run(args: &SelftestArgs) -> Result<(), CliError> {
    let params = args.source.resolve()?;
    let backend = args.device.resolve()?;
    let repeats = args.repeats;
    let kernel = kernel_rotations(KERNEL_ROW, 3);
    let keygen_start = Instant::now();
    let sk = SecretKey::generate(&params);
    let keys = Arc::new(PublicKeySet::generate(&sk, &kernel));
    let keygen_ms = keygen_start.elapsed().as_secs_f64() * 1e3;
    let mut rng = ChaCha20Rng::from_entropy();
    let mut random = || -> Vec<f64> { (0..params.slots()).map(|_| rng.gen_range(-1.0..1.0)).collect() };
    let inputs = Inputs {
        x: random(),
        y: random(),
        w: random(),
    };
    let mut report = Report { rows: Vec::new() };
    let (cx, ms) = timed(repeats, || Ok(encrypt_values(&keys, &inputs.x)?))?;
    report.push("encrypt", Some(precision_bits(&decrypt(&sk, &cx)?, &inputs.x)), ms);
    let cy = encrypt_values(&keys, &inputs.y)?;
    let (plain, ms) = timed(repeats, || Ok(decrypt(&sk, &cx)?))?;
    report.push("decrypt", Some(precision_bits(&plain, &inputs.x)), ms);
    let run = Run {
        params: &params,
        sk: &sk,
        inputs: &inputs,
        kernel: &kernel,
        repeats,
        cx: &cx,
        cy: &cy,
    };
    let ring = params.ring();
    let poly = Sampler::from_os()
        .uniform(ring, params.layout(params.max_level()))
        .into_coeff(ring);
    match &backend {
        Chosen::Cpu => {
            run.evaluate(&Evaluator::new(keys.clone()), &mut report)?;
            let (_, ms) = timed(repeats, || Ok(poly.clone().into_eval(ring)))?;
            report.push("ntt_forward_all_limbs", None, ms);
        }
        Chosen::Gpu(ctx) => {
            let gpu = GpuEvaluator::new(ctx, &keys)?;
            run.evaluate(&gpu, &mut report)?;
            let mut times = Vec::new();
            for _ in 0..=repeats.max(1) {
                let device = gpu.ring().upload(&poly);
                gpu.ring().sync()?;
                let start = Instant::now();
                gpu.ring().into_eval(device)?;
                gpu.ring().sync()?;
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
            report.push("ntt_forward_all_limbs", None, median(&mut times[1..]));
        }
    }
    emit(args, &params, &backend, keygen_ms, report)
}

struct Inputs {
    x: Vec<f64>,
    y: Vec<f64>,
    w: Vec<f64>,
}

/// One self-test run's fixed inputs.
struct Run<'a> {
    params: &'a Params,
    sk: &'a SecretKey,
    inputs: &'a Inputs,
    kernel: &'a [i64],
    repeats: usize,
    cx: &'a Ciphertext,
    cy: &'a Ciphertext,
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

impl Run<'_> {
    /// Times each evaluation operation on `backend` (resident operands,
    /// result left on the backend) and checks the decrypted result.
    fn evaluate<B: EvalBackend>(&self, backend: &B, report: &mut Report) -> Result<(), CliError>
    where
        CliError: From<B::Error>,
    {
        let Inputs { x, y, w } = self.inputs;
        let params = self.params;
        let check = |ct: &B::Ct, want: &[f64]| -> Result<(f64, f64), CliError> {
            Ok(precision_bits(&decrypt(self.sk, &backend.download(ct)?)?, want))
        };
        let time = |f: &dyn Fn() -> Result<B::Ct, B::Error>| -> Result<(B::Ct, f64), CliError> {
            timed(self.repeats, || {
                let out = f()?;
                backend.sync()?;
                Ok(out)
            })
        };
        let (cx, cy) = (backend.upload(self.cx)?, backend.upload(self.cy)?);

        let (sum, ms) = time(&|| backend.add(&cx, &cy))?;
        let want: Vec<f64> = x.iter().zip(y).map(|(a, b)| a + b).collect();
        report.push("add", Some(check(&sum, &want)?), ms);

        let level = self.cx.level();
        let pw = backend.encode(w, level, params.mul_plain_scale(level, self.cx.scale()))?;
        let (prod, ms) = time(&|| backend.rescale(&backend.mul_plain(&cx, &pw)?))?;
        let want: Vec<f64> = x.iter().zip(w).map(|(a, b)| a * b).collect();
        report.push("mul_plain_rescale", Some(check(&prod, &want)?), ms);

        let (prod, ms) = time(&|| backend.rescale(&backend.mul_relin(&cx, &cy)?))?;
        let want: Vec<f64> = x.iter().zip(y).map(|(a, b)| a * b).collect();
        report.push("mul_relin_rescale", Some(check(&prod, &want)?), ms);

        let (rot, ms) = time(&|| Ok(backend.rotate_hoisted(&cx, &[1])?.remove(0)))?;
        report.push("rotate", Some(check(&rot, &rotate_left(x, 1))?), ms);

        let (rots, ms) = timed(self.repeats, || {
            let out = backend.rotate_hoisted(&cx, self.kernel)?;
            backend.sync()?;
            Ok(out)
        })?;
        let mut worst = (f64::INFINITY, f64::INFINITY);
        for (ct, &s) in rots.iter().zip(self.kernel) {
            let p = check(ct, &rotate_left(x, s))?;
            worst = (worst.0.min(p.0), worst.1.min(p.1));
        }
        report.push("hoisted_rotate_9", Some(worst), ms);

        let squared = backend.mul_relin(&cx, &cx)?;
        let (rescaled, ms) = time(&|| backend.rescale(&squared))?;
        let want: Vec<f64> = x.iter().map(|a| a * a).collect();
        report.push("rescale", Some(check(&rescaled, &want)?), ms);
        Ok(())
    }
}

fn emit(
    args: &SelftestArgs,
    params: &Params,
    backend: &Chosen,
    keygen_ms: f64,
    report: Report,
) -> Result<(), CliError> {
    let threads = rayon::current_num_threads();
    let (backend_name, adapter) = backend.describe();
    if args.json {
        print_json(&json!({
            "preset": params.name(),
            "backend": backend_name,
            "adapter": adapter,
            "threads": threads,
            "keygen_ms": (keygen_ms * 10.0).round() / 10.0,
            "ops": report.rows,
        }));
    } else {
        println!(
            "{} on {backend_name}{} ({threads} CPU threads), key generation {keygen_ms:.0} ms; encrypt and decrypt run on the CPU",
            params.name().unwrap_or("literal"),
            adapter.map(|a| format!(" ({a})")).unwrap_or_default()
        );
        println!("{:<24}{:>12}{:>12}{:>12}", "op", "bits(mean)", "bits(min)", "median ms");
        for row in &report.rows {
            let bits = |k: &str| row[k].as_f64().map_or("-".to_string(), |b| format!("{b:.1}"));
            println!(
                "{:<24}{:>12}{:>12}{:>12.3}",
                row["name"].as_str().unwrap_or(""),
                bits("precision_bits"),
                bits("min_precision_bits"),
                row["median_ms"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}
