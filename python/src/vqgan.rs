//! `Vqgan`: X-ray images to latents (the paper's preprocessing, then the
//! encoder) and latents back to images.

use crate::errors::{input, to_py};
use crate::progress::Progress;
use crate::server::backend_kind;
use latent_he::data::image::{read_image, Image8};
use latent_he::pipeline::{Chosen, LoadedVqgan};

use numpy::{IntoPyArray, PyArray4, PyReadonlyArray3, PyReadonlyArray4};
use pyo3::prelude::*;
use std::path::{Path, PathBuf};

/// A VQGAN on a backend.
#[pyclass(module = "latent_he._native", frozen)]
pub struct Vqgan {
    vqgan: LoadedVqgan,
}

/// An image given to `encode`: a file, 8-bit samples, or intensities in [0, 1].
#[derive(FromPyObject)]
pub enum ImageInput<'py> {
    /// A PNG, JPEG or DICOM file.
    Path(PathBuf),
    /// `H x W x C` 8-bit samples.
    Bytes(PyReadonlyArray3<'py, u8>),
    /// `H x W x C` intensities in [0, 1].
    Unit(PyReadonlyArray3<'py, f64>),
}

#[pymethods]
impl Vqgan {
    /// Loads a VQGAN's weights (`preset`: f2, f4, f8 or f16 for a file
    /// that records no configuration).
    #[staticmethod]
    #[pyo3(signature = (path, preset=None, backend="cpu", progress=None))]
    fn load(
        py: Python<'_>,
        path: PathBuf,
        preset: Option<&str>,
        backend: &str,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let kind = backend_kind(backend)?;
        let progress = Progress(progress);
        let vqgan = py
            .detach(|| {
                let chosen = Chosen::resolve(kind, None, &progress)?;
                LoadedVqgan::load_on(&path, preset, &chosen)
            })
            .map_err(to_py)?
            .0;
        Ok(Vqgan { vqgan })
    }

    /// `B x C x H x W` latents of the images, in order.
    #[pyo3(signature = (images, quantized=false))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        images: Vec<ImageInput<'py>>,
        quantized: bool,
    ) -> PyResult<Bound<'py, PyArray4<f32>>> {
        let in_memory = Path::new("(image in memory)");
        let mut pixels: Vec<Result<Image8, String>> = Vec::with_capacity(images.len());
        let mut files = Vec::new();
        for image in &images {
            match image {
                ImageInput::Path(path) => {
                    files.push((pixels.len(), path.clone()));
                    pixels.push(Err(String::new()));
                }
                ImageInput::Bytes(a) => {
                    pixels.push(Image8::new(a.as_array().to_owned(), in_memory).map_err(|e| e.to_string()))
                }
                ImageInput::Unit(a) => {
                    pixels.push(Image8::from_unit(a.as_array(), in_memory).map_err(|e| e.to_string()))
                }
            }
        }
        let latents = py
            .detach(|| {
                for (i, path) in files {
                    pixels[i] = read_image(&path).map_err(|e| e.to_string());
                }
                let images = pixels.into_iter().collect::<Result<Vec<_>, _>>()?;
                self.vqgan.encode_images(&images, quantized)
            })
            .map_err(input)?;
        Ok(latents.into_pyarray(py))
    }

    /// Images (`B x 3 x H x W`, -1 black, 1 white, not clipped) reconstructed from latents.
    #[pyo3(signature = (z, quantized=false))]
    fn decode<'py>(
        &self,
        py: Python<'py>,
        z: PyReadonlyArray4<'py, f32>,
        quantized: bool,
    ) -> PyResult<Bound<'py, PyArray4<f32>>> {
        let z = z.as_array().to_owned();
        let images = py.detach(|| self.vqgan.decode(z, quantized)).map_err(input)?;
        Ok(images.into_pyarray(py))
    }

    /// One line describing the network.
    #[getter]
    fn summary(&self) -> String {
        self.vqgan.summary()
    }
}
