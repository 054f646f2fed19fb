//! The VQGAN's forward pass, written once over [`NetOps`]: the handful of
//! tensor operations a backend provides (convolution, GroupNorm with optional
//! swish, add, attention, nearest-neighbour upsampling, host transfers). The
//! CPU backend ([`super::cpu::CpuOps`]) is the reference; a GPU backend runs
//! the same sequence of operations.

use super::network::{AttnBlock, Coder, Level, Mid, ResnetBlock};
use super::VqganError;
use ndarray::Array4;

/// The operations a backend provides. Tensors are batches `N x C x H x W` of
/// `f32`.
pub trait NetOps {
    /// A batch held by the backend.
    type Tensor;
    /// A convolution resident on the backend (built from
    /// [`super::network::ConvParams`]).
    type Conv;
    /// A GroupNorm resident on the backend.
    type Norm;
    /// What an operation can fail with.
    type Error: From<VqganError>;

    /// Moves a host batch to the backend.
    fn upload(&self, x: Array4<f32>) -> Result<Self::Tensor, Self::Error>;
    /// Reads a batch back to the host.
    fn download(&self, x: &Self::Tensor) -> Result<Array4<f32>, Self::Error>;
    /// `conv(x)` with the convolution's stride, padding and bias.
    fn conv2d(&self, x: &Self::Tensor, conv: &Self::Conv) -> Result<Self::Tensor, Self::Error>;
    /// GroupNorm (32 groups, eps 1e-6, affine), then swish when `swish`.
    fn group_norm(&self, x: &Self::Tensor, norm: &Self::Norm, swish: bool) -> Result<Self::Tensor, Self::Error>;
    /// `a + b` (same shapes), reusing `a`'s storage where the backend can.
    fn add(&self, a: Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor, Self::Error>;
    /// Single-head attention over the positions of each image:
    /// `v softmax(q^T k / sqrt(C))^T`, the output `N x C x H x W`.
    fn attention(&self, q: &Self::Tensor, k: &Self::Tensor, v: &Self::Tensor) -> Result<Self::Tensor, Self::Error>;
    /// Nearest-neighbour 2x upsampling.
    fn upsample_nearest(&self, x: &Self::Tensor) -> Result<Self::Tensor, Self::Error>;
}

impl<C, N> ResnetBlock<C, N> {
    /// `shortcut(x) + conv2(swish(norm2(conv1(swish(norm1(x))))))`.
    pub fn forward<B: NetOps<Conv = C, Norm = N>>(&self, ops: &B, x: &B::Tensor) -> Result<B::Tensor, B::Error> {
        let h = ops.group_norm(x, &self.norm1, true)?;
        let h = ops.conv2d(&h, &self.conv1)?;
        let h = ops.group_norm(&h, &self.norm2, true)?;
        let h = ops.conv2d(&h, &self.conv2)?;
        match &self.nin_shortcut {
            Some(nin) => {
                let shortcut = ops.conv2d(x, nin)?;
                ops.add(shortcut, &h)
            }
            None => ops.add(h, x),
        }
    }
}

impl<C, N> AttnBlock<C, N> {
    /// `x + proj_out(attention(q(norm(x)), k(norm(x)), v(norm(x))))`.
    pub fn forward<B: NetOps<Conv = C, Norm = N>>(&self, ops: &B, x: &B::Tensor) -> Result<B::Tensor, B::Error> {
        let h = ops.group_norm(x, &self.norm, false)?;
        let q = ops.conv2d(&h, &self.q)?;
        let k = ops.conv2d(&h, &self.k)?;
        let v = ops.conv2d(&h, &self.v)?;
        drop(h);
        let a = ops.attention(&q, &k, &v)?;
        let out = ops.conv2d(&a, &self.proj_out)?;
        ops.add(out, x)
    }
}

impl<C, N> Mid<C, N> {
    fn forward<B: NetOps<Conv = C, Norm = N>>(&self, ops: &B, x: &B::Tensor) -> Result<B::Tensor, B::Error> {
        let h = self.block_1.forward(ops, x)?;
        let h = self.attn_1.forward(ops, &h)?;
        self.block_2.forward(ops, &h)
    }
}

impl<C, N> Level<C, N> {
    fn blocks<B: NetOps<Conv = C, Norm = N>>(&self, ops: &B, mut h: B::Tensor) -> Result<B::Tensor, B::Error> {
        for (j, block) in self.blocks.iter().enumerate() {
            h = block.forward(ops, &h)?;
            if let Some(attn) = self.attns.get(j) {
                h = attn.forward(ops, &h)?;
            }
        }
        Ok(h)
    }
}

impl<C, N> Coder<C, N> {
    fn head<B: NetOps<Conv = C, Norm = N>>(&self, ops: &B, h: &B::Tensor) -> Result<B::Tensor, B::Error> {
        let h = ops.group_norm(h, &self.norm_out, true)?;
        ops.conv2d(&h, &self.conv_out)
    }

    /// The encoder: `conv_in`, each level's blocks then its downsampling,
    /// the mid block, norm, swish, `conv_out`.
    pub fn encode<B: NetOps<Conv = C, Norm = N>>(&self, ops: &B, x: &B::Tensor) -> Result<B::Tensor, B::Error> {
        let mut h = ops.conv2d(x, &self.conv_in)?;
        for level in &self.levels {
            h = level.blocks(ops, h)?;
            if let Some(down) = &level.resample {
                h = ops.conv2d(&h, down)?;
            }
        }
        let h = self.mid.forward(ops, &h)?;
        self.head(ops, &h)
    }

    /// The decoder: `conv_in`, the mid block, the levels from last to first
    /// (blocks, then nearest 2x upsampling and a 3x3 conv), norm, swish,
    /// `conv_out`.
    pub fn decode<B: NetOps<Conv = C, Norm = N>>(&self, ops: &B, z: &B::Tensor) -> Result<B::Tensor, B::Error> {
        let h = ops.conv2d(z, &self.conv_in)?;
        let mut h = self.mid.forward(ops, &h)?;
        for level in self.levels.iter().rev() {
            h = level.blocks(ops, h)?;
            if let Some(up) = &level.resample {
                let wide = ops.upsample_nearest(&h)?;
                h = ops.conv2d(&wide, up)?;
            }
        }
        self.head(ops, &h)
    }
}
