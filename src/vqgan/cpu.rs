//! The CPU backend of the VQGAN: the reference for every GPU kernel.
//! Convolutions are im2col plus `sgemm` (matrixmultiply) over chunks of
//! output pixels, in parallel with rayon; GroupNorm statistics are summed in
//! `f64`; attention runs over chunks of queries so the score matrix never
//! exceeds [`ATTENTION_QUERY_CHUNK`] rows.

use super::network::{ConvParams, NormParams};
use super::ops::NetOps;
use super::VqganError;
use ndarray::{Array4, ArrayView3, Axis};
use rayon::prelude::*;

/// GroupNorm's epsilon in taming.
pub const NORM_EPS: f64 = 1e-6;

/// Queries per block of the attention score matrix.
pub const ATTENTION_QUERY_CHUNK: usize = 256;

/// Output pixels per im2col block, at most (bounds the scratch memory to
/// `in_channels * k * k * 4096` floats per thread).
const MAX_CHUNK_PIXELS: usize = 4096;

/// The CPU backend; holds nothing (rayon's global pool does the work).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuOps;

/// `c (m x n, row-major, contiguous) = a * b`, where `a` and `b` are given as
/// slices with row and column strides.
///
/// # Panics
/// When a stride pattern would read outside a slice (a bug, not user input).
#[allow(clippy::too_many_arguments)]
fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    c: &mut [f32],
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(k == 0 || (last(m, k, rsa, csa) < a.len() && last(k, n, rsb, csb) < b.len()));
    assert!(c.len() >= m * n);
    // SAFETY: the asserts above keep every element the strides address
    // inside `a`, `b` and `c`; `c` is exclusively borrowed.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Pixels per parallel block for `pixels` outputs: enough blocks to keep
/// every thread busy, none larger than [`MAX_CHUNK_PIXELS`].
fn chunk_pixels(pixels: usize) -> usize {
    let blocks = 4 * rayon::current_num_threads();
    pixels.div_ceil(blocks).clamp(64, MAX_CHUNK_PIXELS)
}

/// The im2col block for output pixels `p0..p1` of one image: row
/// `(ci * k + ky) * k + kx`, column `p - p0`.
fn im2col(x: ArrayView3<'_, f32>, p: &ConvParams, out_w: usize, p0: usize, p1: usize) -> Vec<f32> {
    let (cin, h, w) = x.dim();
    let x = x.as_slice().expect("standard layout");
    let (k, s) = (p.kernel, p.stride);
    let np = p1 - p0;
    let mut col = vec![0.0f32; cin * k * k * np];
    for ci in 0..cin {
        let plane = &x[ci * h * w..(ci + 1) * h * w];
        for ky in 0..k {
            for kx in 0..k {
                let row = &mut col[((ci * k + ky) * k + kx) * np..][..np];
                for (dst, pix) in row.iter_mut().zip(p0..p1) {
                    let (oy, ox) = (pix / out_w, pix % out_w);
                    let iy = (oy * s + ky).wrapping_sub(p.padding.top);
                    let ix = (ox * s + kx).wrapping_sub(p.padding.left);
                    if iy < h && ix < w {
                        *dst = plane[iy * w + ix];
                    }
                }
            }
        }
    }
    col
}

/// One image's convolution for output pixels `p0..p1`: `out_channels x (p1 - p0)`.
fn conv_block(x: ArrayView3<'_, f32>, p: &ConvParams, out_w: usize, p0: usize, p1: usize) -> Vec<f32> {
    let (_, h, w) = x.dim();
    let kk = p.in_channels * p.kernel * p.kernel;
    let np = p1 - p0;
    let mut out = vec![0.0f32; p.out_channels * np];
    let pointwise = p.kernel == 1 && p.stride == 1 && p.padding == super::network::Padding::same(0);
    if pointwise {
        let xs = x.as_slice().expect("standard layout");
        sgemm(
            p.out_channels,
            kk,
            np,
            &p.weight,
            (kk, 1),
            &xs[p0..],
            (h * w, 1),
            &mut out,
        );
    } else {
        let col = im2col(x, p, out_w, p0, p1);
        sgemm(p.out_channels, kk, np, &p.weight, (kk, 1), &col, (np, 1), &mut out);
    }
    for (row, &b) in out.chunks_mut(np).zip(&p.bias) {
        row.iter_mut().for_each(|v| *v += b);
    }
    out
}

