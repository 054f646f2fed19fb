//! Counts of the work the GPU backend records: what a profile of any device
//! would show before timing it. The counts depend only on the operations,
//! the parameters and the adapter's binding size (which sets how many
//! twiddle tables and key digits one dispatch can bind), so tests hold
//! budgets on them on lavapipe.

use serde::Serialize;

/// Declares [`GpuWork`] with its fields listed once, and the one
/// field-by-field combinator every arithmetic on it goes through.
macro_rules! gpu_work {
    ($($(#[doc = $doc:literal])* $field:ident,)*) => {
        /// Work recorded by one GPU context since it was opened; the
        /// difference of two snapshots ([`GpuWork::since`]) is the work of
        /// what ran between them.
        ///
        /// Invariant: every field only grows on a live context.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
        pub struct GpuWork {
            $($(#[doc = $doc])* pub $field: u64,)*
        }

        impl GpuWork {
            fn zip_with(&self, other: &GpuWork, f: impl Fn(u64, u64) -> u64) -> GpuWork {
                GpuWork { $($field: f(self.$field, other.$field),)* }
            }
        }
    };
}

gpu_work! {
    /// Compute dispatches recorded.
    dispatches,
    /// Workgroups over all dispatches.
    workgroups,
    /// Buffer-to-buffer copies recorded.
    copies,
    /// Bytes those copies move.
    copy_bytes,
    /// Buffer clears (zero fills) recorded.
    clears,
    /// Bytes those clears write.
    clear_bytes,
    /// Device buffers created (a pooled buffer handed out again is not one).
    buffers_created,
    /// Bytes of the buffers created.
    buffer_bytes,
    /// Bind groups created (a cached one used again is not one).
    bind_groups,
    /// Command buffers submitted to the queue.
    submits,
    /// Host waits for the device (syncs and read-backs).
    host_waits,
    /// Buffers read back to the host.
    readbacks,
    /// Bytes read back.
    readback_bytes,
    /// Host-to-device uploads.
    uploads,
    /// Bytes uploaded.
    upload_bytes,
    /// Bytes of the storage buffers each dispatch binds, summed over
    /// dispatches: an upper estimate of the kernels' memory traffic (a
    /// kernel reads at most what it binds, once, unless it gathers).
    bound_bytes,
}

impl GpuWork {
    /// The work done between `earlier` and `self` (field by field).
    pub fn since(&self, earlier: &GpuWork) -> GpuWork {
        self.zip_with(earlier, u64::saturating_sub)
    }

    /// Every field divided by `count` (rounded down): the work per image of
    /// a run over `count` images. `count` 0 gives the work unchanged.
    pub fn per(&self, count: u64) -> GpuWork {
        self.zip_with(self, |a, _| a / count.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_and_per_work_field_by_field() {
        let earlier = GpuWork {
            dispatches: 3,
            bound_bytes: 100,
            ..Default::default()
        };
        let later = GpuWork {
            dispatches: 11,
            copies: 4,
            bound_bytes: 500,
            ..Default::default()
        };
        let d = later.since(&earlier);
        assert_eq!((d.dispatches, d.copies, d.bound_bytes, d.submits), (8, 4, 400, 0));
        let p = d.per(4);
        assert_eq!((p.dispatches, p.copies, p.bound_bytes), (2, 1, 100));
        assert_eq!(d.per(0), d);
    }
}
