//! The encrypted path through the binary: `plan`, `keygen --model`,
//! `encrypt`, `infer` in a directory that holds no secret key, `decrypt
//! --json`, `run --encrypted`; encrypted logits against `predict`'s.

use ndarray::Array4;
use ndarray_npy::write_npy;
use rand::Rng;
use std::path::Path;
use std::process::Command;

mod common;
use common::{fixture, json, latent_he, matrix, max_diff, refused, temp_dir};

/// A ResNet20 with random weights of realistic size on a small 2x8x8 latent,
/// spec in the file's metadata, inputs clamped to +-0.5 (`input_clip`:
/// about half of each latent's values are beyond it, so a client that forgot
/// the clamp would miss the plaintext logits); and two random latents for it.
fn small_model(dir: &Path) -> (String, String) {
    let (model, _) = common::small_resnet(dir, 4);
    let mut dict = ::latent_he::nn::StateDict::read(&model).unwrap();
    dict.set_metadata("input_clip", "0.5");
    dict.write(&model, ::latent_he::nn::StoreDtype::F32).unwrap();
    let mut rng = common::rng();
    let x = Array4::<f32>::from_shape_simple_fn((3, 2, 8, 8), || rng.gen_range(-1.0..1.0));
    let input = dir.join("x.npy");
    write_npy(&input, &x).unwrap();
    (model.display().to_string(), input.display().to_string())
}

#[test]
fn plan_reports_the_budget_and_refuses_what_does_not_fit() {
    let plan = json(&latent_he(&[
        "plan",
        "--model",
        &fixture("resnet20_f8.safetensors"),
        "--json",
    ]));
    assert_eq!(plan["preset"], "n16");
    assert_eq!(plan["input_clip"], serde_json::Value::Null);
    // The ResNet's global mean divides the network gain out.
    assert_eq!(plan["network_gain"], 16.0);
    assert_eq!(plan["levels_needed"], 31);
    assert_eq!(plan["levels_available"], 42);
    let layers = plan["layers"].as_array().unwrap();
    // One image alone: merges into lanes rotate nothing. In groups of 16
    // sets, layer 2 after its strided convolutions runs once per 4 and
    // layer 3 after its own once per 16 (each block's two branches merge
    // alike).
    let sum: u64 = layers
        .iter()
        .filter(|l| l["sets_in"] == l["sets"])
        .map(|l| l["key_switches"].as_u64().unwrap())
        .sum();
    assert_eq!(plan["key_switches"].as_u64().unwrap(), sum);
    assert_eq!(plan["sets_per_output"], 16);
    let merges: Vec<u64> = layers
        .iter()
        .filter(|l| l["sets_in"] != l["sets"])
        .map(|l| l["sets"].as_u64().unwrap())
        .collect();
    assert_eq!(merges, [4, 4, 16, 16]);
    let per_image = plan["key_switches_per_image"].as_f64().unwrap();
    assert!(per_image < sum as f64 / 2.0, "{per_image} of {sum}");
    assert_eq!(layers.first().unwrap()["name"], "conv1");
    assert_eq!(layers.first().unwrap()["level_in"], 32);
    assert_eq!(layers.last().unwrap()["level_out"], 1);
    assert_eq!(
        plan["galois_keys"].as_u64().unwrap() as usize,
        plan["rotations"].as_array().unwrap().len()
    );
    assert!(plan["public_key_bytes"].as_u64().unwrap() > 1 << 30);
    let keys = plan["evaluation_key_memory_bytes"].as_u64().unwrap();
    let peak = plan["peak_memory_estimate_bytes"].as_u64().unwrap();
    assert!(peak > keys && peak < 12 << 30, "ResNet20 f=8 under 12 GB: {peak}");
    // The GPU prediction: the steps sum to the total, both profiles share
    // a binding size (same dispatches) and the H200's bandwidth is higher.
    let (h100, h200) = (&plan["gpu"]["h100"], &plan["gpu"]["h200"]);
    let steps = h100["steps"].as_array().unwrap();
    let dispatches: u64 = steps.iter().map(|s| s["dispatches"].as_u64().unwrap()).sum();
    assert!(dispatches > 0);
    assert_eq!(h100["total"]["dispatches"].as_u64().unwrap(), dispatches);
    assert_eq!(h100["total"], h200["total"]);
    assert_eq!(h100["total"]["key_switches"], plan["key_switches"]);
    assert_eq!(steps.first().unwrap()["layers"][0], "conv1");
    assert!(h200["seconds"].as_f64().unwrap() < h100["seconds"].as_f64().unwrap());
    let se = json(&latent_he(&[
        "plan",
        "--model",
        &fixture("resnet20_se_f8.safetensors"),
        "--json",
    ]));
    assert_eq!(se["preset"], "n17");
    // Compact keys take half the memory: ResNet20+SE's server step fits a
    // 24 GB machine with them (its expanded keys alone take over 24 GB).
    let compact = se["evaluation_key_memory_compact_bytes"].as_u64().unwrap();
    assert_eq!(2 * compact, se["evaluation_key_memory_bytes"].as_u64().unwrap());
    assert!(se["evaluation_key_memory_bytes"].as_u64().unwrap() > 24 << 30);
    let se_peak = se["peak_memory_estimate_compact_bytes"].as_u64().unwrap();
    assert!(se_peak > compact && se_peak < 20 << 30, "{se_peak}");
    let message = refused(&latent_he(&[
        "plan",
        "--model",
        &fixture("resnet20_f8.safetensors"),
        "--preset",
        "n15",
    ]));
    assert!(
        message.contains("needs 31 levels") && message.contains("n15"),
        "{message}"
    );
}

