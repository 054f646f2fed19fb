//! Weight diagonals kept where the backend evaluates, so that an image
//! after the first neither builds, encodes (host FFT), uploads nor
//! transforms them again.
//!
//! A convolution's plaintexts for one giant step (and its bias) depend on
//! the layer, the output ciphertext, the channel-block shift, the level and
//! the scale only, never on the image: [`WeightStore`] keeps each giant
//! step's plaintexts and each bias, finished (evaluation form, the
//! backend's own buffers), under that key, up to a byte budget. Past the
//! budget they are encoded for each use, as without a store.

use crate::ckks::{EvalBackend, Params};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes of weight diagonals a GPU evaluation keeps resident unless told
/// otherwise: 8 GiB, beside the keys on a 16 GB card. ResNet20 at f=8 under
/// `n16` needs about 27 GB to keep every diagonal (`latent-he plan` reports
/// it); past the budget the rest is encoded per image.
pub const DEFAULT_GPU_WEIGHT_BYTES: u64 = 8 << 30;

/// A process-wide source of layer identities: each lowered convolution
/// takes one ([`next_layer_id`]); a clone keeps its layer's (same weights).
static LAYER_IDS: AtomicU64 = AtomicU64::new(0);

/// A fresh layer identity, never handed out before in this process.
pub(crate) fn next_layer_id() -> u64 {
    LAYER_IDS.fetch_add(1, Ordering::Relaxed)
}

/// Which plaintexts of an output ciphertext of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Part {
    /// The weight diagonals of the giant step of this channel-block shift.
    Giant(usize),
    /// The bias.
    Bias,
}

/// Whose plaintexts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    /// A convolution's ([`next_layer_id`]) for one output ciphertext.
    Conv {
        /// The convolution.
        layer: u64,
        /// Output ciphertext.
        output: usize,
        /// Which of its plaintexts.
        part: Part,
    },
    /// A slot vector (an activation's constant), by the BLAKE3 of its
    /// values' bytes.
    Slots([u8; 32]),
}

/// What identifies a group of plaintexts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PlaintextKey {
    /// Whose.
    pub source: Source,
    /// Level the plaintexts are encoded at.
    pub level: usize,
    /// Their scale's bits.
    pub scale_bits: u64,
}

/// A group of plaintexts: for a giant step one per `(input ciphertext,
/// baby step)` term, `None` where the diagonal is all zero; for a bias one.
pub(crate) type KeptPlaintexts<Pt> = Arc<Vec<Option<Pt>>>;

/// Finished weight and bias plaintexts kept for later images, for one
/// parameter set.
///
/// Invariants: every kept entry was encoded under the parameters whose
/// fingerprint the store holds; `bytes` is the sum of the kept entries'
/// [`plaintext_bytes`] and never exceeds `budget`.
pub struct WeightStore<Pt> {
    params: [u8; 16],
    budget: u64,
    kept: Mutex<Kept<Pt>>,
}

struct Kept<Pt> {
    bytes: u64,
    steps: HashMap<PlaintextKey, KeptPlaintexts<Pt>>,
}

impl<Pt> WeightStore<Pt> {
    /// An empty store for plaintexts under `params`, keeping at most
    /// `budget` bytes (0: none).
    pub fn new(params: &Params, budget: u64) -> Self {
        WeightStore {
            params: params.fingerprint(),
            budget,
            kept: Mutex::new(Kept {
                bytes: 0,
                steps: HashMap::new(),
            }),
        }
    }

    /// A store that keeps nothing: every giant step encoded per use.
    pub fn disabled(params: &Params) -> Self {
        Self::new(params, 0)
    }

    /// Bytes kept now.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Groups of plaintexts (giant steps and biases) kept now.
    pub fn groups(&self) -> usize {
        self.lock().steps.len()
    }

    /// The budget in bytes.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept<Pt>> {
        // A panic while holding the lock leaves the map consistent (inserts
        // are single calls), so a poisoned lock is still usable.
        self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The plaintexts kept under `key` for `params`, else those `encode`
    /// makes, offered to the store ([`Self::offer`]).
    ///
    /// # Errors
    /// Whatever `encode` returns.
    pub(crate) fn get_or_encode<E>(
        &self,
        params: &Params,
        key: PlaintextKey,
        encode: impl FnOnce() -> Result<Vec<Option<Pt>>, E>,
    ) -> Result<KeptPlaintexts<Pt>, E> {
        match self.get(params, &key) {
            Some(kept) => Ok(kept),
            None => Ok(self.offer(params, key, encode()?)),
        }
    }

