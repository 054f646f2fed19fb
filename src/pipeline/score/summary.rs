//! The scorer's summary of an output folder: the metrics of the plaintext
//! and encrypted runs side by side (summary.json, summary.md, roc.png).

use super::{
    failed_header, header, io_error, merged_header, read_optional, ScoreConfig, FAILED_FILE, MERGED_FILE, PEAK_COLUMN,
    RESULTS_FILE, STAGES,
};
use crate::data::metrics::{evaluate, report_json, MultiLabelMetrics};
use crate::he_nn::ValueRange;
use crate::pipeline::PipelineError;
use crate::report::{roc_png, roc_points, RocCurves};
use ndarray::Array2;
use serde_json::{json, Value};

/// The number in column `col` of results row `r`.
fn number_at(rows: &[Vec<String>], r: usize, col: usize) -> Result<f64, PipelineError> {
    rows[r][col].parse::<f64>().map_err(|_| PipelineError::Input {
        path: RESULTS_FILE.into(),
        reason: format!("row {}: `{}` is not a number", r + 2, rows[r][col]),
    })
}

/// Columns `group:<class>` of the results as a matrix.
fn column_block(
    header: &[String],
    rows: &[Vec<String>],
    group: &str,
    classes: &[String],
) -> Result<Array2<f64>, PipelineError> {
    let columns: Vec<usize> = classes
        .iter()
        .map(|c| {
            header
                .iter()
                .position(|h| *h == format!("{group}:{c}"))
                .expect("header built from the classes")
        })
        .collect();
    let mut m = Array2::zeros((rows.len(), classes.len()));
    for r in 0..rows.len() {
        for (j, &col) in columns.iter().enumerate() {
            m[[r, j]] = number_at(rows, r, col)?;
        }
    }
    Ok(m)
}

fn stage_seconds(header: &[String], rows: &[Vec<String>]) -> Value {
    let mut out = serde_json::Map::new();
    for stage in STAGES {
        let col = header
            .iter()
            .position(|h| *h == format!("seconds_{stage}"))
            .expect("stage column");
        let v: Vec<f64> = rows.iter().filter_map(|r| r[col].parse::<f64>().ok()).collect();
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        let median = median(v).unwrap_or(0.0);
        out.insert(stage.into(), json!({"mean": mean, "median": median}));
    }
    Value::Object(out)
}

/// The median (mean of the middle two for an even count); `None` when empty.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

fn table_row(name: &str, he: &str, seconds: f64, m: &MultiLabelMetrics) -> String {
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    let a = m.auroc;
    format!(
        "| {name} | {he} | {} | {} | {} | {} | {} | {} | {} |",
        if seconds < 1.0 {
            format!("{:.2} ms", seconds * 1e3)
        } else {
            format!("{seconds:.2} s")
        },
        f(a.map(|a| a.micro)),
        f(a.map(|a| a.macro_avg)),
        f(a.map(|a| a.weighted)),
        f(Some(m.f1.micro)),
        f(Some(m.f1.macro_avg)),
        f(Some(m.f1.weighted)),
    )
}

/// The rows whose peak `range` does not hold, as `(file, peak)`: the images
/// that were encrypted alone.
fn images_apart(
    header: &[String],
    rows: &[Vec<String>],
    range: &ValueRange,
) -> Result<Vec<(String, f64)>, PipelineError> {
    let col = header
        .iter()
        .position(|h| h == PEAK_COLUMN)
        .expect("an encrypted run's header has the peak");
    let mut apart = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        let peak = number_at(rows, r, col)?;
        if !range.holds(peak) {
            apart.push((row[0].clone(), peak));
        }
    }
    Ok(apart)
}

