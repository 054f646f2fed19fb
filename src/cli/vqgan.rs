//! `encode` and `decode`: the client's VQGAN, image to latent and latent to
//! image (with PSNR against the originals, the paper's figure 5b).

use super::backend::DeviceArgs;
use super::{print_json, CliError};
use crate::data::image::{list_images, preprocess, read_image, save_png, PAPER_SIZE};
use crate::pipeline::{read_latents, LoadedVqgan};
use clap::Args;
use ndarray::{s, Array4, Axis};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `encode`.
#[derive(Args, Debug)]
pub struct EncodeArgs {
    #[command(flatten)]
    net: VqganArgs,
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
    /// Print one JSON object: files, shape, backend, seconds.
    #[arg(long)]
    json: bool,
}

/// Arguments of `decode`.
#[derive(Args, Debug)]
pub struct DecodeArgs {
    #[command(flatten)]
    net: VqganArgs,
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
    /// Print one JSON object: files, PSNR per image and mean.
    #[arg(long)]
    json: bool,
}

/// The network and where it runs, shared by `encode` and `decode`.
#[derive(Args, Debug)]
struct VqganArgs {
    /// VQGAN weights: safetensors with taming's tensor names.
    #[arg(long)]
    vqgan: PathBuf,
    /// The network's config when the file records none: f2, f4, f8 or f16.
    #[arg(long)]
    preset: Option<String>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    batch_size: u32,
    /// Take images or latents larger than twice (per side) what the VQGAN
    /// was trained on (refused by default: time and memory grow fast).
    #[arg(long)]
    allow_large_inputs: bool,
    #[command(flatten)]
    device: DeviceArgs,
}

impl VqganArgs {
    fn load(&self) -> Result<(LoadedVqgan, String), CliError> {
        let (mut vq, backend) = LoadedVqgan::load_on(&self.vqgan, self.preset.as_deref(), &self.device.resolve()?)?;
        if self.allow_large_inputs {
            vq.allow_any_size();
        }
        Ok((vq, backend))
    }
}

/// Preprocessed images to encode: a `.npy` array already in memory, or
/// image files read a batch at a time (the paper's preprocessing, 256x256).
pub enum ImageSource {
    /// `Bx3xHxW` values in [-1, 1], named `path[i]`.
    Array(Vec<String>, Array4<f32>),
    /// Image files (PNG, JPEG, DICOM), in order.
    Files(Vec<PathBuf>),
}

