//! Compute backends. The CPU reference lives in [`crate::ring`] and
//! [`crate::ckks`]; [`gpu`] runs the same kernels as WGSL compute shaders
//! through wgpu and must produce the same words.

pub mod gpu;
