//! Every evaluator operation on the GPU against the CPU evaluator, word for
//! word, on fresh random ciphertexts. Needs an adapter (lavapipe in CI); fails
//! loudly without one.

mod common;

use latent_he::backend::gpu::GpuContext;
use latent_he::ckks::gpu_eval::GpuEvaluator;
use latent_he::ckks::{
    encode, encode_coeffs, encrypt_values, Ciphertext, Evaluator, Params, PublicKeySet, ScaledCoeffs, SecretKey,
};
use latent_he::he_nn::kernel_rotations;
use rand::Rng;
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
        let mut rng = common::rng();
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
        let pw_scale = params.mul_plain_scale(level, cx.scale());
        let pw = encode(&params, &w, level, pw_scale).unwrap();
        let want = cpu.rescale(&cpu.mul_plain(&cx, &pw).unwrap()).unwrap();
        let gw = gpu.encode(&w, level, pw_scale).unwrap();
        let got = gpu.rescale(&gpu.mul_plain(&gx, &gw).unwrap()).unwrap();
        same(&want, &gpu.download(&got).unwrap(), "mul_plain + rescale");

        let mut want = cpu.mul_plain(&cx, &pw).unwrap();
        cpu.mul_plain_add_assign(&mut want, &cy, &pw).unwrap();
        let got = gpu.mul_plain_add(gpu.mul_plain(&gx, &gw).unwrap(), &gy, &gw).unwrap();
        same(&want, &gpu.download(&got).unwrap(), "mul_plain_add");

        let want = cpu.rescale(&cpu.mul_relin(&cx, &cy).unwrap()).unwrap();
        let got = gpu.rescale(&gpu.mul_relin(&gx, &gy).unwrap()).unwrap();
        same(&want, &gpu.download(&got).unwrap(), "mul_relin + rescale");

        let want = cpu.rotate_hoisted(&cx, &kernel).unwrap();
        let got = gpu.rotate_hoisted(&gx, &kernel).unwrap();
        for ((w, g), s) in want.iter().zip(&got).zip(&kernel) {
            same(w, &gpu.download(g).unwrap(), &format!("{preset} rotate {s}"));
        }

        // A sum of products: the hoisted rotations (one buffer) against
        // plaintexts finished together (one kernel), then a ciphertext of
        // its own buffer (a second kernel, accumulating).
        let ws: Vec<Vec<f64>> = kernel.iter().map(|_| random()).collect();
        let host: Vec<_> = ws
            .iter()
            .map(|w| encode(&params, w, level, pw_scale).unwrap())
            .collect();
        let device = gpu
            .plaintexts(
                ws.iter()
                    .map(|w| encode_coeffs(&params, w, level, pw_scale).unwrap())
                    .collect(),
            )
            .unwrap();
        let mut want_sum = cpu.mul_plain(&want[0], &host[0]).unwrap();
        for (ct, pt) in want.iter().zip(&host).skip(1).chain([(&cy, &host[0])]) {
            cpu.mul_plain_add_assign(&mut want_sum, ct, pt).unwrap();
        }
        let mut terms: Vec<_> = got.iter().zip(&device).collect();
        terms.push((&gy, &device[0]));
        let got_sum = gpu.mul_plain_sum(&terms).unwrap();
        same(
            &want_sum,
            &gpu.download(&got_sum).unwrap(),
            &format!("{preset} sum of products"),
        );
        assert!(gpu.mul_plain_sum(&[]).is_err(), "no terms");

        // A sum of rotations, one ModDown: a zero step, repeated steps.
        let terms = [(&cx, kernel[1]), (&cy, 0), (&cx, kernel[7]), (&cy, kernel[1])];
        let (mut want, mut got) = (None, None);
        for &(ct, s) in &terms {
            want = Some(cpu.rotation_sum_add(want, ct, s).unwrap());
            got = Some(gpu.rotation_sum_add(got, &gpu.upload(ct).unwrap(), s).unwrap());
        }
        let got = gpu.rotation_sum_finish(got.unwrap()).unwrap();
        same(
            &cpu.rotation_sum_finish(want.unwrap()),
            &gpu.download(&got).unwrap(),
            &format!("{preset} rotation sum"),
        );

        // A lower level: the keys' upper limbs are skipped, digits truncated.
        let mut low = cx.clone();
        cpu.drop_level_assign(&mut low, 3).unwrap();
        let want = cpu.rotate(&low, -1).unwrap();
        let got = gpu.rotate_hoisted(&gpu.upload(&low).unwrap(), &[-1]).unwrap();
        same(&want, &gpu.download(&got[0]).unwrap(), "rotate at level 3");
    }
}