impl ImageSource {
    /// A `.npy` file, a folder of images (sorted by name) or one image.
    ///
    /// # Errors
    /// Unreadable paths, arrays of the wrong rank or outside [-1, 1], a
    /// folder without images.
    pub fn open(path: &Path) -> Result<Self, CliError> {
        let input_err = |reason: String| CliError::Input {
            path: path.display().to_string(),
            reason,
        };
        if path.is_dir() {
            let files = list_images(path).map_err(|e| input_err(e.to_string()))?;
            if files.is_empty() {
                return Err(input_err("no PNG, JPEG or DICOM files in this folder".into()));
            }
            return Ok(ImageSource::Files(files));
        }
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
            let x = read_latents(path)?.mapv(|v| v as f32);
            if let Some(v) = x.iter().find(|v| v.abs() > 1.0 + 1e-6) {
                return Err(input_err(format!("preprocessed images must lie in [-1, 1]; found {v}")));
            }
            let names = (0..x.len_of(Axis(0)))
                .map(|i| format!("{}[{i}]", path.display()))
                .collect();
            return Ok(ImageSource::Array(names, x));
        }
        Ok(ImageSource::Files(vec![path.to_path_buf()]))
    }

    /// How many images.
    #[allow(clippy::len_without_is_empty)] // never empty: `open` refuses an empty folder
    pub fn len(&self) -> usize {
        match self {
            ImageSource::Array(names, _) => names.len(),
            ImageSource::Files(files) => files.len(),
        }
    }

    /// The names of images `range`.
    pub fn names(&self, range: std::ops::Range<usize>) -> Vec<String> {
        match self {
            ImageSource::Array(names, _) => names[range].to_vec(),
            ImageSource::Files(files) => files[range].iter().map(|p| p.display().to_string()).collect(),
        }
    }

    /// Images `range`, preprocessed, as one batch.
    ///
    /// # Errors
    /// An image that does not decode (the error names the file).
    pub fn batch(&self, range: std::ops::Range<usize>) -> Result<Array4<f32>, CliError> {
        match self {
            ImageSource::Array(_, x) => Ok(x.slice(s![range, .., .., ..]).to_owned()),
            ImageSource::Files(files) => {
                let images = files[range]
                    .iter()
                    .map(|path| {
                        let image = read_image(path).map_err(|e| CliError::Input {
                            path: path.display().to_string(),
                            reason: e.to_string(),
                        })?;
                        Ok(preprocess(&image, PAPER_SIZE))
                    })
                    .collect::<Result<Vec<_>, CliError>>()?;
                let views: Vec<_> = images.iter().map(|x| x.view()).collect();
                ndarray::stack(Axis(0), &views)
                    .map_err(|e| CliError::Refused(format!("images of different sizes: {e}")))
            }
        }
    }

    /// Runs `f` over the images `batch` at a time and stacks the results.
    ///
    /// # Errors
    /// Undecodable images; `f`'s errors, mapped by `on_error`.
    pub fn map_batches(
        &self,
        batch: usize,
        mut f: impl FnMut(Array4<f32>) -> Result<Array4<f32>, String>,
        on_error: impl Fn(String) -> CliError,
    ) -> Result<Array4<f32>, CliError> {
        let mut parts = Vec::new();
        let bar = indicatif::ProgressBar::new(self.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} images, {elapsed} elapsed, ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        for start in (0..self.len()).step_by(batch) {
            let end = (start + batch).min(self.len());
            parts.push(f(self.batch(start..end)?).map_err(&on_error)?);
            bar.inc((end - start) as u64);
        }
        bar.finish_and_clear();
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        ndarray::concatenate(Axis(0), &views).map_err(|e| CliError::Refused(e.to_string()))
    }
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

fn input_error(path: &Path) -> impl Fn(String) -> CliError + '_ {
    move |reason| CliError::Input {
        path: path.display().to_string(),
        reason,
    }
}

/// Runs `encode`.
pub fn encode(args: &EncodeArgs) -> Result<(), CliError> {
    let t0 = Instant::now();
    let (vq, backend) = args.net.load()?;
    let load_s = t0.elapsed().as_secs_f64();
    let source = ImageSource::open(&args.input)?;
    let t1 = Instant::now();
    let latents = source.map_batches(
        args.net.batch_size as usize,
        |x| vq.encode(x, args.quantized),
        input_error(&args.input),
    )?;
    let encode_s = t1.elapsed().as_secs_f64();
    write_npy(&args.out, &latents)?;
    let files = source.names(0..source.len());
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
    let (vq, backend) = args.net.load()?;
    let latents = read_latents(&args.input)?.mapv(|v| v as f32);
    let names = (0..latents.len_of(Axis(0))).map(|i| format!("latent {i}")).collect();
    let t0 = Instant::now();
    let recon = ImageSource::Array(names, latents).map_batches(
        args.net.batch_size as usize,
        |z| vq.decode(z, args.quantized),
        input_error(&args.input),
    )?;
    let decode_s = t0.elapsed().as_secs_f64();
    let originals = match args.psnr_against.as_deref() {
        Some(path) => {
            let source = ImageSource::open(path)?;
            Some((source.names(0..source.len()), source.batch(0..source.len())?))
        }
        None => None,
    };
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
        let stem = originals
            .as_ref()
            .and_then(|(names, _)| {
                Path::new(&names[i])
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
            })
            .filter(|_| args.psnr_against.as_deref().is_some_and(Path::is_dir))
            .unwrap_or_else(|| format!("recon_{i:04}"));
        let path = args.out.join(format!("{stem}.png"));
        save_png(image, &path).map_err(|e| CliError::Input {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
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