/// The convolution of a batch; the reference for the GPU kernel.
///
/// # Errors
/// [`VqganError::Shape`] when the channels do not match or nothing fits.
pub fn conv2d(x: &Array4<f32>, p: &ConvParams) -> Result<Array4<f32>, VqganError> {
    let (n, c, h, w) = x.dim();
    let shape_error = || VqganError::Shape {
        layer: p.name.clone(),
        found: vec![n, c, h, w],
        reason: format!(
            "expects {} channels and room for a {}x{} kernel",
            p.in_channels, p.kernel, p.kernel
        ),
    };
    if c != p.in_channels {
        return Err(shape_error());
    }
    let (oh, ow) = p.output_size(h, w).ok_or_else(shape_error)?;
    let x = x.as_standard_layout();
    let pixels = oh * ow;
    let step = chunk_pixels(pixels);
    let mut out = Array4::<f32>::zeros((n, p.out_channels, oh, ow));
    for (img, mut dst) in x.axis_iter(Axis(0)).zip(out.axis_iter_mut(Axis(0))) {
        let blocks: Vec<(usize, Vec<f32>)> = (0..pixels)
            .step_by(step)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|p0| {
                let p1 = (p0 + step).min(pixels);
                (p0, conv_block(img, p, ow, p0, p1))
            })
            .collect();
        let dst = dst.as_slice_mut().expect("fresh array");
        for (p0, block) in blocks {
            let np = block.len() / p.out_channels;
            for (co, row) in block.chunks(np).enumerate() {
                dst[co * pixels + p0..][..np].copy_from_slice(row);
            }
        }
    }
    Ok(out)
}

/// `x * sigmoid(x)`.
fn swish(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GroupNorm over 32 groups (mean and biased variance of each group's
/// channels and positions, summed in `f64`), the affine map, then swish.
///
/// # Errors
/// [`VqganError::Shape`] when the channels do not match.
pub fn group_norm(x: &Array4<f32>, p: &NormParams, apply_swish: bool) -> Result<Array4<f32>, VqganError> {
    let (n, c, h, w) = x.dim();
    if c != p.channels {
        return Err(VqganError::Shape {
            layer: p.name.clone(),
            found: vec![n, c, h, w],
            reason: format!("expects {} channels", p.channels),
        });
    }
    let groups = super::config::NORM_GROUPS;
    let per_group = (c / groups) * h * w;
    let mut out = x.as_standard_layout().into_owned();
    let data = out.as_slice_mut().expect("standard layout");
    data.par_chunks_mut(per_group).enumerate().for_each(|(index, chunk)| {
        let group = index % groups;
        let count = chunk.len() as f64;
        let mean = chunk.iter().map(|&v| f64::from(v)).sum::<f64>() / count;
        let var = chunk.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / count;
        let inv = 1.0 / (var + NORM_EPS).sqrt();
        for (i, plane) in chunk.chunks_mut(h * w).enumerate() {
            let ch = group * (c / groups) + i;
            let scale = (inv * f64::from(p.gamma[ch])) as f32;
            let shift = (f64::from(p.beta[ch]) - mean * inv * f64::from(p.gamma[ch])) as f32;
            for v in plane {
                let y = *v * scale + shift;
                *v = if apply_swish { swish(y) } else { y };
            }
        }
    });
    Ok(out)
}

/// Single-head attention of each image (see [`NetOps::attention`]), in
/// blocks of [`ATTENTION_QUERY_CHUNK`] queries with an exact softmax per row.
///
/// # Errors
/// [`VqganError::Shape`] when q, k and v differ in shape.
pub fn attention(q: &Array4<f32>, k: &Array4<f32>, v: &Array4<f32>) -> Result<Array4<f32>, VqganError> {
    if q.dim() != k.dim() || q.dim() != v.dim() {
        return Err(VqganError::Shape {
            layer: "attention".into(),
            found: q.shape().to_vec(),
            reason: format!("q, k and v differ: {:?}, {:?}, {:?}", q.shape(), k.shape(), v.shape()),
        });
    }
    let (n, c, h, w) = q.dim();
    let pixels = h * w;
    let scale = (c as f32).powf(-0.5);
    let (q, k, v) = (q.as_standard_layout(), k.as_standard_layout(), v.as_standard_layout());
    let image = |t: &'_ ndarray::CowArray<'_, f32, ndarray::Ix4>, b: usize| -> Vec<f32> {
        t.index_axis(Axis(0), b).iter().copied().collect()
    };
    let mut out = Array4::<f32>::zeros((n, c, h, w));
    for b in 0..n {
        let (qb, kb, vb) = (image(&q, b), image(&k, b), image(&v, b));
        let blocks: Vec<(usize, Vec<f32>)> = (0..pixels)
            .step_by(ATTENTION_QUERY_CHUNK)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|p0| {
                let m = ATTENTION_QUERY_CHUNK.min(pixels - p0);
                // scores (m x P) = q_block^T (m x C) * k (C x P)
                let mut scores = vec![0.0f32; m * pixels];
                sgemm(m, c, pixels, &qb[p0..], (1, pixels), &kb, (pixels, 1), &mut scores);
                for row in scores.chunks_mut(pixels) {
                    let max = row.iter().fold(f32::NEG_INFINITY, |a, &s| a.max(s * scale));
                    let mut sum = 0.0f32;
                    for s in row.iter_mut() {
                        *s = (*s * scale - max).exp();
                        sum += *s;
                    }
                    row.iter_mut().for_each(|s| *s /= sum);
                }
                // out block (C x m) = v (C x P) * scores^T (P x m)
                let mut block = vec![0.0f32; c * m];
                sgemm(c, pixels, m, &vb, (pixels, 1), &scores, (1, pixels), &mut block);
                (p0, block)
            })
            .collect();
        let mut dst = out.index_axis_mut(Axis(0), b);
        let dst = dst.as_slice_mut().expect("fresh array");
        for (p0, block) in blocks {
            let m = block.len() / c;
            for (ch, row) in block.chunks(m).enumerate() {
                dst[ch * pixels + p0..][..m].copy_from_slice(row);
            }
        }
    }
    Ok(out)
}

/// Nearest-neighbour 2x upsampling.
pub fn upsample_nearest(x: &Array4<f32>) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    Array4::from_shape_fn((n, c, 2 * h, 2 * w), |(b, ch, y, xx)| x[[b, ch, y / 2, xx / 2]])
}

