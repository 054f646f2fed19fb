//! Chest X-ray images in and out: decoding PNG, JPEG and DICOM files to an
//! 8-bit grey or RGB [`Image8`] ([`read_image`], [`decode_image`]), the
//! reference code's preprocessing to the VQGAN's input ([`preprocess`],
//! [`preprocess_u8`]), the inverse for display ([`save_png`]) and the listing
//! of a folder's image files ([`list_images`]).
//!
//! The format is recognised from the content (PNG signature, JPEG SOI marker,
//! `DICM` at offset 128), never from the extension alone. Bit depths above 8
//! are reduced the way OpenCV's `cv2.imread(path, cv2.IMREAD_COLOR)` does it:
//! a 16-bit sample keeps its high byte (`v >> 8`, no rounding). Alpha channels
//! are dropped (not composited), palettes are expanded.
//!
//! Hostile files are refused before they cost memory: a file past
//! [`MAX_FILE_BYTES`] is not read, an image past [`MAX_PIXELS`] (as its
//! header declares) is not decoded, a JPEG without an end-of-image marker
//! after its last scan (a truncated file, which the decoder would fill with
//! grey) is refused, a PNG palette must be whole RGB entries (the png crate
//! panics otherwise), and DICOM lengths are checked before they are read.

mod dicom;
mod dicom_bounds;
mod dicom_codec;
mod preprocess;

pub use preprocess::{preprocess, preprocess_u8, PAPER_SIZE};

use ::image::{DynamicImage, ImageDecoder, ImageFormat as CodecFormat, ImageReader};
use ndarray::{Array3, ArrayView3, Axis};
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Largest image decoded, in pixels: 2^26 = 67,108,864 (8192 x 8192; chest
/// radiographs have at most about 4,300 x 4,300). An 8-bit RGB image of this
/// size takes 192 MiB.
pub const MAX_PIXELS: u64 = 1 << 26;

/// Largest image file read, in bytes: 1 GiB.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// Why an image cannot be read, converted or written. Every variant names the
/// file it is about.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The file or folder cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file holds no bytes at all.
    #[error("{path}: empty file")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The content is none of PNG, JPEG or DICOM (whatever the extension says).
    #[error("{path}: not a PNG, JPEG or DICOM file")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// A PNG or JPEG file that its decoder rejects (truncated, corrupt, too large).
    #[error("{path}: cannot decode {format:?}: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The format its content announced.
        format: ImageFormat,
        /// The decoder's message.
        reason: String,
    },
    /// A DICOM file that cannot be parsed, or whose pixel data cannot be decoded.
    #[error("{path}: cannot read DICOM: {reason}")]
    Dicom {
        /// The file.
        path: PathBuf,
        /// The parser's or decoder's message.
        reason: String,
    },
    /// A DICOM data set without a Pixel Data element.
    #[error("{path}: DICOM data set has no Pixel Data")]
    NoPixelData {
        /// The file.
        path: PathBuf,
    },
    /// A DICOM image this reader does not handle (colour, odd bit depths,
    /// unsupported transfer syntax, invalid attributes).
    #[error("{path}: unsupported DICOM image: {reason}")]
    UnsupportedDicom {
        /// The file.
        path: PathBuf,
        /// What is not supported.
        reason: String,
    },
    /// A file longer than [`MAX_FILE_BYTES`].
    #[error("{path}: file is larger than {limit} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// [`MAX_FILE_BYTES`].
        limit: u64,
    },
    /// An image whose header declares more than [`MAX_PIXELS`] pixels.
    #[error("{path}: {height} x {width} pixels, more than the {limit} decoded")]
    TooManyPixels {
        /// The file.
        path: PathBuf,
        /// Rows declared.
        height: u64,
        /// Columns declared.
        width: u64,
        /// [`MAX_PIXELS`].
        limit: u64,
    },
    /// An image with no pixel: zero rows or zero columns.
    #[error("{path}: image has no pixel ({height}x{width})")]
    ZeroSized {
        /// The file.
        path: PathBuf,
        /// Rows.
        height: usize,
        /// Columns.
        width: usize,
    },
    /// An array that is not an image of the expected layout.
    #[error("{path}: expected {expected}, got shape {shape:?}")]
    Shape {
        /// The file the array was meant for or came from.
        path: PathBuf,
        /// The layout expected.
        expected: &'static str,
        /// The shape received.
        shape: Vec<usize>,
    },
    /// An array whose values are not an image's.
    #[error("{path}: {reason}")]
    Values {
        /// The file the array was meant for or came from.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The PNG encoder failed.
    #[error("{path}: cannot encode PNG: {reason}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// The encoder's message.
        reason: String,
    },
}