#[test]
fn gpu_encoding_matches_cpu_word_for_word() {
    let ctx = GpuContext::new(None)
        .unwrap_or_else(|e| panic!("GPU TESTS CANNOT RUN: {e}. Install a Vulkan driver (mesa-vulkan-drivers)"));
    let params = Params::preset("insecure-n12").unwrap();
    let keys = Arc::new(PublicKeySet::generate(&SecretKey::generate(&params), &[]));
    let gpu = GpuEvaluator::new(&ctx, &keys).unwrap();
    let mut rng = common::rng();
    let top = params.max_level();
    // (level, scale, values, narrow): small coefficients (high word all
    // zeros or all ones), coefficients up to 2^61.5 (both words busy; the
    // embedding's coefficients of values in [-1, 1] stay below 1), past
    // 2^62 (the host-finished wide path), and fewer values than slots.
    let cases = [
        (top, 1.0, params.slots(), true),
        (0, 2f64.powi(20), params.slots(), true),
        (top / 2, 2f64.powf(61.5), params.slots(), true),
        (top, 2f64.powi(80), params.slots(), false),
        (1, params.scale(1), 7, true),
    ];
    // Each case alone, then all of them (and the narrow ones twice more, so
    // that plaintexts of one level share a batch) finished in one call.
    let mut batch = Vec::new();
    let mut wanted = Vec::new();
    for (level, scale, count, expect_narrow) in cases {
        let values: Vec<f64> = (0..count).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let encoded = encode_coeffs(&params, &values, level, scale).unwrap();
        let narrow = matches!(encoded.coeffs(), ScaledCoeffs::Narrow(_));
        let copies = if narrow { 3 } else { 1 };
        for _ in 0..copies {
            batch.push(encoded.clone());
            wanted.push(encoded.clone().into_plaintext(&params));
        }
        let want = encoded.into_plaintext(&params);
        let got = gpu
            .download_plaintext(&gpu.encode(&values, level, scale).unwrap())
            .unwrap();
        let what = format!("level {level}, scale 2^{:.1}, {count} values", scale.log2());
        assert_eq!(narrow, expect_narrow, "{what}: path");
        assert_eq!((got.level(), got.scale()), (want.level(), want.scale()), "{what}");
        let differ = want
            .poly()
            .words()
            .iter()
            .zip(got.poly().words())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(want.poly().words().len(), got.poly().words().len(), "{what}: length");
        assert_eq!(differ, 0, "{what}: words differ");
    }
    let together = gpu.plaintexts(batch).unwrap();
    assert_eq!(together.len(), wanted.len());
    for (i, (want, got)) in wanted.iter().zip(&together).enumerate() {
        let got = gpu.download_plaintext(got).unwrap();
        assert_eq!(
            (got.level(), got.scale()),
            (want.level(), want.scale()),
            "batched plaintext {i}"
        );
        assert_eq!(
            got.poly().words(),
            want.poly().words(),
            "batched plaintext {i}: words differ"
        );
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
        // A steady-state run allocates nothing but the uploads it makes.
        let work = &op["gpu_work"];
        assert!(work["dispatches"].as_u64().unwrap() >= 1, "{op}");
        assert_eq!(work["buffers_created"], work["uploads"], "{op}");
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
