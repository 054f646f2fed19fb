//! Image sets merged into the lanes a stride left empty.
//!
//! After a stride-2 layer a tensor fills one slot in four of its blocks (one
//! in sixteen after two). Four image sets evaluated in lockstep, in layouts
//! of `s` lanes, become one set of `2s` lanes: set `k` is rotated by the
//! offset of quadrant `k` of the lane cell and the four are added. Every
//! later layer then does the work of one set for all four (each lane reads
//! only its own, [`SlotLayout`]). Three rotations per ciphertext, summed
//! over `Q ++ P` with one ModDown ([`EvalBackend::rotation_sum_add`]); no
//! level.

use super::layout::SlotLayout;
use crate::ckks::EvalBackend;

/// Sets merged into one by a [`LaneMerge`].
pub const SETS_PER_MERGE: usize = 4;

/// Four sets in a layout of `s` lanes merged into one of `2s` lanes.
///
/// Invariant: `output` is `input` interleaved ([`SlotLayout::interleaved`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaneMerge {
    input: SlotLayout,
    output: SlotLayout,
}

impl LaneMerge {
    /// The merge of sets laid out as `input`, `None` when its gap has no
    /// room for twice the lanes.
    pub fn new(input: SlotLayout) -> Option<Self> {
        input.interleaved().map(|output| Self { input, output })
    }

    /// The layout of each set merged.
    pub fn input(&self) -> SlotLayout {
        self.input
    }

    /// The merged layout.
    pub fn output(&self) -> SlotLayout {
        self.output
    }

    /// The rotation that moves set `k`'s lanes onto quadrant `k`: its first
    /// lane becomes lane `k * s * s` of the output.
    fn step(&self, k: usize) -> i64 {
        -(self.output.lane_offset(k * self.input.lane_count()) as i64)
    }

    /// Rotations used (Galois keys).
    pub fn rotations(&self) -> Vec<i64> {
        (1..SETS_PER_MERGE).map(|k| self.step(k)).collect()
    }

    /// Key switches per set moved onto a quadrant (every set of a group
    /// but the first): one rotation per ciphertext.
    pub fn key_switches(&self) -> usize {
        self.input.cts()
    }

    /// Sets `4j .. 4j+4` (fewer for the last group) merged into set `j`, same
    /// level and scale.
    ///
    /// # Errors
    /// Missing rotation keys; sets at different levels or scales.
    pub fn apply<B: EvalBackend>(&self, backend: &B, sets: &[Vec<B::Ct>]) -> Result<Vec<Vec<B::Ct>>, B::Error> {
        sets.chunks(SETS_PER_MERGE)
            .map(|group| {
                (0..self.input.cts())
                    .map(|i| {
                        let mut sum = None;
                        for (k, set) in group.iter().enumerate() {
                            sum = Some(backend.rotation_sum_add(sum, &set[i], self.step(k))?);
                        }
                        backend.rotation_sum_finish(sum.expect("chunks are never empty"))
                    })
                    .collect()
            })
            .collect()
    }
}
