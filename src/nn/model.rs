//! Models: the layer graph of each architecture, built from a state dict
//! with every tensor checked, and the batched forward pass.

use super::layers::{global_avg_pool, Activation, AvgPool, BatchNorm, Conv2d, ConvGeometry, Linear, BN_EPS};
use super::spec::{parse_bool, parse_classes, Arch, InputClip, LatentShape, ModelSpec};
use super::weights::StateDict;
use super::{NnError, Real, WeightProblem};
use ndarray::{Array1, Array2, Array4, ArrayView3, ArrayView4, Axis};
use std::collections::BTreeSet;
use std::path::Path;

/// One step of a model. A model is a sequence of layers; [`Layer::Residual`]
/// and [`Layer::Se`] hold their own sequences.
#[derive(Clone, Debug)]
pub enum Layer<T> {
    /// A convolution.
    Conv(Conv2d<T>),
    /// Batch norm (eval mode). Absent from folded models.
    BatchNorm(BatchNorm<T>),
    /// A polynomial activation.
    Act(Activation<T>),
    /// `k x k` average (or, folded, sum) pooling with stride `k`.
    AvgPool(AvgPool),
    /// Mean over all positions per channel (`B x C x 1 x 1`). Absent from
    /// folded models (moved into the next linear layer).
    GlobalAvgPool,
    /// A fully connected layer on the flattened input.
    Linear(Linear<T>),
    /// `body(x) + shortcut(x)`; an empty shortcut is the identity. No
    /// activation follows the addition (the reference's ResNet).
    Residual {
        /// The main path.
        body: Vec<Layer<T>>,
        /// The shortcut path (empty: identity).
        shortcut: Vec<Layer<T>>,
    },
    /// Squeeze-and-excitation: `x * gate(x)` per channel, where `gate` maps
    /// `B x C x H x W` to `B x C x 1 x 1`.
    Se {
        /// The PyTorch module name (`attn`, `layer1.0.attn`).
        name: String,
        /// The gate's layers.
        gate: Vec<Layer<T>>,
    },
}

impl<T: Real> Layer<T> {
    fn cast<U: Real>(&self) -> Layer<U> {
        match self {
            Layer::Conv(c) => Layer::Conv(c.cast()),
            Layer::BatchNorm(b) => Layer::BatchNorm(b.cast()),
            Layer::Act(a) => Layer::Act(a.cast()),
            Layer::AvgPool(p) => Layer::AvgPool(*p),
            Layer::GlobalAvgPool => Layer::GlobalAvgPool,
            Layer::Linear(l) => Layer::Linear(l.cast()),
            Layer::Residual { body, shortcut } => Layer::Residual {
                body: cast_all(body),
                shortcut: cast_all(shortcut),
            },
            Layer::Se { name, gate } => Layer::Se {
                name: name.clone(),
                gate: cast_all(gate),
            },
        }
    }

    /// This layer's forward pass on a batch (shapes as the model was built for).
    pub fn forward(&self, x: Array4<T>) -> Array4<T> {
        self.forward_observed(x, &mut |_| {})
    }

    /// [`Self::forward`], showing `observe` every tensor made inside the
    /// layer before its output (the layers of a residual block's branches
    /// and of an SE gate, and the gate itself).
    fn forward_observed(&self, x: Array4<T>, observe: &mut dyn FnMut(&Array4<T>)) -> Array4<T> {
        match self {
            Layer::Conv(c) => c.forward(&x),
            Layer::BatchNorm(b) => b.forward(x),
            Layer::Act(a) => a.forward(x),
            Layer::AvgPool(p) => p.forward(&x),
            Layer::GlobalAvgPool => global_avg_pool(&x),
            Layer::Linear(l) => l.forward(&x),
            Layer::Residual { body, shortcut } => {
                let side = if shortcut.is_empty() {
                    x.clone()
                } else {
                    run(shortcut, x.clone(), observe)
                };
                let mut out = run(body, x, observe);
                out.zip_mut_with(&side, |a, &b| *a = *a + b);
                out
            }
            Layer::Se { gate, .. } => {
                let g = run(gate, x.clone(), observe);
                let mut out = x;
                for (mut image, gates) in out.outer_iter_mut().zip(g.outer_iter()) {
                    for (mut plane, gate) in image.outer_iter_mut().zip(gates.iter()) {
                        let gate = *gate;
                        plane.mapv_inplace(|v| v * gate);
                    }
                }
                out
            }
        }
    }

