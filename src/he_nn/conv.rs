//! Encrypted convolution of any kernel size, stride, padding and groups, on
//! tensors packed by [`SlotLayout`] (one or several ciphertexts, gaps,
//! replicas). Linear layers lower to it too (a 1x1 convolution on a pooled
//! tensor, or a kernel as large as the image).
//!
//! Output value `(co, yo, xo)` reads input `(ci, yo*s - p + ky, xo*s - p + kx)`.
//! Because the output layout keeps the input's blocks and multiplies the gap
//! by the stride, the slot distance between the two is
//! `giant + baby`: `baby = ((ky - p)*row + (kx - p))*gap_in` depends on the
//! tap only, `giant = delta*block` on the channel pair only. So, baby-step
//! giant-step:
//!
//! `out_j = sum_delta rot( sum_i sum_baby D[j, delta, i, baby] * rot(x_i, baby), delta*block )`
//!
//! with the baby rotations of each input ciphertext hoisted (one
//! decomposition), one giant rotation per `(output ciphertext, delta)` whose
//! key-switched parts are summed over `Q ++ P` and divided by `P` once per
//! output ciphertext ([`EvalBackend::rotation_sum_add`]), and one rescale
//! (one level). `D` holds the weight at the output slot shifted
//! by `delta*block` and zero wherever the tap reads padding, so gaps and
//! padding channels of the output stay zero. `D` holds each weight in every
//! lane of the output ([`SlotLayout::lane_offset`]): the steps depend on the
//! tap and the channels only, so each lane's outputs read its own inputs.
//!
//! Key switches: `cts_in * (babies - 1) + sum_j (giants_j - 1)`.

use super::layout::SlotLayout;
use super::weights::{next_layer_id, Part, PlaintextKey, Source, WeightStore};
use crate::ckks::encoder::encode_coeffs;
use crate::ckks::{CkksError, EvalBackend, Params};
use crate::nn::layers::ConvGeometry;
use rayon::prelude::*;
use std::collections::BTreeMap;
use thiserror::Error;

/// Why a convolution cannot be lowered.
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum HeConvError {
    /// The input layout has another channel count than the layer.
    #[error("layer {layer}: expects {expected} input channels, the tensor has {found}")]
    Channels {
        /// Layer name.
        layer: String,
        /// Channels the layer reads.
        expected: usize,
        /// Channels of the tensor.
        found: usize,
    },
    /// Weights or bias whose size does not match the geometry.
    #[error("layer {layer}: {what} has {found} values, the geometry needs {expected}")]
    Shape {
        /// Layer name.
        layer: String,
        /// `weights` or `bias`.
        what: &'static str,
        /// Values expected.
        expected: usize,
        /// Values given.
        found: usize,
    },
    /// The geometry is invalid or the input is smaller than the kernel.
    #[error("layer {layer}: a {kernel}x{kernel} kernel (stride {stride}, padding {padding}, groups {groups}) does not fit a {height}x{width} input")]
    Geometry {
        /// Layer name.
        layer: String,
        /// Kernel side.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Padding.
        padding: usize,
        /// Groups.
        groups: usize,
        /// Input rows.
        height: usize,
        /// Input columns.
        width: usize,
    },
}

/// One baby step: the slot distance and the kernel taps that share it.
#[derive(Clone, Debug)]
struct Baby {
    step: i64,
    taps: Vec<(usize, usize)>,
}

/// A convolution lowered onto slot layouts.
///
/// Invariants: `weight.len() == out * in/groups * k * k` (PyTorch order),
/// `bias` has `out` values if present; `output` is `input` strided by the
/// layer; `babies` are the taps that read inside the input for some output
/// position, grouped by slot distance; `giants[j]` lists the channel-block
/// shifts with a nonzero weight for output ciphertext `j`; `id` is this
/// layer's alone (a clone, with the same weights, keeps it), naming its
/// plaintexts in a [`WeightStore`].
#[derive(Clone, Debug)]
pub struct HeConv {
    id: u64,
    name: String,
    geometry: ConvGeometry,
    weight: Vec<f64>,
    bias: Option<Vec<f64>>,
    input: SlotLayout,
    output: SlotLayout,
    babies: Vec<Baby>,
    giants: Vec<Vec<usize>>,
}

