//! Multi-label AUROC / F1 against scikit-learn's numbers (fixtures written by
//! `tests/fixtures/metrics/make_fixtures.py`), through the library and through
//! the `latent-he metrics` command, plus a hand-computed example and the
//! refusals.

use latent_he::data::metrics::{check_class_names, evaluate, MetricsError, MultiLabelMetrics};
use latent_he::data::parse_csv_table;
use ndarray::{array, Array2};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{latent_he as run, refused};

const TOLERANCE: f64 = 1e-9;
/// Cases written by make_fixtures.py; a missing one fails the test.
const CASES: [&str; 9] = [
    "all_negative",
    "chexpert14_labels_float",
    "chexpert14_rounded1",
    "large2000_rounded2",
    "nih15_rounded4",
    "single_sample",
    "small5_chexpert14",
    "threshold_edges",
    "tiny_ties",
];

fn fixture_dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/metrics")
        .join(case)
}

fn expected(case: &str) -> Value {
    let text = std::fs::read_to_string(fixture_dir(case).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The library's result in the command's JSON layout (independent of the
/// command's own serializer, so the two paths check each other).
fn library_json(names: &[String], m: &MultiLabelMetrics) -> Value {
    let avg = |a: Option<f64>| a.map_or(Value::Null, |v| json!(v));
    let auroc_pc: serde_json::Map<String, Value> = names
        .iter()
        .zip(&m.auroc_per_class)
        .map(|(n, a)| (n.clone(), avg(*a)))
        .collect();
    let f1_pc: serde_json::Map<String, Value> = names
        .iter()
        .zip(&m.f1_per_class)
        .map(|(n, f)| (n.clone(), json!(f)))
        .collect();
    json!({
        "auroc": {
            "micro": avg(m.auroc.map(|a| a.micro)),
            "macro": avg(m.auroc.map(|a| a.macro_avg)),
            "weighted": avg(m.auroc.map(|a| a.weighted)),
            "per_class": auroc_pc,
        },
        "f1": {"micro": m.f1.micro, "macro": m.f1.macro_avg, "weighted": m.f1.weighted, "per_class": f1_pc},
        "skipped_classes": m.skipped_classes.iter().map(|&j| names[j].clone()).collect::<Vec<_>>(),
        "samples": m.samples,
    })
}

fn close(got: &Value, want: &Value, what: &str) -> Result<(), String> {
    match (got, want) {
        (Value::Null, Value::Null) => Ok(()),
        (g, w) => match (g.as_f64(), w.as_f64()) {
            (Some(g), Some(w)) if (g - w).abs() <= TOLERANCE => Ok(()),
            _ => Err(format!("{what}: got {g}, scikit-learn {w}")),
        },
    }
}

/// Compares a report with scikit-learn's expected.json: every number within
/// TOLERANCE, nulls where sklearn has none, skipped classes and sample count.
fn compare(got: &Value, want: &Value) -> Result<(), String> {
    let classes = want["classes"].as_array().ok_or("expected.json lacks classes")?;
    for metric in ["auroc", "f1"] {
        for avg in ["micro", "macro", "weighted"] {
            close(&got[metric][avg], &want[metric][avg], &format!("{metric} {avg}"))?;
        }
        let per_class = got[metric]["per_class"]
            .as_object()
            .ok_or("per_class is not an object")?;
        if per_class.len() != classes.len() {
            return Err(format!("{metric}: {} classes, want {}", per_class.len(), classes.len()));
        }
        for name in classes {
            let name = name.as_str().unwrap();
            let g = per_class.get(name).ok_or(format!("{metric}: class `{name}` missing"))?;
            close(g, &want[metric]["per_class"][name], &format!("{metric} `{name}`"))?;
        }
    }
    if got["skipped_classes"] != want["skipped_classes"] {
        return Err(format!(
            "skipped {} vs {}",
            got["skipped_classes"], want["skipped_classes"]
        ));
    }
    if got["samples"] != want["samples"] {
        return Err(format!("samples {} vs {}", got["samples"], want["samples"]));
    }
    Ok(())
}

fn library_report(case: &str) -> Value {
    let dir = fixture_dir(case);
    let labels = parse_csv_table(&std::fs::read_to_string(dir.join("labels.csv")).unwrap()).unwrap();
    let scores = parse_csv_table(&std::fs::read_to_string(dir.join("scores.csv")).unwrap()).unwrap();
    check_class_names(labels.columns(), scores.columns()).unwrap();
    let want = expected(case);
    let names: Vec<&str> = want["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(labels.columns(), names.as_slice(), "{case}: header read differently");
    let m = evaluate(labels.values().view(), scores.values().view()).unwrap();
    library_json(labels.columns(), &m)
}

#[test]
fn library_matches_scikit_learn_on_every_fixture() {
    for case in CASES {
        let got = library_report(case);
        compare(&got, &expected(case)).unwrap_or_else(|e| panic!("{case}: {e}"));
    }
}

#[test]
fn cli_json_matches_scikit_learn_on_every_fixture() {
    for case in CASES {
        let dir = fixture_dir(case);
        let out = run(&[
            "metrics",
            "--labels",
            dir.join("labels.csv").to_str().unwrap(),
            "--scores",
            dir.join("scores.csv").to_str().unwrap(),
            "--json",
        ]);
        assert!(out.status.success(), "{case}: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(stdout.trim().lines().count(), 1, "{case}: one JSON line: {stdout}");
        let got: Value = serde_json::from_str(&stdout).unwrap();
        compare(&got, &expected(case)).unwrap_or_else(|e| panic!("{case}: {e}"));
    }
}

#[test]
fn comparison_detects_a_wrong_value() {
    let want = expected("chexpert14_rounded1");
    let mut got = library_report("chexpert14_rounded1");
    compare(&got, &want).unwrap();
    let v = got["auroc"]["per_class"]["Cardiomegaly"].as_f64().unwrap();
    got["auroc"]["per_class"]["Cardiomegaly"] = json!(v + 1e-8);
    assert!(compare(&got, &want).is_err());
    let mut got = library_report("chexpert14_rounded1");
    got["auroc"]["per_class"]["No Finding"] = json!(0.5);
    assert!(compare(&got, &want).is_err(), "a skipped class must be null");
}

#[test]
fn cli_table_lists_classes_and_skips() {
    let dir = fixture_dir("chexpert14_rounded1");
    let out = run(&[
        "metrics",
        "--labels",
        dir.join("labels.csv").to_str().unwrap(),
        "--scores",
        dir.join("scores.csv").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "200 samples",
        "Pleural Effusion",
        "weighted",
        "left out of the AUROC averages: No Finding",
    ] {
        assert!(stdout.contains(needle), "missing `{needle}` in:\n{stdout}");
    }
}

/// Four samples, three classes, worked by hand from the pair definition:
/// A: positives {0.9, 0.4} vs negatives {0.4, 0.6}: 1 + 1 + 1/2 + 0 = 2.5 of 4.
/// B: positives {0.2, 0.7, 0.5} vs negative {0.5}: 0 + 1 + 1/2 = 1.5 of 3.
/// C: no positive, skipped. Micro pools A and B: positives {.9, .7, .5, .4, .2}
/// vs negatives {.6, .5, .4}: 3 + 3 + 1.5 + 0.5 + 0 = 8 of 15.
/// Predictions (>= 0.5): A tp 1 fp 1 fn 1; B tp 2 fp 1 fn 1; C tp 0 fp 1 fn 0.
#[test]
fn hand_computed_example() {
    let y = array![[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]];
    let s = array![[0.9, 0.5, 0.1], [0.4, 0.2, 0.6], [0.4, 0.7, 0.2], [0.6, 0.5, 0.3]];
    let m = evaluate(y.view(), s.view()).unwrap();
    let near = |a: f64, b: f64| assert!((a - b).abs() < 1e-15, "{a} vs {b}");
    assert_eq!(m.skipped_classes, [2]);
    assert_eq!(m.positives, [2, 3, 0]);
    assert_eq!(m.predicted_positives, [2, 3, 1]);
    near(m.auroc_per_class[0].unwrap(), 0.625);
    near(m.auroc_per_class[1].unwrap(), 0.5);
    assert_eq!(m.auroc_per_class[2], None);
    let a = m.auroc.unwrap();
    near(a.micro, 8.0 / 15.0);
    near(a.macro_avg, (0.625 + 0.5) / 2.0);
    near(a.weighted, (2.0 * 0.625 + 3.0 * 0.5) / 5.0);
    near(m.f1_per_class[0], 0.5);
    near(m.f1_per_class[1], 2.0 / 3.0);
    near(m.f1_per_class[2], 0.0);
    near(m.f1.micro, 6.0 / 11.0);
    near(m.f1.macro_avg, 7.0 / 18.0);
    near(m.f1.weighted, (2.0 * 0.5 + 3.0 * 2.0 / 3.0) / 5.0);
}

#[test]
fn library_refusals() {
    let y = array![[1.0, 0.0], [0.0, 1.0]];
    let s = array![[0.1, 0.2], [0.3, 0.4]];
    assert!(matches!(
        evaluate(y.view(), array![[0.1, 0.2]].view()),
        Err(MetricsError::ShapeMismatch {
            labels_samples: 2,
            scores_samples: 1,
            ..
        })
    ));
    assert!(matches!(
        evaluate(y.view(), array![[0.1], [0.2]].view()),
        Err(MetricsError::ShapeMismatch { .. })
    ));
    let empty = Array2::<f64>::zeros((0, 3));
    assert!(matches!(
        evaluate(empty.view(), empty.view()),
        Err(MetricsError::Empty { samples: 0, classes: 3 })
    ));
    let no_class = Array2::<f64>::zeros((4, 0));
    assert!(matches!(
        evaluate(no_class.view(), no_class.view()),
        Err(MetricsError::Empty { samples: 4, classes: 0 })
    ));
    for bad in [2.0, 0.5, -1.0, f64::NAN] {
        let mut yb = y.clone();
        yb[[1, 0]] = bad;
        match evaluate(yb.view(), s.view()) {
            Err(MetricsError::InvalidLabel {
                sample: 1, class: 0, ..
            }) => {}
            other => panic!("label {bad}: {other:?}"),
        }
    }
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut sb = s.clone();
        sb[[0, 1]] = bad;
        match evaluate(y.view(), sb.view()) {
            Err(MetricsError::NonFiniteScore {
                sample: 0, class: 1, ..
            }) => {}
            other => panic!("score {bad}: {other:?}"),
        }
    }
    // Scores outside [0, 1] are accepted (approximate sigmoids overshoot).
    assert!(evaluate(y.view(), array![[-0.01, 1.02], [0.3, 0.4]].view()).is_ok());
    assert!(matches!(
        check_class_names(&["a", "b"], &["a", "c"]),
        Err(MetricsError::ClassName { class: 1, .. })
    ));
    assert!(matches!(
        check_class_names(&["a", "b"], &["a", "b", "c"]),
        Err(MetricsError::ClassCount { labels: 2, scores: 3 })
    ));
}

/// Writes `labels` and `scores` CSV texts into a temporary directory and runs
/// `latent-he metrics --json` on them.
fn run_texts(labels: &str, scores: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (l, s) = (dir.path().join("labels.csv"), dir.path().join("scores.csv"));
    std::fs::write(&l, labels).unwrap();
    std::fs::write(&s, scores).unwrap();
    run(&[
        "metrics",
        "--labels",
        l.to_str().unwrap(),
        "--scores",
        s.to_str().unwrap(),
        "--json",
    ])
}

#[test]
fn cli_refusals_are_one_line() {
    let good_scores = "\"Pleural Effusion\",b\n0.1,0.9\n0.8,0.2\n";
    let e = refused(&run_texts("\"Pleural Effusion\",c\n1,0\n0,1\n", good_scores));
    assert!(e.contains("`c`") && e.contains("`b`"), "{e}");
    let e = refused(&run_texts("\"Pleural Effusion\"\n1\n0\n", good_scores));
    assert!(e.contains("1 classes") && e.contains("2"), "{e}");
    let e = refused(&run_texts("\"Pleural Effusion\",b\n1,0\n0,2\n", good_scores));
    assert!(
        e.contains("line 3") && e.contains("`b`") && e.contains("not 0 or 1"),
        "{e}"
    );
    let e = refused(&run_texts(
        "\"Pleural Effusion\",b\n1,0\n0,1\n",
        "\"Pleural Effusion\",b\nNaN,0.9\n0.8,0.2\n",
    ));
    assert!(
        e.contains("line 2") && e.contains("Pleural Effusion") && e.contains("not finite"),
        "{e}"
    );
    let e = refused(&run_texts("\"Pleural Effusion\",b\n1,0\n", good_scores));
    assert!(e.contains("1 samples") && e.contains("has 2"), "{e}");
    let e = refused(&run_texts("\"Pleural Effusion\",b\n", "\"Pleural Effusion\",b\n"));
    assert!(e.contains("no data rows"), "{e}");
    let e = refused(&run_texts("\"Pleural Effusion\",b\n1,yes\n0,1\n", good_scores));
    assert!(e.contains("`yes` is not a number"), "{e}");
    let e = refused(&run_texts("\"Pleural Effusion,b\n1,0\n", good_scores));
    assert!(e.contains("never closed"), "{e}");
    let e = refused(&run(&[
        "metrics",
        "--labels",
        "/nonexistent/l.csv",
        "--scores",
        "/nonexistent/s.csv",
    ]));
    assert!(e.contains("/nonexistent/l.csv"), "{e}");
}

/// Runs `latent-he metrics` on the CSV texts `labels` and `scores` and
/// returns its output, failing when it runs past `limit` (the child is
/// killed then).
fn run_texts_within(labels: &str, scores: &str, limit: std::time::Duration) -> Output {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let (l, s) = (dir.path().join("labels.csv"), dir.path().join("scores.csv"));
    std::fs::write(&l, labels).unwrap();
    std::fs::write(&s, scores).unwrap();
    // files, not pipes: a long message must not block the child on a full pipe
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_latent-he"))
        .args([
            "metrics",
            "--labels",
            l.to_str().unwrap(),
            "--scores",
            s.to_str().unwrap(),
        ])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("metrics ran past {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Output {
        status,
        stdout: std::fs::read(out).unwrap(),
        stderr: std::fs::read(err).unwrap(),
    }
}

/// A 300,000-column header and fields of 400,000 quotes are read in time
/// linear in their length (the reader once compared every name with every
/// earlier one).
#[test]
fn huge_headers_and_quote_runs_do_not_hang_metrics() {
    let limit = std::time::Duration::from_secs(20);
    let names: Vec<String> = (0..300_000).map(|i| format!("class_{i}")).collect();
    let header = names.join(",");
    let row = vec!["0"; names.len()].join(",");
    let labels = format!("{header}\n{row}\n");
    let scores = format!("{header},extra\n{row},0\n");
    let e = refused(&run_texts_within(&labels, &scores, limit));
    assert!(e.contains("300000 classes") && e.contains("300001"), "{e}");
    let quotes = "\"".repeat(400_000);
    for text in [
        format!("a\n{quotes}\n"),
        format!("{quotes}\n1\n"),
        format!("a\nx{quotes}\n"),
    ] {
        refused(&run_texts_within(&text, "a\n0.5\n", limit));
    }
}

/// `metrics --results` reads the `results.csv` that `score` writes: labels
/// from its `label:` columns, scores from its `he:` (default) or `plain:`
/// ones; the `file`, peak and timing columns are left alone.
#[test]
fn results_csv_of_score_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.csv");
    std::fs::write(
        &path,
        "file,label:A,label:B,plain:A,plain:B,he:A,he:B,peak,seconds_infer\n\
         \"x,1.png\",1,0,0.9,0.2,0.8,0.6,1.5,0.25\n\
         y.png,0,1,0.1,0.7,0.3,0.4,1.2,0.25\n\
         z.png,1,1,0.6,0.8,0.7,0.9,1.1,0.25\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let he = common::json(&run(&["metrics", "--results", p, "--json"]));
    assert_eq!(he["scores_from"], "he");
    assert_eq!(he["samples"], 3);
    // he: A 0.8, 0.3, 0.7 against 1, 0, 1 -> AUROC 1; B 0.6, 0.4, 0.9 against 0, 1, 1 -> 0.5
    assert_eq!(he["auroc"]["per_class"]["A"], 1.0);
    assert_eq!(he["auroc"]["per_class"]["B"], 0.5);
    let plain = common::json(&run(&["metrics", "--results", p, "--group", "plain", "--json"]));
    assert_eq!(plain["scores_from"], "plain");
    // plain: B 0.2, 0.7, 0.8 against 0, 1, 1 -> AUROC 1
    assert_eq!(plain["auroc"]["per_class"]["B"], 1.0);
    let table = run(&["metrics", "--results", p]);
    assert!(table.status.success());
    assert!(String::from_utf8_lossy(&table.stdout).contains("`he:` columns"));

    std::fs::write(&path, "file,label:A,plain:A\nx.png,1,0.5\ny.png,0,0.25\n").unwrap();
    let plain_only = common::json(&run(&["metrics", "--results", p, "--json"]));
    assert_eq!(plain_only["scores_from"], "plain");
    let e = refused(&run(&["metrics", "--results", p, "--group", "he"]));
    assert!(e.contains("he:"), "{e}");
    let both = run(&["metrics", "--results", p, "--labels", p]);
    assert_eq!(both.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&both.stderr).contains("cannot be used"));
}