    /// The output shape `[C, H, W]` for an input of shape `input` (the
    /// shapes a model was built for; other inputs give meaningless answers).
    pub fn output_shape(&self, input: [usize; 3]) -> [usize; 3] {
        let [c, h, w] = input;
        match self {
            Layer::Conv(conv) => {
                let g = conv.geometry();
                let (ho, wo) = g.output_hw(h, w).unwrap_or((0, 0));
                [g.out_channels, ho, wo]
            }
            Layer::BatchNorm(_) | Layer::Act(_) | Layer::Se { .. } => input,
            Layer::AvgPool(p) => [c, h / p.kernel(), w / p.kernel()],
            Layer::GlobalAvgPool => [c, 1, 1],
            Layer::Linear(l) => [l.out_features(), 1, 1],
            Layer::Residual { body, .. } => body.iter().fold(input, |s, l| l.output_shape(s)),
        }
    }
}

fn cast_all<T: Real, U: Real>(layers: &[Layer<T>]) -> Vec<Layer<U>> {
    layers.iter().map(Layer::cast).collect()
}

/// `layers` in turn on `x`, showing `observe` every tensor made on the
/// way, each layer's output included.
fn run<T: Real>(layers: &[Layer<T>], mut x: Array4<T>, observe: &mut dyn FnMut(&Array4<T>)) -> Array4<T> {
    for l in layers {
        x = l.forward_observed(x, observe);
        observe(&x);
    }
    x
}

/// `|v|`, infinite for a NaN.
fn magnitude(v: f64) -> f64 {
    if v.is_nan() {
        f64::INFINITY
    } else {
        v.abs()
    }
}

/// A classifier ready to run: its spec and its layers.
///
/// Invariants: the layers accept an input of the spec's latent shape and end
/// in one logit per class (checked when built); every parameter is finite.
#[derive(Clone, Debug)]
pub struct Model<T> {
    spec: ModelSpec,
    layers: Vec<Layer<T>>,
    folded: bool,
}

impl<T: Real> Model<T> {
    /// What the model is.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The layers, in order.
    pub fn layers(&self) -> &[Layer<T>] {
        &self.layers
    }

    /// Whether this model came from [`mod@super::fold`] (no batch norm, no
    /// global pooling; see there for what else holds).
    pub fn is_folded(&self) -> bool {
        self.folded
    }

    /// The same model in another element type (each parameter rounded to nearest).
    pub fn cast<U: Real>(&self) -> Model<U> {
        Model {
            spec: self.spec.clone(),
            layers: cast_all(&self.layers),
            folded: self.folded,
        }
    }

    /// Raw logits for a batch `B x C x H x W` (`B >= 1`, `C x H x W` the
    /// spec's latent): a `B x classes` array. The spec's input clamp, if
    /// any, is applied first.
    ///
    /// # Errors
    /// [`NnError::InputShape`] for another shape, [`NnError::NonFinite`]
    /// for a NaN or infinite input value.
    pub fn forward(&self, x: ArrayView4<'_, T>) -> Result<Array2<T>, NnError> {
        let x = self.checked_input(x)?;
        Ok(self.logits(run(&self.layers, x, &mut |_| {})))
    }

    /// [`Self::forward`], with each image's peak: the largest magnitude
    /// of any value the forward pass makes for it (the clamped input, every
    /// layer's output, and the tensors inside residual blocks and SE gates);
    /// infinite where a value is not finite. A fixed-point encoding of the
    /// pass, as a ciphertext is, must hold values this large.
    ///
    /// # Errors
    /// As [`Self::forward`].
    pub fn forward_with_peaks(&self, x: ArrayView4<'_, T>) -> Result<(Array2<T>, Array1<f64>), NnError> {
        let x = self.checked_input(x)?;
        let mut peaks = Array1::zeros(x.dim().0);
        let mut observe = |t: &Array4<T>| {
            for (peak, image) in peaks.iter_mut().zip(t.outer_iter()) {
                *peak = image.iter().map(|v| magnitude(v.to_f64())).fold(*peak, f64::max);
            }
        };
        observe(&x);
        let out = run(&self.layers, x, &mut observe);
        Ok((self.logits(out), peaks))
    }

