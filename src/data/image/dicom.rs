//! DICOM Part 10 files to 8-bit grey images, parsed with dicom-object.
//!
//! Supported: monochrome images (`MONOCHROME1`, `MONOCHROME2`, one sample per
//! pixel) with Bits Allocated 8 or 16, signed or unsigned (Pixel
//! Representation), in these transfer syntaxes:
//! - native little endian, implicit and explicit VR (1.2.840.10008.1.2 and
//!   .1.2.1): the samples as stored;
//! - Deflated Explicit VR Little Endian (1.2.840.10008.1.2.1.99): the data
//!   set inflated (flate2) to at most 256 MiB, then read as explicit VR
//!   little endian;
//! - 8-bit JPEG baseline / extended (1.2.840.10008.1.2.4.50 and .51): the
//!   frame decoded with the same JPEG decoder as `.jpg` files (within 1 of
//!   libjpeg, unlike dicom-pixeldata's jpeg-decoder);
//! - JPEG lossless, process 14, any predictor and first-order prediction
//!   (1.2.840.10008.1.2.4.57 and .70): decoded by jpeg-decoder;
//! - JPEG-LS, lossless and near-lossless (1.2.840.10008.1.2.4.80 and .81):
//!   decoded by CharLS (built from source with CMake);
//! - RLE Lossless (1.2.840.10008.1.2.5) and JPEG 2000, lossless and lossy
//!   (1.2.840.10008.1.2.4.90 and .91): decoded by dicom-pixeldata (its RLE
//!   reader; OpenJPEG's pure-Rust port openjp2).
//!
//! Other transfer syntaxes (big endian, JPEG hierarchical, HTJ2K, ...) are
//! refused with [`ImageError::UnsupportedDicom`]. Of a multi-frame image
//! only the first frame is read: the bytes dicom-object gives as frame 0
//! (one fragment per frame, or the fragments the offset table assigns).
//!
//! Before dicom-object reads the file, every length its headers declare is
//! checked against the bytes that follow and a cap (`dicom_bounds.rs`), and
//! the transfer syntax is checked. Before a compressed frame is decoded,
//! what it declares is checked (`dicom_codec.rs`): a JPEG, JPEG lossless,
//! JPEG-LS or JPEG 2000 frame must be exactly Rows x Columns and complete,
//! an RLE frame must decode to at least that. A JPEG lossless or JPEG-LS
//! frame may have up to Bits Allocated bits per sample; the decoded samples
//! are then read as native ones are (masked to Bits Stored).
//!
//! Each stored value `v` (masked to Bits Stored, sign-extended when signed)
//! becomes a modality value `m = slope * v + intercept` (Rescale Slope and
//! Intercept, 1 and 0 when absent; both must be finite, and so must every
//! `m`), then a level `y` in [0, 1]:
//! - with a Window Center `c` and Width `w` (the first value of each when
//!   multi-valued; `c` finite and `w` finite and `>= 1`, as PS3.3 requires,
//!   else the file is refused), the DICOM linear VOI function (PS3.3 C.11.2.1.2.1):
//!   `y = 0` if `m <= c - 0.5 - (w - 1) / 2`, `y = 1` if
//!   `m > c - 0.5 + (w - 1) / 2`, else `y = (m - (c - 0.5)) / (w - 1) + 0.5`;
//! - otherwise min-max over the frame: `y = (m - min) / (max - min)`, 0
//!   everywhere when the frame is constant.
//!
//! `MONOCHROME1` (minimum displayed white) is inverted: `y = 1 - y`. The 8-bit
//! sample is `floor(255 * y + 0.5)`.

use super::dicom_bounds::{check_data_set, data_set_syntax, inflate, meta_group};
use super::dicom_codec::{check_j2k, check_jpeg, check_rle, JpegProcess};
use super::{ImageError, ImageFormat, MAX_PIXELS};
use dicom_encoding::adapters::PixelDataObject;
use dicom_object::mem::InMemElement;
use dicom_object::{DefaultDicomObject, FileMetaTable, InMemDicomObject, Tag};
use dicom_pixeldata::PixelDecoder;
use ndarray::Array3;
use std::borrow::Cow;
use std::path::Path;