impl HeConv {
    /// Lowers a convolution reading a tensor laid out as `input`.
    ///
    /// # Errors
    /// [`HeConvError`] for mismatched channels, shapes or geometry.
    pub fn new(
        name: impl Into<String>,
        geometry: ConvGeometry,
        weight: Vec<f64>,
        bias: Option<Vec<f64>>,
        input: SlotLayout,
    ) -> Result<Self, HeConvError> {
        let name = name.into();
        let g = geometry;
        if g.in_channels != input.channels {
            return Err(HeConvError::Channels {
                layer: name,
                expected: g.in_channels,
                found: input.channels,
            });
        }
        let geometry_error = || HeConvError::Geometry {
            layer: name.clone(),
            kernel: g.kernel,
            stride: g.stride,
            padding: g.padding,
            groups: g.groups,
            height: input.height,
            width: input.width,
        };
        let valid = g.groups >= 1
            && g.kernel >= 1
            && g.in_channels.is_multiple_of(g.groups)
            && g.out_channels.is_multiple_of(g.groups);
        let (height, width) = g
            .output_hw(input.height, input.width)
            .filter(|_| valid)
            .ok_or_else(geometry_error)?;
        let expected = g.out_channels * (g.in_channels / g.groups) * g.kernel * g.kernel;
        if weight.len() != expected {
            return Err(HeConvError::Shape {
                layer: name,
                what: "weights",
                expected,
                found: weight.len(),
            });
        }
        if let Some(b) = &bias {
            if b.len() != g.out_channels {
                return Err(HeConvError::Shape {
                    layer: name,
                    what: "bias",
                    expected: g.out_channels,
                    found: b.len(),
                });
            }
        }
        let output = input.strided(g.out_channels, height, width, g.stride);
        let mut conv = Self {
            id: next_layer_id(),
            name,
            geometry,
            weight,
            bias,
            input,
            output,
            babies: Vec::new(),
            giants: Vec::new(),
        };
        conv.babies = conv.find_babies();
        conv.giants = (0..output.cts()).map(|j| conv.find_giants(j)).collect();
        Ok(conv)
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Layout of the input tensor.
    pub fn input(&self) -> SlotLayout {
        self.input
    }

    /// Layout of the output tensor.
    pub fn output(&self) -> SlotLayout {
        self.output
    }

    /// Input row (or column) read by output index `o` through tap `t`.
    fn source(&self, o: usize, t: usize, size: usize) -> Option<usize> {
        let g = self.geometry;
        (o * g.stride + t).checked_sub(g.padding).filter(|&i| i < size)
    }

    /// True when tap `(ky, kx)` reads inside the input for output `(yo, xo)`.
    fn reads_inside(&self, (yo, xo): (usize, usize), (ky, kx): (usize, usize)) -> Option<(usize, usize)> {
        Some((
            self.source(yo, ky, self.input.height)?,
            self.source(xo, kx, self.input.width)?,
        ))
    }

    fn find_babies(&self) -> Vec<Baby> {
        let (k, p) = (self.geometry.kernel, self.geometry.padding as i64);
        let (row, gap) = (self.input.row as i64, self.input.gap as i64);
        let mut by_step: BTreeMap<i64, Vec<(usize, usize)>> = BTreeMap::new();
        for ky in 0..k {
            for kx in 0..k {
                let used = (0..self.output.height)
                    .any(|yo| (0..self.output.width).any(|xo| self.reads_inside((yo, xo), (ky, kx)).is_some()));
                if used {
                    let step = ((ky as i64 - p) * row + (kx as i64 - p)) * gap;
                    by_step.entry(step).or_default().push((ky, kx));
                }
            }
        }
        by_step.into_iter().map(|(step, taps)| Baby { step, taps }).collect()
    }

    /// The weight of output channel `co` on input channel `ci` at tap
    /// `(ky, kx)`, `None` when the two are in different groups.
    fn weight_of(&self, co: usize, ci: usize, (ky, kx): (usize, usize)) -> Option<f64> {
        let g = self.geometry;
        let (cin_g, cout_g) = (g.in_channels / g.groups, g.out_channels / g.groups);
        let group = co / cout_g;
        let local = ci.checked_sub(group * cin_g).filter(|&l| l < cin_g)?;
        Some(self.weight[((co * cin_g + local) * g.kernel + ky) * g.kernel + kx])
    }

    /// The channel pairs `(output block, co, ci)` that shift `delta` joins
    /// for output ciphertext `j` and input ciphertext `i`.
    fn pairs(&self, j: usize, delta: usize, i: usize) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let blocks = self.output.blocks_per_ct();
        (0..blocks).filter_map(move |bo| {
            let co = self.output.channel_at(j, bo)?;
            let ci = self.input.channel_at(i, (bo + delta) % blocks)?;
            Some((bo, co, ci))
        })
    }

