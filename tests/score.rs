//! `latent-he score`: whole test sets, plaintext and encrypted side by side,
//! written as it goes and resumed after an interruption.

mod common;

use common::{json, refused};
use ndarray::Array4;
use ndarray_npy::write_npy;
use rand::Rng;
use std::path::Path;
use std::process::{Command, Output};

/// A ResNet20 on 2x8x8 latents with random weights, and a latents data set
/// of `n` samples for it (labels with both values in every class).
fn latents_set(dir: &Path, n: usize) -> (String, String, Vec<String>) {
    let (model, classes) = common::small_resnet(dir, 3);
    let root = dir.join("latents");
    std::fs::create_dir_all(&root).unwrap();
    let mut rng = common::rng();
    let x = Array4::<f32>::from_shape_simple_fn((n, 2, 8, 8), || rng.gen_range(-1.0..1.0));
    write_npy(root.join("latents.npy"), &x).unwrap();
    let mut csv = classes.join(",") + "\n";
    for i in 0..n {
        let row: Vec<&str> = (0..classes.len())
            .map(|j| if (i + j) % 2 == 0 { "1" } else { "0" })
            .collect();
        csv += &(row.join(",") + "\n");
    }
    std::fs::write(root.join("labels.csv"), csv).unwrap();
    let names: Vec<String> = (0..n).map(|i| format!("case_{i:03}")).collect();
    std::fs::write(root.join("names.txt"), names.join("\n") + "\n").unwrap();
    (model.display().to_string(), root.display().to_string(), names)
}

fn score(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_latent-he"))
        .env("LATENT_HE_CACHE_DIR", dir.join("cache"))
        .arg("score")
        .args(args)
        .output()
        .unwrap()
}

fn rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// The arguments of an encrypted latents run at `insecure-n12-deep` on
/// `backend`, written to `out`, plus `extra`.
fn encrypted_args<'a>(
    model: &'a str,
    root: &'a str,
    backend: &'a str,
    out: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "--dataset",
        "latents",
        "--root",
        root,
        "--model",
        model,
        "--encrypted",
        "--preset",
        "insecure-n12-deep",
        "--backend",
        backend,
        "--out",
        out,
        "--json",
    ];
    args.extend(extra);
    args
}

/// Every row's encrypted probabilities (3 classes) within 1e-3 of the
/// plaintext ones; `rows[0]` is the header.
fn assert_he_follows_plain(rows: &[Vec<String>]) {
    let col = |name: &str| rows[0].iter().position(|h| h == name).unwrap();
    for row in &rows[1..] {
        for c in 0..3 {
            let p: f64 = row[col(&format!("plain:class_{c}"))].parse().unwrap();
            let h: f64 = row[col(&format!("he:class_{c}"))].parse().unwrap();
            assert!((p - h).abs() < 1e-3, "{p} vs {h}");
        }
    }
}

#[test]
fn encrypted_scores_follow_the_plaintext_and_an_interrupted_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (model, root, names) = latents_set(dir.path(), 5);
    let out = dir.path().join("out");
    let out_s = out.display().to_string();
    let args = encrypted_args(&model, &root, "cpu", &out_s, &[]);
    let summary = json(&score(dir.path(), &args));
    assert_eq!(summary["images"], 5);
    assert!(summary["encrypted"]["auroc"]["macro"].as_f64().is_some(), "{summary}");
    let first = rows(&out.join("results.csv"));
    let header = &first[0];
    assert_eq!(first.len(), 6);
    assert_eq!(first.iter().skip(1).map(|r| r[0].clone()).collect::<Vec<_>>(), names);
    assert_he_follows_plain(&first);
    for file in ["summary.md", "roc.png", "failed.csv", "run.json"] {
        assert!(out.join(file).exists(), "{file}");
    }
    // `metrics` reads the results file and agrees with the summary
    let results = out.join("results.csv").display().to_string();
    for (group, key) in [("he", "encrypted"), ("plain", "plain")] {
        let m = json(&common::latent_he(&[
            "metrics",
            "--results",
            &results,
            "--group",
            group,
            "--json",
        ]));
        assert_eq!(m["samples"], 5);
        for average in ["micro", "macro", "weighted"] {
            assert_eq!(m["f1"][average], summary[key]["f1"][average], "{group} {average}");
            assert_eq!(m["auroc"][average], summary[key]["auroc"][average], "{group} {average}");
        }
    }

    // interrupted: two complete rows and half of the third on disk
    let text = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let partial = format!(
        "{}\n{}\n{}\n{}",
        lines[0],
        lines[1],
        lines[2],
        &lines[3][..lines[3].len() / 2]
    );
    std::fs::write(out.join("results.csv"), partial).unwrap();
    let resumed = json(&score(dir.path(), &args));
    assert_eq!(resumed["images"], 5);
    let second = rows(&out.join("results.csv"));
    assert_eq!(second.len(), first.len(), "no row lost or repeated");
    assert_eq!(
        second[..3],
        first[..3],
        "rows before the interruption are kept as they were"
    );
    let plain_cols: Vec<usize> = (0..header.len())
        .filter(|&i| !header[i].starts_with("he:") && !header[i].starts_with("seconds"))
        .collect();
    for (a, b) in first.iter().zip(&second) {
        for &i in &plain_cols {
            assert_eq!(a[i], b[i], "column {}", header[i]);
        }
    }

    // the same folder for another model is refused
    std::fs::create_dir_all(dir.path().join("x")).unwrap();
    let (other, _, _) = latents_set(&dir.path().join("x"), 5);
    let mut other_args = args.to_vec();
    other_args[5] = &other;
    let message = refused(&score(dir.path(), &other_args));
    assert!(message.contains("another run"), "{message}");
}

