//! latent-he: encrypted chest X-ray classification in latent space.
//!
//! Layers, each depending only on those before it in this list:
//! [`math`] (modular arithmetic, NTT, embedding) -> [`ring`] (RNS polynomials)
//! -> [`backend`] (the wgpu device and WGSL kernels) -> [`ckks`] (the scheme,
//! its CPU evaluator and the GPU evaluator) -> [`he_nn`] (network layers as
//! CKKS operations) -> [`cli`] (the `latent-he` command).
//! [`data`] (CSV tables, AUROC/F1 metrics) stands apart, used by [`cli`].
//! [`nn`] (the paper's classifiers: safetensors weights, f32/f64 inference, folding) stands apart too.

pub mod backend;
pub mod ckks;
pub mod cli;
pub mod data;
pub mod he_nn;
pub mod math;
pub mod nn;
pub mod ring;

/// Large polynomial buffers are allocated and freed constantly; glibc's malloc
/// returns each one to the kernel (mmap threshold), which then zeroes fresh
/// pages on every allocation. mimalloc keeps them. Set here so that the
/// binary, the tests and the benchmarks all measure the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
