//! Image decoding and the VQGAN preprocessing against OpenCV, albumentations
//! and pydicom (fixtures written by `tests/fixtures/images/make_fixtures.py`),
//! plus the errors of broken files.

use latent_he::data::image::{
    decode_image, list_images, preprocess, preprocess_u8, read_image, save_png, Image8, ImageError, ImageFormat,
    PAPER_SIZE,
};
use ndarray::{Array3, Axis};
use ndarray_npy::read_npy;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

/// Synthetic cases: file and the preprocessing sizes with a reference.
const CASES: &[(&str, &[usize])] = &[
    ("grey_64x64.png", &[32]),
    ("grey_300x437.png", &[64, 256]),
    ("grey_1000x37.png", &[16]),
    ("grey_13x20.png", &[32]),
    ("rgb_64x93.png", &[32]),
    ("grey16_90x70.png", &[32]),
    ("rgba_40x30.png", &[16]),
    ("greyalpha_40x30.png", &[16]),
    ("palette_40x30.png", &[16]),
    ("grey_60x80.jpg", &[32]),
    ("rgb_60x80.jpg", &[32]),
    ("mono1_48x40.dcm", &[32]),
    ("signed_30x50", &[24]),
];

/// The real samples (256 x 256 references).
const REAL: &[&str] = &["00000001_000.png", "00027426_000.png", "rsna-pneumonia-sample.dcm"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/images")
        .join(name)
}