#[test]
fn images_that_do_not_decode_are_listed_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("synth");
    let synth = common::latent_he(&[
        "synth",
        "--n",
        "6",
        "--seed",
        "5",
        "--out",
        &data.display().to_string(),
        "--json",
    ]);
    json(&synth);
    // break one of the images
    let first = std::fs::read_to_string(data.join("train_val_list.txt"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    std::fs::write(data.join("images").join(&first), b"not a png").unwrap();
    let weights = common::small_random_vqgan(dir.path());
    let out = dir.path().join("out");
    let (root, split) = (
        data.display().to_string(),
        data.join("train_val_list.txt").display().to_string(),
    );
    let (model, weights, out) = (
        common::fixture("resnet20_f8.safetensors"),
        weights.display().to_string(),
        out.display().to_string(),
    );
    let args = vec![
        "--dataset",
        "nih",
        "--root",
        &root,
        "--split",
        &split,
        "--model",
        &model,
        "--vqgan",
        &weights,
        "--backend",
        "cpu",
        "--out",
        &out,
        "--json",
    ];
    // a first run over a prefix of the split, then the whole split in the same folder: extended, not redone;
    // the broken image makes the exit status 1 (the summary printed all the same) unless --allow-failed
    let mut prefix = args.clone();
    prefix.extend(["--limit", "3"]);
    let failing = score(dir.path(), &prefix);
    assert_eq!(
        failing.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&failing.stderr)
    );
    assert!(String::from_utf8_lossy(&failing.stderr).contains("--allow-failed"));
    let mut args = args;
    args.push("--allow-failed");
    let mut prefix = args.clone();
    prefix.extend(["--limit", "3"]);
    let partial = json(&score(dir.path(), &prefix));
    assert_eq!(
        partial["images"], 2,
        "the broken image is listed, not scored: {partial}"
    );
    let before = std::fs::read_to_string(dir.path().join("out/results.csv")).unwrap();
    let summary = json(&score(dir.path(), &args));
    let after = std::fs::read_to_string(dir.path().join("out/results.csv")).unwrap();
    assert!(after.starts_with(&before), "earlier rows kept as they were");
    let failed = summary["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{summary}");
    assert_eq!(failed[0]["file"], first.as_str());
    let listed = std::fs::read_to_string(data.join("train_val_list.txt"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(summary["images"], listed - 1);
    assert!(summary["encrypted"].is_null());
}

fn merge(dir: &Path, out: &str, parts: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_latent-he"))
        .env("LATENT_HE_CACHE_DIR", dir.join("cache"))
        .args(["merge", "--json", "--out", out])
        .args(parts)
        .output()
        .unwrap()
}

/// Every column but the seconds (the same image scored twice takes other times).
fn without_seconds(rows: &[Vec<String>]) -> Vec<Vec<String>> {
    let keep: Vec<usize> = (0..rows[0].len())
        .filter(|&i| !rows[0][i].starts_with("seconds_"))
        .collect();
    rows.iter()
        .map(|r| keep.iter().map(|&i| r[i].clone()).collect())
        .collect()
}

#[test]
fn shards_scored_apart_merge_into_the_single_machine_run() {
    let dir = tempfile::tempdir().unwrap();
    let (model, root, names) = latents_set(dir.path(), 7);
    let folder = |name: &str| dir.path().join(name).display().to_string();
    let run = |out: &str, extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "--dataset",
            "latents",
            "--root",
            &root,
            "--model",
            &model,
            "--backend",
            "cpu",
            "--out",
            out,
            "--json",
        ];
        args.extend(extra);
        let mut command = Command::new(env!("CARGO_BIN_EXE_latent-he"));
        command
            .env("LATENT_HE_CACHE_DIR", dir.path().join("cache"))
            .arg("score");
        for (k, v) in env {
            command.env(k, v);
        }
        command.args(args).output().unwrap()
    };
    let (single, sharded) = (folder("single"), folder("sharded"));
    let whole = json(&run(&single, &[], &[]));
    // three shards, named three ways: the flag, a Slurm array (ids 1..=3),
    // a Kubernetes Indexed Job
    json(&run(&sharded, &["--shard", "0/3"], &[]));
    let slurm = [
        ("SLURM_ARRAY_TASK_ID", "2"),
        ("SLURM_ARRAY_TASK_COUNT", "3"),
        ("SLURM_ARRAY_TASK_MIN", "1"),
    ];
    json(&run(&sharded, &[], &slurm));
    json(&run(&sharded, &["--shards", "3"], &[("JOB_COMPLETION_INDEX", "2")]));
    let parts: Vec<String> = (0..3).map(|i| format!("{sharded}/shard-{i}-of-3")).collect();
    // contiguous, disjoint, covering: 7 = 2 + 2 + 3
    let scored: Vec<Vec<String>> = parts
        .iter()
        .map(|p| {
            rows(&Path::new(p).join("results.csv"))[1..]
                .iter()
                .map(|r| r[0].clone())
                .collect()
        })
        .collect();
    assert_eq!(scored, [names[..2].to_vec(), names[2..4].to_vec(), names[4..].to_vec()]);
    let sessions = rows(&Path::new(&parts[1]).join("sessions.csv"));
    assert_eq!(
        sessions[1][1..],
        ["cpu", "", "2", "2", "2"],
        "the shard's range is recorded"
    );

    let merged = folder("merged");
    let summary = json(&merge(dir.path(), &merged, &parts));
    assert_eq!(summary["images"], 7, "{summary}");
    assert_eq!(summary["missing"].as_array().unwrap().len(), 0, "{summary}");
    assert_eq!(summary["duplicates"].as_array().unwrap().len(), 0, "{summary}");
    assert_eq!(summary["backends"][0]["backend"], "cpu", "{summary}");
    assert_eq!(summary["backends"][0]["images"], 7, "{summary}");
    let (one, all) = (
        rows(&dir.path().join("single/results.csv")),
        rows(&dir.path().join("merged/results.csv")),
    );
    assert_eq!(
        without_seconds(&all),
        without_seconds(&one),
        "the same rows, in the split's order"
    );
    for average in ["micro", "macro", "weighted"] {
        for metric in ["auroc", "f1"] {
            let (a, b) = (
                summary["plain"][metric][average].as_f64().unwrap(),
                whole["plain"][metric][average].as_f64().unwrap(),
            );
            assert!((a - b).abs() <= 1e-12, "{metric} {average}: {a} vs {b}");
        }
    }
    let md = std::fs::read_to_string(dir.path().join("merged/summary.md")).unwrap();
    assert!(md.contains("| cpu |  | 7 |"), "{md}");
    assert!(dir.path().join("merged/roc.png").exists());

    // a part missing: its images are named, the exit status is 1
    let output = merge(dir.path(), &folder("gap"), &[parts[0].clone(), parts[2].clone()]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains(&format!(
            "2 image(s) of the split are in no part: {}, {}",
            names[2], names[3]
        )),
        "{err}"
    );
    let gap: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("gap/summary.json")).unwrap()).unwrap();
    assert_eq!(gap["missing"], serde_json::json!([names[2], names[3]]));
    assert_eq!(gap["images"], 5);

    // an overlapping part of the same run: reported, the first kept
    let overlap = folder("overlap");
    json(&run(&overlap, &["--offset", "1", "--limit", "2"], &[]));
    let mut with_overlap = parts.clone();
    with_overlap.push(overlap.clone());
    let summary = json(&merge(dir.path(), &folder("twice"), &with_overlap));
    let duplicates = summary["duplicates"].as_array().unwrap();
    let files: Vec<&str> = duplicates.iter().map(|d| d["file"].as_str().unwrap()).collect();
    assert_eq!(files, [&names[1], &names[2]], "{summary}");
    assert_eq!(duplicates[0]["dropped"], overlap.as_str());
    assert_eq!(summary["images"], 7);

    // a part of another run is refused, naming what differs
    let other = folder("other");
    json(&run(&other, &["--uncertain", "ones", "--shard", "1/3"], &[]));
    let err = refused(&merge(
        dir.path(),
        &folder("mixed"),
        &[parts[0].clone(), format!("{other}/shard-1-of-3"), parts[2].clone()],
    ));
    assert!(
        err.contains("only parts of the same run merge") && err.contains("uncertain"),
        "{err}"
    );
    assert!(!dir.path().join("mixed/results.csv").exists());

    // a shard and a range together make no sense
    let err = String::from_utf8_lossy(&run(&other, &["--shard", "1/3", "--limit", "2"], &[]).stderr).to_string();
    assert!(err.contains("--limit"), "{err}");
}

