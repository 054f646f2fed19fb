//! The wgpu backend: device selection, the WGSL kernels of `shaders/`, and
//! device-resident RNS polynomials.
//!
//! Every kernel works on canonical `u32` residues with the arithmetic of
//! `shaders/modarith.wgsl`, so its output equals the CPU backend's bit for bit;
//! the tests compare every word.

pub(crate) mod commands;
pub mod device;
pub mod kernels;
pub mod poly;
pub mod profile;
pub mod ring;
pub mod shaders;
pub mod work;

pub use device::{AdapterSummary, GpuContext, GpuError};
pub use poly::{GpuPoly, GpuWords, Limbs};
pub use profile::KernelTime;
pub use ring::GpuRing;
pub use work::GpuWork;
