//! Which images a plan's ciphertexts can carry: the values an image makes
//! on the way through the network, as the plan carries them (its gain
//! included), against the largest value the parameters hold at the plan's
//! lowest level.
//!
//! An image past the bound can wrap a coefficient of a ciphertext, and a
//! wrapped coefficient changes every slot of that ciphertext, so it spoils
//! every image sharing it (a batch, or image sets merged into lanes). Its
//! own result is meaningless either way. Below the bound, large values stay
//! in their own slots: every error an operation adds either does not depend
//! on the values (encryption, rescaling, key switching) or is a product
//! taken slot by slot. Only a party holding both the latents and the model
//! can compute this (a scoring harness such as `score`, or a client given
//! the model); the server sees no values, and the client of the paper's
//! protocol has no model.

use super::plan::{Plan, HEADROOM_LEVELS};
use crate::ckks::Params;
use crate::nn::{with_gain, Model, NnError};
use ndarray::ArrayView4;

/// How far under [`Params::value_bound`] the values the plaintext pass
/// shows must stay. Inside a layer a ciphertext holds sums the pass never
/// shows: a convolution's and the last linear layer's partial sums, at most
/// the layer's input peak times its weights' L1 norm per output, and a
/// polynomial's separate terms. At the plan's lowest level only the last
/// layer computes. The bundled models' last layers have L1 norms of 8.9 to
/// 13.3 per class, which the plan divides by its gain of 16, so their
/// partial sums stay under the peak; a sixteenth of the bound leaves that
/// room for a model carried without gain, and for the noise.
pub const PARTIAL_SUM_MARGIN: f64 = 16.0;

/// The values a plan's ciphertexts carry, checked in plaintext.
///
/// Invariant: `carried` is the folded model as the plan lowered it (with
/// the plan's network gain), so its tensors are the ciphertexts' values.
#[derive(Clone, Debug)]
pub struct ValueRange {
    carried: Model<f64>,
    bound: f64,
}

impl ValueRange {
    /// The range of `plan`, lowered from the folded `model` for `params`.
    pub fn new(model: &Model<f64>, params: &Params, plan: &Plan) -> Self {
        let gain = plan.network_gain();
        let carried = if gain == 1.0 {
            model.clone()
        } else {
            with_gain(model, gain).expect("the plan carries a gain only where with_gain applies")
        };
        ValueRange {
            carried,
            bound: params.value_bound(HEADROOM_LEVELS) / PARTIAL_SUM_MARGIN,
        }
    }

    /// The largest peak ([`Self::peaks`]) an image can have and share its
    /// ciphertexts with others.
    pub fn bound(&self) -> f64 {
        self.bound
    }

    /// Each image's peak: the largest magnitude of any value the plan's
    /// ciphertexts carry for it ([`Model::forward_with_peaks`] of the
    /// carried model), infinite where one is not finite.
    ///
    /// # Errors
    /// As [`Model::forward`].
    pub fn peaks(&self, x: ArrayView4<'_, f64>) -> Result<Vec<f64>, NnError> {
        Ok(self.carried.forward_with_peaks(x)?.1.to_vec())
    }

    /// Whether an image of this peak fits ([`Self::bound`]).
    pub fn holds(&self, peak: f64) -> bool {
        peak <= self.bound
    }
}
