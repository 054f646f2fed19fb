//! The planner: a folded model lowered to a tree of encrypted steps, with
//! its level budget, rotations and key-switch counts known before anything
//! runs; and the executor that runs a plan on either backend.

use super::activation::{bring_to, PolyActivation};
use super::conv::{HeConv, HeConvError};
use super::layout::{LayoutError, SlotLayout};
use super::merge::LaneMerge;
use super::pool::RotationSum;
use super::weights::WeightStore;
use crate::ckks::gpu_cost::{CostCt, GpuCost, GpuCostBackend, GpuCostModel};
use crate::ckks::{CkksError, EvalBackend, KeyLevels, Params};
use crate::nn::layers::{ConvGeometry, Linear};
use crate::nn::model::Layer;
use crate::nn::Model;
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// Why a model cannot be lowered.
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum PlanError {
    /// The input does not fit the slots.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// A convolution or linear layer that does not match its input.
    #[error(transparent)]
    Conv(#[from] HeConvError),
    /// A layer with no encrypted form yet.
    #[error("layer {layer}: {reason}")]
    Unsupported {
        /// Layer name.
        layer: String,
        /// Why.
        reason: String,
    },
    /// The planner needs a folded model.
    #[error("the model must be folded first (nn::fold)")]
    NotFolded,
    /// The model needs more levels than any candidate parameter set has.
    #[error("the model needs {needed} levels (plus {HEADROOM_LEVELS} for the logits' headroom); the largest preset tried, {preset}, has {available}")]
    TooDeep {
        /// Levels the plan consumes.
        needed: usize,
        /// Levels the largest preset tried can give a plan.
        available: usize,
        /// That preset.
        preset: String,
    },
    /// An unknown preset.
    #[error(transparent)]
    Params(#[from] CkksError),
}

/// The 128-bit presets `--preset auto` chooses from, smallest first.
pub const AUTO_PRESETS: [&str; 4] = ["n14", "n15", "n16", "n17"];

/// Levels left below a plan's output: the logits need more headroom than
/// the last prime alone gives at a scale of 2^30.
pub const HEADROOM_LEVELS: usize = 1;

/// Most images one set of ciphertexts may stack along the channels
/// (`--batch`): past a few, batching saves nothing (docs/perf.md), and the
/// cap keeps a flag or a file from asking for weights and layouts that
/// exhaust memory.
pub const MAX_BATCH: usize = 64;

/// The gain the network path carries under encryption ([`crate::nn::with_gain`]):
/// every value 16 times its plaintext size, so that each operation's noise is
/// 16 times smaller against it, undone exactly by the final mean's scalar.
/// Measured on the bundled ResNet20 at n16: the largest logit error 5.5
/// times smaller at f=8 and 2.1 times at f=4 (docs/precision.md). It costs
/// the convolutions that feed an activation a plaintext rounding `sqrt(16)`
/// times larger: a good trade from n16 up, where the operations' noise
/// dominates; about neutral at N = 2^12 (the tests' presets), where the
/// rounding does. Applied only where the last layer's mean can divide it
/// out (the ResNets' global pool), else the plan keeps gain 1.
pub const NETWORK_GAIN: f64 = 16.0;

/// The smallest preset (of `preset`, or of [`AUTO_PRESETS`] when `None`)
/// whose levels and slots fit the folded `model` for `batch` images per
/// ciphertext set, with its plan.
///
/// # Errors
/// [`PlanError::TooDeep`] with the levels needed and available; an unknown
/// preset; a model with no encrypted form.
pub fn plan_for(
    model: &Model<f64>,
    preset: Option<&str>,
    batch: usize,
) -> Result<(std::sync::Arc<Params>, Plan), PlanError> {
    let names: Vec<&str> = preset.map_or(AUTO_PRESETS.to_vec(), |p| vec![p]);
    let mut refusal = None;
    for (i, name) in names.iter().enumerate() {
        let params = Params::preset(name)?;
        let plan = match Plan::for_params(model, &params, batch) {
            Err(PlanError::Layout(_)) if i + 1 < names.len() => continue,
            other => other?,
        };
        let available = params.max_level().saturating_sub(HEADROOM_LEVELS);
        if plan.levels() <= available {
            return Ok((params, plan));
        }
        refusal = Some(PlanError::TooDeep {
            needed: plan.levels(),
            available,
            preset: name.to_string(),
        });
    }
    // Every name was tried: the last one's refusal (the largest preset).
    Err(refusal.unwrap_or_else(|| unsupported("model", "no preset to plan for")))
}

/// One encrypted step of a plan.
#[derive(Clone, Debug)]
enum Step {
    Conv(HeConv),
    Act {
        act: PolyActivation,
        layout: SlotLayout,
    },
    /// A quadratic activation `c + y +- y^2/b^2` and the linear layer
    /// after it, as two copies of that layer: `linear` (the bias taking
    /// `c`) on `y` and `square` (weights times `+-1/b^2`, no bias) on
    /// `y^2`, summed; two levels. See [`split_quadratics`].
    SquareAndLinear {
        act: String,
        linear: Box<HeConv>,
        square: Box<HeConv>,
    },
    Pool(RotationSum),
    /// Four image sets into the lanes of one ([`LaneMerge`]), no level.
    Merge(LaneMerge),
    /// `x * factor` on every slot, exact (a scalar), one level.
    Scale {
        name: String,
        factor: f64,
        layout: SlotLayout,
    },
    Residual {
        body: Vec<Step>,
        shortcut: Vec<Step>,
        output: SlotLayout,
    },
    Se {
        name: String,
        gate: Vec<Step>,
        broadcast: RotationSum,
        /// Positions (`H*W`) the gate pools over.
        positions: usize,
    },
}

/// One row of a plan's report: a layer, the level it enters and leaves at,
/// and the key switches it costs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LayerReport {
    /// Layer name (PyTorch module path; `+` for a residual add).
    pub name: String,
    /// Level of the input.
    pub level_in: usize,
    /// Level of the output.
    pub level_out: usize,
    /// Key switches (rotations and relinearizations).
    pub key_switches: usize,
    /// Plaintext products (an upper bound: all-zero diagonals are skipped),
    /// each preceded by encoding its plaintext.
    pub plaintext_products: usize,
    /// Input image sets sharing each ciphertext of the layer's output (its
    /// lanes, [`SlotLayout::lane_count`]): its key switches and products
    /// serve that many sets.
    pub sets: usize,
    /// Input image sets sharing each ciphertext the layer reads: `sets`,
    /// except where the layer merges groups of sets into lanes
    /// ([`LaneMerge`]), whose `key_switches` count one set moved.
    pub sets_in: usize,
}

impl LayerReport {
    fn new(name: &str, levels: (usize, usize), key_switches: usize, plaintext_products: usize, sets: usize) -> Self {
        Self {
            name: name.to_string(),
            level_in: levels.0,
            level_out: levels.1,
            key_switches,
            plaintext_products,
            sets,
            sets_in: sets,
        }
    }

    /// Key switches of this row when `sets` image sets run in lockstep: a
    /// layer runs once per group of `self.sets`; a merge rotates every
    /// group it reads but the first of each group it makes.
    pub fn key_switches_for(&self, sets: usize) -> usize {
        let made = sets.div_ceil(self.sets);
        if self.sets_in == self.sets {
            self.key_switches * made
        } else {
            let moved = sets.div_ceil(self.sets_in) - made;
            moved * self.key_switches
        }
    }
}

/// The GPU work [`Plan::gpu_cost`] predicts for an evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanGpuCost {
    /// Per top-level step, in steady state: the weight plaintexts that fit
    /// the store already kept.
    pub steps: Vec<StepGpuCost>,
    /// The whole first evaluation, which encodes every weight plaintext
    /// and keeps those that fit.
    pub first: GpuCost,
    /// Bytes of weight plaintexts kept for later evaluations.
    pub resident_weight_bytes: u64,
}

