//! The report figures: `roc_points` against scikit-learn's `roc_curve`
//! (fixtures written by `tests/fixtures/report/make_fixtures.py`), the two
//! PNG figures decoded back (size, colours of the curves, rendered text), and
//! the refusals.
//!
//! Set `REPORT_FIGURES_DIR` to a folder to keep a copy of the figures drawn
//! here, to look at them.

use image::{Rgb, RgbImage};
use latent_he::report::{roc_png, roc_points, time_vs_latent_png, PlotError, RocCurves, Series};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;

const TOLERANCE: f64 = 1e-12;
use latent_he::nn::spec::NIH15 as NIH;
/// Line colours the figures promise: plaintext ROC, encrypted ROC, and the
/// first four series of the time figure.
const PLAIN: Rgb<u8> = Rgb([31, 119, 180]);
const ENCRYPTED: Rgb<u8> = Rgb([230, 110, 0]);
const SERIES: [Rgb<u8>; 4] = [
    Rgb([31, 119, 180]),
    Rgb([255, 127, 14]),
    Rgb([44, 160, 44]),
    Rgb([214, 39, 40]),
];

#[test]
fn roc_points_match_scikit_learn() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report/roc_points.json");
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(cases.len(), 9, "cases written by make_fixtures.py");
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let labels: Vec<bool> = (case["labels"].as_array().unwrap().iter())
            .map(|l| l.as_u64().unwrap() == 1)
            .collect();
        let scores: Vec<f64> = (case["scores"].as_array().unwrap().iter())
            .map(|s| s.as_f64().unwrap())
            .collect();
        let got = roc_points(&labels, &scores);
        if case["fpr"].is_null() {
            assert_eq!(got, None, "{name}: undefined in scikit-learn");
            continue;
        }
        let got = got.unwrap_or_else(|| panic!("{name}: no curve"));
        let fpr = case["fpr"].as_array().unwrap();
        let tpr = case["tpr"].as_array().unwrap();
        assert_eq!(got.len(), fpr.len(), "{name}: number of points");
        for (k, ((x, y), (fx, ty))) in got.iter().zip(fpr.iter().zip(tpr)).enumerate() {
            let (fx, ty) = (fx.as_f64().unwrap(), ty.as_f64().unwrap());
            assert!(
                (x - fx).abs() <= TOLERANCE && (y - ty).abs() <= TOLERANCE,
                "{name}, point {k}: ({x}, {y}) but scikit-learn has ({fx}, {ty})"
            );
        }
    }
}

/// Area under a curve of points sorted by x (trapezoids).
fn area(points: &[(f64, f64)]) -> f64 {
    points
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
        .sum()
}

/// Fifteen classes of 400 samples with scores that carry some signal; the
/// encrypted scores are the plaintext ones plus a small error, as CKKS
/// gives. The last class has no positive sample, so no curve.
fn fifteen_classes() -> Vec<RocCurves> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    NIH.iter()
        .enumerate()
        .map(|(c, name)| {
            let prevalence = if c == NIH.len() - 1 {
                0.0
            } else {
                0.05 + 0.02 * c as f64
            };
            let labels: Vec<bool> = (0..400).map(|_| rng.gen_bool(prevalence)).collect();
            let plain: Vec<f64> = (labels.iter())
                .map(|&l| {
                    let signal = if l { 0.4 + 0.1 * (c % 5) as f64 } else { 0.0 };
                    ((signal + rng.gen_range(-0.5..0.5)) * 100.0).round() / 100.0
                })
                .collect();
            let encrypted: Vec<f64> = (plain.iter()).map(|s| s + rng.gen_range(-0.02..0.02)).collect();
            let plain = roc_points(&labels, &plain);
            let encrypted = roc_points(&labels, &encrypted);
            RocCurves {
                class: name.to_string(),
                auc_plain: plain.as_deref().map(area),
                auc_encrypted: encrypted.as_deref().map(area),
                plain,
                encrypted,
            }
        })
        .collect()
}

/// Four series over four latent sizes, with points not run.
fn four_series() -> (Vec<String>, Vec<Series>) {
    let labels = ["f2", "f4", "f8", "f16"].map(String::from).to_vec();
    let series = [
        ("ResNet20 cpu", [Some(412.0), Some(101.5), Some(27.3), Some(7.9)]),
        ("ResNet20 gpu", [None, Some(12.4), Some(3.6), Some(1.02)]),
        ("CNN cpu", [Some(95.0), None, Some(6.1), Some(1.7)]),
        ("CNN gpu", [Some(9.8), Some(2.6), Some(0.71), None]),
    ]
    .map(|(name, seconds)| Series {
        name: name.to_string(),
        seconds: seconds.to_vec(),
    })
    .to_vec();
    (labels, series)
}

/// Decodes the PNG at `path`, checks its size, and keeps a copy in
/// `REPORT_FIGURES_DIR` when that is set.
fn decode(path: &Path, size: (u32, u32)) -> RgbImage {
    if let Some(dir) = std::env::var_os("REPORT_FIGURES_DIR") {
        std::fs::copy(path, Path::new(&dir).join(path.file_name().unwrap())).unwrap();
    }
    let image = image::open(path).unwrap().to_rgb8();
    assert_eq!(image.dimensions(), size);
    image
}