fn npy_u8(path: PathBuf) -> Array3<u8> {
    read_npy(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn size(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

/// `a` (C = 1 or 3 along `axis`) broadcast to 3 channels.
fn three_channels(a: &Array3<u8>, axis: usize) -> Array3<u8> {
    let views: Vec<_> = (0..3)
        .map(|c| a.index_axis(Axis(axis), c % a.len_of(Axis(axis))))
        .collect();
    ndarray::stack(Axis(axis), &views).unwrap()
}

/// Largest and mean absolute difference of two equally shaped arrays.
fn diff(a: &Array3<u8>, b: &Array3<u8>) -> (u8, f64) {
    assert_eq!(a.shape(), b.shape());
    let d: Vec<u8> = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).collect();
    let mean = d.iter().map(|&v| f64::from(v)).sum::<f64>() / d.len() as f64;
    (d.into_iter().max().unwrap(), mean)
}

/// Exact, or for a JPEG (our decoder's IDCT and colour conversion round
/// differently from libjpeg-turbo's) off by at most 2 on a few samples.
fn assert_close(got: &Array3<u8>, want: &Array3<u8>, jpeg: bool, what: &str) {
    let (max, mean) = diff(got, want);
    if jpeg {
        assert!(max <= 2 && mean < 0.25, "{what}: differs by up to {max} (mean {mean})");
    } else {
        assert_eq!(max, 0, "{what}: differs by up to {max} (mean {mean})");
    }
}

/// PNG and DICOM decode exactly as cv2 / pydicom; JPEG nearly.
#[test]
fn decoding_matches_the_reference_readers() {
    for (name, _) in CASES {
        let got = read_image(&fixture(name)).unwrap();
        let want = npy_u8(fixture(&format!("{name}.decoded.npy")));
        let got3 = three_channels(&got.pixels().to_owned(), 2);
        assert_close(&got3, &three_channels(&want, 2), name.ends_with(".jpg"), name);
        let grey = name.starts_with("grey") || name.ends_with(".dcm") || name.starts_with("signed");
        assert_eq!(got.is_grey(), grey, "{name}");
    }
}

/// SmallestMaxSize + CenterCrop exactly as albumentations with cv2 INTER_LINEAR,
/// from the reference's decoded pixels (so JPEG decoders do not interfere),
/// and from our own decoding where it is exact.
#[test]
fn preprocessing_matches_albumentations_bit_for_bit() {
    for (name, sizes) in CASES {
        let reference = npy_u8(fixture(&format!("{name}.decoded.npy")));
        let from_reference = Image8::new(reference, Path::new(name)).unwrap();
        let decoded = read_image(&fixture(name)).unwrap();
        for &s in *sizes {
            let want = three_channels(&npy_u8(fixture(&format!("{name}.s{s}.npy"))), 0);
            assert_eq!(preprocess_u8(&from_reference, size(s)), want, "{name} at {s}");
            if !name.ends_with(".jpg") {
                assert_eq!(preprocess_u8(&decoded, size(s)), want, "{name} decoded by us, at {s}");
            }
        }
    }
}

#[test]
fn real_samples_preprocess_to_the_paper_input() {
    for name in REAL {
        let path = fixture(&format!("real/{name}"));
        let image = read_image(&path).unwrap();
        let x = preprocess(&image, PAPER_SIZE);
        assert_eq!(x.shape(), &[3, 256, 256], "{name}");
        assert!(x.iter().all(|v| (-1.0..=1.0).contains(v)), "{name}");
        let (lo, hi) = x.iter().fold((1.0f32, -1.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        assert!(hi - lo > 0.5, "{name}: nearly constant ({lo}..{hi})");
        let want = three_channels(&npy_u8(fixture(&format!("real/{name}.s256.npy"))), 0);
        let got = preprocess_u8(&image, PAPER_SIZE);
        // The DICOM is JPEG-compressed (pydicom decodes it with Pillow's libjpeg).
        assert_close(&got, &want, name.ends_with(".dcm"), name);
    }
}

#[test]
fn scaling_to_minus_one_one_is_numpy_f64_then_f32() {
    let ramp = Array3::from_shape_fn((16, 16, 1), |(y, x, _)| (16 * y + x) as u8);
    let image = Image8::new(ramp, Path::new("ramp")).unwrap();
    let u8s = preprocess_u8(&image, size(16));
    let x = preprocess(&image, size(16));
    for (a, b) in u8s.iter().zip(&x) {
        assert_eq!(*b, (f64::from(*a) / 127.5 - 1.0) as f32);
    }
    assert_eq!(x[(0, 0, 0)], -1.0);
    assert_eq!(x[(2, 15, 15)], 1.0);
}

#[test]
fn save_png_inverts_the_scaling() {
    let dir = tempfile::tempdir().unwrap();
    for (name, grey) in [("real/00000001_000.png", true), ("rgb_64x93.png", false)] {
        let image = read_image(&fixture(name)).unwrap();
        let x = preprocess(&image, size(32));
        let out = dir.path().join("out.png");
        save_png(x.view(), &out).unwrap();
        let back = read_image(&out).unwrap();
        assert_eq!(back.is_grey(), grey, "{name}");
        assert_eq!(
            preprocess_u8(&back, size(32)),
            preprocess_u8(&image, size(32)),
            "{name}"
        );
    }
    let bad = Array3::<f32>::zeros((1, 4, 4));
    let err = save_png(bad.view(), &dir.path().join("bad.png")).unwrap_err();
    assert!(matches!(err, ImageError::Shape { .. }), "{err}");
}

#[test]
fn format_is_sniffed_from_content() {
    for (name, format) in [
        ("grey_64x64.png", ImageFormat::Png),
        ("rgb_60x80.jpg", ImageFormat::Jpeg),
        ("signed_30x50", ImageFormat::Dicom),
    ] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        assert_eq!(ImageFormat::sniff(&bytes), Some(format), "{name}");
    }
    // A PNG named .jpg still decodes as a PNG.
    let bytes = std::fs::read(fixture("grey_13x20.png")).unwrap();
    let image = decode_image(&bytes, Path::new("misnamed.jpg")).unwrap();
    assert_eq!((image.height(), image.width()), (13, 20));
}

/// Whether an error is of the expected variant.
type Expected = fn(&ImageError) -> bool;

#[test]
fn broken_files_give_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let png = std::fs::read(fixture("grey_300x437.png")).unwrap();
    let dcm = std::fs::read(fixture("mono1_48x40.dcm")).unwrap();
    let jpg = std::fs::read(fixture("rgb_60x80.jpg")).unwrap();
    let random: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let cases: Vec<(&str, Vec<u8>, Expected)> = vec![
        ("truncated.png", png[..png.len() / 2].to_vec(), |e| {
            matches!(e, ImageError::Decode { .. })
        }),
        ("header-only.png", png[..40].to_vec(), |e| {
            matches!(e, ImageError::Decode { .. })
        }),
        ("header-only.jpg", jpg[..20].to_vec(), |e| {
            matches!(e, ImageError::Decode { .. })
        }),
        ("random.png", random, |e| matches!(e, ImageError::UnknownFormat { .. })),
        ("empty.png", Vec::new(), |e| matches!(e, ImageError::Empty { .. })),
        ("text.png", b"not an image\n".to_vec(), |e| {
            matches!(e, ImageError::UnknownFormat { .. })
        }),
        ("nopixels.dcm", std::fs::read(fixture("nopixels.dcm")).unwrap(), |e| {
            matches!(e, ImageError::NoPixelData { .. })
        }),
        ("truncated.dcm", dcm[..dcm.len() - 100].to_vec(), |e| {
            matches!(e, ImageError::Dicom { .. })
        }),
        ("preamble-only.dcm", dcm[..200].to_vec(), |e| {
            matches!(e, ImageError::Dicom { .. })
        }),
    ];
    for (name, bytes, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let err = read_image(&path).unwrap_err();
        assert!(expected(&err), "{name}: {err:?}");
        assert!(err.to_string().contains(name), "{name}: {err}");
    }
    let missing = dir.path().join("missing.png");
    assert!(matches!(read_image(&missing), Err(ImageError::Io { .. })));
}

/// Every prefix of every fixture fails cleanly or decodes: never a panic.
#[test]
fn no_prefix_of_a_fixture_panics() {
    let codecs = CODEC_FIXTURES.iter().map(|&name| (name, &[][..]));
    for (name, _) in CASES.iter().copied().chain([("nopixels.dcm", &[][..])]).chain(codecs) {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let step = (bytes.len() / 97).max(1);
        for end in (0..bytes.len()).step_by(step) {
            let _ = decode_image(&bytes[..end], Path::new(name));
        }
    }
}

#[test]
fn list_images_finds_image_files_sorted() {
    let dir = tempfile::tempdir().unwrap();
    let copy = |from: &str, to: &str| std::fs::copy(fixture(from), dir.path().join(to)).unwrap();
    copy("grey_13x20.png", "b.PNG");
    copy("rgb_60x80.jpg", "a.jpeg");
    copy("signed_30x50", "c");
    copy("mono1_48x40.dcm", "d.dcm");
    copy("grey_60x80.jpg", "e.jpg");
    std::fs::write(dir.path().join("notes"), "text").unwrap();
    std::fs::write(dir.path().join("f.txt"), "text").unwrap();
    std::fs::create_dir(dir.path().join("sub.png")).unwrap();
    let names: Vec<String> = list_images(dir.path())
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["a.jpeg", "b.PNG", "c", "d.dcm", "e.jpg"]);
    assert!(matches!(
        list_images(&dir.path().join("none")),
        Err(ImageError::Io { .. })
    ));
}

/// One explicit-VR little-endian element: tag, VR, value (padded to even
/// length with `pad`), or a declared length other than the value's.
fn element(tag: (u16, u16), vr: &[u8; 2], value: &[u8], declared: Option<u32>) -> Vec<u8> {
    let mut value = value.to_vec();
    if value.len() % 2 == 1 {
        value.push(if vr == b"UI" || vr == b"OB" { 0 } else { b' ' });
    }
    let len = declared.unwrap_or(value.len() as u32);
    let mut out = Vec::new();
    out.extend(tag.0.to_le_bytes());
    out.extend(tag.1.to_le_bytes());
    out.extend(vr);
    if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT") {
        out.extend([0, 0]);
        out.extend(len.to_le_bytes());
    } else {
        out.extend((len as u16).to_le_bytes());
    }
    out.extend(value);
    out
}

