//! Folding: the same function as a model, rewritten so that an encrypted
//! evaluation spends fewer multiplicative levels.
//!
//! 1. Batch norm into the preceding convolution:
//!    `W' = W * s`, `b' = b * s + t` per output channel, with
//!    `s = gamma / sqrt(var + eps)`, `t = beta - mean * s`.
//! 2. Average pooling into the next linear layer: a `k x k` pool (or the
//!    global pool) followed by a linear layer becomes one linear layer on the
//!    unpooled input, each weight spread over its window and divided by the
//!    window size (zero for rows and columns the floor-mode pool drops). A
//!    pool followed by a convolution becomes a plain sum pool and its
//!    `1 / k^2` moves into the convolution's weights.
//! 3. The activation's leading coefficient into the preceding convolution or
//!    linear layer: with `y` that layer's output, `a*y^2 + b*y + c` equals
//!    `sign(a)*z^2 + (b/s)*z + c` for `z = s*y`, `s = sqrt|a|`; for the cubic,
//!    `a*y^3 + b*y + c = z^3 + (b/s)*z + c` with `s = cbrt(a)`. The layer's
//!    weights and bias are multiplied by `s`. An activation with `a = 0`, or
//!    not directly after a convolution or linear layer (LeNet5's `relu3` and
//!    HefNet's `relu4` follow the SE block when there is one), is left as is.
//! 4. A gain on each SE gate. The encrypted block broadcasts each channel's
//!    gate value from one slot to the `H*W` positions of its channel by
//!    rotations and sums, which adds up the noise of `H*W` slots: the gate's
//!    noise grows by `sqrt(H*W)` while its value does not. So the gate is
//!    computed `G = sqrt(H*W)` times larger (its last activation's
//!    coefficients times `G` before step 3 folds them; its
//!    first linear layer's weights times `G`, to read the block's input
//!    divided by `G`), and the layer before the block is divided by `G`:
//!    `(v/G) * (G*g) = v*g`. Only where that layer is a convolution or
//!    linear layer and the gate ends with an activation folded into a
//!    linear layer. Measured on the bundled ResNet20+SE at f=8: the largest
//!    logit error from 1.6e-3 to 1.2e-4..5.6e-4 at `insecure-n12-deep`.
//!
//! 5. Optionally, a gain on the whole network ([`with_gain`], applied by the
//!    encrypted planner on a folded model): every layer's output `G` times the
//!    original's, so that the values are `G` times larger against the noise
//!    each ciphertext operation adds. The first layer's weights and bias and
//!    every later bias are multiplied by `G`; an activation
//!    `sum c_k y^k` reading `G*y` becomes `sum c_k G^(1-k) (G y)^k`, except
//!    an SE gate's last one, whose output multiplies the block's input and
//!    stays at gain 1 (`c_k G^(-k)`); step 3 then folds the new leading
//!    coefficients. The logits come out `G` times larger.
//!
//! Every step is exact in real arithmetic; in f64 the folded model's logits
//! match the original's to rounding (checked in `tests/nn.rs`).

use super::layers::{Activation, Linear};
use super::model::{Layer, Model};
use ndarray::{Array2, Axis};

/// The folded model of `model` (which may itself be folded: folding again
/// changes nothing but rounding).
///
/// What holds on the way out: no [`Layer::BatchNorm`] directly after a
/// convolution (so none in the paper's architectures), no
/// [`Layer::GlobalAvgPool`] before a linear layer, every [`Layer::AvgPool`]
/// before a convolution has scale 1, and every activation directly after a
/// convolution or linear layer has leading coefficient exactly +1 or -1
/// (or 0, when it had 0).
pub fn fold(model: &Model<f64>) -> Model<f64> {
    let mut layers = model.layers().to_vec();
    fold_batch_norms(&mut layers);
    fold_pools(&mut layers, model.spec().latent().dims());
    fold_activations(&mut layers, model.spec().latent().dims(), true);
    Model::from_parts(model.spec().clone(), layers, true)
}

/// Step 5 on a folded model: the folded model whose every layer's output,
/// logits included, is `gain` times `model`'s.
///
/// `None` when the model is not folded, `gain` is not finite and positive,
/// the first layer is not a convolution or linear layer, or a layer with an
/// offset other than a bias remains (batch norm).
pub fn with_gain(model: &Model<f64>, gain: f64) -> Option<Model<f64>> {
    let usable = model.is_folded() && gain.is_finite() && gain > 0.0;
    if !usable || contains_batch_norm(model.layers()) {
        return None;
    }
    let mut layers = model.layers().to_vec();
    if !scale_linear(layers.first_mut()?, gain, true) {
        return None;
    }
    gain_layers(&mut layers[1..], gain, false);
    fold_activations(&mut layers, model.spec().latent().dims(), false);
    Some(Model::from_parts(model.spec().clone(), layers, true))
}

fn contains_batch_norm(layers: &[Layer<f64>]) -> bool {
    layers.iter().any(|l| match l {
        Layer::BatchNorm(_) => true,
        Layer::Residual { body, shortcut } => contains_batch_norm(body) || contains_batch_norm(shortcut),
        Layer::Se { gate, .. } => contains_batch_norm(gate),
        _ => false,
    })
}