/// (7FE0,0010) Pixel Data.
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
/// (0028,0002) Samples per Pixel.
const SAMPLES_PER_PIXEL: Tag = Tag(0x0028, 0x0002);
/// (0028,0004) Photometric Interpretation.
const PHOTOMETRIC: Tag = Tag(0x0028, 0x0004);
/// (0028,0010) Rows.
const ROWS: Tag = Tag(0x0028, 0x0010);
/// (0028,0011) Columns.
const COLUMNS: Tag = Tag(0x0028, 0x0011);
/// (0028,0100) Bits Allocated.
const BITS_ALLOCATED: Tag = Tag(0x0028, 0x0100);
/// (0028,0101) Bits Stored.
const BITS_STORED: Tag = Tag(0x0028, 0x0101);
/// (0028,0103) Pixel Representation.
const PIXEL_REPRESENTATION: Tag = Tag(0x0028, 0x0103);
/// (0028,1050) Window Center.
const WINDOW_CENTER: Tag = Tag(0x0028, 0x1050);
/// (0028,1051) Window Width.
const WINDOW_WIDTH: Tag = Tag(0x0028, 0x1051);
/// (0028,1052) Rescale Intercept.
const RESCALE_INTERCEPT: Tag = Tag(0x0028, 0x1052);
/// (0028,1053) Rescale Slope.
const RESCALE_SLOPE: Tag = Tag(0x0028, 0x1053);

/// Implicit and explicit VR little endian, and Deflated Explicit VR Little
/// Endian: pixel data stored as is (in a deflated data set).
const NATIVE: [&str; 3] = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", DEFLATED];
/// Deflated Explicit VR Little Endian.
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";
/// JPEG baseline (process 1) and extended (processes 2 and 4).
const JPEG: [&str; 2] = ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"];
/// JPEG lossless, process 14: any predictor, and first-order prediction
/// (selection value 1).
const JPEG_LOSSLESS: [&str; 2] = ["1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"];
/// JPEG-LS lossless and near-lossless.
const JPEG_LS: [&str; 2] = ["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"];
/// RLE Lossless.
const RLE: &str = "1.2.840.10008.1.2.5";
/// JPEG 2000 Part 1, lossless only and lossy.
const JPEG_2000: [&str; 2] = ["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"];

/// Whether frames of transfer syntax `ts` are read.
fn supported(ts: &str) -> bool {
    [&NATIVE[..], &JPEG, &JPEG_LOSSLESS, &JPEG_LS, &[RLE], &JPEG_2000]
        .iter()
        .any(|set| set.contains(&ts))
}

/// A linear VOI window.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Window {
    center: f64,
    width: f64,
}

