//! `latent-he` subcommands (clap). Each command with `--json` prints exactly
//! one JSON object on stdout; human-readable notes go to stderr.

mod backend;
mod bench;
mod binding;
mod check;
mod crypt;
mod demo;
mod devices;
mod infer;
mod memory;
mod metrics;
mod model_args;
mod params;
mod predict;
mod score;
mod selftest;
mod session;
mod synth;
mod vqgan;

use crate::ckks::serialize::FileError;
use crate::ckks::CkksError;
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use thiserror::Error;

/// What a command can fail with; printed as one line.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CliError {
    /// A CKKS refusal (parameters, levels, keys, values).
    #[error(transparent)]
    Ckks(#[from] CkksError),
    /// The GPU could not be used or failed.
    #[error(transparent)]
    Gpu(#[from] crate::backend::gpu::GpuError),
    /// A GPU evaluator refusal or failure.
    #[error(transparent)]
    GpuEval(#[from] crate::ckks::gpu_eval::GpuEvalError),
    /// A VQGAN file that cannot be read.
    #[error(transparent)]
    Vqgan(#[from] crate::vqgan::VqganError),
    /// A key or ciphertext file that cannot be used.
    #[error(transparent)]
    File(#[from] FileError),
    /// Reading or writing a user file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// An input array that cannot be used.
    #[error("{path}: {reason}")]
    Input {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// `check` found words that differ between the backends (exit status 1).
    #[error("the GPU and CPU results differ")]
    ChecksFailed,
    /// A synthetic data set that cannot be made.
    #[error(transparent)]
    Synth(#[from] crate::data::synth::SynthError),
    /// A combination of flags that makes no sense.
    #[error("{0}")]
    Usage(String),
}

/// Which implementation runs the arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// The CPU reference (rayon across limbs; RAYON_NUM_THREADS sets threads).
    Cpu,
    /// WGSL kernels through wgpu (Vulkan, Metal, DX12).
    Gpu,
}

#[derive(Parser)]
#[command(
    name = "latent-he",
    version,
    about = "Encrypted chest X-ray inference in latent space (RNS-CKKS)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything on bundled defaults: synthetic X-rays, VQGAN, encrypted ResNet20, findings side by side.
    Demo(demo::DemoArgs),
    /// Show a parameter set: primes, levels, security.
    Params(params::ParamsArgs),
    /// List the GPU adapters wgpu can see, best first.
    Devices(devices::DevicesArgs),
    /// Run every operation on the CPU and the GPU on the same inputs and compare the words.
    Check(check::CheckArgs),
    /// Generate a secret key and the public key set (public, relinearization, Galois keys).
    Keygen(crypt::KeygenArgs),
    /// Encrypt a float32/float64 .npy array with the public key.
    Encrypt(crypt::CryptArgs),
    /// Decrypt a ciphertext file into a float64 .npy array.
    Decrypt(crypt::CryptArgs),
    /// Time and check every CKKS operation on fresh random data.
    Selftest(selftest::SelftestArgs),
    /// AUROC and F1 (micro, macro, weighted, per class) of multi-label scores against 0/1 labels, from two CSVs.
    Metrics(metrics::MetricsArgs),
    /// Plaintext inference of a classifier (safetensors) on latents (.npy): logits and sigmoid probabilities.
    Predict(predict::PredictArgs),
    /// Lower a classifier to CKKS: preset, levels, rotations, key switches and sizes, per layer.
    Plan(infer::PlanArgs),
    /// The server step: run a classifier on encrypted latents with the public key set only.
    Infer(infer::InferArgs),
    /// Keygen, encrypt, infer, decrypt and the plaintext prediction side by side.
    Run(infer::RunArgs),
    /// Compress images to latents with a VQGAN encoder (the client's first step).
    Encode(vqgan::EncodeArgs),
    /// Reconstruct images from latents with the VQGAN decoder, with PSNR against the originals.
    Decode(vqgan::DecodeArgs),
    /// Write a synthetic chest X-ray set in NIH ChestX-ray14's layout (images, CSV, split lists).
    Synth(synth::SynthArgs),
    /// Score a whole test set end to end (plaintext and encrypted side by side), resumable.
    Score(score::ScoreArgs),
    /// Encrypted inference time per image across models, latent sizes and backends (the paper's figure 5a).
    Bench(bench::BenchArgs),
}

/// Parses the command line, runs the command, maps errors to exit status 2.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Params(args) => params::run(&args),
        Command::Devices(args) => devices::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Keygen(args) => crypt::keygen(&args),
        Command::Encrypt(args) => crypt::encrypt(&args),
        Command::Decrypt(args) => crypt::decrypt(&args),
        Command::Selftest(args) => selftest::run(&args),
        Command::Metrics(args) => metrics::run(&args),
        Command::Predict(args) => predict::run(&args),
        Command::Plan(args) => infer::plan(&args),
        Command::Infer(args) => infer::infer(&args),
        Command::Run(args) => infer::run(&args),
        Command::Encode(args) => vqgan::encode(&args),
        Command::Decode(args) => vqgan::decode(&args),
        Command::Synth(args) => synth::run(&args),
        Command::Score(args) => score::run(&args),
        Command::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::ChecksFailed) => {
            eprintln!("error: {}", CliError::ChecksFailed);
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Prints `value` as one line of JSON on stdout.
fn print_json(value: &serde_json::Value) {
    println!("{value}");
}