/// The predicted GPU work of one top-level step of a plan
/// ([`Plan::gpu_cost`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StepGpuCost {
    /// The layers the step covers ([`LayerReport::name`]s).
    pub layers: Vec<String>,
    /// Level of the input.
    pub level_in: usize,
    /// Level of the output.
    pub level_out: usize,
    /// The work.
    #[serde(flatten)]
    pub cost: GpuCost,
}

impl Step {
    /// The layout of the step's output.
    fn output(&self) -> SlotLayout {
        match self {
            Step::Conv(c) => c.output(),
            Step::Act { layout, .. } => *layout,
            Step::SquareAndLinear { linear, .. } => linear.output(),
            Step::Pool(p) => p.output(),
            Step::Merge(m) => m.output(),
            Step::Scale { layout, .. } => *layout,
            Step::Residual { output, .. } => *output,
            Step::Se { broadcast, .. } => broadcast.output(),
        }
    }

    fn levels(&self) -> usize {
        match self {
            Step::Conv(_) => 1,
            Step::Act { act, .. } => act.levels(),
            Step::SquareAndLinear { .. } => 2,
            Step::Pool(_) | Step::Merge(_) => 0,
            Step::Scale { .. } => 1,
            Step::Residual { body, shortcut, .. } => levels(body).max(levels(shortcut)),
            Step::Se { gate, .. } => levels(gate) + 1,
        }
    }

    /// True when the step's output has its last rescale pending (see
    /// [`Flow`]), given whether its input has.
    fn leaves_pending(&self, pending_in: bool) -> bool {
        match self {
            Step::Act { .. } | Step::Scale { .. } => true,
            Step::Pool(_) | Step::Merge(_) => pending_in,
            _ => false,
        }
    }

    /// Records the keys the step uses at input level `level_in`, each at
    /// the highest level it is used; `pending` when the input has its
    /// rescale pending (a convolution then rotates one level higher).
    fn keys(&self, level_in: usize, pending: bool, out: &mut KeyUse) {
        match self {
            Step::Conv(c) => out.rotate(c.rotations(), level_in + usize::from(pending)),
            Step::Act { .. } => out.relinearize(level_in),
            Step::SquareAndLinear { linear, square, .. } => {
                out.relinearize(level_in);
                out.rotate(square.rotations(), level_in);
                out.rotate(linear.rotations(), level_in - 1);
            }
            Step::Pool(p) => out.rotate(p.rotations(), level_in + usize::from(pending)),
            Step::Merge(m) => out.rotate(m.rotations(), level_in + usize::from(pending)),
            Step::Scale { .. } => {}
            Step::Residual { body, shortcut, .. } => {
                keys_all(body, level_in, pending, out);
                keys_all(shortcut, level_in - self.levels() + levels(shortcut), pending, out);
            }
            Step::Se { gate, broadcast, .. } => {
                let gate_out = keys_all(gate, level_in, false, out);
                // The broadcast reads the gate with its rescale pending.
                out.rotate(
                    broadcast.rotations(),
                    gate_out + usize::from(pending_after(gate, false)),
                );
                out.relinearize(gate_out);
            }
        }
    }

    /// The most bytes the step holds at once at input level `level_in`
    /// (ring degree `n`), ciphertexts kept for later steps included.
    fn working_bytes(&self, level_in: usize, n: usize) -> usize {
        let tensor = |layout: &SlotLayout, level: usize| layout.cts() * 2 * (level + 1) * n * 4;
        match self {
            // An input with its rescale pending sits one level higher.
            Step::Conv(c) => c.working_bytes(level_in + 1, n),
            Step::SquareAndLinear { linear, square, .. } => {
                tensor(&linear.input(), level_in)
                    + square.working_bytes(level_in, n).max(linear.working_bytes(level_in, n))
            }
            Step::Act { layout, .. } | Step::Scale { layout, .. } => 3 * tensor(layout, level_in),
            Step::Pool(p) => 3 * tensor(&p.output(), level_in),
            // Per input set: the set and a quarter of the merged one.
            Step::Merge(m) => 2 * tensor(&m.output(), level_in),
            Step::Residual { body, shortcut, output } => {
                // The block's input is kept while the body runs.
                let kept = tensor(output, level_in);
                let inner = working_all(body, level_in, n).max(working_all(shortcut, level_in, n));
                kept + inner
            }
            Step::Se { gate, broadcast, .. } => {
                2 * tensor(&broadcast.output(), level_in) + working_all(gate, level_in, n)
            }
        }
    }

    fn report(&self, level_in: usize, rows: &mut Vec<LayerReport>) -> usize {
        let sets = self.output().lane_count();
        let mut row = |name: &str, level_out: usize, key_switches: usize, products: usize| {
            rows.push(LayerReport::new(
                name,
                (level_in, level_out),
                key_switches,
                products,
                sets,
            ));
            level_out
        };
        match self {
            Step::Conv(c) => row(c.name(), level_in - 1, c.key_switches(), c.plaintext_products()),
            Step::Act { act, layout } => row(
                act.name(),
                level_in - act.levels(),
                act.key_switches() * layout.cts(),
                0,
            ),
            Step::SquareAndLinear { act, linear, square } => {
                rows.push(LayerReport::new(
                    act,
                    (level_in, level_in - 1),
                    linear.input().cts(),
                    0,
                    sets,
                ));
                rows.push(LayerReport::new(
                    linear.name(),
                    (level_in - 1, level_in - 2),
                    linear.key_switches() + square.key_switches(),
                    linear.plaintext_products() + square.plaintext_products(),
                    sets,
                ));
                level_in - 2
            }
            Step::Pool(p) => row("pool", level_in, p.key_switches(), 0),
            Step::Merge(m) => {
                rows.push(LayerReport {
                    sets_in: m.input().lane_count(),
                    ..LayerReport::new("merge", (level_in, level_in), m.key_switches(), 0, sets)
                });
                level_in
            }
            Step::Scale { name, .. } => row(name, level_in - 1, 0, 0),
            Step::Residual { body, shortcut, .. } => {
                let out = level_in - self.levels();
                report_all(body, level_in, rows);
                report_all(shortcut, out + levels(shortcut), rows);
                rows.push(LayerReport::new("+", (out, out), 0, 0, sets));
                out
            }
            Step::Se {
                name, gate, broadcast, ..
            } => {
                let gate_out = report_all(gate, level_in, rows);
                // The broadcast's rotations and one relinearization per ciphertext.
                let key_switches = broadcast.key_switches() + broadcast.output().cts();
                rows.push(LayerReport::new(
                    &format!("{name}.broadcast"),
                    (gate_out, gate_out - 1),
                    key_switches,
                    0,
                    sets,
                ));
                gate_out - 1
            }
        }
    }

