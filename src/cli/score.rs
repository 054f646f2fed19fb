//! `score`: a whole test set end to end through the scorer
//! ([`crate::pipeline::score`]): the flags, the summary printed, and the
//! exit status of its checks.

use super::backend::DeviceArgs;
use super::infer::PlanChoice;
use super::memory::MemoryArgs;
use super::model_args::ModelArgs;
use super::progress::Stderr;
use super::{print_json, CliError};
use crate::data::dataset::UncertainPolicy;
use crate::pipeline::score::{self as scorer, DatasetLayout, ScoreConfig, Shard, SlurmArray, FAILED_FILE};
use crate::pipeline::RemoteConfig;
use clap::Args;
use serde_json::Value;
use std::path::PathBuf;

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
    /// With --encrypted: evaluate the ciphertexts on the `latent-he serve`
    /// at this base URL (http:// or https://) instead of here. The keys
    /// (cached as for a local run) are registered there on first use; the
    /// secret key, encryption and decryption stay here.
    #[arg(long, requires = "encrypted")]
    server: Option<String>,
    /// With --server: bearer token (else $LATENT_HE_TOKEN).
    #[arg(long, env = "LATENT_HE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// With --server: a PEM certificate to trust besides the system's.
    #[arg(long, requires = "server")]
    ca_cert: Option<PathBuf>,
    /// With --server: the model's name there (`GET /v1/models`; default:
    /// the model file's stem).
    #[arg(long, requires = "server")]
    server_model: Option<String>,
    #[command(flatten)]
    choice: PlanChoice,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    memory: MemoryArgs,
    /// Skip the first K images of the split (before `--limit`): another
    /// machine can score another part of the same run into its own folder,
    /// and `latent-he merge` folds the folders into one.
    #[arg(long, default_value_t = 0)]
    offset: usize,
    /// Score only the first N images of the split (after `--offset`).
    #[arg(long)]
    limit: Option<usize>,
    #[command(flatten)]
    shard: ShardArgs,
    /// Output folder (results.csv, failed.csv, summary.json, summary.md,
    /// roc.png); a shard writes into OUT/shard-I-of-N. One `score` at a
    /// time writes into a folder: a second one is refused while the first
    /// runs (exit status 4).
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

/// Which shard of the split to score: `--shard`, else what Slurm or
/// Kubernetes tell the job.
#[derive(Args, Debug)]
pub struct ShardArgs {
    /// Score the I-th (from 0) of N contiguous parts of the split into
    /// OUT/shard-I-of-N; `latent-he merge` folds the parts. Default: from
    /// a Slurm job array, else from a Kubernetes Indexed Job with --shards.
    #[arg(long, value_name = "I/N", value_parser = parse_shard, conflicts_with_all = ["offset", "limit"])]
    shard: Option<Shard>,
    /// The number of shards when JOB_COMPLETION_INDEX gives the index (a
    /// Kubernetes Indexed Job's `completions`).
    #[arg(long, value_name = "N", env = "LATENT_HE_SHARDS")]
    shards: Option<usize>,
    /// A Slurm array task's id (the shard is (ID - MIN) / STEP of COUNT).
    #[arg(long, value_name = "ID", env = "SLURM_ARRAY_TASK_ID")]
    slurm_array_task_id: Option<usize>,
    /// The number of tasks in the Slurm array.
    #[arg(long, value_name = "COUNT", env = "SLURM_ARRAY_TASK_COUNT")]
    slurm_array_task_count: Option<usize>,
    /// The lowest task id of the Slurm array (default 0).
    #[arg(long, value_name = "MIN", env = "SLURM_ARRAY_TASK_MIN")]
    slurm_array_task_min: Option<usize>,
    /// The step between the Slurm array's task ids (default 1).
    #[arg(long, value_name = "STEP", env = "SLURM_ARRAY_TASK_STEP")]
    slurm_array_task_step: Option<usize>,
    /// A Kubernetes Indexed Job's completion index (with --shards).
    #[arg(long, value_name = "INDEX", env = "JOB_COMPLETION_INDEX")]
    job_completion_index: Option<usize>,
}