    /// `x` as the layers take it: checked against the spec's latent and for
    /// non-finite values, in standard layout, clamped as the spec says.
    fn checked_input(&self, x: ArrayView4<'_, T>) -> Result<Array4<T>, NnError> {
        let latent = self.spec.latent();
        let (b, c, h, w) = x.dim();
        if b == 0 || [c, h, w] != latent.dims() {
            return Err(NnError::InputShape {
                expected: latent,
                found: x.shape().to_vec(),
            });
        }
        if let Some((index, v)) = x.iter().enumerate().find(|(_, v)| !v.to_f64().is_finite()) {
            return Err(NnError::NonFinite {
                index,
                value: v.to_f64(),
            });
        }
        let mut x = x.as_standard_layout().into_owned();
        if let Some(clip) = self.spec.input_clip() {
            clip.apply(x.iter_mut());
        }
        Ok(x)
    }

    /// The last layer's `B x classes x 1 x 1` output as `B x classes`.
    fn logits(&self, out: Array4<T>) -> Array2<T> {
        let shape = (out.dim().0, self.spec.classes().len());
        out.into_shape_with_order(shape)
            .expect("the last layer gives one logit per class")
    }

    /// Raw logits for one latent `C x H x W`.
    ///
    /// # Errors
    /// As [`Model::forward`].
    pub fn forward_one(&self, x: ArrayView3<'_, T>) -> Result<Array1<T>, NnError> {
        let logits = self.forward(x.insert_axis(Axis(0)))?;
        Ok(logits.index_axis_move(Axis(0), 0))
    }

    pub(crate) fn from_parts(spec: ModelSpec, layers: Vec<Layer<T>>, folded: bool) -> Self {
        Model { spec, layers, folded }
    }
}

/// Settings for [`Model::from_state_dict`]. Each one that is `None` comes
/// from the file's metadata (keys `arch`, `se`, `classes`, `latent`,
/// `input_clip`), else is
/// inferred from the tensors: the architecture from their names, SE from
/// any `attn` tensor, the class count from the last linear layer (names
/// `class_0`, ...), the latent from `conv1.weight`'s input channels via the
/// paper's table ([`LatentShape::for_channels`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// The architecture.
    pub arch: Option<Arch>,
    /// Whether the SE block is present.
    pub se: Option<bool>,
    /// Class names, one per logit.
    pub classes: Option<Vec<String>>,
    /// The input latent's shape.
    pub latent: Option<LatentShape>,
    /// The clamp on the inputs (absent from both: none).
    pub input_clip: Option<InputClip>,
}

impl LoadOptions {
    /// The options written as the CLI's flags take them: `arch` (`resnet20`,
    /// ...), `classes` (`nih15`, `chexpert14` or `a,b,c`), `latent`
    /// (`CxHxW` or `f2`..`f16`), `input_clip` (a positive bound).
    ///
    /// # Errors
    /// [`NnError::Parse`] naming the first setting that does not parse.
    pub fn parse(
        arch: Option<&str>,
        se: Option<bool>,
        classes: Option<&str>,
        latent: Option<&str>,
        input_clip: Option<&str>,
    ) -> Result<Self, NnError> {
        Ok(LoadOptions {
            arch: arch.map(str::parse).transpose()?,
            se,
            classes: classes.map(parse_classes).transpose()?,
            latent: latent.map(str::parse).transpose()?,
            input_clip: input_clip.map(str::parse).transpose()?,
        })
    }
}

/// A tensor the architecture reads: its PyTorch name and shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// The state-dict name.
    pub name: String,
    /// The shape (`[]` for `num_batches_tracked`).
    pub shape: Vec<usize>,
    /// Whether the loader accepts the file without it: batch norm's
    /// `num_batches_tracked` (read, never used), and the copies of a shared
    /// activation (VGG5, HefNet: `relu1`..`relu4` are one module; a file needs
    /// at least one copy, and every copy present must be equal).
    pub optional: bool,
}

/// Every tensor a model with this spec reads, in construction order.
///
/// # Errors
/// [`NnError::Architecture`] when the architecture cannot run on the latent.
pub fn expected_tensors(spec: &ModelSpec) -> Result<Vec<TensorSpec>, NnError> {
    let mut b = Builder::new(None, spec);
    build(&mut b)?;
    Ok(b.expected)
}

