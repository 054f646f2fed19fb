//! Lowering of neural-network layers to CKKS operations.
//!
//! So far: the slot layout of an activation tensor, the encrypted 3x3 (any
//! odd k) same-padding convolution with as many output as input channels,
//! stride 1, the folded quadratic activation, and the head (global average
//! pooling and the final linear layer). The planner for whole models (strides, channel changes, pooling,
//! activations, SE, the level budget) builds on these.

pub mod activation;
pub mod conv;
pub mod head;
pub mod layout;

pub use activation::FoldedQuadratic;
pub use conv::{Conv2dSame, HeConvError};
pub use head::{HeadError, PoolLinear};
pub use layout::{kernel_offsets, kernel_rotations, SlotLayout};