    fn find_giants(&self, j: usize) -> Vec<usize> {
        (0..self.input.period())
            .filter(|&delta| {
                (0..self.input.cts()).any(|i| {
                    self.pairs(j, delta, i).any(|(_, co, ci)| {
                        self.babies
                            .iter()
                            .flat_map(|b| &b.taps)
                            .any(|&tap| self.weight_of(co, ci, tap).is_some_and(|w| w != 0.0))
                    })
                })
            })
            .collect()
    }

    /// The plaintext slot values `D[j, delta, i, baby]`; `None` when all zero.
    fn diagonal(&self, j: usize, delta: usize, i: usize, baby: &Baby) -> Option<Vec<f64>> {
        let (slots, block) = (self.output.slots, self.output.block);
        let mut values = vec![0.0; slots];
        let mut any = false;
        for (bo, co, ci) in self.pairs(j, delta, i) {
            let base = bo * block + delta * block;
            for &tap in &baby.taps {
                let w = match self.weight_of(co, ci, tap) {
                    Some(w) if w != 0.0 => w,
                    _ => continue,
                };
                for yo in 0..self.output.height {
                    for xo in 0..self.output.width {
                        if self.reads_inside((yo, xo), tap).is_some() {
                            let at = base + self.output.offset(yo, xo);
                            for m in 0..self.output.lane_count() {
                                values[(at + self.output.lane_offset(m)) % slots] += w;
                            }
                            any = true;
                        }
                    }
                }
            }
        }
        any.then_some(values)
    }

    /// Every rotation (slot steps) the layer uses: Galois keys to generate.
    pub fn rotations(&self) -> Vec<i64> {
        let block = self.output.block as i64;
        let mut steps: Vec<i64> = self.babies.iter().map(|b| b.step).collect();
        steps.extend(self.giants.iter().flatten().map(|&d| d as i64 * block));
        steps.retain(|&s| s != 0);
        steps.sort_unstable();
        steps.dedup();
        steps
    }

    /// Key switches one evaluation costs.
    pub fn key_switches(&self) -> usize {
        let babies = self.babies.iter().filter(|b| b.step != 0).count();
        let giants: usize = self.giants.iter().map(|g| g.iter().filter(|&&d| d != 0).count()).sum();
        self.input.cts() * babies + giants
    }

    /// Bytes the convolution holds at once at `level` for ring degree `n`:
    /// the hoisted rotations of every input ciphertext, the plaintexts of one
    /// giant step (encoded together) and the output accumulators.
    pub fn working_bytes(&self, level: usize, n: usize) -> usize {
        let limb = n * 4;
        let ct = 2 * (level + 1) * limb;
        let pt = (level + 1) * limb;
        let rotated = self.input.cts() * self.babies.len();
        rotated * (ct + pt) + 2 * self.output.cts() * ct
    }

    /// The same layer with its weights times `factor` and `bias` in place
    /// of its own.
    ///
    /// # Errors
    /// [`HeConvError::Shape`] for a bias of the wrong size.
    pub fn reweighted(&self, factor: f64, bias: Option<Vec<f64>>) -> Result<Self, HeConvError> {
        let weight = self.weight.iter().map(|w| w * factor).collect();
        Self::new(self.name.clone(), self.geometry, weight, bias, self.input)
    }

    /// The same layer with its weights and bias times `factor`.
    pub fn scaled(&self, factor: f64) -> Self {
        let bias = self.bias.as_ref().map(|b| b.iter().map(|v| v * factor).collect());
        self.reweighted(factor, bias).expect("the bias keeps its size")
    }

    /// The bias that makes this layer read `input + offset` on every input
    /// value: its own plus `offset` times each output channel's weight sum.
    /// `None` with padding, where border outputs read fewer values.
    pub fn bias_with_input_offset(&self, offset: f64) -> Option<Vec<f64>> {
        if self.geometry.padding != 0 {
            return None;
        }
        let g = self.geometry;
        let per_output = (g.in_channels / g.groups) * g.kernel * g.kernel;
        Some(
            self.weight
                .chunks_exact(per_output)
                .enumerate()
                .map(|(co, w)| self.bias.as_ref().map_or(0.0, |b| b[co]) + offset * w.iter().sum::<f64>())
                .collect(),
        )
    }

