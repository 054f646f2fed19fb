//! The GPU evaluator's work predicted without a device: the dispatches each
//! [`super::gpu_eval::GpuEvaluator`] operation records, as a function of
//! the parameters, the level and the adapter's storage-binding size, and a
//! backend ([`GpuCostBackend`]) that runs any code written over
//! [`EvalBackend`] (the plan's executor) on symbolic ciphertexts, summing
//! those counts. `tests/gpu_work.rs` holds the counts equal to what the
//! recorder counts on a real adapter, so the model cannot drift from the
//! evaluator.
//!
//! The model covers the layouts where every twiddle table shares one
//! storage binding and every switching key's digits share one
//! ([`GpuCostModel::new`] refuses the others): all the presets on any
//! adapter with a binding of at least 128 MiB.

use super::ciphertext::Ciphertext;
use super::encoder::{encode_coeffs, EncodedCoeffs, ScaledCoeffs};
use super::error::CkksError;
use super::evaluator::rotation_keys;
use super::params::Params;
use super::EvalBackend;
use crate::backend::gpu::kernels::ntt_pass_bits;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// How many items of `limbs` limbs each (ring degree `n`) one storage
/// binding of `binding_limit` bytes holds, at least 1: the plaintexts
/// finished together, the rotations of one hoisted rotation sharing a
/// buffer.
pub(crate) fn per_binding(binding_limit: u64, n: usize, limbs: usize) -> usize {
    ((binding_limit / (4 * n * limbs) as u64) as usize).max(1)
}

/// How [`super::gpu_eval::GpuEvaluator::plaintexts`] finishes one group of
/// consecutive encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PlaintextGroup {
    /// One encoding with wide coefficients, finished on the host and
    /// uploaded: no dispatch.
    Host,
    /// This many narrow encodings of one level, reduced and transformed
    /// together on the device.
    Device(usize),
}

/// The groups `plaintexts` finishes encodings in, in order: each wide one
/// alone, narrow ones in runs of one level of at most `fits(level)`.
/// `encoded` lists each encoding's `(level, narrow)`.
pub(crate) fn plaintext_groups(encoded: &[(usize, bool)], fits: impl Fn(usize) -> usize) -> Vec<PlaintextGroup> {
    let mut groups = Vec::new();
    let mut run: Option<(usize, usize)> = None; // (level, count)
    for &(level, narrow) in encoded {
        if !narrow {
            groups.extend(run.take().map(|r| PlaintextGroup::Device(r.1)));
            groups.push(PlaintextGroup::Host);
            continue;
        }
        match &mut run {
            Some((l, count)) if *l == level && *count < fits(level) => *count += 1,
            _ => {
                groups.extend(run.take().map(|r| PlaintextGroup::Device(r.1)));
                run = Some((level, 1));
            }
        }
    }
    groups.extend(run.map(|r| PlaintextGroup::Device(r.1)));
    groups
}

/// Why a layout is outside the model.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the GPU cost model needs {what} in one storage binding: {bytes} bytes, the binding holds {limit}")]
pub struct GpuCostError {
    /// What does not fit.
    pub what: &'static str,
    /// Its bytes.
    pub bytes: u64,
    /// The binding size.
    pub limit: u64,
}

/// The dispatches of each GPU evaluator operation, for one parameter set
/// and binding size.
///
/// Invariant: every twiddle table and every digit of a top-level switching
/// key fit one binding of `binding_limit` bytes.
#[derive(Clone, Debug)]
pub struct GpuCostModel {
    n: usize,
    /// Dispatches of one NTT (forward or inverse).
    passes: u64,
    binding_limit: u64,
    /// Digits and extended limbs per level.
    digits: Vec<usize>,
    extended: Vec<usize>,
}

impl GpuCostModel {
    /// The model of `params` on an adapter whose storage bindings hold
    /// `binding_limit` bytes (the smaller of its binding and buffer sizes).
    ///
    /// # Errors
    /// [`GpuCostError`] when the twiddle tables or a top-level key's digits
    /// need more than one binding (the evaluator then splits dispatches,
    /// which the model does not follow).
    pub fn new(params: &Params, binding_limit: u64) -> Result<Self, GpuCostError> {
        let n = params.n();
        let twiddles = 16 * n as u64 * params.ring().global_count() as u64;
        let top = params.max_level();
        let key = (4 * n * params.extended_layout(top).len() * params.digits(top).len()) as u64;
        for (what, bytes) in [("the NTT twiddle tables", twiddles), ("a switching key's digits", key)] {
            if bytes > binding_limit {
                return Err(GpuCostError {
                    what,
                    bytes,
                    limit: binding_limit,
                });
            }
        }
        Ok(Self {
            n,
            passes: ntt_pass_bits(n.trailing_zeros()).len() as u64,
            binding_limit,
            digits: (0..=top).map(|l| params.digits(l).len()).collect(),
            extended: (0..=top).map(|l| params.extended_layout(l).len()).collect(),
        })
    }

