//! The scorer: a whole test set end to end (decode, VQGAN encode, plaintext
//! prediction and, with `--encrypted`, encrypt, infer, decrypt), one row per
//! image appended to `OUT/results.csv` as it goes, then the metrics of the
//! plaintext and encrypted runs side by side (`summary.json`, `summary.md`,
//! `roc.png`). A rerun with the same `OUT` resumes after the last complete
//! row. A split can be cut into shards ([`Shard`]), each scored into its
//! own folder, and the folders merged ([`merge()`]) without the models.

use super::device::{BackendKind, Chosen};
use super::memory::{EvalMemory, KeyMemoryChoice};
use super::model::{load_model, Planned};
use super::observer::{Event, Observer};
use super::remote::{RemoteConfig, RemoteEvaluation};
use super::session::{EncryptedSession, StageSeconds};
use super::vqgan::LoadedVqgan;
use super::{sigmoid, PipelineError};
use crate::data::dataset::{self, Dataset, DatasetKind, UncertainPolicy};
use crate::data::image::{preprocess, read_image, PAPER_SIZE};
use crate::data::results_log::{ResultsLog, ResultsLogError};
use crate::nn::{LoadOptions, Model};
use ndarray::{s, Array2, Array4, Axis};
use serde_json::{json, Value};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Which layout a data set's folder has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetLayout {
    /// NIH ChestX-ray14: Data_Entry_2017.csv, images/, test_list.txt.
    Nih,
    /// CheXpert: valid.csv (or another label table) with Path and 14 label columns.
    Chexpert,
    /// A folder with latents.npy, labels.csv and optionally names.txt.
    Latents,
}

/// What a scoring run does; the output folder is the run's state (a
/// second call with the same configuration resumes it).
#[derive(Clone, Debug)]
pub struct ScoreConfig {
    /// The data set's layout.
    pub dataset: DatasetLayout,
    /// The data set's folder.
    pub root: PathBuf,
    /// NIH: the list of images to score (default: ROOT/test_list.txt, else all).
    pub split: Option<PathBuf>,
    /// The label table, when not at its usual place under `root`.
    pub csv: Option<PathBuf>,
    /// CheXpert: how uncertain labels count.
    pub uncertain: UncertainPolicy,
    /// The classifier's weights (safetensors).
    pub model: PathBuf,
    /// What the classifier's metadata may lack.
    pub model_options: LoadOptions,
    /// The VQGAN that makes the latents (not needed for [`DatasetLayout::Latents`]).
    pub vqgan: Option<PathBuf>,
    /// The VQGAN's config when its file records none (f2, f4, f8, f16).
    pub vqgan_preset: Option<String>,
    /// Also run every image encrypted and report both.
    pub encrypted: bool,
    /// With `encrypted`: evaluate the ciphertexts on this running `latent-he
    /// serve` instead of in this process (keys, encryption and decryption
    /// stay here). `backend` then only runs the VQGAN.
    pub server: Option<RemoteConfig>,
    /// Parameter preset, or `auto`: the smallest 128-bit preset that fits.
    pub preset: String,
    /// Images sharing one set of ciphertexts.
    pub batch: usize,
    /// The backend (`None`: the GPU when a hardware adapter exists, else the CPU).
    pub backend: Option<BackendKind>,
    /// GPU adapter name substring.
    pub adapter: Option<String>,
    /// How evaluation keys are held.
    pub key_memory: KeyMemoryChoice,
    /// Image sets evaluated together (lowered to what memory holds).
    pub lockstep: usize,
    /// Bytes of weight plaintexts a GPU keeps for later images
    /// ([`EvalMemory::weights`]).
    pub weight_memory: u64,
    /// Images of the split skipped first (before `limit`).
    pub offset: usize,
    /// Images scored at most (after `offset`).
    pub limit: Option<usize>,
    /// Score only this part of the split, into its own folder under `out`
    /// ([`Shard::folder`]); excludes `offset` and `limit`.
    pub shard: Option<Shard>,
    /// The output folder (results.csv, failed.csv, summary.json,
    /// summary.md, roc.png); one scorer at a time writes into it. A
    /// shard's folder is under it ([`ScoreConfig::out_dir`]).
    pub out: PathBuf,
}

impl ScoreConfig {
    /// The folder this run writes into: `out`, or the shard's own folder
    /// under it.
    pub fn out_dir(&self) -> PathBuf {
        self.shard.map_or_else(|| self.out.clone(), |s| s.folder(&self.out))
    }
}