/// A DICOM file in transfer syntax `ts` with a data set of `elements`
/// (already encoded, in tag order).
fn dicom_file(ts: &str, elements: &[Vec<u8>]) -> Vec<u8> {
    let meta = element((0x0002, 0x0010), b"UI", ts.as_bytes(), None);
    let mut bytes = vec![0; 128];
    bytes.extend(b"DICM");
    bytes.extend(element(
        (0x0002, 0x0000),
        b"UL",
        &(meta.len() as u32).to_le_bytes(),
        None,
    ));
    bytes.extend(meta);
    for e in elements {
        bytes.extend(e);
    }
    bytes
}

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";

/// The image attributes of a `rows` x `columns` MONOCHROME2 8-bit image,
/// plus `extra` (encoded elements of group 0028 after Bits Stored, in order).
fn image_attributes(rows: u16, columns: u16, extra: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let us = |tag, v: u16| element((0x0028, tag), b"US", &v.to_le_bytes(), None);
    let mut out = vec![
        us(0x0002, 1),
        element((0x0028, 0x0004), b"CS", b"MONOCHROME2", None),
        us(0x0010, rows),
        us(0x0011, columns),
        us(0x0100, 8),
        us(0x0101, 8),
        us(0x0102, 7),
        us(0x0103, 0),
    ];
    out.extend(extra.iter().cloned());
    out
}

/// A native 2 x 2 image with `extra` attributes (Window, Rescale).
fn native_2x2(extra: &[Vec<u8>]) -> Vec<u8> {
    let mut elements = image_attributes(2, 2, extra);
    elements.push(element((0x7FE0, 0x0010), b"OB", &[0, 64, 128, 255], None));
    dicom_file(EXPLICIT_LE, &elements)
}

