//! 32-bit modular arithmetic, NTT-friendly prime search, negacyclic NTT tables
//! and the CKKS canonical-embedding FFT.
//!
//! Every residue handled here is canonical (`0 <= x < q`) on the way in and on
//! the way out of each public function; that is what lets any other backend
//! (the WGSL one included) produce bit-identical words with its own reduction
//! strategy.

pub mod embedding;
pub mod modulus;
pub mod ntt;
pub mod primes;

pub use modulus::Modulus;
pub use ntt::NttTable;