    fn execute<B: EvalBackend>(
        &self,
        backend: &B,
        params: &Params,
        weights: &WeightStore<B::Pt>,
        x: &Flow<B::Ct>,
    ) -> Result<Flow<B::Ct>, B::Error> {
        // Every step but a merge keeps the sets' grouping.
        let ready = |sets| {
            Ok(Flow {
                sets,
                pending: false,
                groups: x.groups.clone(),
            })
        };
        match self {
            Step::Conv(c) => ready(c.apply_sets(backend, params, &refs(&x.sets), x.pending, weights)?),
            Step::Act { act, layout } => Ok(Flow {
                sets: each_set(&x.settled(backend)?, |cts| {
                    act.apply_pending_kept(backend, params, weights, layout, cts)
                })?,
                pending: true,
                groups: x.groups.clone(),
            }),
            Step::SquareAndLinear { linear, square, .. } => {
                let x = x.settled(backend)?;
                let squares = each_ct(&x, |c| backend.mul_relin(c, c))?;
                let from_squares = square.apply_sets(backend, params, &refs(&squares), true, weights)?;
                let lowered = each_ct(&x, |c| backend.drop_level(c, backend.level(c) - 1))?;
                let from_values = linear.apply_sets(backend, params, &refs(&lowered), false, weights)?;
                ready(zip_cts(&from_values, &from_squares, |a, b| backend.add(a, b))?)
            }
            // Rotation sums at any scale: a pending rescale stays pending,
            // so a mean's sum of small values gains no rounding noise.
            Step::Pool(p) => Ok(Flow {
                sets: each_set(&x.sets, |cts| p.apply(backend, cts))?,
                pending: x.pending,
                groups: x.groups.clone(),
            }),
            // Each group's sets merged apart from the other groups'.
            Step::Merge(m) => {
                let mut sets = Vec::with_capacity(x.sets.len());
                let mut groups = Vec::with_capacity(x.groups.len());
                let mut rest = x.sets.as_slice();
                for &size in &x.groups {
                    let (group, after) = rest.split_at(size);
                    let merged = m.apply(backend, group)?;
                    groups.push(merged.len());
                    sets.extend(merged);
                    rest = after;
                }
                Ok(Flow {
                    sets,
                    pending: x.pending,
                    groups,
                })
            }
            Step::Scale { factor, .. } => Ok(Flow {
                sets: each_ct(&x.settled(backend)?, |c| backend.mul_const(c, *factor))?,
                pending: true,
                groups: x.groups.clone(),
            }),
            Step::Residual { body, shortcut, .. } => {
                let main = execute_all(body, backend, params, weights, x)?;
                let groups = main.groups.clone();
                let main = main.into_settled(backend)?;
                let target = main
                    .iter()
                    .flatten()
                    .next()
                    .map(|c| backend.level(c))
                    .unwrap_or_default();
                let side = match shortcut.first() {
                    // A convolution accepts any scale and a pending rescale:
                    // drop primes only.
                    Some(Step::Conv(_)) => {
                        let entry = target + levels(shortcut) + usize::from(x.pending);
                        let entered = Flow {
                            sets: each_ct(&x.sets, |c| backend.drop_level(c, entry))?,
                            pending: x.pending,
                            groups: x.groups.clone(),
                        };
                        execute_all(shortcut, backend, params, weights, &entered)?.into_settled(backend)?
                    }
                    _ => {
                        let entry = target + levels(shortcut);
                        let sets = each_ct(&x.settled(backend)?, |c| bring_to(backend, c, entry))?;
                        if shortcut.is_empty() {
                            sets
                        } else {
                            let entered = Flow {
                                sets,
                                pending: false,
                                groups: x.groups.clone(),
                            };
                            execute_all(shortcut, backend, params, weights, &entered)?.into_settled(backend)?
                        }
                    }
                };
                Ok(Flow {
                    sets: zip_cts(&main, &side, |a, b| backend.add(a, b))?,
                    pending: false,
                    groups,
                })
            }
            Step::Se { gate, broadcast, .. } => {
                // Broadcast before the gate's pending rescale: the rotations'
                // rounding noise lands at the product's scale.
                let gate_out = execute_all(gate, backend, params, weights, x)?;
                let gates = Flow {
                    sets: each_set(&gate_out.sets, |cts| broadcast.apply(backend, cts))?,
                    pending: gate_out.pending,
                    groups: gate_out.groups.clone(),
                }
                .into_settled(backend)?;
                ready(zip_cts(&x.settled(backend)?, &gates, |v, g| {
                    let v = bring_to(backend, v, backend.level(g))?;
                    backend.rescale(&backend.mul_relin(&v, g)?)
                })?)
            }
        }
    }
}

/// What passes from one step to the next, for one or several image sets
/// evaluated in lockstep (each set a list of ciphertexts, every set at the
/// same level and scale): ciphertexts at a canonical scale, or (`pending`)
/// ciphertexts one level higher with their last rescale still to do: an
/// activation's or a scalar product's outputs, and rotation sums of them. A
/// convolution reads them directly ([`HeConv::apply_pending`]), a rotation
/// sum passes them on, every other step rescales them first. The rounding
/// noise of a rescale or a rotation then lands at the square of the scale,
/// where it is negligible, and each level's rescale happens once, at the end.
///
/// `groups` partitions `sets`, in order, into the groups a merge keeps
/// apart (each caller's images, [`Plan::execute_groups`]): the sizes sum to
/// `sets.len()`.
struct Flow<Ct> {
    sets: Vec<Vec<Ct>>,
    pending: bool,
    groups: Vec<usize>,
}

impl<Ct> Flow<Ct> {
    /// The ciphertexts at their canonical scale: rescaled if pending.
    fn settled<B: EvalBackend<Ct = Ct>>(&self, backend: &B) -> Result<Settled<'_, Ct>, B::Error> {
        Ok(if self.pending {
            Settled::Rescaled(each_ct(&self.sets, |c| backend.rescale(c))?)
        } else {
            Settled::AsIs(&self.sets)
        })
    }

    /// [`Self::settled`], consuming the flow.
    fn into_settled<B: EvalBackend<Ct = Ct>>(self, backend: &B) -> Result<Vec<Vec<Ct>>, B::Error> {
        if self.pending {
            each_ct(&self.sets, |c| backend.rescale(c))
        } else {
            Ok(self.sets)
        }
    }
}

/// [`Flow::settled`]'s sets, borrowed when nothing was pending.
enum Settled<'a, Ct> {
    AsIs(&'a [Vec<Ct>]),
    Rescaled(Vec<Vec<Ct>>),
}

impl<Ct> std::ops::Deref for Settled<'_, Ct> {
    type Target = [Vec<Ct>];
    fn deref(&self) -> &[Vec<Ct>] {
        match self {
            Settled::AsIs(sets) => sets,
            Settled::Rescaled(sets) => sets,
        }
    }
}

/// Each set as a slice.
fn refs<Ct>(sets: &[Vec<Ct>]) -> Vec<&[Ct]> {
    sets.iter().map(Vec::as_slice).collect()
}

/// `f` of each set.
fn each_set<Ct, E>(sets: &[Vec<Ct>], f: impl Fn(&[Ct]) -> Result<Vec<Ct>, E>) -> Result<Vec<Vec<Ct>>, E> {
    sets.iter().map(|set| f(set)).collect()
}

