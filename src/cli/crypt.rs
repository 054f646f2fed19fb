//! `keygen`, `encrypt`, `decrypt`: the client's key material and the packing
//! of `.npy` arrays into ciphertexts.

use super::params::ParamsSource;
use super::{print_json, BackendChoice, CliError};
use crate::ckks::serialize::{
    load_ciphertexts, load_public_keys, load_secret_key, save_ciphertexts, save_public_keys, save_secret_key,
    CiphertextFile,
};
use crate::ckks::{decrypt as decrypt_ct, encrypt_values, PublicKeySet, SecretKey};
use clap::Args;
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
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
    /// Slot rotations that get a Galois key, e.g. 1,2,-3.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    rotations: Vec<i64>,
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
    /// shape recorded at encryption.
    #[arg(long)]
    out: PathBuf,
    /// Backend that runs the arithmetic: only `cpu` so far for this client-side step.
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendChoice,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
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
    let params = args.source.resolve()?;
    std::fs::create_dir_all(&args.out).map_err(io_error(&args.out))?;
    let start = Instant::now();
    let sk = SecretKey::generate(&params);
    let keys = PublicKeySet::generate(&sk, &args.rotations);
    let seconds = start.elapsed().as_secs_f64();
    let (secret_path, public_path) = (args.out.join(SECRET_KEY_FILE), args.out.join(PUBLIC_KEY_FILE));
    save_secret_key(&secret_path, &sk)?;
    save_public_keys(&public_path, &keys)?;
    let summary = json!({
        "dir": args.out.display().to_string(),
        "key_id": sk.id().to_string(),
        "preset": params.name(),
        "fingerprint": params.fingerprint_hex(),
        "rotations": keys.rotations(),
        "secret_key_bytes": file_size(&secret_path),
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

/// Reads a float32 or float64 `.npy` file as f64 values with their shape.
pub fn read_npy_f64(path: &Path) -> Result<(Vec<usize>, Vec<f64>), CliError> {
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    let bad = |e: ndarray_npy::ReadNpyError| CliError::Input {
        path: path.display().to_string(),
        reason: format!("not a float32/float64 .npy array ({e})"),
    };
    let (shape, values) = match ArrayD::<f64>::read_npy(bytes.as_slice()) {
        Ok(a) => (a.shape().to_vec(), a.iter().copied().collect::<Vec<_>>()),
        Err(ndarray_npy::ReadNpyError::WrongDescriptor(_)) => {
            let a = ArrayD::<f32>::read_npy(bytes.as_slice()).map_err(bad)?;
            (a.shape().to_vec(), a.iter().map(|&v| f64::from(v)).collect())
        }
        Err(e) => return Err(bad(e)),
    };
    if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(CliError::Input {
            path: path.display().to_string(),
            reason: format!("element {i} is not finite ({v})"),
        });
    }
    Ok((shape, values))
}

/// Runs `encrypt`.
pub fn encrypt(args: &CryptArgs) -> Result<(), CliError> {
    cpu_only(args.backend, "encrypt")?;
    let keys = load_public_keys(&args.keys.join(PUBLIC_KEY_FILE))?;
    let (shape, values) = read_npy_f64(&args.input)?;
    if values.is_empty() {
        return Err(CliError::Input {
            path: args.input.display().to_string(),
            reason: "the array is empty".into(),
        });
    }
    let params = keys.params().clone();
    let start = Instant::now();
    let ciphertexts = values
        .chunks(params.slots())
        .map(|chunk| encrypt_values(&keys, chunk))
        .collect::<Result<Vec<_>, _>>()?;
    let seconds = start.elapsed().as_secs_f64();
    let file = CiphertextFile {
        shape: shape.clone(),
        values: values.len(),
        ciphertexts,
    };
    save_ciphertexts(&args.out, &file, &params)?;
    if args.json {
        print_json(&json!({
            "out": args.out.display().to_string(),
            "shape": shape,
            "values": values.len(),
            "ciphertexts": file.ciphertexts.len(),
            "level": params.max_level(),
            "bytes": file_size(&args.out),
            "seconds": (seconds * 1000.0).round() / 1000.0,
        }));
    } else {
        println!(
            "encrypted {} values {:?} into {} ciphertext(s): {}",
            values.len(),
            shape,
            file.ciphertexts.len(),
            args.out.display()
        );
    }
    Ok(())
}

/// Decrypts every ciphertext of `file` and trims to the recorded values.
pub fn decrypt_file(sk: &SecretKey, file: &CiphertextFile) -> Result<Vec<f64>, CliError> {
    let mut values = Vec::with_capacity(file.values);
    for ct in &file.ciphertexts {
        values.extend(decrypt_ct(sk, ct)?);
    }
    values.truncate(file.values);
    Ok(values)
}

/// Runs `decrypt`.
pub fn decrypt(args: &CryptArgs) -> Result<(), CliError> {
    cpu_only(args.backend, "decrypt")?;
    let sk = load_secret_key(&args.keys.join(SECRET_KEY_FILE))?;
    let file = load_ciphertexts(&args.input, sk.params())?;
    let start = Instant::now();
    let values = decrypt_file(&sk, &file)?;
    let seconds = start.elapsed().as_secs_f64();
    let array = ArrayD::from_shape_vec(IxDyn(&file.shape), values).map_err(|e| CliError::Input {
        path: args.input.display().to_string(),
        reason: format!("recorded shape {:?} does not match the values: {e}", file.shape),
    })?;
    let out = std::fs::File::create(&args.out).map_err(io_error(&args.out))?;
    array
        .write_npy(std::io::BufWriter::new(out))
        .map_err(|e| CliError::Input {
            path: args.out.display().to_string(),
            reason: e.to_string(),
        })?;
    if args.json {
        print_json(&json!({
            "out": args.out.display().to_string(),
            "shape": file.shape,
            "level": file.ciphertexts.first().map(|c| c.level()),
            "seconds": (seconds * 1000.0).round() / 1000.0,
        }));
    } else {
        println!("decrypted {:?} into {}", file.shape, args.out.display());
    }
    Ok(())
}