/// Step 5 on layers whose input already carries `gain`: biases times `gain`,
/// activations rescaled (an SE gate's last one, when `in_gate`, to output
/// gain 1).
fn gain_layers(layers: &mut [Layer<f64>], gain: f64, in_gate: bool) {
    let last = layers.len().saturating_sub(1);
    for (i, layer) in layers.iter_mut().enumerate() {
        match layer {
            Layer::Conv(conv) => scale_bias(conv.bias_mut(), gain),
            Layer::Linear(lin) => scale_bias(lin.bias_mut(), gain),
            Layer::Act(act) => {
                let output_gain = if in_gate && i == last { 0 } else { 1 };
                for (k, c) in act.coeffs_mut().iter_mut().enumerate() {
                    *c *= gain.powi(output_gain - k as i32);
                }
            }
            Layer::Residual { body, shortcut } => {
                gain_layers(body, gain, false);
                gain_layers(shortcut, gain, false);
            }
            Layer::Se { gate, .. } => gain_layers(gate, gain, true),
            Layer::BatchNorm(_) | Layer::AvgPool(_) | Layer::GlobalAvgPool => {}
        }
    }
}

fn fold_batch_norms(layers: &mut Vec<Layer<f64>>) {
    let mut out: Vec<Layer<f64>> = Vec::with_capacity(layers.len());
    for layer in layers.drain(..) {
        match layer {
            Layer::BatchNorm(bn) => {
                if let Some(Layer::Conv(conv)) = out.last_mut() {
                    let (scale, shift) = bn.scale_shift();
                    for (o, mut filter) in conv.weight_mut().outer_iter_mut().enumerate() {
                        filter.mapv_inplace(|v| v * scale[o]);
                    }
                    let bias = conv.bias_mut();
                    let old = bias.take().unwrap_or_else(|| ndarray::Array1::zeros(scale.len()));
                    *bias = Some(&old * scale + shift);
                } else {
                    out.push(Layer::BatchNorm(bn));
                }
            }
            Layer::Residual { mut body, mut shortcut } => {
                fold_batch_norms(&mut body);
                fold_batch_norms(&mut shortcut);
                out.push(Layer::Residual { body, shortcut });
            }
            Layer::Se { name, mut gate } => {
                fold_batch_norms(&mut gate);
                out.push(Layer::Se { name, gate });
            }
            other => out.push(other),
        }
    }
    *layers = out;
}

/// `input` is the `[C, H, W]` entering `layers`.
fn fold_pools(layers: &mut Vec<Layer<f64>>, input: [usize; 3]) {
    let mut out: Vec<Layer<f64>> = Vec::with_capacity(layers.len());
    let mut shape = input;
    let mut rest = std::mem::take(layers).into_iter().peekable();
    while let Some(layer) = rest.next() {
        let next_shape = layer.output_shape(shape);
        match layer {
            Layer::AvgPool(mut pool) => {
                if let Some(Layer::Linear(lin)) = rest.next_if(|l| matches!(l, Layer::Linear(_))) {
                    let folded = spread(&lin, shape, pool.kernel(), pool.scale());
                    shape = folded.output_shape(shape);
                    out.push(folded);
                    continue;
                }
                if let Some(Layer::Conv(conv)) = rest.peek_mut() {
                    let s = pool.scale();
                    conv.weight_mut().mapv_inplace(|v| v * s);
                    pool.set_scale(1.0);
                }
                out.push(Layer::AvgPool(pool));
            }
            Layer::GlobalAvgPool => {
                if let Some(Layer::Linear(lin)) = rest.next_if(|l| matches!(l, Layer::Linear(_))) {
                    let folded = spread_global(&lin, shape, 1.0 / (shape[1] * shape[2]) as f64);
                    shape = folded.output_shape(shape);
                    out.push(folded);
                    continue;
                }
                out.push(Layer::GlobalAvgPool);
            }
            Layer::Residual { mut body, mut shortcut } => {
                fold_pools(&mut body, shape);
                fold_pools(&mut shortcut, shape);
                out.push(Layer::Residual { body, shortcut });
            }
            Layer::Se { name, mut gate } => {
                fold_pools(&mut gate, shape);
                out.push(Layer::Se { name, gate });
            }
            other => out.push(other),
        }
        shape = next_shape;
    }
    *layers = out;
}

/// The linear layer on a `[C, H, W]` map that equals `k x k` pooling (with
/// `scale`, floor mode) followed by `lin`.
fn spread(lin: &Linear<f64>, [c, h, w]: [usize; 3], k: usize, scale: f64) -> Layer<f64> {
    let (hp, wp) = (h / k, w / k);
    let out = lin.out_features();
    let mut weight = Array2::<f64>::zeros((out, c * h * w));
    let old = lin.weight();
    for o in 0..out {
        for ci in 0..c {
            for y in 0..hp * k {
                for x in 0..wp * k {
                    weight[[o, (ci * h + y) * w + x]] = old[[o, (ci * hp + y / k) * wp + x / k]] * scale;
                }
            }
        }
    }
    Layer::Linear(Linear::new(lin.name(), weight, lin.bias().cloned()).expect("bias unchanged"))
}

