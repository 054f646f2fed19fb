//! GPU time per kernel from timestamp queries, where the adapter has them
//! (`TIMESTAMP_QUERY`; lavapipe and NVIDIA's Vulkan driver do): while a
//! profile runs, every dispatch's compute pass writes a timestamp at its
//! beginning and its end, and the differences are summed per kernel entry
//! point. The queries are resolved and read back each time the query set
//! fills and when the profile ends, so a profile of any length costs a few
//! host waits.

use super::device::GpuError;
use serde::Serialize;
use std::collections::BTreeMap;

/// Dispatches a query set times before it is read back.
const DISPATCHES_PER_SET: u32 = 2048;

/// What a profile measured of one kernel entry point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct KernelTime {
    /// Dispatches timed.
    pub dispatches: u64,
    /// Their GPU time, in milliseconds.
    pub gpu_ms: f64,
}

/// A profile in progress: the query set, the buffers its results pass
/// through, the kernel of each query pair written so far, and the sums.
///
/// Invariant: `kernels.len() <= DISPATCHES_PER_SET`; query pair `i`
/// (queries `2i`, `2i + 1`) belongs to `kernels[i]`.
pub(crate) struct Profiler {
    queries: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    staging: wgpu::Buffer,
    kernels: Vec<String>,
    totals: BTreeMap<String, KernelTime>,
    period_ns: f64,
}

impl Profiler {
    /// A profiler on `device`, whose queue counts `period_ns` per tick.
    pub(crate) fn new(device: &wgpu::Device, period_ns: f32) -> Self {
        let bytes = u64::from(2 * DISPATCHES_PER_SET) * 8;
        let buffer = |label, usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        Profiler {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kernel timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * DISPATCHES_PER_SET,
            }),
            resolved: buffer(
                "resolved timestamps",
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            ),
            staging: buffer(
                "timestamps read back",
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            kernels: Vec::new(),
            totals: BTreeMap::new(),
            period_ns: f64::from(period_ns),
        }
    }

    /// Whether every query pair holds a timestamp not yet read back.
    pub(crate) fn full(&self) -> bool {
        self.kernels.len() as u32 >= DISPATCHES_PER_SET
    }

    /// The timestamp writes of the next dispatch, a run of `kernel`.
    ///
    /// # Panics
    /// When [`Self::full`]: the caller reads back first.
    pub(crate) fn next(&mut self, kernel: &str) -> (wgpu::QuerySet, u32) {
        assert!(!self.full(), "the query set is read back before it overflows");
        self.kernels.push(kernel.to_string());
        (self.queries.clone(), 2 * (self.kernels.len() as u32 - 1))
    }

    /// Reads back the timestamps written so far (the dispatches writing them
    /// must have been submitted) and adds them to the sums.
    ///
    /// # Errors
    /// [`GpuError::Runtime`] when the read-back fails.
    pub(crate) fn harvest(&mut self, device: &wgpu::Device, queue: &wgpu::Queue) -> Result<(), GpuError> {
        if self.kernels.is_empty() {
            return Ok(());
        }
        let count = 2 * self.kernels.len() as u32;
        let bytes = u64::from(count) * 8;
        let mut encoder = device.create_command_encoder(&Default::default());
        encoder.resolve_query_set(&self.queries, 0..count, &self.resolved, 0);
        encoder.copy_buffer_to_buffer(&self.resolved, 0, &self.staging, 0, bytes);
        queue.submit([encoder.finish()]);
        let (sender, receiver) = std::sync::mpsc::channel();
        let slice = self.staging.slice(..bytes);
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = sender.send(r);
        });
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Runtime(e.to_string()))?;
        receiver
            .recv()
            .map_err(|e| GpuError::Runtime(e.to_string()))?
            .map_err(|e| GpuError::Runtime(e.to_string()))?;
        let ticks: Vec<u64> = {
            let view = slice.get_mapped_range().map_err(|e| GpuError::Runtime(e.to_string()))?;
            bytemuck::pod_collect_to_vec(&view)
        };
        self.staging.unmap();
        for (kernel, pair) in self.kernels.drain(..).zip(ticks.chunks_exact(2)) {
            let total = self.totals.entry(kernel).or_default();
            total.dispatches += 1;
            total.gpu_ms += pair[1].saturating_sub(pair[0]) as f64 * self.period_ns / 1e6;
        }
        Ok(())
    }

    /// The sums per kernel entry point.
    pub(crate) fn totals(&self) -> &BTreeMap<String, KernelTime> {
        &self.totals
    }
}
