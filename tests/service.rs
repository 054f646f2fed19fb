//! `latent-he serve`, `token new` and `client infer` through the binary: a
//! server on a loopback port (started here, stopped by its pid or its idle
//! limit), clients with their own keys; decrypted logits against the
//! plaintext forward pass; refusals with their HTTP status; a restart after
//! SIGKILL.

use ndarray::Array4;
use ndarray_npy::write_npy;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{json, latent_he, matrix, max_diff, temp_dir};

const PRESET: &str = "insecure-n12-deep";

/// A served folder holding the small ResNet20 (2x8x8 latent) as `small`.
fn models_dir(dir: &Path) -> (PathBuf, PathBuf) {
    let made = dir.join("made");
    std::fs::create_dir_all(&made).unwrap();
    let (model, _) = common::small_resnet(&made, 4);
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let served = models.join("small.safetensors");
    std::fs::rename(model, &served).unwrap();
    (models, served)
}

/// What every test here starts from: a printed random seed, a fresh folder
/// with the served models (`models_dir`), and the paths of the server's
/// state folder and tokens file in it.
struct Setup {
    seed: u64,
    dir: PathBuf,
    models: PathBuf,
    model: PathBuf,
    state: PathBuf,
    tokens: PathBuf,
}

impl Setup {
    fn new(tag: &str) -> Self {
        let seed = common::seed();
        let dir = temp_dir(tag);
        let (models, model) = models_dir(&dir);
        let (state, tokens) = (dir.join("state"), dir.join("tokens"));
        Self {
            seed,
            dir,
            models,
            model,
            state,
            tokens,
        }
    }
}

/// `images` random latents for the small model, from `seed`.
fn latents(dir: &Path, name: &str, images: usize, seed: u64) -> PathBuf {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let x = Array4::<f32>::from_shape_simple_fn((images, 2, 8, 8), || rng.gen_range(-1.0..1.0));
    let path = dir.join(name);
    write_npy(&path, &x).unwrap();
    path
}

fn token(tokens: &Path, name: &str) -> String {
    let made = json(&latent_he(&[
        "token",
        "new",
        "--tokens",
        &tokens.display().to_string(),
        "--name",
        name,
        "--json",
    ]));
    assert_eq!(made["name"], name);
    made["token"].as_str().unwrap().to_string()
}

fn keygen(model: &Path, out: &Path) {
    json(&latent_he(&[
        "keygen",
        "--model",
        &model.display().to_string(),
        "--preset",
        PRESET,
        "--out",
        &out.display().to_string(),
        "--json",
    ]));
}

/// A running `serve`, killed by its pid when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(models: &Path, state: &Path, tokens: &Path, max_queue: usize) -> Self {
        Self::start_with(models, state, tokens, max_queue, &[])
    }

    /// [`Self::start`] with more flags.
    fn start_with(models: &Path, state: &Path, tokens: &Path, max_queue: usize, more: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_latent-he"))
            .args([
                "serve",
                "--models",
                &models.display().to_string(),
                "--state",
                &state.display().to_string(),
                "--tokens",
                &tokens.display().to_string(),
                "--listen",
                "127.0.0.1:0",
                "--allow-insecure",
                "--backend",
                "cpu",
                "--max-queue",
                &max_queue.to_string(),
                "--idle-exit",
                "120",
                "--json",
            ])
            .args(more)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let started: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("serve printed {line:?}: {e}"));
        let url = started["url"].as_str().unwrap().to_string();
        assert!(
            url.starts_with("http://127.0.0.1:") || url.starts_with("https://127.0.0.1:"),
            "{url}"
        );
        Self { child, url }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn client_infer(server: &Server, token: &str, keys: &Path, input: &Path) -> std::process::Output {
    client_infer_with(server, token, keys, input, &[])
}

