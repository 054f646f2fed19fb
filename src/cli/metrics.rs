//! `latent-he metrics`: AUROC and F1 of multi-label predictions read from two
//! CSV files (labels and scores) with the same header of class names, or from
//! the `results.csv` that `score` writes (its `label:` columns against its
//! `he:` or `plain:` columns).

use super::{print_json, CliError};
use crate::data::metrics::{check_class_names, evaluate, report_json, MetricsError, MultiLabelMetrics, THRESHOLD};
use crate::data::{CsvError, CsvTable, TextTable};
use clap::{Args, ValueEnum};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Arguments of `metrics`.
#[derive(Args, Debug)]
pub struct MetricsArgs {
    /// CSV of ground truth: a header of class names, then one row of 0/1 labels per sample.
    #[arg(long, required_unless_present = "results")]
    labels: Option<PathBuf>,
    /// CSV of predicted probabilities: the same header (same classes, same order), one row per sample.
    #[arg(long, required_unless_present = "results")]
    scores: Option<PathBuf>,
    /// A `results.csv` written by `score`, instead of --labels and --scores: labels from its
    /// `label:<class>` columns, scores from its `he:<class>` columns (or `plain:`, see --group).
    #[arg(long, conflicts_with_all = ["labels", "scores"])]
    results: Option<PathBuf>,
    /// Which scores of --results: `he` (the default when the file has them) or `plain`.
    #[arg(long, value_enum, requires = "results")]
    group: Option<ScoreGroup>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// The scores of a `results.csv` that `metrics --results` evaluates.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreGroup {
    /// The decrypted encrypted scores (`he:<class>` columns).
    He,
    /// The plaintext scores (`plain:<class>` columns).
    Plain,
}

impl ScoreGroup {
    fn prefix(self) -> &'static str {
        match self {
            Self::He => "he:",
            Self::Plain => "plain:",
        }
    }
}

/// The two tables evaluated, with the files they came from.
struct Inputs {
    labels: CsvTable,
    scores: CsvTable,
    labels_path: String,
    scores_path: String,
    /// The group of a `results.csv`; `None` for two files.
    group: Option<ScoreGroup>,
}

/// Largest label, score or results table read (NIH's whole label table is 8 MB).
const MAX_TABLE_BYTES: u64 = 256 << 20;

fn read_text(path: &Path) -> Result<TextTable, CliError> {
    let text = crate::bounded::read_regular_text(path, MAX_TABLE_BYTES).map_err(|source| CliError::Io {
        path: path.display().to_string(),
        source,
    })?;
    TextTable::parse(&text).map_err(|e| input_error(path, e))
}

fn input_error(path: &Path, e: CsvError) -> CliError {
    CliError::Input {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Reads the labels and scores the arguments name.
fn read_inputs(args: &MetricsArgs) -> Result<Inputs, CliError> {
    if let Some(path) = &args.results {
        let table = read_text(path)?;
        let group = args
            .group
            .unwrap_or(if table.columns().iter().any(|c| c.starts_with("he:")) {
                ScoreGroup::He
            } else {
                ScoreGroup::Plain
            });
        let numeric = |prefix| table.numeric(prefix).map_err(|e| input_error(path, e));
        return Ok(Inputs {
            labels: numeric("label:")?,
            scores: numeric(group.prefix())?,
            labels_path: path.display().to_string(),
            scores_path: path.display().to_string(),
            group: Some(group),
        });
    }
    let (Some(labels), Some(scores)) = (&args.labels, &args.scores) else {
        return Err(CliError::Usage("give --labels and --scores, or --results".into()));
    };
    let numeric = |path: &Path| read_text(path)?.numeric("").map_err(|e| input_error(path, e));
    Ok(Inputs {
        labels: numeric(labels)?,
        scores: numeric(scores)?,
        labels_path: labels.display().to_string(),
        scores_path: scores.display().to_string(),
        group: None,
    })
}

/// Rewords a metrics refusal with file names, line numbers and class names.
fn explain(e: MetricsError, inputs: &Inputs) -> CliError {
    let (labels, scores) = (&inputs.labels, &inputs.scores);
    let line = |table: &CsvTable, sample: usize| table.line_of(sample).unwrap_or(0);
    let class_name = |class: usize| labels.columns().get(class).cloned().unwrap_or_default();
    match e {
        MetricsError::InvalidLabel { sample, class, value } => CliError::Input {
            path: inputs.labels_path.clone(),
            reason: format!(
                "line {}, class `{}`: label {value} is not 0 or 1",
                line(labels, sample),
                class_name(class)
            ),
        },
        MetricsError::NonFiniteScore { sample, class, value } => CliError::Input {
            path: inputs.scores_path.clone(),
            reason: format!(
                "line {}, class `{}`: score {value} is not finite",
                line(scores, sample),
                class_name(class)
            ),
        },
        MetricsError::Empty { .. } => CliError::Input {
            path: inputs.labels_path.clone(),
            reason: "no data rows after the header".to_string(),
        },
        MetricsError::ShapeMismatch {
            labels_samples,
            scores_samples,
            ..
        } => CliError::Refused(format!(
            "{} has {labels_samples} samples but {} has {scores_samples}",
            inputs.labels_path, inputs.scores_path
        )),
        other => CliError::Refused(format!("{} vs {}: {other}", inputs.labels_path, inputs.scores_path)),
    }
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
    let inputs = read_inputs(args)?;
    let (labels, scores) = (&inputs.labels, &inputs.scores);
    check_class_names(labels.columns(), scores.columns()).map_err(|e| explain(e, &inputs))?;
    let m = evaluate(labels.values().view(), scores.values().view()).map_err(|e| explain(e, &inputs))?;
    let group = inputs.group.map(|g| g.prefix().trim_end_matches(':'));
    if args.json {
        let mut report = report_json(labels.columns(), &m);
        if let Some(group) = group {
            report["scores_from"] = json!(group);
        }
        print_json(&report);
    } else {
        if let Some(group) = group {
            println!("scores: the `{group}:` columns of {}", inputs.scores_path);
        }
        print_table(labels.columns(), &m);
    }
    Ok(())
}
