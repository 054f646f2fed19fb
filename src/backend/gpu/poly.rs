//! Device-resident RNS polynomials and raw limb buffers.

use super::commands::{entry_range, DeviceBuffer};
use crate::ring::{Domain, LimbLayout};
use std::marker::PhantomData;

/// A polynomial in a device buffer.
///
/// Invariant: the buffer holds `layout.len() * n` canonical words, limb-major,
/// exactly as [`crate::ring::RnsPoly`] on the host.
pub struct GpuPoly<D: Domain> {
    pub(super) buffer: DeviceBuffer,
    pub(super) layout: LimbLayout,
    pub(super) _domain: PhantomData<D>,
}

impl<D: Domain> GpuPoly<D> {
    /// The primes of the limbs.
    pub fn layout(&self) -> LimbLayout {
        self.layout
    }

    pub(super) fn retag<E: Domain>(self) -> GpuPoly<E> {
        GpuPoly {
            buffer: self.buffer,
            layout: self.layout,
            _domain: PhantomData,
        }
    }
}

/// Words on the device without a limb layout of their own (the targets of a
/// basis conversion are an arbitrary list of primes): all of a buffer, or a
/// range of it that kernels bind as if it were the whole (several rotations
/// of one ciphertext in one buffer, say). Cloning shares the buffer.
///
/// Invariant: `offset + size` lies within the buffer; both are whole limbs,
/// so `offset` meets every adapter's storage offset alignment (256 bytes).
#[derive(Clone)]
pub struct GpuWords {
    pub(super) buffer: DeviceBuffer,
    /// First byte of the words in the buffer.
    pub(super) offset: u64,
    /// Bytes.
    pub(super) size: u64,
}

impl GpuWords {
    /// All of `buffer`.
    pub(super) fn whole(buffer: DeviceBuffer) -> Self {
        let size = buffer.size();
        GpuWords {
            buffer,
            offset: 0,
            size,
        }
    }

    /// Bytes `offset..offset + size` of these words, as words of their own.
    pub(super) fn range(&self, offset: u64, size: u64) -> Self {
        assert!(offset + size <= self.size, "a range within the words");
        GpuWords {
            buffer: self.buffer.clone(),
            offset: self.offset + offset,
            size,
        }
    }

    /// These words bound at `binding`.
    pub(super) fn bind(&self, binding: u32) -> wgpu::BindGroupEntry<'_> {
        entry_range(binding, &self.buffer, self.offset, Some(self.size))
    }

    /// Whether `other` lies in the same device buffer.
    pub fn shares_buffer(&self, other: &GpuWords) -> bool {
        std::sync::Arc::ptr_eq(&self.buffer, &other.buffer)
    }

    /// Bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl<D: Domain> GpuPoly<D> {
    /// The device words.
    pub fn words(&self) -> GpuWords {
        GpuWords::whole(self.buffer.clone())
    }

    /// Wraps device words holding `layout.len()` limbs in the domain `D`.
    ///
    /// # Panics
    /// If the words are not a whole buffer or their size does not match the
    /// layout.
    pub fn from_words(words: GpuWords, layout: LimbLayout, n: usize) -> Self {
        assert_eq!(
            (words.offset, words.size),
            (0, words.buffer.size()),
            "a polynomial owns its whole buffer"
        );
        assert_eq!(
            words.size,
            (4 * n * layout.len()) as u64,
            "buffer size does not match the layout"
        );
        GpuPoly {
            buffer: words.buffer,
            layout,
            _domain: PhantomData,
        }
    }
}

/// Limbs `first..first + count` of device words (all limbs from `first`
/// when `count` is `None`): a plaintext among several encoded together.
#[derive(Clone, Copy)]
pub struct Limbs<'a> {
    /// The words.
    pub words: &'a GpuWords,
    /// First limb.
    pub first: usize,
    /// Number of limbs, or every one from `first`.
    pub count: Option<usize>,
}

impl<'a> From<&'a GpuWords> for Limbs<'a> {
    fn from(words: &'a GpuWords) -> Self {
        Limbs {
            words,
            first: 0,
            count: None,
        }
    }
}
