//! Rotation sums inside channel blocks: the sum of every value of a channel
//! into its block's first slot (global pooling; the mean's `1/(H*W)` is
//! folded into the next linear layer), and the reverse, one value per block
//! copied onto every position of a channel (the SE block's broadcast). No
//! level is spent.
//!
//! When `H` and `W` are powers of two the sums follow the data lattice
//! (`log2 W` steps of `gap`, `log2 H` steps of `gap*row`); otherwise they add
//! the whole block (`log2 block` steps), which the zero-outside-data
//! invariant makes equal when the layout has one lane.

use super::layout::SlotLayout;
use crate::ckks::EvalBackend;

/// Whether the sums of `layout` follow its data lattice (powers of two),
/// which keeps lanes apart; the whole-block sum would add them up.
fn on_lattice(layout: &SlotLayout) -> bool {
    layout.height.is_power_of_two() && layout.width.is_power_of_two()
}

/// The rotation steps that add up a channel of `layout` into offset 0.
fn lattice_steps(layout: &SlotLayout) -> Vec<i64> {
    let doubling = |start: usize, count: usize| (0..count.trailing_zeros()).map(move |j| (start << j) as i64);
    if on_lattice(layout) {
        doubling(layout.gap, layout.width)
            .chain(doubling(layout.gap * layout.row, layout.height))
            .collect()
    } else {
        doubling(1, layout.block).collect()
    }
}

/// `x + rot(x, s)` for each step in turn.
fn rotate_sum<B: EvalBackend>(backend: &B, x: &B::Ct, steps: &[i64]) -> Result<B::Ct, B::Error> {
    let step = |acc: &B::Ct, s: i64| backend.add(acc, &backend.rotate_hoisted(acc, &[s])?.remove(0));
    let Some((&first, rest)) = steps.split_first() else {
        // A 1x1 map: nothing to add (a copy, as every step returns its own).
        return backend.drop_level(x, backend.level(x));
    };
    let mut acc = step(x, first)?;
    for &s in rest {
        acc = step(&acc, s)?;
    }
    Ok(acc)
}

/// Which way a [`RotationSum`] moves values inside each channel block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Every value of a channel summed into offset 0 of its block (global
    /// pooling). The result is read as the layout's pooled form; its other
    /// slots hold partial sums, which the next layer (a 1x1 convolution)
    /// masks out.
    Gather,
    /// The value at offset 0 of each block copied onto every data position
    /// (and beyond, inside the block: only a product with a tensor in the
    /// layout may use the result). The input must be zero elsewhere.
    Spread,
}

/// Rotation sums inside the channel blocks of `layout`, one way or the other.
///
/// Invariant: `steps` are [`lattice_steps`] of `layout`, negated for
/// [`Direction::Spread`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationSum {
    layout: SlotLayout,
    direction: Direction,
    steps: Vec<i64>,
}

impl RotationSum {
    /// The sum of each channel of `input` into offset 0 of its block.
    pub fn gather(input: SlotLayout) -> Self {
        Self {
            steps: lattice_steps(&input),
            layout: input,
            direction: Direction::Gather,
        }
    }

    /// The copy of each block's offset-0 value onto the positions of `target`.
    pub fn spread(target: SlotLayout) -> Self {
        Self {
            steps: lattice_steps(&target).into_iter().map(|s| -s).collect(),
            layout: target,
            direction: Direction::Spread,
        }
    }

    /// The layout of the result: pooled for a gather, the target for a spread.
    pub fn output(&self) -> SlotLayout {
        match self.direction {
            Direction::Gather => self.layout.pooled(self.layout.channels),
            Direction::Spread => self.layout,
        }
    }

    /// Whether each lane's sums stay in its lane (always, with one lane).
    pub fn keeps_lanes_apart(&self) -> bool {
        self.layout.lanes == 1 || on_lattice(&self.layout)
    }

    /// Rotations used (Galois keys).
    pub fn rotations(&self) -> Vec<i64> {
        self.steps.clone()
    }

    /// Key switches one evaluation costs.
    pub fn key_switches(&self) -> usize {
        self.steps.len() * self.layout.cts()
    }

    /// The sums (same level and scale as the input).
    ///
    /// # Errors
    /// Missing rotation keys.
    pub fn apply<B: EvalBackend>(&self, backend: &B, input: &[B::Ct]) -> Result<Vec<B::Ct>, B::Error> {
        input.iter().map(|x| rotate_sum(backend, x, &self.steps)).collect()
    }
}
