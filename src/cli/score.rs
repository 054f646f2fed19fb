//! `score`: a whole test set end to end (decode, VQGAN encode, plaintext
//! prediction and, with `--encrypted`, encrypt, infer, decrypt), one row per
//! image appended to `OUT/results.csv` as it goes, then the metrics of the
//! plaintext and encrypted runs side by side (`summary.json`, `summary.md`,
//! `roc.png`). A rerun with the same `OUT` resumes after the last complete
//! row.

use super::backend::{Chosen, DeviceArgs};
use super::infer::PlanChoice;
use super::memory::MemoryArgs;
use super::metrics::report_json;
use super::model_args::ModelArgs;
use super::predict::sigmoid;
use super::session::{EncryptedSession, StageSeconds};
use super::vqgan::LoadedVqgan;
use super::{print_json, CliError};
use crate::data::dataset::{self, Dataset, DatasetKind, UncertainPolicy};
use crate::data::image::{preprocess, read_image, PAPER_SIZE};
use crate::data::metrics::{evaluate, MultiLabelMetrics};
use crate::data::results_log::{ResultsLog, ResultsLogError};
use crate::he_nn::ValueRange;
use crate::nn::Model;
use crate::report::{roc_png, roc_points, RocCurves};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{s, Array2, Array4, Axis};
use serde_json::{json, Value};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Which layout `--root` has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DatasetChoice {
    /// NIH ChestX-ray14: Data_Entry_2017.csv, images/, test_list.txt.
    Nih,
    /// CheXpert: valid.csv (or --csv) with Path and 14 label columns.
    Chexpert,
    /// A folder with latents.npy, labels.csv and optionally names.txt.
    Latents,
}

/// CheXpert's uncertain labels (-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Uncertain {
    /// As negatives (U-zeros, the paper's choice).
    Zeros,
    /// As positives (U-ones).
    Ones,
}

/// Arguments of `score`.
#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// The data set's layout.
    #[arg(long, value_enum)]
    dataset: DatasetChoice,
    /// The data set's folder.
    #[arg(long)]
    root: PathBuf,
    /// NIH: the list of images to score (default: ROOT/test_list.txt, else all).
    #[arg(long)]
    split: Option<PathBuf>,
    /// The label table, when not at its usual place under ROOT.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// CheXpert: how uncertain labels count.
    #[arg(long, value_enum, default_value = "zeros")]
    uncertain: Uncertain,
    #[command(flatten)]
    model: ModelArgs,
    /// The VQGAN that makes the latents (not needed for --dataset latents).
    #[arg(long)]
    vqgan: Option<PathBuf>,
    /// The VQGAN's config when its file records none (f2, f4, f8, f16).
    #[arg(long)]
    vqgan_preset: Option<String>,
    /// Also run every image encrypted and report both.
    #[arg(long)]
    encrypted: bool,
    #[command(flatten)]
    choice: PlanChoice,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    memory: MemoryArgs,
    /// Skip the first K images of the split (before `--limit`): another
    /// machine can score another part of the same run into its own folder,
    /// and `--merge` folds its rows in.
    #[arg(long, default_value_t = 0)]
    offset: usize,
    /// Score only the first N images of the split (after `--offset`).
    #[arg(long)]
    limit: Option<usize>,
    /// Before scoring, fold in the rows another output folder holds for the
    /// same run (its run.json must equal this one's): rows of images not yet
    /// scored here are appended, in that folder's order, and not scored
    /// again. Repeatable.
    #[arg(long)]
    merge: Vec<PathBuf>,
    /// Output folder (results.csv, failed.csv, summary.json, summary.md,
    /// roc.png). One `score` at a time writes into a folder: a second one is
    /// refused while the first runs (exit status 4).
    #[arg(long)]
    out: PathBuf,
    /// Exit with status 0 even when some images could not be scored (they
    /// are listed in failed.csv and the summary either way; without this
    /// flag the exit status is 1).
    #[arg(long)]
    allow_failed: bool,
    /// With --encrypted: exit with status 1 when an AUROC or F1 of the
    /// encrypted run differs from the plaintext one by more than this
    /// (the summary's `abs_difference`).
    #[arg(long, requires = "encrypted", value_parser = parse_drift)]
    max_drift: Option<f64>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

