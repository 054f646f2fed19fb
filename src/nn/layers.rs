//! Layers and their batched forward passes on `B x C x H x W` arrays in
//! standard (row-major) layout. Shapes are checked when a model is built
//! (see [`super::model`]); the passes here assume them.

use super::Real;
use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, Array4, ArrayView2, ArrayViewMut2, Axis};

/// A 2-D convolution with a square kernel, PyTorch semantics (`nn.Conv2d`:
/// zero padding on every side, floor division for the output size, groups).
///
/// Invariants: `in_channels` and `out_channels` are multiples of `groups`;
/// `weight` has shape `[out, in / groups, k, k]`; `bias`, if any, has `out`
/// entries; `kernel`, `stride` >= 1.
#[derive(Clone, Debug)]
pub struct Conv2d<T> {
    name: String,
    geometry: ConvGeometry,
    weight: Array4<T>,
    bias: Option<Array1<T>>,
}

/// Geometry of a convolution, given to [`Conv2d::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel side.
    pub kernel: usize,
    /// Stride (both axes).
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
    /// Channel groups.
    pub groups: usize,
}

impl ConvGeometry {
    /// Output `(H, W)` for an input of `(h, w)`, or `None` when the padded
    /// input is smaller than the kernel.
    pub fn output_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let (hp, wp) = (h + 2 * self.padding, w + 2 * self.padding);
        if hp < self.kernel || wp < self.kernel || self.stride == 0 {
            return None;
        }
        Some((
            (hp - self.kernel) / self.stride + 1,
            (wp - self.kernel) / self.stride + 1,
        ))
    }
}

impl<T: Real> Conv2d<T> {
    /// A convolution; returns `None` when the invariants above do not hold.
    pub fn new(name: impl Into<String>, g: ConvGeometry, weight: Array4<T>, bias: Option<Array1<T>>) -> Option<Self> {
        let ok = g.groups >= 1
            && g.kernel >= 1
            && g.stride >= 1
            && g.in_channels.is_multiple_of(g.groups)
            && g.out_channels.is_multiple_of(g.groups)
            && weight.dim() == (g.out_channels, g.in_channels / g.groups, g.kernel, g.kernel)
            && bias.as_ref().is_none_or(|b| b.len() == g.out_channels);
        ok.then(|| Conv2d {
            name: name.into(),
            geometry: g,
            weight: weight.as_standard_layout().into_owned(),
            bias,
        })
    }

    /// The PyTorch module name (`layer1.0.conv1`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The geometry.
    pub fn geometry(&self) -> ConvGeometry {
        self.geometry
    }

    /// Weights `[out, in / groups, k, k]`.
    pub fn weight(&self) -> &Array4<T> {
        &self.weight
    }

    /// Bias, one per output channel, if the layer has one.
    pub fn bias(&self) -> Option<&Array1<T>> {
        self.bias.as_ref()
    }

    pub(crate) fn weight_mut(&mut self) -> &mut Array4<T> {
        &mut self.weight
    }

    pub(crate) fn bias_mut(&mut self) -> &mut Option<Array1<T>> {
        &mut self.bias
    }

    pub(crate) fn cast<U: Real>(&self) -> Conv2d<U> {
        Conv2d {
            name: self.name.clone(),
            geometry: self.geometry,
            weight: self.weight.mapv(|v| U::from_f64(v.to_f64())),
            bias: self.bias.as_ref().map(|b| b.mapv(|v| U::from_f64(v.to_f64()))),
        }
    }

