//! The classifier head: global average pooling and the final linear layer,
//! in one level, logits in slots `0..K`.
//!
//! 1. Sum each channel's `H*W` block into its first slot: `log2(H*W)`
//!    rotations by powers of two.
//! 2. For each class `k`, rotate the sums right by `k` (one hoisted
//!    decomposition for all `k`) and multiply by a plaintext holding
//!    `W[k][c] / (H*W)` at slot `c*H*W + k` (averaging folded into the weights);
//!    add the `K` products and rescale.
//! 3. Sum the channels: `log2(C)` rotations by `H*W * 2^j`; slot `k` then
//!    holds logit `k` (`K <= H*W`), and the bias is added there.
//!
//! Key switches: `log2(H*W) + (K - 1) + log2(C)`.

use super::layout::SlotLayout;
use crate::ckks::{encode, CkksError, EvalBackend, Params};
use thiserror::Error;

/// Why a head cannot be lowered.
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum HeadError {
    /// The rotation sums need powers of two.
    #[error("global pooling needs H*W ({block}) and C ({channels}) to be powers of two")]
    NotPowerOfTwo {
        /// `H * W`.
        block: usize,
        /// Channels.
        channels: usize,
    },
    /// More classes than slots per channel.
    #[error("{classes} classes do not fit in the {block} slots of one channel")]
    TooManyClasses {
        /// Classes.
        classes: usize,
        /// `H * W`.
        block: usize,
    },
    /// Weights or bias of the wrong size.
    #[error(
        "linear layer {channels} -> {classes} needs {expected} weights and {classes} biases, got {weights} and {bias}"
    )]
    Shape {
        /// Input features.
        channels: usize,
        /// Classes.
        classes: usize,
        /// Weights expected.
        expected: usize,
        /// Weights given.
        weights: usize,
        /// Biases given.
        bias: usize,
    },
}

/// Global average pooling followed by `linear` (`K x C` weights, `K` biases).
///
/// Invariant: `C` and `H*W` are powers of two, `K <= H*W`.
#[derive(Clone, Debug)]
pub struct PoolLinear {
    layout: SlotLayout,
    weights: Vec<f64>,
    bias: Vec<f64>,
}

impl PoolLinear {
    /// Checks shapes.
    ///
    /// # Errors
    /// [`HeadError`].
    pub fn new(layout: SlotLayout, weights: Vec<f64>, bias: Vec<f64>) -> Result<Self, HeadError> {
        let (block, channels, classes) = (layout.block(), layout.channels, bias.len());
        if !block.is_power_of_two() || !channels.is_power_of_two() {
            return Err(HeadError::NotPowerOfTwo { block, channels });
        }
        if weights.len() != classes * channels || classes == 0 {
            return Err(HeadError::Shape {
                channels,
                classes,
                expected: classes * channels,
                weights: weights.len(),
                bias: bias.len(),
            });
        }
        if classes > block {
            return Err(HeadError::TooManyClasses { classes, block });
        }
        Ok(Self { layout, weights, bias })
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.bias.len()
    }

    fn pool_steps(&self) -> Vec<i64> {
        let block = self.layout.block();
        (0..block.trailing_zeros()).map(|j| 1i64 << j).collect()
    }

    fn channel_steps(&self) -> Vec<i64> {
        let block = self.layout.block() as i64;
        (0..self.layout.channels.trailing_zeros()).map(|j| block << j).collect()
    }

    fn class_steps(&self) -> Vec<i64> {
        (0..self.classes() as i64).map(|k| -k).collect()
    }

    /// Every rotation the head uses (Galois keys to generate).
    pub fn rotations(&self) -> Vec<i64> {
        let mut steps = self.pool_steps();
        steps.extend(self.class_steps().into_iter().filter(|&s| s != 0));
        steps.extend(self.channel_steps());
        steps
    }

    /// Key switches one evaluation costs.
    pub fn key_switches(&self) -> usize {
        self.rotations().len()
    }

    /// `x + rot(x, s)` for each step in turn; `None` when there are no steps.
    fn rotate_sum<B: EvalBackend>(backend: &B, x: &B::Ct, steps: &[i64]) -> Result<Option<B::Ct>, B::Error> {
        let mut acc: Option<B::Ct> = None;
        for &s in steps {
            let current = acc.as_ref().unwrap_or(x);
            let rotated = backend.rotate_hoisted(current, &[s])?.remove(0);
            acc = Some(backend.add(current, &rotated)?);
        }
        Ok(acc)
    }

    /// Logits of the encrypted, packed activation: slot `k` holds logit `k`;
    /// one level.
    ///
    /// # Errors
    /// Evaluator refusals (missing rotation keys: generate [`Self::rotations`];
    /// level 0) and encoding errors.
    pub fn apply<B: EvalBackend>(&self, backend: &B, params: &Params, input: &B::Ct) -> Result<B::Ct, B::Error> {
        let (level, scale) = (backend.level(input), backend.scale(input));
        if level == 0 {
            return Err(CkksError::OutOfLevels { needed: 1, level: 0 }.into());
        }
        let block = self.layout.block();
        let channels = self.layout.channels;
        let sums = Self::rotate_sum(backend, input, &self.pool_steps())?;
        let shifted = backend.rotate_hoisted(sums.as_ref().unwrap_or(input), &self.class_steps())?;
        let pt_scale = params.mul_plain_scale(level, scale);
        let mut total: Option<B::Ct> = None;
        for (k, ct) in shifted.iter().enumerate() {
            let mut diagonal = vec![0.0; channels * block];
            for c in 0..channels {
                diagonal[c * block + k] = self.weights[k * channels + c] / block as f64;
            }
            let term = backend.mul_plain(ct, &encode(params, &diagonal, level, pt_scale)?)?;
            total = Some(match total {
                None => term,
                Some(acc) => backend.add(&acc, &term)?,
            });
        }
        let total = backend.rescale(&total.expect("at least one class"))?;
        let logits = Self::rotate_sum(backend, &total, &self.channel_steps())?.unwrap_or(total);
        let bias = encode(params, &self.bias, level - 1, backend.scale(&logits))?;
        backend.add_plain(&logits, &bias)
    }
}
