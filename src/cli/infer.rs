//! `plan`, `infer` (the server step) and `run` (everything in one process,
//! encrypted and plaintext side by side).

use super::backend::DeviceArgs;
use super::memory::{key_memory_name, peak_memory_bytes, MemoryArgs, WeightMemoryArg};
use super::model_args::{parse_batch, ModelArgs};
use super::predict::{finite_logits, sigmoid};
use super::progress::Stderr;
use super::{print_json, round3, CliError};
use crate::ckks::gpu_cost::{GpuCost, GpuCostModel, DEVICE_PROFILES};
use crate::ckks::serialize::{load_ciphertexts, load_public_keys_as, public_keys_params, save_ciphertexts};
use crate::ckks::Params;
use crate::he_nn::{Plan, PlanGpuCost};
use crate::pipeline::keys::PUBLIC_KEY_FILE;
pub use crate::pipeline::plan_report::{describe_plan, key_switches_per_image};
use crate::pipeline::server::binding_beside;
use crate::pipeline::{model_fingerprint, read_latents, EncryptedSession, LogitsApart, Planned, Server, StageSeconds};
use clap::Args;
use ndarray::{Array2, Array4};
use serde_json::json;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// The parameter set and batch a plan is made for.
#[derive(Args, Debug)]
pub struct PlanChoice {
    /// Parameter preset, or `auto`: the smallest 128-bit preset that fits.
    #[arg(long, default_value = "auto")]
    pub preset: String,
    /// Images sharing one set of ciphertexts.
    #[arg(long, default_value_t = 1, value_parser = parse_batch)]
    pub batch: usize,
}

impl PlanChoice {
    /// Loads, folds and plans `model` as chosen.
    pub fn plan(&self, model: &ModelArgs) -> Result<Planned, CliError> {
        Ok(Planned::load(
            &model.model,
            &model.hints.options()?,
            Some(&self.preset),
            self.batch,
        )?)
    }
}

/// Arguments of `plan`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    choice: PlanChoice,
    #[command(flatten)]
    weights: WeightMemoryArg,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Arguments of `infer`.
