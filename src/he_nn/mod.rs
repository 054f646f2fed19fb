//! Lowering of neural-network layers to CKKS operations.
//!
//! So far: the slot layout of an activation tensor and the encrypted 3x3 (any
//! odd k) same-padding convolution with as many output as input channels,
//! stride 1. The planner for whole models (strides, channel changes, pooling,
//! activations, SE, the level budget) builds on these.

pub mod conv;
pub mod layout;

pub use conv::{Conv2dSame, HeConvError};
pub use layout::SlotLayout;
