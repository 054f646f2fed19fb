//! The scorer's summary of an output folder: the metrics of the plaintext
//! and encrypted runs side by side (summary.json, summary.md, roc.png).

use super::{
    failed_header, header, io_error, read_optional, ADAPTER_COLUMN, BACKEND_COLUMN, FAILED_FILE, PEAK_COLUMN,
    RESULTS_FILE, RUN_FILE, STAGES,
};
use crate::data::metrics::{evaluate, report_json, MultiLabelMetrics};
use crate::he_nn::ValueRange;
use crate::pipeline::PipelineError;
use crate::report::{roc_png, roc_points, RocCurves};
use ndarray::Array2;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;

/// Which images were encrypted alone, their values past what the
/// parameters hold.
pub(super) enum Apart<'a> {
    /// A plaintext run: none.
    NotEncrypted,
    /// Those whose peak this range does not hold.
    Range(&'a ValueRange),
    /// These, listed by the runs that scored them, under this bound
    /// (`None`: the runs do not agree on one, or did not record it).
    Listed {
        /// The bound the runs agree on.
        bound: Option<f64>,
        /// The images.
        files: HashSet<String>,
    },
}

/// What a summary of an output folder is made from besides its rows.
pub(super) struct SummaryInput<'a> {
    /// The output folder.
    pub out: &'a Path,
    /// The run's identity (`run.json`): data set, model, classes.
    pub identity: &'a Value,
    /// The backend(s) that scored the rows.
    pub backend: &'a str,
    /// The remote server that evaluated
    /// ([`crate::pipeline::RemoteEvaluation::describe`]), if one did.
    pub server: Option<&'a Value>,
    /// Seconds key generation took in this call, if it made keys.
    pub keygen_seconds: Option<f64>,
    /// The images encrypted alone.
    pub apart: Apart<'a>,
    /// A merge's own fields for summary.json and its paragraphs for
    /// summary.md.
    pub merged: Option<(serde_json::Map<String, Value>, String)>,
}

/// The field `key` of a run's identity as a string.
fn identity_str<'a>(identity: &'a Value, key: &str) -> Result<&'a str, PipelineError> {
    identity[key].as_str().ok_or_else(|| PipelineError::Input {
        path: RUN_FILE.into(),
        reason: format!("`{key}` is missing or not a string"),
    })
}

/// The classes of a run's identity.
pub(super) fn identity_classes(identity: &Value) -> Result<Vec<String>, PipelineError> {
    identity["classes"]
        .as_array()
        .and_then(|a| a.iter().map(|c| c.as_str().map(str::to_string)).collect())
        .filter(|c: &Vec<String>| !c.is_empty())
        .ok_or_else(|| PipelineError::Input {
            path: RUN_FILE.into(),
            reason: "`classes` is missing or not a list of names".into(),
        })
}

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

/// Mean and median seconds per image of each stage over `rows`.
fn stage_seconds<'a>(header: &[String], rows: impl Iterator<Item = &'a Vec<String>> + Clone) -> Value {
    let mut out = serde_json::Map::new();
    for stage in STAGES {
        let col = header
            .iter()
            .position(|h| *h == format!("seconds_{stage}"))
            .expect("stage column");
        let v: Vec<f64> = rows.clone().filter_map(|r| r[col].parse::<f64>().ok()).collect();
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        let median = median(v).unwrap_or(0.0);
        out.insert(stage.into(), json!({"mean": mean, "median": median}));
    }
    Value::Object(out)
}

/// Each backend and adapter that scored rows (in the order they first
/// appear), with its images and its seconds per image by stage.
fn backend_seconds(header: &[String], rows: &[Vec<String>]) -> Vec<Value> {
    let col = |name: &str| header.iter().position(|h| h == name).expect("backend columns");
    let (b, a) = (col(BACKEND_COLUMN), col(ADAPTER_COLUMN));
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for row in rows {
        if !seen.contains(&(&row[b], &row[a])) {
            seen.push((&row[b], &row[a]));
        }
    }
    seen.into_iter()
        .map(|(backend, adapter)| {
            let own = rows.iter().filter(|r| r[b] == backend && r[a] == adapter);
            json!({
                "backend": backend,
                "adapter": adapter,
                "images": own.clone().count(),
                "seconds_per_image": stage_seconds(header, own),
            })
        })
        .collect()
}

/// The table of [`backend_seconds`]: mean seconds per image and stage.
fn backend_table(backends: &[Value]) -> String {
    let mut md = format!(
        "\nMean seconds per image by backend:\n\n| Backend | Adapter | Images | {} |\n|---|---|---|{}\n",
        STAGES.join(" | "),
        "---|".repeat(STAGES.len())
    );
    for b in backends {
        let secs: Vec<String> = STAGES
            .iter()
            .map(|s| format!("{:.4}", b["seconds_per_image"][s]["mean"].as_f64().unwrap_or(0.0)))
            .collect();
        md.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            b["backend"].as_str().unwrap_or_default(),
            b["adapter"].as_str().unwrap_or_default(),
            b["images"],
            secs.join(" | ")
        ));
    }
    md
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

