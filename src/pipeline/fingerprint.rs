//! A model's fingerprint: what ties a client's keys to the weights a
//! server evaluates with.

use super::PipelineError;
use std::path::Path;

/// The algorithm name that starts every fingerprint.
const ALGORITHM: &str = "blake3";

/// The fingerprint of the weight file at `path`: `blake3:` and the BLAKE3
/// hash (hex, 64 digits) of the file's bytes as stored, which are its
/// safetensors header (every tensor's name, dtype, shape and offsets, and
/// the metadata) followed by the tensor data. Any change to a weight, a
/// name or the metadata changes it; it reveals nothing of the weights.
///
/// # Errors
/// An unreadable file, or one past the weight file cap
/// ([`crate::nn::weights::MAX_WEIGHTS_BYTES`]).
pub fn model_fingerprint(path: &Path) -> Result<String, PipelineError> {
    let bytes =
        crate::bounded::read_regular(path, crate::nn::weights::MAX_WEIGHTS_BYTES).map_err(PipelineError::io(path))?;
    Ok(bytes_fingerprint(&bytes))
}

/// The fingerprint of a weight file's bytes held in memory (a model built
/// from a state dict, fingerprinted as the safetensors file it would be
/// written as): what [`model_fingerprint`] gives for a file of these bytes.
pub fn bytes_fingerprint(bytes: &[u8]) -> String {
    format!("{ALGORITHM}:{}", blake3::hash(bytes).to_hex())
}

/// Whether `text` has the form [`model_fingerprint`] gives.
pub fn is_fingerprint(text: &str) -> bool {
    text.strip_prefix(ALGORITHM)
        .and_then(|t| t.strip_prefix(':'))
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}