/// `f` of each ciphertext of each set.
fn each_ct<Ct, E>(sets: &[Vec<Ct>], f: impl Fn(&Ct) -> Result<Ct, E>) -> Result<Vec<Vec<Ct>>, E> {
    each_set(sets, |set| set.iter().map(&f).collect())
}

/// `f` of the ciphertexts at the same place in `a` and `b`.
fn zip_cts<Ct, E>(a: &[Vec<Ct>], b: &[Vec<Ct>], f: impl Fn(&Ct, &Ct) -> Result<Ct, E>) -> Result<Vec<Vec<Ct>>, E> {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.iter().zip(y).map(|(u, v)| f(u, v)).collect())
        .collect()
}

/// The evaluation keys a plan uses, each with the highest level it serves.
struct KeyUse {
    slots: i64,
    rotations: BTreeMap<i64, usize>,
    relin: Option<usize>,
}

impl KeyUse {
    /// Steps are recorded modulo the slot count, in `(-slots/2, slots/2]`:
    /// `s` and `s - slots` are the same rotation and share one key.
    fn rotate(&mut self, steps: Vec<i64>, level: usize) {
        for s in steps {
            let s = s.rem_euclid(self.slots);
            let s = if s > self.slots / 2 { s - self.slots } else { s };
            let entry = self.rotations.entry(s).or_insert(level);
            *entry = (*entry).max(level);
        }
    }

    fn relinearize(&mut self, level: usize) {
        self.relin = Some(self.relin.map_or(level, |l| l.max(level)));
    }
}

/// Whether `steps` end with their rescale pending, given whether their
/// input has.
fn pending_after(steps: &[Step], pending_in: bool) -> bool {
    steps.iter().fold(pending_in, |pending, s| s.leaves_pending(pending))
}

fn keys_all(steps: &[Step], level_in: usize, pending_in: bool, out: &mut KeyUse) -> usize {
    let mut pending = pending_in;
    steps.iter().fold(level_in, |level, s| {
        s.keys(level, pending, out);
        pending = s.leaves_pending(pending);
        level - s.levels()
    })
}

fn working_all(steps: &[Step], level_in: usize, n: usize) -> usize {
    let mut level = level_in;
    let mut most = 0;
    for s in steps {
        most = most.max(s.working_bytes(level, n));
        level -= s.levels();
    }
    most
}

fn levels(steps: &[Step]) -> usize {
    steps.iter().map(Step::levels).sum()
}

fn report_all(steps: &[Step], level_in: usize, rows: &mut Vec<LayerReport>) -> usize {
    steps.iter().fold(level_in, |level, s| s.report(level, rows))
}

fn execute_all<B: EvalBackend>(
    steps: &[Step],
    backend: &B,
    params: &Params,
    weights: &WeightStore<B::Pt>,
    x: &Flow<B::Ct>,
) -> Result<Flow<B::Ct>, B::Error> {
    let Some((first, rest)) = steps.split_first() else {
        return Ok(Flow {
            sets: each_ct(&x.sets, |c| backend.drop_level(c, backend.level(c)))?,
            pending: x.pending,
            groups: x.groups.clone(),
        });
    };
    let mut y = first.execute(backend, params, weights, x)?;
    for s in rest {
        y = s.execute(backend, params, weights, &y)?;
    }
    Ok(y)
}

/// Image sets, each a list of ciphertexts.
pub type Sets<Ct> = Vec<Vec<Ct>>;

/// What [`Plan::execute_traced`] calls after each top-level step: the step's
/// index, its output layout and its output.
pub type StepTrace<'a, B> =
    dyn FnMut(usize, &SlotLayout, &[<B as EvalBackend>::Ct]) -> Result<(), <B as EvalBackend>::Error> + 'a;

/// [`StepTrace`] over every image set evaluated in lockstep.
type SetsTrace<'a, B> =
    dyn FnMut(usize, &SlotLayout, &[Vec<<B as EvalBackend>::Ct>]) -> Result<(), <B as EvalBackend>::Error> + 'a;

/// A model lowered for ciphertexts of `slots` slots.
///
/// Invariants: `input` is the model's latent laid out by
/// [`SlotLayout::input`]; `output` holds one value per class, channel `k`
/// being logit `k`; `steps` turn the first into the second.
#[derive(Clone, Debug)]
pub struct Plan {
    input: SlotLayout,
    output: SlotLayout,
    steps: Vec<Step>,
    batch: usize,
    gain: f64,
}

impl Plan {
    /// Lowers a folded model for one image per ciphertext set.
    ///
    /// # Errors
    /// [`PlanError`]: unfolded model, a layer with no encrypted form, an
    /// input channel larger than a ciphertext.
    pub fn new(model: &Model<f64>, slots: usize) -> Result<Self, PlanError> {
        Self::batched(model, slots, 1)
    }

    /// Lowers a folded model for `batch` images sharing each ciphertext:
    /// image `b`'s channel `c` is channel `b*C + c` of the stacked tensor, every
    /// layer is applied per image (grouped), and image `b`'s logit `k` comes
    /// out as channel `b*K + k`.
    ///
    /// # Errors
    /// As [`Self::new`]; a zero batch.
    pub fn batched(model: &Model<f64>, slots: usize, batch: usize) -> Result<Self, PlanError> {
        Self::lower_with(model, slots, batch, usize::MAX)
    }

    /// [`Self::batched`] for `params`, spending the levels the preset has to
    /// spare on precision: SE gates take the exact mean of their pools, the
    /// largest pools first (whose sum-first error is largest), as long as
    /// the plan still fits the preset's levels. The result depends only on
    /// the model, the parameters and the batch, so the client and the server
    /// derive the same plan.
    ///
    /// # Errors
    /// As [`Self::batched`].
    pub fn for_params(model: &Model<f64>, params: &Params, batch: usize) -> Result<Self, PlanError> {
        let summing = Self::batched(model, params.slots(), batch)?;
        let available = params.max_level().saturating_sub(HEADROOM_LEVELS);
        let mut sizes = BTreeSet::new();
        gate_positions(&summing.steps, &mut sizes);
        // Most exact first: every gate, then all but the smallest pools, ...
        for &smallest_exact in &sizes {
            let plan = Self::lower_with(model, params.slots(), batch, smallest_exact)?;
            if plan.levels() <= available {
                return Ok(plan);
            }
        }
        Ok(summing)
    }

    fn lower_with(
        model: &Model<f64>,
        slots: usize,
        batch: usize,
        exact_gate_positions: usize,
    ) -> Result<Self, PlanError> {
        if !model.is_folded() {
            return Err(PlanError::NotFolded);
        }
        if batch == 0 || batch > MAX_BATCH {
            return Err(unsupported(
                "input",
                format!("a batch of {batch} images (1 to {MAX_BATCH} share a set of ciphertexts)"),
            ));
        }
        let [c, h, w] = model.spec().latent().dims();
        let input = SlotLayout::input(c * batch, h, w, slots)?;
        let context = Context {
            gate: false,
            batch,
            exact_gate_positions,
            gain: 1.0,
            interleave: true,
        };
        if let Some(gained) = crate::nn::with_gain(model, NETWORK_GAIN) {
            let context = Context {
                gain: NETWORK_GAIN,
                ..context
            };
            let (steps, output) = lower_network(gained.layers(), input, context)?;
            // The gain is undone by the one mean on the network path, in the
            // last layer; otherwise the plan keeps gain 1.
            if gain_undone_by_the_last_layer(&steps) {
                return Ok(Self {
                    input,
                    output,
                    steps,
                    batch,
                    gain: NETWORK_GAIN,
                });
            }
        }
        let (steps, output) = lower_network(model.layers(), input, context)?;
        Ok(Self {
            input,
            output,
            steps,
            batch,
            gain: 1.0,
        })
    }

