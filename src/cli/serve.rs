//! `serve`, `token new` and `client infer`: the protocol over HTTP. The
//! service itself is [`crate::service`]; this module parses flags and
//! prints.

use super::backend::DeviceArgs;
use super::crypt::SecretArgs;
use super::memory::DEFAULT_LOCKSTEP;
use super::vqgan::ImageSource;
use super::{print_json, round3, CliError};
use crate::ckks::serialize::{load_ciphertexts, save_ciphertexts};
use crate::ckks::KeyMemory;
use crate::pipeline::client::{encrypt_latents, Contents};
use crate::pipeline::{read_latents, sigmoid, Chosen, KeyDir, LoadedVqgan};
use crate::service::client::RemoteServer;
use crate::service::engine::Engine;
use crate::service::tokens::Tokens;
use crate::service::{serve, ServeConfig};
use clap::{Args, Subcommand};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Arguments of `serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A folder of classifiers (`NAME.safetensors`, each served as NAME).
    #[arg(long)]
    models: PathBuf,
    /// The state folder: registered public keys, jobs and their ciphertexts.
    #[arg(long)]
    state: PathBuf,
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Tokens file (`token new`); required unless listening on loopback.
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// Jobs one token may have queued or running.
    #[arg(long, default_value_t = 16)]
    max_queue: usize,
    /// Images one job may hold.
    #[arg(long, default_value_t = 64)]
    max_images: usize,
    /// Gigabytes of public keys one token may register.
    #[arg(long, default_value_t = 64.0)]
    max_key_storage_gb: f64,
    /// Image sets evaluated together, step by step (as `infer --lockstep`).
    #[arg(long, default_value_t = DEFAULT_LOCKSTEP, value_parser = clap::value_parser!(u16).range(1..=64))]
    lockstep: u16,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Take keys under insecure (test-sized) parameter presets.
    #[arg(long)]
    allow_insecure: bool,
    /// Stop after this many seconds without a request and with no job left.
    #[arg(long)]
    idle_exit: Option<u64>,
    #[command(flatten)]
    device: DeviceArgs,
    /// Print the listening address as one JSON object.
    #[arg(long)]
    json: bool,
}

/// `token` subcommands.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Add a bearer token to a tokens file and print it (only this once).
    New(TokenNewArgs),
}

/// Arguments of `token new`.
#[derive(Args, Debug)]
pub struct TokenNewArgs {
    /// The tokens file (created with owner-only permissions).
    #[arg(long)]
    tokens: PathBuf,
    /// The owner's name: its keys and jobs are its own.
    #[arg(long)]
    name: String,
    /// Print `{"name", "token"}`.
    #[arg(long)]
    json: bool,
}

/// `client` subcommands.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Encode, encrypt, send to a server, wait, fetch and decrypt.
    Infer(ClientInferArgs),
}

/// Arguments of `client infer`.
#[derive(Args, Debug)]
pub struct ClientInferArgs {
    /// The server's base URL (http:// or https://).
    #[arg(long)]
    server: String,
    /// Bearer token (else $LATENT_HE_TOKEN).
    #[arg(long, env = "LATENT_HE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A PEM certificate to trust besides the system's (a private CA).
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Key folder of `keygen --model` for the served model (the secret key
    /// never leaves it).
    #[arg(long)]
    keys: PathBuf,
    /// The served model's name (`GET /v1/models`).
    #[arg(long)]
    model: String,
    /// Latents (.npy, CxHxW or BxCxHxW), or with --vqgan an image (PNG,
    /// JPEG, DICOM) or a folder of images.
    #[arg(long)]
    input: PathBuf,
    /// The client's VQGAN, to encode images.
    #[arg(long)]
    vqgan: Option<PathBuf>,
    #[command(flatten)]
    secret: SecretArgs,
    /// Print one JSON object (as `decrypt --json`).
    #[arg(long)]
    json: bool,
}

/// Runs `serve`.
pub fn run_serve(args: &ServeArgs) -> Result<(), CliError> {
    let chosen = args.device.resolve()?;
    let engine = Engine::open(&args.models, chosen, args.lockstep, args.allow_insecure)?;
    let names: Vec<String> = engine.names().map(str::to_string).collect();
    let (backend, adapter) = engine.backend();
    let json = args.json;
    let tls = args.tls_cert.clone().zip(args.tls_key.clone());
    let scheme = if tls.is_some() { "https" } else { "http" };
    let on_listening = Box::new(move |addr: SocketAddr| {
        if json {
            print_json(
                &json!({"listening": addr.to_string(), "url": format!("{scheme}://{addr}"), "models": names, "backend": backend, "adapter": adapter}),
            );
        } else {
            println!("listening on {scheme}://{addr}: {} on the {backend}", names.join(", "));
        }
    });
    serve(ServeConfig {
        engine,
        state: args.state.clone(),
        listen: args.listen,
        tokens: args.tokens.clone(),
        max_queue: args.max_queue.max(1),
        max_images: args.max_images.max(1),
        max_key_storage: (args.max_key_storage_gb.max(0.0) * 1e9) as u64,
        tls,
        idle_exit: args.idle_exit.map(Duration::from_secs),
        on_listening,
    })?;
    Ok(())
}

/// Runs `token`.
pub fn run_token(command: &TokenCommand) -> Result<(), CliError> {
    let TokenCommand::New(args) = command;
    let token = Tokens::add(&args.tokens, &args.name)?;
    if args.json {
        print_json(&json!({"name": args.name, "token": token}));
    } else {
        println!("{token}");
        eprintln!(
            "token for {:?} added to {}; it is not shown again",
            args.name,
            args.tokens.display()
        );
    }
    Ok(())
}

/// Runs `client`.
pub fn run_client(command: &ClientCommand) -> Result<(), CliError> {
    let ClientCommand::Infer(args) = command;
    let start = Instant::now();
    let dir = KeyDir::new(&args.keys);
    let keys = dir.public_keys(KeyMemory::Compact)?;
    let binding = dir.binding(keys.params())?.ok_or_else(|| CliError::Input {
        path: args.keys.display().to_string(),
        reason: "no model.json: make the keys with `keygen --client` (or `--model`) for the served model".into(),
    })?;
    let latents = match &args.vqgan {
        None => read_latents(&args.input)?,
        Some(vqgan) => {
            let (vq, _) = LoadedVqgan::load_on(vqgan, None, &Chosen::Cpu)?;
            let source = ImageSource::open(&args.input)?;
            let input = args.input.display().to_string();
            source
                .map_batches(
                    4,
                    |x| vq.encode(x, false),
                    |reason| CliError::Input {
                        path: input.clone(),
                        reason,
                    },
                )?
                .mapv(f64::from)
        }
    };
    let file = encrypt_latents(&keys, &binding, &latents, &args.input)?;
    let images = file.shape[0];
    let work = tempdir()?;
    let (sent, received) = (work.join("input.ct"), work.join("output.ct"));
    save_ciphertexts(&sent, &file, keys.params())?;
    drop(keys);
    let server = RemoteServer::new(&args.server, args.token.clone(), args.ca_cert.as_deref())?;
    let encrypt_s = start.elapsed().as_secs_f64();
    let registering = Instant::now();
    let registered = server.ensure_keys(
        &args.model,
        binding.batch,
        &binding.preset,
        binding.fingerprint.as_deref(),
        &dir.public_path(),
    )?;
    let register_s = registering.elapsed().as_secs_f64();
    let key_id = registered.key_id;
    let serving = Instant::now();
    let job_id = server.submit(&key_id, &sent)?;
    let bar = indicatif::ProgressBar::new(1);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} sets, {elapsed} elapsed")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let job = server.wait(&job_id, &mut |job| {
        bar.set_length(job.sets as u64);
        bar.set_position(job.sets_done as u64);
        bar.set_message(
            serde_json::to_value(job.state)
                .map(|v| v.to_string())
                .unwrap_or_default(),
        );
    })?;
    bar.finish_and_clear();
    server.download(&job_id, &received)?;
    let served_s = serving.elapsed().as_secs_f64();
    let decrypting = Instant::now();
    let sk = args.secret.secret_key(&dir)?;
    let out = load_ciphertexts(&received, sk.params())?;
    let classes = binding.classes.len();
    let values = match Contents::of(Some(&binding), &out) {
        contents @ Contents::Logits(_) if out.shape == [images, classes] => {
            contents.decrypt(&sk, &out, args.secret.noise()?)?
        }
        _ => {
            return Err(CliError::Input {
                path: args.server.clone(),
                reason: format!(
                    "the server sent {} ciphertexts of shape {:?}; expected the logits of {images} image(s)",
                    out.ciphertexts.len(),
                    out.shape
                ),
            })
        }
    };
    let _ = std::fs::remove_dir_all(&work);
    let logits: Vec<Vec<f64>> = values.chunks(classes).map(<[f64]>::to_vec).collect();
    let probabilities: Vec<Vec<f64>> = logits.iter().map(|r| r.iter().map(|&v| sigmoid(v)).collect()).collect();
    if args.json {
        print_json(&json!({
            "classes": binding.classes,
            "logits": logits,
            "probabilities": probabilities,
            "model": binding.model,
            "served_as": args.model,
            "key_id": key_id,
            "job_id": job_id,
            "key_upload": {
                "uploaded": registered.uploaded,
                "bytes": std::fs::metadata(dir.public_path()).map(|m| m.len()).ok(),
                "seconds": round3(register_s),
            },
            "seconds": {
                "encode_and_encrypt": round3(encrypt_s),
                "key_upload": round3(register_s),
                "server": round3(served_s),
                "server_evaluation": job.seconds.map(round3),
                "decrypt": round3(decrypting.elapsed().as_secs_f64()),
                "total": round3(start.elapsed().as_secs_f64()),
            },
        }));
    } else {
        for (i, row) in probabilities.iter().enumerate() {
            println!("image {i}:");
            for (name, p) in binding.classes.iter().zip(row) {
                println!("  {name:<28} {p:.4}");
            }
        }
    }
    Ok(())
}

/// A fresh private folder for the files sent and received.
fn tempdir() -> Result<PathBuf, CliError> {
    let dir = std::env::temp_dir().join(format!("latent-he-client-{}", crate::service::random_hex(8)));
    std::fs::create_dir_all(&dir).map_err(|source| CliError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    Ok(dir)
}
