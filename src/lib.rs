//! latent-he: encrypted chest X-ray classification in latent space.
//!
//! Layers, each depending only on those above it in this list:
//! [`math`] (modular arithmetic, NTT, embedding) -> [`ring`] (RNS polynomials)
//! -> [`ckks`] (the scheme) -> [`cli`] (the `latent-he` command).

pub mod ckks;
pub mod cli;
pub mod math;
pub mod ring;
