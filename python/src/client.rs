//! `Client` (a key folder: keys from a bundle, encryption, decryption) and
//! `Findings` (decrypted logits with their classes).

use crate::errors::{input, to_py};
use crate::model::Bundle;
use latent_he::ckks::sealed::Passphrase;
use latent_he::ckks::DecryptionNoise;
use latent_he::pipeline::{Client as PipelineClient, KeyDir};
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray4};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::path::PathBuf;

/// A passphrase given as text or bytes.
fn passphrase(text: Option<Vec<u8>>) -> PyResult<Option<Passphrase>> {
    text.map(Passphrase::new).transpose().map_err(|e| input(e.to_string()))
}

/// A client's key folder made for one model, opened.
#[pyclass(module = "latent_he._native", frozen)]
pub struct Client {
    client: PipelineClient,
}

#[pymethods]
impl Client {
    /// Makes keys for the bundle's model into `out_dir` and opens them.
    #[staticmethod]
    #[pyo3(signature = (bundle, out_dir, passphrase=None))]
    fn keygen(py: Python<'_>, bundle: &Bundle, out_dir: PathBuf, passphrase: Option<Vec<u8>>) -> PyResult<Self> {
        let passphrase = self::passphrase(passphrase)?;
        let client = py
            .detach(|| PipelineClient::keygen(&bundle.bundle, KeyDir::new(out_dir), passphrase.as_ref()))
            .map_err(to_py)?;
        Ok(Client { client })
    }

    /// Opens a key folder made for a model.
    #[staticmethod]
    #[pyo3(signature = (dir, passphrase=None))]
    fn open(py: Python<'_>, dir: PathBuf, passphrase: Option<Vec<u8>>) -> PyResult<Self> {
        let passphrase = self::passphrase(passphrase)?;
        let client = py
            .detach(|| PipelineClient::open(KeyDir::new(dir), passphrase.as_ref()))
            .map_err(to_py)?;
        Ok(Client { client })
    }

    /// `B x C x H x W` latents encrypted as the model reads them: the bytes
    /// of a ciphertext file.
    fn encrypt<'py>(&self, py: Python<'py>, z: PyReadonlyArray4<'py, f64>) -> PyResult<Bound<'py, PyBytes>> {
        let z = z.as_array().to_owned();
        let bytes = py.detach(|| self.client.encrypt(&z)).map_err(to_py)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// The findings in a ciphertext file of the model's encrypted logits.
    #[pyo3(signature = (data, noise=DecryptionNoise::DEFAULT_SIGMA))]
    fn decrypt(&self, py: Python<'_>, data: &[u8], noise: f64) -> PyResult<Findings> {
        let noise = DecryptionNoise::gaussian(noise).map_err(|e| input(e.to_string()))?;
        let findings = py.detach(|| self.client.decrypt(data, noise)).map_err(to_py)?;
        Ok(Findings {
            classes: findings.classes.clone(),
            probabilities: findings.probabilities(),
            logits: findings.logits,
        })
    }

    /// The key folder.
    #[getter]
    fn key_dir(&self) -> PathBuf {
        self.client.dir().path().to_path_buf()
    }

    /// The public key file: what the server gets.
    #[getter]
    fn public_keys_path(&self) -> PathBuf {
        self.client.dir().public_path()
    }

    /// Class names, one per logit.
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.client.binding().classes.clone()
    }

    /// The latent shape `(C, H, W)` the model reads.
    #[getter]
    fn latent(&self) -> (usize, usize, usize) {
        let [c, h, w] = self.client.binding().latent;
        (c, h, w)
    }

    /// The model the keys serve, as its spec names it.
    #[getter]
    fn model(&self) -> String {
        self.client.binding().model.clone()
    }
}

/// Decrypted findings: per image, a logit and a probability per class.
#[pyclass(module = "latent_he._native", frozen)]
pub struct Findings {
    classes: Vec<String>,
    logits: ndarray::Array2<f64>,
    probabilities: ndarray::Array2<f64>,
}

#[pymethods]
impl Findings {
    /// Class names, one per column.
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.classes.clone()
    }

    /// `B x classes` logits.
    #[getter]
    fn logits<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f64>> {
        self.logits.clone().into_pyarray(py)
    }

    /// `B x classes` probabilities (the sigmoid of each logit).
    #[getter]
    fn probabilities<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f64>> {
        self.probabilities.clone().into_pyarray(py)
    }

    fn __len__(&self) -> usize {
        self.logits.nrows()
    }

    fn __repr__(&self) -> String {
        format!(
            "Findings({} image(s), {} classes)",
            self.logits.nrows(),
            self.classes.len()
        )
    }
}