impl NetOps for CpuOps {
    type Tensor = Array4<f32>;
    type Conv = ConvParams;
    type Norm = NormParams;
    type Error = VqganError;

    fn upload(&self, x: Array4<f32>) -> Result<Array4<f32>, VqganError> {
        Ok(x)
    }

    fn download(&self, x: &Array4<f32>) -> Result<Array4<f32>, VqganError> {
        Ok(x.clone())
    }

    fn conv2d(&self, x: &Array4<f32>, conv: &ConvParams) -> Result<Array4<f32>, VqganError> {
        conv2d(x, conv)
    }

    fn group_norm(&self, x: &Array4<f32>, norm: &NormParams, swish: bool) -> Result<Array4<f32>, VqganError> {
        group_norm(x, norm, swish)
    }

    fn add(&self, mut a: Array4<f32>, b: &Array4<f32>) -> Result<Array4<f32>, VqganError> {
        if a.dim() != b.dim() {
            return Err(VqganError::Shape {
                layer: "add".into(),
                found: a.shape().to_vec(),
                reason: format!("cannot add {:?}", b.shape()),
            });
        }
        a += b;
        Ok(a)
    }

    fn attention(&self, q: &Array4<f32>, k: &Array4<f32>, v: &Array4<f32>) -> Result<Array4<f32>, VqganError> {
        attention(q, k, v)
    }

    fn upsample_nearest(&self, x: &Array4<f32>) -> Result<Array4<f32>, VqganError> {
        Ok(upsample_nearest(x))
    }
}

/// The nearest codebook row to each position of `z` (`N x D x H x W`, `D`
/// the codebook's row length), by `|z|^2 + |e|^2 - 2 z.e` as taming
/// computes it, the first minimum on ties. Returns the quantized batch
/// (same shape) and the indices (`N x H x W`, row-major).
///
/// # Errors
/// [`VqganError::Shape`] when `D` is not the codebook's row length.
pub fn quantize(z: &Array4<f32>, codebook: &[f32], dim: usize) -> Result<(Array4<f32>, Vec<usize>), VqganError> {
    let (n, d, h, w) = z.dim();
    if d != dim || dim == 0 || !codebook.len().is_multiple_of(dim) {
        return Err(VqganError::Shape {
            layer: "quantize".into(),
            found: vec![n, d, h, w],
            reason: format!("the codebook's vectors have {dim} entries"),
        });
    }
    let entries = codebook.len() / dim;
    let norms: Vec<f32> = codebook.chunks(dim).map(|e| e.iter().map(|v| v * v).sum()).collect();
    let pixels = h * w;
    let z = z.as_standard_layout();
    let mut out = Array4::<f32>::zeros((n, d, h, w));
    let mut indices = Vec::with_capacity(n * pixels);
    for b in 0..n {
        let zb: Vec<f32> = z.index_axis(Axis(0), b).iter().copied().collect();
        // dots (P x E) = z^T (P x D) * codebook^T (D x E)
        let mut dots = vec![0.0f32; pixels * entries];
        sgemm(pixels, d, entries, &zb, (1, pixels), codebook, (1, dim), &mut dots);
        let mut dst = out.index_axis_mut(Axis(0), b);
        for (p, row) in dots.chunks(entries).enumerate() {
            let zn: f32 = (0..d).map(|i| zb[i * pixels + p] * zb[i * pixels + p]).sum();
            let best = row
                .iter()
                .zip(&norms)
                .map(|(&dot, &en)| zn + en - 2.0 * dot)
                .enumerate()
                .fold(
                    (0, f32::INFINITY),
                    |best, (i, dist)| if dist < best.1 { (i, dist) } else { best },
                )
                .0;
            indices.push(best);
            for (i, &e) in codebook[best * dim..(best + 1) * dim].iter().enumerate() {
                dst[[i, p / w, p % w]] = e;
            }
        }
    }
    Ok((out, indices))
}