    /// The gain the network path carries ([`NETWORK_GAIN`], or 1 for a
    /// model without exactly one mean to divide it out); the logits come
    /// out at their true size either way.
    pub fn network_gain(&self) -> f64 {
        self.gain
    }

    /// Images per ciphertext set.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Layout of the encrypted input.
    pub fn input(&self) -> SlotLayout {
        self.input
    }

    /// Layout of the encrypted logits.
    pub fn output(&self) -> SlotLayout {
        self.output
    }

    /// Levels the plan consumes.
    pub fn levels(&self) -> usize {
        levels(&self.steps)
    }

    /// The level to encrypt the input at: the plan's levels plus the
    /// headroom, so that the logits come out at level [`HEADROOM_LEVELS`].
    pub fn start_level(&self) -> usize {
        self.levels() + HEADROOM_LEVELS
    }

    /// Every rotation the plan uses, sorted: the Galois keys to generate.
    pub fn rotations(&self) -> Vec<i64> {
        self.key_levels().rotations.into_iter().map(|(r, _)| r).collect()
    }

    /// The evaluation keys the plan uses for an input at
    /// [`Self::start_level`], each at the highest level it serves: keys no
    /// larger than their level needs.
    pub fn key_levels(&self) -> KeyLevels {
        let mut used = KeyUse {
            slots: self.input.slots as i64,
            rotations: BTreeMap::new(),
            relin: None,
        };
        keys_all(&self.steps, self.start_level(), false, &mut used);
        KeyLevels {
            relin: used.relin,
            rotations: used.rotations.into_iter().collect(),
        }
    }

    /// Per-layer levels and key switches for an input at `level_in`
    /// (at least [`Self::levels`]).
    pub fn layers(&self, level_in: usize) -> Vec<LayerReport> {
        let mut rows = Vec::new();
        report_all(&self.steps, level_in, &mut rows);
        rows
    }

    /// An estimate of the most bytes of ciphertexts and plaintexts one
    /// evaluation holds at once, for ring degree `n` (keys not included).
    pub fn working_memory_bytes(&self, n: usize) -> usize {
        working_all(&self.steps, self.start_level(), n)
    }

    /// Key switches of one evaluation of one image set alone.
    pub fn key_switches(&self) -> usize {
        self.key_switches_for(1)
    }

    /// Key switches of one evaluation of `sets` image sets in lockstep:
    /// after each merge, a layer runs once per group of merged sets, and a
    /// merge rotates every set of a group but the first.
    pub fn key_switches_for(&self, sets: usize) -> usize {
        self.layers(self.levels())
            .iter()
            .map(|r| r.key_switches_for(sets))
            .sum()
    }

    /// Input image sets whose logits share one output set
    /// ([`Self::execute_sets`]): 1 for a plan without merges.
    pub fn sets_per_output(&self) -> usize {
        self.output.lane_count()
    }

    /// `lockstep` (at least 1) rounded up to whole groups of merged sets
    /// ([`Self::sets_per_output`]): calls of [`Self::execute_sets`] with
    /// this many sets each (fewer only in the last) give output sets that
    /// each hold `sets_per_output` consecutive input sets.
    pub fn whole_groups(&self, lockstep: usize) -> usize {
        lockstep.max(1).next_multiple_of(self.sets_per_output())
    }

    /// The GPU work of evaluating `sets` image sets in lockstep
    /// ([`Self::execute_sets_kept`]) at [`Self::start_level`] with a
    /// [`WeightStore`] of `weight_budget` bytes: the executor itself run on
    /// [`GpuCostBackend`], so each count is the sum of [`GpuCostModel`]'s
    /// per operation over what the steps call. The first evaluation
    /// encodes the weight diagonals (on the host, as in a real run: they
    /// decide which products exist) and keeps what fits; the steps are
    /// those of the second, the steady state of every later image.
    ///
    /// # Errors
    /// Evaluator refusals, as [`Self::execute`].
    pub fn gpu_cost(
        &self,
        params: &std::sync::Arc<Params>,
        model: GpuCostModel,
        sets: usize,
        weight_budget: u64,
    ) -> Result<PlanGpuCost, CkksError> {
        let backend = GpuCostBackend::new(params.clone(), model);
        let weights = WeightStore::new(params, weight_budget);
        let level = self.start_level();
        let inputs: Vec<Vec<CostCt>> = (0..sets.max(1))
            .map(|_| {
                (0..self.input.cts())
                    .map(|_| backend.ciphertext(level, params.scale(level)))
                    .collect()
            })
            .collect();
        let one = [inputs.len()];
        self.run(
            &backend,
            params,
            &weights,
            (&refs(&inputs), &one),
            &mut |_, _, _| Ok(()),
        )?;
        let first = backend.cost();
        let mut steps: Vec<StepGpuCost> = Vec::with_capacity(self.steps.len());
        let mut level_in = level;
        let mut before = first;
        self.run(&backend, params, &weights, (&refs(&inputs), &one), &mut |i, _, _| {
            let mut layers = Vec::new();
            let level_out = self.steps[i].report(level_in, &mut layers);
            let now = backend.cost();
            steps.push(StepGpuCost {
                layers: layers.into_iter().map(|r| r.name).collect(),
                level_in,
                level_out,
                cost: now.since(&before),
            });
            (level_in, before) = (level_out, now);
            Ok(())
        })?;
        // The last rescale left pending goes with the last step.
        let settled = backend.cost().since(&before);
        if let Some(last) = steps.last_mut() {
            last.cost = last.cost.plus(&settled);
        }
        Ok(PlanGpuCost {
            steps,
            first,
            resident_weight_bytes: weights.bytes(),
        })
    }

    /// Runs the plan on the encrypted input (one ciphertext per
    /// [`SlotLayout::cts`] of [`Self::input`]), returning the encrypted
    /// logits in [`Self::output`]'s layout.
    ///
    /// # Errors
    /// Evaluator refusals: too few levels, missing keys, wrong ciphertext count.
    pub fn execute<B: EvalBackend>(
        &self,
        backend: &B,
        params: &Params,
        input: &[B::Ct],
    ) -> Result<Vec<B::Ct>, B::Error> {
        self.execute_traced(backend, params, input, &mut |_, _, _| Ok(()))
    }