/// Decodes the first frame of a DICOM file's bytes (preamble included) to an
/// H x W x 1 array; `path` names the file in errors.
pub(super) fn decode(bytes: &[u8], path: &Path) -> Result<Array3<u8>, ImageError> {
    let unsupported = |reason: String| ImageError::UnsupportedDicom {
        path: path.to_path_buf(),
        reason,
    };
    let dicom = |reason: String| ImageError::Dicom {
        path: path.to_path_buf(),
        reason,
    };
    let (ts, data_set_at) = meta_group(bytes).map_err(dicom)?;
    if !supported(&ts) {
        return Err(unsupported(format!("transfer syntax {ts}")));
    }
    let data_set = if ts == DEFLATED {
        Cow::Owned(inflate(&bytes[data_set_at..]).map_err(dicom)?)
    } else {
        Cow::Borrowed(&bytes[data_set_at..])
    };
    let syntax = data_set_syntax(&ts);
    check_data_set(&data_set, &syntax).map_err(dicom)?;
    let meta = FileMetaTable::from_reader(&bytes[128..data_set_at]).map_err(|e| dicom(e.to_string()))?;
    let obj = InMemDicomObject::read_dataset_with_ts(&data_set[..], &syntax)
        .map_err(|e| dicom(e.to_string()))?
        .with_exact_meta(meta);
    let Some(pixel_data) = obj.get(PIXEL_DATA) else {
        return Err(ImageError::NoPixelData {
            path: path.to_path_buf(),
        });
    };
    let (height, width) = check_geometry(&obj, path)?;
    let photometric = text(&obj, PHOTOMETRIC).unwrap_or_default();
    let samples = int(&obj, SAMPLES_PER_PIXEL).unwrap_or(1);
    if !matches!(photometric.as_str(), "MONOCHROME1" | "MONOCHROME2") || samples != 1 {
        return Err(unsupported(format!(
            "photometric interpretation `{photometric}` with {samples} samples per pixel \
             (only MONOCHROME1/2 with 1 is read)"
        )));
    }
    let ts = ts.as_str();
    let (frame, layout): (Cow<'_, [u8]>, SampleLayout) = if NATIVE.contains(&ts) {
        let frame = pixel_data
            .to_bytes()
            .map_err(|e| unsupported(format!("Pixel Data: {e}")))?;
        (frame, SampleLayout::of(&obj).map_err(unsupported)?)
    } else {
        encapsulated_frame(&obj, pixel_data, ts, (height, width), path)?
    };
    let (slope, intercept) = (
        finite(&obj, RESCALE_SLOPE, "Rescale Slope", path)?.unwrap_or(1.0),
        finite(&obj, RESCALE_INTERCEPT, "Rescale Intercept", path)?.unwrap_or(0.0),
    );
    let modality: Vec<f64> = frame
        .chunks_exact(layout.bytes)
        .take(height * width)
        .map(|s| slope * layout.value(s) + intercept)
        .collect();
    if modality.len() != height * width {
        return Err(dicom(format!(
            "pixel data holds {} samples, Rows x Columns is {}",
            modality.len(),
            height * width
        )));
    }
    if modality.iter().any(|m| !m.is_finite()) {
        return Err(unsupported(format!(
            "Rescale Slope {slope} and Intercept {intercept} take samples past the range of f64"
        )));
    }
    let window = window(&obj, path)?;
    let levels = to_levels(&modality, window, photometric == "MONOCHROME1");
    Ok(Array3::from_shape_vec((height, width, 1), levels).expect("height * width samples"))
}

/// The samples of the first frame of encapsulated Pixel Data in transfer
/// syntax `ts` (any read here but the native ones), of a `rows_columns`
/// image, with their layout, once what the frame declares has been checked.
fn encapsulated_frame(
    obj: &DefaultDicomObject,
    pixel_data: &InMemElement,
    ts: &str,
    rows_columns: (usize, usize),
    path: &Path,
) -> Result<(Cow<'static, [u8]>, SampleLayout), ImageError> {
    let dicom = |reason: String| ImageError::Dicom {
        path: path.to_path_buf(),
        reason,
    };
    // the first frame's bytes, as the decoders read them (dicom-pixeldata's
    // RLE reader takes fragment 0 as frame 0)
    let stream = if ts == RLE {
        let fragments = pixel_data.value().fragments();
        fragments.and_then(<[_]>::first).map(|f| Cow::Borrowed(&f[..]))
    } else {
        obj.frame_pixel_data(0)
    };
    let Some(stream) = stream.filter(|s| !s.is_empty()) else {
        return Err(dicom(format!("transfer syntax {ts} without an encapsulated frame")));
    };
    if JPEG.contains(&ts) {
        let samples = jpeg_frame(&stream, rows_columns, path)?;
        return Ok((Cow::Owned(samples), SampleLayout::BYTE));
    }
    let layout = SampleLayout::of(obj).map_err(|reason| ImageError::UnsupportedDicom {
        path: path.to_path_buf(),
        reason,
    })?;
    let process = match ts {
        t if JPEG_LOSSLESS.contains(&t) => Some(JpegProcess::Lossless),
        t if JPEG_LS.contains(&t) => Some(JpegProcess::Ls),
        _ => None,
    };
    if let Some(process) = process {
        let precision = check_jpeg(&stream, process, rows_columns, 8 * layout.bytes).map_err(dicom)?;
        let (samples, bytes) = decode_jpeg(&stream, process, precision).map_err(dicom)?;
        return Ok((Cow::Owned(samples), SampleLayout { bytes, ..layout }));
    }
    if ts == RLE {
        check_rle(&stream, rows_columns.0 * rows_columns.1, layout.bytes)
    } else {
        check_j2k(&stream, rows_columns)
    }
    .map_err(dicom)?;
    let decoded = obj
        .decode_pixel_data_frame(0)
        .map_err(|e| dicom(format!("Pixel Data: {e}")))?;
    Ok((Cow::Owned(decoded.into_data()), layout))
}