/// Encapsulated Pixel Data holding one fragment.
fn encapsulated(fragment: &[u8]) -> Vec<u8> {
    let mut fragment = fragment.to_vec();
    if fragment.len() % 2 == 1 {
        fragment.push(0);
    }
    let mut out = element((0x7FE0, 0x0010), b"OB", &[], Some(u32::MAX));
    let item = |len: u32| [0xFE, 0xFF, 0x00, 0xE0].into_iter().chain(len.to_le_bytes());
    out.extend(item(0));
    out.extend(item(fragment.len() as u32));
    out.extend(fragment);
    out.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    out
}

fn decode_err(bytes: &[u8], name: &str) -> ImageError {
    match decode_image(bytes, Path::new(name)) {
        Ok(image) => panic!(
            "{name}: decoded to {} x {}, expected a refusal",
            image.height(),
            image.width()
        ),
        Err(e) => e,
    }
}

#[test]
fn the_dicom_builder_makes_files_that_decode() {
    let ds = |v: &str| element((0x0028, 0x1050), b"DS", v.as_bytes(), None);
    let width = |v: &str| element((0x0028, 0x1051), b"DS", v.as_bytes(), None);
    let image = decode_image(&native_2x2(&[ds("128"), width("256")]), Path::new("ok.dcm")).unwrap();
    assert_eq!(image.pixels().iter().copied().collect::<Vec<_>>(), [0, 64, 128, 255]);
    let jpg = std::fs::read(fixture("grey_60x80.jpg")).unwrap();
    let mut elements = image_attributes(60, 80, &[]);
    elements.push(encapsulated(&jpg));
    let image = decode_image(&dicom_file(JPEG_BASELINE, &elements), Path::new("jpeg.dcm")).unwrap();
    assert_eq!((image.height(), image.width()), (60, 80));
}

/// Window fields that are not finite, or a width below 1, are refused
/// (a NaN centre gave a black image, an infinite width a grey one).
#[test]
fn non_finite_window_and_rescale_fields_are_refused() {
    let center = |v: &str| element((0x0028, 0x1050), b"DS", v.as_bytes(), None);
    let width = |v: &str| element((0x0028, 0x1051), b"DS", v.as_bytes(), None);
    let slope = |v: &str| element((0x0028, 0x1053), b"DS", v.as_bytes(), None);
    let cases = [
        ("nan-centre.dcm", vec![center("NaN"), width("256")], "Window"),
        ("inf-width.dcm", vec![center("128"), width("inf")], "Window"),
        ("zero-width.dcm", vec![center("128"), width("0")], "Window"),
        ("negative-width.dcm", vec![center("128"), width("-5")], "Window"),
        ("inf-slope.dcm", vec![slope("inf")], "Rescale Slope"),
        ("huge-slope.dcm", vec![slope("1e308")], "Rescale Slope"),
    ];
    for (name, extra, field) in cases {
        let e = decode_err(&native_2x2(&extra), name);
        assert!(matches!(e, ImageError::UnsupportedDicom { .. }), "{name}: {e:?}");
        assert!(
            e.to_string().contains(field) && e.to_string().contains(name),
            "{name}: {e}"
        );
    }
}

/// A Pixel Data element declaring ~4 GB is refused from its header, before
/// anything is allocated for it; so is a meta element's.
#[test]
fn declared_lengths_past_the_file_are_refused_before_reading() {
    let mut elements = image_attributes(2, 2, &[]);
    let mut pixels = element((0x7FE0, 0x0010), b"OW", &[0, 64, 128, 255], Some(0xFFFF_FFF0));
    pixels.truncate(pixels.len() - 2);
    elements.push(pixels);
    let start = std::time::Instant::now();
    let e = decode_err(&dicom_file(EXPLICIT_LE, &elements), "huge-pixels.dcm");
    assert!(
        start.elapsed() < std::time::Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(e, ImageError::Dicom { .. }), "{e:?}");
    assert!(e.to_string().contains("4294967280"), "{e}");

    let mut huge_uid = dicom_file(EXPLICIT_LE, &image_attributes(2, 2, &[]));
    // the Transfer Syntax UID's 2-byte length, after the group length element
    huge_uid[132 + 12 + 6..132 + 12 + 8].copy_from_slice(&0xFFF0u16.to_le_bytes());
    let e = decode_err(&huge_uid, "huge-uid.dcm");
    assert!(e.to_string().contains("65520"), "{e}");
}

/// The JPEG frame of a DICOM must have the size Rows and Columns declare.
#[test]
fn a_jpeg_frame_of_another_size_than_rows_and_columns_is_refused() {
    let jpg = std::fs::read(fixture("grey_60x80.jpg")).unwrap();
    for (rows, columns) in [(30, 30), (60, 79), (61, 80)] {
        let mut elements = image_attributes(rows, columns, &[]);
        elements.push(encapsulated(&jpg));
        let e = decode_err(&dicom_file(JPEG_BASELINE, &elements), "frame.dcm");
        assert!(e.to_string().contains("60 x 80"), "{rows} x {columns}: {e}");
    }
}

