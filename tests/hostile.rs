//! Hostile input through the binary: crafted files and flags of the kinds an
//! attacker or a damaged export gives. Each is refused with its exit status
//! (3 for bad input, 2 for usage, 4 for a busy output folder) and a one-line
//! message naming what is wrong, within a bounded time: never a panic, an
//! abort, a hang or a silent result.

mod common;

use common::refused_with;
use ndarray::Array4;
use ndarray_npy::write_npy;
use rand::Rng;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Longest any refusal here may take (the bar for hostile input).
const LIMIT: Duration = Duration::from_secs(60);

/// Runs `latent-he args` with its cache under `dir`, killed past [`LIMIT`]
/// (which fails the test): its output goes to files, so a flood cannot
/// block it.
fn run(dir: &Path, args: &[&str]) -> Output {
    let tag: u64 = rand::random();
    let (out_path, err_path) = (dir.join(format!("stdout-{tag}")), dir.join(format!("stderr-{tag}")));
    let mut child = Command::new(env!("CARGO_BIN_EXE_latent-he"))
        .args(args)
        .env("LATENT_HE_CACHE_DIR", dir.join("cache"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > LIMIT {
            child.kill().ok();
            child.wait().ok();
            panic!("latent-he {args:?} ran past {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = Output {
        status,
        stdout: std::fs::read(&out_path).unwrap(),
        stderr: std::fs::read(&err_path).unwrap(),
    };
    std::fs::remove_file(out_path).ok();
    std::fs::remove_file(err_path).ok();
    output
}

/// Asserts exit status 3 and a message holding `needle`.
fn bad_input(out: &Output, needle: &str) {
    let message = refused_with(out, 3);
    assert!(message.contains(needle), "`{needle}` not in: {message}");
}

/// A `.npy` file whose header declares `shape` (as written, e.g. `(2, 3)`)
/// of float32 values, with `body` bytes after it.
fn forged_npy(path: &Path, shape: &str, body: usize) {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(vec![0u8; body]);
    std::fs::write(path, bytes).unwrap();
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// The small ResNet20 of the other tests (2x8x8 latents, 3 classes).
fn model(dir: &Path) -> String {
    s(&common::small_resnet(dir, 3).0)
}

/// Keys for `model` at the fast insecure preset with `batch` images a set.
fn model_keys(dir: &Path, model: &str, batch: &str) -> PathBuf {
    let keys = dir.join(format!("keys-{batch}"));
    let out = run(
        dir,
        &[
            "keygen",
            "--model",
            model,
            "--preset",
            "insecure-n12-deep",
            "--batch",
            batch,
            "--out",
            &s(&keys),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    keys
}

/// `n` random 2x8x8 latents in `[-1, 1)`, float32.
fn latents(path: &Path, n: usize) {
    let mut rng = common::rng();
    let x = Array4::<f32>::from_shape_simple_fn((n, 2, 8, 8), || rng.gen_range(-1.0..1.0));
    write_npy(path, &x).unwrap();
}

/// A `.npy` header claiming gigabytes over a few bytes is refused from the
/// header by every command that reads latents or images as `.npy`, before
/// anything is allocated (ndarray-npy used to allocate the declared size
/// and abort the process).
#[test]
fn npy_headers_claiming_huge_shapes_are_refused_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let huge = d.join("huge.npy");
    forged_npy(&huge, "(1, 4, 65536, 65536)", 64);
    let wraps = d.join("wraps.npy");
    forged_npy(&wraps, "(4294967296, 4294967296, 16)", 64);
    let model = model(d);
    let vqgan = s(&common::small_random_vqgan(d));
    let keys = d.join("plain-keys");
    let made = run(d, &["keygen", "--preset", "insecure-n12", "--out", &s(&keys)]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let root = d.join("latents");
    std::fs::create_dir_all(&root).unwrap();
    forged_npy(&root.join("latents.npy"), "(1, 4, 65536, 65536)", 64);
    std::fs::write(root.join("labels.csv"), "class_0,class_1,class_2\n1,0,1\n").unwrap();
    for npy in [&huge, &wraps] {
        let npy = s(npy);
        let out_ct = s(&d.join("x.ct"));
        let commands: Vec<Vec<&str>> = vec![
            vec![
                "encrypt",
                "--keys",
                keys.to_str().unwrap(),
                "--input",
                &npy,
                "--out",
                &out_ct,
            ],
            vec!["predict", "--model", &model, "--input", &npy],
            vec!["run", "--model", &model, "--input", &npy],
            vec![
                "encode",
                "--vqgan",
                &vqgan,
                "--input",
                &npy,
                "--out",
                &out_ct,
                "--backend",
                "cpu",
            ],
            vec![
                "decode",
                "--vqgan",
                &vqgan,
                "--input",
                &npy,
                "--out",
                &out_ct,
                "--backend",
                "cpu",
            ],
        ];
        for args in commands {
            bad_input(&run(d, &args), "declares more than");
        }
    }
    let out = s(&d.join("score-out"));
    let score = [
        "score",
        "--dataset",
        "latents",
        "--root",
        &s(&root),
        "--model",
        &model,
        "--backend",
        "cpu",
        "--out",
        &out,
    ];
    bad_input(&run(d, &score), "declares more than");
    // A shape that fits the cap but not the file.
    let short = d.join("short.npy");
    forged_npy(&short, "(1, 2, 8, 8)", 12);
    bad_input(
        &run(d, &["predict", "--model", &model, "--input", &s(&short)]),
        "bytes of data",
    );
}

/// Devices, folders and FIFOs are refused before a byte is read (`/dev/zero`
/// used to be read until memory ran out), a folder given for the public
/// key file is named as such, a public key file cut after its header is
/// refused before any parameter is built, and `infer` checks that it can
/// write its output before it computes.
#[test]
fn devices_folders_truncated_keys_and_unwritable_outputs_are_refused_first() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = model(d);
    let keys = model_keys(d, &model, "1");
    let x = d.join("x.npy");
    latents(&x, 1);
    let ct = d.join("x.ct");
    let made = run(
        d,
        &["encrypt", "--keys", &s(&keys), "--input", &s(&x), "--out", &s(&ct)],
    );
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let public = s(&keys.join("public.key"));
    let out = s(&d.join("y.ct"));
    let infer = |public: &str, input: &str, out: &str| {
        run(
            d,
            &[
                "infer",
                "--public-key",
                public,
                "--model",
                &model,
                "--input",
                input,
                "--out",
                out,
                "--backend",
                "cpu",
            ],
        )
    };
    #[cfg(unix)]
    {
        bad_input(&infer(&public, "/dev/zero", &out), "regular file");
        let zero_keys = d.join("zero-keys");
        std::fs::create_dir_all(&zero_keys).unwrap();
        std::os::unix::fs::symlink("/dev/zero", zero_keys.join("public.key")).unwrap();
        let encrypt = ["encrypt", "--keys", &s(&zero_keys), "--input", &s(&x), "--out", &out];
        bad_input(&run(d, &encrypt), "regular file");
        bad_input(
            &run(d, &["predict", "--model", &model, "--input", "/dev/zero"]),
            "regular file",
        );
        bad_input(&run(d, &["params", "--literal", "/dev/zero"]), "regular file");
        let metrics = ["metrics", "--labels", "/dev/zero", "--scores", "/dev/zero"];
        bad_input(&run(d, &metrics), "regular file");
        bad_input(&run(d, &["plan", "--model", "/dev/zero"]), "regular file");
    }
    bad_input(&infer(&s(&keys), &s(&ct), &out), "a directory");
    // The header and the parameter block, nothing after.
    let bytes = std::fs::read(keys.join("public.key")).unwrap();
    let json_len = u32::from_le_bytes(bytes[52..56].try_into().unwrap()) as usize;
    let cut = d.join("cut.key");
    std::fs::write(&cut, &bytes[..56 + json_len + 64.min(bytes.len() - 56 - json_len)]).unwrap();
    bad_input(&infer(&s(&cut), &s(&ct), &out), "truncated");
    // Nowhere to write: refused before the model is even loaded.
    let nowhere = s(&d.join("no-such-folder/y.ct"));
    let start = Instant::now();
    bad_input(&infer(&public, &s(&ct), &nowhere), "no-such-folder");
    assert!(start.elapsed() < Duration::from_secs(5), "refused before computing");
    bad_input(&infer(&public, &s(&ct), &s(d)), "a directory");
}

/// `params --literal` with thousands of primes is refused at once (it used
/// to search 12,000 primes, 6 GB and a minute, and succeed), and a literal
/// over the 128-bit bound is refused from its declared sizes.
#[test]
fn parameter_literals_with_too_many_primes_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let literal = d.join("p.json");
    let primes = vec![30; 12_000];
    let text = serde_json::json!({"log_n": 17, "log_q": primes, "log_p": [30, 30], "log_scale": 30.0, "dnum": 6000});
    std::fs::write(&literal, text.to_string()).unwrap();
    let start = Instant::now();
    for extra in [&[][..], &["--allow-insecure"][..]] {
        let mut args = vec!["params", "--literal", literal.to_str().unwrap()];
        args.extend(extra);
        let out = run(d, &args);
        let message = refused_with(&out, 3);
        assert!(
            message.contains("12002 primes") || message.contains("not 128-bit secure"),
            "{message}"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(10), "{:?}", start.elapsed());
}

/// Model metadata declaring a latent of billions of values (or one whose
/// size wraps) is refused by every command that plans, and `--batch` is
/// bounded by clap (exit status 2).
#[test]
fn huge_latents_in_metadata_and_huge_batches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = model(d);
    let keys = model_keys(d, &model, "1");
    for latent in ["4x65536x65536", "4x4294967296x4294967296"] {
        let path = d.join(format!("{latent}.safetensors"));
        let mut dict = latent_he::nn::StateDict::read(Path::new(&model)).unwrap();
        dict.set_metadata("latent", latent);
        dict.write(&path, latent_he::nn::StoreDtype::F32).unwrap();
        let path = s(&path);
        let (out_keys, public) = (s(&d.join("k")), s(&keys.join("public.key")));
        let (input, out) = (s(&d.join("x.ct")), s(&d.join("y.ct")));
        let commands: Vec<Vec<&str>> = vec![
            vec!["plan", "--model", &path],
            vec!["keygen", "--model", &path, "--out", &out_keys],
            vec![
                "infer",
                "--public-key",
                &public,
                "--model",
                &path,
                "--input",
                &input,
                "--out",
                &out,
                "--backend",
                "cpu",
            ],
        ];
        for args in commands {
            bad_input(&run(d, &args), "values a latent may hold");
        }
    }
    for batch in ["0", "1000000", "18446744073709551615", "18446744073709551616"] {
        let out = run(d, &["plan", "--model", &model, "--batch", batch]);
        assert_eq!(out.status.code(), Some(2), "--batch {batch}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--batch"));
    }
}

/// A latent so large that the model's pass leaves f64's range gives no
/// NaN probabilities with exit status 0: `predict` and `run` refuse it.
#[test]
fn latents_that_overflow_the_model_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = model(d);
    let x = d.join("overflow.npy");
    write_npy(&x, &Array4::<f64>::from_elem((1, 2, 8, 8), 1e300)).unwrap();
    for command in ["predict", "run"] {
        bad_input(
            &run(d, &[command, "--model", &model, "--input", &s(&x)]),
            "leaves the floating-point range",
        );
    }
}

/// `model.json` is checked against the keys beside it: a plain `keygen`
/// into a folder that held model keys removes the old binding (encrypt used
/// to panic on it), and hand-edited fields are refused.
#[test]
fn stale_and_edited_model_bindings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = model(d);
    let keys = model_keys(d, &model, "1");
    let binding: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(keys.join("model.json")).unwrap()).unwrap();
    let x = d.join("x.npy");
    latents(&x, 2);
    let out = s(&d.join("x.ct"));
    let encrypt = |keys: &Path| run(d, &["encrypt", "--keys", &s(keys), "--input", &s(&x), "--out", &out]);
    // Edited fields: each refused with exit status 3, never a panic.
    let edits: [(&str, serde_json::Value); 8] = [
        ("/batch", 0.into()),
        ("/batch", u64::MAX.into()),
        ("/start_level", 100_000.into()),
        ("/input/block", 0.into()),
        ("/input/slots", 1.into()),
        ("/output/gap", 0.into()),
        ("/output/lanes", 4096.into()),
        ("/latent/1", 4_294_967_296u64.into()),
    ];
    for (pointer, value) in edits {
        let mut edited = binding.clone();
        *edited.pointer_mut(pointer).unwrap() = value.clone();
        std::fs::write(keys.join("model.json"), edited.to_string()).unwrap();
        let out = encrypt(&keys);
        let message = refused_with(&out, 3);
        assert!(message.contains("model.json"), "{pointer} = {value}: {message}");
    }
    std::fs::write(keys.join("model.json"), binding.to_string()).unwrap();
    // A plain keygen over the model keys: no binding is left behind.
    let made = run(d, &["keygen", "--preset", "insecure-n12", "--out", &s(&keys)]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    assert!(!keys.join("model.json").exists(), "stale binding removed");
    let packed = encrypt(&keys);
    assert!(packed.status.success(), "{}", String::from_utf8_lossy(&packed.stderr));
}

/// Keys made for one image per set, `infer --batch 2` on a two-image
/// ciphertext: refused (it used to exit 0 with wrong logits).
#[test]
fn infer_honours_the_batch_the_keys_were_made_for() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = model(d);
    let keys = model_keys(d, &model, "1");
    let x = d.join("x.npy");
    latents(&x, 2);
    let ct = s(&d.join("x.ct"));
    let made = run(d, &["encrypt", "--keys", &s(&keys), "--input", &s(&x), "--out", &ct]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let public = s(&keys.join("public.key"));
    let out = s(&d.join("y.ct"));
    let infer = [
        "infer",
        "--public-key",
        &public,
        "--model",
        &model,
        "--input",
        &ct,
        "--out",
        &out,
        "--batch",
        "2",
        "--backend",
        "cpu",
    ];
    let message = refused_with(&run(d, &infer), 3);
    assert!(message.contains("--batch"), "{message}");
    assert!(!Path::new(&out).exists());
    // Without the binding beside the key, the keys' rotations still tell.
    std::fs::remove_file(keys.join("model.json")).unwrap();
    let out = run(d, &infer);
    assert_ne!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// An encoder-only VQGAN export encodes (a client needs nothing else);
/// decoding or asking for codebook vectors is refused with a clear error;
/// latents far past the trained size are refused unless asked for.
#[test]
fn encoder_only_vqgans_encode_and_oversized_latents_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let full = common::small_random_vqgan(d);
    let mut dict = latent_he::nn::StateDict::read(&full).unwrap();
    let names: Vec<String> = dict.iter().map(|(name, _)| name.to_string()).collect();
    for name in names.iter().filter(|n| !n.starts_with("encoder.")) {
        dict.remove(name);
    }
    let encoder_only = d.join("encoder.safetensors");
    dict.write(&encoder_only, latent_he::nn::StoreDtype::F32).unwrap();
    let images = d.join("images.npy");
    let mut rng = common::rng();
    write_npy(
        &images,
        &Array4::<f32>::from_shape_simple_fn((1, 3, 256, 256), || rng.gen_range(-1.0..1.0)),
    )
    .unwrap();
    let z = d.join("z.npy");
    let encode = |extra: &[&str]| {
        let mut args = vec![
            "encode",
            "--vqgan",
            encoder_only.to_str().unwrap(),
            "--input",
            images.to_str().unwrap(),
        ];
        args.extend(["--out", z.to_str().unwrap(), "--backend", "cpu"]);
        args.extend(extra);
        run(d, &args)
    };
    let out = encode(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    bad_input(&encode(&["--quantized"]), "no quantizer");
    let decode = |vqgan: &Path, input: &Path| {
        run(
            d,
            &[
                "decode",
                "--vqgan",
                &s(vqgan),
                "--input",
                &s(input),
                "--out",
                &s(&d.join("recon")),
                "--backend",
                "cpu",
            ],
        )
    };
    bad_input(&decode(&encoder_only, &z), "no decoder");
    let large = d.join("large.npy");
    write_npy(&large, &Array4::<f32>::zeros((1, 4, 256, 256))).unwrap();
    bad_input(&decode(&full, &large), "--allow-large-inputs");
}

/// A VQGAN whose metadata declares enormous channel counts over a few
/// tensors is refused with the list of what is missing (the loader used to
/// allocate zeros for every declared tensor first), and a device given as
/// a weights file is refused before it is read.
#[test]
fn vqgan_metadata_declaring_huge_tensors_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut dict = latent_he::nn::StateDict::new();
    let config = serde_json::json!({
        "ch": 1u64 << 28, "ch_mult": [1, 1], "num_res_blocks": 1, "attn_resolutions": [], "z_channels": 4,
        "double_z": false, "in_channels": 3, "out_ch": 3, "embed_dim": 4, "n_embed": 16, "resolution": 256,
    });
    dict.set_metadata("vqgan_config", config.to_string());
    dict.insert(
        "encoder.conv_in.bias",
        latent_he::nn::Tensor::new(vec![1], vec![0.0]).unwrap(),
    );
    let path = d.join("forged.safetensors");
    dict.write(&path, latent_he::nn::StoreDtype::F32).unwrap();
    let images = d.join("images.npy");
    write_npy(&images, &Array4::<f32>::zeros((1, 3, 16, 16))).unwrap();
    let out = s(&d.join("z.npy"));
    let encode = |vqgan: &str| {
        run(
            d,
            &[
                "encode",
                "--vqgan",
                vqgan,
                "--input",
                &s(&images),
                "--out",
                &out,
                "--backend",
                "cpu",
            ],
        )
    };
    bad_input(&encode(&s(&path)), "do not match");
    #[cfg(unix)]
    bad_input(&encode("/dev/zero"), "regular file");
}

/// `--backend cpu` never opens a GPU instance (whose Vulkan loader warns
/// about `XDG_RUNTIME_DIR` on headless machines): glibc's loader trace shows
/// no Vulkan library loaded by `encode` and `decode`.
#[cfg(target_os = "linux")]
#[test]
fn the_cpu_backend_loads_no_gpu_driver() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let vqgan = s(&common::small_random_vqgan(d));
    let images = d.join("images.npy");
    write_npy(&images, &Array4::<f32>::zeros((1, 3, 32, 32))).unwrap();
    let z = s(&d.join("z.npy"));
    let recon = s(&d.join("recon"));
    let commands = [
        vec![
            "encode",
            "--vqgan",
            &vqgan,
            "--input",
            images.to_str().unwrap(),
            "--out",
            &z,
            "--backend",
            "cpu",
        ],
        vec![
            "decode",
            "--vqgan",
            &vqgan,
            "--input",
            &z,
            "--out",
            &recon,
            "--backend",
            "cpu",
        ],
    ];
    for args in commands {
        let out = Command::new(env!("CARGO_BIN_EXE_latent-he"))
            .args(&args)
            .env("LD_DEBUG", "libs")
            .env_remove("XDG_RUNTIME_DIR")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("libvulkan"), "{args:?} loaded a Vulkan loader");
        assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{args:?}");
    }
}

