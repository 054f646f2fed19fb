//! `Server`: a model holding one client's public keys, answering its
//! ciphertexts; `RemoteServer`: the same on a running `latent-he serve`.
//! Neither reads a secret key or holds one.

use crate::errors::{input, to_py};
use crate::model::Model;
use crate::progress::Progress;
use latent_he::pipeline::{BackendKind, Chosen, KeyedServer, RemoteConfig, RemoteKeyed};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::path::PathBuf;

/// A model with one client's public keys on a backend.
#[pyclass(module = "latent_he._native", frozen)]
pub struct Server {
    server: KeyedServer,
    progress: Progress,
}

/// The backend a name asks for (`auto`: none, the pipeline decides).
pub fn backend_kind(name: &str) -> PyResult<Option<BackendKind>> {
    match name {
        "auto" => Ok(None),
        "cpu" => Ok(Some(BackendKind::Cpu)),
        "gpu" => Ok(Some(BackendKind::Gpu)),
        other => Err(input(format!(
            "backend {other:?}: expected \"auto\", \"cpu\" or \"gpu\""
        ))),
    }
}

#[pymethods]
impl Server {
    /// Plans `model` under the keys' parameters and loads the keys.
    #[new]
    #[pyo3(signature = (model, public_keys_path, backend="auto", adapter=None, progress=None))]
    fn new(
        py: Python<'_>,
        model: &Model,
        public_keys_path: PathBuf,
        backend: &str,
        adapter: Option<String>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let kind = backend_kind(backend)?;
        let progress = Progress(progress);
        let nn = model.model.clone();
        let fingerprint = model.fingerprint.clone();
        let server = py
            .detach(|| {
                let chosen = Chosen::resolve(kind, adapter.as_deref(), &progress)?;
                KeyedServer::open(
                    latent_he::nn::fold(&nn),
                    Some(fingerprint),
                    &public_keys_path,
                    chosen,
                    &progress,
                )
            })
            .map_err(to_py)?;
        Ok(Server { server, progress })
    }

    /// Encrypted logits (ciphertext file bytes) of encrypted latents.
    fn infer<'py>(&self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let out = py.detach(|| self.server.infer(data, &self.progress)).map_err(to_py)?;
        Ok(PyBytes::new(py, &out))
    }

    /// The backend evaluating: `"cpu"` or `"gpu"`.
    #[getter]
    fn backend(&self) -> String {
        self.server.backend().0
    }

    /// The GPU adapter's name, when on a GPU.
    #[getter]
    fn adapter(&self) -> Option<String> {
        self.server.backend().1
    }

    /// The parameter preset of the keys.
    #[getter]
    fn preset(&self) -> String {
        self.server.server().params().name().unwrap_or("literal").to_string()
    }
}

/// One client's public keys registered on a running `latent-he serve`.
#[pyclass(module = "latent_he._native", frozen)]
pub struct RemoteServer {
    remote: RemoteKeyed,
}

#[pymethods]
impl RemoteServer {
    /// Connects to `url` and registers the public keys for the served `model`.
    #[new]
    #[pyo3(signature = (url, public_keys_path, model, token=None, ca_cert=None))]
    fn new(
        py: Python<'_>,
        url: String,
        public_keys_path: PathBuf,
        model: String,
        token: Option<String>,
        ca_cert: Option<PathBuf>,
    ) -> PyResult<Self> {
        let config = RemoteConfig {
            url,
            token,
            ca_cert,
            model: Some(model),
        };
        let remote = py
            .detach(|| RemoteKeyed::connect(&config, &public_keys_path))
            .map_err(to_py)?;
        Ok(RemoteServer { remote })
    }

    /// Encrypted logits (ciphertext file bytes) of encrypted latents, as one job on the server.
    fn infer<'py>(&self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let out = py.detach(|| self.remote.infer(data)).map_err(to_py)?;
        Ok(PyBytes::new(py, &out))
    }

    /// The registered key's id on the server.
    #[getter]
    fn key_id(&self) -> &str {
        self.remote.key_id()
    }
}
