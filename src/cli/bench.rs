//! `bench`: encrypted inference time per image across models, latent sizes
//! and backends (the paper's figure 5a), with the plaintext time of the same
//! models. Weights are random of realistic size: the time of a plan does not
//! depend on the weights' values. Key generation is timed apart and never
//! counted in the inference time.

use super::backend::Chosen;
use super::infer::key_switches_per_image;
use super::memory::{available_memory, EvalMemory, KeyMemoryChoice, WeightMemoryArg};
use super::progress::{bar, Stderr};
use super::{print_json, CliError};
use crate::backend::gpu::GpuWork;
use crate::he_nn::plan_for;
use crate::nn::spec::NIH15;
use crate::nn::{random_folded_model, Arch, LatentShape, Model, ModelSpec, NnError};
use crate::pipeline::score::median;
use crate::pipeline::BackendKind;
use crate::pipeline::{EncryptedSession, Planned, Silent, StageSeconds};
use crate::report::{time_vs_latent_png, Series};
use clap::Args;
use ndarray::Array4;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Comma-separated architectures, `-se` for the SE block (resnet20,resnet20-se,lenet5,...).
    #[arg(long, default_value = "resnet20,resnet20-se")]
    models: String,
    /// Comma-separated latent sizes: f2, f4, f8, f16 (the paper's) or CxHxW.
    #[arg(long, default_value = "f8")]
    latents: String,
    /// Comma-separated backends: gpu, cpu.
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// GPU adapter name substring.
    #[arg(long)]
    adapter: Option<String>,
    /// Parameter preset, or `auto` (the smallest that fits).
    #[arg(long, default_value = "auto")]
    preset: String,
    /// Encrypted runs per combination (the median is reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Images evaluated together in each run (as `run --lockstep`); the
    /// times are then per image, amortized. 1 (the default) times one
    /// image alone.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    lockstep: u16,
    /// Output folder (bench.csv, bench.json, he_time_vs_latent.png).
    #[arg(long)]
    out: PathBuf,
    /// Print bench.json's content as one JSON object.
    #[arg(long)]
    json: bool,
    /// On the GPU, time every kernel of the last run with the adapter's
    /// timestamps (TIMESTAMP_QUERY) and write profile.json: GPU time per
    /// kernel entry point beside the wall and host CPU time, per image.
    #[arg(long)]
    profile: bool,
    #[command(flatten)]
    weights: WeightMemoryArg,
}

/// One combination's outcome; also one row of `bench.csv` (a column per
/// field, in this order, empty where a value is absent; the GPU work and
/// the profile go to the JSON reports only).
#[derive(serde::Serialize)]
struct Row {
    model: String,
    latent: String,
    backend: String,
    status: String,
    preset: Option<String>,
    levels: Option<usize>,
    key_switches: Option<f64>,
    keygen_s: Option<f64>,
    encrypt_s: Option<f64>,
    infer_s: Option<f64>,
    decrypt_s: Option<f64>,
    plain_ms: Option<f64>,
    runs: usize,
    lockstep: usize,
    /// GPU work per image of the last run (steady state from the second run on).
    #[serde(skip)]
    gpu_work: Option<GpuWork>,
    /// The kernel profile of the last run (`--profile`, GPU rows).
    #[serde(skip)]
    profile: Option<Value>,
}

fn parse_model(name: &str) -> Result<(Arch, bool), CliError> {
    let (arch, se) = match name.strip_suffix("-se") {
        Some(base) => (base, true),
        None => (name, false),
    };
    let arch: Arch = arch
        .parse()
        .map_err(|e: NnError| CliError::Usage(format!("--models: {e}")))?;
    Ok((arch, se))
}

fn parse_latent(name: &str) -> Result<LatentShape, CliError> {
    name.parse()
        .map_err(|e: NnError| CliError::Usage(format!("--latents: {e}")))
}

