//! `latent-he` subcommands (clap). Each command with `--json` prints exactly
//! one JSON object on stdout; human-readable notes go to stderr.

mod backend;
mod bench;
mod check;
mod crypt;
mod demo;
mod devices;
mod export;
mod infer;
mod memory;
mod merge;
mod metrics;
mod model_args;
mod params;
mod predict;
mod progress;
mod score;
mod selftest;
mod serve;
mod synth;
mod vqgan;

use crate::ckks::serialize::FileError;
use crate::ckks::CkksError;
use crate::pipeline::{BackendKind, PipelineError};
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
    /// A check that ran and failed (exit status 1): encrypted results past
    /// `--max-drift`, images that could not be scored.
    #[error("{0}")]
    CheckFailed(String),
    /// Input refused that no single path names (exit status 3).
    #[error("{0}")]
    Refused(String),
    /// Not enough memory, disk or device for what was asked, or an output
    /// folder another process holds (exit status 4).
    #[error("{0}")]
    Resources(String),
    /// A synthetic data set that cannot be made.
    #[error(transparent)]
    Synth(#[from] crate::data::synth::SynthError),
    /// A combination of flags that makes no sense.
    #[error("{0}")]
    Usage(String),
    /// The service could not start or read its files.
    #[error(transparent)]
    Service(#[from] crate::service::ServiceError),
    /// A server refused a request, failed a job or could not be reached.
    #[error(transparent)]
    Client(#[from] crate::service::client::ClientError),
}

impl From<PipelineError> for CliError {
    /// Each pipeline failure as the CLI failure of the same kind, with the
    /// same message.
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Ckks(e) => CliError::Ckks(e),
            PipelineError::Gpu(e) => CliError::Gpu(e),
            PipelineError::GpuEval(e) => CliError::GpuEval(e),
            PipelineError::Vqgan(e) => CliError::Vqgan(e),
            PipelineError::File(e) => CliError::File(e),
            PipelineError::Io { path, source } => CliError::Io { path, source },
            PipelineError::Input { path, reason } => CliError::Input { path, reason },
            PipelineError::Refused(m) => CliError::Refused(m),
            PipelineError::Resources(m) => CliError::Resources(m),
            PipelineError::Config(m) => CliError::Usage(m),
            PipelineError::CheckFailed(m) => CliError::CheckFailed(m),
        }
    }
}

/// What kind of failure an error is; each has its exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A check that ran and failed: exit status 1.
    Check,
    /// A command line that makes no sense: exit status 2 (clap's too).
    Usage,
    /// Input refused (a file, a key, a model, an image): exit status 3.
    Input,
    /// Not enough memory or disk, no GPU adapter where `--backend gpu`
    /// was asked for, an output folder another `score` holds: exit status 4.
    Resources,
}

impl ErrorKind {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Self::Check => 1,
            Self::Usage => 2,
            Self::Input => 3,
            Self::Resources => 4,
        }
    }

    /// The name `--json` errors give as `kind`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Check => "check",
            Self::Usage => "usage",
            Self::Input => "input",
            Self::Resources => "resources",
        }
    }
}

/// Out of memory or disk: a resource, not the input.
fn io_kind(e: &std::io::Error) -> ErrorKind {
    match e.kind() {
        std::io::ErrorKind::OutOfMemory | std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            ErrorKind::Resources
        }
        _ => ErrorKind::Input,
    }
}

impl CliError {
    /// What kind of failure this is (and so the exit status).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::ChecksFailed | Self::CheckFailed(_) => ErrorKind::Check,
            Self::Usage(_) => ErrorKind::Usage,
            Self::Resources(_) | Self::Gpu(_) | Self::GpuEval(crate::ckks::gpu_eval::GpuEvalError::Gpu(_)) => {
                ErrorKind::Resources
            }
            Self::Io { source, .. } => io_kind(source),
            Self::Service(crate::service::ServiceError::Config(_)) => ErrorKind::Usage,
            Self::Service(crate::service::ServiceError::Io { source, .. }) => io_kind(source),
            Self::Client(crate::service::client::ClientError::Http { .. }) => ErrorKind::Resources,
            Self::File(e) => match e {
                FileError::Io { source, .. } => io_kind(source),
                _ => ErrorKind::Input,
            },
            Self::Ckks(_)
            | Self::GpuEval(_)
            | Self::Vqgan(_)
            | Self::Input { .. }
            | Self::Refused(_)
            | Self::Synth(_)
            | Self::Service(_)
            | Self::Client(_) => ErrorKind::Input,
        }
    }
}