/// Checks a figure is not blank: many colours (anti-aliased text and lines),
/// every colour in `lines` present, and dark text pixels in the top band
/// (the title) and in the left band (axis labels).
fn assert_drawn(image: &RgbImage, lines: &[Rgb<u8>]) {
    let colours: HashSet<Rgb<u8>> = image.pixels().copied().collect();
    assert!(colours.len() > 20, "only {} colours", colours.len());
    for colour in lines {
        assert!(colours.contains(colour), "no pixel of {colour:?}");
    }
    let dark = |x0: u32, x1: u32, y0: u32, y1: u32| {
        (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| (x, y)))
            .filter(|&(x, y)| image.get_pixel(x, y).0.iter().all(|&v| v < 100))
            .count()
    };
    let (width, height) = image.dimensions();
    assert!(dark(0, width, 0, 40) > 200, "no title text");
    assert!(dark(0, 130, 0, height) > 200, "no axis label text");
}

#[test]
fn roc_png_fifteen_classes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roc.png");
    roc_png(
        &path,
        "NIH ChestX-ray14, ResNet20: plaintext vs CKKS",
        &fifteen_classes(),
    )
    .unwrap();
    // 4 x 4 panels of 380 px, 20 px border, 92 px header.
    let image = decode(&path, (4 * 380 + 40, 4 * 380 + 112));
    assert_drawn(&image, &[PLAIN, ENCRYPTED]);
}

#[test]
fn roc_png_single_class() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roc_one.png");
    let mut curves = fifteen_classes();
    curves.truncate(1);
    curves[0].encrypted = None;
    roc_png(&path, "one class", &curves).unwrap();
    let image = decode(&path, (380 + 40, 380 + 112));
    assert_drawn(&image, &[PLAIN]);
}

#[test]
fn time_png_four_series_with_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("time.png");
    let (labels, series) = four_series();
    time_vs_latent_png(&path, "Encrypted inference time per image", &labels, &series).unwrap();
    let image = decode(&path, (1120, 660));
    assert_drawn(&image, &SERIES);
}

#[test]
fn time_png_one_size_and_an_empty_series() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("time_one.png");
    let series = [
        Series {
            name: "not run".into(),
            seconds: vec![None],
        },
        Series {
            name: "ResNet20 cpu".into(),
            seconds: vec![Some(1.0)],
        },
    ];
    time_vs_latent_png(&path, "one latent size", &["f8".into()], &series).unwrap();
    // Colours follow the series' positions: the drawn one is the second.
    let image = decode(&path, (1120, 660));
    assert_drawn(&image, &[SERIES[1]]);
    assert!(!image.pixels().any(|p| *p == SERIES[0]), "series without points drawn");
}

#[test]
fn refusals_name_the_file_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("refused.png");
    let check = |result: Result<(), PlotError>| {
        let error = result.unwrap_err();
        assert!(error.to_string().contains("refused.png"), "{error}");
        assert!(!path.exists());
        error
    };

    let error = check(roc_png(&path, "t", &[]));
    assert!(matches!(error, PlotError::NoData { .. }), "{error:?}");
    let mut curves = fifteen_classes();
    curves[3].encrypted.as_mut().unwrap()[2].1 = f64::NAN;
    let error = check(roc_png(&path, "t", &curves));
    assert!(
        matches!(&error, PlotError::InvalidRocPoint { class, .. } if class == "Infiltration"),
        "{error:?}"
    );
    let mut curves = fifteen_classes();
    curves[0].auc_plain = Some(1.5);
    let error = check(roc_png(&path, "t", &curves));
    assert!(
        matches!(error, PlotError::InvalidAuc { value, .. } if value == 1.5),
        "{error:?}"
    );

    let (labels, series) = four_series();
    let error = check(time_vs_latent_png(&path, "t", &[], &series));
    assert!(matches!(error, PlotError::NoData { .. }), "{error:?}");
    let error = check(time_vs_latent_png(&path, "t", &labels, &[]));
    assert!(matches!(error, PlotError::NoData { .. }), "{error:?}");
    let mut short = series.clone();
    short[1].seconds.pop();
    let error = check(time_vs_latent_png(&path, "t", &labels, &short));
    assert!(
        matches!(
            error,
            PlotError::LengthMismatch {
                expected: 4,
                found: 3,
                ..
            }
        ),
        "{error:?}"
    );
    for bad in [f64::NAN, f64::INFINITY, 0.0, -1.0] {
        let mut invalid = series.clone();
        invalid[2].seconds[3] = Some(bad);
        let error = check(time_vs_latent_png(&path, "t", &labels, &invalid));
        assert!(
            matches!(&error, PlotError::InvalidSeconds { label, .. } if label == "f16"),
            "{error:?}"
        );
    }
    let none: Vec<Series> = (series.iter())
        .map(|s| Series {
            name: s.name.clone(),
            seconds: vec![None; 4],
        })
        .collect();
    let error = check(time_vs_latent_png(&path, "t", &labels, &none));
    assert!(matches!(error, PlotError::NoData { .. }), "{error:?}");
}

#[test]
fn unwritable_path_is_a_write_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("time.png");
    let (labels, series) = four_series();
    let error = time_vs_latent_png(&path, "t", &labels, &series).unwrap_err();
    assert!(matches!(error, PlotError::Write { .. }), "{error:?}");
    assert!(error.to_string().contains("missing/time.png"), "{error}");
}
