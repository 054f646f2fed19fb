//! Device-resident RNS polynomials and raw limb buffers.

use super::commands::DeviceBuffer;
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
/// basis conversion are an arbitrary list of primes). Cloning shares the buffer.
#[derive(Clone)]
pub struct GpuWords {
    pub(super) buffer: DeviceBuffer,
}

impl<D: Domain> GpuPoly<D> {
    /// The device words.
    pub fn words(&self) -> GpuWords {
        GpuWords {
            buffer: self.buffer.clone(),
        }
    }

    /// Wraps device words holding `layout.len()` limbs in the domain `D`.
    ///
    /// # Panics
    /// If the buffer size does not match the layout.
    pub fn from_words(words: GpuWords, layout: LimbLayout, n: usize) -> Self {
        assert_eq!(
            words.buffer.size(),
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
