//! `encode` and `decode`: the client's VQGAN, image to latent and latent to
//! image (with PSNR against the originals, the paper's figure 5b).

use super::backend::{Chosen, DeviceArgs};
use super::crypt::read_latents;
use super::{print_json, CliError};
use crate::vqgan::cpu::CpuOps;
use crate::vqgan::{Vqgan, VqganError};
use clap::Args;
use ndarray::{s, Array4, Axis};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `encode`.
#[derive(Args, Debug)]
pub struct EncodeArgs {
    /// VQGAN weights: safetensors with taming's tensor names.
    #[arg(long)]
    vqgan: PathBuf,
    /// The network's config when the file records none: f2, f4, f8 or f16.
    #[arg(long)]
    preset: Option<String>,
    /// An image (PNG, JPEG, DICOM), a folder of images, or a preprocessed
    /// Bx3xHxW .npy array in [-1, 1].
    #[arg(long)]
    input: PathBuf,
    /// Output latents, BxCxHxW float32 .npy.
    #[arg(long)]
    out: PathBuf,
    /// Write q(quant_conv(E(x))) (codebook vectors) instead of E(x).
    #[arg(long)]
    quantized: bool,
    /// Images per forward pass.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    batch_size: u32,
    #[command(flatten)]
    device: DeviceArgs,
    /// Print one JSON object: files, shape, backend, seconds.
    #[arg(long)]
    json: bool,
}

/// Arguments of `decode`.
#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// VQGAN weights (with the decoder).
    #[arg(long)]
    vqgan: PathBuf,
    /// The network's config when the file records none: f2, f4, f8 or f16.
    #[arg(long)]
    preset: Option<String>,
    /// Latents, CxHxW or BxCxHxW .npy (as `encode` writes).
    #[arg(long)]
    input: PathBuf,
    /// The latents are codebook vectors (`encode --quantized`).
    #[arg(long)]
    quantized: bool,
    /// Folder for the reconstructions (PNG, one per latent).
    #[arg(long)]
    out: PathBuf,
    /// Originals to compute PSNR against: an image, a folder or a .npy,
    /// in the order of the latents.
    #[arg(long)]
    psnr_against: Option<PathBuf>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    batch_size: u32,
    #[command(flatten)]
    device: DeviceArgs,
    /// Print one JSON object: files, PSNR per image and mean.
    #[arg(long)]
    json: bool,
}

/// A VQGAN on the backend the flags chose.
pub enum LoadedVqgan {
    /// On the CPU reference backend.
    Cpu(Vqgan<CpuOps>),
}

impl LoadedVqgan {
    /// Loads `path` for the backend `device` chooses.
    ///
    /// # Errors
    /// Unreadable or unusable weights, no usable adapter for `--backend gpu`.
    pub fn load(path: &Path, preset: Option<&str>, device: &DeviceArgs) -> Result<(Self, String), CliError> {
        let vqgan_error = |e: VqganError| match e {
            VqganError::File(_) => CliError::Vqgan(e),
            _ => CliError::Input {
                path: path.display().to_string(),
                reason: e.to_string(),
            },
        };
        match device.resolve()? {
            Chosen::Cpu => Ok((
                LoadedVqgan::Cpu(Vqgan::load_cpu(path, preset).map_err(vqgan_error)?),
                "cpu".into(),
            )),
            Chosen::Gpu(_) => Err(CliError::Usage(
                "the VQGAN runs on the CPU backend only so far; pass --backend cpu".into(),
            )),
        }
    }

    /// The encoder's output (or its quantization) for preprocessed images.
    pub fn encode(&self, images: Array4<f32>, quantized: bool) -> Result<Array4<f32>, VqganError> {
        match self {
            LoadedVqgan::Cpu(vq) if quantized => vq.encode_quantized(images),
            LoadedVqgan::Cpu(vq) => vq.encode(images),
        }
    }

    /// Reconstructions of latents.
    pub fn decode(&self, latents: Array4<f32>, quantized: bool) -> Result<Array4<f32>, VqganError> {
        match self {
            LoadedVqgan::Cpu(vq) => vq.decode(latents, quantized),
        }
    }

    /// One line describing the network.
    pub fn summary(&self) -> String {
        match self {
            LoadedVqgan::Cpu(vq) => vq.config().summary(),
        }
    }
}

