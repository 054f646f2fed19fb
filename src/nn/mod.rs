//! The paper's classifiers in plaintext: model zoo, safetensors weights,
//! inference in f32 and f64 on the CPU, and folding for encrypted evaluation.
//!
//! - [`spec`]: what a model is (architecture, SE block, classes, latent shape).
//! - [`weights`]: PyTorch state dicts stored as safetensors ([`StateDict`]).
//! - [`model`]: building a [`Model`] from a state dict (every tensor checked
//!   by name and shape) and running it on a batch `B x C x H x W`.
//! - [`layers`]: convolution (im2col + GEMM), batch norm, linear, polynomial
//!   activations, average pooling, residual and squeeze-and-excitation blocks.
//! - [`mod@fold`]: the model an encrypted evaluation wants: batch norm folded into
//!   the preceding convolution, average pooling into the following linear
//!   layer, and the activation's leading coefficient into the preceding
//!   linear layer.
//!
//! Tensor names are PyTorch's (`conv1.weight`, `layer1.0.bn1.running_mean`,
//! `layer2.0.shortcut.0.weight`, `layer1.0.attn.linear1.weight`,
//! `relu.alpha`, ...), so `safetensors.torch.save_file(model.state_dict())`
//! of the reference models (`training/models.py`) loads as is.

pub mod fold;
pub mod layers;
pub mod model;
pub mod random;
pub mod spec;
pub mod weights;

pub use fold::{fold, with_gain};
pub use model::{expected_tensors, LoadOptions, Model, TensorSpec};
pub use random::{random_folded_model, random_state_dict};
pub use spec::{Arch, InputClip, LatentShape, ModelSpec};
pub use weights::{StateDict, StoreDtype, Tensor};

use std::fmt;
use thiserror::Error;

/// What building, loading or running a model can fail with. Every variant
/// prints as one line that names the offending file, tensor, key or shape.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NnError {
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A file that is not a valid safetensors file.
    #[error("not a valid safetensors file: {reason}")]
    Safetensors {
        /// What the parser said.
        reason: String,
    },
    /// A tensor whose element type cannot hold weights.
    #[error("tensor {name}: unsupported dtype {dtype} (expected F32, F64, F16, BF16 or an integer type)")]
    Dtype {
        /// The tensor.
        name: String,
        /// Its dtype as safetensors names it.
        dtype: String,
    },
    /// A tensor whose data length does not match its shape.
    #[error("tensor {name}: {len} values do not fill shape {shape:?}")]
    TensorSize {
        /// The tensor.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
        /// How many values were given.
        len: usize,
    },
    /// A value that cannot be parsed (architecture, latent shape, classes,
    /// boolean), from a metadata key or an option.
    #[error("{what}: cannot use {value:?}: {reason}")]
    Parse {
        /// Which setting (`arch`, `latent`, `classes`, `se`).
        what: &'static str,
        /// The text given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// The file's metadata and an explicit option disagree.
    #[error("{what}: the file's metadata says {metadata}, the option says {option}")]
    Conflict {
        /// Which setting.
        what: &'static str,
        /// The metadata's value.
        metadata: String,
        /// The option's value.
        option: String,
    },
    /// A setting that is neither given nor inferable from the tensors.
    #[error("{what} is not given and cannot be inferred from the tensors: {hint}")]
    Unknown {
        /// Which setting.
        what: &'static str,
        /// What to pass.
        hint: String,
    },
    /// The architecture cannot run on this latent shape (a layer's output
    /// would be empty, or a block's channels do not divide).
    #[error("{model}: {reason}")]
    Architecture {
        /// The model, as [`ModelSpec`] prints it.
        model: String,
        /// Which layer fails and why.
        reason: String,
    },
    /// The tensors do not match the architecture; lists every problem.
    #[error("weights do not match {model}: {}", join_problems(.problems))]
    Weights {
        /// The model, as [`ModelSpec`] prints it.
        model: String,
        /// Every missing, extra, mis-shaped or invalid tensor.
        problems: Vec<WeightProblem>,
    },
    /// An input batch whose shape is not `B x C x H x W` with the model's
    /// latent shape, or an empty batch.
    #[error("input shape {found:?} does not match the model's latent {expected} (want CxHxW or BxCxHxW, B >= 1)")]
    InputShape {
        /// The model's latent shape.
        expected: LatentShape,
        /// The shape given.
        found: Vec<usize>,
    },
    /// An input value that is NaN or infinite.
    #[error("input value at flat index {index} is not finite ({value})")]
    NonFinite {
        /// Flat (row-major) index of the first such value.
        index: usize,
        /// The value.
        value: f64,
    },
}

/// One way a tensor fails to match the architecture.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum WeightProblem {
    /// The architecture needs this tensor; the file lacks it.
    Missing {
        /// Tensor name.
        name: String,
        /// The shape the architecture needs.
        shape: Vec<usize>,
    },
    /// The file has a tensor the architecture does not use.
    Extra {
        /// Tensor name.
        name: String,
        /// Its shape in the file.
        shape: Vec<usize>,
    },
    /// The tensor exists with another shape.
    Shape {
        /// Tensor name.
        name: String,
        /// The shape the architecture needs.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// The tensor's values cannot be used (non-finite, negative variance,
    /// shared activation copies that differ).
    Value {
        /// Tensor name.
        name: String,
        /// Why.
        reason: String,
    },
}

impl WeightProblem {
    /// The tensor this problem is about.
    pub fn name(&self) -> &str {
        match self {
            WeightProblem::Missing { name, .. }
            | WeightProblem::Extra { name, .. }
            | WeightProblem::Shape { name, .. }
            | WeightProblem::Value { name, .. } => name,
        }
    }
}

impl fmt::Display for WeightProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightProblem::Missing { name, shape } => write!(f, "missing {name} {shape:?}"),
            WeightProblem::Extra { name, shape } => write!(f, "extra {name} {shape:?}"),
            WeightProblem::Shape { name, expected, found } => {
                write!(f, "{name} has shape {found:?}, expected {expected:?}")
            }
            WeightProblem::Value { name, reason } => write!(f, "{name}: {reason}"),
        }
    }
}

fn join_problems(problems: &[WeightProblem]) -> String {
    let parts: Vec<String> = problems.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

/// The element types inference runs in: `f32` (fast) and `f64` (reference).
///
/// Conversions go through `f64`; `from_f64` rounds to nearest.
pub trait Real: ndarray::LinalgScalar + fmt::Debug + fmt::Display + Send + Sync + PartialOrd {
    /// The nearest value of this type.
    fn from_f64(v: f64) -> Self;
    /// The exact value as `f64`.
    fn to_f64(self) -> f64;
}

impl Real for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Real for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
}