/// One `score` writes into a folder at a time (exit status 4 while another
/// holds it), and a results log that names an image twice is refused on
/// resume (it used to be accepted, counting the image twice).
#[test]
fn score_keeps_one_writer_per_folder_and_refuses_duplicate_rows() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = model(d);
    let root = d.join("latents");
    std::fs::create_dir_all(&root).unwrap();
    latents(&root.join("latents.npy"), 3);
    std::fs::write(
        root.join("labels.csv"),
        "class_0,class_1,class_2\n1,0,1\n0,1,0\n1,1,0\n",
    )
    .unwrap();
    let out = d.join("out");
    let score = [
        "score",
        "--dataset",
        "latents",
        "--root",
        &s(&root),
        "--model",
        &model,
        "--backend",
        "cpu",
        "--out",
        &s(&out),
        "--json",
    ];
    std::fs::create_dir_all(&out).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(out.join(".score.lock"))
        .unwrap();
    lock.lock().unwrap();
    let message = refused_with(&run(d, &score), 4);
    assert!(message.contains("another `score`"), "{message}");
    lock.unlock().unwrap();
    let first = run(d, &score);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let results = out.join("results.csv");
    let text = std::fs::read_to_string(&results).unwrap();
    let second_row = text.lines().nth(1).unwrap().to_string();
    std::fs::write(&results, format!("{text}{second_row}\n")).unwrap();
    bad_input(&run(d, &score), "has two rows");
}

