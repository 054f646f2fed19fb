//! The synthetic NIH-layout data set: determinism, label statistics against
//! the real table, the files' layout, the visibility of each finding's sign,
//! and the refusals, through the library and the `latent-he synth` command.

use latent_he::data::synth::nih_labels::{FINDING_NAMES, LABEL_SETS};
use latent_he::data::synth::{
    plan, render, sample_labels, write_dataset, write_dataset_with, Finding, GrayImage, ImageRecord, Labels, Sex,
    Split, SynthConfig, SynthError, View, CSV_HEADER,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

mod common;
use common::{json, latent_he as run, refused};

/// Every file under `dir` (relative path -> bytes).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn same_parameters_same_bytes_other_seed_other_images() {
    let tmp = tempfile::tempdir().unwrap();
    let config = SynthConfig::new(12, 5, 96).unwrap();
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    write_dataset(&config, &a).unwrap();
    // The second run through the command, on one thread.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_latent-he"))
        .args(["synth", "--n", "12", "--seed", "5", "--size", "96", "--out"])
        .arg(&b)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // stderr is not a terminal here: no progress bar, only the timing line.
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("images/s") && !stderr.contains("ETA"), "{stderr}");
    let (fa, fb) = (files(&a), files(&b));
    assert_eq!(fa.len(), 12 + 4);
    assert!(fa == fb, "two runs differ");
    // Repeating into a finished set of the same parameters is allowed.
    write_dataset(&config, &a).unwrap();
    assert!(files(&a) == fa);

    write_dataset(&SynthConfig::new(12, 6, 96).unwrap(), &c).unwrap();
    let fc = files(&c);
    let differing = fa
        .iter()
        .filter(|(name, bytes)| name.starts_with("images") && fc.get(*name).is_some_and(|other| other != *bytes))
        .count();
    let shared = fa
        .keys()
        .filter(|n| n.starts_with("images") && fc.contains_key(*n))
        .count();
    assert!(
        shared > 0 && differing == shared,
        "{differing} of {shared} shared images differ"
    );
}

/// Share of the real table's images whose label set satisfies `pred`.
fn table_share(pred: impl Fn(u16) -> bool) -> f64 {
    let total: u64 = LABEL_SETS.iter().map(|&(_, c)| u64::from(c)).sum();
    let hits: u64 = LABEL_SETS
        .iter()
        .filter(|&&(m, _)| pred(m))
        .map(|&(_, c)| u64::from(c))
        .sum();
    hits as f64 / total as f64
}

#[test]
fn sampled_labels_match_the_real_prevalences_and_co_occurrences() {
    const DRAWS: usize = 200_000;
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let draws: Vec<Labels> = (0..DRAWS).map(|_| sample_labels(&mut rng)).collect();
    let check = |what: &str, expected: f64, pred: &dyn Fn(&Labels) -> bool| {
        let observed = draws.iter().filter(|l| pred(l)).count() as f64 / DRAWS as f64;
        let se = (expected * (1.0 - expected) / DRAWS as f64).sqrt();
        assert!(
            (observed - expected).abs() < 5.0 * se,
            "{what}: {observed:.5} drawn vs {expected:.5} in the table (se {se:.5})"
        );
    };
    for (bit, name) in FINDING_NAMES.iter().enumerate() {
        let f = Finding::from_name(name).unwrap();
        check(name, table_share(|m| m >> bit & 1 == 1), &|l| l.contains(f));
    }
    check("No Finding", table_share(|m| m == 0), &|l| l.is_empty());
    // NIH's own numbers, as a check of the table: 60,361 No Finding, 13,317 Effusion.
    assert!((table_share(|m| m == 0) - 60_361.0 / 112_120.0).abs() < 1e-12);
    let (eff, atel) = (Finding::Effusion, Finding::Atelectasis);
    let both = table_share(|m| m & (1 << eff as u16) != 0 && m & (1 << atel as u16) != 0);
    assert!(both > 0.02, "Effusion with Atelectasis is common in NIH: {both}");
    check("Effusion & Atelectasis", both, &|l| l.contains(eff) && l.contains(atel));
    let mass_nodule = table_share(|m| m & (1 << Finding::Mass as u16) != 0 && m & (1 << Finding::Nodule as u16) != 0);
    check("Mass & Nodule", mass_nodule, &|l| {
        l.contains(Finding::Mass) && l.contains(Finding::Nodule)
    });
}

