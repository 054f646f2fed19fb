//! Errors of the CKKS layer.

use thiserror::Error;

/// Everything a CKKS operation can refuse. Each variant names what the user
/// passed and what was expected.
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum CkksError {
    /// A parameter literal that cannot form a parameter set.
    #[error("invalid parameters: {reason}")]
    InvalidParams {
        /// What is wrong.
        reason: String,
    },
    /// log2(QP) over the 128-bit bound for the ring degree.
    #[error(
        "parameters are not 128-bit secure: log2(QP) = {log_qp:.1} bits exceeds the bound of {bound} bits for N = 2^{log_n} (HE standard, ternary secret); pass --allow-insecure (tests only) to use them anyway"
    )]
    Insecure {
        /// log2 of the full modulus QP.
        log_qp: f64,
        /// The standard's bound for this degree.
        bound: u32,
        /// log2 N.
        log_n: u32,
    },
    /// An insecure preset used without naming it as such.
    #[error("unknown preset `{name}` (available: {available})")]
    UnknownPreset {
        /// What was asked for.
        name: String,
        /// The names that exist.
        available: String,
    },
    /// Operands at different levels.
    #[error("level mismatch: {left} vs {right} (drop the higher one first)")]
    LevelMismatch {
        /// Level of the first operand.
        left: usize,
        /// Level of the second operand.
        right: usize,
    },
    /// Operands whose scales differ.
    #[error("scale mismatch: 2^{left:.6} vs 2^{right:.6}")]
    ScaleMismatch {
        /// log2 scale of the first operand.
        left: f64,
        /// log2 scale of the second operand.
        right: f64,
    },
    /// An operation that needs a level the ciphertext no longer has.
    #[error("not enough levels: the operation needs level {needed}, the ciphertext is at level {level}")]
    OutOfLevels {
        /// Level required.
        needed: usize,
        /// Level available.
        level: usize,
    },
    /// A level above the parameter set's maximum.
    #[error("level {level} does not exist (maximum {max})")]
    InvalidLevel {
        /// Level asked for.
        level: usize,
        /// Maximum level of the parameter set.
        max: usize,
    },
    /// More values than slots.
    #[error("{values} values do not fit in {slots} slots")]
    TooManyValues {
        /// Values given.
        values: usize,
        /// Slots available.
        slots: usize,
    },
    /// A NaN or infinite input value.
    #[error("value {index} is not finite ({value})")]
    NonFinite {
        /// Position of the value.
        index: usize,
        /// The value.
        value: f64,
    },
    /// A value whose scaled coefficients leave the integer headroom.
    #[error("values too large for scale 2^{log_scale:.1}: a coefficient reaches 2^{log_coeff:.1}, the limit is 2^62")]
    Overflow {
        /// log2 of the encoding scale.
        log_scale: f64,
        /// log2 of the largest scaled coefficient.
        log_coeff: f64,
    },
    /// A rotation with no Galois key.
    #[error("no Galois key for rotation by {steps} (generate keys with this rotation)")]
    MissingRotationKey {
        /// The rotation asked for.
        steps: i64,
    },
    /// An evaluation key made for lower levels than the ciphertext's.
    #[error("the {what} serves levels up to {key_level}; the ciphertext is at level {level} (generate keys for the plan's levels)")]
    KeyLevel {
        /// Which key.
        what: String,
        /// Highest level the key serves.
        key_level: usize,
        /// The ciphertext's level.
        level: usize,
    },
    /// Multiplication without a relinearization key.
    #[error("no relinearization key in this key set")]
    MissingRelinKey,
    /// Objects made under different keys or parameters.
    #[error("{what} belongs to another key ({found}) than the one given ({expected})")]
    KeyMismatch {
        /// What was checked.
        what: &'static str,
        /// Key identifier of the object.
        found: String,
        /// Key identifier expected.
        expected: String,
    },
    /// Objects made under different parameter sets.
    #[error("{what} was made with other parameters (fingerprint {found}, expected {expected})")]
    ParamsMismatch {
        /// What was checked.
        what: &'static str,
        /// Fingerprint found.
        found: String,
        /// Fingerprint expected.
        expected: String,
    },
    /// A tensor given as the wrong number of ciphertexts.
    #[error("{what}: expected {expected} ciphertexts, got {found}")]
    Shape {
        /// What was checked.
        what: &'static str,
        /// Ciphertexts expected.
        expected: usize,
        /// Ciphertexts given.
        found: usize,
    },
}
