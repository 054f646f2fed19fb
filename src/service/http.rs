//! The HTTP API of `latent-he serve` (axum; TLS through rustls).
//!
//! Every `/v1` route takes `Authorization: Bearer TOKEN`; a token sees and
//! uses only its own keys and jobs. Errors are JSON,
//! `{"error": {"kind", "message"}}`, with the HTTP status that says what
//! went wrong; a refused request changes nothing already stored.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | `ok` |
//! | `GET /metrics` | Prometheus text: queue depth, jobs by state, seconds per image, key switches |
//! | `GET /v1/models` | the served models, each with its client bundle (what `keygen --client` takes) |
//! | `POST /v1/keys?model=M&preset=P&batch=B[&fingerprint=F]` | register a public key set (the body: `public.key`); answers its `key_id` |
//! | `GET /v1/keys/ID`, `DELETE /v1/keys/ID` | a registered key |
//! | `POST /v1/jobs?key=ID` | evaluate a ciphertext file (the body) under key ID; answers the `job_id` |
//! | `GET /v1/jobs/ID` | the job's state, progress and reason |
//! | `GET /v1/jobs/ID/output` | its encrypted logits, once done |
//! | `DELETE /v1/jobs/ID` | forget a job that is not running |

use super::engine::Engine;
use super::jobs::{JobRecord, JobState, Registry};
use super::store::{valid_id, KeyRecord, Store};
use super::tokens::Tokens;
use super::{unix_now, ServiceError};
use crate::ckks::serialize::{ciphertexts_file_bytes, peek_header, public_keys_file_bytes, FileKind, HEADER_LEN};
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How `latent-he serve` runs.
pub struct ServeConfig {
    /// The engine over the served models.
    pub engine: Engine,
    /// The state directory ([`Store`]).
    pub state: PathBuf,
    /// The address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// The tokens file; `None` serves without authentication, allowed only
    /// on a loopback address.
    pub tokens: Option<PathBuf>,
    /// Jobs a token may have queued or running at once.
    pub max_queue: usize,
    /// Images one job may hold.
    pub max_images: usize,
    /// Bytes of public keys a token may have registered.
    pub max_key_storage: u64,
    /// A PEM certificate chain and private key: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Stop once no request has come for this long and no job is queued
    /// or running.
    pub idle_exit: Option<Duration>,
    /// Told the bound address once the server listens.
    pub on_listening: Box<dyn FnOnce(SocketAddr) + Send>,
}

/// The owner of requests when the server runs without tokens.
const LOCAL_OWNER: &str = "local";

struct App {
    registry: Arc<Registry>,
    tokens: Option<Tokens>,
    max_queue: usize,
    max_images: usize,
    max_key_storage: u64,
    /// Milliseconds since start of the last request.
    last_request_ms: AtomicU64,
    started: std::time::Instant,
}

/// A refused request: its status, a kind and a message, sent as JSON.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = match self.status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::TOO_MANY_REQUESTS => "too_many",
            _ => "internal",
        };
        (
            self.status,
            Json(json!({"error": {"kind": kind, "message": self.message}})),
        )
            .into_response()
    }
}

type Reply = Result<Response, ApiError>;