/// A JPEG cut short (which the decoder fills with grey) is refused, alone
/// or inside a DICOM; a complete one with bytes after its end still reads.
#[test]
fn truncated_jpegs_are_refused() {
    let jpg = std::fs::read(fixture("grey_60x80.jpg")).unwrap();
    for keep in [jpg.len() - 2, jpg.len() * 3 / 4, jpg.len() / 2] {
        let e = decode_err(&jpg[..keep], "cut.jpg");
        assert!(matches!(e, ImageError::Decode { .. }), "{keep}: {e:?}");
        assert!(e.to_string().contains("truncated"), "{keep}: {e}");
        let mut elements = image_attributes(60, 80, &[]);
        elements.push(encapsulated(&jpg[..keep]));
        let e = decode_err(&dicom_file(JPEG_BASELINE, &elements), "cut.dcm");
        assert!(e.to_string().contains("truncated"), "{keep}: {e}");
    }
    let mut trailing = jpg.clone();
    trailing.extend([0; 7]);
    assert!(decode_image(&trailing, Path::new("padded.jpg")).is_ok());
}

/// A header declaring more pixels than the cap is refused before decoding:
/// a JPEG and a PNG claiming 16000 x 16000, a DICOM with Rows x Columns
/// 16000 x 16000.
#[test]
fn images_past_the_pixel_cap_are_refused_from_their_header() {
    let too_many = |e: &ImageError| {
        matches!(
            e,
            ImageError::TooManyPixels {
                height: 16000,
                width: 16000,
                ..
            }
        )
    };
    let mut jpg = std::fs::read(fixture("grey_60x80.jpg")).unwrap();
    let sof = jpg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    jpg[sof + 5..sof + 9].copy_from_slice(&[0x3E, 0x80, 0x3E, 0x80]);
    let start = std::time::Instant::now();
    let e = decode_err(&jpg, "huge.jpg");
    assert!(too_many(&e), "{e:?}");
    assert!(start.elapsed() < std::time::Duration::from_millis(500));

    let mut png = std::fs::read(fixture("grey_64x64.png")).unwrap();
    // IHDR data at 16..29, its CRC at 29..33
    png[16..24].copy_from_slice(&[0, 0, 0x3E, 0x80, 0, 0, 0x3E, 0x80]);
    let mut crc = flate2::Crc::new();
    crc.update(&png[12..29]);
    png[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    let e = decode_err(&png, "huge.png");
    assert!(too_many(&e), "{e:?}");

    let mut elements = image_attributes(16000, 16000, &[]);
    elements.push(element((0x7FE0, 0x0010), b"OB", &[0; 4], None));
    let e = decode_err(&dicom_file(EXPLICIT_LE, &elements), "huge.dcm");
    assert!(too_many(&e), "{e:?}");
}

/// A PNG palette whose length is not a multiple of 3 made the png crate
/// panic (found by the `images` fuzz target); it is refused.
#[test]
fn a_palette_of_partial_entries_is_refused() {
    let png = std::fs::read(fixture("palette_40x30.png")).unwrap();
    let plte = png.windows(4).position(|w| w == b"PLTE").unwrap() - 4;
    let len = u32::from_be_bytes(png[plte..plte + 4].try_into().unwrap()) as usize;
    for cut in [1, 2] {
        let mut bytes = png[..plte].to_vec();
        let data = &png[plte + 8..plte + 8 + len - cut];
        bytes.extend(((len - cut) as u32).to_be_bytes());
        bytes.extend(b"PLTE");
        bytes.extend(data);
        let mut crc = flate2::Crc::new();
        crc.update(b"PLTE");
        crc.update(data);
        bytes.extend(crc.sum().to_be_bytes());
        bytes.extend(&png[plte + 12 + len..]);
        let e = decode_err(&bytes, "palette.png");
        assert!(matches!(e, ImageError::Decode { .. }), "{cut}: {e:?}");
        assert!(e.to_string().contains("palette"), "{cut}: {e}");
    }
    let crash = include_bytes!("fixtures/images/fuzz/png-palette-not-whole-entries.png");
    assert!(matches!(decode_err(crash, "crash.png"), ImageError::Decode { .. }));
}

/// A 1154-byte DICOM whose data set dicom-parser's token reader stops on,
/// but which dicom-object read on into a value of ~1 GB it zero-filled
/// (found by the `images` fuzz target): refused at once.
#[test]
fn a_data_set_the_length_check_cannot_walk_is_refused() {
    let bytes = include_bytes!("fixtures/images/fuzz/dicom-unreadable-data-set.dcm");
    let start = std::time::Instant::now();
    let e = decode_err(bytes, "unreadable.dcm");
    assert!(
        start.elapsed() < std::time::Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(e, ImageError::Dicom { .. }), "{e:?}");
}

/// The compressed DICOM fixtures of `make_codec_fixtures.py`.
const CODEC_FIXTURES: [&str; 10] = [
    "codec_rle_40x30.dcm",
    "codec_j2k_lossless_40x30.dcm",
    "codec_j2k_40x30.dcm",
    "codec_jpegll_sv1_40x30.dcm",
    "codec_jpegll_40x30.dcm",
    "codec_jpegll8_40x30.dcm",
    "codec_jpegls_40x30.dcm",
    "codec_jpegls_near_40x30.dcm",
    "codec_deflate_40x30.dcm",
    "codec_native_40x30.dcm",
];

/// Every byte of the compressed (and the native) fixtures flipped in turn
/// (the checksum-free formats reach the decoders with it): each file
/// decodes or is refused, none panics.
#[test]
fn no_flipped_byte_of_a_compressed_dicom_panics() {
    for name in CODEC_FIXTURES {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for at in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xFF] {
                let mut b = bytes.clone();
                b[at] ^= flip;
                let _ = decode_image(&b, Path::new(name));
            }
        }
    }
}