#[derive(Args, Debug)]
pub struct InferArgs {
    /// The public key set (public.key of a `keygen --model` directory); no
    /// secret key is read or needed.
    #[arg(long)]
    public_key: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Encrypted latents (`encrypt` with keys made for this model).
    #[arg(long)]
    input: PathBuf,
    /// Encrypted logits.
    #[arg(long)]
    out: PathBuf,
    /// Images per set of ciphertexts, as the keys were made (`keygen --batch`).
    #[arg(long, default_value_t = 1, value_parser = parse_batch)]
    batch: usize,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    memory: MemoryArgs,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Arguments of `run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Latents: a float32 or float64 .npy array, C x H x W or B x C x H x W.
    #[arg(long)]
    input: PathBuf,
    /// Also run encrypted: keygen (cached per model and preset), encrypt, infer, decrypt.
    #[arg(long)]
    encrypted: bool,
    #[command(flatten)]
    choice: PlanChoice,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    memory: MemoryArgs,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// The plan's predicted GPU work for one image set, per named device
/// profile ([`DEVICE_PROFILES`]), with a store of `weight_budget` bytes of
/// weight plaintexts ([`Plan::gpu_cost`]): the dispatches, key switches,
/// key bytes and plaintext uploads of each top-level step and in total for
/// every image after the first, the first image's total, the bytes of
/// weights kept resident, and the predicted seconds
/// ([`GpuCost::seconds_on`]). A profile whose binding the cost model does
/// not cover says why instead.
///
/// # Errors
/// Evaluator refusals from running the plan on the cost model.
pub fn gpu_prediction(params: &Arc<Params>, plan: &Plan, weight_budget: u64) -> Result<serde_json::Value, CliError> {
    let mut profiles = serde_json::Map::new();
    // Profiles with one binding size predict the same work: run once each.
    let mut cost_by_binding: Vec<(u64, PlanGpuCost)> = Vec::new();
    for device in &DEVICE_PROFILES {
        let model = match GpuCostModel::new(params, device.binding_bytes) {
            Ok(model) => model,
            Err(e) => {
                profiles.insert(device.name.into(), json!({"device": device, "error": e.to_string()}));
                continue;
            }
        };
        let cost = match cost_by_binding.iter().find(|(b, _)| *b == device.binding_bytes) {
            Some((_, cost)) => cost.clone(),
            None => {
                let cost = plan.gpu_cost(params, model, 1, weight_budget)?;
                cost_by_binding.push((device.binding_bytes, cost.clone()));
                cost
            }
        };
        let total = cost.steps.iter().fold(GpuCost::default(), |sum, s| sum.plus(&s.cost));
        let rows: Vec<_> = cost
            .steps
            .iter()
            .map(|s| {
                let mut row = json!(s);
                row["seconds"] = json!(s.cost.seconds_on(device));
                row
            })
            .collect();
        profiles.insert(
            device.name.into(),
            json!({
                "device": device,
                "weight_budget_bytes": weight_budget,
                "resident_weight_bytes": cost.resident_weight_bytes,
                "first_image": {"total": cost.first, "seconds": cost.first.seconds_on(device)},
                "total": total,
                "seconds": total.seconds_on(device),
                "steps": rows,
            }),
        );
    }
    Ok(serde_json::Value::Object(profiles))
}

/// Runs `plan`.
pub fn plan(args: &PlanArgs) -> Result<(), CliError> {
    let planned = args.choice.plan(&args.model)?;
    let mut report = describe_plan(&planned.params, &planned.plan);
    report["gpu"] = gpu_prediction(&planned.params, &planned.plan, args.weights.bytes())?;
    // The clamp the client applies before encrypting (null: none).
    report["input_clip"] = json!(planned.model.spec().input_clip().map(f64::from));
    if args.json {
        print_json(&report);
    } else {
        println!("model: {}", planned.model.spec());
        println!(
            "preset {}: {} of {} levels, {} Galois keys, {} key switches for one image set alone, {} per image \
             in groups of {} sets, public key {:.1} MiB",
            report["preset"].as_str().unwrap_or("literal"),
            report["levels_needed"],
            report["levels_available"],
            report["galois_keys"],
            report["key_switches"],
            report["key_switches_per_image"],
            report["sets_per_output"],
            report["public_key_bytes"].as_f64().unwrap_or(0.0) / (1 << 20) as f64
        );
        for row in planned.plan.layers(planned.plan.start_level()) {
            println!(
                "  {:<28} level {:>3} -> {:>3}  {:>4} key switches{}",
                row.name,
                row.level_in,
                row.level_out,
                row.key_switches,
                if row.sets_in != row.sets {
                    format!(" per set moved, {} sets into one", row.sets / row.sets_in)
                } else if row.sets > 1 {
                    format!(", shared by {} sets", row.sets)
                } else {
                    String::new()
                }
            );
        }
        for (name, gpu) in report["gpu"].as_object().into_iter().flatten() {
            match gpu["error"].as_str() {
                Some(e) => println!("gpu {name}: {e}"),
                None => println!(
                    "gpu {name}: {} dispatches, {:.2} GB of keys read, predicted {:.3} s for one image set",
                    gpu["total"]["dispatches"],
                    gpu["total"]["key_bytes"].as_f64().unwrap_or(0.0) / 1e9,
                    gpu["seconds"].as_f64().unwrap_or(0.0)
                ),
            }
        }
    }
    Ok(())
}

/// Runs `infer`: reads only the public key set, the model and the
/// encrypted latents.
pub fn infer(args: &InferArgs) -> Result<(), CliError> {
    if args.public_key.is_dir() {
        return Err(CliError::Input {
            path: args.public_key.display().to_string(),
            reason: format!(
                "a directory; --public-key takes the key file ({})",
                args.public_key.join(PUBLIC_KEY_FILE).display()
            ),
        });
    }
    crate::bounded::probe_writable(&args.out).map_err(|source| CliError::Io {
        path: args.out.display().to_string(),
        source,
    })?;
    let params = public_keys_params(&args.public_key)?;
    let model = crate::nn::fold(&args.model.load()?);
    let fingerprint = model_fingerprint(&args.model.model)?;
    let server = Server::new(
        model,
        params.clone(),
        args.batch,
        Some(fingerprint),
        args.memory.weights.bytes(),
    )
    .map_err(|e| CliError::Input {
        path: args.input.display().to_string(),
        reason: e.to_string(),
    })?;
    let plan = server.plan();
    let batch = plan.batch();
    let file = load_ciphertexts(&args.input, &params)?;
    let images = server.check_input(&file, &args.input)?;
    if let Some(binding) = binding_beside(&args.public_key, &params)? {
        server.check_binding(&binding, &args.public_key)?;
    }
    let memory = args.memory.resolve(&params, plan, images.div_ceil(batch));
    let keys = Arc::new(load_public_keys_as(&args.public_key, memory.keys)?);
    server.check_keys(&keys, &args.public_key)?;
    let chosen = args.device.resolve()?;
    let observer = Stderr::evaluation_bar(args.json, images.div_ceil(batch));
    let (out, seconds) = server.evaluate(
        &chosen,
        &keys,
        &OnceLock::new(),
        &file,
        images,
        memory.lockstep,
        &observer,
    )?;
    observer.finish();
    save_ciphertexts(&args.out, &out, &params)?;
    let total: f64 = seconds.iter().sum();
    let (backend, adapter) = chosen.describe();
    if args.json {
        print_json(&json!({
            "out": args.out.display().to_string(),
            "images": images,
            "batch": batch,
            "seconds_per_image_amortized": round3(total / images.max(1) as f64),
            "backend": backend,
            "adapter": adapter,
            "preset": params.name(),
            "levels": plan.levels(),
            "key_switches_per_image": key_switches_per_image(plan, memory.lockstep),
            "key_memory": key_memory_name(memory.keys),
            "lockstep": memory.lockstep,
            "peak_memory_bytes": peak_memory_bytes(),
            "seconds": round3(total),
            "seconds_per_set": seconds.iter().map(|s| round3(*s)).collect::<Vec<_>>(),
        }));
    } else {
        println!(
            "{images} image(s) in {total:.2} s on the {backend}: encrypted logits in {}",
            args.out.display()
        );
    }
    Ok(())
}

fn rows(a: &Array2<f64>) -> Vec<Vec<f64>> {
    a.rows().into_iter().map(|r| r.to_vec()).collect()
}

/// Runs `run`.
pub fn run(args: &RunArgs) -> Result<(), CliError> {
    let planned = args.choice.plan(&args.model)?;
    let x: Array4<f64> = read_latents(&args.input)?;
    let latent = planned.model.spec().latent().dims();
    let (images, c, h, w) = x.dim();
    if [c, h, w] != latent {
        return Err(CliError::Input {
            path: args.input.display().to_string(),
            reason: format!("latents are {c}x{h}x{w}, the model reads {latent:?}"),
        });
    }
    let plain = planned.model.forward(x.view()).map_err(|e| CliError::Input {
        path: args.input.display().to_string(),
        reason: e.to_string(),
    })?;
    finite_logits(&plain, &args.input)?;
    let classes = planned.model.spec().classes().to_vec();
    if !args.encrypted {
        let probabilities = plain.mapv(sigmoid);
        if args.json {
            print_json(
                &json!({"classes": classes, "logits_plain": rows(&plain), "probabilities_plain": rows(&probabilities)}),
            );
        } else {
            for (i, row) in probabilities.outer_iter().enumerate() {
                println!("image {i} (plaintext; --encrypted for the encrypted run):");
                for (name, p) in classes.iter().zip(row) {
                    println!("  {name:<28} {p:.4}");
                }
            }
        }
        return Ok(());
    }
    let chosen = args.device.resolve()?;
    let sets = images.div_ceil(planned.plan.batch());
    let memory = args.memory.resolve(&planned.params, &planned.plan, sets);
    let session = EncryptedSession::open(&args.model.model, planned, chosen, memory)?;
    let LogitsApart {
        logits: he,
        seconds,
        peaks,
        apart,
    } = {
        let observer = Stderr::evaluation_bar(args.json, sets);
        let apart = session.logits_apart(&x, &observer)?;
        observer.finish();
        apart
    };
    let stages: StageSeconds = seconds.into_iter().sum();
    let (params, plan, keygen_s) = (session.params(), session.plan(), session.keygen_seconds);
    let (encrypt_s, infer_s, decrypt_s) = (stages.encrypt, stages.infer, stages.decrypt);
    let max_abs_error = he
        .iter()
        .zip(plain.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let (backend, adapter) = session.backend();
    let report = json!({
        "classes": classes,
        "logits_he": rows(&he),
        "logits_plain": rows(&plain),
        "probabilities_he": rows(&he.mapv(sigmoid)),
        "probabilities_plain": rows(&plain.mapv(sigmoid)),
        "max_abs_error": max_abs_error,
        "peaks": peaks,
        "value_bound": session.range.bound(),
        "encrypted_apart": apart,
        "seconds": {
            "keygen": keygen_s.map(round3),
            "encrypt": round3(encrypt_s),
            "infer": round3(infer_s),
            "infer_per_image": round3(infer_s / images.max(1) as f64),
            "decrypt": round3(decrypt_s),
        },
        "keys_cached": keygen_s.is_none(),
        "keys": session.key_dir.path().display().to_string(),
        "backend": backend,
        "adapter": adapter,
        "preset": params.name(),
        "levels": plan.levels(),
        "batch": plan.batch(),
        "key_switches_per_image": key_switches_per_image(plan, session.lockstep()),
        "key_memory": key_memory_name(session.key_memory()),
        "lockstep": session.lockstep(),
        "peak_memory_bytes": peak_memory_bytes(),
    });
    if args.json {
        print_json(&report);
    } else {
        println!(
            "model: {}  preset: {}  backend: {backend}",
            session.planned.model.spec(),
            report["preset"]
        );
        for (i, (he_row, plain_row)) in he.outer_iter().zip(plain.outer_iter()).enumerate() {
            println!("image {i}:                      encrypted   plaintext");
            for ((name, a), b) in classes.iter().zip(he_row).zip(plain_row) {
                println!("  {name:<28} {:>9.4}   {:>9.4}", sigmoid(*a), sigmoid(*b));
            }
        }
        for &i in &apart {
            println!(
                "image {i}: its values reach {:.3e}, past the {:.3e} the parameters hold; it was encrypted alone and its encrypted result is not meaningful",
                peaks[i],
                session.range.bound()
            );
        }
        println!(
            "max |logit error| {max_abs_error:.2e}; seconds: keygen {}, encrypt {encrypt_s:.2}, infer {infer_s:.1}, decrypt {decrypt_s:.2}",
            keygen_s.map_or("cached".to_string(), |s| format!("{s:.1}"))
        );
    }
    Ok(())
}
