//! Rotation sums inside channel blocks: the sum of every value of a channel
//! into its block's first slot (global pooling; the mean's `1/(H*W)` is
//! folded into the next linear layer), and the reverse, one value per block
//! copied onto every position of a channel (the SE block's broadcast). No
//! level is spent.
//!
//! When `H` and `W` are powers of two the sums follow the data lattice
//! (`log2 W` steps of `gap`, `log2 H` steps of `gap*row`); otherwise they add
//! the whole block (`log2 block` steps), which the zero-outside-data
//! invariant makes equal.

use super::layout::SlotLayout;
use crate::ckks::EvalBackend;

/// The rotation steps that add up a channel of `layout` into offset 0.
fn lattice_steps(layout: &SlotLayout) -> Vec<i64> {
    let doubling = |start: usize, count: usize| (0..count.trailing_zeros()).map(move |j| (start << j) as i64);
    if layout.height.is_power_of_two() && layout.width.is_power_of_two() {
        doubling(layout.gap, layout.width)
            .chain(doubling(layout.gap * layout.row, layout.height))
            .collect()
    } else {
        doubling(1, layout.block).collect()
    }
}

/// `x + rot(x, s)` for each step in turn.
fn rotate_sum<B: EvalBackend>(backend: &B, x: &B::Ct, steps: &[i64]) -> Result<B::Ct, B::Error> {
    let mut acc = backend.drop_level(x, backend.level(x))?;
    for &s in steps {
        let rotated = backend.rotate_hoisted(&acc, &[s])?.remove(0);
        acc = backend.add(&acc, &rotated)?;
    }
    Ok(acc)
}

/// Sums each channel of `input` into offset 0 of its block. The result is
/// read as `input.pooled(C)`; its other slots hold partial sums, which the
/// next layer (a 1x1 convolution) masks out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSum {
    input: SlotLayout,
    steps: Vec<i64>,
}

impl BlockSum {
    /// The sum over the channels of `input`.
    pub fn new(input: SlotLayout) -> Self {
        Self {
            steps: lattice_steps(&input),
            input,
        }
    }

    /// The layout read by the next layer.
    pub fn output(&self) -> SlotLayout {
        self.input.pooled(self.input.channels)
    }

    /// Rotations used (Galois keys).
    pub fn rotations(&self) -> Vec<i64> {
        self.steps.clone()
    }

    /// Key switches one evaluation costs.
    pub fn key_switches(&self) -> usize {
        self.steps.len() * self.input.cts()
    }

    /// The channel sums (same level and scale as the input).
    ///
    /// # Errors
    /// Missing rotation keys.
    pub fn apply<B: EvalBackend>(&self, backend: &B, input: &[B::Ct]) -> Result<Vec<B::Ct>, B::Error> {
        input.iter().map(|x| rotate_sum(backend, x, &self.steps)).collect()
    }
}

/// Copies the value at offset 0 of each block onto every data position of
/// `target` (and beyond, inside the block: only a product with a tensor in
/// `target`'s layout may use the result).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broadcast {
    target: SlotLayout,
    steps: Vec<i64>,
}

impl Broadcast {
    /// The broadcast onto the positions of `target`.
    pub fn new(target: SlotLayout) -> Self {
        Self {
            steps: lattice_steps(&target).into_iter().map(|s| -s).collect(),
            target,
        }
    }

    /// The layout the values are copied onto.
    pub fn target(&self) -> SlotLayout {
        self.target
    }

    /// Rotations used (Galois keys).
    pub fn rotations(&self) -> Vec<i64> {
        self.steps.clone()
    }

    /// Key switches one evaluation costs.
    pub fn key_switches(&self) -> usize {
        self.steps.len() * self.target.cts()
    }

    /// The broadcast values (same level and scale as the input, which must
    /// be zero everywhere but offset 0 of each block).
    ///
    /// # Errors
    /// Missing rotation keys.
    pub fn apply<B: EvalBackend>(&self, backend: &B, input: &[B::Ct]) -> Result<Vec<B::Ct>, B::Error> {
        input.iter().map(|x| rotate_sum(backend, x, &self.steps)).collect()
    }
}