/// The grey levels of a decoded file of `tests/fixtures/images`.
fn levels(name: &str) -> Vec<u8> {
    let image = read_image(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!((image.height(), image.width()), (40, 30), "{name}");
    image.pixels().iter().copied().collect()
}

/// The compressed DICOM files written by
/// `tests/fixtures/images/make_codec_fixtures.py` from one 12-bit image
/// decode as the same image stored natively does: exactly when lossless,
/// within 3 of 255 levels when lossy; the 8-bit JPEG lossless one (the
/// image shifted right by 4 bits) within 2.
#[test]
fn compressed_dicom_decodes_as_the_native_image() {
    let native = levels("codec_native_40x30.dcm");
    assert!(native.contains(&0) && native.contains(&255));
    for name in [
        "codec_rle_40x30.dcm",
        "codec_j2k_lossless_40x30.dcm",
        "codec_jpegll_sv1_40x30.dcm",
        "codec_jpegll_40x30.dcm",
        "codec_jpegls_40x30.dcm",
        "codec_deflate_40x30.dcm",
    ] {
        assert_eq!(levels(name), native, "{name}");
    }
    let worst = |name| {
        let got = levels(name);
        let worst = got.iter().zip(&native).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        (worst, got != native)
    };
    assert!(matches!(worst("codec_j2k_40x30.dcm"), (1..=3, true)), "JPEG 2000 lossy");
    assert!(
        matches!(worst("codec_jpegls_near_40x30.dcm"), (1..=3, true)),
        "JPEG-LS near-lossless"
    );
    assert!(
        matches!(worst("codec_jpegll8_40x30.dcm"), (0..=2, _)),
        "8-bit JPEG lossless"
    );
}

/// The JPEG 2000 codestream of the lossless fixture.
fn j2k_codestream() -> Vec<u8> {
    let bytes = std::fs::read(fixture("codec_j2k_lossless_40x30.dcm")).unwrap();
    let start = bytes.windows(4).position(|w| w == [0xFF, 0x4F, 0xFF, 0x51]).unwrap();
    let end = bytes.windows(2).rposition(|w| w == [0xFF, 0xD9]).unwrap() + 2;
    bytes[start..end].to_vec()
}

/// 16-bit, 12 stored, MONOCHROME2 attributes of a `rows` x `columns` image.
fn attributes16(rows: u16, columns: u16) -> Vec<Vec<u8>> {
    let mut out = image_attributes(rows, columns, &[]);
    out[4] = element((0x0028, 0x0100), b"US", &16u16.to_le_bytes(), None);
    out[5] = element((0x0028, 0x0101), b"US", &12u16.to_le_bytes(), None);
    out[6] = element((0x0028, 0x0102), b"US", &11u16.to_le_bytes(), None);
    out
}

/// What a JPEG 2000 frame declares is checked before it is decoded: its
/// size against Rows x Columns, its end, its components and tiles.
#[test]
fn jpeg_2000_frames_that_do_not_fit_are_refused() {
    const J2K: &str = "1.2.840.10008.1.2.4.90";
    let stream = j2k_codestream();
    let file = |rows, columns, stream: &[u8]| {
        let mut elements = attributes16(rows, columns);
        elements.push(encapsulated(stream));
        dicom_file(J2K, &elements)
    };
    assert_eq!(
        decode_image(&file(40, 30, &stream), Path::new("ok.dcm"))
            .unwrap()
            .pixels()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        levels("codec_native_40x30.dcm"),
        "the builder's file decodes"
    );
    for (rows, columns) in [(30, 40), (39, 30), (400, 300)] {
        let e = decode_err(&file(rows, columns, &stream), "size.dcm");
        assert!(e.to_string().contains("40 x 30"), "{rows} x {columns}: {e}");
    }
    let e = decode_err(&file(40, 30, &stream[..stream.len() / 2]), "cut.dcm");
    assert!(e.to_string().contains("truncated"), "{e}");
    let mut two = stream.clone();
    two[40..42].copy_from_slice(&2u16.to_be_bytes()); // Csiz
    let e = decode_err(&file(40, 30, &two), "components.dcm");
    assert!(e.to_string().contains("2 components"), "{e}");
    let mut no_tiles = stream.clone();
    no_tiles[24..28].copy_from_slice(&[0; 4]); // XTsiz
    let e = decode_err(&file(40, 30, &no_tiles), "tiles.dcm");
    assert!(e.to_string().contains("tile grid"), "{e}");
    let e = decode_err(&file(40, 30, &stream[4..]), "nosoc.dcm");
    assert!(e.to_string().contains("SOC"), "{e}");
}

/// An RLE frame whose segments cannot fill Rows x Columns, or whose
/// header is not one, is refused before the decoder indexes past them.
#[test]
fn rle_frames_that_do_not_fit_are_refused() {
    const RLE: &str = "1.2.840.10008.1.2.5";
    // A 2 x 2 8-bit image: one segment of four bytes.
    let frame = |segment: &[u8], count: u32, offset: u32| {
        let mut f = count.to_le_bytes().to_vec();
        f.extend(offset.to_le_bytes());
        f.resize(64, 0);
        f.extend(segment);
        f
    };
    let file = |fragment: &[u8]| {
        let mut elements = image_attributes(2, 2, &[]);
        elements.push(encapsulated(fragment));
        dicom_file(RLE, &elements)
    };
    let image = decode_image(&file(&frame(&[3, 0, 64, 128, 255], 1, 64)), Path::new("ok.dcm")).unwrap();
    assert_eq!(image.pixels().iter().copied().collect::<Vec<_>>(), [0, 64, 128, 255]);
    for (name, fragment, what) in [
        ("short.dcm", frame(&[2, 0, 64, 128], 1, 64), "decodes to 3"),
        ("cut.dcm", frame(&[3, 0, 64], 1, 64), "literal run"),
        ("count.dcm", frame(&[3, 0, 64, 128, 255], 2, 64), "segments"),
        ("offset.dcm", frame(&[3, 0, 64, 128, 255], 1, 9999), "offsets"),
        ("header.dcm", vec![1, 0, 0, 0, 64], "header"),
    ] {
        let e = decode_err(&file(&fragment), name);
        assert!(e.to_string().contains(what), "{name}: {e}");
    }
}

/// The encapsulated frame of a compressed fixture (one fragment after an
/// empty offset table: the bytes after the second item header).
fn fixture_fragment(name: &str) -> Vec<u8> {
    let bytes = std::fs::read(fixture(name)).unwrap();
    let item = |from: usize| {
        from + bytes[from..]
            .windows(4)
            .position(|w| w == [0xFE, 0xFF, 0x00, 0xE0])
            .unwrap()
    };
    let second = item(item(0) + 8);
    let len = u32::from_le_bytes(bytes[second + 4..second + 8].try_into().unwrap()) as usize;
    bytes[second + 8..second + 8 + len].to_vec()
}

/// JPEG lossless and JPEG-LS frames are checked before they are decoded:
/// their size against Rows x Columns, their precision against Bits
/// Allocated, their frame header's process, and their end.
#[test]
fn jpeg_lossless_and_jpeg_ls_frames_that_do_not_fit_are_refused() {
    for (ts, name) in [
        ("1.2.840.10008.1.2.4.70", "codec_jpegll_sv1_40x30.dcm"),
        ("1.2.840.10008.1.2.4.80", "codec_jpegls_40x30.dcm"),
    ] {
        let stream = fixture_fragment(name);
        let file = |attributes: Vec<Vec<u8>>, stream: &[u8]| {
            let mut elements = attributes;
            elements.push(encapsulated(stream));
            dicom_file(ts, &elements)
        };
        let ok = decode_image(&file(attributes16(40, 30), &stream), Path::new("ok.dcm")).unwrap();
        let ok: Vec<u8> = ok.pixels().iter().copied().collect();
        assert_eq!(
            ok,
            levels("codec_native_40x30.dcm"),
            "{name}: the builder's file decodes"
        );
        for (rows, columns) in [(30, 40), (39, 30), (400, 300)] {
            let e = decode_err(&file(attributes16(rows, columns), &stream), "size.dcm");
            assert!(e.to_string().contains("40 x 30"), "{name} {rows} x {columns}: {e}");
        }
        let e = decode_err(&file(image_attributes(40, 30, &[]), &stream), "8bit.dcm");
        assert!(e.to_string().contains("12-bit"), "{name}: {e}");
        for keep in [stream.len() - 3, stream.len() / 2, 20] {
            let e = decode_err(&file(attributes16(40, 30), &stream[..keep]), "cut.dcm");
            assert!(e.to_string().contains("truncated"), "{name} {keep}: {e}");
        }
    }
    // a baseline JPEG under a JPEG lossless transfer syntax
    let jpg = std::fs::read(fixture("grey_60x80.jpg")).unwrap();
    let mut elements = image_attributes(60, 80, &[]);
    elements.push(encapsulated(&jpg));
    let e = decode_err(&dicom_file("1.2.840.10008.1.2.4.57", &elements), "baseline.dcm");
    assert!(e.to_string().contains("FFC0"), "{e}");
}

/// A Deflated Explicit VR Little Endian file whose data set inflates past
/// the cap (a deflate bomb: 300 MiB of zeros in about 300 KB) is refused
/// with a message, quickly; one whose deflate stream is cut short or
/// corrupt is refused too.
#[test]
fn deflated_data_sets_are_capped_and_checked() {
    use std::io::Write;
    const DEFLATED: &str = "1.2.840.10008.1.2.1.99";
    let deflate = |chunks: &[&[u8]]| {
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        for chunk in chunks {
            encoder.write_all(chunk).unwrap();
        }
        encoder.finish().unwrap()
    };
    // the meta group of a deflated file, then its data set deflated
    let file = |data_set: Vec<u8>| {
        let mut bytes = dicom_file(DEFLATED, &[]);
        bytes.extend(data_set);
        bytes
    };
    let plain: Vec<u8> = {
        let mut elements = image_attributes(2, 2, &[]);
        elements.push(element((0x7FE0, 0x0010), b"OB", &[0, 64, 128, 255], None));
        elements.concat()
    };
    let image = decode_image(&file(deflate(&[&plain])), Path::new("ok.dcm")).unwrap();
    assert_eq!(image.pixels().iter().copied().collect::<Vec<_>>(), [0, 64, 128, 255]);

    let zeros = vec![0u8; 1 << 20];
    let bomb = file(deflate(&vec![&zeros[..]; 300]));
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    let start = std::time::Instant::now();
    let e = decode_err(&bomb, "bomb.dcm");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(e, ImageError::Dicom { .. }), "{e:?}");
    assert!(e.to_string().contains("inflates to more than 268435456 bytes"), "{e}");

    let whole = deflate(&[&plain]);
    for (name, data_set) in [
        ("cut.dcm", whole[..whole.len() / 2].to_vec()),
        ("not-deflate.dcm", vec![0xFF; 64]),
    ] {
        let e = decode_err(&file(data_set), name);
        assert!(matches!(e, ImageError::Dicom { .. }), "{name}: {e:?}");
    }
}