    /// The convolution of a batch, by im2col and one GEMM per (image, group).
    ///
    /// # Panics
    /// Unless `x` has `in_channels` channels and is at least the kernel's
    /// size after padding (guaranteed inside a model).
    pub fn forward(&self, x: &Array4<T>) -> Array4<T> {
        let (b, c, h, w) = x.dim();
        debug_assert_eq!(c, self.geometry.in_channels);
        let (ho, wo) = self.geometry().output_hw(h, w).unwrap_or((0, 0));
        let (cin_g, cout_g) = (
            self.geometry.in_channels / self.geometry.groups,
            self.geometry.out_channels / self.geometry.groups,
        );
        let k = self.geometry.kernel;
        let rows = cin_g * k * k;
        let n = ho * wo;
        let zero = T::from_f64(0.0);
        let one = T::from_f64(1.0);
        let xs = standard_slice(x);
        let mut out = vec![zero; b * self.geometry.out_channels * n];
        let w2 = self
            .weight
            .view()
            .into_shape_with_order((self.geometry.out_channels, rows))
            .expect("weight is standard layout");
        let direct = k == 1 && self.geometry.stride == 1 && self.geometry.padding == 0;
        let mut col = if direct { Vec::new() } else { vec![zero; rows * n] };
        for bi in 0..b {
            for gi in 0..self.geometry.groups {
                let input = &xs[(bi * c + gi * cin_g) * h * w..(bi * c + (gi + 1) * cin_g) * h * w];
                let cols = if direct {
                    ArrayView2::from_shape((rows, n), input).expect("1x1 input is [cin, h*w]")
                } else {
                    self.im2col(input, h, w, ho, wo, &mut col);
                    ArrayView2::from_shape((rows, n), &col[..]).expect("col is [rows, n]")
                };
                let start = (bi * self.geometry.out_channels + gi * cout_g) * n;
                let mut dst = ArrayViewMut2::from_shape((cout_g, n), &mut out[start..start + cout_g * n])
                    .expect("output block is [cout_g, n]");
                let wg = w2.slice(ndarray::s![gi * cout_g..(gi + 1) * cout_g, ..]);
                general_mat_mul(one, &wg, &cols, zero, &mut dst);
            }
            if let Some(bias) = &self.bias {
                for (co, &bv) in bias.iter().enumerate() {
                    let start = (bi * self.geometry.out_channels + co) * n;
                    out[start..start + n].iter_mut().for_each(|v| *v = *v + bv);
                }
            }
        }
        Array4::from_shape_vec((b, self.geometry.out_channels, ho, wo), out).expect("output length matches")
    }