/// The results file in an output folder.
pub const RESULTS_FILE: &str = "results.csv";
/// The failures file in an output folder.
pub const FAILED_FILE: &str = "failed.csv";
const RUN_FILE: &str = "run.json";
/// The names of the whole split's images, one a line, in order (what
/// `run.json`'s `images` and `images_blake3` describe): a merge names the
/// images no part has from it.
const SPLIT_FILE: &str = "split.txt";
/// One row per `score` call on the folder, written before it scores: when,
/// on which backend (and GPU adapter, or for a remote server its URL),
/// which range. It names a folder's backends even when a call was stopped
/// before its summary.
const SESSIONS_FILE: &str = "sessions.csv";
/// Images per plaintext batch (an encrypted run takes its plan's batch times
/// its sets in lockstep).
const SCORE_BATCH: usize = 8;
const STAGES: [&str; 5] = ["encode", "plain", "encrypt", "infer", "decrypt"];
/// An encrypted run's column of each image's peak ([`ValueRange::peaks`]):
/// the largest value its ciphertexts carry, from the plaintext pass.
const PEAK_COLUMN: &str = "peak";
/// The column of each image's backend ([`Chosen::describe`],
/// [`EncryptedSession::backend`]).
const BACKEND_COLUMN: &str = "backend";
/// The column of each image's GPU adapter, or remote server's URL.
const ADAPTER_COLUMN: &str = "adapter";

/// The advisory lock file that keeps a second `score` out of a folder.
const LOCK_FILE: &str = ".score.lock";

mod merge;
mod shard;
mod summary;
pub use merge::{merge, MergeReport};
pub use shard::{Shard, SlurmArray, MAX_SHARDS};
pub use summary::median;
use summary::{summarize, Apart, SummaryInput};

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> PipelineError + '_ {
    PipelineError::io(path)
}

fn file_hash(path: &Path) -> Result<String, PipelineError> {
    let bytes = crate::bounded::read_regular(path, crate::nn::weights::MAX_WEIGHTS_BYTES).map_err(io_error(path))?;
    Ok(blake3::hash(&bytes).to_hex()[..24].to_string())
}

/// The images a call scores.
struct Selection {
    /// The data set, narrowed to the images this call scores.
    data: Dataset,
    /// The names of the whole split, in order.
    split: Vec<String>,
    /// Images of the split before the first one scored.
    offset: usize,
    /// The most images scored (`None`: to the end of the split).
    limit: Option<usize>,
}

/// The data set, narrowed to the images this call scores (the shard, or
/// `offset` and `limit`).
fn load_dataset(args: &ScoreConfig) -> Result<Selection, PipelineError> {
    let mut data = match args.dataset {
        DatasetLayout::Nih => dataset::nih(&args.root, args.csv.as_deref(), args.split.as_deref()),
        DatasetLayout::Chexpert => dataset::chexpert(&args.root, args.csv.as_deref(), args.uncertain),
        DatasetLayout::Latents => dataset::latents(&args.root),
    }
    .map_err(|e| PipelineError::Input {
        path: args.root.display().to_string(),
        reason: e.to_string(),
    })?;
    let split: Vec<String> = data.samples.iter().map(|s| s.name.clone()).collect();
    match args.shard {
        Some(shard) if args.offset > 0 || args.limit.is_some() => Err(PipelineError::Config(format!(
            "shard {shard} takes its own part of the split: without --offset and --limit"
        ))),
        Some(shard) => {
            let range = shard.range(split.len());
            data.truncate(range.end);
            data.skip(range.start);
            Ok(Selection {
                data,
                split,
                offset: range.start,
                limit: Some(range.len()),
            })
        }
        None => {
            data.skip(args.offset);
            if let Some(n) = args.limit {
                data.truncate(n);
            }
            Ok(Selection {
                data,
                split,
                offset: args.offset,
                limit: args.limit,
            })
        }
    }
}

/// The text of `split.txt`: each name on its line.
///
/// # Errors
/// A name with a line break (it could not be read back).
fn split_text(split: &[String]) -> Result<String, PipelineError> {
    if let Some(name) = split.iter().find(|n| n.contains(['\n', '\r'])) {
        return Err(PipelineError::Refused(format!(
            "the image name {name:?} has a line break; names are written one a line"
        )));
    }
    Ok(split.iter().map(|n| format!("{n}\n")).collect())
}