    /// [`Self::execute`] of several inputs (image sets) in lockstep, step by
    /// step: each convolution encodes its weight diagonals once for all of
    /// them, and where a stride left room ([`LaneMerge`]) groups of four
    /// sets continue as one. Output set `j` holds the logits of input sets
    /// `j*M .. (j+1)*M`, `M` = [`Self::sets_per_output`], set `j*M + m` in
    /// lane `m` of [`Self::output`] (lanes past the last input are empty).
    /// Before the first merge each set's ciphertexts are those of a
    /// separate call, word for word; working memory grows with the number
    /// of sets.
    ///
    /// # Errors
    /// As [`Self::execute`], for any set.
    pub fn execute_sets<B: EvalBackend>(
        &self,
        backend: &B,
        params: &Params,
        inputs: &[&[B::Ct]],
    ) -> Result<Vec<Vec<B::Ct>>, B::Error> {
        self.execute_sets_kept(backend, params, inputs, &WeightStore::disabled(params))
    }

    /// [`Self::execute_sets`], taking each giant step's weight plaintexts
    /// from `weights` where kept and offering it those it encodes: a caller
    /// that evaluates again passes the same store and skips the encoding.
    /// The words are [`Self::execute_sets`]'s.
    ///
    /// # Errors
    /// As [`Self::execute`], for any set.
    pub fn execute_sets_kept<B: EvalBackend>(
        &self,
        backend: &B,
        params: &Params,
        inputs: &[&[B::Ct]],
        weights: &WeightStore<B::Pt>,
    ) -> Result<Vec<Vec<B::Ct>>, B::Error> {
        Ok(self
            .run(backend, params, weights, (inputs, &[inputs.len()]), &mut |_, _, _| {
                Ok(())
            })?
            .sets)
    }

    /// [`Self::execute_sets_kept`] of several callers' image sets in one
    /// lockstep run: `groups[g]` holds caller `g`'s sets, and a merge never
    /// puts two groups' sets in one ciphertext, so caller `g` gets exactly
    /// the output sets [`Self::execute_sets`] gives for its sets alone, word
    /// for word, while every step's weight plaintexts serve all groups.
    /// Returns each group's output sets, in order.
    ///
    /// # Errors
    /// As [`Self::execute`], for any set; an empty group.
    pub fn execute_groups<B: EvalBackend>(
        &self,
        backend: &B,
        params: &Params,
        groups: &[&[&[B::Ct]]],
        weights: &WeightStore<B::Pt>,
    ) -> Result<Vec<Sets<B::Ct>>, B::Error> {
        if groups.iter().any(|g| g.is_empty()) {
            return Err(CkksError::Shape {
                what: "image sets of a group",
                expected: 1,
                found: 0,
            }
            .into());
        }
        let inputs: Vec<&[B::Ct]> = groups.iter().flat_map(|g| g.iter().copied()).collect();
        let sizes: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        let out = self.run(backend, params, weights, (&inputs, &sizes), &mut |_, _, _| Ok(()))?;
        let mut sets = out.sets.into_iter();
        Ok(out.groups.iter().map(|&n| sets.by_ref().take(n).collect()).collect())
    }

    /// [`Self::execute`], calling `trace` after each top-level step with
    /// the step's index, the layout of its output and its output (to
    /// locate where an encrypted result departs from the plaintext one).
    ///
    /// # Errors
    /// As [`Self::execute`], and whatever `trace` returns.
    pub fn execute_traced<B: EvalBackend>(
        &self,
        backend: &B,
        params: &Params,
        input: &[B::Ct],
        trace: &mut StepTrace<'_, B>,
    ) -> Result<Vec<B::Ct>, B::Error> {
        let weights = WeightStore::disabled(params);
        let mut outputs = self.run(backend, params, &weights, (&[input], &[1]), &mut |i, layout, sets| {
            trace(i, layout, &sets[0])
        })?;
        Ok(outputs.sets.remove(0))
    }

    /// The steps on `inputs` in lockstep, its sets in groups of `groups`
    /// sets (summing to `inputs.len()`) that merges keep apart, `trace`
    /// called after each top-level step with every set's output; returns
    /// the output sets (rescales done) with their groups.
    fn run<B: EvalBackend>(
        &self,
        backend: &B,
        params: &Params,
        weights: &WeightStore<B::Pt>,
        (inputs, groups): (&[&[B::Ct]], &[usize]),
        trace: &mut SetsTrace<'_, B>,
    ) -> Result<Flow<B::Ct>, B::Error> {
        debug_assert_eq!(groups.iter().sum::<usize>(), inputs.len());
        let shape_error = |found| CkksError::Shape {
            what: "encrypted input",
            expected: self.input.cts(),
            found,
        };
        if inputs.is_empty() {
            return Err(shape_error(0).into());
        }
        if let Some(x) = inputs.iter().find(|x| x.len() != self.input.cts()) {
            return Err(shape_error(x.len()).into());
        }
        let (first, rest) = self.steps.split_first().ok_or(CkksError::Shape {
            what: "plan steps",
            expected: 1,
            found: 0,
        })?;
        let sets = inputs
            .iter()
            .map(|x| x.iter().map(|c| backend.drop_level(c, backend.level(c))).collect())
            .collect::<Result<_, _>>()?;
        let entered = Flow {
            sets,
            pending: false,
            groups: groups.to_vec(),
        };
        let mut x = first.execute(backend, params, weights, &entered)?;
        trace(0, &first.output(), &x.sets)?;
        for (i, step) in rest.iter().enumerate() {
            x = step.execute(backend, params, weights, &x)?;
            trace(i + 1, &step.output(), &x.sets)?;
        }
        let groups = x.groups.clone();
        Ok(Flow {
            sets: x.into_settled(backend)?,
            pending: false,
            groups,
        })
    }
}

fn unsupported(layer: &str, reason: impl Into<String>) -> PlanError {
    PlanError::Unsupported {
        layer: layer.to_string(),
        reason: reason.into(),
    }
}

/// Lowers `layers` reading a tensor laid out as `layout`.
/// Where layers are lowered: the network's own path or an SE gate, for
/// `batch` images stacked along the channels.
#[derive(Clone, Copy, PartialEq)]
struct Context {
    gate: bool,
    batch: usize,
    /// SE gates pooling over at least this many positions take the exact
    /// mean (one level); smaller ones sum and fold `1/(H*W)` into their
    /// next layer ([`pool_channels`]).
    exact_gate_positions: usize,
    /// The gain the network path's values carry ([`NETWORK_GAIN`] or 1);
    /// its mean divides it out. Inside SE gates it is the gate's business.
    gain: f64,
    /// Whether image sets merge into lanes ([`LaneMerge`]) before a layer:
    /// on the network's path (residual blocks included), never in SE gates.
    interleave: bool,
}

/// [`lower`] for the network, merging image sets into lanes before each
/// residual block or convolution where a stride left room (inside residual
/// blocks too); without merges when a later rotation sum would add lanes
/// together or the branches of a block cannot merge alike.
fn lower_network(
    layers: &[Layer<f64>],
    input: SlotLayout,
    context: Context,
) -> Result<(Vec<Step>, SlotLayout), PlanError> {
    match lower(layers, input, context) {
        Ok((steps, output)) if lanes_kept_apart(&steps) => return Ok((steps, output)),
        Ok(_) | Err(LowerError::BranchLanes { .. }) => {}
        Err(LowerError::Plan(e)) => return Err(e),
    }
    let apart = Context {
        interleave: false,
        ..context
    };
    lower(layers, input, apart).map_err(PlanError::from)
}