const RESULTS_FILE: &str = "results.csv";
const FAILED_FILE: &str = "failed.csv";
const RUN_FILE: &str = "run.json";
/// One row per folder merged in: where from, its backend, what it gave.
const MERGED_FILE: &str = "merged.csv";
/// One row per `score` call on the folder, written before it scores: when,
/// on which backend, which range. It names a folder's backends even when a
/// call was stopped before its summary.
const SESSIONS_FILE: &str = "sessions.csv";
/// Images per plaintext batch (an encrypted run takes its plan's batch times
/// its sets in lockstep).
const SCORE_BATCH: usize = 8;
const STAGES: [&str; 5] = ["encode", "plain", "encrypt", "infer", "decrypt"];
/// An encrypted run's column of each image's peak ([`ValueRange::peaks`]):
/// the largest value its ciphertexts carry, from the plaintext pass.
const PEAK_COLUMN: &str = "peak";

/// The advisory lock file that keeps a second `score` out of a folder.
const LOCK_FILE: &str = ".score.lock";

fn parse_drift(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a finite non-negative number")),
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn file_hash(path: &Path) -> Result<String, CliError> {
    let bytes = crate::bounded::read_regular(path, crate::nn::weights::MAX_WEIGHTS_BYTES).map_err(io_error(path))?;
    Ok(blake3::hash(&bytes).to_hex()[..24].to_string())
}

fn load_dataset(args: &ScoreArgs) -> Result<Dataset, CliError> {
    let policy = match args.uncertain {
        Uncertain::Zeros => UncertainPolicy::Zeros,
        Uncertain::Ones => UncertainPolicy::Ones,
    };
    let mut data = match args.dataset {
        DatasetChoice::Nih => dataset::nih(&args.root, args.csv.as_deref(), args.split.as_deref()),
        DatasetChoice::Chexpert => dataset::chexpert(&args.root, args.csv.as_deref(), policy),
        DatasetChoice::Latents => dataset::latents(&args.root),
    }
    .map_err(|e| CliError::Input {
        path: args.root.display().to_string(),
        reason: e.to_string(),
    })?;
    data.skip(args.offset);
    if let Some(n) = args.limit {
        data.truncate(n);
    }
    Ok(data)
}

/// What identifies a run: a rerun into the same folder, or a folder merged
/// into it, must match it. The images are not part of it: `--offset` and
/// `--limit` take a range of the same ordered split, so a rerun with a
/// larger limit extends the results, and ranges scored apart merge.
fn run_identity(args: &ScoreArgs, classes: &[String], preset: Option<&str>) -> Result<Value, CliError> {
    Ok(json!({
        "dataset": format!("{:?}", args.dataset).to_lowercase(),
        "root": args.root.display().to_string(),
        "split": args.split.as_ref().map(|p| p.display().to_string()),
        "uncertain": format!("{:?}", args.uncertain).to_lowercase(),
        "model": file_hash(&args.model.model)?,
        "vqgan": args.vqgan.as_deref().map(file_hash).transpose()?,
        "encrypted": args.encrypted,
        "preset": preset,
        "classes": classes,
    }))
}

/// Creates `out` and takes its writer's lock: an exclusive advisory lock
/// on `OUT/.score.lock`, held until the returned file is dropped (the
/// operating system drops it when the process ends, however it ends).
///
/// # Errors
/// [`CliError::Resources`] while another process holds it.
fn lock_output(out: &Path) -> Result<std::fs::File, CliError> {
    std::fs::create_dir_all(out).map_err(io_error(out))?;
    let path = out.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(CliError::Resources(format!(
            "{}: another `score` is writing into this folder; wait for it or choose another --out",
            out.display()
        ))),
        Err(std::fs::TryLockError::Error(source)) => Err(io_error(&path)(source)),
    }
}