/// What identifies a run: a rerun into the same folder, or a folder merged
/// with it, must match it. It names the whole split (how many images, the
/// hash of `split.txt`), not the part a call scores: `--offset`, `--limit`
/// and `--shard` take parts of the same ordered split, so a rerun with a
/// larger limit extends the results, and parts scored apart merge.
fn run_identity(
    args: &ScoreConfig,
    classes: &[String],
    model_name: &str,
    preset: Option<&str>,
    split: &str,
    images: usize,
) -> Result<Value, PipelineError> {
    Ok(json!({
        "dataset": format!("{:?}", args.dataset).to_lowercase(),
        "root": args.root.display().to_string(),
        "split": args.split.as_ref().map(|p| p.display().to_string()),
        "uncertain": format!("{:?}", args.uncertain).to_lowercase(),
        "model": file_hash(&args.model)?,
        "vqgan": args.vqgan.as_deref().map(file_hash).transpose()?,
        "model_name": model_name,
        "encrypted": args.encrypted,
        "preset": preset,
        "classes": classes,
        "images": images,
        "images_blake3": blake3::hash(split.as_bytes()).to_hex().to_string(),
    }))
}

/// Creates `out` and takes its writer's lock: an exclusive advisory lock
/// on `OUT/.score.lock`, held until the returned file is dropped (the
/// operating system drops it when the process ends, however it ends).
///
/// # Errors
/// [`PipelineError::Resources`] while another process holds it.
fn lock_output(out: &Path) -> Result<std::fs::File, PipelineError> {
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
        Err(std::fs::TryLockError::WouldBlock) => Err(PipelineError::Resources(format!(
            "{}: another `score` is writing into this folder; wait for it or choose another --out",
            out.display()
        ))),
        Err(std::fs::TryLockError::Error(source)) => Err(io_error(&path)(source)),
    }
}

/// Writes `OUT/split.txt` (`split`) and then `OUT/run.json`, or checks
/// that the run.json there is this run's.
fn claim_output(out: &Path, identity: &Value, split: &str) -> Result<(), PipelineError> {
    match check_identity(out, identity, "choose another --out") {
        Err(PipelineError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
            let path = out.join(SPLIT_FILE);
            std::fs::write(&path, split).map_err(io_error(&path))?;
            let path = out.join(RUN_FILE);
            std::fs::write(&path, format!("{identity:#}\n")).map_err(io_error(&path))
        }
        checked => checked,
    }
}

