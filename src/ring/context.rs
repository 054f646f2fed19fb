//! The ring context: degree, the ciphertext primes `Q = q_0..q_L`, the
//! special primes `P = p_0..p_{k-1}`, and one NTT table per prime.

use crate::math::{Modulus, NttTable};
use rayon::prelude::*;

/// Which primes the limbs of a polynomial live over: the first `q` ciphertext
/// primes followed by the first `p` special primes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LimbLayout {
    /// Number of ciphertext primes, `q_0..q_{q-1}` (level + 1).
    pub q: usize,
    /// Number of special primes, `p_0..p_{p-1}`.
    pub p: usize,
}

impl LimbLayout {
    /// Limbs over `q_0..q_{q-1}` only.
    pub fn q_only(q: usize) -> Self {
        Self { q, p: 0 }
    }

    /// Total number of limbs.
    pub fn len(&self) -> usize {
        self.q + self.p
    }

    /// True when there are no limbs at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Degree and primes shared by every polynomial of one parameter set.
///
/// Invariant: `n` is a power of two, every prime is `1 mod 2n`, below 2^31
/// and distinct; `tables[i]` belongs to modulus `i` of `Q ++ P`.
#[derive(Debug)]
pub struct RingContext {
    n: usize,
    q_count: usize,
    tables: Vec<NttTable>,
}

impl RingContext {
    /// Builds the NTT tables. Returns `None` when a prime is not NTT-friendly
    /// for `n`.
    pub fn new(n: usize, q: &[u32], p: &[u32]) -> Option<Self> {
        let primes: Vec<u32> = q.iter().chain(p).copied().collect();
        let tables = primes
            .par_iter()
            .map(|&prime| NttTable::new(prime, n))
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            n,
            q_count: q.len(),
            tables,
        })
    }

    /// Ring degree N.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of ciphertext primes (max level + 1).
    pub fn q_count(&self) -> usize {
        self.q_count
    }

    /// Number of special primes.
    pub fn p_count(&self) -> usize {
        self.tables.len() - self.q_count
    }

    /// The NTT table of limb `limb` in `layout`.
    #[inline]
    pub fn table(&self, layout: LimbLayout, limb: usize) -> &NttTable {
        debug_assert!(limb < layout.len() && layout.q <= self.q_count);
        if limb < layout.q {
            &self.tables[limb]
        } else {
            &self.tables[self.q_count + limb - layout.q]
        }
    }

    /// The modulus of limb `limb` in `layout`.
    #[inline]
    pub fn modulus(&self, layout: LimbLayout, limb: usize) -> &Modulus {
        self.table(layout, limb).modulus()
    }

    /// Ciphertext prime `i`.
    pub fn q(&self, i: usize) -> &Modulus {
        self.tables[i].modulus()
    }

    /// Special prime `i`.
    pub fn p(&self, i: usize) -> &Modulus {
        self.tables[self.q_count + i].modulus()
    }

    /// The moduli of every limb of `layout`, in order.
    pub fn moduli(&self, layout: LimbLayout) -> Vec<Modulus> {
        (0..layout.len()).map(|i| *self.modulus(layout, i)).collect()
    }

    /// Number of primes in `Q ++ P`; global index `i < q_count()` is `q_i`,
    /// the rest are `p_{i - q_count()}`.
    pub fn global_count(&self) -> usize {
        self.tables.len()
    }

    /// The NTT table of the prime with global index `i`.
    pub fn global_table(&self, i: usize) -> &NttTable {
        &self.tables[i]
    }

    /// Global index of limb `limb` in `layout`.
    pub fn global_index(&self, layout: LimbLayout, limb: usize) -> usize {
        if limb < layout.q {
            limb
        } else {
            self.q_count + limb - layout.q
        }
    }

    /// The full layout `Q ++ P`.
    pub fn full_layout(&self) -> LimbLayout {
        LimbLayout {
            q: self.q_count,
            p: self.p_count(),
        }
    }
}
