//! RNS polynomials over `Z_Q[X]/(X^N + 1)`: the context of primes and NTT
//! tables, polynomials whose domain is part of their type, samplers, basis
//! extension (ModUp/ModDown), exact rescale and automorphisms.

pub mod automorphism;
pub mod basis;
pub mod context;
pub mod crt;
pub mod dot;
pub mod poly;
pub mod sampler;

pub use context::{LimbLayout, RingContext};
pub use poly::{Coeff, Domain, Eval, RnsPoly};