/// Serves until the idle limit (if any) passes; blocks the calling thread.
///
/// # Errors
/// A state directory, tokens file or TLS file that cannot be used, an
/// address that cannot be bound, or no tokens on a non-loopback address.
pub fn serve(config: ServeConfig) -> Result<(), ServiceError> {
    let tokens = match &config.tokens {
        Some(path) => {
            let tokens = Tokens::load(path)?;
            if tokens.is_empty() {
                return Err(ServiceError::Config(format!(
                    "{}: no token; add one with `latent-he token new --tokens {} --name NAME`",
                    path.display(),
                    path.display()
                )));
            }
            Some(tokens)
        }
        None if config.listen.ip().is_loopback() => None,
        None => {
            return Err(ServiceError::Config(format!(
                "{} is not a loopback address: serving it needs --tokens",
                config.listen
            )))
        }
    };
    let store = Store::open(&config.state)?;
    let registry = Arc::new(Registry::open(store, Arc::new(config.engine))?);
    let worker = registry.clone();
    std::thread::Builder::new()
        .name("latent-he-worker".into())
        .spawn(move || worker.work())
        .map_err(|e| ServiceError::Config(format!("cannot start the worker: {e}")))?;
    let app = Arc::new(App {
        registry,
        tokens,
        max_queue: config.max_queue,
        max_images: config.max_images,
        max_key_storage: config.max_key_storage,
        last_request_ms: AtomicU64::new(0),
        started: std::time::Instant::now(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
        .map_err(|e| ServiceError::Config(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(run(
        app,
        config.listen,
        config.tls,
        config.idle_exit,
        config.on_listening,
    ))
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models))
        .route("/v1/keys", axum::routing::post(post_key))
        .route("/v1/keys/{id}", get(get_key).delete(delete_key))
        .route("/v1/jobs", axum::routing::post(post_job))
        .route("/v1/jobs/{id}", get(get_job).delete(delete_job))
        .route("/v1/jobs/{id}/output", get(get_output))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(app.clone(), note_request))
        .with_state(app)
}

async fn note_request(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    app.touch();
    let response = next.run(request).await;
    app.touch();
    response
}

impl App {
    fn touch(&self) {
        self.last_request_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// The owner the request's bearer token names.
    fn owner(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let Some(tokens) = &self.tokens else {
            return Ok(LOCAL_OWNER.into());
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "a bearer token is required"))?;
        tokens
            .owner(presented.trim())
            .map(str::to_string)
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown token"))
    }

    /// Key `id` if `owner` registered it.
    fn own_key(&self, owner: &str, id: &str) -> Result<KeyRecord, ApiError> {
        let key = valid_id(id)
            .then(|| self.registry.key(id))
            .flatten()
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no key {id}")))?;
        if key.owner != owner {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("key {id} belongs to another token"),
            ));
        }
        Ok(key)
    }

    /// Job `id` if `owner` submitted it.
    fn own_job(&self, owner: &str, id: &str) -> Result<JobRecord, ApiError> {
        let job = valid_id(id)
            .then(|| self.registry.job(id))
            .flatten()
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no job {id}")))?;
        if job.owner != owner {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("job {id} belongs to another token"),
            ));
        }
        Ok(job)
    }
}

