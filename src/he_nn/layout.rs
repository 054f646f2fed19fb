//! Where each value of an activation tensor lives in the slots.

use thiserror::Error;

/// Why a tensor cannot be laid out.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayoutError {
    /// One channel's block needs more slots than a ciphertext has.
    #[error("one {height}x{width} channel needs a block of {block} slots; a ciphertext has {slots}")]
    ChannelTooLarge {
        /// Rows.
        height: usize,
        /// Columns.
        width: usize,
        /// Slots of one channel block (a power of two).
        block: usize,
        /// Slots per ciphertext.
        slots: usize,
    },
    /// A tensor with an empty side.
    #[error("a tensor side is zero ({channels}x{height}x{width})")]
    Empty {
        /// Channels.
        channels: usize,
        /// Rows.
        height: usize,
        /// Columns.
        width: usize,
    },
}

/// A `C x H x W` tensor spread over one or more ciphertexts.
///
/// Channel `c` owns one block of `block` slots (a power of two); value
/// `(c, y, x)` sits at offset `y*gap*row + x*gap` of that block, so a strided
/// layer leaves gaps instead of compacting (`gap` doubles with each stride
/// 2). Channels are counted up to a power of two, `C'`; global block `c`
/// lives in ciphertext `c / (slots/block)`. When `C'` blocks fill less than
/// one ciphertext, the tensor repeats every `C'` blocks, so rotating by whole
/// channels wraps around the channels.
///
/// Image sets can share the slots a stride left empty: with `lanes = s`
/// (a power of two, at most `gap`), the `s*s` lanes of the `gap x gap` cell
/// at the top left of each value hold one set each, lane `m` shifted by
/// [`Self::lane_offset`] (Morton order, so four layouts of `s` lanes make
/// one of `2s` lanes, quadrant `k` holding lanes `k*s*s..`). Every layer
/// reads and writes each lane alike: rotations by whole gaps and blocks never
/// move a value into another lane.
///
/// Invariant (kept by every encrypted layer): every slot that is not a data
/// slot of the tensor, replicas and lanes included, holds zero (an empty lane
/// may hold anything: nothing reads it into another lane).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SlotLayout {
    /// Channels `C`.
    pub channels: usize,
    /// Rows `H` (logical).
    pub height: usize,
    /// Columns `W` (logical).
    pub width: usize,
    /// Distance between neighbouring values, in physical rows and columns.
    pub gap: usize,
    /// Physical row length inside a block.
    pub row: usize,
    /// Slots per channel block (a power of two).
    pub block: usize,
    /// Slots per ciphertext (a power of two, a multiple of `block`).
    pub slots: usize,
    /// Lanes per side of a gap cell (1: one image set per ciphertext set).
    #[serde(default = "one_lane")]
    pub lanes: usize,
}

fn one_lane() -> usize {
    1
}

impl SlotLayout {
    /// The layout of a model's input: no gaps, rows of `width`, blocks of
    /// `H*W` rounded up to a power of two.
    ///
    /// # Errors
    /// [`LayoutError`] for an empty tensor or a channel larger than a ciphertext.
    pub fn input(channels: usize, height: usize, width: usize, slots: usize) -> Result<Self, LayoutError> {
        if channels == 0 || height == 0 || width == 0 {
            return Err(LayoutError::Empty {
                channels,
                height,
                width,
            });
        }
        let block = (height * width).next_power_of_two();
        if block > slots {
            return Err(LayoutError::ChannelTooLarge {
                height,
                width,
                block,
                slots,
            });
        }
        Ok(Self {
            channels,
            height,
            width,
            gap: 1,
            row: width,
            block,
            slots,
            lanes: 1,
        })
    }

    /// The layout of a layer's output with `channels` channels of
    /// `height x width`, written with `stride` into the same blocks (the gap
    /// is multiplied by `stride`).
    pub fn strided(&self, channels: usize, height: usize, width: usize, stride: usize) -> Self {
        Self {
            channels,
            height,
            width,
            gap: self.gap * stride,
            ..*self
        }
    }

    /// The layout of four sets of this one merged into one ciphertext set
    /// (`lanes` doubled), `None` when the gap leaves no room.
    pub fn interleaved(&self) -> Option<Self> {
        (2 * self.lanes <= self.gap).then_some(Self {
            lanes: 2 * self.lanes,
            ..*self
        })
    }

