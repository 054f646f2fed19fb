//! `Model` (a classifier: loaded from safetensors or built from a state
//! dict, predicted in plaintext, planned, its client bundle exported) and
//! `ClientBundle`.

use crate::errors::{input, to_py};
use latent_he::he_nn::MAX_BATCH;
use latent_he::nn::{LoadOptions, Model as NnModel, StateDict, Tensor};
use latent_he::pipeline::plan_report::describe_plan;
use latent_he::pipeline::{load_model, model_fingerprint, model_from_state_dict, ClientBundle, Planned};
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray4, PyReadonlyArrayDyn};
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;

/// A classifier of the paper's zoo with its weights (unfolded: the f64
/// reference), and the fingerprint of its weights.
#[pyclass(module = "latent_he._native", frozen)]
pub struct Model {
    pub model: Arc<NnModel<f64>>,
    pub fingerprint: String,
}

/// The options of `Model.load` and `Model.from_state_dict`, as text.
fn options(
    arch: Option<&str>,
    se: Option<bool>,
    classes: Option<&str>,
    latent: Option<&str>,
    input_clip: Option<&str>,
) -> PyResult<LoadOptions> {
    LoadOptions::parse(arch, se, classes, latent, input_clip).map_err(|e| input(e.to_string()))
}

/// Checks a batch size (images sharing one set of ciphertexts).
pub fn check_batch(batch: usize) -> PyResult<()> {
    if (1..=MAX_BATCH).contains(&batch) {
        Ok(())
    } else {
        Err(input(format!("batch {batch} is outside 1..={MAX_BATCH}")))
    }
}

#[pymethods]
impl Model {
    /// Loads a safetensors state dict; the options fill what its metadata lacks.
    #[staticmethod]
    #[pyo3(signature = (path, arch=None, se=None, classes=None, latent=None, input_clip=None))]
    fn load(
        py: Python<'_>,
        path: PathBuf,
        arch: Option<&str>,
        se: Option<bool>,
        classes: Option<&str>,
        latent: Option<&str>,
        input_clip: Option<&str>,
    ) -> PyResult<Self> {
        let options = options(arch, se, classes, latent, input_clip)?;
        let (model, fingerprint) = py
            .detach(|| Ok((load_model(&path, &options)?, model_fingerprint(&path)?)))
            .map_err(to_py)?;
        Ok(Model {
            model: Arc::new(model),
            fingerprint,
        })
    }

    /// Builds a model from named float64 arrays (PyTorch's state-dict names).
    #[staticmethod]
    #[pyo3(signature = (tensors, arch=None, se=None, classes=None, latent=None, input_clip=None))]
    fn from_arrays(
        py: Python<'_>,
        tensors: Vec<(String, PyReadonlyArrayDyn<'_, f64>)>,
        arch: Option<&str>,
        se: Option<bool>,
        classes: Option<&str>,
        latent: Option<&str>,
        input_clip: Option<&str>,
    ) -> PyResult<Self> {
        let options = options(arch, se, classes, latent, input_clip)?;
        let mut dict = StateDict::new();
        for (name, array) in tensors {
            let array = array.as_array();
            let tensor = Tensor::new(array.shape().to_vec(), array.iter().copied().collect())
                .map_err(|e| input(format!("{name}: {e}")))?;
            dict.insert(name, tensor);
        }
        let (model, fingerprint) = py.detach(|| model_from_state_dict(dict, &options)).map_err(to_py)?;
        Ok(Model {
            model: Arc::new(model),
            fingerprint,
        })
    }

    /// Plaintext logits (f64) of `B x C x H x W` latents.
    fn predict<'py>(&self, py: Python<'py>, z: PyReadonlyArray4<'py, f64>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let z = z.as_array().to_owned();
        let model = self.model.clone();
        let logits = py
            .detach(|| model.forward(z.view()))
            .map_err(|e| input(format!("latents: {e}")))?;
        Ok(logits.into_pyarray(py))
    }

    /// The plan under `preset` for `batch` images per set, as JSON text.
    fn plan_json(&self, py: Python<'_>, preset: &str, batch: usize) -> PyResult<String> {
        check_batch(batch)?;
        let model = self.model.clone();
        let planned = py
            .detach(|| Planned::new(&model, Some(preset), batch))
            .map_err(|e| input(e.to_string()))?;
        let mut report = describe_plan(&planned.params, &planned.plan);
        report["input_clip"] = serde_json::json!(planned.model.spec().input_clip().map(f64::from));
        report["model"] = serde_json::json!(planned.model.spec().to_string());
        Ok(report.to_string())
    }

    /// The client bundle of the model planned under `preset` for `batch`.
    fn client_bundle(&self, py: Python<'_>, preset: &str, batch: usize) -> PyResult<Bundle> {
        check_batch(batch)?;
        let model = self.model.clone();
        let fingerprint = self.fingerprint.clone();
        py.detach(|| Planned::new(&model, Some(preset), batch).map(|p| ClientBundle::of(&p, fingerprint)))
            .map(|bundle| Bundle { bundle })
            .map_err(|e| input(e.to_string()))
    }

    /// Class names, one per logit.
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.model.spec().classes().to_vec()
    }

    /// The latent shape `(C, H, W)` the model reads.
    #[getter]
    fn latent(&self) -> (usize, usize, usize) {
        let [c, h, w] = self.model.spec().latent().dims();
        (c, h, w)
    }

    /// The model's fingerprint (`blake3:` and 64 hex digits).
    #[getter]
    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The model as its spec names it.
    #[getter]
    fn spec(&self) -> String {
        self.model.spec().to_string()
    }
}

/// A client bundle: what a client needs of a model to make keys, encrypt
/// and decrypt, without its weights.
#[pyclass(module = "latent_he._native", name = "ClientBundle", frozen)]
pub struct Bundle {
    pub bundle: ClientBundle,
}

#[pymethods]
impl Bundle {
    /// Reads and checks a bundle file (`client.json`).
    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<Self> {
        Ok(Bundle {
            bundle: ClientBundle::read(&path).map_err(to_py)?,
        })
    }

    /// Parses and checks a bundle's JSON text.
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Self> {
        Ok(Bundle {
            bundle: ClientBundle::from_json(text).map_err(|e| input(e.to_string()))?,
        })
    }

    /// The bundle as JSON text.
    fn to_json(&self) -> String {
        self.bundle.to_json()
    }

    /// Writes the bundle to `path`.
    fn save(&self, path: PathBuf) -> PyResult<()> {
        self.bundle.write(&path).map_err(to_py)
    }

    /// The parameter preset.
    #[getter]
    fn preset(&self) -> &str {
        &self.bundle.binding.preset
    }

    /// The model's fingerprint.
    #[getter]
    fn fingerprint(&self) -> &str {
        &self.bundle.fingerprint
    }

    /// Class names, one per logit.
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.bundle.binding.classes.clone()
    }
}