/// A container format recognised from the first bytes of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// Starts with the 8-byte PNG signature.
    Png,
    /// Starts with the JPEG start-of-image marker `FF D8 FF`.
    Jpeg,
    /// A DICOM Part 10 file: 128-byte preamble, then `DICM`.
    Dicom,
}

impl ImageFormat {
    /// The format announced by the first bytes of `bytes`, if any. Only the
    /// magic bytes are looked at: a truncated file may still fail to decode.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
        if bytes.starts_with(PNG) {
            Some(Self::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if bytes.get(128..132) == Some(b"DICM") {
            Some(Self::Dicom)
        } else {
            None
        }
    }
}

/// An 8-bit image, grey or RGB.
///
/// Invariants: the pixel array is height x width x channels (row-major,
/// channels interleaved) with height >= 1, width >= 1 and channels 1 (grey)
/// or 3 (red, green, blue in that order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image8 {
    pixels: Array3<u8>,
}

impl Image8 {
    /// Wraps an H x W x C array.
    ///
    /// # Errors
    /// [`ImageError::Shape`] (naming `path`) unless C is 1 or 3 and H, W >= 1.
    pub fn new(pixels: Array3<u8>, path: &Path) -> Result<Self, ImageError> {
        let (h, w, c) = pixels.dim();
        if h == 0 || w == 0 || !(c == 1 || c == 3) {
            return Err(ImageError::Shape {
                path: path.to_path_buf(),
                expected: "H x W x C with H, W >= 1 and C in {1, 3}",
                shape: pixels.shape().to_vec(),
            });
        }
        Ok(Self { pixels })
    }

    /// Wraps an H x W x C array of intensities in [0, 1] (1: white), each
    /// mapped to the 8-bit sample `round(255 v)` (ties to even), as an
    /// 8-bit file of the same picture holds it.
    ///
    /// # Errors
    /// [`ImageError::Shape`] as [`Self::new`]; [`ImageError::Values`] for a
    /// value outside [0, 1] or not finite.
    pub fn from_unit(pixels: ArrayView3<'_, f64>, path: &Path) -> Result<Self, ImageError> {
        if let Some(&v) = pixels.iter().find(|v| !(0.0..=1.0).contains(*v)) {
            return Err(ImageError::Values {
                path: path.to_path_buf(),
                reason: format!("intensities must lie in [0, 1]; found {v}"),
            });
        }
        Self::new(pixels.mapv(|v| (v * 255.0).round_ties_even() as u8), path)
    }

    /// Rows (>= 1).
    pub fn height(&self) -> usize {
        self.pixels.dim().0
    }

    /// Columns (>= 1).
    pub fn width(&self) -> usize {
        self.pixels.dim().1
    }

    /// Whether the image has a single grey channel (else it is RGB).
    pub fn is_grey(&self) -> bool {
        self.pixels.dim().2 == 1
    }

    /// The H x W x C samples (C = 1 or 3).
    pub fn pixels(&self) -> ArrayView3<'_, u8> {
        self.pixels.view()
    }
}

/// Reads and decodes the image file at `path` (see [`decode_image`]).
///
/// # Errors
/// [`ImageError::Io`] if the file cannot be read, [`ImageError::TooLarge`]
/// past [`MAX_FILE_BYTES`] (no more is read), else those of [`decode_image`].
pub fn read_image(path: &Path) -> Result<Image8, ImageError> {
    let io = |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ImageError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_FILE_BYTES,
        });
    }
    decode_image(&bytes, path)
}

/// Decodes the bytes of a PNG, JPEG or DICOM file, recognised by content.
/// `path` only names the file in errors.
///
/// PNG: 1 to 16 bits, grey, grey+alpha, RGB, RGBA or palette; JPEG: grey or
/// colour; DICOM: monochrome, 8 or 16 bits, native little endian or 8-bit
/// JPEG, first frame, windowed to 8 bits (details in `dicom.rs`). 16-bit
/// samples keep their high byte, alpha is dropped: what `cv2.imread(path,
/// cv2.IMREAD_COLOR)` returns, with RGB order instead of BGR.
///
/// # Errors
/// [`ImageError::Empty`], [`ImageError::UnknownFormat`],
/// [`ImageError::Decode`] for a PNG or JPEG its decoder rejects (a PNG
/// whose palette is not whole entries, a JPEG without an end-of-image marker
/// after its last scan too),
/// [`ImageError::TooManyPixels`] past [`MAX_PIXELS`],
/// [`ImageError::Dicom`], [`ImageError::NoPixelData`] and
/// [`ImageError::UnsupportedDicom`] for DICOM, [`ImageError::ZeroSized`].
pub fn decode_image(bytes: &[u8], path: &Path) -> Result<Image8, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty {
            path: path.to_path_buf(),
        });
    }
    let image = match ImageFormat::sniff(bytes) {
        Some(ImageFormat::Png) => decode_codec(bytes, ImageFormat::Png, path)?,
        Some(ImageFormat::Jpeg) => decode_codec(bytes, ImageFormat::Jpeg, path)?,
        Some(ImageFormat::Dicom) => dicom::decode(bytes, path)?,
        None => {
            return Err(ImageError::UnknownFormat {
                path: path.to_path_buf(),
            })
        }
    };
    let (height, width, _) = image.dim();
    if height == 0 || width == 0 {
        return Err(ImageError::ZeroSized {
            path: path.to_path_buf(),
            height,
            width,
        });
    }
    Image8::new(image, path)
}