#[test]
fn keygen_encrypt_infer_decrypt_match_plaintext_and_infer_needs_no_secret() {
    let dir = temp_dir("he-cli");
    let (model, input) = small_model(&dir);
    let keys = dir.join("keys");
    let keys_s = keys.display().to_string();
    let made = json(&latent_he(&[
        "keygen",
        "--model",
        &model,
        "--preset",
        "insecure-n12-deep",
        "--batch",
        "2",
        "--out",
        &keys_s,
        "--json",
    ]));
    assert_eq!(made["preset"], "insecure-n12-deep");
    assert!(keys.join("model.json").exists());
    let planned = json(&latent_he(&[
        "plan",
        "--model",
        &model,
        "--preset",
        "insecure-n12-deep",
        "--json",
    ]));
    assert_eq!(planned["input_clip"], 0.5);
    let ct = dir.join("x.ct").display().to_string();
    let enc = json(&latent_he(&[
        "encrypt", "--keys", &keys_s, "--input", &input, "--out", &ct, "--json",
    ]));
    assert_eq!(enc["images"], 3);
    // The server: a directory with the public key set and nothing else.
    let server = dir.join("server");
    std::fs::create_dir_all(&server).unwrap();
    std::fs::copy(keys.join("public.key"), server.join("public.key")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_latent-he"))
        .current_dir(&server)
        .args([
            "infer",
            "--public-key",
            "public.key",
            "--model",
            &model,
            "--input",
            &ct,
            "--out",
            "y.ct",
            "--batch",
            "2",
            "--backend",
            "cpu",
            "--json",
        ])
        .output()
        .unwrap();
    let inferred = json(&out);
    assert_eq!(inferred["batch"], 2);
    assert_eq!(inferred["images"], 3);
    assert_eq!(inferred["lockstep"], 2, "two sets, evaluated together");
    // The same server step with compact keys and `--lockstep 1` writes the
    // same ciphertexts: the plan merges sets into lanes after its strides,
    // so the lockstep is rounded up to a whole group (both sets here).
    let compact = json(&latent_he(&[
        "infer",
        "--public-key",
        &server.join("public.key").display().to_string(),
        "--model",
        &model,
        "--input",
        &ct,
        "--out",
        &dir.join("y_compact.ct").display().to_string(),
        "--batch",
        "2",
        "--backend",
        "cpu",
        "--key-memory",
        "compact",
        "--lockstep",
        "1",
        "--json",
    ]));
    assert_eq!(compact["key_memory"], "compact");
    assert_eq!(compact["lockstep"], 2);
    assert_eq!(
        std::fs::read(dir.join("y_compact.ct")).unwrap(),
        std::fs::read(server.join("y.ct")).unwrap(),
        "compact keys or lockstep changed the server's output"
    );
    let names: Vec<_> = std::fs::read_dir(&server)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !names.iter().any(|n| n.to_string_lossy().contains("secret")),
        "{names:?}"
    );
    let y = server.join("y.ct").display().to_string();
    let decrypted = json(&latent_he(&["decrypt", "--keys", &keys_s, "--input", &y, "--json"]));
    let plain = json(&latent_he(&["predict", "--model", &model, "--input", &input, "--json"]));
    assert_eq!(decrypted["classes"], plain["classes"]);
    let err = max_diff(&matrix(&decrypted["logits"]), &matrix(&plain["logits"]));
    assert!(err < 1e-3, "encrypted logits differ from plaintext by {err}");
    let perr = max_diff(&matrix(&decrypted["probabilities"]), &matrix(&plain["probabilities"]));
    assert!(perr < 1e-3);
    // Ciphertexts of another model's layout are refused with a reason.
    let other = refused(&latent_he(&[
        "infer",
        "--public-key",
        &keys.join("public.key").display().to_string(),
        "--model",
        &fixture("resnet20_f8.safetensors"),
        "--input",
        &ct,
        "--out",
        &dir.join("z.ct").display().to_string(),
        "--backend",
        "cpu",
    ]));
    assert!(other.contains("latents"), "{other}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn run_puts_encrypted_and_plaintext_side_by_side_and_caches_keys() {
    let dir = temp_dir("he-run");
    let (model, input) = small_model(&dir);
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_latent-he"))
            .env("LATENT_HE_CACHE_DIR", dir.join("cache"))
            .args([
                "run",
                "--model",
                &model,
                "--input",
                &input,
                "--encrypted",
                "--preset",
                "insecure-n12-deep",
                "--backend",
                "cpu",
                "--json",
            ])
            .output()
            .unwrap()
    };
    let first = json(&run());
    assert_eq!(first["keys_cached"], false);
    assert_eq!(first["lockstep"], 3, "three images, evaluated together");
    assert!(first["max_abs_error"].as_f64().unwrap() < 1e-3, "{first}");
    let err = max_diff(&matrix(&first["logits_he"]), &matrix(&first["logits_plain"]));
    let reported = first["max_abs_error"].as_f64().unwrap();
    assert!(
        (err - reported).abs() <= 1e-12 * reported.max(1.0),
        "{err} vs {reported}"
    );
    assert!(first["peak_memory_bytes"].as_u64().unwrap() > 1 << 20);
    let bound = first["value_bound"].as_f64().unwrap();
    let peaks = first["peaks"].as_array().unwrap();
    assert_eq!(peaks.len(), 3);
    assert!(
        peaks
            .iter()
            .all(|p| p.as_f64().unwrap() > 0.0 && p.as_f64().unwrap() < bound),
        "{first}"
    );
    assert_eq!(
        first["encrypted_apart"],
        serde_json::json!([]),
        "all within the bound, evaluated together"
    );
    for stage in ["keygen", "encrypt", "infer", "decrypt"] {
        assert!(first["seconds"][stage].as_f64().is_some(), "{stage}");
    }
    let second = json(&run());
    assert_eq!(second["keys_cached"], true);
    assert_eq!(second["logits_plain"], first["logits_plain"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bench_times_each_combination_and_reports_what_does_not_run() {
    let dir = temp_dir("he-bench");
    let out = dir.join("bench");
    let report = json(&latent_he(&[
        "bench",
        "--models",
        "resnet20,lenet5",
        "--latents",
        "2x8x8",
        "--preset",
        "insecure-n12-deep",
        "--runs",
        "2",
        "--lockstep",
        "2",
        "--backend",
        "cpu",
        "--out",
        &out.display().to_string(),
        "--json",
    ]));
    let rows = report["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let resnet = &rows[0];
    assert_eq!(resnet["status"], "ok", "{resnet}");
    assert_eq!(resnet["runs"], 2);
    assert_eq!(resnet["lockstep"], 2);
    assert!(resnet["seconds"]["infer_per_image"].as_f64().unwrap() > 0.0);
    assert!(resnet["seconds"]["keygen"].as_f64().unwrap() > 0.0);
    assert!(resnet["plain_ms_per_image"].as_f64().unwrap() > 0.0);
    // LeNet5's 5x5 convolutions do not fit an 8x8 latent: a row saying so, not a failure
    assert!(
        rows[1]["status"].as_str().unwrap().starts_with("not defined"),
        "{}",
        rows[1]
    );
    let csv = std::fs::read_to_string(out.join("bench.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3);
    assert!(out.join("he_time_vs_latent.png").exists());
    std::fs::remove_dir_all(&dir).ok();
}
