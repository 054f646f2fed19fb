//! The engine's errors as Python exceptions: `latent_he.Error` and one
//! subclass per kind of failure, each carrying the engine's one-line
//! message.

use latent_he::ckks::serialize::FileError as SerializeError;
use latent_he::pipeline::PipelineError;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(latent_he, Error, PyException, "Every failure the engine reports.");
create_exception!(
    latent_he,
    InputError,
    Error,
    "An input that cannot be used: an array of the wrong shape or with non-finite values, \
     a damaged or truncated ciphertext, keys or ciphertexts of another key or model, a model \
     file whose tensors do not fit its architecture."
);
create_exception!(
    latent_he,
    FileError,
    Error,
    "A file or folder that cannot be read or written."
);
create_exception!(
    latent_he,
    ResourceError,
    Error,
    "Not enough memory or no usable device (GPU) for what was asked, or a server that cannot be reached."
);
create_exception!(latent_he, ConfigError, Error, "Settings that cannot work together.");

/// Adds the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("FileError", py.get_type::<FileError>())?;
    m.add("ResourceError", py.get_type::<ResourceError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    Ok(())
}

/// A pipeline error as the exception of its kind.
pub fn to_py(e: PipelineError) -> PyErr {
    let message = e.to_string();
    match e {
        PipelineError::Io { .. } => FileError::new_err(message),
        PipelineError::File(ref file) if matches!(file.innermost(), SerializeError::Io { .. }) => {
            FileError::new_err(message)
        }
        PipelineError::Gpu(_) | PipelineError::GpuEval(_) | PipelineError::Resources(_) => {
            ResourceError::new_err(message)
        }
        PipelineError::Config(_) => ConfigError::new_err(message),
        _ => InputError::new_err(message),
    }
}

/// A refusal of the bindings' own argument checks.
pub fn input(message: impl Into<String>) -> PyErr {
    InputError::new_err(message.into())
}
