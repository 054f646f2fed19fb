//! Merging the folders that parts of one run were scored into (shards,
//! ranges) into one folder, from their `run.json`, `split.txt`,
//! `results.csv`, `failed.csv` and `summary.json` alone: no data set,
//! model, VQGAN or key is read.

use super::summary::{identity_classes, summarize, Apart, SummaryInput};
use super::{
    failed_header, header, io_error, lock_output, read_optional, BACKEND_COLUMN, FAILED_FILE, RESULTS_FILE, RUN_FILE,
    SPLIT_FILE,
};
use crate::data::results_log::ResultsLog;
use crate::pipeline::observer::{Event, Observer};
use crate::pipeline::PipelineError;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Largest `run.json` or `summary.json` read.
const MAX_JSON_BYTES: u64 = 64 << 20;
/// Largest `split.txt` read (NIH's whole test split is about 400 kB).
const MAX_SPLIT_BYTES: u64 = 1 << 30;
/// Missing images named in `summary.md` (all of them are in summary.json).
const MISSING_SHOWN: usize = 20;

/// What a merge found besides the summary.
#[derive(Debug)]
pub struct MergeReport {
    /// The merged summary (also in `OUT/summary.json`).
    pub summary: Value,
    /// Images of the split that no part scored or listed as failed, in
    /// the split's order.
    pub missing: Vec<String>,
    /// Images more than one part has, as `(image, folder kept, folder
    /// dropped)`; the first part named (a scored row before a failure)
    /// is kept.
    pub duplicates: Vec<(String, PathBuf, PathBuf)>,
}

/// A JSON file of a part.
fn read_json(path: &Path) -> Result<Value, PipelineError> {
    let text = crate::bounded::read_regular_text(path, MAX_JSON_BYTES).map_err(io_error(path))?;
    serde_json::from_str(&text).map_err(|e| PipelineError::Input {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The names of the split that `identity` describes, from `dir/split.txt`.
///
/// # Errors
/// A missing file, or one whose count or hash is not the identity's.
fn read_split(dir: &Path, identity: &Value) -> Result<Vec<String>, PipelineError> {
    let path = dir.join(SPLIT_FILE);
    let text = crate::bounded::read_regular_text(&path, MAX_SPLIT_BYTES).map_err(io_error(&path))?;
    let names: Vec<String> = text.lines().map(str::to_string).collect();
    let hash = blake3::hash(text.as_bytes()).to_hex().to_string();
    if identity["images_blake3"].as_str() != Some(hash.as_str())
        || identity["images"].as_u64() != Some(names.len() as u64)
    {
        return Err(PipelineError::Input {
            path: path.display().to_string(),
            reason: format!(
                "is not the split run.json describes ({} images, hash {})",
                identity["images"], identity["images_blake3"]
            ),
        });
    }
    Ok(names)
}

/// Checks that `found` (the run.json of `dir`) is `expected` (that of
/// `first`), naming the fields that differ.
fn same_run(dir: &Path, found: &Value, first: &Path, expected: &Value) -> Result<(), PipelineError> {
    if found == expected {
        return Ok(());
    }
    let keys: HashSet<&String> = found
        .as_object()
        .into_iter()
        .chain(expected.as_object())
        .flat_map(|m| m.keys())
        .collect();
    let mut differing: Vec<String> = keys
        .into_iter()
        .filter(|k| found[k.as_str()] != expected[k.as_str()])
        .map(|k| format!("{k}: {} here, {} there", found[k.as_str()], expected[k.as_str()]))
        .collect();
    differing.sort();
    Err(PipelineError::Input {
        path: dir.join(RUN_FILE).display().to_string(),
        reason: format!(
            "is another run than {} ({}); only parts of the same run merge",
            first.join(RUN_FILE).display(),
            differing.join("; ")
        ),
    })
}

/// The images encrypted alone that the parts' summaries list, under the
/// bound they agree on.
fn listed_apart(parts: &[PathBuf]) -> Apart<'static> {
    let mut files = HashSet::new();
    let mut bounds = Vec::new();
    for dir in parts {
        let Ok(summary) = read_json(&dir.join("summary.json")) else {
            bounds.push(None);
            continue;
        };
        bounds.push(summary["value_bound"].as_f64());
        for entry in summary["encrypted_apart"].as_array().into_iter().flatten() {
            if let Some(file) = entry["file"].as_str() {
                files.insert(file.to_string());
            }
        }
    }
    let bound = bounds[0].filter(|b| bounds.iter().all(|c| *c == Some(*b)));
    Apart::Listed { bound, files }
}

/// Rows of one kind (results or failures) folded from every part.
struct Folded<'a> {
    /// The parts, in the order given.
    parts: &'a [PathBuf],
    /// The names of the split.
    split: &'a HashSet<&'a str>,
    /// Each image's row and the part it came from.
    rows: HashMap<String, (usize, Vec<String>)>,
}

impl<'a> Folded<'a> {
    /// Nothing folded yet.
    fn new(parts: &'a [PathBuf], split: &'a HashSet<&'a str>) -> Self {
        Folded {
            parts,
            split,
            rows: HashMap::new(),
        }
    }

    /// Takes the rows of part `from`'s `file` (under `header`) whose image
    /// is in no earlier part (nor in `before`); returns how many it took.
    /// Duplicates go to `duplicates`.
    ///
    /// # Errors
    /// An unreadable log; a row whose image is not in the split.
    fn take(
        &mut self,
        from: usize,
        file: &str,
        header: &[String],
        before: Option<&Folded>,
        duplicates: &mut Vec<(String, PathBuf, PathBuf)>,
    ) -> Result<usize, PipelineError> {
        let parts = self.parts;
        let rows = read_optional(&parts[from].join(file), header)?;
        let mut taken = 0;
        for row in rows {
            if !self.split.contains(row[0].as_str()) {
                return Err(PipelineError::Input {
                    path: parts[from].join(file).display().to_string(),
                    reason: format!("`{}` is not an image of the run's split", row[0]),
                });
            }
            let kept = before
                .and_then(|b| b.rows.get(&row[0]))
                .or_else(|| self.rows.get(&row[0]))
                .map(|(p, _)| *p);
            match kept {
                Some(p) => duplicates.push((row[0].clone(), parts[p].clone(), parts[from].clone())),
                None => {
                    self.rows.insert(row[0].clone(), (from, row));
                    taken += 1;
                }
            }
        }
        Ok(taken)
    }

    /// The rows in the split's order.
    fn ordered(mut self, split: &[String]) -> Vec<Vec<String>> {
        split
            .iter()
            .filter_map(|n| self.rows.remove(n))
            .map(|(_, r)| r)
            .collect()
    }
}

/// Writes `rows` under `header` into `path`, replacing what was there.
fn write_log(path: &Path, header: &[String], rows: &[Vec<String>]) -> Result<(), PipelineError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_error(path)(e)),
        _ => {}
    }
    let (mut log, _) = ResultsLog::open(path, header).map_err(|e| PipelineError::Refused(e.to_string()))?;
    log.append(rows).map_err(|e| PipelineError::Refused(e.to_string()))
}

