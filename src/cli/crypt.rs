//! `keygen`, `encrypt`, `decrypt`: the client's key material and the packing
//! of `.npy` arrays into ciphertexts.

use super::model_args::{parse_batch, ModelHints};
use super::params::ParamsSource;
use super::predict::sigmoid;
use super::progress::Stderr;
use super::{print_json, BackendChoice, CliError};
use crate::ckks::sealed::Passphrase;
use crate::ckks::serialize::{load_ciphertexts, save_ciphertexts};
use crate::ckks::{DecryptionNoise, KeyMemory};
use crate::pipeline::client::{encrypt_latents, encrypt_packed, key_levels_with, make_keys, Contents, MadeKeys};
use crate::pipeline::{read_latents, read_npy_f64, ClientBundle, KeyDir, ModelBinding, Planned};
use clap::Args;
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::WriteNpyExt;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `keygen`.
#[derive(Args, Debug)]
pub struct KeygenArgs {
    #[command(flatten)]
    source: ParamsSource,
    /// Directory for secret.key and public.key (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Slot rotations that get a Galois key, e.g. 1,2,-3 (added to the model's).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    rotations: Vec<i64>,
    /// Keys for a classifier (safetensors): the preset from its plan
    /// (`--preset` picks one, default the smallest that fits), the Galois keys
    /// it rotates by at the levels it uses them, and DIR/model.json so that
    /// `encrypt` and `decrypt` know its layout.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Keys for the model of a client bundle (`export-client`): its preset,
    /// the Galois keys its plan needs and DIR/model.json with its layout
    /// and fingerprint; the weights are not needed.
    #[arg(long, conflicts_with_all = ["model", "preset", "literal", "batch"])]
    client: Option<PathBuf>,
    #[command(flatten)]
    hints: ModelHints,
    /// With --model: images sharing one set of ciphertexts.
    #[arg(long, default_value_t = 1, value_parser = parse_batch)]
    batch: usize,
    /// Store secret.key encrypted under the passphrase in FILE (its bytes
    /// without a final newline; Argon2id and ChaCha20-Poly1305): `decrypt`
    /// then needs the same file.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Backend that runs the arithmetic: only `cpu` so far for this client-side step.
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendChoice,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Arguments shared by `encrypt` and `decrypt`.
#[derive(Args, Debug)]
pub struct CryptArgs {
    /// Key directory: `encrypt` reads only public.key, `decrypt` secret.key.
    #[arg(long)]
    keys: PathBuf,
    /// `encrypt`: a float32 or float64 .npy array of any shape; `decrypt`: a
    /// ciphertext file.
    #[arg(long)]
    input: PathBuf,
    /// `encrypt`: the ciphertext file; `decrypt`: a float64 .npy array with the
    /// shape recorded at encryption (optional for logits, which `--json` prints).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Backend that runs the arithmetic: only `cpu` so far for this client-side step.
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendChoice,
    #[command(flatten)]
    secret: SecretArgs,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// How a client opens its secret key and floods what it decrypts; shared by
/// `decrypt` and `client infer`.
#[derive(Args, Debug)]
pub struct SecretArgs {
    /// Standard deviation of the Gaussian noise added to every decrypted
    /// value so that its low bits do not reveal the secret key (0: the
    /// exact decryption, which must not leave this machine).
    #[arg(long, default_value_t = DecryptionNoise::DEFAULT_SIGMA, value_parser = parse_noise)]
    decrypt_noise: f64,
    /// The file holding the passphrase of a secret key that `keygen
    /// --passphrase-file` encrypted.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

impl SecretArgs {
    /// The secret key of `dir`, opened with the passphrase when one is given.
    ///
    /// # Errors
    /// An unreadable passphrase file; the key's own errors.
    pub fn secret_key(&self, dir: &KeyDir) -> Result<crate::ckks::SecretKey, CliError> {
        let passphrase = self.passphrase_file.as_deref().map(Passphrase::read).transpose()?;
        Ok(dir.secret_key_with(passphrase.as_ref())?)
    }