    /// Plaintext multiplications one evaluation costs (an upper bound:
    /// all-zero diagonals are skipped).
    pub fn plaintext_products(&self) -> usize {
        self.giants.iter().map(Vec::len).sum::<usize>() * self.input.cts() * self.babies.len()
    }

    /// The convolution of the encrypted input (one ciphertext per
    /// [`SlotLayout::cts`] of the input layout, all at one level); one level,
    /// outputs at the next level's canonical scale.
    ///
    /// # Errors
    /// Evaluator refusals (missing rotation keys: generate [`Self::rotations`];
    /// level 0; mismatched levels) and encoding errors.
    pub fn apply<B: EvalBackend>(&self, backend: &B, params: &Params, input: &[B::Ct]) -> Result<Vec<B::Ct>, B::Error> {
        Ok(self
            .apply_sets(backend, params, &[input], false, &WeightStore::disabled(params))?
            .remove(0))
    }

    /// The convolution of an input with one rescale pending (an activation's
    /// [`super::PolyActivation::apply_pending`] output, at the square of a
    /// canonical scale): rotations and products at that scale, then two
    /// rescales, so the outputs land two levels below the input, at the
    /// same level and canonical scale as [`Self::apply`] of the rescaled
    /// input. The rotations' rounding noise is then divided by a prime.
    ///
    /// # Errors
    /// As [`Self::apply`]; the input needs two levels.
    pub fn apply_pending<B: EvalBackend>(
        &self,
        backend: &B,
        params: &Params,
        input: &[B::Ct],
    ) -> Result<Vec<B::Ct>, B::Error> {
        Ok(self
            .apply_sets(backend, params, &[input], true, &WeightStore::disabled(params))?
            .remove(0))
    }

    /// The plaintexts of giant step `key` (its level and scale) of output
    /// ciphertext `j` and shift `delta`, one per `(input ciphertext, baby)`
    /// of `terms`,
    /// `None` for an all-zero diagonal: the diagonals built and their host
    /// encoding done in parallel, then finished by the backend all at once
    /// (the GPU in one reduction and one NTT).
    fn giant_step_plaintexts<B: EvalBackend>(
        &self,
        backend: &B,
        params: &Params,
        terms: &[(usize, usize)],
        (key, j, delta): (PlaintextKey, usize, usize),
    ) -> Result<Vec<Option<B::Pt>>, B::Error> {
        let scale = f64::from_bits(key.scale_bits);
        let host = terms
            .par_iter()
            .map(|&(i, b)| {
                self.diagonal(j, delta, i, &self.babies[b])
                    .map(|d| encode_coeffs(params, &d, key.level, scale))
                    .transpose()
            })
            .collect::<Result<Vec<_>, CkksError>>()?;
        let present: Vec<bool> = host.iter().map(Option::is_some).collect();
        let mut finished = backend.plaintexts(host.into_iter().flatten().collect())?.into_iter();
        Ok(present.iter().map(|&p| p.then(|| finished.next()).flatten()).collect())
    }

