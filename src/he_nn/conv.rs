//! Encrypted same-padding convolution, `C -> C` channels, stride 1.
//!
//! With the input packed channel-major and replicated ([`SlotLayout`]):
//! 1. rotate the input by every kernel offset `dy*W + dx` (one hoisted
//!    decomposition, `k*k - 1` key switches);
//! 2. for each channel shift `d` in `0..C`, sum over offsets the rotated input
//!    times a plaintext holding `w[c - d][c][offset]` on block `c`, zero where
//!    the offset reads padding;
//! 3. rotate each such sum left by `d` whole channels (`C - 1` key switches)
//!    and add; one rescale at the end (one level).
//!
//! Key switches per layer: `k*k - 1 + C - 1`.

use super::layout::{kernel_offsets, kernel_rotations, SlotLayout};
use crate::ckks::{encode, CkksError, EvalBackend, Params};
use thiserror::Error;

/// Why a convolution cannot be lowered.
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum HeConvError {
    /// The replicated tensor needs more slots than the parameters have.
    #[error("a {channels}x{height}x{width} tensor needs {needed} slots (replicated); the parameters have {slots}")]
    TooLarge {
        /// Channels.
        channels: usize,
        /// Rows.
        height: usize,
        /// Columns.
        width: usize,
        /// Slots needed.
        needed: usize,
        /// Slots available.
        slots: usize,
    },
    /// Weights whose shape does not match the layer.
    #[error("weights have {found} values, a {channels}->{channels} {kernel}x{kernel} convolution needs {expected}")]
    WeightShape {
        /// Channels.
        channels: usize,
        /// Kernel size.
        kernel: usize,
        /// Values expected.
        expected: usize,
        /// Values given.
        found: usize,
    },
    /// An even kernel has no centre for same padding.
    #[error("kernel size {0} is even: same padding needs an odd kernel")]
    EvenKernel(usize),
}

/// A `C -> C`, stride-1, same-padding convolution with plaintext weights.
///
/// Invariant: `weights.len() == C*C*k*k`, indexed `[out][in][ky][kx]`; `k` odd.
#[derive(Clone, Debug)]
pub struct Conv2dSame {
    layout: SlotLayout,
    kernel: usize,
    weights: Vec<f64>,
}

impl Conv2dSame {
    /// Checks the shapes against `layout` and `slots`.
    ///
    /// # Errors
    /// [`HeConvError`].
    pub fn new(layout: SlotLayout, kernel: usize, weights: Vec<f64>, slots: usize) -> Result<Self, HeConvError> {
        if kernel.is_multiple_of(2) {
            return Err(HeConvError::EvenKernel(kernel));
        }
        let c = layout.channels;
        let expected = c * c * kernel * kernel;
        if weights.len() != expected {
            return Err(HeConvError::WeightShape {
                channels: c,
                kernel,
                expected,
                found: weights.len(),
            });
        }
        if !layout.fits(slots) {
            return Err(HeConvError::TooLarge {
                channels: c,
                height: layout.height,
                width: layout.width,
                needed: 2 * layout.size(),
                slots,
            });
        }
        Ok(Self {
            layout,
            kernel,
            weights,
        })
    }

    /// Every rotation (slot steps) the layer uses: Galois keys to generate.
    pub fn rotations(&self) -> Vec<i64> {
        let block = self.layout.block() as i64;
        let mut steps = kernel_rotations(self.layout.width, self.kernel);
        steps.extend((1..self.layout.channels as i64).map(|d| d * block));
        steps.retain(|&s| s != 0);
        steps
    }

    /// Key switches one evaluation costs.
    pub fn key_switches(&self) -> usize {
        self.kernel * self.kernel - 1 + self.layout.channels - 1
    }

    /// The plaintext slot values for channel shift `d` and kernel offset `o`:
    /// on block `c` (and its replica), `w[c - d][c][o]` where the offset reads
    /// inside the image, else 0.
    fn diagonal(&self, d: usize, (dy, dx): (isize, isize), tap: usize) -> Vec<f64> {
        let SlotLayout {
            channels: c,
            height: h,
            width: w,
        } = self.layout;
        let k2 = self.kernel * self.kernel;
        let mut slots = vec![0.0; 2 * self.layout.size()];
        for input in 0..c {
            let output = (input + c - d) % c;
            let weight = self.weights[(output * c + input) * k2 + tap];
            if weight == 0.0 {
                continue;
            }
            for y in 0..h {
                for x in 0..w {
                    let (sy, sx) = (y as isize + dy, x as isize + dx);
                    if sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize {
                        let slot = input * h * w + y * w + x;
                        slots[slot] = weight;
                        slots[slot + self.layout.size()] = weight;
                    }
                }
            }
        }
        slots
    }

    /// The convolution of the encrypted, packed input; one level, result at
    /// the next level's canonical scale, packed (first copy valid; the replica
    /// holds partial sums).
    ///
    /// # Errors
    /// Evaluator refusals (missing rotation keys: generate [`Self::rotations`];
    /// level 0) and encoding errors.
    pub fn apply<B: EvalBackend>(&self, backend: &B, params: &Params, input: &B::Ct) -> Result<B::Ct, B::Error> {
        let offsets = kernel_offsets(self.kernel);
        let steps = kernel_rotations(self.layout.width, self.kernel);
        let rotated = backend.rotate_hoisted(input, &steps)?;
        let (level, scale) = (backend.level(input), backend.scale(input));
        if level == 0 {
            return Err(CkksError::OutOfLevels { needed: 1, level: 0 }.into());
        }
        let pt_scale = params.mul_plain_scale(level, scale);
        let block = self.layout.block() as i64;
        let mut total: Option<B::Ct> = None;
        for d in 0..self.layout.channels {
            let mut partial: Option<B::Ct> = None;
            for (tap, (&offset, r)) in offsets.iter().zip(&rotated).enumerate() {
                let diagonal = self.diagonal(d, offset, tap);
                if diagonal.iter().all(|&v| v == 0.0) {
                    continue;
                }
                let pt = encode(params, &diagonal, level, pt_scale)?;
                let term = backend.mul_plain(r, &pt)?;
                partial = Some(match partial {
                    None => term,
                    Some(acc) => backend.add(&acc, &term)?,
                });
            }
            let Some(partial) = partial else { continue };
            let shifted = if d == 0 {
                partial
            } else {
                backend.rotate_hoisted(&partial, &[d as i64 * block])?.remove(0)
            };
            total = Some(match total {
                None => shifted,
                Some(acc) => backend.add(&acc, &shifted)?,
            });
        }
        let total = match total {
            Some(t) => t,
            // All-zero weights: the product with a zero plaintext.
            None => backend.mul_plain(input, &encode(params, &[], level, pt_scale)?)?,
        };
        backend.rescale(&total)
    }
}