/// Median milliseconds of one plaintext forward pass of one image.
fn plain_ms(model: &Model<f64>, x: &Array4<f64>, runs: usize) -> Option<f64> {
    let times = (0..runs.max(3))
        .map(|_| {
            let start = Instant::now();
            let _ = model.forward(x.view());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median(times)
}

/// CPU seconds this process has used so far (user and system).
fn process_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` through the pointer, which
    // points at one; on failure the zeroed value stands.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Runs one combination.
fn bench_one(args: &BenchArgs, model_name: &str, latent_name: &str, backend: &str) -> Result<Row, CliError> {
    let (arch, se) = parse_model(model_name)?;
    let latent = parse_latent(latent_name)?;
    let mut row = Row {
        model: model_name.into(),
        latent: latent_name.into(),
        backend: backend.into(),
        status: "ok".into(),
        preset: None,
        levels: None,
        key_switches: None,
        keygen_s: None,
        encrypt_s: None,
        infer_s: None,
        decrypt_s: None,
        plain_ms: None,
        runs: 0,
        lockstep: usize::from(args.lockstep),
        gpu_work: None,
        profile: None,
    };
    let classes = NIH15.iter().map(|c| c.to_string()).collect();
    let model = match ModelSpec::new(arch, se, classes, latent).and_then(|spec| random_folded_model(&spec, 1)) {
        Ok(model) => model,
        Err(e) => {
            row.status = format!("not defined at this latent: {e}");
            return Ok(row);
        }
    };
    let [c, h, w] = latent.dims();
    let mut rng = ChaCha20Rng::from_entropy();
    let x = Array4::from_shape_simple_fn((1, c, h, w), || rng.gen_range(-1.0..1.0));
    row.plain_ms = plain_ms(&model, &x, args.runs as usize);
    let preset = Some(args.preset.as_str()).filter(|p| *p != "auto");
    let (params, plan) = match plan_for(&model, preset, 1) {
        Ok(p) => p,
        Err(e) => {
            row.status = format!("does not fit: {e}");
            return Ok(row);
        }
    };
    row.preset = params.name().map(str::to_string);
    row.levels = Some(plan.levels());
    row.key_switches = Some(key_switches_per_image(&plan, row.lockstep));
    let key_memory = KeyMemoryChoice::Auto.resolve(&params, &plan);
    let needed =
        plan.key_levels().memory_bytes(&params, key_memory) + row.lockstep * plan.working_memory_bytes(params.n());
    if let Some(available) = available_memory().filter(|&a| (needed as u64) > a) {
        row.status = format!(
            "skipped: keys and working memory need {:.1} GB, {:.1} GB available",
            needed as f64 / 1e9,
            available as f64 / 1e9
        );
        return Ok(row);
    }
    let chosen = match backend {
        "cpu" => Chosen::Cpu,
        _ => Chosen::resolve(Some(BackendKind::Gpu), args.adapter.as_deref(), &Stderr::notes())?,
    };
    let profiled = match &chosen {
        Chosen::Gpu(ctx) if args.profile => Some(ctx.clone()),
        _ => None,
    };
    let session = EncryptedSession::generate(
        Planned { model, params, plan },
        chosen,
        EvalMemory {
            keys: key_memory,
            lockstep: row.lockstep,
            weights: args.weights.bytes(),
        },
    );
    row.keygen_s = session.keygen_seconds;
    let together = Array4::from_shape_simple_fn((row.lockstep, c, h, w), || rng.gen_range(-1.0..1.0));
    let mut stages = Vec::new();
    for run in 0..args.runs {
        let profiled = profiled.as_ref().filter(|_| run + 1 == args.runs);
        if let Some(ctx) = profiled {
            ctx.start_profile()?;
        }
        let before = session.gpu_work().unwrap_or_default();
        let (wall, cpu) = (Instant::now(), process_cpu_seconds());
        stages.push(session.logits(&together, &Silent)?.1);
        let per_image = |v: f64| v / row.lockstep as f64;
        if let Some(ctx) = profiled {
            let kernels = ctx.finish_profile()?;
            let gpu_ms: f64 = kernels.values().map(|k| k.gpu_ms).sum();
            row.profile = Some(json!({
                "model": row.model, "latent": row.latent, "lockstep": row.lockstep,
                "adapter": ctx.adapter().name,
                "wall_s_per_image": per_image(wall.elapsed().as_secs_f64()),
                "infer_s_per_image": per_image(stages.last().map_or(0.0, |s| s.infer)),
                "host_cpu_s_per_image": per_image(process_cpu_seconds() - cpu),
                "gpu_s_per_image": per_image(gpu_ms / 1e3),
                "kernels": kernels.iter().map(|(name, k)| (name.clone(), json!({
                    "dispatches_per_image": k.dispatches as f64 / row.lockstep as f64,
                    "gpu_ms_per_image": per_image(k.gpu_ms),
                }))).collect::<serde_json::Map<_, _>>(),
            }));
        }
        row.gpu_work = session
            .gpu_work()
            .map(|after| after.since(&before).per(row.lockstep as u64));
    }
    row.runs = stages.len();
    let per_image =
        |stage: fn(&StageSeconds) -> f64| median(stages.iter().map(|s| stage(s) / row.lockstep as f64).collect());
    row.encrypt_s = per_image(|s| s.encrypt);
    row.infer_s = per_image(|s| s.infer);
    row.decrypt_s = per_image(|s| s.decrypt);
    Ok(row)
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or(String::new(), ToString::to_string)
}

/// `bench.csv`: a header of the [`Row`] field names, then one line per row.
fn csv_text(rows: &[Row]) -> Result<String, CliError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer
            .serialize(row)
            .map_err(|e| CliError::Usage(format!("bench.csv: {e}")))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| CliError::Usage(format!("bench.csv: {e}")))?;
    String::from_utf8(bytes).map_err(|e| CliError::Usage(format!("bench.csv: {e}")))
}

fn row_json(r: &Row) -> Value {
    json!({
        "model": r.model, "latent": r.latent, "backend": r.backend, "status": r.status,
        "preset": r.preset, "levels": r.levels, "key_switches": r.key_switches,
        "seconds": {"keygen": r.keygen_s, "encrypt": r.encrypt_s, "infer_per_image": r.infer_s, "decrypt": r.decrypt_s},
        "plain_ms_per_image": r.plain_ms, "runs": r.runs, "lockstep": r.lockstep,
        "gpu_work_per_image": r.gpu_work,
    })
}

fn write(path: &Path, text: &str) -> Result<(), CliError> {
    std::fs::write(path, text).map_err(|source| CliError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Runs `bench`.
pub fn run(args: &BenchArgs) -> Result<(), CliError> {
    let split = |s: &str| {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let (models, latents, backends) = (split(&args.models), split(&args.latents), split(&args.backend));
    for m in &models {
        parse_model(m)?;
    }
    for l in &latents {
        parse_latent(l)?;
    }
    if let Some(b) = backends.iter().find(|b| !["cpu", "gpu"].contains(&b.as_str())) {
        return Err(CliError::Usage(format!("--backend: `{b}` is not gpu or cpu")));
    }
    std::fs::create_dir_all(&args.out).map_err(|source| CliError::Io {
        path: args.out.display().to_string(),
        source,
    })?;
    let mut rows = Vec::new();
    let progress = bar(
        (models.len() * latents.len() * backends.len()) as u64,
        "configurations",
        args.json,
    );
    for model in &models {
        for latent in &latents {
            for backend in &backends {
                if !args.json {
                    progress.suspend(|| eprintln!("{model} at {latent} on the {backend} ..."));
                }
                let row = bench_one(args, model, latent, backend)?;
                if !args.json {
                    progress.suspend(|| {
                        eprintln!(
                            "  {}: infer {} s/image (keygen {} s), plaintext {} ms",
                            row.status,
                            opt(&row.infer_s.map(|s| (s * 1000.0).round() / 1000.0)),
                            opt(&row.keygen_s.map(|s| (s * 10.0).round() / 10.0)),
                            opt(&row.plain_ms.map(|s| (s * 100.0).round() / 100.0)),
                        )
                    });
                }
                progress.inc(1);
                rows.push(row);
                write(&args.out.join("bench.csv"), &csv_text(&rows)?)?;
            }
        }
    }
    progress.finish_and_clear();
    let series: Vec<Series> = models
        .iter()
        .flat_map(|m| backends.iter().map(move |b| (m, b)))
        .map(|(m, b)| Series {
            name: format!("{m} {b}"),
            seconds: latents
                .iter()
                .map(|l| {
                    rows.iter()
                        .find(|r| &r.model == m && &r.backend == b && &r.latent == l)
                        .and_then(|r| r.infer_s)
                })
                .collect(),
        })
        .collect();
    let figure = args.out.join("he_time_vs_latent.png");
    let plotted = series.iter().any(|s| s.seconds.iter().any(Option::is_some));
    if plotted {
        time_vs_latent_png(&figure, "Encrypted inference time per image", &latents, &series)
            .map_err(|e| CliError::Usage(e.to_string()))?;
    }
    let report = json!({
        "results": rows.iter().map(row_json).collect::<Vec<_>>(),
        "csv": args.out.join("bench.csv").display().to_string(),
        "figure": plotted.then(|| figure.display().to_string()),
        "threads": rayon::current_num_threads(),
    });
    write(&args.out.join("bench.json"), &format!("{report:#}\n"))?;
    if args.profile {
        let profiles: Vec<&Value> = rows.iter().filter_map(|r| r.profile.as_ref()).collect();
        write(&args.out.join("profile.json"), &format!("{:#}\n", json!(profiles)))?;
    }
    if args.json {
        print_json(&report);
    } else {
        println!(
            "{}",
            std::fs::read_to_string(args.out.join("bench.csv")).unwrap_or_default()
        );
        println!("results in {}", args.out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_csv_has_the_field_names_and_quotes_what_needs_it() {
        let row = Row {
            model: "lenet5".into(),
            latent: "f8".into(),
            backend: "cpu".into(),
            status: "not defined at this latent: 5x5, \"conv1\"".into(),
            preset: None,
            levels: Some(7),
            key_switches: None,
            keygen_s: Some(1.5),
            encrypt_s: None,
            infer_s: None,
            decrypt_s: None,
            plain_ms: Some(0.25),
            runs: 2,
            lockstep: 1,
            gpu_work: Some(GpuWork::default()),
            profile: Some(json!({"kernels": {}})),
        };
        assert_eq!(
            csv_text(&[row]).unwrap(),
            "model,latent,backend,status,preset,levels,key_switches,keygen_s,encrypt_s,infer_s,decrypt_s,plain_ms,runs,lockstep\n\
             lenet5,f8,cpu,\"not defined at this latent: 5x5, \"\"conv1\"\"\",,7,,1.5,,,,0.25,2,1\n"
        );
    }
}