/// A meta element whose VR is not one of PS3.5's (a flipped byte of the
/// native fixture's `UI`) has a 4-byte length for dicom-object, here
/// about 775 MB, which it zero-filled (1.1 s) before finding the file too
/// short: refused from the header, quickly.
#[test]
fn a_meta_element_of_unknown_vr_is_read_with_a_long_length() {
    let mut bytes = std::fs::read(fixture("codec_native_40x30.dcm")).unwrap();
    assert_eq!(&bytes[162..164], b"UI");
    bytes[162] = b'T';
    let start = std::time::Instant::now();
    let e = decode_err(&bytes, "unknown-vr.dcm");
    assert!(
        start.elapsed() < std::time::Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(e, ImageError::Dicom { .. }), "{e:?}");
    assert!(e.to_string().contains("(0002,0002)"), "{e}");
}

/// A transfer syntax that is not read (big endian) is refused with its UID.
#[test]
fn other_transfer_syntaxes_are_refused_by_name() {
    let e = decode_err(
        &dicom_file("1.2.840.10008.1.2.2", &image_attributes(2, 2, &[])),
        "big.dcm",
    );
    assert!(matches!(e, ImageError::UnsupportedDicom { .. }), "{e:?}");
    assert!(e.to_string().contains("1.2.840.10008.1.2.2"), "{e}");
}
