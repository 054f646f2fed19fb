//! What the pipeline can fail with. Each variant says what kind of failure
//! it is (bad input, resources, a failed check), so that a front end can
//! map it to its own statuses (the CLI's exit codes, HTTP statuses).

use crate::ckks::serialize::FileError;
use crate::ckks::CkksError;
use thiserror::Error;

/// A pipeline failure, printed as one line.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// A CKKS refusal (parameters, levels, keys, values).
    #[error(transparent)]
    Ckks(#[from] CkksError),
    /// The GPU could not be used or failed.
    #[error(transparent)]
    Gpu(#[from] crate::backend::gpu::GpuError),
    /// A GPU evaluator refusal or failure.
    #[error(transparent)]
    GpuEval(#[from] crate::ckks::gpu_eval::GpuEvalError),
    /// A VQGAN file that cannot be read.
    #[error(transparent)]
    Vqgan(#[from] crate::vqgan::VqganError),
    /// A key or ciphertext file that cannot be used.
    #[error(transparent)]
    File(#[from] FileError),
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// An input (file, array, model, key folder) that cannot be used.
    #[error("{path}: {reason}")]
    Input {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Input refused that no single path names.
    #[error("{0}")]
    Refused(String),
    /// Not enough memory, disk or device for what was asked, or an output
    /// folder another process holds.
    #[error("{0}")]
    Resources(String),
    /// A configuration that cannot work (a missing setting, settings that
    /// contradict each other).
    #[error("{0}")]
    Config(String),
    /// Work that ran and failed its check (no image of a test set could be
    /// scored).
    #[error("{0}")]
    CheckFailed(String),
}

impl PipelineError {
    /// An I/O error on `path`, for `map_err`.
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| PipelineError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// An input error on `path` with `reason`.
    pub fn input(path: &std::path::Path, reason: impl Into<String>) -> Self {
        PipelineError::Input {
            path: path.display().to_string(),
            reason: reason.into(),
        }
    }
}