#[test]
fn csv_split_lists_and_png_chunks_follow_nih() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("set");
    let summary = write_dataset(&SynthConfig::new(60, 11, 64).unwrap(), &dir).unwrap();

    let csv = std::fs::read_to_string(dir.join("Data_Entry_2017.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,\
         OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
    );
    assert_eq!(CSV_HEADER, csv.lines().next().unwrap());
    let mut patient_of = BTreeMap::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 11, "{line}");
        let (patient, follow_up): (u32, u32) = (f[3].parse().unwrap(), f[2].parse().unwrap());
        assert_eq!(f[0], format!("{patient:08}_{follow_up:03}.png"));
        assert!(
            f[1] == "No Finding" || f[1].split('|').all(|n| Finding::from_name(n).is_some()),
            "{line}"
        );
        assert!(f[4].parse::<u8>().unwrap() <= 100);
        assert!(matches!(f[5], "M" | "F") && matches!(f[6], "PA" | "AP"), "{line}");
        assert_eq!((f[7], f[8]), ("64", "64"));
        assert_eq!(f[9].parse::<f64>().unwrap(), 400.0 / 64.0);
        assert!(dir.join("images").join(f[0]).is_file());
        patient_of.insert(f[0].to_string(), patient);
    }
    assert_eq!(patient_of.len(), 60);

    let list = |name: &str| -> Vec<String> {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        text.lines().map(str::to_string).collect()
    };
    let (train, test) = (list("train_val_list.txt"), list("test_list.txt"));
    assert_eq!((train.len(), test.len()), (summary.train, summary.test));
    assert!(!train.is_empty() && !test.is_empty());
    let all: BTreeSet<&String> = train.iter().chain(&test).collect();
    assert_eq!(all.len(), 60, "the lists partition the images");
    assert!(all.iter().all(|n| patient_of.contains_key(*n)));
    let train_patients: HashSet<u32> = train.iter().map(|n| patient_of[n]).collect();
    assert!(
        test.iter().all(|n| !train_patients.contains(&patient_of[n])),
        "a patient on both sides"
    );

    let readme = std::fs::read_to_string(dir.join("README.txt")).unwrap();
    assert!(readme.starts_with("SYNTHETIC") && readme.contains("seed: 11") && readme.contains("n: 60"));

    // Each PNG: 8-bit grey, the right size, not constant, marked synthetic.
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(dir.join("images/00000001_000.png")).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let info = reader.info();
    assert_eq!((info.width, info.height), (64, 64));
    assert_eq!(
        (info.color_type, info.bit_depth),
        (png::ColorType::Grayscale, png::BitDepth::Eight)
    );
    let comment = info
        .uncompressed_latin1_text
        .iter()
        .find(|t| t.keyword == "Comment")
        .unwrap();
    assert!(comment
        .text
        .starts_with("SYNTHETIC chest radiograph generated by latent-he synth, not a real image"));
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    reader.next_frame(&mut pixels).unwrap();
    let (lo, hi) = (pixels.iter().min().unwrap(), pixels.iter().max().unwrap());
    assert!(hi - lo > 100, "contrast {lo}..{hi}");
}

/// A record of patient `patient` with `labels` (plan-independent).
fn record(patient: u32, labels: Labels) -> ImageRecord {
    ImageRecord {
        patient,
        follow_up: 0,
        age: 50,
        sex: Sex::Male,
        view: View::Pa,
        split: Split::TrainVal,
        labels,
    }
}

/// Mean grey level of `image` over the box of fractions `x0..x1`, `y0..y1`.
fn region_mean(image: &GrayImage, x0: f64, x1: f64, y0: f64, y1: f64) -> f64 {
    let n = image.size() as usize;
    let range = |a: f64, b: f64| (a * n as f64) as usize..(b * n as f64) as usize;
    let (mut sum, mut count) = (0.0, 0);
    for y in range(y0, y1) {
        for x in range(x0, x1) {
            sum += f64::from(image.pixels()[y * n + x]);
            count += 1;
        }
    }
    sum / count as f64
}

/// The image averaged over `block` x `block` tiles (what an f = 8 encoder
/// keeps at most).
fn pooled(image: &GrayImage, block: usize) -> Vec<f64> {
    let n = image.size() as usize;
    let m = n / block;
    let mut out = vec![0.0; m * m];
    for (i, &p) in image.pixels().iter().enumerate() {
        out[(i / n / block) * m + (i % n) / block] += f64::from(p) / (block * block) as f64;
    }
    out
}

#[test]
fn every_finding_changes_the_image_visibly_after_8x_pooling() {
    const SEED: u64 = 3;
    for patient in 1..=3 {
        let clear = render(SEED, &record(patient, Labels::NONE), 256);
        assert_eq!(clear.pixels().len(), 256 * 256);
        assert_eq!(clear, render(SEED, &record(patient, Labels::NONE), 256));
        let base = pooled(&clear, 8);
        for f in Finding::ALL {
            let sick = render(SEED, &record(patient, Labels::of(&[f])), 256);
            let diff = pooled(&sick, 8)
                .iter()
                .zip(&base)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(
                diff > 12.0,
                "patient {patient}, {}: largest 8x8 change {diff:.1}",
                f.name()
            );
        }
    }
}