/// The linear layer on a `[C, H, W]` map that equals the global mean
/// (`scale = 1 / (H W)`) followed by `lin`.
fn spread_global(lin: &Linear<f64>, [c, h, w]: [usize; 3], scale: f64) -> Layer<f64> {
    let old = lin.weight();
    let mut weight = Array2::<f64>::zeros((lin.out_features(), c * h * w));
    for (mut row, old_row) in weight.axis_iter_mut(Axis(0)).zip(old.axis_iter(Axis(0))) {
        for ci in 0..c {
            row.slice_mut(ndarray::s![ci * h * w..(ci + 1) * h * w])
                .fill(old_row[ci] * scale);
        }
    }
    Layer::Linear(Linear::new(lin.name(), weight, lin.bias().cloned()).expect("bias unchanged"))
}

fn scale_bias(bias: &mut Option<ndarray::Array1<f64>>, s: f64) {
    if let Some(b) = bias {
        b.mapv_inplace(|v| v * s);
    }
}

/// Step 3 over `layers` (entered with shape `shape`), and step 4 for every
/// SE block when `gate_gain` (not when re-folding a folded model, whose
/// gates have their gain already).
fn fold_activations(layers: &mut [Layer<f64>], mut shape: [usize; 3], gate_gain: bool) {
    for i in 0..layers.len() {
        let next_shape = layers[i].output_shape(shape);
        let (before, after) = layers.split_at_mut(i);
        match &mut after[0] {
            Layer::Act(act) => {
                if let Some(prev) = before.last_mut() {
                    fold_into(prev, act);
                }
            }
            Layer::Residual { body, shortcut } => {
                fold_activations(body, shape, gate_gain);
                fold_activations(shortcut, shape, gate_gain);
            }
            Layer::Se { gate, .. } => {
                if gate_gain {
                    gain_gate(before.last_mut(), gate, shape);
                }
                fold_activations(gate, shape, gate_gain);
            }
            _ => {}
        }
        shape = next_shape;
    }
}

/// Step 4 for the gate of an SE block entered with shape `shape` after
/// `prev`: `prev` divided by `G = sqrt(H*W)`, the gate's first linear layer
/// times `G`, its last activation's coefficients times `G` (step 3 then
/// folds `G*a`). Nothing changes where the conditions of step 4 fail.
fn gain_gate(prev: Option<&mut Layer<f64>>, gate: &mut [Layer<f64>], shape: [usize; 3]) {
    let gain = ((shape[1] * shape[2]) as f64).sqrt();
    if gain <= 1.0 || !gate_ends_in_folded_activation(gate) || !prev.is_some_and(|p| scale_linear(p, 1.0 / gain, true))
    {
        return;
    }
    if let Some(first) = gate.iter_mut().find(|l| matches!(l, Layer::Conv(_) | Layer::Linear(_))) {
        scale_linear(first, gain, false);
    }
    if let Some(Layer::Act(act)) = gate.last_mut() {
        act.coeffs_mut().iter_mut().for_each(|c| *c *= gain);
    }
}

/// Whether `gate` ends with an activation that step 3 folds (nonzero
/// leading coefficient, right after a convolution or linear layer).
fn gate_ends_in_folded_activation(gate: &[Layer<f64>]) -> bool {
    match gate {
        [.., Layer::Conv(_) | Layer::Linear(_), Layer::Act(act)] => act.coeffs()[act.degree()] != 0.0,
        _ => false,
    }
}

/// Multiplies a convolution's or linear layer's weights (and its bias when
/// `bias_too`) by `s`; false, and nothing changed, for any other layer.
fn scale_linear(layer: &mut Layer<f64>, s: f64, bias_too: bool) -> bool {
    let bias = match layer {
        Layer::Conv(conv) => {
            conv.weight_mut().mapv_inplace(|v| v * s);
            conv.bias_mut()
        }
        Layer::Linear(lin) => {
            lin.weight_mut().mapv_inplace(|v| v * s);
            lin.bias_mut()
        }
        _ => return false,
    };
    if bias_too {
        scale_bias(bias, s);
    }
    true
}

/// Moves `act`'s leading coefficient into `prev` if `prev` is a convolution
/// or linear layer.
fn fold_into(prev: &mut Layer<f64>, act: &mut Activation<f64>) {
    let degree = act.degree();
    let lead = act.coeffs()[degree];
    if lead == 0.0 {
        return;
    }
    let s = if degree.is_multiple_of(2) {
        lead.abs().sqrt()
    } else {
        lead.cbrt()
    };
    if !scale_linear(prev, s, true) {
        return;
    }
    let coeffs = act.coeffs_mut();
    let mut power = 1.0;
    for c in coeffs.iter_mut().take(degree) {
        *c /= power;
        power *= s;
    }
    coeffs[degree] = if degree.is_multiple_of(2) { lead.signum() } else { 1.0 };
}