/// Decodes a JPEG lossless or JPEG-LS frame that [`check_jpeg`] passed with
/// `precision`-bit samples: the samples, little endian, and their width in
/// bytes (1 for up to 8 bits with CharLS and for exactly 8 with
/// jpeg-decoder, else 2).
///
/// # Errors
/// The decoder's message.
fn decode_jpeg(stream: &[u8], process: JpegProcess, precision: u8) -> Result<(Vec<u8>, usize), String> {
    let (mut samples, bytes) = match process {
        JpegProcess::Lossless => {
            let samples = jpeg_decoder::Decoder::new(stream)
                .decode()
                .map_err(|e| format!("JPEG lossless: {e}"))?;
            (samples, if precision == 8 { 1 } else { 2 })
        }
        JpegProcess::Ls => {
            let samples = charls::CharLS::default()
                .decode(stream)
                .map_err(|e| format!("JPEG-LS: {e}"))?;
            (samples, if precision <= 8 { 1 } else { 2 })
        }
    };
    // both decoders write 16-bit samples in native byte order
    for sample in samples.chunks_exact_mut(2).filter(|_| bytes == 2) {
        let v = u16::from_ne_bytes([sample[0], sample[1]]);
        sample.copy_from_slice(&v.to_le_bytes());
    }
    Ok((samples, bytes))
}

/// The Window Center and Width, when both are present.
///
/// # Errors
/// [`ImageError::UnsupportedDicom`] for a centre that is not finite or a
/// width that is not finite or below 1 (PS3.3 C.11.2.1.2 requires `w >= 1`).
fn window(obj: &DefaultDicomObject, path: &Path) -> Result<Option<Window>, ImageError> {
    let center = float(obj, WINDOW_CENTER);
    let width = float(obj, WINDOW_WIDTH);
    let (Some(center), Some(width)) = (center, width) else {
        return Ok(None);
    };
    if !center.is_finite() || !width.is_finite() || width < 1.0 {
        return Err(ImageError::UnsupportedDicom {
            path: path.to_path_buf(),
            reason: format!(
                "Window Center {center} and Width {width} (a finite centre and a finite width >= 1 needed)"
            ),
        });
    }
    Ok(Some(Window { center, width }))
}

/// The first value of a numeric attribute, refused when it is not finite.
fn finite(obj: &DefaultDicomObject, tag: Tag, name: &str, path: &Path) -> Result<Option<f64>, ImageError> {
    match float(obj, tag) {
        Some(v) if !v.is_finite() => Err(ImageError::UnsupportedDicom {
            path: path.to_path_buf(),
            reason: format!("{name} {v} is not finite"),
        }),
        v => Ok(v),
    }
}

/// The 8-bit grey samples of a JPEG baseline or extended frame, which must
/// be `rows_columns` (Rows, Columns) in size.
fn jpeg_frame(stream: &[u8], rows_columns: (usize, usize), path: &Path) -> Result<Vec<u8>, ImageError> {
    let decoded = super::decode_codec(stream, ImageFormat::Jpeg, path)?;
    let (height, width, _) = decoded.dim();
    if (height, width) != rows_columns {
        return Err(ImageError::Dicom {
            path: path.to_path_buf(),
            reason: format!(
                "the JPEG frame is {height} x {width} pixels, Rows x Columns is {} x {}",
                rows_columns.0, rows_columns.1
            ),
        });
    }
    if decoded.dim().2 != 1 {
        return Err(ImageError::UnsupportedDicom {
            path: path.to_path_buf(),
            reason: "colour JPEG in a monochrome image".into(),
        });
    }
    Ok(decoded.into_raw_vec_and_offset().0)
}

/// The first value of a numeric attribute, if present and readable.
fn float(obj: &DefaultDicomObject, tag: Tag) -> Option<f64> {
    obj.get(tag)?.to_multi_float64().ok()?.first().copied()
}

/// An integer attribute, if present and readable.
fn int(obj: &DefaultDicomObject, tag: Tag) -> Option<u32> {
    obj.get(tag)?.to_int::<u32>().ok()
}

