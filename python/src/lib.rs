//! `latent_he._native`: the Python bindings of latent-he, thin over
//! [`latent_he::pipeline`]. Each class wraps one library type; every call
//! that computes (loading, key generation, encryption, inference,
//! decryption, encoding) releases the GIL. The pure-Python package
//! `latent_he` (python/latent_he/) converts PyTorch tensors, PIL images and
//! lists into the NumPy arrays these functions take.

mod client;
mod errors;
mod model;
mod progress;
mod server;
mod vqgan;

use pyo3::prelude::*;

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<model::Model>()?;
    m.add_class::<model::Bundle>()?;
    m.add_class::<client::Client>()?;
    m.add_class::<client::Findings>()?;
    m.add_class::<server::Server>()?;
    m.add_class::<server::RemoteServer>()?;
    m.add_class::<vqgan::Vqgan>()?;
    m.add("DEFAULT_DECRYPT_NOISE", latent_he::ckks::DecryptionNoise::DEFAULT_SIGMA)?;
    Ok(())
}
