//! `--key-memory`, `--lockstep` and `--weight-memory`: how evaluation keys
//! are held, how many image sets are evaluated together and how many bytes
//! of weights a GPU keeps ([`crate::pipeline::memory`]).

use super::progress::Stderr;
use crate::ckks::{KeyMemory, Params};
use crate::he_nn::{Plan, DEFAULT_GPU_WEIGHT_BYTES};
use crate::pipeline::memory::KeyMemoryChoice as Holding;
pub use crate::pipeline::memory::{available_memory, key_memory_name, peak_memory_bytes, EvalMemory};
use bytesize::ByteSize;
use clap::{Args, ValueEnum};

/// `--key-memory` and `--lockstep`, shared by the commands that evaluate on
/// encrypted data.
#[derive(Args, Debug, Clone, Copy)]
pub struct MemoryArgs {
    /// How evaluation keys are held: expanded (fastest), compact (half the
    /// memory; each key switch re-expands the uniform halves it reads), or
    /// auto: expanded when keys and working memory fit in 90% of the
    /// memory available now, else compact.
    #[arg(long, value_enum, default_value_t = KeyMemoryChoice::Auto)]
    pub key_memory: KeyMemoryChoice,
    /// Image sets evaluated together, step by step: each weight diagonal is
    /// encoded once for all of them (more images per second), and each
    /// set's working memory is held at once. Lowered to what fits beside
    /// the keys in 90% of the memory available.
    #[arg(long, default_value_t = DEFAULT_LOCKSTEP, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub lockstep: u16,
    #[command(flatten)]
    pub weights: WeightMemoryArg,
}

/// `--weight-memory`: how many bytes of weight plaintexts a GPU evaluation
/// keeps on the device for later images.
#[derive(Args, Debug, Clone, Copy)]
pub struct WeightMemoryArg {
    /// Bytes of weight diagonals a GPU evaluation keeps on the device after
    /// encoding them for the first image (e.g. 8GiB, 500MB; 0 encodes them
    /// for every image). Later images then skip their encoding, upload and
    /// transform; past the budget the rest is encoded per image. `plan`
    /// reports how much the model needs.
    #[arg(long = "weight-memory", value_name = "BYTES", default_value_t = ByteSize::b(DEFAULT_GPU_WEIGHT_BYTES))]
    pub weight_memory: ByteSize,
}

impl WeightMemoryArg {
    /// The budget in bytes.
    pub fn bytes(&self) -> u64 {
        self.weight_memory.as_u64()
    }
}

/// Sets evaluated together unless `--lockstep` says otherwise.
pub const DEFAULT_LOCKSTEP: u16 = 4;

impl MemoryArgs {
    /// [`EvalMemory::resolve`] for these flags and the `sets` the caller
    /// has; notes go to stderr.
    pub fn resolve(&self, params: &Params, plan: &Plan, sets: usize) -> EvalMemory {
        EvalMemory {
            weights: self.weights.bytes(),
            ..EvalMemory::resolve(
                self.key_memory.into(),
                usize::from(self.lockstep),
                params,
                plan,
                sets,
                &Stderr::notes(),
            )
        }
    }
}

/// The values of `--key-memory`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMemoryChoice {
    /// Expanded when it fits, else compact.
    Auto,
    /// Always expanded.
    Expanded,
    /// Always compact.
    Compact,
}

impl From<KeyMemoryChoice> for Holding {
    fn from(choice: KeyMemoryChoice) -> Self {
        match choice {
            KeyMemoryChoice::Auto => Holding::Auto,
            KeyMemoryChoice::Expanded => Holding::Expanded,
            KeyMemoryChoice::Compact => Holding::Compact,
        }
    }
}

impl KeyMemoryChoice {
    /// [`Holding::resolve`]; notes go to stderr.
    pub fn resolve(self, params: &Params, plan: &Plan) -> KeyMemory {
        Holding::from(self).resolve(params, plan, &Stderr::notes())
    }
}