/// On the GPU (lavapipe in CI), batch after batch: the session keeps its
/// evaluator, keys resident, from one batch to the next.
#[test]
fn encrypted_scoring_on_the_gpu_follows_the_plaintext_batch_after_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (model, root, names) = latents_set(dir.path(), 2);
    let out = dir.path().join("out");
    let out_s = out.display().to_string();
    let summary = json(&score(
        dir.path(),
        &encrypted_args(&model, &root, "gpu", &out_s, &["--lockstep", "1"]),
    ));
    assert_eq!(summary["backend"], "gpu", "{summary}");
    let rows = rows(&out.join("results.csv"));
    assert_eq!(rows.iter().skip(1).map(|r| r[0].clone()).collect::<Vec<_>>(), names);
    assert_he_follows_plain(&rows);
}

/// Factors for `latent` (how far a random model's values grow differs from
/// draw to draw): the first of a fine geometric sequence whose peak is
/// past four times the plan's bound at `insecure-n12-deep` with 2 images
/// per set while the plaintext logits stay finite, and one whose logits
/// overflow f64.
fn scales_past_the_bound(model: &Path, latent: &ndarray::ArrayView3<f32>) -> (f32, f32) {
    use latent_he::he_nn::{Plan, ValueRange};
    use latent_he::nn::{fold, LoadOptions, Model};
    let model = fold(&Model::load(model, &LoadOptions::default()).unwrap());
    let params = latent_he::ckks::Params::preset("insecure-n12-deep").unwrap();
    let range = ValueRange::new(&model, &params, &Plan::for_params(&model, &params, 2).unwrap());
    let scaled = |k: f32| latent.mapv(|v| f64::from(v * k)).insert_axis(ndarray::Axis(0));
    let finite = |k: f32| model.forward(scaled(k).view()).unwrap().iter().all(|v| v.is_finite());
    let steps = || (0..400).map(|i| 1.05f32.powi(i));
    let past = steps()
        .find(|&k| range.peaks(scaled(k).view()).unwrap()[0] > 4.0 * range.bound())
        .filter(|&k| finite(k))
        .expect("a factor past the bound with finite logits");
    let overflowing = steps().find(|&k| !finite(k)).expect("a factor that overflows f64");
    (past, overflowing)
}