impl ShardArgs {
    /// The shard these flags (or the scheduler's variables) name.
    fn resolve(&self) -> Result<Option<Shard>, CliError> {
        if self.shard.is_some() {
            return Ok(self.shard);
        }
        let slurm = SlurmArray {
            task_id: self.slurm_array_task_id,
            task_count: self.slurm_array_task_count,
            task_min: self.slurm_array_task_min,
            task_step: self.slurm_array_task_step,
        };
        Ok(Shard::from_scheduler(slurm, self.job_completion_index, self.shards)?)
    }
}

fn parse_shard(s: &str) -> Result<Shard, String> {
    Shard::parse(s).map_err(|e| e.to_string())
}

fn parse_drift(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a finite non-negative number")),
    }
}

/// Runs `score`: prints the summary, then fails (exit status 1) on
/// images that could not be scored (unless `--allow-failed`) and on a
/// drift past `--max-drift`.
pub fn run(args: &ScoreArgs) -> Result<(), CliError> {
    let observer = Stderr::scoring(args.json);
    let config = config(args)?;
    let summary = scorer::score(&config, &observer);
    observer.finish();
    let summary = summary?;
    let out = config.out_dir();
    print_summary(&summary, &out, args.json);
    verdict(args, &out, &summary)
}

/// Prints `summary` as JSON, or `out/summary.md` and the folder.
pub fn print_summary(summary: &Value, out: &std::path::Path, json: bool) {
    if json {
        print_json(summary);
    } else {
        let md = std::fs::read_to_string(out.join("summary.md")).unwrap_or_default();
        println!("{md}");
        println!("results: {}", out.display());
    }
}

/// The scorer's configuration these flags give.
///
/// # Errors
/// Class names that do not parse (a usage error).
fn config(args: &ScoreArgs) -> Result<ScoreConfig, CliError> {
    Ok(ScoreConfig {
        dataset: match args.dataset {
            DatasetChoice::Nih => DatasetLayout::Nih,
            DatasetChoice::Chexpert => DatasetLayout::Chexpert,
            DatasetChoice::Latents => DatasetLayout::Latents,
        },
        root: args.root.clone(),
        split: args.split.clone(),
        csv: args.csv.clone(),
        uncertain: match args.uncertain {
            Uncertain::Zeros => UncertainPolicy::Zeros,
            Uncertain::Ones => UncertainPolicy::Ones,
        },
        model: args.model.model.clone(),
        model_options: args.model.hints.options()?,
        vqgan: args.vqgan.clone(),
        vqgan_preset: args.vqgan_preset.clone(),
        encrypted: args.encrypted,
        server: args.server.as_ref().map(|url| RemoteConfig {
            url: url.clone(),
            token: args.token.clone(),
            ca_cert: args.ca_cert.clone(),
            model: args.server_model.clone(),
        }),
        preset: args.choice.preset.clone(),
        batch: args.choice.batch,
        backend: args.device.backend.map(Into::into),
        adapter: args.device.adapter.clone(),
        key_memory: args.memory.key_memory.into(),
        lockstep: usize::from(args.memory.lockstep),
        weight_memory: args.memory.weights.bytes(),
        offset: args.offset,
        limit: args.limit,
        shard: args.shard.resolve()?,
        out: args.out.clone(),
    })
}

/// The checks a summary must pass: no failed image unless allowed, no
/// metric of the encrypted run further than `--max-drift` from the
/// plaintext one.
fn verdict(args: &ScoreArgs, out: &std::path::Path, summary: &Value) -> Result<(), CliError> {
    let failed = summary["failed"].as_array().map_or(0, Vec::len);
    if failed > 0 && !args.allow_failed {
        return Err(CliError::CheckFailed(format!(
            "{failed} image(s) could not be scored (see {}); pass --allow-failed to accept that",
            out.join(FAILED_FILE).display()
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
