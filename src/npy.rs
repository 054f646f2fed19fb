//! `.npy` arrays from outside. The header is read first, by itself: its
//! length, nesting, element type and shape are checked, and the size the
//! shape declares is checked against the file's length and against
//! [`MAX_NPY_VALUES`] before `ndarray-npy` allocates anything for the body.

use crate::bounded::read_regular;
use ndarray::ArrayD;
use ndarray_npy::ReadNpyExt;
use std::path::Path;
use thiserror::Error;

/// Most values an array may hold: 2^28 (2 GiB as float64). Far above any
/// latent batch this engine reads; it only keeps a forged file from asking
/// for more memory than a client has.
pub const MAX_NPY_VALUES: usize = 1 << 28;

/// Longest header accepted, in bytes (numpy itself reads at most 10,000).
pub const MAX_HEADER_LEN: usize = 10_000;

/// Deepest nesting of brackets accepted in a header (a real one has two:
/// the dictionary and the shape tuple).
const MAX_HEADER_DEPTH: usize = 4;

/// The magic string every `.npy` file starts with.
const MAGIC: &[u8] = b"\x93NUMPY";

/// Why a `.npy` file cannot be read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NpyError {
    /// The operating system refused the read (or the file is not a regular
    /// file, or over the size cap).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The bytes do not start as a `.npy` file does.
    #[error("not a .npy file ({0})")]
    Format(String),
    /// An element type other than little- or big-endian float32/float64.
    #[error("element type {0} is not float32 or float64")]
    Dtype(String),
    /// The shape declares more values than [`MAX_NPY_VALUES`].
    #[error("shape {shape:?} declares more than the {MAX_NPY_VALUES} values accepted")]
    TooLarge {
        /// The declared shape.
        shape: Vec<usize>,
    },
    /// The declared shape does not match the bytes after the header.
    #[error("shape {shape:?} needs {needed} bytes of data, the file holds {found}")]
    Length {
        /// The declared shape.
        shape: Vec<usize>,
        /// Bytes the shape needs.
        needed: usize,
        /// Bytes after the header.
        found: usize,
    },
    /// `ndarray-npy` refused the (checked) array.
    #[error("{0}")]
    Read(#[from] ndarray_npy::ReadNpyError),
}

/// A float array as stored: float32 or float64.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyArray {
    /// Stored as float32.
    F32(ArrayD<f32>),
    /// Stored as float64.
    F64(ArrayD<f64>),
}

impl NpyArray {
    /// The array as float64 (exact).
    pub fn into_f64(self) -> ArrayD<f64> {
        match self {
            Self::F32(a) => a.mapv(f64::from),
            Self::F64(a) => a,
        }
    }

    /// The array as float32 (float64 values rounded; large ones become infinite).
    pub fn into_f32(self) -> ArrayD<f32> {
        match self {
            Self::F32(a) => a,
            Self::F64(a) => a.mapv(|v| v as f32),
        }
    }
}

/// What [`check_header`] learnt: the element size and the shape, whose size
/// matches the data after the header exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// Bytes per value: 4 or 8.
    pub item_bytes: usize,
    /// The declared shape.
    pub shape: Vec<usize>,
}

/// Reads the float32 or float64 `.npy` array at `path` (a regular file of at
/// most `8 * MAX_NPY_VALUES` bytes plus its header).
///
/// # Errors
/// [`NpyError`]: unreadable, foreign or forged files; never allocates more
/// than the file's length from what the header declares.
pub fn read_npy(path: &Path) -> Result<NpyArray, NpyError> {
    let cap = (8 * MAX_NPY_VALUES + MAX_HEADER_LEN + 12) as u64;
    let bytes = read_regular(path, cap)?;
    parse_npy(&bytes)
}

/// [`read_npy`] of bytes in memory.
///
/// # Errors
/// As [`read_npy`].
pub fn parse_npy(bytes: &[u8]) -> Result<NpyArray, NpyError> {
    let header = check_header(bytes)?;
    Ok(match header.item_bytes {
        4 => NpyArray::F32(ArrayD::<f32>::read_npy(bytes)?),
        _ => NpyArray::F64(ArrayD::<f64>::read_npy(bytes)?),
    })
}

/// Checks the header of a `.npy` file held in `bytes`: magic, version,
/// header length (at most [`MAX_HEADER_LEN`] and inside the file), a
/// dictionary with a float32/float64 `descr` and a `shape`, and the shape's
/// size against [`MAX_NPY_VALUES`] and the bytes after the header.
///
/// # Errors
/// [`NpyError::Format`], [`NpyError::Dtype`], [`NpyError::TooLarge`],
/// [`NpyError::Length`].
pub fn check_header(bytes: &[u8]) -> Result<NpyHeader, NpyError> {
    let format = |reason: &str| NpyError::Format(reason.to_string());
    if bytes.len() < MAGIC.len() + 2 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(format("bad magic"));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len_bytes, utf8) = match (major, minor) {
        (1, 0) => (2, false),
        (2, 0) => (4, false),
        (3, 0) => (4, true),
        _ => return Err(NpyError::Format(format!("unsupported version {major}.{minor}"))),
    };
    let start = 8 + len_bytes;
    let len_field = bytes.get(8..start).ok_or_else(|| format("truncated header"))?;
    let header_len = len_field
        .iter()
        .rev()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    if header_len > MAX_HEADER_LEN {
        return Err(NpyError::Format(format!(
            "a header of {header_len} bytes is longer than the {MAX_HEADER_LEN} accepted"
        )));
    }
    let text = bytes
        .get(start..start + header_len)
        .ok_or_else(|| format("the header runs past the end of the file"))?;
    if !utf8 && !text.is_ascii() {
        return Err(format("the header is not ASCII"));
    }
    let text = std::str::from_utf8(text).map_err(|_| format("the header is not UTF-8"))?;
    let text = text
        .strip_suffix('\n')
        .ok_or_else(|| format("the header does not end with a newline"))?;
    let (descr, shape) = parse_header_dict(text)?;
    let item_bytes = match descr.as_str() {
        "<f4" | ">f4" => 4,
        "<f8" | ">f8" => 8,
        _ => return Err(NpyError::Dtype(descr)),
    };
    let values = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&v| v <= MAX_NPY_VALUES)
        .ok_or_else(|| NpyError::TooLarge { shape: shape.clone() })?;
    let found = bytes.len() - start - header_len;
    let needed = values * item_bytes;
    if needed != found {
        return Err(NpyError::Length { shape, needed, found });
    }
    Ok(NpyHeader { item_bytes, shape })
}