/// Runs `f` over `x` in batches of `batch` images along axis 0 and stacks the
/// results.
fn batched(
    x: Array4<f32>,
    batch: usize,
    mut f: impl FnMut(Array4<f32>) -> Result<Array4<f32>, VqganError>,
) -> Result<Array4<f32>, VqganError> {
    let n = x.len_of(Axis(0));
    let mut parts = Vec::new();
    for start in (0..n).step_by(batch) {
        let end = (start + batch).min(n);
        parts.push(f(x.slice(s![start..end, .., .., ..]).to_owned())?);
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(Axis(0), &views).map_err(|e| VqganError::Input(e.to_string()))
}

/// Preprocessed images from a `.npy` array (`3xHxW` or `Bx3xHxW`, values
/// in [-1, 1]), named `path[i]`.
fn read_preprocessed(path: &Path) -> Result<(Vec<String>, Array4<f32>), CliError> {
    let x = read_latents(path)?.mapv(|v| v as f32);
    if let Some(v) = x.iter().find(|v| v.abs() > 1.0 + 1e-6) {
        return Err(CliError::Input {
            path: path.display().to_string(),
            reason: format!("preprocessed images must lie in [-1, 1]; found {v}"),
        });
    }
    let names = (0..x.len_of(Axis(0)))
        .map(|i| format!("{}[{i}]", path.display()))
        .collect();
    Ok((names, x))
}

/// Writes `x` as a float32 `.npy` file.
fn write_npy(path: &Path, x: &Array4<f32>) -> Result<(), CliError> {
    let io = |e: std::io::Error| CliError::Io {
        path: path.display().to_string(),
        source: e,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    ndarray_npy::WriteNpyExt::write_npy(x, std::io::BufWriter::new(file)).map_err(|e| CliError::Input {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn input_error(path: &Path) -> impl Fn(VqganError) -> CliError + '_ {
    move |e| CliError::Input {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Runs `encode`.
pub fn encode(args: &EncodeArgs) -> Result<(), CliError> {
    let t0 = Instant::now();
    let (vq, backend) = LoadedVqgan::load(&args.vqgan, args.preset.as_deref(), &args.device)?;
    let load_s = t0.elapsed().as_secs_f64();
    let (files, images) = read_preprocessed(&args.input)?;
    let t1 = Instant::now();
    let latents = batched(images, args.batch_size as usize, |x| vq.encode(x, args.quantized))
        .map_err(input_error(&args.input))?;
    let encode_s = t1.elapsed().as_secs_f64();
    write_npy(&args.out, &latents)?;
    let n = files.len();
    if args.json {
        print_json(&json!({
            "files": files,
            "shape": latents.shape(),
            "quantized": args.quantized,
            "vqgan": vq.summary(),
            "backend": backend,
            "seconds": {"load": load_s, "encode": encode_s},
            "images_per_second": n as f64 / encode_s,
        }));
    } else {
        eprintln!("{}", vq.summary());
        println!(
            "encoded {n} image(s) to {:?} in {encode_s:.2} s on {backend}: {}",
            latents.shape(),
            args.out.display()
        );
    }
    Ok(())
}

/// PSNR in dB of two images in [-1, 1], both mapped to 8 bits first.
pub fn psnr(a: ndarray::ArrayView3<'_, f32>, b: ndarray::ArrayView3<'_, f32>) -> f64 {
    let to8 = |v: f32| ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as f64;
    let mse = a
        .iter()
        .zip(b.iter())
        .map(|(&x, &y)| (to8(x) - to8(y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0f64.powi(2) / mse.max(1e-10)).log10()
}

/// Runs `decode`.
pub fn decode(args: &DecodeArgs) -> Result<(), CliError> {
    let (vq, backend) = LoadedVqgan::load(&args.vqgan, args.preset.as_deref(), &args.device)?;
    let latents = read_latents(&args.input)?.mapv(|v| v as f32);
    let t0 = Instant::now();
    let recon = batched(latents, args.batch_size as usize, |z| vq.decode(z, args.quantized))
        .map_err(input_error(&args.input))?;
    let decode_s = t0.elapsed().as_secs_f64();
    let originals = args.psnr_against.as_deref().map(read_preprocessed).transpose()?;
    if let Some((_, x)) = &originals {
        if x.shape() != recon.shape() {
            return Err(CliError::Input {
                path: args
                    .psnr_against
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                reason: format!(
                    "originals of shape {:?}, reconstructions {:?}",
                    x.shape(),
                    recon.shape()
                ),
            });
        }
    }
    std::fs::create_dir_all(&args.out).map_err(|e| CliError::Io {
        path: args.out.display().to_string(),
        source: e,
    })?;
    let mut files = Vec::new();
    let mut psnrs = Vec::new();
    for (i, image) in recon.axis_iter(Axis(0)).enumerate() {
        let path = args.out.join(format!("recon_{i:04}.npy"));
        write_npy(&path, &image.to_owned().insert_axis(Axis(0)))?;
        files.push(path.display().to_string());
        if let Some((_, x)) = &originals {
            psnrs.push(psnr(image, x.index_axis(Axis(0), i)));
        }
    }
    let mean = (!psnrs.is_empty()).then(|| psnrs.iter().sum::<f64>() / psnrs.len() as f64);
    if args.json {
        print_json(&json!({
            "files": files,
            "shape": recon.shape(),
            "psnr_db": psnrs,
            "mean_psnr_db": mean,
            "backend": backend,
            "seconds": {"decode": decode_s},
        }));
    } else {
        println!(
            "decoded {} latent(s) into {} on {backend}",
            files.len(),
            args.out.display()
        );
        if let Some(m) = mean {
            println!("mean PSNR {m:.2} dB");
        }
    }
    Ok(())
}