/// Whether a JPEG stream ends its last scan: an end-of-image marker
/// (`FF D9`) after the last start-of-scan marker (`FF DA`). Neither pair
/// occurs inside entropy-coded data (a data `FF` is followed by `00`).
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last = |marker: u8| bytes.windows(2).rposition(|w| w == [0xFF, marker]);
    match (last(0xDA), last(0xD9)) {
        (Some(scan), Some(end)) => end > scan,
        _ => false,
    }
}

/// Checks what the png crate trusts in a PNG's chunks: a palette (`PLTE`)
/// of 1 to 256 entries of three bytes (the crate panics on a length that is
/// not a multiple of 3). Walks the chunk headers only, up to `IEND` or the
/// end of the bytes; other damage is left to the decoder.
fn check_png_chunks(bytes: &[u8]) -> Result<(), String> {
    let mut at: usize = 8; // after the signature
    while let Some(header) = at.checked_add(8).and_then(|end| bytes.get(at..end)) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        match &header[4..8] {
            b"PLTE" if len == 0 || !len.is_multiple_of(3) || len > 3 * 256 => {
                return Err(format!("palette of {len} bytes (1 to 256 entries of 3 bytes needed)"))
            }
            b"IEND" => break,
            _ => at = at.saturating_add(len).saturating_add(12),
        }
    }
    Ok(())
}

/// Decodes a PNG or JPEG (also a JPEG frame inside a DICOM) to H x W x C
/// samples, C = 1 or 3, after checking the declared size against
/// [`MAX_PIXELS`], a PNG's palette and a JPEG's end marker.
fn decode_codec(bytes: &[u8], format: ImageFormat, path: &Path) -> Result<Array3<u8>, ImageError> {
    let codec = match format {
        ImageFormat::Jpeg => CodecFormat::Jpeg,
        _ => CodecFormat::Png,
    };
    let decode_error = |reason: String| ImageError::Decode {
        path: path.to_path_buf(),
        format,
        reason,
    };
    let decoder = ImageReader::with_format(Cursor::new(bytes), codec)
        .into_decoder()
        .map_err(|e| decode_error(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    let (width, height) = (u64::from(width), u64::from(height));
    if width * height > MAX_PIXELS {
        return Err(ImageError::TooManyPixels {
            path: path.to_path_buf(),
            height,
            width,
            limit: MAX_PIXELS,
        });
    }
    if format == ImageFormat::Png {
        check_png_chunks(bytes).map_err(decode_error)?;
    }
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(decode_error(
            "truncated: no end-of-image marker after the last scan".into(),
        ));
    }
    let decoded = DynamicImage::from_decoder(decoder).map_err(|e| decode_error(e.to_string()))?;
    Ok(to_8bit(decoded))
}

/// The samples of a decoded image as 8-bit grey or RGB: alpha dropped, 16-bit
/// and float samples reduced to their high byte (`v >> 8`, OpenCV's rule).
fn to_8bit(image: DynamicImage) -> Array3<u8> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let high_byte = |v: u16| (v >> 8) as u8;
    let (channels, samples): (usize, Vec<u8>) = match image {
        DynamicImage::ImageLuma8(b) => (1, b.into_raw()),
        DynamicImage::ImageLumaA8(b) => (1, b.into_raw().chunks(2).map(|p| p[0]).collect()),
        DynamicImage::ImageRgb8(b) => (3, b.into_raw()),
        DynamicImage::ImageLuma16(b) => (1, b.into_raw().into_iter().map(high_byte).collect()),
        DynamicImage::ImageLumaA16(b) => (1, b.into_raw().chunks(2).map(|p| high_byte(p[0])).collect()),
        DynamicImage::ImageRgb16(b) => (3, b.into_raw().into_iter().map(high_byte).collect()),
        DynamicImage::ImageRgba16(b) => (3, drop_alpha(&b.into_raw()).map(high_byte).collect()),
        other => (3, drop_alpha(&other.into_rgba8().into_raw()).collect()),
    };
    Array3::from_shape_vec((h, w, channels), samples).expect("decoder returns h * w * channels samples")
}