/// Writes summary.json, summary.md and roc.png from every row and failure
/// in the output folder; returns the summary. `server` describes the
/// remote server that evaluated ([`crate::pipeline::RemoteEvaluation::describe`]),
/// if one did.
pub(super) fn summarize(
    args: &ScoreConfig,
    classes: &[String],
    model_name: &str,
    backend: &str,
    server: Option<&Value>,
    keygen_seconds: Option<f64>,
    range: Option<&ValueRange>,
) -> Result<Value, PipelineError> {
    let header = header(classes, args.encrypted);
    let rows = read_optional(&args.out.join(RESULTS_FILE), &header)?;
    let failed = read_optional(&args.out.join(FAILED_FILE), &failed_header())?;
    if rows.is_empty() {
        return Err(PipelineError::CheckFailed(
            "no image could be scored; see failed.csv".into(),
        ));
    }
    let labels = column_block(&header, &rows, "label", classes)?;
    let plain_scores = column_block(&header, &rows, "plain", classes)?;
    let he_scores = args
        .encrypted
        .then(|| column_block(&header, &rows, "he", classes))
        .transpose()?;
    let metrics_of = |scores: &Array2<f64>| -> Result<MultiLabelMetrics, PipelineError> {
        evaluate(labels.view(), scores.view()).map_err(|e| PipelineError::Refused(format!("{RESULTS_FILE}: {e}")))
    };
    let plain = metrics_of(&plain_scores)?;
    let he = he_scores.as_ref().map(metrics_of).transpose()?;
    let seconds = stage_seconds(&header, &rows);
    let secs = |stage: &str| seconds[stage]["mean"].as_f64().unwrap_or(0.0);
    let served = server.map_or_else(String::new, |s| {
        format!(
            " (the server at {}, serving the model as `{}`)",
            s["url"].as_str().unwrap_or_default(),
            s["model"].as_str().unwrap_or_default()
        )
    });
    let mut md = format!(
        "# {model_name}: {} images\n\nData: `{}` ({:?}). Backend: {backend}{served}. Mean seconds per image; \
         AUROC and F1 (threshold 0.5) as scikit-learn computes them.\n\n\
         | Model | HE | Inference time | AUROC micro | AUROC macro | AUROC weighted | F1 micro | F1 macro | F1 weighted |\n\
         |---|---|---|---|---|---|---|---|---|\n{}\n",
        rows.len(),
        args.root.display(),
        args.dataset,
        table_row(model_name, "✗", secs("plain"), &plain),
    );
    if let Some(he) = &he {
        md.push_str(&table_row(
            model_name,
            "✓",
            secs("encrypt") + secs("infer") + secs("decrypt"),
            he,
        ));
        md.push('\n');
    }
    if !failed.is_empty() {
        md.push_str(&format!(
            "\n{} image(s) could not be scored (they do not decode, or the plaintext pass overflows); see failed.csv.\n",
            failed.len()
        ));
    }
    let apart = range.map(|r| images_apart(&header, &rows, r)).transpose()?;
    if let Some(apart) = apart.as_ref().filter(|a| !a.is_empty()) {
        md.push_str(&format!(
            "\n{} image(s) make values past what the parameters hold (peak over {:.3e}); each was \
             encrypted alone, so that it spoiled no other image, and its encrypted result is not \
             meaningful: {}.\n",
            apart.len(),
            range.map_or(0.0, ValueRange::bound),
            apart
                .iter()
                .map(|(file, peak)| format!("`{file}` ({peak:.3e})"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let merged = read_optional(&args.out.join(MERGED_FILE), &merged_header())?;
    for m in &merged {
        md.push_str(&format!(
            "\n{} rows ({} failed images) were merged from `{}` (backend {}).\n",
            m[2], m[3], m[0], m[1]
        ));
    }
    let delta = he.as_ref().map(|he| {
        let d = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| (a - b).abs());
        json!({
            "auroc_micro": d(he.auroc.map(|a| a.micro), plain.auroc.map(|a| a.micro)),
            "auroc_macro": d(he.auroc.map(|a| a.macro_avg), plain.auroc.map(|a| a.macro_avg)),
            "auroc_weighted": d(he.auroc.map(|a| a.weighted), plain.auroc.map(|a| a.weighted)),
            "f1_micro": (he.f1.micro - plain.f1.micro).abs(),
            "f1_macro": (he.f1.macro_avg - plain.f1.macro_avg).abs(),
            "f1_weighted": (he.f1.weighted - plain.f1.weighted).abs(),
        })
    });
    let summary = json!({
        "model": model_name,
        "dataset": format!("{:?}", args.dataset).to_lowercase(),
        "root": args.root.display().to_string(),
        "images": rows.len(),
        "backend": backend,
        "server": server,
        "keygen_seconds": keygen_seconds,
        "plain": report_json(classes, &plain),
        "encrypted": he.as_ref().map(|m| report_json(classes, m)),
        "abs_difference": delta,
        "value_bound": range.map(ValueRange::bound),
        "encrypted_apart": apart.map(|a| a.iter().map(|(file, peak)| json!({"file": file, "peak": peak})).collect::<Vec<_>>()),
        "seconds_per_image": seconds,
        "failed": failed.iter().map(|r| json!({"file": r[0], "error": r[1]})).collect::<Vec<_>>(),
        "merged": merged
            .iter()
            .map(|m| json!({"folder": m[0], "backend": m[1], "rows": m[2].parse::<u64>().ok(), "failed": m[3].parse::<u64>().ok()}))
            .collect::<Vec<_>>(),
        "results": args.out.join(RESULTS_FILE).display().to_string(),
        "roc": args.out.join("roc.png").display().to_string(),
    });
    let write = |name: &str, text: String| {
        let path = args.out.join(name);
        std::fs::write(&path, text).map_err(io_error(&path))
    };
    write("summary.json", format!("{summary:#}\n"))?;
    write("summary.md", md)?;
    let curves: Vec<RocCurves> = classes
        .iter()
        .enumerate()
        .map(|(j, class)| {
            let truth: Vec<bool> = labels.column(j).iter().map(|&v| v == 1.0).collect();
            let curve = |m: &Array2<f64>| roc_points(&truth, &m.column(j).to_vec());
            RocCurves {
                class: class.clone(),
                plain: curve(&plain_scores),
                encrypted: he_scores.as_ref().and_then(curve),
                auc_plain: plain.auroc_per_class[j],
                auc_encrypted: he.as_ref().and_then(|m| m.auroc_per_class[j]),
            }
        })
        .collect();
    let title = format!("{model_name}: ROC per class, {} images", rows.len());
    roc_png(&args.out.join("roc.png"), &title, &curves).map_err(|e| PipelineError::Refused(e.to_string()))?;
    Ok(summary)
}