/// The `descr` and `shape` of a header's dictionary (`fortran_order` is
/// left to `ndarray-npy`).
fn parse_header_dict(text: &str) -> Result<(String, Vec<usize>), NpyError> {
    let format = |reason: String| NpyError::Format(reason);
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_HEADER_DEPTH {
            return Err(format(format!(
                "the header nests deeper than {MAX_HEADER_DEPTH} brackets"
            )));
        }
    }
    let value: py_literal::Value = text.parse().map_err(|e| format(format!("unreadable header: {e}")))?;
    let py_literal::Value::Dict(entries) = value else {
        return Err(format("the header is not a dictionary".into()));
    };
    let entry = |key: &str| {
        entries
            .iter()
            .find(|(k, _)| k.as_string().is_some_and(|k| k == key))
            .map(|(_, v)| v)
            .ok_or_else(|| format(format!("the header has no `{key}`")))
    };
    let descr = entry("descr")?
        .as_string()
        .cloned()
        .ok_or_else(|| NpyError::Dtype(entry("descr").map(|v| v.to_string()).unwrap_or_default()))?;
    let shape = entry("shape")?
        .as_tuple()
        .ok_or_else(|| format("the shape is not a tuple".into()))?
        .iter()
        .map(|d| {
            d.as_integer()
                .and_then(|i| usize::try_from(i).ok())
                .ok_or_else(|| format(format!("the shape holds {d}, not a size")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((descr, shape))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray_npy::WriteNpyExt;

    /// A `.npy` file whose header says `header` (padded as numpy pads it) and
    /// whose body is `body`.
    fn npy(header: &str, body: &[u8]) -> Vec<u8> {
        let mut text = header.to_string();
        while !(10 + text.len() + 1).is_multiple_of(64) {
            text.push(' ');
        }
        text.push('\n');
        let mut bytes = MAGIC.to_vec();
        bytes.extend([1, 0]);
        bytes.extend((text.len() as u16).to_le_bytes());
        bytes.extend(text.as_bytes());
        bytes.extend(body);
        bytes
    }

    #[test]
    fn real_arrays_read_back_in_both_widths() {
        let a = ndarray::Array::from_shape_fn((2, 3), |(i, j)| (i * 3 + j) as f32).into_dyn();
        let mut bytes = Vec::new();
        a.write_npy(&mut bytes).unwrap();
        assert_eq!(parse_npy(&bytes).unwrap(), NpyArray::F32(a.clone()));
        let b = a.mapv(f64::from);
        let mut bytes = Vec::new();
        b.write_npy(&mut bytes).unwrap();
        assert_eq!(parse_npy(&bytes).unwrap().into_f64(), b);
    }

    /// A header declaring a huge shape over a few bytes is refused from the
    /// header alone (before the fix ndarray-npy allocated the declared size
    /// and the process aborted).
    #[test]
    fn huge_declared_shapes_are_refused_before_allocating() {
        let forged = npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 4, 65536, 65536), }",
            &[0u8; 64],
        );
        assert!(matches!(parse_npy(&forged), Err(NpyError::TooLarge { .. })));
        let wraps = npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }",
            &[0u8; 64],
        );
        assert!(matches!(parse_npy(&wraps), Err(NpyError::TooLarge { .. })));
        let short = npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1000, 1000), }",
            &[0u8; 64],
        );
        match parse_npy(&short) {
            Err(NpyError::Length { needed, found, .. }) => assert_eq!((needed, found), (4_000_000, 64)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn forged_headers_are_refused() {
        let cases: Vec<Vec<u8>> = vec![
            b"\x93NUMPY".to_vec(),
            b"not a npy file at all".to_vec(),
            {
                let mut b = MAGIC.to_vec();
                b.extend([2, 0, 0xff, 0xff, 0xff, 0xff]);
                b
            },
            npy("{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }", &[0u8; 8]),
            npy("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,), }", &[0u8; 8]),
            npy(
                "{'descr': '<f8', 'fortran_order': False, 'shape': ((((((1,),),),),),), }",
                &[0u8; 8],
            ),
            npy("[1, 2, 3]", &[]),
            npy("{'descr': '<f8', 'fortran_order': False, }", &[0u8; 8]),
        ];
        for (i, bytes) in cases.iter().enumerate() {
            assert!(parse_npy(bytes).is_err(), "case {i} accepted");
        }
    }
}