/// The R, G, B samples of interleaved RGBA samples.
fn drop_alpha<T: Copy>(rgba: &[T]) -> impl Iterator<Item = T> + '_ {
    rgba.chunks(4).flat_map(|p| p[..3].iter().copied())
}

/// Writes a 3 x H x W array of values in [-1, 1] (the output of
/// [`preprocess`] or a decoder) as an 8-bit PNG: each value `x` becomes
/// `round((x + 1) * 127.5)` clamped to 0..=255 (NaN becomes 0). The PNG is grey
/// when the three quantised channels are equal everywhere, else RGB.
///
/// # Errors
/// [`ImageError::Shape`] unless the array is 3 x H x W with H, W >= 1;
/// [`ImageError::Encode`] or [`ImageError::Io`] if writing fails.
pub fn save_png(chw: ArrayView3<'_, f32>, path: &Path) -> Result<(), ImageError> {
    let (c, h, w) = chw.dim();
    if c != 3 || h == 0 || w == 0 {
        return Err(ImageError::Shape {
            path: path.to_path_buf(),
            expected: "3 x H x W with H, W >= 1",
            shape: chw.shape().to_vec(),
        });
    }
    let quantised = chw.mapv(|x| ((x + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8);
    let grey = quantised.index_axis(Axis(0), 0);
    let is_grey = quantised.outer_iter().all(|channel| channel == grey);
    let (samples, color) = if is_grey {
        (grey.iter().copied().collect(), ::image::ExtendedColorType::L8)
    } else {
        let hwc = quantised.permuted_axes([1, 2, 0]);
        (
            hwc.iter().copied().collect::<Vec<u8>>(),
            ::image::ExtendedColorType::Rgb8,
        )
    };
    let encode_err = |e: ::image::ImageError| match e {
        ::image::ImageError::IoError(source) => ImageError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => ImageError::Encode {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    };
    ::image::save_buffer_with_format(path, &samples, w as u32, h as u32, color, CodecFormat::Png).map_err(encode_err)
}

/// The image files of folder `dir` (not of its subfolders), sorted by file
/// name: regular files named `*.png`, `*.jpg`, `*.jpeg` or `*.dcm` (any case),
/// and files without extension whose content starts with a DICOM preamble.
/// Listing a file does not mean it decodes.
///
/// # Errors
/// [`ImageError::Io`] if the folder, one of its entries, or the first bytes of
/// an extensionless file cannot be read.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ImageError::Io { path, source }
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if path.is_file() && looks_like_image(&path).map_err(io_err(&path))? {
            found.push(path);
        }
    }
    found.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(found)
}

/// Whether a regular file is listed by [`list_images`].
fn looks_like_image(path: &Path) -> std::io::Result<bool> {
    match path.extension() {
        Some(ext) => {
            let ext = ext.to_string_lossy().to_ascii_lowercase();
            Ok(matches!(ext.as_str(), "png" | "jpg" | "jpeg" | "dcm"))
        }
        None => {
            use std::io::Read;
            let mut head = Vec::with_capacity(132);
            std::fs::File::open(path)?.take(132).read_to_end(&mut head)?;
            Ok(ImageFormat::sniff(&head) == Some(ImageFormat::Dicom))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Intensities map to the nearest 8-bit sample; values outside [0, 1]
    /// and NaN are refused with the value named.
    #[test]
    fn unit_intensities_become_8_bit_samples() {
        let path = Path::new("(array)");
        let x = Array3::from_shape_vec((1, 4, 1), vec![0.0, 0.5, 1.0 / 255.0 * 7.4, 1.0]).unwrap();
        let image = Image8::from_unit(x.view(), path).unwrap();
        assert_eq!(image.pixels().iter().copied().collect::<Vec<_>>(), vec![0, 128, 7, 255]);
        for bad in [-0.01, 1.5, f64::NAN] {
            let x = Array3::from_elem((2, 2, 1), bad);
            let err = Image8::from_unit(x.view(), path).unwrap_err().to_string();
            assert!(err.contains("[0, 1]") && err.contains(&format!("{bad}")), "{err}");
        }
        let grey_alpha = Array3::from_elem((2, 2, 2), 0.5);
        assert!(matches!(
            Image8::from_unit(grey_alpha.view(), path),
            Err(ImageError::Shape { .. })
        ));
    }
}
