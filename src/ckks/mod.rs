//! RNS-CKKS: parameters, encoder, keys, encryption, the evaluator with hybrid
//! key switching, and the versioned file formats.

pub mod backend;
pub mod ciphertext;
pub mod encoder;
pub mod error;
pub mod evaluator;
pub mod flooding;
pub mod gpu_cost;
pub mod gpu_eval;
pub mod keys;
pub mod keyswitch;
pub mod params;
pub mod sealed;
pub mod serialize;

pub use backend::EvalBackend;
pub use ciphertext::{decrypt, encrypt, encrypt_values, Ciphertext};
pub use encoder::{decode, encode, encode_coeffs, EncodedCoeffs, Plaintext, ScaledCoeffs};
pub use error::CkksError;
pub use evaluator::Evaluator;
pub use flooding::DecryptionNoise;
pub use keys::{KeyId, KeyLevels, KeyMemory, PublicKeySet, SecretKey};
pub use params::{Params, ParamsLiteral};
pub use serialize::{
    ciphertexts_from_bytes, ciphertexts_to_bytes, load_ciphertexts, load_public_keys, load_public_keys_as,
    load_secret_key, peek_header, public_keys_from_bytes, public_keys_params, public_keys_to_bytes, save_ciphertexts,
    save_public_keys, save_secret_key, secret_key_from_bytes, secret_key_to_bytes, CiphertextFile, FileError,
    FileHeader, FileKind,
};