/// Why [`lower`] stopped.
#[derive(Debug)]
enum LowerError {
    /// The layers have no plan.
    Plan(PlanError),
    /// The branches of a residual block leave their image sets merged into
    /// different numbers of lanes ([`LaneMerge`]): [`lower_network`] plans
    /// again without merges, where this cannot happen.
    BranchLanes {
        /// Image sets per ciphertext of the body's output.
        body: usize,
        /// Image sets per ciphertext of the shortcut's output.
        shortcut: usize,
    },
}

impl From<PlanError> for LowerError {
    fn from(e: PlanError) -> Self {
        Self::Plan(e)
    }
}

impl From<HeConvError> for LowerError {
    fn from(e: HeConvError) -> Self {
        Self::Plan(e.into())
    }
}

impl From<LowerError> for PlanError {
    fn from(e: LowerError) -> Self {
        match e {
            LowerError::Plan(e) => e,
            LowerError::BranchLanes { body, shortcut } => unsupported(
                "residual",
                format!("the body leaves {body} image sets per ciphertext, the shortcut {shortcut}"),
            ),
        }
    }
}

/// `steps` (giving `layout`) followed by merges until the output has
/// `lanes` lanes or its gap has no more room; returns the final layout.
fn merged_to(steps: &mut Vec<Step>, mut layout: SlotLayout, lanes: usize) -> SlotLayout {
    while layout.lanes < lanes {
        let Some(merge) = LaneMerge::new(layout) else {
            break;
        };
        layout = merge.output();
        steps.push(Step::Merge(merge));
    }
    layout
}

/// Whether every rotation sum in `steps` keeps its lanes apart.
fn lanes_kept_apart(steps: &[Step]) -> bool {
    steps.iter().all(|step| match step {
        Step::Pool(p) => p.keeps_lanes_apart(),
        Step::Se { gate, broadcast, .. } => broadcast.keeps_lanes_apart() && lanes_kept_apart(gate),
        Step::Residual { body, shortcut, .. } => lanes_kept_apart(body) && lanes_kept_apart(shortcut),
        _ => true,
    })
}

/// Whether the only exact mean on the network path of `steps` is the last
/// layer's (the mean, the sum into each block, the last linear layer), so
/// that dividing the network's gain out there leaves every earlier value
/// with the gain its layers were rescaled for and no later value with it.
fn gain_undone_by_the_last_layer(steps: &[Step]) -> bool {
    network_means(steps) == 1 && matches!(steps, [.., Step::Scale { .. }, Step::Pool(_), Step::Conv(_)])
}

/// The exact means ([`Step::Scale`]) on the network path of `steps`, SE
/// gates excluded.
fn network_means(steps: &[Step]) -> usize {
    steps
        .iter()
        .map(|step| match step {
            Step::Scale { .. } => 1,
            Step::Residual { body, shortcut, .. } => network_means(body) + network_means(shortcut),
            _ => 0,
        })
        .sum()
}

/// A layer applied to `batch` images stacked along the channels: `batch`
/// times the channels and groups, the weights repeated, so that image `b`'s
/// outputs read only image `b`'s inputs.
fn batched(
    g: ConvGeometry,
    weight: Vec<f64>,
    bias: Option<Vec<f64>>,
    batch: usize,
) -> (ConvGeometry, Vec<f64>, Option<Vec<f64>>) {
    let g = ConvGeometry {
        in_channels: g.in_channels * batch,
        out_channels: g.out_channels * batch,
        groups: g.groups * batch,
        ..g
    };
    (g, weight.repeat(batch), bias.map(|b| b.repeat(batch)))
}

/// Lowers `layers` reading a tensor laid out as `layout`.
fn lower(
    layers: &[Layer<f64>],
    mut layout: SlotLayout,
    context: Context,
) -> Result<(Vec<Step>, SlotLayout), LowerError> {
    let mut steps = Vec::new();
    for layer in layers {
        if context.interleave && matches!(layer, Layer::Conv(_) | Layer::Residual { .. }) {
            layout = merged_to(&mut steps, layout, usize::MAX);
        }
        match layer {
            Layer::Conv(conv) => {
                let (geometry, weight, bias) = batched(
                    conv.geometry(),
                    conv.weight().iter().copied().collect(),
                    conv.bias().map(|b| b.to_vec()),
                    context.batch,
                );
                let he = HeConv::new(conv.name(), geometry, weight, bias, layout)?;
                layout = he.output();
                steps.push(Step::Conv(he));
            }
            Layer::Act(act) => {
                let he = PolyActivation::new(act.name(), act.coeffs().to_vec())
                    .ok_or_else(|| unsupported(act.name(), "an activation with a zero leading coefficient"))?;
                steps.push(Step::Act { act: he, layout });
            }
            Layer::AvgPool(pool) => {
                let c = layout.channels;
                let (k, scale) = (pool.kernel(), pool.scale());
                let geometry = depthwise(c, k, k);
                let he = HeConv::new("avgpool", geometry, vec![scale; c * k * k], None, layout)?;
                layout = he.output();
                steps.push(Step::Conv(he));
            }
            Layer::GlobalAvgPool => {
                let (pooled, factor) = pool_channels("global_avg_pool", layout, context, &mut steps);
                layout = pooled;
                if factor != 1.0 {
                    let c = layout.channels;
                    let mean = HeConv::new("global_avg_pool", depthwise(c, 1, 1), vec![factor; c], None, layout)?;
                    layout = mean.output();
                    steps.push(Step::Conv(mean));
                }
            }
            Layer::Linear(linear) => layout = lower_linear(linear, layout, context, &mut steps)?,
            Layer::Residual { body, shortcut } => {
                // A branch that merged (after its stride) has the other
                // branch's output merged alike.
                let (mut body, out) = lower(body, layout, context)?;
                let (mut shortcut, side) = lower(shortcut, layout, context)?;
                let out = merged_to(&mut body, out, side.lanes);
                let side = merged_to(&mut shortcut, side, out.lanes);
                if out.lanes != side.lanes {
                    return Err(LowerError::BranchLanes {
                        body: out.lane_count(),
                        shortcut: side.lane_count(),
                    });
                }
                if out != side {
                    return Err(unsupported("residual", format!("body gives {out:?}, shortcut {side:?}")).into());
                }
                layout = out;
                steps.push(Step::Residual {
                    body,
                    shortcut,
                    output: out,
                });
            }
            Layer::Se { name, gate } => {
                let gate_context = Context {
                    gate: true,
                    interleave: false,
                    ..context
                };
                let (gate, out) = lower(gate, layout, gate_context)?;
                let gate = split_quadratics(gate)?;
                if out != layout.pooled(layout.channels) {
                    return Err(unsupported(name, "the gate must give one value per channel").into());
                }
                steps.push(Step::Se {
                    name: name.clone(),
                    gate,
                    broadcast: RotationSum::spread(layout),
                    positions: layout.height * layout.width,
                });
            }
            Layer::BatchNorm(bn) => {
                return Err(unsupported(bn.name(), "batch norm not after a convolution (fold it first)").into());
            }
        }
    }
    Ok((steps, layout))
}