    /// [`Self::apply`] (or, with `pending`, [`Self::apply_pending`]) of
    /// several inputs in lockstep, one per image set, all at one level and
    /// scale: each weight diagonal is encoded once and multiplied into every
    /// set, so the encoding (most of a convolution's CPU time) is shared.
    /// Each giant step's plaintexts are taken from `weights` when kept
    /// there, else encoded and offered to it. The outputs are those of
    /// separate calls, word for word, whatever `weights` holds.
    ///
    /// # Errors
    /// As [`Self::apply`], for any set.
    pub fn apply_sets<B: EvalBackend>(
        &self,
        backend: &B,
        params: &Params,
        inputs: &[&[B::Ct]],
        pending: bool,
        weights: &WeightStore<B::Pt>,
    ) -> Result<Vec<Vec<B::Ct>>, B::Error> {
        let rescales = 1 + usize::from(pending);
        let shape_error = |found| CkksError::Shape {
            what: "convolution input",
            expected: self.input.cts(),
            found,
        };
        let first = inputs.first().and_then(|x| x.first()).ok_or(shape_error(0))?;
        if let Some(x) = inputs.iter().find(|x| x.len() != self.input.cts()) {
            return Err(shape_error(x.len()).into());
        }
        let (level, scale) = (backend.level(first), backend.scale(first));
        // The shared plaintexts are encoded for the first ciphertext's level
        // and scale.
        for c in inputs.iter().flat_map(|x| x.iter()) {
            if backend.level(c) != level {
                return Err(CkksError::LevelMismatch {
                    left: level,
                    right: backend.level(c),
                }
                .into());
            }
            if backend.scale(c) != scale {
                return Err(CkksError::ScaleMismatch {
                    left: scale.log2(),
                    right: backend.scale(c).log2(),
                }
                .into());
            }
        }
        if level < rescales {
            return Err(CkksError::OutOfLevels {
                needed: rescales,
                level,
            }
            .into());
        }
        let pt_scale = params.mul_plain_scale_over(level, scale, rescales);
        let steps: Vec<i64> = self.babies.iter().map(|b| b.step).collect();
        // rotated[set][input ciphertext][baby]
        let rotated = inputs
            .iter()
            .map(|x| x.iter().map(|c| backend.rotate_hoisted(c, &steps)).collect())
            .collect::<Result<Vec<Vec<_>>, _>>()?;
        let bias = self.bias.as_ref().map(|b| {
            let plane = self.output.height * self.output.width;
            let per_value: Vec<f64> = b.iter().flat_map(|&v| std::iter::repeat_n(v, plane)).collect();
            self.output.pack(&per_value)
        });
        let terms: Vec<(usize, usize)> = (0..self.input.cts())
            .flat_map(|i| (0..self.babies.len()).map(move |b| (i, b)))
            .collect();
        let block = self.output.block as i64;
        let mut out: Vec<Vec<B::Ct>> = inputs.iter().map(|_| Vec::with_capacity(self.output.cts())).collect();
        for (j, giants) in self.giants.iter().enumerate() {
            let mut totals: Vec<Option<B::RotationSum>> = inputs.iter().map(|_| None).collect();
            for &delta in giants {
                let key = PlaintextKey {
                    source: Source::Conv {
                        layer: self.id,
                        output: j,
                        part: Part::Giant(delta),
                    },
                    level,
                    scale_bits: pt_scale.to_bits(),
                };
                let encoded = weights.get_or_encode(params, key, || {
                    self.giant_step_plaintexts(backend, params, &terms, (key, j, delta))
                })?;
                for (set, total) in rotated.iter().zip(totals.iter_mut()) {
                    let products: Vec<(&B::Ct, &B::Pt)> = terms
                        .iter()
                        .zip(encoded.iter())
                        .filter_map(|(&(i, b), pt)| Some((&set[i][b], pt.as_ref()?)))
                        .collect();
                    if products.is_empty() {
                        continue;
                    }
                    let inner = backend.mul_plain_sum(&products)?;
                    *total = Some(backend.rotation_sum_add(total.take(), &inner, delta as i64 * block)?);
                }
            }
            // Every set's output has the same level and scale: the bias is
            // encoded once too (or taken from `weights`).
            let mut bias_pt = None;
            for ((total, x), y_set) in totals.into_iter().zip(inputs).zip(out.iter_mut()) {
                let total = match total {
                    Some(t) => backend.rotation_sum_finish(t)?,
                    // All weights zero: the product with a zero plaintext.
                    None => backend.mul_plain(&x[0], &backend.encode(&[], level, pt_scale)?)?,
                };
                let mut y = backend.rescale(&total)?;
                for _ in 1..rescales {
                    y = backend.rescale(&y)?;
                }
                if let Some(bias) = &bias {
                    if bias_pt.is_none() {
                        let key = PlaintextKey {
                            source: Source::Conv {
                                layer: self.id,
                                output: j,
                                part: Part::Bias,
                            },
                            level: level - rescales,
                            scale_bits: backend.scale(&y).to_bits(),
                        };
                        bias_pt = Some(weights.get_or_encode(params, key, || {
                            Ok::<_, B::Error>(vec![Some(backend.encode(&bias[j], key.level, backend.scale(&y))?)])
                        })?);
                    }
                    let pt = bias_pt.as_ref().and_then(|pt| pt[0].as_ref());
                    y = backend.add_plain(&y, pt.expect("a bias plaintext is always present"))?;
                }
                y_set.push(y);
            }
        }
        Ok(out)
    }
}