    /// The flooding `--decrypt-noise` asks for.
    ///
    /// # Errors
    /// None in practice: the value was checked when parsed.
    pub fn noise(&self) -> Result<DecryptionNoise, CliError> {
        Ok(DecryptionNoise::gaussian(self.decrypt_noise)?)
    }
}

/// A `--decrypt-noise` value: finite and `>= 0`.
fn parse_noise(s: &str) -> Result<f64, String> {
    let sigma: f64 = s.parse().map_err(|e| format!("{e}"))?;
    DecryptionNoise::gaussian(sigma)
        .map(|n| n.sigma())
        .map_err(|_| format!("{s} is not a finite standard deviation >= 0"))
}

/// Refuses `--backend gpu` for the client-side steps that run only on the CPU.
fn cpu_only(backend: BackendChoice, command: &str) -> Result<(), CliError> {
    match backend {
        BackendChoice::Cpu => Ok(()),
        BackendChoice::Gpu => Err(CliError::Usage(format!(
            "`{command}` runs on the CPU only so far; pass --backend cpu (the GPU evaluates: selftest, check)"
        ))),
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Runs `keygen`.
pub fn keygen(args: &KeygenArgs) -> Result<(), CliError> {
    cpu_only(args.backend, "keygen")?;
    let planned = match &args.model {
        Some(m) => Some(Planned::load(
            m,
            &args.hints.options()?,
            args.source.preset.as_deref(),
            args.batch,
        )?),
        None => None,
    };
    let bundle = args.client.as_deref().map(ClientBundle::read).transpose()?;
    let (params, levels, binding) = match (&planned, &bundle) {
        (Some(p), _) => (
            p.params.clone(),
            Some(p.plan.key_levels()),
            Some(ModelBinding::new(&p.model, &p.params, &p.plan)),
        ),
        (None, Some(b)) => {
            let path = args.client.as_deref().unwrap_or(Path::new(""));
            let params = b.params().map_err(|e| CliError::Input {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            (params, Some(b.key_levels()), Some(b.binding.clone()))
        }
        (None, None) => (args.source.resolve()?, None, None),
    };
    // The model's keys at the levels its plan uses them; extra rotations at the top.
    let levels = key_levels_with(levels, &params, &args.rotations);
    let passphrase = args.passphrase_file.as_deref().map(Passphrase::read).transpose()?;
    let dir = KeyDir::new(&args.out);
    let observer = Stderr::keygen(args.json);
    let made = make_keys(&dir, &params, &levels, binding.as_ref(), passphrase.as_ref(), &observer);
    observer.finish();
    let MadeKeys { sk, keys, seconds } = made?;
    let (secret_path, public_path) = (dir.secret_path(), dir.public_path());
    let summary = json!({
        "dir": args.out.display().to_string(),
        "key_id": sk.id().to_string(),
        "preset": params.name(),
        "fingerprint": params.fingerprint_hex(),
        "model": binding.as_ref().map(|b| b.model.clone()),
        "model_fingerprint": binding.as_ref().and_then(|b| b.fingerprint.clone()),
        "rotations": keys.rotations(),
        "secret_key_bytes": file_size(&secret_path),
        "secret_key_encrypted": passphrase.is_some(),
        "public_key_bytes": file_size(&public_path),
        "seconds": (seconds * 1000.0).round() / 1000.0,
    });
    if args.json {
        print_json(&summary);
    } else {
        println!(
            "wrote {} (secret, keep it) and {} ({} bytes, for the server); key {}",
            secret_path.display(),
            public_path.display(),
            summary["public_key_bytes"],
            sk.id()
        );
    }
    Ok(())
}

fn required_out(args: &CryptArgs) -> Result<&Path, CliError> {
    args.out
        .as_deref()
        .ok_or_else(|| CliError::Usage("--out is required here".into()))
}

/// Runs `encrypt`: laid out for the model when the key directory has a
/// model binding, else packed in order.
pub fn encrypt(args: &CryptArgs) -> Result<(), CliError> {
    cpu_only(args.backend, "encrypt")?;
    let out = required_out(args)?;
    let dir = KeyDir::new(&args.keys);
    // Encryption reads the public key (always expanded), no evaluation key.
    let keys = dir.public_keys(KeyMemory::Compact)?;
    let binding = dir.binding(keys.params())?;
    let start = Instant::now();
    let (file, images) = match &binding {
        Some(b) => {
            let x = read_latents(&args.input)?;
            (encrypt_latents(&keys, b, &x, &args.input)?, Some(x.dim().0))
        }
        None => {
            let (shape, values) = read_npy_f64(&args.input)?;
            (encrypt_packed(&keys, shape, &values, &args.input)?, None)
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let params = keys.params().clone();
    save_ciphertexts(out, &file, &params)?;
    if args.json {
        print_json(&json!({
            "out": out.display().to_string(),
            "shape": file.shape,
            "values": file.values,
            "images": images,
            "model": binding.as_ref().map(|b| &b.model),
            "ciphertexts": file.ciphertexts.len(),
            "level": file.ciphertexts.first().map(|c| c.level()),
            "bytes": file_size(out),
            "seconds": (seconds * 1000.0).round() / 1000.0,
        }));
    } else {
        println!(
            "encrypted {} values {:?} into {} ciphertext(s): {}",
            file.values,
            file.shape,
            file.ciphertexts.len(),
            out.display()
        );
    }
    Ok(())
}

/// Runs `decrypt`: logits of a model (with classes and sigmoid
/// probabilities), latents in a model's layout, or values packed in order.
pub fn decrypt(args: &CryptArgs) -> Result<(), CliError> {
    cpu_only(args.backend, "decrypt")?;
    let dir = KeyDir::new(&args.keys);
    let sk = args.secret.secret_key(&dir)?;
    let binding = dir.binding(sk.params())?;
    let file = load_ciphertexts(&args.input, sk.params())?;
    let start = Instant::now();
    let kind = Contents::of(binding.as_ref(), &file);
    if !matches!(kind, Contents::Logits(_)) {
        required_out(args)?;
    }
    let values = kind.decrypt(&sk, &file, args.secret.noise()?)?;
    let seconds = start.elapsed().as_secs_f64();
    let array = ArrayD::from_shape_vec(IxDyn(&file.shape), values).map_err(|e| CliError::Input {
        path: args.input.display().to_string(),
        reason: format!("recorded shape {:?} does not match the values: {e}", file.shape),
    })?;
    if let Some(out) = &args.out {
        let f = std::fs::File::create(out).map_err(io_error(out))?;
        array
            .write_npy(std::io::BufWriter::new(f))
            .map_err(|e| CliError::Input {
                path: out.display().to_string(),
                reason: e.to_string(),
            })?;
    }
    let level = file.ciphertexts.first().map(|c| c.level());
    let seconds = (seconds * 1000.0).round() / 1000.0;
    match kind {
        Contents::Logits(b) => {
            let logits: Vec<Vec<f64>> = array.outer_iter().map(|r| r.iter().copied().collect()).collect();
            let probabilities: Vec<Vec<f64>> = logits.iter().map(|r| r.iter().map(|&v| sigmoid(v)).collect()).collect();
            if args.json {
                print_json(&json!({
                    "classes": b.classes,
                    "logits": logits,
                    "probabilities": probabilities,
                    "model": b.model,
                    "level": level,
                    "seconds": seconds,
                }));
            } else {
                for (i, row) in probabilities.iter().enumerate() {
                    println!("image {i}:");
                    for (name, p) in b.classes.iter().zip(row) {
                        println!("  {name:<28} {p:.4}");
                    }
                }
            }
        }
        _ => {
            let out = required_out(args)?;
            if args.json {
                print_json(&json!({
                    "out": out.display().to_string(),
                    "shape": file.shape,
                    "level": level,
                    "seconds": seconds,
                }));
            } else {
                println!("decrypted {:?} into {}", file.shape, out.display());
            }
        }
    }
    Ok(())
}