/// A text attribute without padding, if present and readable.
fn text(obj: &DefaultDicomObject, tag: Tag) -> Option<String> {
    Some(obj.get(tag)?.to_str().ok()?.trim().to_string())
}

/// Rows and Columns, both >= 1, with at most [`MAX_PIXELS`] pixels.
fn check_geometry(obj: &DefaultDicomObject, path: &Path) -> Result<(usize, usize), ImageError> {
    let unsupported = |reason: String| ImageError::UnsupportedDicom {
        path: path.to_path_buf(),
        reason,
    };
    let read = |tag, name: &str| {
        int(obj, tag)
            .map(|v| v as usize)
            .ok_or_else(|| unsupported(format!("no readable {name}")))
    };
    let (height, width) = (read(ROWS, "Rows")?, read(COLUMNS, "Columns")?);
    if height == 0 || width == 0 {
        return Err(ImageError::ZeroSized {
            path: path.to_path_buf(),
            height,
            width,
        });
    }
    if (height as u64) * (width as u64) > MAX_PIXELS {
        return Err(ImageError::TooManyPixels {
            path: path.to_path_buf(),
            height: height as u64,
            width: width as u64,
            limit: MAX_PIXELS,
        });
    }
    Ok((height, width))
}

/// How one stored sample is laid out in the decoded little-endian bytes.
struct SampleLayout {
    /// 1 or 2.
    bytes: usize,
    /// Significant low bits; the others are ignored (any value outside
    /// 1..=8 * bytes means all bits).
    bits_stored: u16,
    /// Two's complement in `bits_stored` bits.
    signed: bool,
}

impl SampleLayout {
    /// What a JPEG frame decodes to: unsigned bytes.
    const BYTE: Self = Self {
        bytes: 1,
        bits_stored: 8,
        signed: false,
    };

    /// The layout native pixel data declares (Bits Allocated 8 or 16).
    fn of(obj: &DefaultDicomObject) -> Result<Self, String> {
        let bytes = match int(obj, BITS_ALLOCATED) {
            Some(8) => 1,
            Some(16) => 2,
            other => return Err(format!("Bits Allocated {other:?} (only 8 and 16 are read)")),
        };
        Ok(Self {
            bytes,
            bits_stored: int(obj, BITS_STORED).unwrap_or(0) as u16,
            signed: int(obj, PIXEL_REPRESENTATION) == Some(1),
        })
    }

    /// The stored value of one sample (`bytes` long).
    fn value(&self, sample: &[u8]) -> f64 {
        let raw = sample.iter().rev().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        let all = 8 * self.bytes as u32;
        let bits = match u32::from(self.bits_stored) {
            b if (1..=all).contains(&b) => b,
            _ => all,
        };
        let unused = 32 - bits;
        if self.signed {
            f64::from(((raw << unused) as i32) >> unused)
        } else {
            f64::from((raw << unused) >> unused)
        }
    }
}

/// Modality values (finite) to 8-bit levels: window (finite, width >= 1) or
/// min-max, inversion for MONOCHROME1, `floor(255 y + 0.5)`.
fn to_levels(modality: &[f64], window: Option<Window>, invert: bool) -> Vec<u8> {
    let level: Box<dyn Fn(f64) -> f64> = match window {
        Some(Window { center, width }) => Box::new(move |m| linear_window(m, center, width)),
        None => {
            let (lo, hi) = modality
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &m| {
                    (lo.min(m), hi.max(m))
                });
            let span = hi - lo;
            Box::new(move |m| if span > 0.0 { (m - lo) / span } else { 0.0 })
        }
    };
    modality
        .iter()
        .map(|&m| {
            let y = level(m);
            let y = if invert { 1.0 - y } else { y };
            (255.0 * y + 0.5).floor().clamp(0.0, 255.0) as u8
        })
        .collect()
}

