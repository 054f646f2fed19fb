//! The reference code's preprocessing (taming-transformers' `ImagePaths` with
//! albumentations 2.0.8 and OpenCV), reproduced bit for bit on 8-bit samples:
//!
//! 1. grey to three equal channels (RGB stays RGB);
//! 2. `SmallestMaxSize(max_size=size)`: with `scale = size / min(H, W)` (f64),
//!    the new sides are `max(1, round(H * scale))` and
//!    `max(1, round(W * scale))`, Python's `round` (ties to even); the image is
//!    left alone when both sides are unchanged, else resized with
//!    `cv2.resize(..., interpolation=cv2.INTER_LINEAR)` on uint8;
//! 3. `CenterCrop(size, size)`: offsets `(H' - size) // 2`, `(W' - size) // 2`;
//! 4. `(x / 127.5 - 1).astype(np.float32)` (computed in f64, rounded to f32).
//!
//! OpenCV's INTER_LINEAR on uint8, as measured against cv2 5.0 (exact on
//! thousands of random sizes, up- and downscaling, 1 and 3 channels):
//! - when the source is exactly twice the destination on both axes, it is
//!   INTER_AREA instead: each output is `(a + b + c + d + 2) >> 2` over its
//!   2x2 block;
//! - otherwise, per output coordinate `d`, `f = (float)((d + 0.5) * s - 0.5)`
//!   with `s = 1 / (dst / src)` in f64, `i = floor(f)`, `t = f - i` (f32), and
//!   weights `w0 = rne(2048 (1 - t))`, `w1 = rne(2048 t)` (11 fractional bits,
//!   rounded half to even). Horizontally, `i < 0` becomes `i = 0, t = 0` and
//!   `i >= src - 1` becomes `i = src - 1, t = 0`; vertically `t` is kept and
//!   only the row indices `i`, `i + 1` are clamped into the image. A row pass
//!   makes `S = w0 p[i] + w1 p[i + 1]`, then the column pass gives
//!   `((v0 (S0 >> 4)) >> 16) + ((v1 (S1 >> 4)) >> 16) + 2) >> 2` (the
//!   precision OpenCV's vector code uses, which its scalar code matches).
//!
//! Only the pixels the crop keeps are computed, so a very elongated image
//! costs no more than its crop.

use super::Image8;
use ndarray::{Array2, Array3, ArrayView2, Axis};
use std::num::NonZeroUsize;
use std::ops::Range;

/// The side of the VQGAN's input in the paper (256).
pub const PAPER_SIZE: NonZeroUsize = NonZeroUsize::new(256).expect("256 > 0");

/// Fractional bits of OpenCV's fixed-point resize weights
/// (`INTER_RESIZE_COEF_BITS`).
const COEF_BITS: u32 = 11;

/// The preprocessed image before scaling to [-1, 1]: 3 x `size` x `size`
/// (channels, rows, columns) uint8, equal to what albumentations'
/// `SmallestMaxSize(size)` then `CenterCrop(size, size)` give on the image
/// made 3-channel. An RGB image keeps its channel order.
pub fn preprocess_u8(image: &Image8, size: NonZeroUsize) -> Array3<u8> {
    let size = size.get();
    let dst = resized_sides(image.height(), image.width(), size);
    let (rows, cols) = (crop_range(dst.0, size), crop_range(dst.1, size));
    let pixels = image.pixels();
    let planes: Vec<Array2<u8>> = pixels
        .axis_iter(Axis(2))
        .map(|channel| resize_crop(channel, dst, &rows, &cols))
        .collect();
    Array3::from_shape_fn((3, size, size), |(c, y, x)| planes[c % planes.len()][(y, x)])
}

/// The VQGAN's input: [`preprocess_u8`] with each sample `x` mapped to
/// `x / 127.5 - 1` (in f64, then rounded to f32, as NumPy does). Shape
/// 3 x `size` x `size`, values in [-1, 1].
pub fn preprocess(image: &Image8, size: NonZeroUsize) -> Array3<f32> {
    preprocess_u8(image, size).mapv(|x| (f64::from(x) / 127.5 - 1.0) as f32)
}

/// The sides after `SmallestMaxSize(size)`; the smaller one is `size`.
fn resized_sides(h: usize, w: usize, size: usize) -> (usize, usize) {
    let scale = size as f64 / h.min(w) as f64;
    let side = |n: usize| ((n as f64 * scale).round_ties_even() as usize).max(1);
    (side(h), side(w))
}

/// The `size` indices `CenterCrop` keeps of `n >= size`.
fn crop_range(n: usize, size: usize) -> Range<usize> {
    let start = n.saturating_sub(size) / 2;
    start..start + size
}

