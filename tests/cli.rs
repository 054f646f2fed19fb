//! The `latent-he` binary end to end: parameters, keys, encryption of .npy
//! arrays, decryption, self-test, and the one-line refusals.

use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use rand::Rng;
use std::path::Path;
use std::process::Output;

mod common;
use common::{json, latent_he as run, refused, refused_with};

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `latent-he encrypt|decrypt --keys K --input I --out O [extra..]`.
fn crypt(command: &str, keys: &Path, input: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![command, "--keys", p(keys), "--input", p(input), "--out", p(out)];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn params_presets_literals_and_security_refusal() {
    let v = json(&run(&["params", "--preset", "n16", "--json"]));
    assert_eq!(v["log_n"], 16);
    assert_eq!(v["slots"], 32768);
    assert_eq!(v["security_bits"], 128);
    assert!(v["max_level"].as_u64().unwrap() >= 31);
    assert!(v["log_qp"].as_f64().unwrap() <= 1772.0);
    for key in ["preset", "primes_q", "primes_p", "log_scale", "dnum"] {
        assert!(!v[key].is_null(), "{key}");
    }
    let v = json(&run(&["params", "--preset", "n17", "--json"]));
    assert!(v["max_level"].as_u64().unwrap() >= 84);

    let dir = tempfile::tempdir().unwrap();
    let literal = dir.path().join("big.json");
    std::fs::write(
        &literal,
        r#"{"log_n": 14, "log_q": [31,30,30,30,30,30,30,30,30,30,30,30,30,30], "log_p": [31,31], "log_scale": 30, "dnum": 7}"#,
    )
    .unwrap();
    let err = refused(&run(&["params", "--literal", p(&literal), "--json"]));
    assert!(err.contains("not 128-bit secure") && err.contains("438"), "{err}");
    let v = json(&run(&[
        "params",
        "--literal",
        p(&literal),
        "--allow-insecure",
        "--json",
    ]));
    assert!(v["security_bits"].is_null());
    assert_eq!(v["preset"], serde_json::Value::Null);
    refused(&run(&["params", "--preset", "n99"]));
}

#[test]
fn keygen_encrypt_decrypt_round_trip_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let v = json(&run(&[
        "keygen",
        "--preset",
        "insecure-n12",
        "--out",
        p(&keys),
        "--rotations",
        "1,-2",
        "--json",
    ]));
    assert_eq!(v["rotations"], serde_json::json!([1, -2]));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(keys.join("secret.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "secret key is owner-only");
    }

    // A float32 array spanning several ciphertexts (2048 slots each).
    let mut rng = common::rng();
    let shape = [3usize, 40, 41];
    let data: Vec<f32> = (0..shape.iter().product()).map(|_| rng.gen_range(-4.0..4.0)).collect();
    let input = dir.path().join("x.npy");
    ArrayD::from_shape_vec(IxDyn(&shape), data.clone())
        .unwrap()
        .write_npy(std::fs::File::create(&input).unwrap())
        .unwrap();
    let ct = dir.path().join("x.ct");
    let v = json(&crypt("encrypt", &keys, &input, &ct, &["--json"]));
    assert_eq!(v["ciphertexts"], 3);
    // Flooded by default with noise of standard deviation 2^-14 (8 of them
    // are past any of these 4920 values with odds of about 1e-11); exact
    // to 1e-4 with --decrypt-noise 0, and every value moved by the noise.
    let decrypted = |extra: &[&str]| {
        let out = dir.path().join("y.npy");
        json(&crypt("decrypt", &keys, &ct, &out, &[&["--json"], extra].concat()));
        let back = ArrayD::<f64>::read_npy(std::fs::File::open(&out).unwrap()).unwrap();
        assert_eq!(back.shape(), &shape);
        let worst = back
            .iter()
            .zip(&data)
            .map(|(a, b)| (a - f64::from(*b)).abs())
            .fold(0.0, f64::max);
        (back, worst)
    };
    let (flooded, worst) = decrypted(&[]);
    assert!(worst < 8.0 / 16384.0, "worst error {worst} flooded");
    let (exact, worst) = decrypted(&["--decrypt-noise", "0"]);
    assert!(worst < 1e-4, "worst error {worst}");
    assert!(
        flooded.iter().zip(&exact).all(|(f, e)| f != e),
        "a value left unflooded"
    );
    let out = dir.path().join("y.npy");
    let err = String::from_utf8_lossy(&crypt("decrypt", &keys, &ct, &out, &["--decrypt-noise=-1"]).stderr).to_string();
    assert!(err.contains("standard deviation"), "{err}");

    // The wrong secret key is an error, not garbage.
    let other = dir.path().join("other");
    json(&run(&[
        "keygen",
        "--preset",
        "insecure-n12",
        "--out",
        p(&other),
        "--json",
    ]));
    let err = refused(&crypt("decrypt", &other, &ct, &out, &[]));
    assert!(err.contains("another key"), "{err}");
    // Keys of other parameters.
    let n14 = dir.path().join("n14");
    json(&run(&["keygen", "--preset", "n14", "--out", p(&n14), "--json"]));
    let err = refused(&crypt("decrypt", &n14, &ct, &out, &[]));
    assert!(err.contains("parameters"), "{err}");
    // Not an .npy file, a non-finite value, a ciphertext that is not one.
    let err = refused(&crypt("encrypt", &keys, &ct, &out, &[]));
    assert!(err.contains(".npy"), "{err}");
    let nan = dir.path().join("nan.npy");
    ArrayD::from_shape_vec(IxDyn(&[3]), vec![1.0f64, f64::NAN, 2.0])
        .unwrap()
        .write_npy(std::fs::File::create(&nan).unwrap())
        .unwrap();
    let err = refused(&crypt("encrypt", &keys, &nan, &out, &[]));
    assert!(err.contains("not finite"), "{err}");
    refused(&crypt("decrypt", &keys, &input, &out, &[]));
    // The public key file alone cannot decrypt: there is no secret in it.
    let server = dir.path().join("server");
    std::fs::create_dir(&server).unwrap();
    std::fs::copy(keys.join("public.key"), server.join("public.key")).unwrap();
    refused(&crypt("decrypt", &server, &ct, &out, &[]));
}

#[test]
fn selftest_reports_every_operation() {
    let v = json(&run(&[
        "selftest",
        "--preset",
        "insecure-n12",
        "--backend",
        "cpu",
        "--repeats",
        "1",
        "--json",
    ]));
    assert_eq!(v["preset"], "insecure-n12");
    assert_eq!(v["backend"], "cpu");
    let ops = v["ops"].as_array().unwrap();
    for name in [
        "encrypt",
        "decrypt",
        "add",
        "mul_plain_rescale",
        "mul_relin_rescale",
        "rotate",
        "hoisted_rotate_9",
        "rescale",
        "ntt_forward_all_limbs",
    ] {
        let op = ops
            .iter()
            .find(|o| o["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert!(op["median_ms"].as_f64().unwrap() > 0.0);
        if name != "ntt_forward_all_limbs" {
            assert!(op["precision_bits"].as_f64().unwrap() > 15.0, "{name}: {op}");
        }
    }
}

#[test]
fn a_secret_key_under_a_passphrase_opens_only_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let (pass, wrong) = (dir.path().join("pass"), dir.path().join("wrong"));
    std::fs::write(&pass, "open sesame\n").unwrap();
    std::fs::write(&wrong, "open sesame!\n").unwrap();
    let v = json(&run(&[
        "keygen",
        "--preset",
        "insecure-n12",
        "--out",
        p(&keys),
        "--passphrase-file",
        p(&pass),
        "--json",
    ]));
    assert_eq!(v["secret_key_encrypted"], true);
    let input = dir.path().join("x.npy");
    ArrayD::from_shape_vec(IxDyn(&[4]), vec![0.5f64, -1.0, 2.0, 0.25])
        .unwrap()
        .write_npy(std::fs::File::create(&input).unwrap())
        .unwrap();
    let (ct, out) = (dir.path().join("x.ct"), dir.path().join("y.npy"));
    json(&crypt("encrypt", &keys, &input, &ct, &["--json"]));
    let err = refused_with(&crypt("decrypt", &keys, &ct, &out, &[]), 3);
    assert!(err.contains("encrypted under a passphrase"), "{err}");
    let err = refused_with(
        &crypt("decrypt", &keys, &ct, &out, &["--passphrase-file", p(&wrong)]),
        3,
    );
    assert!(err.contains("wrong passphrase"), "{err}");
    let missing = dir.path().join("missing");
    let err = refused_with(
        &crypt("decrypt", &keys, &ct, &out, &["--passphrase-file", p(&missing)]),
        3,
    );
    assert!(err.contains("missing"), "{err}");
    json(&crypt(
        "decrypt",
        &keys,
        &ct,
        &out,
        &["--passphrase-file", p(&pass), "--json"],
    ));
    let back = ArrayD::<f64>::read_npy(std::fs::File::open(&out).unwrap()).unwrap();
    assert!(
        back.iter()
            .zip([0.5, -1.0, 2.0, 0.25])
            .all(|(a, b)| (a - b).abs() < 1e-3),
        "{back}"
    );
}
