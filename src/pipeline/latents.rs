//! Reading latents and other arrays from `.npy` files: float32 or float64,
//! every value finite.

use super::PipelineError;
use ndarray::Array4;
use std::path::Path;

/// Reads a float32 or float64 `.npy` file as f64 values with their shape
/// (its declared size checked before anything is allocated: [`crate::npy`]).
pub fn read_npy_f64(path: &Path) -> Result<(Vec<usize>, Vec<f64>), PipelineError> {
    let array = crate::npy::read_npy(path)
        .map_err(|e| PipelineError::Input {
            path: path.display().to_string(),
            reason: format!("not a float32/float64 .npy array ({e})"),
        })?
        .into_f64();
    let shape = array.shape().to_vec();
    // Row-major arrays give up their buffer (no copy of a large array).
    let values: Vec<f64> = if array.is_standard_layout() {
        let (values, offset) = array.into_raw_vec_and_offset();
        debug_assert!(offset.is_none_or(|o| o == 0));
        values
    } else {
        array.iter().copied().collect()
    };
    if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(PipelineError::Input {
            path: path.display().to_string(),
            reason: format!("element {i} is not finite ({v})"),
        });
    }
    Ok((shape, values))
}

/// Reads latents from a `.npy` array, `C x H x W` (one image) or
/// `B x C x H x W`.
///
/// # Errors
/// Unreadable or non-finite arrays, other ranks.
pub fn read_latents(path: &Path) -> Result<Array4<f64>, PipelineError> {
    let (shape, values) = read_npy_f64(path)?;
    let input_err = |reason: String| PipelineError::Input {
        path: path.display().to_string(),
        reason,
    };
    let dims = match shape.as_slice() {
        [c, h, w] => [1, *c, *h, *w],
        [b, c, h, w] => [*b, *c, *h, *w],
        _ => return Err(input_err(format!("shape {shape:?} is neither CxHxW nor BxCxHxW"))),
    };
    Array4::from_shape_vec(dims, values).map_err(|e| input_err(e.to_string()))
}