/// Folds the output folders `parts` (of one run: equal `run.json`) into
/// `out`: `run.json`, `split.txt`, `results.csv` and `failed.csv` in the
/// split's order, then the summary ([`super::score`]'s, with each row's
/// backend and adapter and the seconds per backend, plus `parts`,
/// `missing` and `duplicates`). Each part is told to `observer`
/// ([`Event::Merged`]). A later merge into `out` replaces its rows.
///
/// # Errors
/// No part; `out` among the parts or holding another run; a part
/// without `run.json`, `split.txt` or readable logs; parts of different
/// runs; a row of an image the split does not have; no row at all.
pub fn merge(parts: &[PathBuf], out: &Path, observer: &dyn Observer) -> Result<MergeReport, PipelineError> {
    let Some(first) = parts.first() else {
        return Err(PipelineError::Config("merge needs at least one part".into()));
    };
    let identity = read_json(&first.join(RUN_FILE))?;
    for dir in &parts[1..] {
        same_run(dir, &read_json(&dir.join(RUN_FILE))?, first, &identity)?;
    }
    let split = read_split(first, &identity)?;
    let in_split: HashSet<&str> = split.iter().map(String::as_str).collect();
    let classes = identity_classes(&identity)?;
    let encrypted = identity["encrypted"].as_bool().unwrap_or(false);
    let header = header(&classes, encrypted);
    let mut duplicates = Vec::new();
    let mut scored = Folded::new(parts, &in_split);
    let mut failed = Folded::new(parts, &in_split);
    let mut counts = vec![(0, 0); parts.len()];
    for (p, count) in counts.iter_mut().enumerate() {
        count.0 = scored.take(p, RESULTS_FILE, &header, None, &mut duplicates)?;
    }
    for (p, count) in counts.iter_mut().enumerate() {
        count.1 = failed.take(p, FAILED_FILE, &failed_header(), Some(&scored), &mut duplicates)?;
    }
    let missing: Vec<String> = split
        .iter()
        .filter(|n| !scored.rows.contains_key(*n) && !failed.rows.contains_key(*n))
        .cloned()
        .collect();
    let out_abs = std::path::absolute(out).map_err(io_error(out))?;
    for dir in parts {
        if std::path::absolute(dir).map_err(io_error(dir))? == out_abs {
            return Err(PipelineError::Config(format!(
                "{}: the merged folder is one of the parts; choose another --out",
                out.display()
            )));
        }
    }
    let _writer = lock_output(out)?;
    match read_json(&out.join(RUN_FILE)) {
        Ok(found) => same_run(out, &found, first, &identity)?,
        Err(PipelineError::Io { .. }) => {}
        Err(e) => return Err(e),
    }
    let path = out.join(SPLIT_FILE);
    std::fs::write(&path, split.iter().map(|n| format!("{n}\n")).collect::<String>()).map_err(io_error(&path))?;
    let path = out.join(RUN_FILE);
    std::fs::write(&path, format!("{identity:#}\n")).map_err(io_error(&path))?;
    let rows = scored.ordered(&split);
    write_log(&out.join(RESULTS_FILE), &header, &rows)?;
    write_log(&out.join(FAILED_FILE), &failed_header(), &failed.ordered(&split))?;
    for (dir, &(rows, failed)) in parts.iter().zip(&counts) {
        observer.event(Event::Merged {
            folder: dir,
            rows,
            failed,
        });
    }
    let backend_col = header.iter().position(|h| h == BACKEND_COLUMN).expect("backend column");
    let mut backends: Vec<&str> = Vec::new();
    for row in &rows {
        if !backends.contains(&row[backend_col].as_str()) {
            backends.push(&row[backend_col]);
        }
    }
    if rows.is_empty() {
        return Err(PipelineError::CheckFailed(format!(
            "no part has a scored image ({} of {} images missing)",
            missing.len(),
            split.len()
        )));
    }
    let fields = json!({
        "split_images": split.len(),
        "parts": parts.iter().zip(&counts).map(|(dir, (rows, failed))| {
            json!({"folder": dir.display().to_string(), "rows": rows, "failed": failed})
        }).collect::<Vec<_>>(),
        "missing": missing,
        "duplicates": duplicates.iter().map(|(file, kept, dropped)| {
            json!({"file": file, "kept": kept.display().to_string(), "dropped": dropped.display().to_string()})
        }).collect::<Vec<_>>(),
    });
    let summary = summarize(&SummaryInput {
        out,
        identity: &identity,
        backend: &backends.join("+"),
        server: None,
        keygen_seconds: None,
        apart: if encrypted {
            listed_apart(parts)
        } else {
            Apart::NotEncrypted
        },
        merged: Some((
            fields.as_object().cloned().unwrap_or_default(),
            merge_paragraphs(parts, &counts, &missing, &duplicates, split.len()),
        )),
    })?;
    Ok(MergeReport {
        summary,
        missing,
        duplicates,
    })
}

/// summary.md's account of a merge: the parts, the images missing, the
/// duplicates dropped.
fn merge_paragraphs(
    parts: &[PathBuf],
    counts: &[(usize, usize)],
    missing: &[String],
    duplicates: &[(String, PathBuf, PathBuf)],
    split: usize,
) -> String {
    let mut md = format!(
        "\nMerged from {} part(s) of a split of {split} images:\n\n",
        parts.len()
    );
    for (dir, (rows, failed)) in parts.iter().zip(counts) {
        md.push_str(&format!("- `{}`: {rows} rows, {failed} failed images\n", dir.display()));
    }
    if !missing.is_empty() {
        let shown: Vec<String> = missing.iter().take(MISSING_SHOWN).map(|n| format!("`{n}`")).collect();
        md.push_str(&format!(
            "\n{} image(s) of the split are in no part: {}{}.\n",
            missing.len(),
            shown.join(", "),
            if missing.len() > MISSING_SHOWN {
                " and more (summary.json lists them all)"
            } else {
                ""
            }
        ));
    }
    if !duplicates.is_empty() {
        md.push_str(&format!(
            "\n{} image(s) are in more than one part; the first part's row is kept (summary.json lists them).\n",
            duplicates.len()
        ));
    }
    md
}