/// Exit statuses, as `--help` lists them.
const EXIT_STATUS_HELP: &str = "Exit status: 0 success; 1 a check that ran and failed (`check` mismatch, \
`score` drift past --max-drift, images that failed unless --allow-failed); 2 usage; 3 bad input (a file, \
key, model or image refused); 4 resources (memory, disk, no GPU adapter for --backend gpu). With --json, \
errors are printed on stderr as {\"error\": {\"kind\", \"message\"}}.";

/// Which implementation runs the arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// The CPU reference (rayon across limbs; RAYON_NUM_THREADS sets threads).
    Cpu,
    /// WGSL kernels through wgpu (Vulkan, Metal, DX12).
    Gpu,
}

impl From<BackendChoice> for BackendKind {
    fn from(choice: BackendChoice) -> Self {
        match choice {
            BackendChoice::Cpu => BackendKind::Cpu,
            BackendChoice::Gpu => BackendKind::Gpu,
        }
    }
}

#[derive(Parser)]
#[command(
    name = "latent-he",
    version,
    about = "Encrypted chest X-ray inference in latent space (RNS-CKKS)",
    after_help = EXIT_STATUS_HELP
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
    /// Write a model's client bundle (parameters, layouts, rotations, classes, fingerprint; no weights).
    ExportClient(export::ExportClientArgs),
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
    Score(Box<score::ScoreArgs>),
    /// Fold the folders that shards of one `score` run wrote into one, from their files alone (no model or keys).
    Merge(merge::MergeArgs),
    /// Encrypted inference time per image across models, latent sizes and backends (the paper's figure 5a).
    Bench(bench::BenchArgs),
    /// Serve models over HTTP: clients register public keys and send ciphertexts; the server never sees a secret key.
    Serve(serve::ServeArgs),
    /// Bearer tokens for `serve`.
    #[command(subcommand)]
    Token(serve::TokenCommand),
    /// The client's side of `serve`: encrypt, send, wait, fetch, decrypt.
    #[command(subcommand)]
    Client(serve::ClientCommand),
}

/// Whether the command line asks for JSON output.
fn wants_json() -> bool {
    std::env::args_os().skip(1).any(|a| a == "--json")
}

/// Prints an error of `kind` on stderr: one line, or under `--json` one
/// JSON object `{"error": {"kind", "message"}}`.
fn report_error(kind: ErrorKind, message: &str) {
    if wants_json() {
        eprintln!(
            "{}",
            serde_json::json!({"error": {"kind": kind.name(), "message": message}})
        );
    } else {
        eprintln!("error: {message}");
    }
}

/// Parses the command line, runs the command, maps errors to their exit
/// status ([`ErrorKind::code`]).
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() && wants_json() => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            report_error(ErrorKind::Usage, first.trim_start_matches("error: ").trim());
            return ExitCode::from(ErrorKind::Usage.code());
        }
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Params(args) => params::run(&args),
        Command::Devices(args) => devices::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Keygen(args) => crypt::keygen(&args),
        Command::ExportClient(args) => export::run(&args),
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
        Command::Merge(args) => merge::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Serve(args) => serve::run_serve(&args),
        Command::Token(command) => serve::run_token(&command),
        Command::Client(command) => serve::run_client(&command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let kind = e.kind();
            report_error(kind, &e.to_string());
            ExitCode::from(kind.code())
        }
    }
}

/// `x` rounded to three decimals (seconds in reports: milliseconds).
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Prints `value` as one line of JSON on stdout.
fn print_json(value: &serde_json::Value) {
    println!("{value}");
}