/// One latent made large enough that its values pass what the parameters
/// hold at the plan's last level: it would wrap the ciphertexts it shares
/// (`--batch 2` puts it in a set with another image). It is encrypted
/// alone, listed in the summary, and every other image still follows its
/// plaintext. Another, larger still, overflows even f64: it is listed as
/// failed, not scored.
#[test]
fn an_image_past_the_parameters_range_is_encrypted_alone_and_spoils_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let (model, root, names) = latents_set(dir.path(), 5);
    let latents = Path::new(&root).join("latents.npy");
    let mut x: Array4<f32> = ndarray_npy::read_npy(&latents).unwrap();
    let (past, _) = scales_past_the_bound(Path::new(&model), &x.index_axis(ndarray::Axis(0), 1));
    let (_, overflowing) = scales_past_the_bound(Path::new(&model), &x.index_axis(ndarray::Axis(0), 3));
    x.index_axis_mut(ndarray::Axis(0), 1).mapv_inplace(|v| v * past);
    x.index_axis_mut(ndarray::Axis(0), 3).mapv_inplace(|v| v * overflowing);
    write_npy(&latents, &x).unwrap();
    let out = dir.path().join("out");
    let out_s = out.display().to_string();
    let summary = json(&score(
        dir.path(),
        &encrypted_args(&model, &root, "cpu", &out_s, &["--batch", "2", "--allow-failed"]),
    ));
    let bound = summary["value_bound"].as_f64().unwrap();
    let apart = summary["encrypted_apart"].as_array().unwrap();
    assert_eq!(apart.len(), 1, "{summary}");
    assert_eq!(apart[0]["file"], names[1].as_str());
    let failed = summary["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{summary}");
    assert_eq!(failed[0]["file"], names[3].as_str());
    assert!(failed[0]["error"].as_str().unwrap().contains("not finite"), "{summary}");
    let results = rows(&out.join("results.csv"));
    let scored: Vec<&String> = names.iter().filter(|n| **n != names[3]).collect();
    assert_eq!(results.len(), scored.len() + 1);
    let peak_col = results[0].iter().position(|h| h == "peak").unwrap();
    for (row, name) in results[1..].iter().zip(&scored) {
        assert_eq!(&row[0], *name, "rows in the data set's order");
        let peak: f64 = row[peak_col].parse().unwrap();
        assert_eq!(peak > bound, **name == names[1], "{name}: peak {peak}, bound {bound}");
    }
    let others: Vec<Vec<String>> = results.into_iter().filter(|r| r[0] != names[1]).collect();
    assert_he_follows_plain(&others);
}
