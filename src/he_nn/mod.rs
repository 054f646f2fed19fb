//! Lowering of neural networks to CKKS operations.
//!
//! - [`layout`]: where each value of an activation tensor lives in the slots
//!   (channel blocks, gaps left by strides, replicas, several ciphertexts);
//! - [`conv`]: convolutions of any kernel, stride, padding and groups (and
//!   linear layers) by hoisted baby-step giant-step rotations;
//! - [`activation`]: polynomial activations in one to three levels;
//! - [`pool`]: rotation sums inside channel blocks (global pooling, the SE
//!   block's broadcast);
//! - [`client`]: a tensor encrypted into its layout's ciphertexts and back;
//! - [`range`]: which images a plan's ciphertexts can carry, checked in
//!   plaintext (a value past the parameters' bound wraps and spoils every
//!   image sharing the ciphertext);
//! - [`weights`]: each giant step's weight plaintexts kept on the backend
//!   for later images, within a byte budget;
//! - [`plan`]: a folded model lowered to a tree of these steps, with its
//!   level budget, rotations and key switches, and the executor that runs it
//!   on either backend.

pub mod activation;
pub mod client;
pub mod conv;
pub mod layout;
pub mod merge;
pub mod plan;
pub mod pool;
pub mod range;
pub mod weights;

pub use activation::{bring_to, PolyActivation};
pub use client::{decrypt_batches, decrypt_tensor, encrypt_batches, encrypt_tensor};
pub use conv::{HeConv, HeConvError};
pub use layout::{kernel_offsets, kernel_rotations, LayoutError, SlotLayout};
pub use merge::{LaneMerge, SETS_PER_MERGE};
pub use plan::{
    plan_for, LayerReport, Plan, PlanError, PlanGpuCost, StepTrace, AUTO_PRESETS, HEADROOM_LEVELS, MAX_BATCH,
    NETWORK_GAIN,
};
pub use pool::{Direction, RotationSum};
pub use range::{ValueRange, PARTIAL_SUM_MARGIN};
pub use weights::{WeightStore, DEFAULT_GPU_WEIGHT_BYTES};
