//! PyTorch state dicts stored as safetensors: named tensors plus string
//! metadata. Values are held as `f64` whatever the file's dtype.

use super::NnError;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Largest weights file read: 4 GiB, several times the largest VQGAN
/// checkpoint this engine runs (a model file is read whole into memory).
pub const MAX_WEIGHTS_BYTES: u64 = 4 << 30;

/// One named tensor's values in row-major order.
///
/// Invariant: `data.len()` is the product of `shape` (1 for shape `[]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f64>,
}

impl Tensor {
    /// A tensor of this shape holding `data` in row-major order.
    ///
    /// # Errors
    /// [`NnError::TensorSize`] (named `<new>`) when the length does not fit the shape.
    pub fn new(shape: Vec<usize>, data: Vec<f64>) -> Result<Self, NnError> {
        if shape.iter().product::<usize>() != data.len() {
            return Err(NnError::TensorSize {
                name: "<new>".into(),
                shape,
                len: data.len(),
            });
        }
        Ok(Tensor { shape, data })
    }

    /// The shape (`[]` for a scalar).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values, row-major.
    pub fn data(&self) -> &[f64] {
        &self.data
    }

    /// The values, row-major, for changing in place (the shape stays).
    pub fn data_mut(&mut self) -> &mut [f64] {
        &mut self.data
    }
}

/// How [`StateDict::to_safetensors`] stores values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreDtype {
    /// 32-bit floats (what PyTorch saves by default); rounds to nearest.
    F32,
    /// 64-bit floats; exact.
    F64,
}

/// Named tensors and string metadata, as in a safetensors file.
///
/// Names are unique (a map); order is by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StateDict {
    tensors: BTreeMap<String, Tensor>,
    metadata: BTreeMap<String, String>,
}