async fn run(
    app: Arc<App>,
    listen: SocketAddr,
    tls: Option<(PathBuf, PathBuf)>,
    idle_exit: Option<Duration>,
    on_listening: Box<dyn FnOnce(SocketAddr) + Send>,
) -> Result<(), ServiceError> {
    let handle = axum_server::Handle::new();
    if let Some(limit) = idle_exit {
        let (app, handle) = (app.clone(), handle.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let since = app.started.elapsed().as_millis() as u64 - app.last_request_ms.load(Ordering::Relaxed);
                if since >= limit.as_millis() as u64 && app.registry.idle() {
                    handle.graceful_shutdown(Some(Duration::from_secs(5)));
                    return;
                }
            }
        });
    }
    {
        let handle = handle.clone();
        tokio::spawn(async move {
            if let Some(addr) = handle.listening().await {
                on_listening(addr);
            }
        });
    }
    let service = router(app).into_make_service();
    let served = match tls {
        Some((cert, key)) => {
            super::install_crypto_provider();
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                .await
                .map_err(|e| ServiceError::Config(format!("TLS with {} and {}: {e}", cert.display(), key.display())))?;
            axum_server::bind_rustls(listen, config)
                .handle(handle)
                .serve(service)
                .await
        }
        None => axum_server::bind(listen).handle(handle).serve(service).await,
    };
    served.map_err(|e| ServiceError::Config(format!("{listen}: {e}")))
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let (queued, states, totals) = app.registry.counts();
    let mut text = String::new();
    text.push_str("# HELP latent_he_queue_depth Jobs waiting for the worker.\n# TYPE latent_he_queue_depth gauge\n");
    text.push_str(&format!("latent_he_queue_depth {queued}\n"));
    text.push_str("# HELP latent_he_jobs Jobs known, by state.\n# TYPE latent_he_jobs gauge\n");
    for (state, n) in states {
        let name = serde_json::to_value(state).expect("states serialize");
        text.push_str(&format!("latent_he_jobs{{state={name}}} {n}\n"));
    }
    text.push_str(
        "# HELP latent_he_images_total Images evaluated since start.\n# TYPE latent_he_images_total counter\n",
    );
    text.push_str(&format!("latent_he_images_total {}\n", totals.images));
    text.push_str(
        "# HELP latent_he_evaluation_seconds_total Seconds of evaluation since start.\n\
         # TYPE latent_he_evaluation_seconds_total counter\n",
    );
    text.push_str(&format!("latent_he_evaluation_seconds_total {}\n", totals.seconds));
    text.push_str(
        "# HELP latent_he_seconds_per_image Evaluation seconds per image since start.\n\
         # TYPE latent_he_seconds_per_image gauge\n",
    );
    let per_image = if totals.images == 0 {
        0.0
    } else {
        totals.seconds / totals.images as f64
    };
    text.push_str(&format!("latent_he_seconds_per_image {per_image}\n"));
    text.push_str(
        "# HELP latent_he_key_switches_total Key switches evaluated since start.\n\
         # TYPE latent_he_key_switches_total counter\n",
    );
    text.push_str(&format!("latent_he_key_switches_total {}\n", totals.key_switches));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn models(State(app): State<Arc<App>>, headers: HeaderMap) -> Reply {
    app.owner(&headers)?;
    let engine = app.registry.engine();
    let models = engine
        .names()
        .map(|name| {
            let bundle = engine.bundle(name).map_err(ApiError::internal)?;
            Ok(json!({"name": name, "model": bundle.binding.model, "bundle": bundle}))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let (backend, adapter) = engine.backend();
    Ok(Json(json!({"models": models, "backend": backend, "adapter": adapter})).into_response())
}

/// `?model=M&preset=P&batch=B&fingerprint=F` of a key registration
/// (`fingerprint`: the model's the keys were made for, optional).
#[derive(Deserialize)]
struct KeyQuery {
    model: String,
    preset: String,
    fingerprint: Option<String>,
    #[serde(default = "one")]
    batch: usize,
}

fn one() -> usize {
    1
}

/// The declared length of the body, refused past `cap` before any byte is read.
fn declared_length(headers: &HeaderMap, cap: u64) -> Result<(), ApiError> {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match length {
        Some(n) if n > cap => Err(too_large(cap)),
        _ => Ok(()),
    }
}

fn too_large(cap: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is longer than the {cap} bytes accepted here"),
    )
}

/// Streams `body` to a new upload file (at most `cap` bytes), refusing it
/// before writing anything unless its header is of `kind`; returns the
/// file, its length and its BLAKE3.
async fn receive(app: &App, body: Body, cap: u64, kind: FileKind) -> Result<(PathBuf, u64, blake3::Hash), ApiError> {
    let path = app.registry.store().upload_path();
    let result = receive_into(&path, body, cap, kind).await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&path).await;
    }
    result.map(|(len, hash)| (path, len, hash))
}

async fn receive_into(path: &Path, body: Body, cap: u64, kind: FileKind) -> Result<(u64, blake3::Hash), ApiError> {
    let mut stream = body.into_data_stream();
    let mut head: Vec<u8> = Vec::with_capacity(HEADER_LEN);
    let mut file: Option<tokio::fs::File> = None;
    let (mut len, mut hasher) = (0u64, blake3::Hasher::new());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad(format!("the body could not be read: {e}")))?;
        len += chunk.len() as u64;
        if len > cap {
            return Err(too_large(cap));
        }
        hasher.update(&chunk);
        let rest = if file.is_none() {
            let take = (HEADER_LEN - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
            if head.len() < HEADER_LEN {
                continue;
            }
            if let Err(refusal) = check_kind(&head, kind) {
                // Read the rest (within the cap, without keeping it) so that
                // the client, still sending, hears the refusal.
                while let Some(Ok(chunk)) = stream.next().await {
                    len += chunk.len() as u64;
                    if len > cap {
                        break;
                    }
                }
                return Err(refusal);
            }
            let mut f = tokio::fs::File::create(path).await.map_err(ApiError::internal)?;
            f.write_all(&head).await.map_err(ApiError::internal)?;
            file = Some(f);
            chunk.slice(take..)
        } else {
            chunk
        };
        if let Some(f) = file.as_mut() {
            f.write_all(&rest).await.map_err(ApiError::internal)?;
        }
    }
    let Some(f) = file else {
        return Err(ApiError::bad(format!(
            "the body ({len} bytes) is shorter than a {} file's header",
            kind.name()
        )));
    };
    f.sync_all().await.map_err(ApiError::internal)?;
    Ok((len, hasher.finalize()))
}