    /// Dispatches of the one-kernel operations: add, sub, neg, the plaintext
    /// and constant products and sums, a plaintext product accumulated.
    pub fn elementwise(&self) -> u64 {
        1
    }

    /// Dispatches finishing `count` (at least 1) narrow encodings together:
    /// one reduction, one NTT.
    pub fn finish_plaintexts(&self) -> u64 {
        1 + self.passes
    }

    /// Dispatches of a rescale: the last limbs' inverse NTT, the broadcast
    /// transformed with the subtraction and scaling fused into its last pass.
    pub fn rescale(&self) -> u64 {
        2 * self.passes
    }

    /// Dispatches of a decomposition (ModUp) of a ciphertext's `c1`: its
    /// inverse NTT, every digit's conversion fused into one forward NTT.
    pub fn decompose(&self) -> u64 {
        2 * self.passes
    }

    /// Dispatches of a key switch of a decomposed polynomial finished by
    /// its own ModDown: the inner product with the first pass of the special
    /// limbs' inverse NTT, that NTT's other passes, ModDown's conversion
    /// fused into a forward NTT with the finish in its last pass.
    pub fn key_switch(&self) -> u64 {
        2 * self.passes
    }

    /// Dispatches of a multiply and relinearize (not rescaled): the tensor
    /// product with the first pass of `d2`'s inverse NTT, its other passes,
    /// the conversion of the digits in one forward NTT, the key switch.
    pub fn mul_relin(&self) -> u64 {
        self.passes + self.passes + self.key_switch()
    }

    /// Dispatches of a hoisted rotation by `keyed` non-trivial steps: one
    /// decomposition (none for `keyed` 0), one key switch per step.
    pub fn rotate_hoisted(&self, keyed: u64) -> u64 {
        if keyed == 0 {
            0
        } else {
            self.decompose() + keyed * self.key_switch()
        }
    }

    /// Dispatches of adding a rotated term to a rotation sum: one kernel
    /// for the identity; else the decomposition, the inner product into the
    /// running sums, the rotated `c0` added.
    pub fn rotation_sum_add(&self, keyed: bool) -> u64 {
        if keyed {
            self.decompose() + 2
        } else {
            1
        }
    }

    /// Dispatches of finishing a rotation sum: none without a key-switched
    /// term; else the special limbs' inverse NTT and ModDown.
    pub fn rotation_sum_finish(&self, keyed: bool) -> u64 {
        if keyed {
            2 * self.passes
        } else {
            0
        }
    }

    /// Bytes of a switching key an inner product at `level` reads: both
    /// halves of every digit over the level's extended limbs.
    pub fn key_bytes(&self, level: usize) -> u64 {
        (2 * 4 * self.n * self.digits[level] * self.extended[level]) as u64
    }

    /// Rotations of one hoisted rotation at `level` sharing a buffer.
    fn rotations_per_buffer(&self, level: usize) -> usize {
        per_binding(self.binding_limit, self.n, 2 * (level + 1))
    }

    /// Plaintexts at `level` finished together at most.
    fn plaintexts_per_binding(&self, level: usize) -> usize {
        per_binding(self.binding_limit, self.n, level + 1)
    }
}

/// Predicted GPU work: dispatches, the switching-key bytes the inner
/// products read, the plaintext coefficients uploaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GpuCost {
    /// Compute dispatches, as [`crate::backend::gpu::GpuWork::dispatches`].
    pub dispatches: u64,
    /// Key switches (each reads one key).
    pub key_switches: u64,
    /// Bytes of switching keys read by the inner products (a lower bound
    /// of the traffic: ciphertexts, tables and plaintexts come on top).
    pub key_bytes: u64,
    /// Plaintexts encoded.
    pub plaintexts: u64,
    /// Bytes of plaintext coefficients uploaded (8 a coefficient for narrow
    /// ones, `4 (level + 1)` for wide ones; tables and uniforms not counted).
    pub plaintext_upload_bytes: u64,
}