/// The rows `apart` names (for [`Apart::Range`], those whose peak the
/// range does not hold), as `(file, peak)`, and the bound; `None` for a
/// plaintext run.
#[allow(clippy::type_complexity)]
fn images_apart(
    header: &[String],
    rows: &[Vec<String>],
    apart: &Apart,
) -> Result<Option<(Option<f64>, Vec<(String, f64)>)>, PipelineError> {
    let bound = match apart {
        Apart::NotEncrypted => return Ok(None),
        Apart::Range(range) => Some(range.bound()),
        Apart::Listed { bound, .. } => *bound,
    };
    let col = header
        .iter()
        .position(|h| h == PEAK_COLUMN)
        .expect("an encrypted run's header has the peak");
    let mut found = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        let peak = number_at(rows, r, col)?;
        let alone = match apart {
            Apart::NotEncrypted => false,
            Apart::Range(range) => !range.holds(peak),
            Apart::Listed { files, .. } => files.contains(&row[0]),
        };
        if alone {
            found.push((row[0].clone(), peak));
        }
    }
    Ok(Some((bound, found)))
}

/// Writes summary.json, summary.md and roc.png from every row and failure
/// in the output folder `input.out`; returns the summary.
///
/// # Errors
/// An identity without its fields, unreadable or inconsistent logs, no
/// row at all, files that cannot be written.
pub(super) fn summarize(input: &SummaryInput) -> Result<Value, PipelineError> {
    let out = input.out;
    let classes = identity_classes(input.identity)?;
    let classes = &classes;
    let model_name = identity_str(input.identity, "model_name")?;
    let dataset = identity_str(input.identity, "dataset")?;
    let root = identity_str(input.identity, "root")?;
    let encrypted = input.identity["encrypted"].as_bool().unwrap_or(false);
    let header = header(classes, encrypted);
    let rows = read_optional(&out.join(RESULTS_FILE), &header)?;
    let failed = read_optional(&out.join(FAILED_FILE), &failed_header())?;
    if rows.is_empty() {
        return Err(PipelineError::CheckFailed(
            "no image could be scored; see failed.csv".into(),
        ));
    }
    let labels = column_block(&header, &rows, "label", classes)?;
    let plain_scores = column_block(&header, &rows, "plain", classes)?;
    let he_scores = encrypted
        .then(|| column_block(&header, &rows, "he", classes))
        .transpose()?;
    let metrics_of = |scores: &Array2<f64>| -> Result<MultiLabelMetrics, PipelineError> {
        evaluate(labels.view(), scores.view()).map_err(|e| PipelineError::Refused(format!("{RESULTS_FILE}: {e}")))
    };
    let plain = metrics_of(&plain_scores)?;
    let he = he_scores.as_ref().map(metrics_of).transpose()?;
    let seconds = stage_seconds(&header, rows.iter());
    let backends = backend_seconds(&header, &rows);
    let secs = |stage: &str| seconds[stage]["mean"].as_f64().unwrap_or(0.0);
    let served = input.server.map_or_else(String::new, |s| {
        format!(
            " (the server at {}, serving the model as `{}`)",
            s["url"].as_str().unwrap_or_default(),
            s["model"].as_str().unwrap_or_default()
        )
    });
    let mut md = format!(
        "# {model_name}: {} images\n\nData: `{root}` ({dataset}). Backend: {}{served}. Mean seconds per image; \
         AUROC and F1 (threshold 0.5) as scikit-learn computes them.\n\n\
         | Model | HE | Inference time | AUROC micro | AUROC macro | AUROC weighted | F1 micro | F1 macro | F1 weighted |\n\
         |---|---|---|---|---|---|---|---|---|\n{}\n",
        rows.len(),
        input.backend,
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
    md.push_str(&backend_table(&backends));
    if !failed.is_empty() {
        md.push_str(&format!(
            "\n{} image(s) could not be scored (they do not decode, or the plaintext pass overflows); see failed.csv.\n",
            failed.len()
        ));
    }
    let apart = images_apart(&header, &rows, &input.apart)?;
    if let Some((bound, apart)) = apart.as_ref().filter(|(_, a)| !a.is_empty()) {
        md.push_str(&format!(
            "\n{} image(s) make values past what the parameters hold (peak over {}); each was \
             encrypted alone, so that it spoiled no other image, and its encrypted result is not \
             meaningful: {}.\n",
            apart.len(),
            bound.map_or("the bound".into(), |b| format!("{b:.3e}")),
            apart
                .iter()
                .map(|(file, peak)| format!("`{file}` ({peak:.3e})"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some((_, text)) = &input.merged {
        md.push_str(text);
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
    let mut summary = json!({
        "model": model_name,
        "dataset": dataset,
        "root": root,
        "images": rows.len(),
        "backend": input.backend,
        "server": input.server,
        "keygen_seconds": input.keygen_seconds,
        "plain": report_json(classes, &plain),
        "encrypted": he.as_ref().map(|m| report_json(classes, m)),
        "abs_difference": delta,
        "value_bound": apart.as_ref().and_then(|(bound, _)| *bound),
        "encrypted_apart": apart.map(|(_, a)| a.iter().map(|(file, peak)| json!({"file": file, "peak": peak})).collect::<Vec<_>>()),
        "seconds_per_image": seconds,
        "backends": backends,
        "failed": failed.iter().map(|r| json!({"file": r[0], "error": r[1]})).collect::<Vec<_>>(),
        "results": out.join(RESULTS_FILE).display().to_string(),
        "roc": out.join("roc.png").display().to_string(),
    });
    if let (Some((fields, _)), Some(map)) = (&input.merged, summary.as_object_mut()) {
        map.extend(fields.clone());
    }
    let write = |name: &str, text: String| {
        let path = out.join(name);
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
    roc_png(&out.join("roc.png"), &title, &curves).map_err(|e| PipelineError::Refused(e.to_string()))?;
    Ok(summary)
}