    /// The plaintexts kept under `key` for `params`; `None` when they are
    /// not kept or the store belongs to other parameters.
    fn get(&self, params: &Params, key: &PlaintextKey) -> Option<KeptPlaintexts<Pt>> {
        if params.fingerprint() != self.params {
            return None;
        }
        self.lock().steps.get(key).cloned()
    }

    /// Keeps `plaintexts` under `key` when they fit the budget (and the
    /// store belongs to `params`); returns them either way.
    fn offer(&self, params: &Params, key: PlaintextKey, plaintexts: Vec<Option<Pt>>) -> KeptPlaintexts<Pt> {
        let plaintexts = Arc::new(plaintexts);
        if params.fingerprint() != self.params {
            return plaintexts;
        }
        let count = plaintexts.iter().flatten().count() as u64;
        let bytes = count * plaintext_bytes(params, key.level);
        let mut kept = self.lock();
        if kept.bytes + bytes <= self.budget && !kept.steps.contains_key(&key) {
            kept.bytes += bytes;
            kept.steps.insert(key, plaintexts.clone());
        }
        plaintexts
    }
}

/// `values` encoded at `level` and `scale` on `backend`, taken from
/// `weights` when kept there, else encoded and offered to it.
///
/// # Errors
/// Encoding refusals ([`EvalBackend::encode`]).
pub(crate) fn slots_plaintext<B: EvalBackend>(
    backend: &B,
    params: &Params,
    weights: &WeightStore<B::Pt>,
    values: &[f64],
    level: usize,
    scale: f64,
) -> Result<KeptPlaintexts<B::Pt>, B::Error> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let key = PlaintextKey {
        source: Source::Slots(*blake3::hash(&bytes).as_bytes()),
        level,
        scale_bits: scale.to_bits(),
    };
    weights.get_or_encode(params, key, || Ok(vec![Some(backend.encode(values, level, scale)?)]))
}

/// Bytes of one finished plaintext at `level`: a 32-bit word per
/// coefficient and prime.
pub fn plaintext_bytes(params: &Params, level: usize) -> u64 {
    4 * params.n() as u64 * (level as u64 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(layer: u64) -> PlaintextKey {
        PlaintextKey {
            source: Source::Conv {
                layer,
                output: 0,
                part: Part::Giant(1),
            },
            level: 2,
            scale_bits: 1f64.to_bits(),
        }
    }

    #[test]
    fn keeps_within_the_budget_and_for_its_own_parameters_only() {
        let params = Params::preset("insecure-n12").unwrap();
        let other = Params::preset("insecure-n12-deep").unwrap();
        let each = plaintext_bytes(&params, 2);
        assert_eq!(each, 4 * 4096 * 3);
        let store = WeightStore::<u8>::new(&params, 3 * each);
        // Two plaintexts and a zero diagonal: two plaintexts' bytes.
        store.offer(&params, key(0), vec![Some(1), None, Some(2)]);
        assert_eq!((store.bytes(), store.groups()), (2 * each, 1));
        assert_eq!(
            store.get(&params, &key(0)).unwrap().as_slice(),
            &[Some(1), None, Some(2)]
        );
        // Past the budget: returned, not kept.
        let given = store.offer(&params, key(1), vec![Some(3), Some(4)]);
        assert_eq!(given.as_slice(), &[Some(3), Some(4)]);
        assert!(store.get(&params, &key(1)).is_none());
        assert_eq!(store.bytes(), 2 * each);
        // Another parameter set neither reads nor fills it.
        assert!(store.get(&other, &key(0)).is_none());
        store.offer(&other, key(2), vec![Some(5)]);
        assert_eq!(store.groups(), 1);
        // A disabled store keeps nothing.
        let off = WeightStore::<u8>::disabled(&params);
        off.offer(&params, key(0), vec![Some(1)]);
        assert_eq!((off.bytes(), off.groups()), (0, 0));
    }

    #[test]
    fn layer_ids_are_never_reused() {
        let (a, b) = (next_layer_id(), next_layer_id());
        assert_ne!(a, b);
    }
}