impl GpuCost {
    fn zip_with(&self, other: &GpuCost, f: impl Fn(u64, u64) -> u64) -> GpuCost {
        GpuCost {
            dispatches: f(self.dispatches, other.dispatches),
            key_switches: f(self.key_switches, other.key_switches),
            key_bytes: f(self.key_bytes, other.key_bytes),
            plaintexts: f(self.plaintexts, other.plaintexts),
            plaintext_upload_bytes: f(self.plaintext_upload_bytes, other.plaintext_upload_bytes),
        }
    }

    /// The work between `earlier` and `self` (field by field).
    pub fn since(&self, earlier: &GpuCost) -> GpuCost {
        self.zip_with(earlier, u64::saturating_sub)
    }

    /// The work of both (field by field).
    pub fn plus(&self, other: &GpuCost) -> GpuCost {
        self.zip_with(other, u64::saturating_add)
    }

    /// Predicted seconds on `device`: every dispatch's gap plus the
    /// switching keys read at the device's memory bandwidth. A floor of the
    /// memory-bound work, not a simulation: ciphertext and plaintext
    /// traffic and arithmetic come on top.
    pub fn seconds_on(&self, device: &DeviceProfile) -> f64 {
        self.dispatches as f64 * device.dispatch_gap_s + self.key_bytes as f64 / device.bandwidth_bytes_per_s
    }
}

/// A GPU the plan predicts time for.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct DeviceProfile {
    /// Short name (`h100`, `h200`).
    pub name: &'static str,
    /// Peak memory bandwidth, bytes per second.
    pub bandwidth_bytes_per_s: f64,
    /// Seconds each dispatch costs beyond its memory traffic (launch,
    /// barrier, bind group).
    pub dispatch_gap_s: f64,
    /// The storage binding size wgpu reports (sets how dispatches split).
    pub binding_bytes: u64,
}

/// The named device profiles. Sources:
/// - bandwidth: NVIDIA's datasheets, H100 SXM5 80 GB HBM3 3.35 TB/s, H200
///   141 GB HBM3e 4.8 TB/s;
/// - binding: 2047 MiB, what `latent-he devices` reported on an H200
///   through the NVIDIA Vulkan ICD (docs/perf.md, 2026-11-26), taken for
///   the H100 too (same driver limits);
/// - dispatch gap: 10 us, an assumption (a wgpu dispatch with its barrier
///   and bind group on a discrete GPU), not measured: no profile of a real
///   GPU has been taken yet.
pub const DEVICE_PROFILES: [DeviceProfile; 2] = [
    DeviceProfile {
        name: "h100",
        bandwidth_bytes_per_s: 3.35e12,
        dispatch_gap_s: 10e-6,
        binding_bytes: 2047 << 20,
    },
    DeviceProfile {
        name: "h200",
        bandwidth_bytes_per_s: 4.8e12,
        dispatch_gap_s: 10e-6,
        binding_bytes: 2047 << 20,
    },
];

/// A ciphertext of [`GpuCostBackend`]: level, scale and the buffer its
/// words would share.
#[derive(Clone, Debug)]
pub struct CostCt {
    level: usize,
    scale: f64,
    buffer: u64,
}

/// A plaintext of [`GpuCostBackend`]: scale and its buffer.
#[derive(Clone, Debug)]
pub struct CostPt {
    scale: f64,
    buffer: u64,
}

/// A rotation sum of [`GpuCostBackend`].
#[derive(Debug)]
pub struct CostRotationSum {
    ct: CostCt,
    keyed: bool,
}

/// An [`EvalBackend`] that computes nothing and counts what the GPU
/// evaluator would record: each operation adds [`GpuCostModel`]'s count,
/// and ciphertexts and plaintexts carry the buffers they would share, so
/// that product sums split where the evaluator's do. Levels and scales
/// follow the evaluator's; operands are not checked (the plan was).
pub struct GpuCostBackend {
    params: std::sync::Arc<Params>,
    model: GpuCostModel,
    cost: Mutex<GpuCost>,
    buffers: AtomicU64,
}

impl GpuCostBackend {
    /// A backend counting with `model` for `params`.
    pub fn new(params: std::sync::Arc<Params>, model: GpuCostModel) -> Self {
        Self {
            params,
            model,
            cost: Mutex::new(GpuCost::default()),
            buffers: AtomicU64::new(0),
        }
    }

    /// A ciphertext at `level` and `scale` (an input), in a buffer of its own.
    pub fn ciphertext(&self, level: usize, scale: f64) -> CostCt {
        CostCt {
            level,
            scale,
            buffer: self.buffer(),
        }
    }