fn client_infer_with(server: &Server, token: &str, keys: &Path, input: &Path, more: &[&str]) -> std::process::Output {
    let (keys, input) = (keys.display().to_string(), input.display().to_string());
    let mut args = vec![
        "client",
        "infer",
        "--server",
        &server.url,
        "--token",
        token,
        "--keys",
        &keys,
        "--model",
        "small",
        "--input",
        &input,
        "--json",
    ];
    args.extend_from_slice(more);
    latent_he(&args)
}

/// A self-signed certificate for 127.0.0.1 and its key, as PEM files in `dir`.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// No file under the state folder is a secret key (by name or by header).
fn assert_no_secret(state: &Path) {
    let secret = latent_he::ckks::serialize::FileKind::SecretKey;
    for file in files_under(state) {
        let bytes = std::fs::read(&file).unwrap();
        let kind = latent_he::ckks::serialize::peek_header(&bytes).map(|h| h.kind);
        assert!(kind.ok() != Some(secret), "{} is a secret key", file.display());
        assert!(!file.to_string_lossy().contains("secret"), "{}", file.display());
    }
}

#[test]
fn a_client_gets_the_plaintext_logits_through_the_server_which_never_sees_a_secret() {
    let Setup {
        seed,
        dir,
        models,
        model,
        state,
        tokens,
    } = Setup::new("serve");
    let alice = token(&tokens, "alice");
    // Over TLS, with a certificate the client trusts through --ca-cert.
    let (cert, key) = self_signed(&dir);
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let server = Server::start_with(
        &models,
        &state,
        &tokens,
        4,
        &["--tls-cert", &cert_s, "--tls-key", &key_s],
    );
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let keys = dir.join("keys");
    keygen(&model, &keys);
    let input = latents(&dir, "x.npy", 2, seed);
    let untrusted = client_infer(&server, &alice, &keys, &input);
    assert!(
        !untrusted.status.success(),
        "a certificate nobody vouches for was accepted"
    );
    let trusted = ["--ca-cert", cert_s.as_str()];
    let got = json(&client_infer_with(&server, &alice, &keys, &input, &trusted));
    let plain = json(&latent_he(&[
        "predict",
        "--model",
        &model.display().to_string(),
        "--input",
        &input.display().to_string(),
        "--json",
    ]));
    assert_eq!(got["classes"], plain["classes"]);
    let err = max_diff(&matrix(&got["logits"]), &matrix(&plain["logits"]));
    assert!(err < 1e-3, "served logits differ from plaintext by {err}");
    // The served bundle is `export-client`'s for the served file.
    let remote =
        latent_he::service::client::RemoteServer::new(&server.url, Some(alice.clone()), Some(cert.as_path())).unwrap();
    let served = remote.models().unwrap();
    let exported = dir.join("client.json");
    json(&latent_he(&[
        "export-client",
        "--model",
        &model.display().to_string(),
        "--out",
        &exported.display().to_string(),
        "--json",
    ]));
    let exported: serde_json::Value = serde_json::from_slice(&std::fs::read(&exported).unwrap()).unwrap();
    assert_eq!(served["models"][0]["name"], "small");
    assert_eq!(served["models"][0]["bundle"], exported);
    // A second call reuses the registered key.
    let again = json(&client_infer_with(&server, &alice, &keys, &input, &trusted));
    assert_eq!(again["key_id"], got["key_id"]);
    assert_ne!(again["job_id"], got["job_id"]);
    assert_no_secret(&state);
    drop(server);
    std::fs::remove_dir_all(&dir).ok();
}

fn predict(model: &Path, input: &Path) -> Vec<Vec<f64>> {
    matrix(
        &json(&latent_he(&[
            "predict",
            "--model",
            &model.display().to_string(),
            "--input",
            &input.display().to_string(),
            "--json",
        ]))["logits"],
    )
}

fn encrypt(keys: &Path, input: &Path, out: &Path) {
    json(&latent_he(&[
        "encrypt",
        "--keys",
        &keys.display().to_string(),
        "--input",
        &input.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--json",
    ]));
}