/// Each quadratic activation between two linear layers of an SE gate,
/// rewritten as [`Step::SquareAndLinear`].
///
/// Folding gives the activation the leading coefficient `+-1` by scaling
/// the layer before it by `sqrt|a|`, which is tiny for the trained gates
/// (`a` from 1e-7 to 5e-5: the quadratic term is all but unused). The
/// activation's input then sits 100 to 3000 times below its natural size,
/// and the absolute noise of every operation before the activation grows
/// by as much against it; the term `b'*z` carries that noise on. Here the
/// layer before is scaled by `b'` instead, so the activation reads `y =
/// b'*z` at its natural size, and `c + b'*z +- z^2 = c + y +- y^2/b'^2`:
/// the layer after reads `y` as it is and `y^2` through weights times
/// `+-1/b'^2`, which only the tiny quadratic term pays for. Same levels;
/// the layer after runs twice (1x1 convolutions on pooled gates: cheap).
fn split_quadratics(steps: Vec<Step>) -> Result<Vec<Step>, PlanError> {
    let mut out: Vec<Step> = Vec::with_capacity(steps.len());
    let mut rest = steps.into_iter().peekable();
    while let Some(step) = rest.next() {
        let split = match (&step, out.last(), rest.peek()) {
            (Step::Act { act, .. }, Some(Step::Conv(before)), Some(Step::Conv(after))) => {
                split_quadratic(before, act, after)?
            }
            _ => None,
        };
        match split {
            Some((before, both)) => {
                rest.next();
                *out.last_mut().expect("matched above") = Step::Conv(before);
                out.push(both);
            }
            None => out.push(step),
        }
    }
    Ok(out)
}

/// [`split_quadratics`] for one `before -> act -> after`: the rescaled
/// `before` and the [`Step::SquareAndLinear`] replacing `act` and `after`;
/// `None` unless `act` is a folded quadratic with a linear term and `after`
/// reads no padding.
fn split_quadratic(before: &HeConv, act: &PolyActivation, after: &HeConv) -> Result<Option<(HeConv, Step)>, PlanError> {
    let &[c, b, lead] = act.coeffs() else {
        return Ok(None);
    };
    if lead.abs() != 1.0 || b == 0.0 {
        return Ok(None);
    }
    let Some(bias) = after.bias_with_input_offset(c) else {
        return Ok(None);
    };
    let both = Step::SquareAndLinear {
        act: act.name().to_string(),
        linear: Box::new(after.reweighted(1.0, Some(bias))?),
        square: Box::new(after.reweighted(lead / (b * b), None)?),
    };
    Ok(Some((before.scaled(b), both)))
}

/// The pool sizes (`H*W`) of every SE gate in `steps`.
fn gate_positions(steps: &[Step], sizes: &mut BTreeSet<usize>) {
    for step in steps {
        match step {
            Step::Se { gate, positions, .. } => {
                sizes.insert(*positions);
                gate_positions(gate, sizes);
            }
            Step::Residual { body, shortcut, .. } => {
                gate_positions(body, sizes);
                gate_positions(shortcut, sizes);
            }
            _ => {}
        }
    }
}

/// Steps that leave each channel's pooled value at offset 0 of its block;
/// returns the pooled layout and the factor the next layer must still apply
/// to turn that value into the mean (1 for a 1x1 map).
///
/// On the network's path the mean is taken first, by the exact scalar
/// `1/(H*W)` (one level), and then summed: summing first makes values `H*W`
/// times larger, and their product with a plaintext holding small weights
/// `w/(H*W)` loses that factor of precision to the plaintext's rounding
/// (measured: ResNet20 logits off by 2e-3 at f=4, 9e-2 at f=2). An SE gate
/// does the same when it pools over at least `exact_gate_positions`;
/// otherwise it sums only and leaves `1/(H*W)` to its next layer, saving
/// the level ([`Plan::for_params`] spends the levels a preset has to spare
/// on the largest pools; see docs/precision.md).
fn pool_channels(name: &str, layout: SlotLayout, context: Context, steps: &mut Vec<Step>) -> (SlotLayout, f64) {
    let positions = layout.height * layout.width;
    if positions == 1 {
        return (layout, 1.0);
    }
    let factor = if context.gate && positions < context.exact_gate_positions {
        1.0 / positions as f64
    } else {
        // On the network path the mean also divides out the network's gain.
        let gain = if context.gate { 1.0 } else { context.gain };
        steps.push(Step::Scale {
            name: format!("{name}.mean"),
            factor: 1.0 / (positions as f64 * gain),
            layout,
        });
        1.0
    };
    let sum = RotationSum::gather(layout);
    let pooled = sum.output();
    steps.push(Step::Pool(sum));
    (pooled, factor)
}

/// A `channels -> channels` depthwise geometry with no padding.
fn depthwise(channels: usize, kernel: usize, stride: usize) -> ConvGeometry {
    ConvGeometry {
        in_channels: channels,
        out_channels: channels,
        kernel,
        stride,
        padding: 0,
        groups: channels,
    }
}

/// A linear layer on the flattened `C x H x W` tensor of `layout`:
/// - on a pooled tensor (`H = W = 1`): a 1x1 convolution;
/// - with one weight per channel (a folded global average pool): a block sum
///   and a 1x1 convolution;
/// - otherwise, on a square tensor: a convolution whose kernel is the image.
///
/// Pooling as [`pool_channels`] takes it.
fn lower_linear(
    linear: &Linear<f64>,
    layout: SlotLayout,
    context: Context,
    steps: &mut Vec<Step>,
) -> Result<SlotLayout, PlanError> {
    // Channels of one image: the layout stacks `batch` images.
    let (c, h, w) = (layout.channels / context.batch, layout.height, layout.width);
    let positions = h * w;
    let weight = linear.weight();
    let out = linear.out_features();
    if linear.in_features() != c * positions {
        return Err(unsupported(
            linear.name(),
            format!("reads {} features, the tensor has {c}x{h}x{w}", linear.in_features()),
        ));
    }
    let mut bias = linear.bias().map(|b| b.to_vec());
    let uniform = (0..out).all(|k| {
        (0..c).all(|ci| (1..positions).all(|p| weight[[k, ci * positions + p]] == weight[[k, ci * positions]]))
    });
    let (input, geometry, values) = if positions == 1 || uniform {
        let (input, factor) = pool_channels(linear.name(), layout, context, steps);
        if positions > 1 && !context.gate {
            // The mean divided the network's gain out; the bias carries it still.
            for b in bias.iter_mut().flatten() {
                *b /= context.gain;
            }
        }
        // The folded weight is w/(H*W); the pooled value needs w * factor.
        let gain = positions as f64 * factor;
        let values = (0..out)
            .flat_map(|k| (0..c).map(move |ci| weight[[k, ci * positions]] * gain))
            .collect();
        (input, dense(c, out, 1), values)
    } else if h == w {
        (layout, dense(c, out, h), weight.iter().copied().collect())
    } else {
        return Err(unsupported(
            linear.name(),
            format!("a linear layer on a non-square {h}x{w} map"),
        ));
    };
    let (geometry, values, bias) = batched(geometry, values, bias, context.batch);
    let he = HeConv::new(linear.name(), geometry, values, bias, input)?;
    let output = he.output();
    steps.push(Step::Conv(he));
    Ok(output)
}

/// A dense `cin -> cout` geometry with a `kernel` x `kernel` window, no padding.
fn dense(cin: usize, cout: usize, kernel: usize) -> ConvGeometry {
    ConvGeometry {
        in_channels: cin,
        out_channels: cout,
        kernel,
        stride: 1,
        padding: 0,
        groups: 1,
    }
}