/// The DICOM linear VOI function, to [0, 1]; `width >= 1`.
fn linear_window(m: f64, center: f64, width: f64) -> f64 {
    let half = (width - 1.0) / 2.0;
    if m <= center - 0.5 - half {
        0.0
    } else if m > center - 0.5 + half {
        1.0
    } else {
        (m - (center - 0.5)) / (width - 1.0) + 0.5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoded first frame (or the native Pixel Data) of a fixture of
    /// `tests/fixtures/images`.
    fn fixture_frame(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/images")
            .join(name);
        let obj = dicom_object::open_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        obj.frame_pixel_data(0).expect("a frame").into_owned()
    }

    /// The JPEG lossless and JPEG-LS fixtures (`make_codec_fixtures.py`,
    /// other encoders: libjpeg-turbo and CharLS through Python) decode to
    /// the 12-bit samples of the native fixture, or to them shifted right by
    /// 4 bits for the 8-bit one; near-lossless to within its NEAR of 3.
    #[test]
    fn jpeg_lossless_and_jpeg_ls_decode_to_the_native_samples() {
        use JpegProcess::{Lossless, Ls};
        let native = fixture_frame("codec_native_40x30.dcm");
        let values: Vec<u16> = native.chunks(2).map(|s| u16::from_le_bytes([s[0], s[1]])).collect();
        assert!(values.iter().any(|&v| v > 3000), "12-bit samples");
        let shifted: Vec<u8> = values.iter().map(|&v| (v >> 4) as u8).collect();
        for (name, process, bits, want) in [
            ("codec_jpegll_sv1_40x30.dcm", Lossless, 12, (native.clone(), 2)),
            ("codec_jpegll_40x30.dcm", Lossless, 12, (native.clone(), 2)),
            ("codec_jpegll8_40x30.dcm", Lossless, 8, (shifted, 1)),
            ("codec_jpegls_40x30.dcm", Ls, 12, (native.clone(), 2)),
        ] {
            let stream = fixture_frame(name);
            assert_eq!(check_jpeg(&stream, process, (40, 30), 8 * want.1), Ok(bits), "{name}");
            assert_eq!(decode_jpeg(&stream, process, bits).unwrap(), want, "{name}");
        }
        let stream = fixture_frame("codec_jpegls_near_40x30.dcm");
        assert_eq!(check_jpeg(&stream, Ls, (40, 30), 16), Ok(12));
        let (near, 2) = decode_jpeg(&stream, Ls, 12).unwrap() else {
            panic!("two bytes per sample")
        };
        let errors: Vec<u16> = near
            .chunks(2)
            .zip(&values)
            .map(|(s, v)| u16::from_le_bytes([s[0], s[1]]).abs_diff(*v))
            .collect();
        assert!(
            errors.iter().all(|&e| e <= 3) && errors.iter().any(|&e| e > 0),
            "{errors:?}"
        );
    }

    #[test]
    fn samples_are_masked_and_sign_extended() {
        let s12 = SampleLayout {
            bytes: 2,
            bits_stored: 12,
            signed: true,
        };
        assert_eq!(s12.value(&[0xFF, 0xFF]), -1.0);
        assert_eq!(s12.value(&[0xFF, 0x07]), 2047.0);
        assert_eq!(s12.value(&[0x00, 0x08]), -2048.0);
        let u12 = SampleLayout {
            bytes: 2,
            bits_stored: 12,
            signed: false,
        };
        assert_eq!(u12.value(&[0xFF, 0xFF]), 4095.0);
        let i8 = SampleLayout {
            bytes: 1,
            bits_stored: 8,
            signed: true,
        };
        assert_eq!(i8.value(&[0x80]), -128.0);
        let u16_any = SampleLayout {
            bytes: 2,
            bits_stored: 0,
            signed: false,
        };
        assert_eq!(u16_any.value(&[0x34, 0x12]), 4660.0);
    }

    #[test]
    fn window_follows_the_dicom_linear_function() {
        let w = Some(Window {
            center: 100.0,
            width: 51.0,
        });
        // lo = 74.5, hi = 124.5
        assert_eq!(
            to_levels(&[74.5, 74.6, 99.5, 124.5, 124.6], w, false),
            vec![0, 1, 128, 255, 255]
        );
        assert_eq!(to_levels(&[74.5, 124.6], w, true), vec![255, 0]);
    }

    #[test]
    fn min_max_without_window_and_constant_frames() {
        assert_eq!(to_levels(&[-10.0, 0.0, 10.0], None, false), vec![0, 128, 255]);
        assert_eq!(to_levels(&[3.0, 3.0], None, false), vec![0, 0]);
        assert_eq!(to_levels(&[3.0, 3.0], None, true), vec![255, 255]);
    }
}