impl Model<f64> {
    /// Builds the model a state dict holds; see [`LoadOptions`] for where
    /// the spec comes from.
    ///
    /// # Errors
    /// [`NnError::Parse`] for bad metadata, [`NnError::Conflict`] when the
    /// metadata and an option disagree, [`NnError::Unknown`] when a setting
    /// can be neither found nor inferred, [`NnError::Architecture`] when the
    /// latent is too small, and [`NnError::Weights`] listing every missing,
    /// extra, mis-shaped or invalid tensor at once.
    pub fn from_state_dict(dict: &StateDict, opts: &LoadOptions) -> Result<Self, NnError> {
        let spec = resolve_spec(dict, opts)?;
        Self::from_state_dict_with_spec(dict, spec)
    }

    /// Builds the model with exactly this spec, ignoring the metadata.
    ///
    /// # Errors
    /// [`NnError::Architecture`] and [`NnError::Weights`] as
    /// [`Model::from_state_dict`].
    pub fn from_state_dict_with_spec(dict: &StateDict, spec: ModelSpec) -> Result<Self, NnError> {
        let mut b = Builder::new(Some(dict), &spec);
        let layers = build(&mut b)?;
        for (name, t) in dict.iter() {
            if !b.used.contains(name) {
                b.problems.push(WeightProblem::Extra {
                    name: name.to_string(),
                    shape: t.shape().to_vec(),
                });
            }
        }
        if !b.problems.is_empty() {
            return Err(NnError::Weights {
                model: spec.to_string(),
                problems: b.problems,
            });
        }
        Ok(Model {
            spec,
            layers,
            folded: false,
        })
    }

    /// Reads a safetensors file and builds its model.
    ///
    /// # Errors
    /// [`NnError::Io`] and [`NnError::Safetensors`] for the file, else as
    /// [`Model::from_state_dict`].
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Self, NnError> {
        Self::from_state_dict(&StateDict::read(path)?, opts)
    }
}

/// Combines options, metadata and inference into a spec.
fn resolve_spec(dict: &StateDict, opts: &LoadOptions) -> Result<ModelSpec, NnError> {
    fn pick<V: PartialEq + Clone>(
        what: &'static str,
        meta: Option<V>,
        opt: Option<&V>,
        show: impl Fn(&V) -> String,
    ) -> Result<Option<V>, NnError> {
        match (meta, opt) {
            (Some(m), Some(o)) if m != *o => Err(NnError::Conflict {
                what,
                metadata: show(&m),
                option: show(o),
            }),
            (Some(m), _) => Ok(Some(m)),
            (None, o) => Ok(o.cloned()),
        }
    }
    let meta_arch = dict.metadata("arch").map(str::parse::<Arch>).transpose()?;
    let meta_se = dict.metadata("se").map(|s| parse_bool("se", s)).transpose()?;
    let meta_classes = dict.metadata("classes").map(parse_classes).transpose()?;
    let meta_latent = dict.metadata("latent").map(str::parse::<LatentShape>).transpose()?;
    let meta_clip = dict.metadata("input_clip").map(str::parse::<InputClip>).transpose()?;
    let input_clip = pick("input_clip", meta_clip, opts.input_clip.as_ref(), |c| c.to_string())?;

    let arch = match pick("arch", meta_arch, opts.arch.as_ref(), |a| a.to_string())? {
        Some(a) => a,
        None => infer_arch(dict)?,
    };
    let se = pick("se", meta_se, opts.se.as_ref(), |s| s.to_string())?
        .unwrap_or_else(|| dict.iter().any(|(n, _)| n.starts_with("attn.") || n.contains(".attn.")));
    let latent = match pick("latent", meta_latent, opts.latent.as_ref(), |l| l.to_string())? {
        Some(l) => l,
        None => {
            let c = dict
                .get("conv1.weight")
                .filter(|t| t.shape().len() == 4)
                .map(|t| t.shape()[1]);
            c.and_then(LatentShape::for_channels).ok_or_else(|| NnError::Unknown {
                what: "latent shape",
                hint: "pass it (e.g. 4x32x32) or set the `latent` metadata key".into(),
            })?
        }
    };
    let classes = pick("classes", meta_classes, opts.classes.as_ref(), |c| c.join(","))?;
    let spec = match classes {
        Some(names) => ModelSpec::new(arch, se, names, latent),
        None => {
            let last = match arch {
                Arch::LeNet5 => "linear2.weight",
                Arch::Vgg5 | Arch::HefNet => "linear1.weight",
                _ => "linear.weight",
            };
            let n = dict
                .get(last)
                .filter(|t| t.shape().len() == 2)
                .map(|t| t.shape()[0])
                .filter(|n| *n > 0);
            let n = n.ok_or_else(|| NnError::Unknown {
                what: "classes",
                hint: format!("{last} is missing; pass the class names or set the `classes` metadata key"),
            })?;
            ModelSpec::with_class_count(arch, se, n, latent)
        }
    };
    Ok(spec?.with_input_clip(input_clip))
}