/// Refuses a header that is not of `kind`; a secret key in words of its own.
fn check_kind(head: &[u8], kind: FileKind) -> Result<(), ApiError> {
    let header = peek_header(head).map_err(|e| ApiError::bad(e.to_string()))?;
    match header.kind {
        k if k == kind => Ok(()),
        FileKind::SecretKey => Err(ApiError::bad(
            "refused: the body is a secret key; the server takes only the public key set (public.key), \
             and never stored a byte of this one",
        )),
        other => Err(ApiError::bad(format!(
            "the body is a {other} file, not a {}",
            kind.name()
        ))),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)
}

/// Most bytes of a refused body read (and dropped) before the refusal is
/// sent, so that a client still sending hears it instead of a reset.
const DRAIN_LIMIT: u64 = 64 << 20;

/// `refusal`, after reading what is left of `body` up to [`DRAIN_LIMIT`]
/// (none for a body refused for its declared length).
async fn drained(body: Body, refusal: ApiError) -> ApiError {
    if refusal.status != StatusCode::PAYLOAD_TOO_LARGE {
        let mut stream = body.into_data_stream();
        let mut read = 0u64;
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len() as u64;
            if read > DRAIN_LIMIT {
                break;
            }
        }
    }
    refusal
}

/// The checks of a key registration that need no body: the owner, the
/// model and its plan, the declared length and the owner's storage.
/// Returns the owner and the exact size of the key file.
fn key_upload_limits(app: &App, headers: &HeaderMap, q: &KeyQuery) -> Result<(String, u64), ApiError> {
    let owner = app.owner(headers)?;
    let engine = app.registry.engine();
    let planned = engine.planned(&q.model, q.batch, &q.preset).map_err(|e| {
        let status = if engine.names().any(|n| n == q.model) {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::NOT_FOUND
        };
        ApiError::new(status, e)
    })?;
    let cap = public_keys_file_bytes(planned.params(), &planned.plan().key_levels()) as u64;
    declared_length(headers, cap)?;
    let used = app.registry.key_bytes(&owner);
    if used + cap > app.max_key_storage {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "this token's key storage is full: {used} of {} bytes used, a key for {} takes {cap}",
                app.max_key_storage, q.model
            ),
        ));
    }
    Ok((owner, cap))
}

async fn post_key(State(app): State<Arc<App>>, headers: HeaderMap, Query(q): Query<KeyQuery>, body: Body) -> Reply {
    let (owner, cap) = match key_upload_limits(&app, &headers, &q) {
        Ok(limits) => limits,
        Err(refusal) => return Err(drained(body, refusal).await),
    };
    let (upload, bytes, hash) = receive(&app, body, cap, FileKind::PublicKeys).await?;
    let id = crate::ckks::params::hex(&hash.as_bytes()[..16]);
    if let Some(existing) = app.registry.key(&id) {
        let _ = tokio::fs::remove_file(&upload).await;
        if existing.owner != owner {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "these keys are registered by another token",
            ));
        }
        return Ok((StatusCode::OK, Json(json!({"key_id": id, "registered": false}))).into_response());
    }
    let registry = app.registry.clone();
    let (model, batch, preset, path) = (q.model.clone(), q.batch, q.preset.clone(), upload.clone());
    let fingerprint = q.fingerprint.clone();
    let checked = blocking(move || {
        registry
            .engine()
            .check_keys(&model, batch, &preset, fingerprint.as_deref(), &path)
    })
    .await?;
    if let Err(reason) = checked {
        let _ = tokio::fs::remove_file(&upload).await;
        return Err(ApiError::bad(reason));
    }
    let record = KeyRecord {
        id: id.clone(),
        owner,
        model: q.model,
        batch: q.batch,
        preset: q.preset,
        bytes,
        created_unix: unix_now(),
    };
    let registry = app.registry.clone();
    blocking(move || registry.add_key(&upload, record))
        .await?
        .map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(json!({"key_id": id, "registered": true}))).into_response())
}

async fn get_key(State(app): State<Arc<App>>, headers: HeaderMap, UrlPath(id): UrlPath<String>) -> Reply {
    let owner = app.owner(&headers)?;
    Ok(Json(app.own_key(&owner, &id)?).into_response())
}

