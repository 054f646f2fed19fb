//! `latent-he metrics`: AUROC and F1 of multi-label predictions read from two
//! CSV files (labels and scores) with the same header of class names.

use super::{print_json, CliError};
use crate::data::metrics::{check_class_names, evaluate, Averages, MetricsError, MultiLabelMetrics, THRESHOLD};
use crate::data::{parse_csv_table, CsvTable};
use clap::Args;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// Arguments of `metrics`.
#[derive(Args, Debug)]
pub struct MetricsArgs {
    /// CSV of ground truth: a header of class names, then one row of 0/1 labels per sample.
    #[arg(long)]
    labels: PathBuf,
    /// CSV of predicted probabilities: the same header (same classes, same order), one row per sample.
    #[arg(long)]
    scores: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Largest label or score table read (NIH's whole label table is 8 MB).
const MAX_TABLE_BYTES: u64 = 256 << 20;

fn read_table(path: &Path) -> Result<CsvTable, CliError> {
    let text = crate::bounded::read_regular_text(path, MAX_TABLE_BYTES).map_err(|source| CliError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_csv_table(&text).map_err(|e| CliError::Input {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Rewords a metrics refusal with file names, line numbers and class names.
fn explain(e: MetricsError, args: &MetricsArgs, labels: &CsvTable, scores: &CsvTable) -> CliError {
    let line = |table: &CsvTable, sample: usize| table.line_of(sample).unwrap_or(0);
    let class_name = |class: usize| labels.columns().get(class).cloned().unwrap_or_default();
    match e {
        MetricsError::InvalidLabel { sample, class, value } => CliError::Input {
            path: args.labels.display().to_string(),
            reason: format!(
                "line {}, class `{}`: label {value} is not 0 or 1",
                line(labels, sample),
                class_name(class)
            ),
        },
        MetricsError::NonFiniteScore { sample, class, value } => CliError::Input {
            path: args.scores.display().to_string(),
            reason: format!(
                "line {}, class `{}`: score {value} is not finite",
                line(scores, sample),
                class_name(class)
            ),
        },
        MetricsError::Empty { .. } => CliError::Input {
            path: args.labels.display().to_string(),
            reason: "no data rows after the header".to_string(),
        },
        MetricsError::ShapeMismatch {
            labels_samples,
            scores_samples,
            ..
        } => CliError::Refused(format!(
            "{} has {labels_samples} samples but {} has {scores_samples}",
            args.labels.display(),
            args.scores.display()
        )),
        other => CliError::Refused(format!(
            "{} vs {}: {other}",
            args.labels.display(),
            args.scores.display()
        )),
    }
}

fn averages_json(a: Option<&Averages>) -> (Value, Value, Value) {
    match a {
        Some(a) => (json!(a.micro), json!(a.macro_avg), json!(a.weighted)),
        None => (Value::Null, Value::Null, Value::Null),
    }
}

/// The JSON report: `{"auroc": {"micro", "macro", "weighted", "per_class"},
/// "f1": {..same..}, "skipped_classes": [names], "samples": N}`; AUROC values
/// are `null` where undefined. `names` has one entry per class of `m`.
pub fn report_json(names: &[String], m: &MultiLabelMetrics) -> Value {
    let auroc_per_class: Map<String, Value> = names
        .iter()
        .zip(&m.auroc_per_class)
        .map(|(n, a)| (n.clone(), a.map_or(Value::Null, |a| json!(a))))
        .collect();
    let f1_per_class: Map<String, Value> = names
        .iter()
        .zip(&m.f1_per_class)
        .map(|(n, f)| (n.clone(), json!(f)))
        .collect();
    let (a_micro, a_macro, a_weighted) = averages_json(m.auroc.as_ref());
    let (f_micro, f_macro, f_weighted) = averages_json(Some(&m.f1));
    let skipped: Vec<&String> = m.skipped_classes.iter().filter_map(|&j| names.get(j)).collect();
    json!({
        "auroc": {"micro": a_micro, "macro": a_macro, "weighted": a_weighted, "per_class": auroc_per_class},
        "f1": {"micro": f_micro, "macro": f_macro, "weighted": f_weighted, "per_class": f1_per_class},
        "skipped_classes": skipped,
        "samples": m.samples,
    })
}

fn print_table(names: &[String], m: &MultiLabelMetrics) {
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0).max(8);
    let fmt = |v: Option<f64>| v.map_or("     -".to_string(), |v| format!("{v:6.4}"));
    println!(
        "{} samples, {} classes; F1 counts a score >= {THRESHOLD} as positive",
        m.samples,
        names.len()
    );
    println!(
        "{:<width$}  {:>9}  {:>9}  {:>6}  {:>6}",
        "class", "positives", "predicted", "AUROC", "F1"
    );
    for (j, name) in names.iter().enumerate() {
        println!(
            "{name:<width$}  {:>9}  {:>9}  {}  {}",
            m.positives[j],
            m.predicted_positives[j],
            fmt(m.auroc_per_class[j]),
            fmt(Some(m.f1_per_class[j]))
        );
    }
    let rows = [
        ("micro", m.auroc.map(|a| a.micro), m.f1.micro),
        ("macro", m.auroc.map(|a| a.macro_avg), m.f1.macro_avg),
        ("weighted", m.auroc.map(|a| a.weighted), m.f1.weighted),
    ];
    for (label, auroc, f1) in rows {
        println!(
            "{label:<width$}  {:>9}  {:>9}  {}  {}",
            "",
            "",
            fmt(auroc),
            fmt(Some(f1))
        );
    }
    if !m.skipped_classes.is_empty() {
        let skipped: Vec<&str> = m.skipped_classes.iter().map(|&j| names[j].as_str()).collect();
        println!(
            "AUROC undefined (labels all 0 or all 1), left out of the AUROC averages: {}",
            skipped.join(", ")
        );
    }
}

/// Runs `metrics`.
pub fn run(args: &MetricsArgs) -> Result<(), CliError> {
    let labels = read_table(&args.labels)?;
    let scores = read_table(&args.scores)?;
    check_class_names(labels.columns(), scores.columns()).map_err(|e| explain(e, args, &labels, &scores))?;
    let m = evaluate(labels.values().view(), scores.values().view()).map_err(|e| explain(e, args, &labels, &scores))?;
    if args.json {
        print_json(&report_json(labels.columns(), &m));
    } else {
        print_table(labels.columns(), &m);
    }
    Ok(())
}
