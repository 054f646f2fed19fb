//! latent-he: encrypted chest X-ray classification in latent space.
//!
//! Layers, each depending only on those before it in this list:
//! [`math`] (modular arithmetic, NTT, embedding) -> [`ring`] (RNS polynomials)
//! -> [`backend`] (the wgpu device and WGSL kernels) -> [`ckks`] (the scheme,
//! its CPU evaluator and the GPU evaluator) -> [`he_nn`] (network layers as
//! CKKS operations) -> [`pipeline`] (the protocol: client, server, key
//! store, sessions, the scorer, the client bundle) -> [`service`] (the
//! protocol over HTTP: `serve`'s tokens, state, job queue and routes, and
//! its client) -> [`cli`] (the `latent-he` command). One edge goes back:
//! the pipeline's remote evaluation (`score --server`) calls
//! [`service::client`].
//! [`data`] (CSV tables, AUROC/F1 metrics) stands apart, used by [`cli`].
//! [`bounded`] (reading outside files within caps) and [`npy`] (`.npy` arrays,
//! their declared size checked first) are used by both.
//! [`nn`] (the paper's classifiers: safetensors weights, f32/f64 inference, folding) stands apart too,
//! and so does [`report`] (the ROC and timing figures as PNG).

pub mod backend;
pub mod bounded;
pub mod cache;
pub mod ckks;
pub mod cli;
pub mod data;
pub mod he_nn;
pub mod math;
pub mod nn;
pub mod npy;
pub mod pipeline;
pub mod report;
pub mod ring;
pub mod service;
#[cfg(test)]
#[path = "../tests/common/seed.rs"]
mod test_seed;
pub mod vqgan;

/// mimalloc's `purge_delay` option (its position in `mi_option_e` of the
/// bundled mimalloc v2 header; the Rust bindings name no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc, where it is the global allocator (the `latent-he` binary
/// and the benchmarks set it), never to hand freed pages back to the kernel. A
/// server step frees and reallocates gigabytes of same-sized limb buffers;
/// returned pages come back zeroed by the kernel, which cost 14-26% of the
/// time of an encrypted ResNet20 (key generation 32 -> 17 s at n16,
/// inference 7% faster; docs/perf.md). The resident size then stays at the
/// peak, which the job reaches anyway.
pub fn keep_freed_memory() {
    // SAFETY: sets a plain integer option of the global allocator; mimalloc
    // reads options atomically and accepts changes at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}