/// Exit statuses scripts can tell apart, and errors as JSON under `--json`.
#[test]
fn exit_statuses_and_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let usage = run(d, &["plan", "--no-such-flag"]);
    assert_eq!(usage.status.code(), Some(2));
    let json_usage = run(d, &["plan", "--no-such-flag", "--json"]);
    assert_eq!(json_usage.status.code(), Some(2));
    let error: serde_json::Value = serde_json::from_slice(&json_usage.stderr).unwrap();
    assert_eq!(error["error"]["kind"], "usage", "{error}");
    let missing = run(
        d,
        &[
            "predict",
            "--model",
            "no-such.safetensors",
            "--input",
            "x.npy",
            "--json",
        ],
    );
    assert_eq!(missing.status.code(), Some(3));
    let error: serde_json::Value = serde_json::from_slice(&missing.stderr).unwrap();
    assert_eq!(error["error"]["kind"], "input", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such.safetensors"),
        "{error}"
    );
    for drift in ["--max-drift=0.1", "--max-drift=-1"] {
        let mut score = vec![
            "score",
            "--dataset",
            "latents",
            "--root",
            "r",
            "--model",
            "m",
            "--out",
            "o",
        ];
        score.push(drift);
        if drift.ends_with("-1") {
            score.push("--encrypted");
        }
        let out = run(d, &score);
        assert_eq!(out.status.code(), Some(2), "--max-drift {drift}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--encrypted") || stderr.contains("non-negative"),
            "{stderr}"
        );
    }
    let help = run(d, &["--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("Exit status"));
}