impl StateDict {
    /// An empty state dict.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a safetensors buffer. Float tensors (F64, F32, F16, BF16) and
    /// integer tensors (such as batch norm's `num_batches_tracked`) are
    /// converted to `f64`.
    ///
    /// # Errors
    /// [`NnError::Safetensors`] for a malformed file, [`NnError::Dtype`] for
    /// a tensor of another type (bool, fp8, complex, ...).
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self, NnError> {
        let parsed = SafeTensors::deserialize(bytes).map_err(|e| NnError::Safetensors { reason: e.to_string() })?;
        let (_, header) =
            SafeTensors::read_metadata(bytes).map_err(|e| NnError::Safetensors { reason: e.to_string() })?;
        let mut dict = StateDict::new();
        if let Some(meta) = header.metadata() {
            dict.metadata = meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        }
        for (name, view) in parsed.iter() {
            let data = decode(name, &view)?;
            dict.tensors.insert(
                name.to_string(),
                Tensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        Ok(dict)
    }

    /// Reads and parses a safetensors file (a regular file of at most
    /// [`MAX_WEIGHTS_BYTES`]).
    ///
    /// # Errors
    /// [`NnError::Io`] when the file cannot be read, is not a regular file
    /// or is larger, else as
    /// [`StateDict::from_safetensors`] (prefixed with nothing: callers add the path).
    pub fn read(path: &Path) -> Result<Self, NnError> {
        let bytes = crate::bounded::read_regular(path, MAX_WEIGHTS_BYTES).map_err(|source| NnError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_safetensors(&bytes).map_err(|e| match e {
            NnError::Safetensors { reason } => NnError::Safetensors {
                reason: format!("{}: {reason}", path.display()),
            },
            other => other,
        })
    }

    /// Serializes to a safetensors buffer with this dtype and the metadata.
    ///
    /// # Errors
    /// [`NnError::Safetensors`] if the serializer refuses (it does not for
    /// tensors built through this type).
    pub fn to_safetensors(&self, dtype: StoreDtype) -> Result<Vec<u8>, NnError> {
        let encoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(name, t)| {
                let (dt, bytes) = match dtype {
                    StoreDtype::F32 => (
                        Dtype::F32,
                        t.data.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect(),
                    ),
                    StoreDtype::F64 => (Dtype::F64, t.data.iter().flat_map(|v| v.to_le_bytes()).collect()),
                };
                (name.clone(), dt, t.shape.clone(), bytes)
            })
            .collect();
        let mut views = Vec::with_capacity(encoded.len());
        for (name, dt, shape, bytes) in &encoded {
            let view = TensorView::new(*dt, shape.clone(), bytes).map_err(|e| NnError::Safetensors {
                reason: format!("{name}: {e}"),
            })?;
            views.push((name.clone(), view));
        }
        let meta: Option<HashMap<String, String>> = if self.metadata.is_empty() {
            None
        } else {
            Some(self.metadata.clone().into_iter().collect())
        };
        safetensors::serialize(views, meta).map_err(|e| NnError::Safetensors { reason: e.to_string() })
    }

    /// Writes [`StateDict::to_safetensors`] to a file.
    ///
    /// # Errors
    /// [`NnError::Io`] when the file cannot be written.
    pub fn write(&self, path: &Path, dtype: StoreDtype) -> Result<(), NnError> {
        let bytes = self.to_safetensors(dtype)?;
        std::fs::write(path, bytes).map_err(|source| NnError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// The tensor with this name.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    /// The tensor with this name, for changing its values.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Tensor> {
        self.tensors.get_mut(name)
    }

    /// Adds or replaces a tensor; returns the one it replaced.
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) -> Option<Tensor> {
        self.tensors.insert(name.into(), tensor)
    }

    /// Removes a tensor; returns it.
    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        self.tensors.remove(name)
    }

    /// Every `(name, tensor)`, ordered by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether there is no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The metadata value for `key`.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// Every metadata `(key, value)`, ordered by key.
    pub fn metadata_iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Sets a metadata key.
    pub fn set_metadata(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.metadata.insert(key.into(), value.into());
    }

    /// Removes a metadata key; returns its value.
    pub fn remove_metadata(&mut self, key: &str) -> Option<String> {
        self.metadata.remove(key)
    }
}

/// Converts a tensor's little-endian bytes to `f64`.
fn decode(name: &str, view: &TensorView<'_>) -> Result<Vec<f64>, NnError> {
    let bytes = view.data();
    let out: Vec<f64> = match view.dtype() {
        Dtype::F64 => chunks::<8>(bytes).map(f64::from_le_bytes).collect(),
        Dtype::F32 => chunks::<4>(bytes).map(|b| f64::from(f32::from_le_bytes(b))).collect(),
        Dtype::F16 => chunks::<2>(bytes).map(|b| f16_to_f64(u16::from_le_bytes(b))).collect(),
        Dtype::BF16 => chunks::<2>(bytes)
            .map(|b| f64::from(f32::from_bits(u32::from(u16::from_le_bytes(b)) << 16)))
            .collect(),
        Dtype::I64 => chunks::<8>(bytes).map(|b| i64::from_le_bytes(b) as f64).collect(),
        Dtype::U64 => chunks::<8>(bytes).map(|b| u64::from_le_bytes(b) as f64).collect(),
        Dtype::I32 => chunks::<4>(bytes).map(|b| f64::from(i32::from_le_bytes(b))).collect(),
        Dtype::U32 => chunks::<4>(bytes).map(|b| f64::from(u32::from_le_bytes(b))).collect(),
        Dtype::I16 => chunks::<2>(bytes).map(|b| f64::from(i16::from_le_bytes(b))).collect(),
        Dtype::U16 => chunks::<2>(bytes).map(|b| f64::from(u16::from_le_bytes(b))).collect(),
        Dtype::I8 => bytes.iter().map(|b| f64::from(*b as i8)).collect(),
        Dtype::U8 => bytes.iter().map(|b| f64::from(*b)).collect(),
        other => {
            return Err(NnError::Dtype {
                name: name.to_string(),
                dtype: format!("{other:?}"),
            })
        }
    };
    let want: usize = view.shape().iter().product();
    if out.len() != want {
        return Err(NnError::TensorSize {
            name: name.to_string(),
            shape: view.shape().to_vec(),
            len: out.len(),
        });
    }
    Ok(out)
}

fn chunks<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    bytes.chunks_exact(N).map(|c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        a
    })
}

/// IEEE 754 binary16 to f64, exactly (subnormals, infinities and NaN included).
fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let frac = f64::from(bits & 0x3ff);
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        _ => sign * (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_known_values() {
        assert_eq!(f16_to_f64(0x3c00), 1.0);
        assert_eq!(f16_to_f64(0xc000), -2.0);
        assert_eq!(f16_to_f64(0x3555), 0.333251953125);
        assert_eq!(f16_to_f64(0x0001), 2f64.powi(-24));
        assert_eq!(f16_to_f64(0x7bff), 65504.0);
        assert!(f16_to_f64(0x7c00).is_infinite());
        assert!(f16_to_f64(0x7e00).is_nan());
    }

    #[test]
    fn round_trip_f64_with_metadata() {
        let mut d = StateDict::new();
        d.insert(
            "a.weight",
            Tensor::new(vec![2, 3], vec![1.0, -2.5, 3.25, 0.0, 1e-7, 7.0]).unwrap(),
        );
        d.insert("a.n", Tensor::new(vec![], vec![5.0]).unwrap());
        d.set_metadata("arch", "resnet20");
        let bytes = d.to_safetensors(StoreDtype::F64).unwrap();
        assert_eq!(StateDict::from_safetensors(&bytes).unwrap(), d);
    }

    #[test]
    fn tensor_size_checked() {
        assert!(Tensor::new(vec![2, 2], vec![1.0; 3]).is_err());
    }
}