/// Raw requests to a server, for the refusals a client would never send.
struct Api {
    http: reqwest::blocking::Client,
    base: String,
}

impl Api {
    fn new(server: &Server) -> Self {
        latent_he::service::install_crypto_provider();
        Self {
            http: reqwest::blocking::Client::new(),
            base: server.url.clone(),
        }
    }

    /// `method path` with `token` and `body`: `(status, body as JSON or Null)`.
    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Vec<u8>>) -> (u16, serde_json::Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.body(b);
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        let text = response.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// Asserts that `method path` is refused with `status` and a JSON error
    /// with a message.
    fn refused(&self, method: &str, path: &str, token: Option<&str>, body: Option<Vec<u8>>, status: u16, what: &str) {
        let (got, reply) = self.call(method, path, token, body);
        assert_eq!(got, status, "{what}: {reply}");
        assert!(
            reply["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {reply}"
        );
    }
}

/// Declares a body far past any cap and sends none: the server must answer
/// from the headers alone.
fn declared_oversize(url: &str, path_and_query: &str, token: &str) -> u16 {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        stream,
        "POST {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 1000000000000\r\n\r\n"
    )
    .unwrap();
    let mut reply = [0u8; 64];
    let n = stream.read(&mut reply).unwrap();
    let line = String::from_utf8_lossy(&reply[..n]).to_string();
    line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Downloads done job `job`, decrypts it with the keys in `keys` and checks
/// the logits against `model`'s plaintext ones on `input`, within 1e-3.
fn assert_job_output_matches(
    remote: &latent_he::service::client::RemoteServer,
    job: &str,
    keys: &Path,
    dir: &Path,
    model: &Path,
    input: &Path,
) {
    let out = dir.join(format!("{job}.ct"));
    remote.download(job, &out).unwrap();
    let decrypted = json(&latent_he(&[
        "decrypt",
        "--keys",
        &keys.display().to_string(),
        "--input",
        &out.display().to_string(),
        "--json",
    ]));
    let err = max_diff(&matrix(&decrypted["logits"]), &predict(model, input));
    assert!(err < 1e-3, "job {job}: logits off by {err}");
}

#[test]
fn bad_requests_are_refused_with_their_status_and_the_server_goes_on() {
    let Setup {
        seed,
        dir,
        models,
        model,
        state,
        tokens,
    } = Setup::new("serve-bad");
    let (alice, bob) = (token(&tokens, "alice"), token(&tokens, "bob"));
    let server = Server::start(&models, &state, &tokens, 1);
    let (keys_a, keys_b) = (dir.join("keys_a"), dir.join("keys_b"));
    keygen(&model, &keys_a);
    keygen(&model, &keys_b);
    let input = latents(&dir, "x.npy", 2, seed);
    let (ct_a, ct_b) = (dir.join("a.ct"), dir.join("b.ct"));
    encrypt(&keys_a, &input, &ct_a);
    encrypt(&keys_b, &input, &ct_b);
    let api = Api::new(&server);
    let keys_path = format!("/v1/keys?model=small&preset={PRESET}&batch=1");
    let public_a = std::fs::read(keys_a.join("public.key")).unwrap();
    let (a, b) = (Some(alice.as_str()), Some(bob.as_str()));

    api.refused("GET", "/v1/models", None, None, 401, "no token");
    api.refused("GET", "/v1/models", Some("lhe_0123"), None, 401, "unknown token");
    let secret = std::fs::read(keys_a.join("secret.key")).unwrap();
    api.refused("POST", &keys_path, a, Some(secret), 400, "a secret key");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let garbage: Vec<u8> = (0..100_000).map(|_| rng.gen()).collect();
    api.refused("POST", &keys_path, a, Some(garbage), 400, "garbage keys");
    let mut damaged = public_a.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 1;
    api.refused("POST", &keys_path, a, Some(damaged), 400, "a flipped bit");
    let other_model = format!("/v1/keys?model=other&preset={PRESET}");
    api.refused("POST", &other_model, a, Some(public_a.clone()), 404, "an unknown model");
    let other_weights = format!("{keys_path}&fingerprint=blake3:{}", "0".repeat(64));
    api.refused(
        "POST",
        &other_weights,
        a,
        Some(public_a.clone()),
        400,
        "keys made for other weights",
    );
    assert_eq!(
        declared_oversize(&server.url, &keys_path, &alice),
        413,
        "a declared length past the key's size"
    );
    let (status, made) = api.call("POST", &keys_path, a, Some(public_a.clone()));
    assert_eq!(status, 201, "{made}");
    let key = made["key_id"].as_str().unwrap().to_string();
    let (status, again) = api.call("POST", &keys_path, a, Some(public_a));
    assert_eq!((status, &again["key_id"]), (200, &made["key_id"]), "{again}");
    api.refused("GET", &format!("/v1/keys/{key}"), b, None, 403, "another token's key");
    let jobs_path = format!("/v1/jobs?key={key}");
    let ct = std::fs::read(&ct_a).unwrap();
    api.refused(
        "POST",
        &jobs_path,
        b,
        Some(ct.clone()),
        403,
        "a job under another token's key",
    );
    let truncated = ct[..ct.len() / 2].to_vec();
    api.refused("POST", &jobs_path, a, Some(truncated), 400, "a truncated ciphertext");
    let foreign = std::fs::read(&ct_b).unwrap();
    api.refused(
        "POST",
        &jobs_path,
        a,
        Some(foreign),
        400,
        "a ciphertext under another key",
    );
    assert_eq!(
        declared_oversize(&server.url, &jobs_path, &alice),
        413,
        "an oversized job"
    );
    let (status, job) = api.call("POST", &jobs_path, a, Some(ct.clone()));
    assert_eq!(status, 202, "{job}");
    let job = job["job_id"].as_str().unwrap().to_string();
    api.refused("POST", &jobs_path, a, Some(ct), 429, "past --max-queue 1");
    api.refused(
        "GET",
        &format!("/v1/jobs/{job}/output"),
        a,
        None,
        409,
        "the output of a job not done",
    );
    api.refused("GET", &format!("/v1/jobs/{job}"), b, None, 403, "another token's job");
    let unknown = format!("/v1/jobs/{}", "0".repeat(32));
    api.refused("GET", &unknown, a, None, 404, "an unknown job");
    api.refused(
        "DELETE",
        &format!("/v1/keys/{key}"),
        a,
        None,
        409,
        "a key with a job queued",
    );
    // The server goes on: the accepted job finishes and decrypts.
    let remote = latent_he::service::client::RemoteServer::new(&server.url, Some(alice.clone()), None).unwrap();
    remote.wait(&job, &mut |_| {}).unwrap();
    assert_job_output_matches(&remote, &job, &keys_a, &dir, &model, &input);
    let response = api.http.get(format!("{}/metrics", api.base)).send().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let metrics = response.text().unwrap();
    assert!(metrics.contains("latent_he_jobs{state=\"done\"} 1"), "{metrics}");
    assert!(metrics.contains("latent_he_images_total 2"), "{metrics}");
    assert_no_secret(&state);
    drop(server);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn eight_clients_at_once_each_decrypt_their_own_results() {
    let Setup {
        seed,
        dir,
        models,
        model,
        state,
        tokens,
    } = Setup::new("serve-eight");
    let clients: Vec<(String, PathBuf, PathBuf)> = (0..8)
        .map(|i| {
            let keys = dir.join(format!("keys{i}"));
            keygen(&model, &keys);
            let input = latents(&dir, &format!("x{i}.npy"), 2, seed.wrapping_add(i));
            (token(&tokens, &format!("client{i}")), keys, input)
        })
        .collect();
    let server = Server::start(&models, &state, &tokens, 4);
    let results: Vec<std::process::Output> = std::thread::scope(|scope| {
        let running: Vec<_> = clients
            .iter()
            .map(|(token, keys, input)| scope.spawn(|| client_infer(&server, token, keys, input)))
            .collect();
        running.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, ((_, _, input), out)) in clients.iter().zip(&results).enumerate() {
        let got = json(out);
        let err = max_diff(&matrix(&got["logits"]), &predict(&model, input));
        assert!(err < 1e-3, "client {i}: logits off by {err}");
    }
    drop(server);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_job_running_when_the_server_is_killed_ends_done_after_a_restart() {
    let Setup {
        seed,
        dir,
        models,
        model,
        state,
        tokens,
    } = Setup::new("serve-kill");
    let alice = token(&tokens, "alice");
    let keys = dir.join("keys");
    keygen(&model, &keys);
    let input = latents(&dir, "x.npy", 6, seed);
    let ct = dir.join("x.ct");
    encrypt(&keys, &input, &ct);
    let mut server = Server::start(&models, &state, &tokens, 4);
    let remote = latent_he::service::client::RemoteServer::new(&server.url, Some(alice.clone()), None).unwrap();
    let key = remote
        .ensure_keys("small", 1, PRESET, None, &keys.join("public.key"))
        .unwrap()
        .key_id;
    let job = remote.submit(&key, &ct).unwrap();
    let start = Instant::now();
    while remote.job(&job).unwrap().state != latent_he::service::jobs::JobState::Running {
        assert!(start.elapsed() < Duration::from_secs(60), "the job never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill();
    let server = Server::start(&models, &state, &tokens, 4);
    let remote = latent_he::service::client::RemoteServer::new(&server.url, Some(alice), None).unwrap();
    assert_eq!(
        remote
            .ensure_keys("small", 1, PRESET, None, &keys.join("public.key"))
            .unwrap()
            .key_id,
        key
    );
    let done = remote.wait(&job, &mut |_| {}).unwrap();
    assert_eq!(done.attempts, 2, "{done:?}");
    assert_job_output_matches(&remote, &job, &keys, &dir, &model, &input);
    drop(server);
    std::fs::remove_dir_all(&dir).ok();
}

/// `score --encrypted` with `latents` (a data set of the small model's
/// latents, labels for its 4 classes) into `out`, keys cached under
/// `cache`, plus `extra`.
fn score(cache: &Path, model: &Path, latents: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_latent-he"))
        .env("LATENT_HE_CACHE_DIR", cache)
        .env_remove("LATENT_HE_TOKEN")
        .args([
            "score",
            "--dataset",
            "latents",
            "--root",
            &latents.display().to_string(),
            "--model",
            &model.display().to_string(),
            "--encrypted",
            "--preset",
            PRESET,
            "--backend",
            "cpu",
            "--out",
            &out.display().to_string(),
            "--json",
        ])
        .args(extra)
        .output()
        .unwrap();
    json(&output)
}

/// A results file's rows (header first).
fn results(out: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(out.join("results.csv"))
        .unwrap()
        .lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// The columns of `rows` (header first) whose name starts with `group:`,
/// as numbers, one row per image.
fn group(rows: &[Vec<String>], group: &str) -> Vec<Vec<f64>> {
    let cols: Vec<usize> = (0..rows[0].len())
        .filter(|&c| rows[0][c].starts_with(&format!("{group}:")))
        .collect();
    rows[1..]
        .iter()
        .map(|r| cols.iter().map(|&c| r[c].parse().unwrap()).collect())
        .collect()
}

#[test]
fn score_through_a_server_agrees_with_the_local_encrypted_run_and_resumes() {
    let Setup {
        seed,
        dir,
        models,
        model,
        state,
        tokens,
    } = Setup::new("score-remote");
    let cache = dir.join("cache");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::rename(latents(&dir, "x.npy", 5, seed), data.join("latents.npy")).unwrap();
    let labels: String = (0..5)
        .map(|i| {
            let row: Vec<&str> = (0..4).map(|j| if (i + j) % 2 == 0 { "1" } else { "0" }).collect();
            row.join(",") + "\n"
        })
        .collect();
    std::fs::write(
        data.join("labels.csv"),
        format!("class_0,class_1,class_2,class_3\n{labels}"),
    )
    .unwrap();
    let alice = token(&tokens, "alice");
    let server = Server::start(&models, &state, &tokens, 4);

    let (local_out, remote_out) = (dir.join("local"), dir.join("remote"));
    let local = score(&cache, &model, &data, &local_out, &[]);
    let remote_args = ["--server", server.url.as_str(), "--token", alice.as_str()];
    let remote = score(&cache, &model, &data, &remote_out, &remote_args);

    let (local_rows, remote_rows) = (results(&local_out), results(&remote_out));
    assert_eq!(local_rows.len(), 6);
    let names = |rows: &[Vec<String>]| rows.iter().map(|r| r[0].clone()).collect::<Vec<_>>();
    assert_eq!(names(&remote_rows), names(&local_rows));
    assert_eq!(group(&remote_rows, "label"), group(&local_rows, "label"));
    assert_eq!(group(&remote_rows, "plain"), group(&local_rows, "plain"));
    let err = max_diff(&group(&remote_rows, "he"), &group(&local_rows, "he"));
    assert!(
        err < 1e-3,
        "served probabilities differ from the local encrypted ones by {err}"
    );
    for key in ["images", "failed"] {
        assert_eq!(remote[key], local[key], "{key}");
    }
    assert_eq!(remote["images"], 5);
    assert_eq!(local["backend"], "cpu");
    assert!(local["server"].is_null(), "{local}");
    assert_eq!(remote["backend"], "remote:cpu");
    assert_eq!(remote["server"]["url"], server.url.as_str());
    assert_eq!(remote["server"]["model"], "small");
    assert_eq!(remote["server"]["backend"], "cpu");
    let md = std::fs::read_to_string(remote_out.join("summary.md")).unwrap();
    assert!(md.contains(&server.url), "{md}");

    // A second call resumes: nothing is left to score, nothing is sent.
    latent_he::service::install_crypto_provider();
    let http = reqwest::blocking::Client::new();
    let images_evaluated = || {
        let text = http
            .get(format!("{}/metrics", server.url))
            .send()
            .unwrap()
            .text()
            .unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("latent_he_images_total "))
            .map(str::to_string);
        line.unwrap_or_else(|| panic!("no images total in {text}"))
    };
    let before = images_evaluated();
    assert_eq!(before, "latent_he_images_total 5");
    let again = score(&cache, &model, &data, &remote_out, &remote_args);
    assert_eq!(again["images"], 5);
    assert_eq!(results(&remote_out), remote_rows);
    assert_eq!(images_evaluated(), before, "the resumed call sent no job");
    let sessions = std::fs::read_to_string(remote_out.join("sessions.csv")).unwrap();
    let last: Vec<&str> = sessions.lines().last().unwrap().split(',').collect();
    assert_eq!(last[1], "remote:cpu");
    assert_eq!(last[2], server.url);
    assert_eq!(last[5], "0", "the resumed call had nothing to score: {sessions}");

    // A model the server does not serve is refused by name, before any job.
    let output = Command::new(env!("CARGO_BIN_EXE_latent-he"))
        .env("LATENT_HE_CACHE_DIR", &cache)
        .args(["score", "--dataset", "latents", "--root", &data.display().to_string()])
        .args([
            "--model",
            &model.display().to_string(),
            "--encrypted",
            "--preset",
            PRESET,
        ])
        .args(["--backend", "cpu", "--out", &dir.join("other").display().to_string()])
        .args(["--server", &server.url, "--token", &alice, "--server-model", "absent"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("does not serve a model `absent`"), "{stderr}");
    assert_eq!(images_evaluated(), before);
    assert_no_secret(&state);
    drop(server);
    std::fs::remove_dir_all(&dir).ok();
}