/// One output row or column of a resize: two source indices, two weights
/// summing to `1 << COEF_BITS`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tap {
    i0: usize,
    i1: usize,
    w0: i32,
    w1: i32,
}

/// OpenCV's INTER_LINEAR taps for outputs `range` of a `src` -> `dst` resize;
/// `clamp_weight` is the horizontal rule (out-of-image taps lose their
/// fraction), else only the indices are clamped (the vertical rule).
fn taps(src: usize, dst: usize, range: &Range<usize>, clamp_weight: bool) -> Vec<Tap> {
    let scale = 1.0 / (dst as f64 / src as f64);
    let one = (1 << COEF_BITS) as f32;
    let last = src as i64 - 1;
    range
        .clone()
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut i = f.floor() as i64;
            let mut t = f - i as f32;
            if clamp_weight && i < 0 {
                (i, t) = (0, 0.0);
            }
            if clamp_weight && i >= last {
                (i, t) = (last, 0.0);
            }
            Tap {
                i0: i.clamp(0, last) as usize,
                i1: (i + 1).clamp(0, last) as usize,
                w0: ((1.0 - t) * one).round_ties_even() as i32,
                w1: (t * one).round_ties_even() as i32,
            }
        })
        .collect()
}

/// One channel resized to `dst` = (rows, columns) as `cv2.resize` with
/// INTER_LINEAR does it, only the rows and columns of the crop computed.
fn resize_crop(src: ArrayView2<'_, u8>, dst: (usize, usize), rows: &Range<usize>, cols: &Range<usize>) -> Array2<u8> {
    let (h, w) = src.dim();
    if (h, w) == dst {
        return src.slice(ndarray::s![rows.clone(), cols.clone()]).to_owned();
    }
    if h == 2 * dst.0 && w == 2 * dst.1 {
        return Array2::from_shape_fn((rows.len(), cols.len()), |(r, c)| {
            let (y, x) = (2 * (rows.start + r), 2 * (cols.start + c));
            let sum: u32 = [src[(y, x)], src[(y, x + 1)], src[(y + 1, x)], src[(y + 1, x + 1)]]
                .iter()
                .map(|&p| u32::from(p))
                .sum();
            ((sum + 2) >> 2) as u8
        });
    }
    let xt = taps(w, dst.1, cols, true);
    let yt = taps(h, dst.0, rows, false);
    let row_pass = |y: usize| -> Vec<i32> {
        let row = src.row(y);
        xt.iter()
            .map(|t| i32::from(row[t.i0]) * t.w0 + i32::from(row[t.i1]) * t.w1)
            .collect()
    };
    let mut out = Array2::zeros((rows.len(), cols.len()));
    for (mut line, t) in out.outer_iter_mut().zip(&yt) {
        let (s0, s1) = (row_pass(t.i0), row_pass(t.i1));
        for ((o, a), b) in line.iter_mut().zip(&s0).zip(&s1) {
            let v = (((t.w0 * (a >> 4)) >> 16) + ((t.w1 * (b >> 4)) >> 16) + 2) >> 2;
            *o = v.clamp(0, 255) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_follow_python_round() {
        // 256 / 49 * 49 = 255.99999999999997: truncation would give 255.
        assert_eq!(resized_sides(49, 99, 256), (256, 517));
        // 701 * 0.5 = 350.5 rounds to the even 350.
        assert_eq!(resized_sides(512, 701, 256), (256, 350));
        assert_eq!(resized_sides(1000, 37, 256), (6919, 256));
        assert_eq!(resized_sides(1, 100_000, 4), (4, 400_000));
    }

    #[test]
    fn crop_keeps_the_floor_centred_window() {
        assert_eq!(crop_range(373, 256), 58..314);
        assert_eq!(crop_range(256, 256), 0..256);
    }

    #[test]
    fn horizontal_and_vertical_taps_differ_only_at_borders() {
        let h = taps(2, 4, &(0..4), true);
        let v = taps(2, 4, &(0..4), false);
        // f = -0.25: horizontal drops the fraction, vertical keeps it.
        assert_eq!(
            h[0],
            Tap {
                i0: 0,
                i1: 1,
                w0: 2048,
                w1: 0
            }
        );
        assert_eq!(
            v[0],
            Tap {
                i0: 0,
                i1: 0,
                w0: 512,
                w1: 1536
            }
        );
        assert_eq!(h[1], v[1]);
        assert_eq!(
            h[1],
            Tap {
                i0: 0,
                i1: 1,
                w0: 1536,
                w1: 512
            }
        );
    }
}