    /// The work counted so far.
    pub fn cost(&self) -> GpuCost {
        *self.cost.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, f: impl FnOnce(&mut GpuCost)) {
        f(&mut self.cost.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn dispatch(&self, dispatches: u64) {
        self.count(|c| c.dispatches += dispatches);
    }

    fn buffer(&self) -> u64 {
        self.buffers.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh ciphertext after `dispatches` dispatches.
    fn fresh(&self, dispatches: u64, level: usize, scale: f64) -> CostCt {
        self.dispatch(dispatches);
        self.ciphertext(level, scale)
    }

    fn key_switches(&self, level: usize, count: u64) {
        let bytes = count * self.model.key_bytes(level);
        self.count(|c| {
            c.key_switches += count;
            c.key_bytes += bytes;
        });
    }

    /// Whether a rotation by `steps` needs a key switch.
    fn keyed(&self, steps: &[i64], level: usize) -> Vec<bool> {
        rotation_keys(steps, self.params.n(), level, |_| Some(((), usize::MAX)))
            .map(|keys| keys.iter().map(Option::is_some).collect())
            .unwrap_or_else(|_| vec![true; steps.len()])
    }
}

impl EvalBackend for GpuCostBackend {
    type Ct = CostCt;
    type Pt = CostPt;
    type RotationSum = CostRotationSum;
    type Error = CkksError;

    fn name(&self) -> &'static str {
        "gpu-cost"
    }
    fn upload(&self, ct: &Ciphertext) -> Result<CostCt, CkksError> {
        Ok(self.ciphertext(ct.level(), ct.scale))
    }
    fn download(&self, _: &CostCt) -> Result<Ciphertext, CkksError> {
        Err(CkksError::Shape {
            what: "download from the GPU cost model (it holds no words)",
            expected: 0,
            found: 1,
        })
    }
    fn add(&self, a: &CostCt, _: &CostCt) -> Result<CostCt, CkksError> {
        Ok(self.fresh(self.model.elementwise(), a.level, a.scale))
    }
    fn encode(&self, values: &[f64], level: usize, scale: f64) -> Result<CostPt, CkksError> {
        Ok(self
            .plaintexts(vec![encode_coeffs(&self.params, values, level, scale)?])?
            .remove(0))
    }
    fn plaintexts(&self, encoded: Vec<EncodedCoeffs>) -> Result<Vec<CostPt>, CkksError> {
        let shape: Vec<(usize, bool)> = encoded
            .iter()
            .map(|e| (e.level(), matches!(e.coeffs(), ScaledCoeffs::Narrow(_))))
            .collect();
        let n = self.params.n() as u64;
        let mut out = Vec::with_capacity(encoded.len());
        let mut rest = encoded.iter();
        for group in plaintext_groups(&shape, |l| self.model.plaintexts_per_binding(l)) {
            let (count, dispatches, bytes_each) = match group {
                PlaintextGroup::Host => (1, 0, 4 * n),
                PlaintextGroup::Device(count) => (count, self.model.finish_plaintexts(), 8 * n),
            };
            let buffer = self.buffer();
            let mut bytes = 0;
            out.extend(rest.by_ref().take(count).map(|e| {
                bytes += if group == PlaintextGroup::Host {
                    bytes_each * (e.level() as u64 + 1)
                } else {
                    bytes_each
                };
                CostPt {
                    scale: e.scale(),
                    buffer,
                }
            }));
            self.count(|c| {
                c.dispatches += dispatches;
                c.plaintexts += count as u64;
                c.plaintext_upload_bytes += bytes;
            });
        }
        Ok(out)
    }
    fn add_plain(&self, ct: &CostCt, _: &CostPt) -> Result<CostCt, CkksError> {
        Ok(self.fresh(self.model.elementwise(), ct.level, ct.scale))
    }
    fn mul_plain(&self, ct: &CostCt, pt: &CostPt) -> Result<CostCt, CkksError> {
        Ok(self.fresh(self.model.elementwise(), ct.level, ct.scale * pt.scale))
    }
    fn mul_plain_add(&self, acc: CostCt, _: &CostCt, _: &CostPt) -> Result<CostCt, CkksError> {
        self.dispatch(self.model.elementwise());
        Ok(acc)
    }
    fn mul_plain_sum(&self, terms: &[(&CostCt, &CostPt)]) -> Result<CostCt, CkksError> {
        let (first, first_pt) = *terms.first().ok_or(CkksError::Shape {
            what: "sum of plaintext products",
            expected: 1,
            found: 0,
        })?;
        // One kernel per run sharing the ciphertexts' and the plaintexts' buffers.
        let runs = 1 + terms
            .windows(2)
            .filter(|w| w[0].0.buffer != w[1].0.buffer || w[0].1.buffer != w[1].1.buffer)
            .count() as u64;
        Ok(self.fresh(
            runs * self.model.elementwise(),
            first.level,
            first.scale * first_pt.scale,
        ))
    }
    fn mul_relin(&self, a: &CostCt, b: &CostCt) -> Result<CostCt, CkksError> {
        self.key_switches(a.level, 1);
        Ok(self.fresh(self.model.mul_relin(), a.level, a.scale * b.scale))
    }
    fn rescale(&self, ct: &CostCt) -> Result<CostCt, CkksError> {
        let level = ct
            .level
            .checked_sub(1)
            .ok_or(CkksError::OutOfLevels { needed: 1, level: 0 })?;
        let q_last = self.params.ring().q(ct.level).value();
        Ok(self.fresh(self.model.rescale(), level, ct.scale / f64::from(q_last)))
    }
    fn neg(&self, ct: &CostCt) -> Result<CostCt, CkksError> {
        Ok(self.fresh(self.model.elementwise(), ct.level, ct.scale))
    }
    fn mul_const(&self, ct: &CostCt, _: f64) -> Result<CostCt, CkksError> {
        let scale = self.params.mul_plain_scale(ct.level, ct.scale);
        Ok(self.fresh(self.model.elementwise(), ct.level, ct.scale * scale))
    }
    fn add_const(&self, ct: &CostCt, _: f64) -> Result<CostCt, CkksError> {
        Ok(self.fresh(self.model.elementwise(), ct.level, ct.scale))
    }
    fn drop_level(&self, ct: &CostCt, level: usize) -> Result<CostCt, CkksError> {
        // Copies only.
        Ok(self.fresh(0, level, ct.scale))
    }
    fn rotate_hoisted(&self, ct: &CostCt, steps: &[i64]) -> Result<Vec<CostCt>, CkksError> {
        let keyed = self.keyed(steps, ct.level).into_iter().filter(|&k| k).count() as u64;
        self.key_switches(ct.level, keyed);
        self.dispatch(self.model.rotate_hoisted(keyed));
        let per_buffer = self.model.rotations_per_buffer(ct.level);
        let mut buffer = 0;
        Ok((0..steps.len())
            .map(|k| {
                if k % per_buffer == 0 {
                    buffer = self.buffer();
                }
                CostCt { buffer, ..ct.clone() }
            })
            .collect())
    }
    fn rotation_sum_add(
        &self,
        sum: Option<CostRotationSum>,
        ct: &CostCt,
        steps: i64,
    ) -> Result<CostRotationSum, CkksError> {
        let keyed = self.keyed(&[steps], ct.level)[0];
        if keyed {
            self.key_switches(ct.level, 1);
        }
        self.dispatch(self.model.rotation_sum_add(keyed));
        let sum = sum.unwrap_or_else(|| CostRotationSum {
            ct: self.ciphertext(ct.level, ct.scale),
            keyed: false,
        });
        Ok(CostRotationSum {
            keyed: sum.keyed || keyed,
            ..sum
        })
    }
    fn rotation_sum_finish(&self, sum: CostRotationSum) -> Result<CostCt, CkksError> {
        self.dispatch(self.model.rotation_sum_finish(sum.keyed));
        Ok(sum.ct)
    }
    fn sync(&self) -> Result<(), CkksError> {
        Ok(())
    }
    fn level(&self, ct: &CostCt) -> usize {
        ct.level
    }
    fn scale(&self, ct: &CostCt) -> f64 {
        ct.scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_groups_split_at_wide_encodings_levels_and_the_binding() {
        use PlaintextGroup::{Device, Host};
        let groups = plaintext_groups(
            &[(3, true), (3, true), (3, true), (3, false), (3, true), (2, true)],
            |_| 2,
        );
        assert_eq!(groups, vec![Device(2), Device(1), Host, Device(1), Device(1)]);
        assert!(plaintext_groups(&[], |_| 1).is_empty());
    }

    #[test]
    fn the_model_refuses_keys_larger_than_a_binding() {
        let params = Params::preset("insecure-n12").unwrap();
        assert!(GpuCostModel::new(&params, 1 << 30).is_ok());
        let err = GpuCostModel::new(&params, 1 << 16).unwrap_err();
        assert_eq!(err.limit, 1 << 16);
    }
}