/// Writes `OUT/run.json`, or checks that the one there is this run's.
fn claim_output(out: &Path, identity: &Value) -> Result<(), CliError> {
    match check_identity(out, identity, "choose another --out") {
        Err(CliError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
            let path = out.join(RUN_FILE);
            std::fs::write(&path, format!("{identity:#}\n")).map_err(io_error(&path))
        }
        checked => checked,
    }
}

/// Checks that `DIR/run.json` is `identity`; `hint` ends the refusal.
fn check_identity(dir: &Path, identity: &Value, hint: &str) -> Result<(), CliError> {
    let path = dir.join(RUN_FILE);
    let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
    let found: Value = serde_json::from_str(&text).map_err(|e| CliError::Input {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    if &found != identity {
        return Err(CliError::Input {
            path: path.display().to_string(),
            reason: format!("holds another run ({found}); this one is {identity}; {hint}"),
        });
    }
    Ok(())
}

/// The complete rows of the log at `path`, none when there is no file.
///
/// # Errors
/// An unreadable log, or one that names an image twice ([`unique_rows`]).
fn read_optional(path: &Path, header: &[String]) -> Result<Vec<Vec<String>>, CliError> {
    match ResultsLog::read(path, header) {
        Ok(rows) => unique_rows(path, rows),
        Err(ResultsLogError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(CliError::Refused(e.to_string())),
    }
}

/// `rows` of the log at `path` when no two name the same image (first
/// column); a log that does was written by two processes at once, or edited,
/// and its counts would be wrong.
///
/// # Errors
/// [`CliError::Input`] naming the image and both lines.
fn unique_rows(path: &Path, rows: Vec<Vec<String>>) -> Result<Vec<Vec<String>>, CliError> {
    let mut seen = std::collections::HashMap::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        if let Some(first) = seen.insert(row[0].as_str(), i) {
            return Err(CliError::Input {
                path: path.display().to_string(),
                reason: format!(
                    "`{}` has two rows (lines {} and {}); remove one, or score into a fresh folder",
                    row[0],
                    first + 2,
                    i + 2
                ),
            });
        }
    }
    Ok(rows)
}

/// Appends to `log` the rows of `DIR/file` (under `header`) whose image is
/// not in `finished`, and adds their images to it; a missing file counts as
/// empty. Returns how many rows were taken.
fn merge_log(
    dir: &Path,
    file: &str,
    header: &[String],
    log: &mut ResultsLog,
    finished: &mut std::collections::HashSet<String>,
) -> Result<usize, CliError> {
    let rows = read_optional(&dir.join(file), header)?;
    let new: Vec<Vec<String>> = rows.into_iter().filter(|r| finished.insert(r[0].clone())).collect();
    log.append(&new).map_err(|e| CliError::Refused(e.to_string()))?;
    Ok(new.len())
}

/// The columns of `merged.csv`.
fn merged_header() -> Vec<String> {
    ["folder", "backend", "rows", "failed"].map(String::from).to_vec()
}

/// The columns of `sessions.csv`.
fn sessions_header() -> Vec<String> {
    ["started_unix", "backend", "adapter", "offset", "limit", "to_go"]
        .map(String::from)
        .to_vec()
}

/// Records this call in `OUT/sessions.csv` before it scores anything.
fn log_session(args: &ScoreArgs, chosen: &Chosen, to_go: usize) -> Result<(), CliError> {
    let (backend, adapter) = chosen.describe();
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (mut log, _) = ResultsLog::open(&args.out.join(SESSIONS_FILE), &sessions_header())
        .map_err(|e| CliError::Refused(e.to_string()))?;
    log.append(&[vec![
        started.to_string(),
        backend,
        adapter.unwrap_or_default(),
        args.offset.to_string(),
        args.limit.map_or_else(String::new, |n| n.to_string()),
        to_go.to_string(),
    ]])
    .map_err(|e| CliError::Refused(e.to_string()))
}

/// The backends that scored a merged folder, in the order they first ran,
/// joined by `+`: from its `sessions.csv`, else from its summary (folders
/// written before that log existed), else `unknown`.
///
/// # Errors
/// A `sessions.csv` that is not a call log (damaged, or another file).
fn merged_backend(dir: &Path) -> Result<String, CliError> {
    let mut backends: Vec<String> = Vec::new();
    let sessions = dir.join(SESSIONS_FILE);
    let rows = match ResultsLog::read(&sessions, &sessions_header()) {
        Ok(rows) => rows,
        Err(ResultsLogError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(CliError::Refused(e.to_string())),
    };
    for row in rows {
        if !backends.contains(&row[1]) {
            backends.push(row[1].clone());
        }
    }
    if !backends.is_empty() {
        return Ok(backends.join("+"));
    }
    Ok(std::fs::read_to_string(dir.join("summary.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|v| v["backend"].as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".into()))
}

/// The columns of `failed.csv`.
fn failed_header() -> Vec<String> {
    vec!["file".into(), "error".into()]
}

fn header(classes: &[String], encrypted: bool) -> Vec<String> {
    let mut h = vec!["file".to_string()];
    let groups: &[&str] = if encrypted {
        &["label", "plain", "he"]
    } else {
        &["label", "plain"]
    };
    for group in groups {
        h.extend(classes.iter().map(|c| format!("{group}:{c}")));
    }
    if encrypted {
        h.push(PEAK_COLUMN.into());
    }
    h.extend(STAGES.iter().map(|s| format!("seconds_{s}")));
    h
}

/// The models a run uses.
struct Pipeline {
    model: Model<f64>,
    vqgan: Option<LoadedVqgan>,
    session: Option<EncryptedSession>,
    batch: usize,
}

impl Pipeline {
    /// Latents of `samples[range]` (VQGAN-encoded images, or the stored
    /// latents), the indices that made it and the failures
    /// (`(sample index, error)`); also the encoding seconds.
    #[allow(clippy::type_complexity)]
    fn latents(
        &self,
        data: &Dataset,
        indices: &[usize],
    ) -> Result<(Array4<f64>, Vec<usize>, Vec<(usize, String)>, f64), CliError> {
        if let Some(stored) = &data.latents {
            let views: Vec<_> = indices.iter().map(|&i| stored.slice(s![i, .., .., ..])).collect();
            let x = ndarray::stack(Axis(0), &views).map_err(|e| CliError::Refused(e.to_string()))?;
            return Ok((x.mapv(f64::from), indices.to_vec(), Vec::new(), 0.0));
        }
        let vqgan = self
            .vqgan
            .as_ref()
            .ok_or_else(|| CliError::Usage("--vqgan is needed to encode images".into()))?;
        let start = Instant::now();
        let mut images = Vec::new();
        let (mut kept, mut failed) = (Vec::new(), Vec::new());
        for &i in indices {
            match read_image(&data.samples[i].path) {
                Ok(image) => {
                    images.push(preprocess(&image, PAPER_SIZE));
                    kept.push(i);
                }
                Err(e) => failed.push((i, e.to_string())),
            }
        }
        if images.is_empty() {
            return Ok((Array4::zeros((0, 0, 0, 0)), kept, failed, 0.0));
        }
        let views: Vec<_> = images.iter().map(|x| x.view()).collect();
        let x = ndarray::stack(Axis(0), &views).map_err(|e| CliError::Refused(e.to_string()))?;
        let z = vqgan.encode(x, false).map_err(CliError::Refused)?;
        Ok((z.mapv(f64::from), kept, failed, start.elapsed().as_secs_f64()))
    }
}

fn fmt(v: f64) -> String {
    format!("{v}")
}

/// Why an image whose plaintext logits are not finite has no row.
const OVERFLOW: &str = "the model's plaintext pass leaves f64's range (a logit is not finite); \
                        there is no reference to score it against";

/// The images of `x` (samples `kept`) whose plaintext logits `plain` are
/// all finite, with their latents and logits; and the samples dropped.
fn drop_overflowed(
    x: Array4<f64>,
    kept: Vec<usize>,
    plain: Array2<f64>,
) -> (Array4<f64>, Vec<usize>, Array2<f64>, Vec<usize>) {
    let (finite, overflowed): (Vec<usize>, Vec<usize>) =
        (0..kept.len()).partition(|&r| plain.row(r).iter().all(|v| v.is_finite()));
    if overflowed.is_empty() {
        return (x, kept, plain, Vec::new());
    }
    (
        x.select(Axis(0), &finite),
        finite.iter().map(|&r| kept[r]).collect(),
        plain.select(Axis(0), &finite),
        overflowed.iter().map(|&r| kept[r]).collect(),
    )
}

/// Scores the pending samples in batches, appending rows and failures.
fn score_pending(
    pipeline: &Pipeline,
    data: &Dataset,
    labels: &Array2<f64>,
    pending: &[usize],
    results: &mut ResultsLog,
    failures: &mut ResultsLog,
    bar: &ProgressBar,
) -> Result<(), CliError> {
    for chunk in pending.chunks(pipeline.batch) {
        let (x, kept, mut failed, encode_s) = pipeline.latents(data, chunk)?;
        let start = Instant::now();
        let (x, kept, plain) = if kept.is_empty() {
            (x, kept, Array2::zeros((0, 0)))
        } else {
            let plain = pipeline
                .model
                .forward(x.view())
                .map_err(|e| CliError::Refused(e.to_string()))?;
            let (x, kept, plain, overflowed) = drop_overflowed(x, kept, plain);
            failed.extend(overflowed.into_iter().map(|i| (i, OVERFLOW.to_string())));
            (x, kept, plain)
        };
        let plain_s = start.elapsed().as_secs_f64();
        let failed_rows: Vec<Vec<String>> = failed
            .iter()
            .map(|(i, e)| vec![data.samples[*i].name.clone(), e.clone()])
            .collect();
        failures
            .append(&failed_rows)
            .map_err(|e| CliError::Refused(e.to_string()))?;
        if !kept.is_empty() {
            let n = kept.len() as f64;
            let shared = [encode_s / n, plain_s / n];
            let (he, seconds) = match &pipeline.session {
                Some(session) => {
                    let run = session.logits_apart(&x, true)?;
                    (Some((run.logits, run.peaks)), run.seconds)
                }
                None => (None, vec![StageSeconds::default(); kept.len()]),
            };
            let rows: Vec<Vec<String>> = kept
                .iter()
                .enumerate()
                .map(|(r, &i)| {
                    let mut row = vec![data.samples[i].name.clone()];
                    row.extend(labels.row(i).iter().map(|&v| fmt(v)));
                    row.extend(plain.row(r).iter().map(|&v| fmt(sigmoid(v))));
                    if let Some((he, peaks)) = &he {
                        row.extend(he.row(r).iter().map(|&v| fmt(sigmoid(v))));
                        row.push(fmt(peaks[r]));
                    }
                    let own = seconds[r];
                    row.extend([shared[0], shared[1], own.encrypt, own.infer, own.decrypt].map(fmt));
                    row
                })
                .collect();
            results.append(&rows).map_err(|e| CliError::Refused(e.to_string()))?;
        }
        bar.inc(chunk.len() as u64);
    }
    Ok(())
}

/// The number in column `col` of results row `r`.
fn number_at(rows: &[Vec<String>], r: usize, col: usize) -> Result<f64, CliError> {
    rows[r][col].parse::<f64>().map_err(|_| CliError::Input {
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
) -> Result<Array2<f64>, CliError> {
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
fn images_apart(header: &[String], rows: &[Vec<String>], range: &ValueRange) -> Result<Vec<(String, f64)>, CliError> {
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
/// in the output folder; returns the summary.
fn summarize(
    args: &ScoreArgs,
    classes: &[String],
    model_name: &str,
    backend: &str,
    keygen_seconds: Option<f64>,
    range: Option<&ValueRange>,
) -> Result<Value, CliError> {
    let header = header(classes, args.encrypted);
    let rows = read_optional(&args.out.join(RESULTS_FILE), &header)?;
    let failed = read_optional(&args.out.join(FAILED_FILE), &failed_header())?;
    if rows.is_empty() {
        return Err(CliError::CheckFailed("no image could be scored; see failed.csv".into()));
    }
    let labels = column_block(&header, &rows, "label", classes)?;
    let plain_scores = column_block(&header, &rows, "plain", classes)?;
    let he_scores = args
        .encrypted
        .then(|| column_block(&header, &rows, "he", classes))
        .transpose()?;
    let metrics_of = |scores: &Array2<f64>| -> Result<MultiLabelMetrics, CliError> {
        evaluate(labels.view(), scores.view()).map_err(|e| CliError::Refused(format!("{RESULTS_FILE}: {e}")))
    };
    let plain = metrics_of(&plain_scores)?;
    let he = he_scores.as_ref().map(metrics_of).transpose()?;
    let seconds = stage_seconds(&header, &rows);
    let secs = |stage: &str| seconds[stage]["mean"].as_f64().unwrap_or(0.0);
    let mut md = format!(
        "# {model_name}: {} images\n\nData: `{}` ({:?}). Backend: {backend}. Mean seconds per image; \
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
    roc_png(&args.out.join("roc.png"), &title, &curves).map_err(|e| CliError::Refused(e.to_string()))?;
    Ok(summary)
}

/// Runs `score`: prints the summary, then fails (exit status 1) on
/// images that could not be scored (unless `--allow-failed`) and on a
/// drift past `--max-drift`.
pub fn run(args: &ScoreArgs) -> Result<(), CliError> {
    let summary = score(args)?;
    if args.json {
        print_json(&summary);
    } else {
        let md = std::fs::read_to_string(args.out.join("summary.md")).unwrap_or_default();
        println!("{md}");
        println!("results: {}", args.out.display());
    }
    verdict(args, &summary)
}

/// The checks a summary must pass: no failed image unless allowed, no
/// metric of the encrypted run further than `--max-drift` from the
/// plaintext one.
fn verdict(args: &ScoreArgs, summary: &Value) -> Result<(), CliError> {
    let failed = summary["failed"].as_array().map_or(0, Vec::len);
    if failed > 0 && !args.allow_failed {
        return Err(CliError::CheckFailed(format!(
            "{failed} image(s) could not be scored (see {}); pass --allow-failed to accept that",
            args.out.join(FAILED_FILE).display()
        )));
    }
    if let Some(limit) = args.max_drift {
        let drifts = summary["abs_difference"].as_object().into_iter().flatten();
        if let Some((metric, drift)) = drifts
            .filter_map(|(k, v)| v.as_f64().map(|d| (k, d)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .filter(|&(_, d)| d > limit)
        {
            return Err(CliError::CheckFailed(format!(
                "the encrypted {metric} is {drift:.6} from the plaintext one, past --max-drift {limit}"
            )));
        }
    }
    Ok(())
}

/// Scores the data set as `args` say (resuming in `args.out`) and returns
/// the summary also written to `summary.json`.
///
/// # Errors
/// Unusable data set, models or output folder; evaluation failures.
pub fn score(args: &ScoreArgs) -> Result<Value, CliError> {
    let data = load_dataset(args)?;
    let chosen = args.device.resolve()?;
    let (backend, _) = chosen.describe();
    let (model, planned) = if args.encrypted {
        let planned = args.choice.plan(&args.model)?;
        (planned.model.clone(), Some(planned))
    } else {
        (crate::nn::fold(&args.model.load()?), None)
    };
    let classes = model.spec().classes().to_vec();
    let labels = data.labels_for(&classes).map_err(|e| CliError::Input {
        path: args.root.display().to_string(),
        reason: e.to_string(),
    })?;
    let model_name = model.spec().to_string();
    let vqgan = match (&data.kind, &args.vqgan) {
        (DatasetKind::Latents, _) => None,
        (_, None) => {
            return Err(CliError::Usage(
                "--vqgan is needed to encode the images (or use --dataset latents)".into(),
            ))
        }
        (_, Some(path)) => Some(LoadedVqgan::load_on(path, args.vqgan_preset.as_deref(), &chosen)?.0),
    };
    if let Some(vq) = &vqgan {
        let f = vq.config().factor();
        let side = PAPER_SIZE.get() / f;
        let want = model.spec().latent().dims();
        if [vq.config().encoder_out_channels(), side, side] != want {
            return Err(CliError::Refused(format!(
                "the VQGAN makes {}x{side}x{side} latents, the model reads {want:?}",
                vq.config().encoder_out_channels()
            )));
        }
    }
    let preset = planned.as_ref().and_then(|p| p.params.name().map(str::to_string));
    let identity = run_identity(args, &classes, preset.as_deref())?;
    let _writer = lock_output(&args.out)?;
    claim_output(&args.out, &identity)?;
    let header = header(&classes, args.encrypted);
    let open = |file: &str, header: &[String]| {
        let path = args.out.join(file);
        let (log, rows) = ResultsLog::open(&path, header).map_err(|e| CliError::Refused(e.to_string()))?;
        Ok::<_, CliError>((log, unique_rows(&path, rows)?))
    };
    let (mut results, done) = open(RESULTS_FILE, &header)?;
    let (mut failures, failed) = open(FAILED_FILE, &failed_header())?;
    let mut finished: std::collections::HashSet<String> =
        done.iter().chain(failed.iter()).map(|r| r[0].clone()).collect();
    for dir in &args.merge {
        check_identity(dir, &identity, "only folders of the same run merge")?;
        let backend = merged_backend(dir)?;
        let taken = merge_log(dir, RESULTS_FILE, &header, &mut results, &mut finished)?;
        let taken_failed = merge_log(dir, FAILED_FILE, &failed_header(), &mut failures, &mut finished)?;
        if taken + taken_failed > 0 {
            let (mut merged, _) = ResultsLog::open(&args.out.join(MERGED_FILE), &merged_header())
                .map_err(|e| CliError::Refused(e.to_string()))?;
            merged
                .append(&[vec![
                    dir.display().to_string(),
                    backend,
                    taken.to_string(),
                    taken_failed.to_string(),
                ]])
                .map_err(|e| CliError::Refused(e.to_string()))?;
        }
        if !args.json {
            eprintln!(
                "merged {taken} rows ({taken_failed} failed images) from {}",
                dir.display()
            );
        }
    }
    let pending: Vec<usize> = (0..data.samples.len())
        .filter(|&i| !finished.contains(&data.samples[i].name))
        .collect();
    log_session(args, &chosen, pending.len())?;
    let session = planned
        .map(|p| {
            let sets = pending.len().div_ceil(p.plan.batch());
            let memory = args.memory.resolve(&p.params, &p.plan, sets);
            EncryptedSession::open(&args.model.model, p, chosen.clone(), memory)
        })
        .transpose()?;
    // An encrypted run takes as many images at a time as its sets in
    // lockstep hold.
    let batch = session
        .as_ref()
        .map_or(SCORE_BATCH, |s| s.plan().batch() * s.lockstep());
    if !args.json {
        eprintln!(
            "{model_name} on {} images ({} done before, {} to go), {}, backend {backend}",
            data.samples.len(),
            data.samples.len() - pending.len(),
            pending.len(),
            if args.encrypted {
                "plaintext and encrypted"
            } else {
                "plaintext only"
            }
        );
    }
    let bar = ProgressBar::new(pending.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images, {elapsed} elapsed, ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let pipeline = Pipeline {
        model,
        vqgan,
        session,
        batch,
    };
    score_pending(&pipeline, &data, &labels, &pending, &mut results, &mut failures, &bar)?;
    bar.finish_and_clear();
    let keygen = pipeline.session.as_ref().and_then(|s| s.keygen_seconds);
    let range = pipeline.session.as_ref().map(|s| &s.range);
    summarize(args, &classes, &model_name, &backend, keygen, range)
}
