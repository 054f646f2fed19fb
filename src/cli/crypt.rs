//! `keygen`, `encrypt`, `decrypt`: the client's key material and the packing
//! of `.npy` arrays into ciphertexts.

use super::binding::{ModelBinding, Planned};
use super::model_args::{parse_batch, ModelHints};
use super::params::ParamsSource;
use super::predict::sigmoid;
use super::{print_json, BackendChoice, CliError};
use crate::ckks::sealed::{load_secret_key_with, save_sealed_secret_key, Passphrase};
use crate::ckks::serialize::{
    load_ciphertexts, load_public_keys_as, save_ciphertexts, save_public_keys, save_secret_key, CiphertextFile,
};
use crate::ckks::{encrypt_values, DecryptionNoise, KeyLevels, KeyMemory, PublicKeySet, SecretKey};
use crate::he_nn::{decrypt_batches, encrypt_batches};
use crate::nn::InputClip;
use clap::Args;
use ndarray::{Array4, ArrayD, IxDyn};
use ndarray_npy::WriteNpyExt;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Secret key file name inside a key directory (owner-only permissions).
pub const SECRET_KEY_FILE: &str = "secret.key";
/// Public key set file name inside a key directory (what the server gets).
pub const PUBLIC_KEY_FILE: &str = "public.key";

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
    /// `decrypt`: standard deviation of the Gaussian noise added to every
    /// decrypted value so that its low bits do not reveal the secret key
    /// (0: the exact decryption, which must not leave this machine).
    #[arg(long, default_value_t = DecryptionNoise::DEFAULT_SIGMA, value_parser = parse_noise)]
    decrypt_noise: f64,
    /// `decrypt`: the file holding the passphrase of a secret key that
    /// `keygen --passphrase-file` encrypted.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
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
    let passphrase = args.passphrase_file.as_deref().map(Passphrase::read).transpose()?;
    let planned = args
        .model
        .as_ref()
        .map(|m| Planned::load_from(m, &args.hints, args.source.preset.as_deref(), args.batch))
        .transpose()?;
    let params = match &planned {
        Some(p) => p.params.clone(),
        None => args.source.resolve()?,
    };
    // The model's keys at the levels its plan uses them; extra rotations at the top.
    let mut levels = planned
        .as_ref()
        .map_or_else(|| KeyLevels::top(&params, &[]), |p| p.plan.key_levels());
    for &r in &args.rotations {
        if !levels.rotations.iter().any(|&(s, _)| s == r) {
            levels.rotations.push((r, params.max_level()));
        }
    }
    std::fs::create_dir_all(&args.out).map_err(io_error(&args.out))?;
    let start = Instant::now();
    let sk = SecretKey::generate(&params);
    // Written, not evaluated with: the `a` halves are only ever seeds here.
    let keys = PublicKeySet::generate_at(&sk, &levels, KeyMemory::Compact);
    let seconds = start.elapsed().as_secs_f64();
    let (secret_path, public_path) = (args.out.join(SECRET_KEY_FILE), args.out.join(PUBLIC_KEY_FILE));
    // The binding goes first: a folder never holds new keys beside the
    // layout of the old ones, even when writing stops half way.
    ModelBinding::remove(&args.out)?;
    match &passphrase {
        Some(passphrase) => save_sealed_secret_key(&secret_path, &sk, passphrase)?,
        None => save_secret_key(&secret_path, &sk)?,
    }
    save_public_keys(&public_path, &keys)?;
    if let Some(p) = &planned {
        ModelBinding::new(&p.model, &p.params, &p.plan).write(&args.out)?;
    }
    let summary = json!({
        "dir": args.out.display().to_string(),
        "key_id": sk.id().to_string(),
        "preset": params.name(),
        "fingerprint": params.fingerprint_hex(),
        "model": planned.as_ref().map(|p| p.model.spec().to_string()),
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

/// Reads a float32 or float64 `.npy` file as f64 values with their shape
/// (its declared size checked before anything is allocated: [`crate::npy`]).
pub fn read_npy_f64(path: &Path) -> Result<(Vec<usize>, Vec<f64>), CliError> {
    let array = crate::npy::read_npy(path)
        .map_err(|e| CliError::Input {
            path: path.display().to_string(),
            reason: format!("not a float32/float64 .npy array ({e})"),
        })?
        .into_f64();
    let shape = array.shape().to_vec();
    // Row-major arrays give up their buffer (no copy of a large array).
    let values: Vec<f64> = if array.is_standard_layout() {
        let (values, offset) = array.into_raw_vec_and_offset();
        debug_assert!(offset.is_none_or(|o| o == 0));
        values
    } else {
        array.iter().copied().collect()
    };
    if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(CliError::Input {
            path: path.display().to_string(),
            reason: format!("element {i} is not finite ({v})"),
        });
    }
    Ok((shape, values))
}

/// Reads latents from a `.npy` array, `C x H x W` (one image) or
/// `B x C x H x W`.
///
/// # Errors
/// Unreadable or non-finite arrays, other ranks.
pub fn read_latents(path: &Path) -> Result<Array4<f64>, CliError> {
    let (shape, values) = read_npy_f64(path)?;
    let input_err = |reason: String| CliError::Input {
        path: path.display().to_string(),
        reason,
    };
    let dims = match shape.as_slice() {
        [c, h, w] => [1, *c, *h, *w],
        [b, c, h, w] => [*b, *c, *h, *w],
        _ => return Err(input_err(format!("shape {shape:?} is neither CxHxW nor BxCxHxW"))),
    };
    Array4::from_shape_vec(dims, values).map_err(|e| input_err(e.to_string()))
}

/// The values of `path` encrypted as the binding's model reads them: one
/// latent (`CxHxW`) or a batch (`BxCxHxW`), clamped as the model's inputs
/// are, each in the plan's input layout at its start level. Returns the file
/// and the batch size.
fn encrypt_for_model(
    keys: &PublicKeySet,
    binding: &ModelBinding,
    path: &Path,
) -> Result<(CiphertextFile, usize), CliError> {
    let x = read_latents(path)?;
    let (images, c, h, w) = x.dim();
    if [c, h, w] != binding.latent {
        return Err(CliError::Input {
            path: path.display().to_string(),
            reason: format!(
                "latents are {c}x{h}x{w}; the keys were made for {} reading {:?}",
                binding.model, binding.latent
            ),
        });
    }
    let params = keys.params();
    let flat = InputClip::clamped_values(binding.input_clip, x.iter());
    let ciphertexts = encrypt_batches(keys, params, &binding.input, &flat, binding.start_level)?;
    let file = CiphertextFile {
        shape: vec![images, c, h, w],
        values: images * c * h * w,
        ciphertexts,
    };
    Ok((file, images))
}

/// The values of `path` packed in order into as many ciphertexts as needed.
fn encrypt_packed(keys: &PublicKeySet, path: &Path) -> Result<CiphertextFile, CliError> {
    let (shape, values) = read_npy_f64(path)?;
    if values.is_empty() {
        return Err(CliError::Input {
            path: path.display().to_string(),
            reason: "the array is empty".into(),
        });
    }
    let ciphertexts = values
        .chunks(keys.params().slots())
        .map(|chunk| encrypt_values(keys, chunk))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CiphertextFile {
        shape,
        values: values.len(),
        ciphertexts,
    })
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
    // Encryption reads the public key (always expanded), no evaluation key.
    let keys = load_public_keys_as(&args.keys.join(PUBLIC_KEY_FILE), KeyMemory::Compact)?;
    let binding = ModelBinding::read_for(&args.keys, keys.params())?;
    let start = Instant::now();
    let (file, images) = match &binding {
        Some(b) => {
            let (file, images) = encrypt_for_model(&keys, b, &args.input)?;
            (file, Some(images))
        }
        None => (encrypt_packed(&keys, &args.input)?, None),
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

/// Decrypts every ciphertext of `file`, flooded with `noise`, and trims to
/// the recorded values.
pub fn decrypt_file(sk: &SecretKey, file: &CiphertextFile, noise: DecryptionNoise) -> Result<Vec<f64>, CliError> {
    let mut values = Vec::with_capacity(file.values);
    for ct in &file.ciphertexts {
        values.extend(noise.decrypt(sk, ct)?);
    }
    values.truncate(file.values);
    Ok(values)
}

/// What a ciphertext file holds, read against the key directory's binding.
enum Contents<'a> {
    /// `B x K` logits, each image in the binding's output layout.
    Logits(&'a ModelBinding),
    /// `B x C x H x W` latents in the binding's input layout.
    Latents(&'a ModelBinding),
    /// Values packed in order.
    Packed,
}

fn contents<'a>(binding: Option<&'a ModelBinding>, file: &CiphertextFile) -> Contents<'a> {
    let Some(b) = binding else { return Contents::Packed };
    let count = file.ciphertexts.len();
    let sets = |n: usize| n.div_ceil(b.batch.max(1));
    // The server's merges leave the logits of `lane_count` input sets in one output set.
    let output_sets = |n: usize| sets(n).div_ceil(b.output.lane_count());
    match file.shape.as_slice() {
        [n, k] if *k == b.classes.len() && count == output_sets(*n) * b.output.cts() => Contents::Logits(b),
        [n, c, h, w] if [*c, *h, *w] == b.latent && count == sets(*n) * b.input.cts() => Contents::Latents(b),
        _ => Contents::Packed,
    }
}

/// Runs `decrypt`: logits of a model (with classes and sigmoid
/// probabilities), latents in a model's layout, or values packed in order.
pub fn decrypt(args: &CryptArgs) -> Result<(), CliError> {
    cpu_only(args.backend, "decrypt")?;
    let passphrase = args.passphrase_file.as_deref().map(Passphrase::read).transpose()?;
    let sk = load_secret_key_with(&args.keys.join(SECRET_KEY_FILE), passphrase.as_ref())?;
    let binding = ModelBinding::read_for(&args.keys, sk.params())?;
    let file = load_ciphertexts(&args.input, sk.params())?;
    let start = Instant::now();
    let kind = contents(binding.as_ref(), &file);
    if !matches!(kind, Contents::Logits(_)) {
        required_out(args)?;
    }
    let noise = DecryptionNoise::gaussian(args.decrypt_noise)?;
    let values = match kind {
        Contents::Logits(b) => decrypt_batches(&sk, &b.output, &file.ciphertexts, file.values, noise)?,
        Contents::Latents(b) => decrypt_batches(&sk, &b.input, &file.ciphertexts, file.values, noise)?,
        Contents::Packed => decrypt_file(&sk, &file, noise)?,
    };
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