    /// Image sets sharing each ciphertext: `lanes * lanes`.
    pub fn lane_count(&self) -> usize {
        self.lanes * self.lanes
    }

    /// Slot offset of lane `m` (`< lane_count`) from lane 0: the Morton
    /// index `m` split into a row (odd bits) and a column (even bits).
    pub fn lane_offset(&self, m: usize) -> usize {
        let (mut y, mut x) = (0, 0);
        for bit in 0..usize::BITS / 2 {
            x |= ((m >> (2 * bit)) & 1) << bit;
            y |= ((m >> (2 * bit + 1)) & 1) << bit;
        }
        y * self.row + x
    }

    /// One value per channel at offset 0 of its block (a pooled tensor).
    pub fn pooled(&self, channels: usize) -> Self {
        Self {
            channels,
            height: 1,
            width: 1,
            ..*self
        }
    }

    /// Blocks per ciphertext.
    pub fn blocks_per_ct(&self) -> usize {
        self.slots / self.block
    }

    /// `C'`: channels rounded up to a power of two.
    pub fn padded_channels(&self) -> usize {
        self.channels.next_power_of_two()
    }

    /// Blocks after which the channels repeat inside a ciphertext.
    pub fn period(&self) -> usize {
        self.padded_channels().min(self.blocks_per_ct())
    }

    /// Ciphertexts the tensor spans.
    pub fn cts(&self) -> usize {
        self.padded_channels().div_ceil(self.blocks_per_ct())
    }

    /// The channel held by block `block` of ciphertext `ct`, `None` for a
    /// padding channel.
    pub fn channel_at(&self, ct: usize, block: usize) -> Option<usize> {
        let c = (ct * self.blocks_per_ct() + block) % self.padded_channels();
        (c < self.channels).then_some(c)
    }

    /// Offset of `(y, x)` inside a channel block.
    pub fn offset(&self, y: usize, x: usize) -> usize {
        (y * self.row + x) * self.gap
    }

