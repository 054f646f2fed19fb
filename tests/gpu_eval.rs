//! Every evaluator operation on the GPU against the CPU evaluator, word for
//! word, on fresh random ciphertexts. Needs an adapter (lavapipe in CI); fails
//! loudly without one.

use latent_he::backend::gpu::GpuContext;
use latent_he::ckks::gpu_eval::GpuEvaluator;
use latent_he::ckks::{encode, encrypt_values, Ciphertext, Evaluator, Params, PublicKeySet, SecretKey};
use latent_he::he_nn::kernel_rotations;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::sync::Arc;

fn same(cpu: &Ciphertext, gpu: &Ciphertext, what: &str) {
    assert_eq!(cpu.level(), gpu.level(), "{what}: level");
    assert_eq!(cpu.scale(), gpu.scale(), "{what}: scale");
    let (a0, a1) = cpu.parts();
    let (b0, b1) = gpu.parts();
    let differ = |x: &[u32], y: &[u32]| x.iter().zip(y).filter(|(p, q)| p != q).count();
    assert_eq!(differ(a0.words(), b0.words()), 0, "{what}: c0 words differ");
    assert_eq!(differ(a1.words(), b1.words()), 0, "{what}: c1 words differ");
}

#[test]
fn gpu_evaluator_matches_cpu_word_for_word() {
    let ctx = GpuContext::new(None)
        .unwrap_or_else(|e| panic!("GPU TESTS CANNOT RUN: {e}. Install a Vulkan driver (mesa-vulkan-drivers)"));
    for preset in ["insecure-n12", "n14"] {
        let params = Params::preset(preset).unwrap();
        let sk = SecretKey::generate(&params);
        let kernel = kernel_rotations(32, 3);
        let keys = Arc::new(PublicKeySet::generate(&sk, &kernel));
        let cpu = Evaluator::new(keys.clone());
        let gpu = GpuEvaluator::new(&ctx, &keys).unwrap();
        let mut rng = ChaCha20Rng::from_entropy();
        let mut random = || -> Vec<f64> { (0..params.slots()).map(|_| rng.gen_range(-1.0..1.0)).collect() };
        let (x, y, w) = (random(), random(), random());
        let (cx, cy) = (encrypt_values(&keys, &x).unwrap(), encrypt_values(&keys, &y).unwrap());
        let (gx, gy) = (gpu.upload(&cx).unwrap(), gpu.upload(&cy).unwrap());

        same(
            &cpu.add(&cx, &cy).unwrap(),
            &gpu.download(&gpu.add(&gx, &gy).unwrap()).unwrap(),
            "add",
        );

        let level = cx.level();
        let pw = encode(&params, &w, level, params.mul_plain_scale(level, cx.scale())).unwrap();
        let want = cpu.rescale(&cpu.mul_plain(&cx, &pw).unwrap()).unwrap();
        let got = gpu.rescale(&gpu.mul_plain(&gx, &pw).unwrap()).unwrap();
        same(&want, &gpu.download(&got).unwrap(), "mul_plain + rescale");

        let want = cpu.rescale(&cpu.mul_relin(&cx, &cy).unwrap()).unwrap();
        let got = gpu.rescale(&gpu.mul_relin(&gx, &gy).unwrap()).unwrap();
        same(&want, &gpu.download(&got).unwrap(), "mul_relin + rescale");

        let want = cpu.rotate_hoisted(&cx, &kernel).unwrap();
        let got = gpu.rotate_hoisted(&gx, &kernel).unwrap();
        for ((w, g), s) in want.iter().zip(&got).zip(&kernel) {
            same(w, &gpu.download(g).unwrap(), &format!("{preset} rotate {s}"));
        }

        // A lower level: the keys' upper limbs are skipped, digits truncated.
        let mut low = cx.clone();
        cpu.drop_level_assign(&mut low, 3).unwrap();
        let want = cpu.rotate(&low, -1).unwrap();
        let got = gpu.rotate_hoisted(&gpu.upload(&low).unwrap(), &[-1]).unwrap();
        same(&want, &gpu.download(&got[0]).unwrap(), "rotate at level 3");
    }
}

#[test]
fn check_and_devices_commands_report_json() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_latent-he"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["devices", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let adapters = v["adapters"].as_array().unwrap();
    assert!(!adapters.is_empty(), "no adapter listed: the GPU tests cannot run");
    for key in [
        "name",
        "backend",
        "device_type",
        "max_buffer_size",
        "max_storage_buffer_binding_size",
        "features",
    ] {
        assert!(!adapters[0][key].is_null(), "{key}");
    }
    let out = run(&["check", "--preset", "insecure-n12", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["all_equal"], true);
    assert_eq!(v["preset"], "insecure-n12");
    assert!(!v["adapter"]["name"].is_null());
    let ops = v["ops"].as_array().unwrap();
    assert!(ops.len() >= 9);
    for op in ops {
        assert_eq!(op["mismatched_words"], 0, "{op}");
        assert!(op["cpu_ms"].as_f64().is_some() && op["gpu_ms"].as_f64().is_some());
    }

    let out = run(&[
        "selftest",
        "--preset",
        "insecure-n12",
        "--backend",
        "gpu",
        "--repeats",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["backend"], "gpu");
    for op in v["ops"].as_array().unwrap() {
        if op["name"] != "ntt_forward_all_limbs" {
            assert!(op["precision_bits"].as_f64().unwrap() > 15.0, "{op}");
        }
    }
    // Client-side steps do not pretend to run on the GPU.
    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "keygen",
        "--preset",
        "insecure-n12",
        "--out",
        dir.path().to_str().unwrap(),
        "--backend",
        "gpu",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CPU only"));
}