/// Checks that `DIR/run.json` is `identity`; `hint` ends the refusal.
fn check_identity(dir: &Path, identity: &Value, hint: &str) -> Result<(), PipelineError> {
    let path = dir.join(RUN_FILE);
    let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
    let found: Value = serde_json::from_str(&text).map_err(|e| PipelineError::Input {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    if &found != identity {
        return Err(PipelineError::Input {
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
fn read_optional(path: &Path, header: &[String]) -> Result<Vec<Vec<String>>, PipelineError> {
    match ResultsLog::read(path, header) {
        Ok(rows) => unique_rows(path, rows),
        Err(ResultsLogError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(PipelineError::Refused(e.to_string())),
    }
}

/// `rows` of the log at `path` when no two name the same image (first
/// column); a log that does was written by two processes at once, or edited,
/// and its counts would be wrong.
///
/// # Errors
/// [`PipelineError::Input`] naming the image and both lines.
fn unique_rows(path: &Path, rows: Vec<Vec<String>>) -> Result<Vec<Vec<String>>, PipelineError> {
    let mut seen = std::collections::HashMap::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        if let Some(first) = seen.insert(row[0].as_str(), i) {
            return Err(PipelineError::Input {
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

/// The columns of `sessions.csv`.
fn sessions_header() -> Vec<String> {
    ["started_unix", "backend", "adapter", "offset", "limit", "to_go"]
        .map(String::from)
        .to_vec()
}

/// Records this call on `backend` (with `adapter`, [`EncryptedSession::backend`])
/// over `selection` in `out/sessions.csv` before it scores anything.
fn log_session(
    out: &Path,
    selection: &Selection,
    backend: &str,
    adapter: Option<&str>,
    to_go: usize,
) -> Result<(), PipelineError> {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (mut log, _) = ResultsLog::open(&out.join(SESSIONS_FILE), &sessions_header())
        .map_err(|e| PipelineError::Refused(e.to_string()))?;
    log.append(&[vec![
        started.to_string(),
        backend.to_string(),
        adapter.unwrap_or_default().to_string(),
        selection.offset.to_string(),
        selection.limit.map_or_else(String::new, |n| n.to_string()),
        to_go.to_string(),
    ]])
    .map_err(|e| PipelineError::Refused(e.to_string()))
}

/// The columns of `failed.csv`.
fn failed_header() -> Vec<String> {
    vec!["file".into(), "error".into()]
}

/// The columns of `results.csv`: the image, its labels, its plaintext
/// (and encrypted) probabilities, its peak (encrypted), its seconds per
/// stage, and the backend and adapter that scored it.
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
    h.extend([BACKEND_COLUMN.to_string(), ADAPTER_COLUMN.to_string()]);
    h
}

/// The models a run uses, and where it runs.
struct Pipeline {
    model: Model<f64>,
    vqgan: Option<LoadedVqgan>,
    session: Option<EncryptedSession>,
    batch: usize,
    /// The backend and adapter each row names.
    backend: [String; 2],
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
    ) -> Result<(Array4<f64>, Vec<usize>, Vec<(usize, String)>, f64), PipelineError> {
        if let Some(stored) = &data.latents {
            let views: Vec<_> = indices.iter().map(|&i| stored.slice(s![i, .., .., ..])).collect();
            let x = ndarray::stack(Axis(0), &views).map_err(|e| PipelineError::Refused(e.to_string()))?;
            return Ok((x.mapv(f64::from), indices.to_vec(), Vec::new(), 0.0));
        }
        let vqgan = self
            .vqgan
            .as_ref()
            .ok_or_else(|| PipelineError::Config("--vqgan is needed to encode images".into()))?;
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
        let x = ndarray::stack(Axis(0), &views).map_err(|e| PipelineError::Refused(e.to_string()))?;
        let z = vqgan.encode(x, false).map_err(PipelineError::Refused)?;
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
    observer: &dyn Observer,
) -> Result<(), PipelineError> {
    for chunk in pending.chunks(pipeline.batch) {
        let (x, kept, mut failed, encode_s) = pipeline.latents(data, chunk)?;
        let start = Instant::now();
        let (x, kept, plain) = if kept.is_empty() {
            (x, kept, Array2::zeros((0, 0)))
        } else {
            let plain = pipeline
                .model
                .forward(x.view())
                .map_err(|e| PipelineError::Refused(e.to_string()))?;
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
            .map_err(|e| PipelineError::Refused(e.to_string()))?;
        if !kept.is_empty() {
            let n = kept.len() as f64;
            let shared = [encode_s / n, plain_s / n];
            let (he, seconds) = match &pipeline.session {
                Some(session) => {
                    let run = session.logits_apart(&x, observer)?;
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
                    row.extend(pipeline.backend.iter().cloned());
                    row
                })
                .collect();
            results
                .append(&rows)
                .map_err(|e| PipelineError::Refused(e.to_string()))?;
        }
        observer.event(Event::ImagesScored { images: chunk.len() });
    }
    Ok(())
}

/// Scores the data set as `args` say (resuming in [`ScoreConfig::out_dir`]),
/// telling `observer` how it goes, and returns the summary also written
/// to `summary.json`.
///
/// # Errors
/// Unusable data set, models or output folder; evaluation failures.
pub fn score(args: &ScoreConfig, observer: &dyn Observer) -> Result<Value, PipelineError> {
    if args.server.is_some() && !args.encrypted {
        return Err(PipelineError::Config(
            "a server evaluates ciphertexts: scoring through one needs the encrypted run".into(),
        ));
    }
    let out = args.out_dir();
    let selection = load_dataset(args)?;
    let data = &selection.data;
    let chosen = Chosen::resolve(args.backend, args.adapter.as_deref(), observer)?;
    let (model, planned) = if args.encrypted {
        let planned = Planned::load(&args.model, &args.model_options, Some(&args.preset), args.batch)?;
        (planned.model.clone(), Some(planned))
    } else {
        (crate::nn::fold(&load_model(&args.model, &args.model_options)?), None)
    };
    let classes = model.spec().classes().to_vec();
    let labels = data.labels_for(&classes).map_err(|e| PipelineError::Input {
        path: args.root.display().to_string(),
        reason: e.to_string(),
    })?;
    let model_name = model.spec().to_string();
    let vqgan = match (&data.kind, &args.vqgan) {
        (DatasetKind::Latents, _) => None,
        (_, None) => {
            return Err(PipelineError::Config(
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
            return Err(PipelineError::Refused(format!(
                "the VQGAN makes {}x{side}x{side} latents, the model reads {want:?}",
                vq.config().encoder_out_channels()
            )));
        }
    }
    let preset = planned.as_ref().and_then(|p| p.params.name().map(str::to_string));
    let split = split_text(&selection.split)?;
    let identity = run_identity(
        args,
        &classes,
        &model_name,
        preset.as_deref(),
        &split,
        selection.split.len(),
    )?;
    let _writer = lock_output(&out)?;
    claim_output(&out, &identity, &split)?;
    let header = header(&classes, args.encrypted);
    let open = |file: &str, header: &[String]| {
        let path = out.join(file);
        let (log, rows) = ResultsLog::open(&path, header).map_err(|e| PipelineError::Refused(e.to_string()))?;
        Ok::<_, PipelineError>((log, unique_rows(&path, rows)?))
    };
    let (mut results, done) = open(RESULTS_FILE, &header)?;
    let (mut failures, failed) = open(FAILED_FILE, &failed_header())?;
    let finished: std::collections::HashSet<&str> = done.iter().chain(failed.iter()).map(|r| r[0].as_str()).collect();
    let pending: Vec<usize> = (0..data.samples.len())
        .filter(|&i| !finished.contains(data.samples[i].name.as_str()))
        .collect();
    let session = planned
        .map(|p| open_session(args, p, &chosen, pending.len(), observer))
        .transpose()?;
    let (backend, adapter) = session
        .as_ref()
        .map_or_else(|| chosen.describe(), EncryptedSession::backend);
    log_session(&out, &selection, &backend, adapter.as_deref(), pending.len())?;
    // An encrypted run takes as many images at a time as its sets in
    // lockstep hold.
    let batch = session
        .as_ref()
        .map_or(SCORE_BATCH, |s| s.plan().batch() * s.lockstep());
    observer.event(Event::ScoringStarted {
        model: &model_name,
        images: data.samples.len(),
        done_before: data.samples.len() - pending.len(),
        to_go: pending.len(),
        encrypted: args.encrypted,
        backend: &backend,
    });
    let pipeline = Pipeline {
        model,
        vqgan,
        session,
        batch,
        backend: [backend.clone(), adapter.unwrap_or_default()],
    };
    score_pending(
        &pipeline,
        data,
        &labels,
        &pending,
        &mut results,
        &mut failures,
        observer,
    )?;
    let session = pipeline.session.as_ref();
    let server = session
        .and_then(EncryptedSession::remote)
        .map(RemoteEvaluation::describe);
    summarize(&SummaryInput {
        out: &out,
        identity: &identity,
        backend: &backend,
        server: server.as_ref(),
        keygen_seconds: session.and_then(|s| s.keygen_seconds),
        apart: session.map_or(Apart::NotEncrypted, |s| Apart::Range(&s.range)),
        merged: None,
    })
}

/// The encrypted session for `planned` with `to_go` images ahead: keys
/// from the cache, evaluation here on `chosen`, or on the server
/// `args.server` names (its keys registered there; evaluation keys held
/// compact here, since only encryption uses them).
fn open_session(
    args: &ScoreConfig,
    planned: Planned,
    chosen: &Chosen,
    to_go: usize,
    observer: &dyn Observer,
) -> Result<EncryptedSession, PipelineError> {
    let sets = to_go.div_ceil(planned.plan.batch());
    let mut memory = EvalMemory::resolve(
        args.key_memory,
        args.lockstep,
        &planned.params,
        &planned.plan,
        sets,
        observer,
    );
    memory.weights = args.weight_memory;
    if args.server.is_some() {
        memory.keys = crate::ckks::KeyMemory::Compact;
    }
    let mut session = EncryptedSession::open(&args.model, planned, chosen.clone(), memory)?;
    if let Some(config) = &args.server {
        let remote =
            RemoteEvaluation::connect(config, &args.model, &session.key_dir, session.params(), session.plan())?;
        session.evaluate_remotely(remote);
    }
    Ok(session)
}