/// The architecture from the tensor names alone.
fn infer_arch(dict: &StateDict) -> Result<Arch, NnError> {
    let has = |n: &str| dict.get(n).is_some();
    let blocks: BTreeSet<&str> = dict
        .iter()
        .filter_map(|(n, _)| n.strip_prefix("layer1."))
        .filter_map(|rest| rest.split('.').next())
        .collect();
    let unknown = |hint: String| NnError::Unknown {
        what: "architecture",
        hint,
    };
    if !blocks.is_empty() {
        return Arch::resnet_with_blocks(blocks.len())
            .ok_or_else(|| unknown(format!("{} blocks in layer1 is no ResNet of the paper", blocks.len())));
    }
    if has("linear2.weight") && has("conv3.weight") {
        Ok(Arch::LeNet5)
    } else if has("conv4.weight") && has("bn1.weight") {
        Ok(Arch::HefNet)
    } else if has("conv4.weight") {
        Ok(Arch::Vgg5)
    } else {
        Err(unknown("pass the architecture or set the `arch` metadata key".into()))
    }
}

/// Collects layers while tracking the current shape, the tensors read and
/// every problem found.
struct Builder<'a> {
    dict: Option<&'a StateDict>,
    spec: &'a ModelSpec,
    shape: [usize; 3],
    used: BTreeSet<String>,
    expected: Vec<TensorSpec>,
    problems: Vec<WeightProblem>,
    shared: Option<[f64; 3]>,
}

impl<'a> Builder<'a> {
    fn new(dict: Option<&'a StateDict>, spec: &'a ModelSpec) -> Self {
        Builder {
            dict,
            spec,
            shape: spec.latent().dims(),
            used: BTreeSet::new(),
            expected: Vec::new(),
            problems: Vec::new(),
            shared: None,
        }
    }

    fn arch_error(&self, reason: String) -> NnError {
        NnError::Architecture {
            model: self.spec.to_string(),
            reason,
        }
    }

    /// The values of a required tensor (zeros, with a problem recorded, if
    /// it is missing, mis-shaped or not finite).
    fn take(&mut self, name: &str, shape: &[usize]) -> Vec<f64> {
        self.expected.push(TensorSpec {
            name: name.to_string(),
            shape: shape.to_vec(),
            optional: false,
        });
        let zeros = vec![0.0; shape.iter().product()];
        let Some(dict) = self.dict else { return zeros };
        match dict.get(name) {
            None => {
                self.problems.push(WeightProblem::Missing {
                    name: name.to_string(),
                    shape: shape.to_vec(),
                });
                zeros
            }
            Some(t) => {
                self.used.insert(name.to_string());
                if t.shape() != shape {
                    self.problems.push(WeightProblem::Shape {
                        name: name.to_string(),
                        expected: shape.to_vec(),
                        found: t.shape().to_vec(),
                    });
                    zeros
                } else if let Some(v) = t.data().iter().find(|v| !v.is_finite()) {
                    self.problems.push(WeightProblem::Value {
                        name: name.to_string(),
                        reason: format!("holds {v}"),
                    });
                    zeros
                } else {
                    t.data().to_vec()
                }
            }
        }
    }