    /// Fills `col` (`[cin_g * k * k, ho * wo]`) with the input patches:
    /// row `(ci * k + ki) * k + kj`, column `oh * wo + ow` holds
    /// `input[ci][oh * s + ki - p][ow * s + kj - p]`, zero outside.
    fn im2col(&self, input: &[T], h: usize, w: usize, ho: usize, wo: usize, col: &mut [T]) {
        let (k, s, p) = (self.geometry.kernel, self.geometry.stride, self.geometry.padding);
        let zero = T::from_f64(0.0);
        let n = ho * wo;
        let cin_g = input.len() / (h * w);
        for ci in 0..cin_g {
            let plane = &input[ci * h * w..(ci + 1) * h * w];
            for ki in 0..k {
                for kj in 0..k {
                    let row = (ci * k + ki) * k + kj;
                    let dst = &mut col[row * n..(row + 1) * n];
                    // Output columns whose input column `ow * s + kj - p` is inside [0, w).
                    let ow_lo = (p.saturating_sub(kj)).div_ceil(s).min(wo);
                    let ow_hi = if w + p > kj {
                        (w + p - kj).div_ceil(s).min(wo)
                    } else {
                        0
                    }
                    .max(ow_lo);
                    for oh in 0..ho {
                        let d = &mut dst[oh * wo..(oh + 1) * wo];
                        let ih = (oh * s + ki) as isize - p as isize;
                        if ih < 0 || ih >= h as isize {
                            d.fill(zero);
                            continue;
                        }
                        let src = &plane[ih as usize * w..(ih as usize + 1) * w];
                        d[..ow_lo].fill(zero);
                        d[ow_hi..].fill(zero);
                        if ow_hi > ow_lo {
                            let iw0 = ow_lo * s + kj - p;
                            if s == 1 {
                                d[ow_lo..ow_hi].copy_from_slice(&src[iw0..iw0 + (ow_hi - ow_lo)]);
                            } else {
                                for (j, v) in d[ow_lo..ow_hi].iter_mut().enumerate() {
                                    *v = src[iw0 + j * s];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Batch norm in eval mode: `(x - mean) / sqrt(var + eps) * gamma + beta`
/// per channel, with the running statistics.
///
/// Invariants: the four vectors have the same length (the channel count);
/// `var + eps > 0`, so the per-channel `scale` and `shift` are finite.
#[derive(Clone, Debug)]
pub struct BatchNorm<T> {
    name: String,
    gamma: Array1<T>,
    beta: Array1<T>,
    mean: Array1<T>,
    var: Array1<T>,
    eps: f64,
    scale: Array1<T>,
    shift: Array1<T>,
}

/// PyTorch's `nn.BatchNorm2d` default epsilon.
pub const BN_EPS: f64 = 1e-5;

impl<T: Real> BatchNorm<T> {
    /// A batch norm; `None` when the lengths differ or some `var + eps <= 0`.
    pub fn new(
        name: impl Into<String>,
        gamma: Array1<T>,
        beta: Array1<T>,
        mean: Array1<T>,
        var: Array1<T>,
        eps: f64,
    ) -> Option<Self> {
        let c = gamma.len();
        if beta.len() != c || mean.len() != c || var.len() != c || var.iter().any(|v| v.to_f64() + eps <= 0.0) {
            return None;
        }
        let (scale, shift) = affine(&gamma, &beta, &mean, &var, eps);
        Some(BatchNorm {
            name: name.into(),
            gamma,
            beta,
            mean,
            var,
            eps,
            scale,
            shift,
        })
    }

    /// The PyTorch module name (`bn1`, `layer1.0.bn2`, `layer2.0.shortcut.1`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `(gamma, beta, running_mean, running_var, eps)`.
    pub fn params(&self) -> (&Array1<T>, &Array1<T>, &Array1<T>, &Array1<T>, f64) {
        (&self.gamma, &self.beta, &self.mean, &self.var, self.eps)
    }

    /// The per-channel affine map this layer is: `y = scale * x + shift`,
    /// computed in f64 then rounded.
    pub fn scale_shift(&self) -> (&Array1<T>, &Array1<T>) {
        (&self.scale, &self.shift)
    }

    pub(crate) fn cast<U: Real>(&self) -> BatchNorm<U> {
        let c = |a: &Array1<T>| a.mapv(|v| U::from_f64(v.to_f64()));
        let (gamma, beta, mean, var) = (c(&self.gamma), c(&self.beta), c(&self.mean), c(&self.var));
        let (scale, shift) = affine(&gamma, &beta, &mean, &var, self.eps);
        BatchNorm {
            name: self.name.clone(),
            gamma,
            beta,
            mean,
            var,
            eps: self.eps,
            scale,
            shift,
        }
    }

    pub(crate) fn forward(&self, mut x: Array4<T>) -> Array4<T> {
        for mut image in x.outer_iter_mut() {
            for (ci, mut plane) in image.outer_iter_mut().enumerate() {
                let (s, t) = (self.scale[ci], self.shift[ci]);
                plane.mapv_inplace(|v| v * s + t);
            }
        }
        x
    }
}

fn affine<T: Real>(g: &Array1<T>, b: &Array1<T>, m: &Array1<T>, v: &Array1<T>, eps: f64) -> (Array1<T>, Array1<T>) {
    let n = g.len();
    let mut scale = Array1::from_elem(n, T::from_f64(0.0));
    let mut shift = scale.clone();
    for i in 0..n {
        let s = g[i].to_f64() / (v[i].to_f64() + eps).sqrt();
        scale[i] = T::from_f64(s);
        shift[i] = T::from_f64(b[i].to_f64() - m[i].to_f64() * s);
    }
    (scale, shift)
}

/// A fully connected layer `y = W x + b` on the flattened input (`C*H*W`
/// in row-major order, as PyTorch's `view(B, -1)`); the output is
/// `B x out x 1 x 1`.
///
/// Invariants: `weight` is `[out, in]`; `bias`, if any, has `out` entries.
#[derive(Clone, Debug)]
pub struct Linear<T> {
    name: String,
    weight: Array2<T>,
    bias: Option<Array1<T>>,
}

impl<T: Real> Linear<T> {
    /// A linear layer; `None` when the bias length differs from the rows.
    pub fn new(name: impl Into<String>, weight: Array2<T>, bias: Option<Array1<T>>) -> Option<Self> {
        if bias.as_ref().is_some_and(|b| b.len() != weight.nrows()) {
            return None;
        }
        Some(Linear {
            name: name.into(),
            weight: weight.as_standard_layout().into_owned(),
            bias,
        })
    }

    /// The PyTorch module name (`linear`, `layer1.0.attn.linear1`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Weights `[out, in]`.
    pub fn weight(&self) -> &Array2<T> {
        &self.weight
    }

    /// Bias, if the layer has one.
    pub fn bias(&self) -> Option<&Array1<T>> {
        self.bias.as_ref()
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.weight.nrows()
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.weight.ncols()
    }

    pub(crate) fn weight_mut(&mut self) -> &mut Array2<T> {
        &mut self.weight
    }

    pub(crate) fn bias_mut(&mut self) -> &mut Option<Array1<T>> {
        &mut self.bias
    }

    pub(crate) fn cast<U: Real>(&self) -> Linear<U> {
        Linear {
            name: self.name.clone(),
            weight: self.weight.mapv(|v| U::from_f64(v.to_f64())),
            bias: self.bias.as_ref().map(|b| b.mapv(|v| U::from_f64(v.to_f64()))),
        }
    }

    pub(crate) fn forward(&self, x: &Array4<T>) -> Array4<T> {
        let b = x.dim().0;
        let xs = standard_slice(x);
        let x2 = ArrayView2::from_shape((b, self.in_features()), xs).expect("flattened input matches in_features");
        let zero = T::from_f64(0.0);
        let mut out = Array2::from_elem((b, self.out_features()), zero);
        general_mat_mul(T::from_f64(1.0), &x2, &self.weight.t(), zero, &mut out);
        if let Some(bias) = &self.bias {
            for mut row in out.rows_mut() {
                row.zip_mut_with(bias, |a, &b| *a = *a + b);
            }
        }
        let o = self.out_features();
        out.into_shape_with_order((b, o, 1, 1)).expect("standard layout")
    }
}

/// A polynomial activation `sum_k coeffs[k] * x^k`, element-wise.
///
/// The reference's `polynom_act` (`alpha*x^2 + beta*x + c`) is degree 2
/// with coefficients `[c, beta, alpha]`; `approxSigmoid`
/// (`alpha*x^3 + beta*x + c`) is degree 3 with `[c, beta, 0, alpha]`.
/// Invariant: `coeffs.len() == degree + 1`, degree 2 or 3.
#[derive(Clone, Debug)]
pub struct Activation<T> {
    name: String,
    coeffs: Vec<T>,
}

impl<T: Real> Activation<T> {
    /// An activation of degree `coeffs.len() - 1`; `None` unless that is 2 or 3.
    pub fn new(name: impl Into<String>, coeffs: Vec<T>) -> Option<Self> {
        matches!(coeffs.len(), 3 | 4).then(|| Activation {
            name: name.into(),
            coeffs,
        })
    }

    /// The PyTorch module name (`relu`, `layer1.0.relu`, `layer1.0.attn.sigmoid`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Coefficients, constant term first.
    pub fn coeffs(&self) -> &[T] {
        &self.coeffs
    }

    /// The degree (2 or 3).
    pub fn degree(&self) -> usize {
        self.coeffs.len() - 1
    }

    pub(crate) fn coeffs_mut(&mut self) -> &mut [T] {
        &mut self.coeffs
    }

    pub(crate) fn cast<U: Real>(&self) -> Activation<U> {
        Activation {
            name: self.name.clone(),
            coeffs: self.coeffs.iter().map(|v| U::from_f64(v.to_f64())).collect(),
        }
    }

    pub(crate) fn forward(&self, mut x: Array4<T>) -> Array4<T> {
        let c = &self.coeffs;
        match c.len() {
            3 => {
                let (c0, c1, c2) = (c[0], c[1], c[2]);
                x.mapv_inplace(|v| (c2 * v + c1) * v + c0);
            }
            _ => {
                let (c0, c1, c2, c3) = (c[0], c[1], c[2], c[3]);
                x.mapv_inplace(|v| ((c3 * v + c2) * v + c1) * v + c0);
            }
        }
        x
    }
}

/// Average pooling over `k x k` windows with stride `k`, no padding, floor
/// mode (trailing rows and columns that do not fill a window are dropped),
/// times `scale`: `1 / k^2` for an average, `1` for a plain sum once folding
/// has moved the factor into the next layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AvgPool {
    kernel: usize,
    scale: f64,
}

impl AvgPool {
    /// An average pool (`scale = 1 / k^2`); `kernel` >= 1.
    pub fn average(kernel: usize) -> Self {
        let kernel = kernel.max(1);
        AvgPool {
            kernel,
            scale: 1.0 / (kernel * kernel) as f64,
        }
    }

    /// The window side (and stride).
    pub fn kernel(&self) -> usize {
        self.kernel
    }

    /// The factor applied to each window's sum.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    pub(crate) fn set_scale(&mut self, scale: f64) {
        self.scale = scale;
    }

    pub(crate) fn forward<T: Real>(&self, x: &Array4<T>) -> Array4<T> {
        let (b, c, h, w) = x.dim();
        let k = self.kernel;
        let (ho, wo) = (h / k, w / k);
        let s = T::from_f64(self.scale);
        let zero = T::from_f64(0.0);
        let mut out = Array4::from_elem((b, c, ho, wo), zero);
        for (src, mut dst) in x.outer_iter().zip(out.outer_iter_mut()) {
            for (sp, mut dp) in src.outer_iter().zip(dst.outer_iter_mut()) {
                for oh in 0..ho {
                    for ow in 0..wo {
                        let mut acc = zero;
                        for i in 0..k {
                            for j in 0..k {
                                acc = acc + sp[[oh * k + i, ow * k + j]];
                            }
                        }
                        dp[[oh, ow]] = acc * s;
                    }
                }
            }
        }
        out
    }
}

/// Mean over all positions of each channel: `B x C x H x W -> B x C x 1 x 1`.
pub(crate) fn global_avg_pool<T: Real>(x: &Array4<T>) -> Array4<T> {
    let (b, c, h, w) = x.dim();
    let inv = T::from_f64(1.0 / (h * w) as f64);
    let zero = T::from_f64(0.0);
    let mut out = Array4::from_elem((b, c, 1, 1), zero);
    for (bi, image) in x.outer_iter().enumerate() {
        for (ci, plane) in image.axis_iter(Axis(0)).enumerate() {
            out[[bi, ci, 0, 0]] = plane.iter().fold(zero, |a, &v| a + v) * inv;
        }
    }
    out
}

/// The array's elements in row-major order; every array built by this
/// module is in standard layout.
fn standard_slice<T>(x: &Array4<T>) -> &[T] {
    x.as_slice().expect("arrays built by nn are in standard layout")
}