    /// Every data slot of ciphertext `ct`, every lane, with the index of its
    /// value in the row-major `C x H x W` tensor.
    pub fn data_slots(&self, ct: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.lane_count()).flat_map(move |m| self.lane_slots(ct, m))
    }

    /// [`Self::data_slots`] of lane `m` only.
    fn lane_slots(&self, ct: usize, m: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let lane = self.lane_offset(m);
        (0..self.blocks_per_ct()).flat_map(move |b| {
            self.channel_at(ct, b).into_iter().flat_map(move |c| {
                (0..self.height).flat_map(move |y| {
                    (0..self.width).map(move |x| {
                        (
                            b * self.block + self.offset(y, x) + lane,
                            (c * self.height + y) * self.width + x,
                        )
                    })
                })
            })
        })
    }

    /// The slot vectors (one per ciphertext) of a row-major `C x H x W`
    /// tensor, the same in every lane.
    ///
    /// # Panics
    /// If `values.len() != C*H*W`.
    pub fn pack(&self, values: &[f64]) -> Vec<Vec<f64>> {
        assert_eq!(values.len(), self.len(), "tensor size does not match the layout");
        (0..self.cts())
            .map(|ct| {
                let mut slots = vec![0.0; self.slots];
                for (slot, i) in self.data_slots(ct) {
                    slots[slot] = values[i];
                }
                slots
            })
            .collect()
    }

    /// A slot vector per ciphertext holding `value` on every data slot, zero
    /// elsewhere (a constant that keeps the zero-outside-data invariant).
    pub fn constant(&self, value: f64) -> Vec<Vec<f64>> {
        self.pack(&vec![value; self.len()])
    }

    /// The tensor of lane 0 back from its slot vectors.
    ///
    /// # Panics
    /// If fewer than [`Self::cts`] vectors of [`Self::slots`] values are given.
    pub fn unpack(&self, cts: &[Vec<f64>]) -> Vec<f64> {
        self.unpack_lane(cts, 0)
    }

    /// The tensor of lane `m` back from its slot vectors (where several
    /// blocks hold a channel, the value of the last).
    ///
    /// # Panics
    /// If fewer than [`Self::cts`] vectors of [`Self::slots`] values are
    /// given, or `m >= lane_count`.
    pub fn unpack_lane(&self, cts: &[Vec<f64>], m: usize) -> Vec<f64> {
        assert!(m < self.lane_count(), "lane {m} of {}", self.lane_count());
        let mut values = vec![0.0; self.len()];
        for (ct, slots) in cts.iter().enumerate().take(self.cts()) {
            for (slot, i) in self.lane_slots(ct, m) {
                values[i] = slots[slot];
            }
        }
        values
    }

    /// Checks a layout read from outside (a key folder's `model.json`)
    /// for `slots` slots per ciphertext: every side and step at least 1,
    /// blocks and lanes powers of two, the block inside a ciphertext, every
    /// data slot of every lane inside its block, at most `max_values`
    /// values; so that packing and unpacking index only inside their
    /// vectors. Returns what is wrong.
    ///
    /// # Errors
    /// A one-line reason.
    pub fn check(&self, slots: usize, max_values: usize) -> Result<(), String> {
        if self.slots != slots {
            return Err(format!(
                "{} slots per ciphertext, the parameters have {slots}",
                self.slots
            ));
        }
        if [self.channels, self.height, self.width, self.gap, self.row, self.lanes].contains(&0) {
            return Err("a side, step or lane count is zero".into());
        }
        if !self.block.is_power_of_two() || self.block > slots || !self.lanes.is_power_of_two() {
            return Err(format!(
                "blocks of {} slots and {} lanes per side are not powers of two within {slots} slots",
                self.block, self.lanes
            ));
        }
        if self.row < self.width || self.lanes > self.gap {
            return Err(format!(
                "rows of {} for a width of {}, {} lanes for a gap of {}",
                self.row, self.width, self.lanes, self.gap
            ));
        }
        let values = self
            .channels
            .checked_mul(self.height)
            .and_then(|v| v.checked_mul(self.width))
            .filter(|&v| v <= max_values)
            .ok_or_else(|| format!("more than the {max_values} values accepted"))?;
        // The last slot of the last lane: (H-1, W-1) plus lane (s-1, s-1).
        let last = (self.height - 1)
            .checked_mul(self.row)
            .and_then(|v| v.checked_add(self.width - 1))
            .and_then(|v| v.checked_mul(self.gap))
            .and_then(|v| {
                let lane = self.row.checked_add(1)?.checked_mul(self.lanes - 1)?;
                v.checked_add(lane)
            })
            .filter(|&v| v < self.block);
        match last {
            Some(_) if values > 0 => Ok(()),
            _ => Err(format!(
                "a {}x{} channel with gap {} and rows of {} does not fit a block of {}",
                self.height, self.width, self.gap, self.row, self.block
            )),
        }
    }

    /// Values in the tensor, `C*H*W`.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Never true for a layout built by [`Self::input`].
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Layouts the plans make pass [`SlotLayout::check`]; forged ones that
    /// would index past a slot vector (or divide by zero) do not, and every
    /// layout that passes packs and unpacks inside its vectors.
    #[test]
    fn check_accepts_real_layouts_and_refuses_forged_ones() {
        let input = SlotLayout::input(3, 8, 8, 256).unwrap();
        let strided = input.strided(6, 4, 4, 2);
        let merged = strided.interleaved().unwrap();
        for layout in [input, strided, merged, strided.pooled(5)] {
            layout.check(256, 1 << 20).unwrap();
            let values = vec![1.0; layout.len()];
            assert_eq!(layout.unpack(&layout.pack(&values)), values);
        }
        let forged = [
            SlotLayout { slots: 512, ..input },
            SlotLayout { block: 0, ..input },
            SlotLayout { block: 96, ..input },
            SlotLayout { block: 512, ..input },
            SlotLayout { gap: 0, ..input },
            SlotLayout { row: 4, ..input },
            SlotLayout { lanes: 2, ..input },
            SlotLayout { lanes: 4, ..strided },
            SlotLayout { height: 9, ..input },
            SlotLayout { channels: 0, ..input },
            SlotLayout {
                channels: usize::MAX,
                ..input
            },
            SlotLayout {
                row: usize::MAX,
                height: 1,
                ..input
            },
        ];
        for layout in forged {
            assert!(layout.check(256, 1 << 20).is_err(), "{layout:?}");
        }
    }

    #[test]
    fn pack_unpack_round_trip_with_replicas_gaps_and_several_ciphertexts() {
        for (c, h, w, stride, slots) in [(3, 4, 4, 1, 128), (16, 8, 8, 2, 256), (5, 3, 5, 1, 64)] {
            let input = SlotLayout::input(c, h, w, slots).unwrap();
            let layout = input.strided(c, h / stride, w / stride, stride);
            let values: Vec<f64> = (0..layout.len()).map(|i| i as f64 + 0.5).collect();
            let packed = layout.pack(&values);
            assert_eq!(packed.len(), layout.cts());
            assert_eq!(layout.unpack(&packed), values);
            let nonzero: usize = packed.iter().flatten().filter(|v| **v != 0.0).count();
            let replicas = layout.blocks_per_ct() / layout.period();
            assert_eq!(nonzero, layout.len() * replicas.max(1), "{layout:?}");
        }
    }

    #[test]
    fn channels_repeat_with_the_padded_period() {
        let l = SlotLayout::input(3, 4, 4, 128).unwrap();
        assert_eq!((l.block, l.blocks_per_ct(), l.period(), l.cts()), (16, 8, 4, 1));
        let held: Vec<_> = (0..8).map(|b| l.channel_at(0, b)).collect();
        assert_eq!(held, [Some(0), Some(1), Some(2), None, Some(0), Some(1), Some(2), None]);
        let wide = SlotLayout::input(20, 4, 4, 128).unwrap();
        assert_eq!((wide.cts(), wide.period()), (4, 8));
        assert_eq!(wide.channel_at(2, 3), Some(19));
        assert_eq!(wide.channel_at(2, 4), None);
    }

    #[test]
    fn lanes_fill_the_gap_cells_in_morton_order() {
        let input = SlotLayout::input(3, 8, 8, 1024).unwrap();
        assert_eq!(input.interleaved(), None, "no gap, no room");
        let strided = input.strided(3, 2, 2, 4);
        let two = strided.interleaved().unwrap();
        let four = two.interleaved().unwrap();
        assert_eq!(four.interleaved(), None);
        assert_eq!((two.lane_count(), four.lane_count()), (4, 16));
        // Lane m of 4 lanes is quadrant (m >> 1, m & 1) of the 4x4 cell, and
        // quadrant k of the 16 holds lanes 4k..4k+4, each shifted by 2 rows or columns.
        let offsets: Vec<usize> = (0..16).map(|m| four.lane_offset(m)).collect();
        assert_eq!(&offsets[..4], &[0, 1, 8, 9]);
        for k in 0..4 {
            for m in 0..4 {
                assert_eq!(offsets[4 * k + m], two.lane_offset(k) * 2 + two.lane_offset(m));
            }
        }
        let mut cell: Vec<usize> = offsets.clone();
        cell.sort_unstable();
        let want: Vec<usize> = (0..4).flat_map(|y| (0..4).map(move |x| y * 8 + x)).collect();
        assert_eq!(cell, want, "the 16 lanes tile the 4x4 cell once each");

        let values: Vec<f64> = (0..four.len()).map(|i| i as f64 + 0.5).collect();
        let packed = four.pack(&values);
        let nonzero = packed.iter().flatten().filter(|v| **v != 0.0).count();
        let replicas = four.blocks_per_ct() / four.period();
        assert_eq!(nonzero, four.len() * replicas * 16, "the tensor in every lane");
        // A lane read back sees only its own slots.
        let mut lanes = packed.clone();
        for (slot, i) in four.lane_slots(0, 5) {
            lanes[0][slot] = -(i as f64);
        }
        assert_eq!(four.unpack_lane(&lanes, 4), values);
        let negated: Vec<f64> = (0..four.len()).map(|i| -(i as f64)).collect();
        assert_eq!(four.unpack_lane(&lanes, 5), negated);
    }

    #[test]
    fn channel_larger_than_a_ciphertext_is_refused() {
        assert!(matches!(
            SlotLayout::input(1, 16, 16, 128),
            Err(LayoutError::ChannelTooLarge { block: 256, .. })
        ));
    }
}