    /// Marks an optional tensor as read, checking its shape if present.
    fn optional(&mut self, name: &str, shape: &[usize]) {
        self.expected.push(TensorSpec {
            name: name.to_string(),
            shape: shape.to_vec(),
            optional: true,
        });
        if let Some(t) = self.dict.and_then(|d| d.get(name)) {
            self.used.insert(name.to_string());
            if t.shape() != shape && !(shape.is_empty() && t.shape() == [1]) {
                self.problems.push(WeightProblem::Shape {
                    name: name.to_string(),
                    expected: shape.to_vec(),
                    found: t.shape().to_vec(),
                });
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        name: &str,
        out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        groups: usize,
        bias: bool,
    ) -> Result<Layer<f64>, NnError> {
        let [c, h, w] = self.shape;
        let g = ConvGeometry {
            in_channels: c,
            out_channels: out,
            kernel,
            stride,
            padding,
            groups,
        };
        if !c.is_multiple_of(groups) || !out.is_multiple_of(groups) {
            return Err(self.arch_error(format!(
                "{name}: {c} -> {out} channels do not split into {groups} groups"
            )));
        }
        let Some((ho, wo)) = g.output_hw(h, w) else {
            return Err(self.arch_error(format!(
                "{name}: a {kernel}x{kernel} kernel does not fit its {h}x{w} input (padding {padding}); \
                 the latent is too small for this architecture"
            )));
        };
        let wshape = [out, c / groups, kernel, kernel];
        let weight = Array4::from_shape_vec(wshape, self.take(&format!("{name}.weight"), &wshape))
            .expect("take returns the shape's length");
        let bias = bias.then(|| Array1::from(self.take(&format!("{name}.bias"), &[out])));
        self.shape = [out, ho, wo];
        Ok(Layer::Conv(
            Conv2d::new(name, g, weight, bias).expect("geometry checked above"),
        ))
    }

    fn bn(&mut self, name: &str) -> Layer<f64> {
        let c = self.shape[0];
        let gamma = Array1::from(self.take(&format!("{name}.weight"), &[c]));
        let beta = Array1::from(self.take(&format!("{name}.bias"), &[c]));
        let mean = Array1::from(self.take(&format!("{name}.running_mean"), &[c]));
        let var_name = format!("{name}.running_var");
        let mut var = Array1::from(self.take(&var_name, &[c]));
        if self.dict.is_none() || var.iter().any(|v| v + BN_EPS <= 0.0) {
            if self.dict.is_some() {
                self.problems.push(WeightProblem::Value {
                    name: var_name,
                    reason: "running variance below -eps".into(),
                });
            }
            var.fill(1.0);
        }
        self.optional(&format!("{name}.num_batches_tracked"), &[]);
        Layer::BatchNorm(BatchNorm::new(name, gamma, beta, mean, var, BN_EPS).expect("lengths equal, var checked"))
    }

    fn linear(&mut self, name: &str, out: usize, bias: bool) -> Layer<f64> {
        let [c, h, w] = self.shape;
        let inp = c * h * w;
        let weight = Array2::from_shape_vec((out, inp), self.take(&format!("{name}.weight"), &[out, inp]))
            .expect("take returns the shape's length");
        let bias = bias.then(|| Array1::from(self.take(&format!("{name}.bias"), &[out])));
        self.shape = [out, 1, 1];
        Layer::Linear(Linear::new(name, weight, bias).expect("bias length is out"))
    }

    /// `alpha`, `beta`, `c` of the module `name`.
    fn scalars(&mut self, name: &str) -> [f64; 3] {
        ["alpha", "beta", "c"].map(|p| self.take(&format!("{name}.{p}"), &[1])[0])
    }

    /// `polynom_act`: alpha*x^2 + beta*x + c.
    fn quadratic(&mut self, name: &str) -> Layer<f64> {
        let [a, b, c] = self.scalars(name);
        Layer::Act(Activation::new(name, vec![c, b, a]).expect("degree 2"))
    }

    /// `approxSigmoid`: alpha*x^3 + beta*x + c.
    fn cubic(&mut self, name: &str) -> Layer<f64> {
        let [a, b, c] = self.scalars(name);
        Layer::Act(Activation::new(name, vec![c, b, 0.0, a]).expect("degree 3"))
    }

    /// One `polynom_act` registered under several names (VGG5's and HefNet's
    /// `relu1`..`relu4`), resolved on first use: at least one copy must be
    /// present and the copies present must agree. The layer is named after
    /// `names[use_as]`.
    fn shared_quadratic(&mut self, names: &[&str], use_as: usize) -> Layer<f64> {
        let [a, b, c] = match self.shared {
            Some(coeffs) => coeffs,
            None => {
                let coeffs = self.resolve_shared(names);
                self.shared = Some(coeffs);
                coeffs
            }
        };
        Layer::Act(Activation::new(names[use_as], vec![c, b, a]).expect("degree 2"))
    }

    fn resolve_shared(&mut self, names: &[&str]) -> [f64; 3] {
        let params = ["alpha", "beta", "c"];
        let present: Vec<&str> = match self.dict {
            None => vec![],
            Some(d) => names
                .iter()
                .copied()
                .filter(|n| params.iter().any(|p| d.get(&format!("{n}.{p}")).is_some()))
                .collect(),
        };
        let coeffs = match present.split_first() {
            // Reports the first copy as missing.
            None => self.scalars(names[0]),
            Some((first_name, others)) => {
                let first = self.scalars(first_name);
                for n in others {
                    let other = self.scalars(n);
                    for (i, p) in params.iter().enumerate() {
                        if other[i] != first[i] {
                            self.problems.push(WeightProblem::Value {
                                name: format!("{n}.{p}"),
                                reason: format!(
                                    "{} differs from {first_name}.{p} ({}), but these modules share one activation",
                                    other[i], first[i]
                                ),
                            });
                        }
                    }
                }
                first
            }
        };
        for n in names {
            for p in params {
                let name = format!("{n}.{p}");
                match self.expected.iter_mut().find(|e| e.name == name) {
                    Some(e) => e.optional = true,
                    None => self.expected.push(TensorSpec {
                        name,
                        shape: vec![1],
                        optional: true,
                    }),
                }
            }
        }
        coeffs
    }

    fn avg_pool(&mut self, kernel: usize, name: &str) -> Result<Layer<f64>, NnError> {
        let [c, h, w] = self.shape;
        if h < kernel || w < kernel {
            return Err(self.arch_error(format!(
                "{name}: a {kernel}x{kernel} pool does not fit its {h}x{w} input"
            )));
        }
        self.shape = [c, h / kernel, w / kernel];
        Ok(Layer::AvgPool(AvgPool::average(kernel)))
    }

    fn global_pool(&mut self) -> Layer<f64> {
        self.shape = [self.shape[0], 1, 1];
        Layer::GlobalAvgPool
    }

    /// The SE block `name` on the current shape (reduction 16).
    fn se(&mut self, name: &str) -> Result<Layer<f64>, NnError> {
        let shape = self.shape;
        let c = shape[0];
        if !c.is_multiple_of(16) {
            return Err(self.arch_error(format!(
                "{name}: {c} channels are not a multiple of the SE reduction 16"
            )));
        }
        let gate = vec![
            self.global_pool(),
            self.linear(&format!("{name}.linear1"), c / 16, true),
            self.quadratic(&format!("{name}.lelu")),
            self.linear(&format!("{name}.linear2"), c, true),
            self.cubic(&format!("{name}.sigmoid")),
        ];
        self.shape = shape;
        Ok(Layer::Se {
            name: name.to_string(),
            gate,
        })
    }
}

/// The layers of `b.spec`'s architecture, reading tensors through `b`.
fn build(b: &mut Builder<'_>) -> Result<Vec<Layer<f64>>, NnError> {
    let spec = b.spec;
    let classes = spec.classes().len();
    let se = spec.se();
    let mut layers = Vec::new();
    match spec.arch() {
        Arch::ResNet20 | Arch::ResNet32 | Arch::ResNet44 | Arch::ResNet56 => {
            let n = spec.arch().resnet_blocks().unwrap_or(3);
            layers.push(b.conv("conv1", 16, 3, 1, 1, 1, false)?);
            layers.push(b.bn("bn1"));
            layers.push(b.quadratic("relu"));
            let mut in_planes = 16;
            for (stage, planes, first_stride) in [(1, 16, 1), (2, 32, 2), (3, 64, 2)] {
                for i in 0..n {
                    let stride = if i == 0 { first_stride } else { 1 };
                    let p = format!("layer{stage}.{i}");
                    let input = b.shape;
                    let mut body = vec![
                        b.conv(&format!("{p}.conv1"), planes, 3, stride, 1, 1, false)?,
                        b.bn(&format!("{p}.bn1")),
                        b.quadratic(&format!("{p}.relu")),
                        b.conv(&format!("{p}.conv2"), planes, 3, 1, 1, 1, false)?,
                        b.bn(&format!("{p}.bn2")),
                    ];
                    if se {
                        body.push(b.se(&format!("{p}.attn"))?);
                    }
                    let out = b.shape;
                    let mut shortcut = Vec::new();
                    if stride != 1 || in_planes != planes {
                        b.shape = input;
                        shortcut.push(b.conv(&format!("{p}.shortcut.0"), planes, 1, stride, 0, 1, false)?);
                        shortcut.push(b.bn(&format!("{p}.shortcut.1")));
                    }
                    if b.shape != out {
                        return Err(b.arch_error(format!("{p}: shortcut gives {:?}, body {out:?}", b.shape)));
                    }
                    layers.push(Layer::Residual { body, shortcut });
                    in_planes = planes;
                }
            }
            // F.avg_pool2d(out, out.size()[3]): a W x W window.
            let w = b.shape[2];
            layers.push(b.avg_pool(w, "avg_pool")?);
            layers.push(b.linear("linear", classes, true));
        }
        Arch::LeNet5 => {
            layers.push(b.conv("conv1", 32, 5, 1, 0, 1, true)?);
            layers.push(b.quadratic("relu1"));
            layers.push(b.avg_pool(2, "avgpool1")?);
            layers.push(b.conv("conv2", 64, 5, 1, 0, 4, true)?);
            layers.push(b.quadratic("relu2"));
            layers.push(b.avg_pool(2, "avgpool2")?);
            layers.push(b.conv("conv3", 128, 5, 1, 0, 1, true)?);
            if se {
                layers.push(b.se("attn")?);
            }
            layers.push(b.quadratic("relu3"));
            layers.push(b.global_pool());
            layers.push(b.linear("linear1", 64, true));
            layers.push(b.quadratic("relu4"));
            layers.push(b.linear("linear2", classes, true));
        }
        Arch::Vgg5 => {
            let acts = ["relu1", "relu2", "relu3", "relu4"];
            layers.push(b.conv("conv1", 32, 3, 1, 1, 1, false)?);
            layers.push(b.shared_quadratic(&acts, 0));
            layers.push(b.avg_pool(2, "avgpool1")?);
            layers.push(b.conv("conv2", 64, 3, 1, 1, 8, false)?);
            layers.push(b.shared_quadratic(&acts, 1));
            layers.push(b.avg_pool(2, "avgpool2")?);
            layers.push(b.conv("conv3", 128, 3, 1, 1, 8, false)?);
            // The reference applies relu2 here; the module is shared, so it is the same activation.
            layers.push(b.shared_quadratic(&acts, 1));
            layers.push(b.avg_pool(2, "avgpool3")?);
            layers.push(b.conv("conv4", 256, 3, 1, 1, 8, false)?);
            layers.push(b.shared_quadratic(&acts, 3));
            if se {
                layers.push(b.se("attn")?);
            }
            layers.push(b.avg_pool(2, "avgpool4")?);
            layers.push(b.linear("linear1", classes, false));
        }
        Arch::HefNet => {
            let acts = ["relu1", "relu2", "relu3", "relu4"];
            let conv4_kernel = if spec.latent().height() == 16 { 1 } else { 3 };
            layers.push(b.conv("conv1", 64, 3, 1, 0, 1, true)?);
            layers.push(b.bn("bn1"));
            layers.push(b.shared_quadratic(&acts, 0));
            layers.push(b.conv("conv2", 128, 3, 1, 0, 8, true)?);
            layers.push(b.bn("bn2"));
            layers.push(b.shared_quadratic(&acts, 1));
            layers.push(b.avg_pool(2, "avgpool1")?);
            layers.push(b.conv("conv3", 256, 3, 1, 0, 8, true)?);
            layers.push(b.bn("bn3"));
            layers.push(b.shared_quadratic(&acts, 2));
            layers.push(b.avg_pool(2, "avgpool2")?);
            layers.push(b.conv("conv4", 256, conv4_kernel, 1, 0, 8, true)?);
            layers.push(b.bn("bn4"));
            if se {
                layers.push(b.se("attn")?);
            }
            layers.push(b.shared_quadratic(&acts, 3));
            layers.push(b.avg_pool(2, "avgpool3")?);
            layers.push(b.linear("linear1", classes, true));
        }
    }
    Ok(layers)
}