async fn delete_key(State(app): State<Arc<App>>, headers: HeaderMap, UrlPath(id): UrlPath<String>) -> Reply {
    let owner = app.owner(&headers)?;
    app.own_key(&owner, &id)?;
    if !app.registry.remove_key(&id).map_err(ApiError::internal)? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("jobs under key {id} are queued or running"),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `?key=ID` of a job submission.
#[derive(Deserialize)]
struct JobQuery {
    key: String,
}

/// The checks of a job submission that need no body: the owner, the key
/// and the owner's queue, the declared length. Returns the owner, the key
/// and the largest ciphertext file a job may send.
fn job_upload_limits(app: &App, headers: &HeaderMap, q: &JobQuery) -> Result<(String, KeyRecord, u64), ApiError> {
    let owner = app.owner(headers)?;
    let key = app.own_key(&owner, &q.key)?;
    if app.registry.active_jobs(&owner) >= app.max_queue {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "this token has {} jobs queued or running, the most allowed",
                app.max_queue
            ),
        ));
    }
    let planned = app
        .registry
        .engine()
        .planned(&key.model, key.batch, &key.preset)
        .map_err(ApiError::internal)?;
    let sets = app.max_images.div_ceil(planned.plan().batch());
    let cap = ciphertexts_file_bytes(
        planned.params(),
        planned.params().max_level(),
        sets * planned.plan().input().cts(),
        4,
    ) as u64;
    declared_length(headers, cap)?;
    Ok((owner, key, cap))
}

async fn post_job(State(app): State<Arc<App>>, headers: HeaderMap, Query(q): Query<JobQuery>, body: Body) -> Reply {
    let (owner, key, cap) = match job_upload_limits(&app, &headers, &q) {
        Ok(limits) => limits,
        Err(refusal) => return Err(drained(body, refusal).await),
    };
    let (upload, _, _) = receive(&app, body, cap, FileKind::Ciphertexts).await?;
    let registry = app.registry.clone();
    let (checked_key, key_path, path) = (key.clone(), app.registry.key_path(&key.id), upload.clone());
    let checked = blocking(move || registry.engine().check_input(&checked_key, &key_path, &path)).await?;
    let info = match checked {
        Ok(info) if info.images <= app.max_images => info,
        Ok(info) => {
            let _ = tokio::fs::remove_file(&upload).await;
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{} images; a job holds at most {}", info.images, app.max_images),
            ));
        }
        Err(reason) => {
            let _ = tokio::fs::remove_file(&upload).await;
            return Err(ApiError::bad(reason));
        }
    };
    let record = JobRecord {
        id: super::random_hex(16),
        owner,
        model: key.model.clone(),
        key_id: key.id.clone(),
        images: info.images,
        sets: info.sets,
        state: JobState::Queued,
        sets_done: 0,
        reason: None,
        attempts: 0,
        created_unix: unix_now(),
        seconds: None,
    };
    let reply = json!({"job_id": record.id, "images": record.images});
    let registry = app.registry.clone();
    blocking(move || registry.submit(&upload, record))
        .await?
        .map_err(ApiError::internal)?;
    Ok((StatusCode::ACCEPTED, Json(reply)).into_response())
}

async fn get_job(State(app): State<Arc<App>>, headers: HeaderMap, UrlPath(id): UrlPath<String>) -> Reply {
    let owner = app.owner(&headers)?;
    Ok(Json(app.own_job(&owner, &id)?).into_response())
}

async fn get_output(State(app): State<Arc<App>>, headers: HeaderMap, UrlPath(id): UrlPath<String>) -> Reply {
    let owner = app.owner(&headers)?;
    let job = app.own_job(&owner, &id)?;
    if job.state != JobState::Done {
        let state = serde_json::to_value(job.state).expect("states serialize");
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job {id} is {state}, not done"),
        ));
    }
    let bytes = tokio::fs::read(app.registry.output_path(&id))
        .await
        .map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

async fn delete_job(State(app): State<Arc<App>>, headers: HeaderMap, UrlPath(id): UrlPath<String>) -> Reply {
    let owner = app.owner(&headers)?;
    app.own_job(&owner, &id)?;
    if !app.registry.remove_job(&id).map_err(ApiError::internal)? {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("job {id} is running")));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
