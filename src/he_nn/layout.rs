//! Where each value of an activation tensor lives in the slots.

/// A `C x H x W` tensor packed channel-major, `slot = c*H*W + y*W + x`, and
/// replicated once (`slot + C*H*W` holds the same value) so that rotating by
/// whole channels wraps around the C channels instead of into empty slots.
///
/// Invariant: `2 * C * H * W <= slots`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotLayout {
    /// Channels.
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl SlotLayout {
    /// Slots of one channel.
    pub fn block(&self) -> usize {
        self.height * self.width
    }

    /// Slots of the whole tensor, once.
    pub fn size(&self) -> usize {
        self.channels * self.block()
    }

    /// True when the replicated tensor fits in `slots`.
    pub fn fits(&self, slots: usize) -> bool {
        2 * self.size() <= slots
    }

    /// The slot vector of a `C x H x W` tensor (row-major `values`), replicated.
    ///
    /// # Panics
    /// If `values.len() != C*H*W`.
    pub fn pack(&self, values: &[f64]) -> Vec<f64> {
        assert_eq!(values.len(), self.size(), "tensor size does not match the layout");
        let mut slots = Vec::with_capacity(2 * self.size());
        slots.extend_from_slice(values);
        slots.extend_from_slice(values);
        slots
    }

    /// The tensor back from its slots (the first copy).
    pub fn unpack(&self, slots: &[f64]) -> Vec<f64> {
        slots[..self.size()].to_vec()
    }
}

/// Kernel offsets `(dy, dx)` of an odd `kernel`, row-major, centre included.
pub fn kernel_offsets(kernel: usize) -> Vec<(isize, isize)> {
    let r = (kernel / 2) as isize;
    (-r..=r).flat_map(|dy| (-r..=r).map(move |dx| (dy, dx))).collect()
}

/// The slot rotations that bring each kernel offset of a row-major image of
/// `width` columns under the output position: `dy * width + dx`, in the order
/// of [`kernel_offsets`] (the centre is rotation 0).
pub fn kernel_rotations(width: usize, kernel: usize) -> Vec<i64> {
    kernel_offsets(kernel)
        .into_iter()
        .map(|(dy, dx)| (dy * width as isize + dx) as i64)
        .collect()
}