#[test]
fn findings_change_their_own_regions() {
    const SEED: u64 = 9;
    for patient in 1..=3 {
        let clear = render(SEED, &record(patient, Labels::NONE), 256);
        let with = |f: Finding| render(SEED, &record(patient, Labels::of(&[f])), 256);
        // Cardiomegaly widens the heart into the left lung (image right) and a
        // little into the right: the band beside the heart brightens.
        let band = |im: &GrayImage| region_mean(im, 0.3, 0.8, 0.5, 0.68);
        let big = with(Finding::Cardiomegaly);
        assert!(band(&big) > band(&clear) + 8.0, "{} vs {}", band(&big), band(&clear));
        // Emphysema darkens the lungs; effusion brightens a lung base.
        let lungs = |im: &GrayImage| region_mean(im, 0.15, 0.85, 0.25, 0.55);
        assert!(lungs(&with(Finding::Emphysema)) < lungs(&clear) - 5.0);
        let bases = |im: &GrayImage| region_mean(im, 0.1, 0.9, 0.55, 0.75);
        assert!(bases(&with(Finding::Effusion)) > bases(&clear) + 4.0);
        // Hernia: only the retrocardiac area changes.
        let hernia = with(Finding::Hernia);
        assert!((region_mean(&hernia, 0.0, 1.0, 0.0, 0.35) - region_mean(&clear, 0.0, 1.0, 0.0, 0.35)).abs() < 0.01);
    }
}

#[test]
fn plan_agrees_with_the_written_table() {
    let config = SynthConfig::new(40, 21, 64).unwrap();
    let records = plan(&config);
    let tmp = tempfile::tempdir().unwrap();
    write_dataset(&config, tmp.path()).unwrap();
    let csv = std::fs::read_to_string(tmp.path().join("Data_Entry_2017.csv")).unwrap();
    for (r, line) in records.iter().zip(csv.lines().skip(1)) {
        assert!(line.starts_with(&format!("{},{},", r.file_name(), r.labels)), "{line}");
    }
}

#[test]
fn command_prints_one_json_object_and_refuses_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("set");
    let d = dir.to_str().unwrap();
    let v = json(&run(&[
        "synth", "--n", "10", "--seed", "4", "--size", "64", "--out", d, "--json",
    ]));
    assert_eq!(
        (v["n"].as_u64(), v["seed"].as_u64(), v["size"].as_u64()),
        (Some(10), Some(4), Some(64))
    );
    assert_eq!(v["train"].as_u64().unwrap() + v["test"].as_u64().unwrap(), 10);
    assert_eq!(v["out"], d);
    let prevalence = v["prevalence"].as_object().unwrap();
    assert_eq!(prevalence.len(), 15);
    assert!(prevalence.contains_key("No Finding") && prevalence.contains_key("Pleural_Thickening"));

    // Same parameters again: fine. Other parameters into it: refused, untouched.
    assert!(run(&["synth", "--n", "10", "--seed", "4", "--size", "64", "--out", d])
        .status
        .success());
    let before = files(&dir);
    let err = refused(&run(&["synth", "--n", "11", "--seed", "4", "--size", "64", "--out", d]));
    assert!(err.contains("not empty"), "{err}");
    assert!(files(&dir) == before);

    // A folder with foreign files: refused, nothing written.
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let f = foreign.to_str().unwrap();
    refused(&run(&["synth", "--n", "3", "--seed", "1", "--out", f]));
    assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 1);
    assert!(matches!(
        write_dataset(&SynthConfig::new(3, 1, 64).unwrap(), &foreign),
        Err(SynthError::ForeignDirectory { .. })
    ));

    let err = refused(&run(&["synth", "--n", "0", "--seed", "1", "--out", d]));
    assert!(err.contains("at least 1"), "{err}");
    assert!(matches!(SynthConfig::new(0, 1, 256), Err(SynthError::NoImages)));
    refused(&run(&["synth", "--n", "2", "--seed", "1", "--size", "16", "--out", d]));
    assert!(matches!(
        SynthConfig::new(1, 1, 16),
        Err(SynthError::Size { size: 16, .. })
    ));
}

/// `write_dataset_with` reports every image it writes, once.
#[test]
fn every_written_image_is_reported_once() {
    let tmp = tempfile::tempdir().unwrap();
    let written = std::sync::atomic::AtomicUsize::new(0);
    let summary = write_dataset_with(&SynthConfig::new(9, 3, 64).unwrap(), tmp.path(), &|| {
        written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(summary.n, 9);
    assert_eq!(written.into_inner(), 9);
    assert_eq!(std::fs::read_dir(tmp.path().join("images")).unwrap().count(), 9);
}
