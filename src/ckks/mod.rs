//! RNS-CKKS: parameters, encoder, keys, encryption, the evaluator with hybrid
//! key switching, and the versioned file formats.

pub mod ciphertext;
pub mod encoder;
pub mod error;
pub mod evaluator;
pub mod keys;
pub mod keyswitch;
pub mod params;

pub use ciphertext::{decrypt, encrypt, encrypt_values, Ciphertext};
pub use encoder::{decode, encode, Plaintext};
pub use error::CkksError;
pub use evaluator::Evaluator;
pub use keys::{KeyId, PublicKeySet, SecretKey};
pub use params::{Params, ParamsLiteral};
