//! The command plumbing every family of kernels shares: one pending command
//! encoder that dispatches, copies and clears are recorded into and that is
//! submitted as a whole at the next read-back or sync (or every
//! [`FLUSH_EVERY`] commands), constant buffers (uniforms, prime lists,
//! tables) cached by content, bind groups cached by what they bind, a pool
//! of storage buffers, read-back of buffers, and the counts of all of it
//! ([`GpuWork`]).
//!
//! Work recorded here runs in recording order, so a buffer may be read by
//! one recorded dispatch and overwritten by a later one: the queue orders
//! them. That is also why a pooled buffer may be handed out again as soon
//! as its last handle drops, even while recorded commands still use it.
//! An error wgpu reports surfaces at the next [`CommandRecorder::sync`] or
//! read-back.

use super::device::{GpuContext, GpuError};
use super::work::GpuWork;
use bytemuck::Pod;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use wgpu::util::DeviceExt;

/// Commands recorded before the pending encoder is submitted on its own,
/// bounding what one command buffer holds.
const FLUSH_EVERY: usize = 256;

/// Distinct constant buffers kept before the cache is emptied: a bound on
/// its memory (an inference uses a few hundred distinct contents).
const CONSTANT_CACHE_LIMIT: usize = 4096;

/// Bind groups kept before the cache is emptied (each holds its buffers
/// alive, so this also bounds the memory the cache pins).
const BIND_GROUP_CACHE_LIMIT: usize = 8192;

/// How many bytes of idle buffers a pool keeps before it releases the
/// buffers idle longest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdleLimit {
    /// Keep every idle buffer (a workload with few sizes, each reused).
    Unbounded,
    /// Keep at most this many bytes idle.
    Bytes(u64),
}

/// Buffer usages of every storage buffer the kernels read or write: bound
/// as storage, copied from (read-back) and to (uploads, limb copies).
pub(crate) fn storage_usage() -> wgpu::BufferUsages {
    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
}

/// A bind group entry holding all of `buffer`.
pub(crate) fn entry(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    }
}

/// Idle storage buffers, most recently returned last.
///
/// Invariant: `idle_bytes` is the sum of the sizes in `idle`; no buffer in
/// `idle` has a live [`PooledBuffer`] handle.
struct PoolState {
    idle: VecDeque<wgpu::Buffer>,
    idle_bytes: u64,
    limit: IdleLimit,
}

/// A storage buffer that returns to its recorder's pool when the last
/// handle drops. Dereferences to the `wgpu::Buffer`.
pub(crate) struct PooledBuffer {
    buffer: wgpu::Buffer,
    pool: Arc<Mutex<PoolState>>,
}

impl std::ops::Deref for PooledBuffer {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        let Ok(mut pool) = self.pool.lock() else { return };
        pool.idle_bytes += self.buffer.size();
        pool.idle.push_back(self.buffer.clone());
        let IdleLimit::Bytes(limit) = pool.limit else { return };
        while pool.idle_bytes > limit {
            let Some(oldest) = pool.idle.pop_front() else { break };
            pool.idle_bytes -= oldest.size();
        }
    }
}

/// A shared handle on a pooled storage buffer.
pub(crate) type DeviceBuffer = Arc<PooledBuffer>;

/// What a cached bind group binds: the pipeline, then each entry's binding,
/// buffer, offset and size.
type BindKey = (
    wgpu::ComputePipeline,
    Vec<(u32, wgpu::Buffer, u64, Option<wgpu::BufferSize>)>,
);

/// A bind group entry holding `size` bytes of `buffer` from `offset` (all
/// the rest when `size` is `None`).
pub(crate) fn entry_range(
    binding: u32,
    buffer: &wgpu::Buffer,
    offset: u64,
    size: Option<u64>,
) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer,
            offset,
            size: size.and_then(wgpu::BufferSize::new),
        }),
    }
}

/// A device's pending command encoder and how many commands it holds.
///
/// Invariant: the encoder, when present, was created on `ctx`'s device and
/// holds `pending.1` commands not yet submitted; every buffer in
/// `constants` holds exactly its key's bytes and is never written; `work`
/// counts everything recorded, created and read through this recorder.
pub(crate) struct CommandRecorder {
    ctx: Arc<GpuContext>,
    pending: Mutex<(Option<wgpu::CommandEncoder>, usize)>,
    constants: Mutex<HashMap<(bool, Vec<u8>), wgpu::Buffer>>,
    bind_groups: Mutex<HashMap<BindKey, wgpu::BindGroup>>,
    pool: Arc<Mutex<PoolState>>,
    work: Mutex<GpuWork>,
    /// The entry point of every pipeline made here (the profile's names).
    entry_points: Mutex<HashMap<wgpu::ComputePipeline, String>>,
}

impl CommandRecorder {
    /// An empty recorder on `ctx` whose buffer pool keeps `idle` bytes idle.
    pub(crate) fn new(ctx: &Arc<GpuContext>, idle: IdleLimit) -> Self {
        CommandRecorder {
            ctx: ctx.clone(),
            pending: Mutex::new((None, 0)),
            constants: Mutex::new(HashMap::new()),
            bind_groups: Mutex::new(HashMap::new()),
            pool: Arc::new(Mutex::new(PoolState {
                idle: VecDeque::new(),
                idle_bytes: 0,
                limit: idle,
            })),
            work: Mutex::new(GpuWork::default()),
            entry_points: Mutex::new(HashMap::new()),
        }
    }

    /// What this recorder has counted so far.
    pub(crate) fn work(&self) -> GpuWork {
        *self.count()
    }

    fn count(&self) -> MutexGuard<'_, GpuWork> {
        self.work.lock().expect("work counters")
    }

    /// A storage buffer of `bytes` bytes with unspecified contents, from the
    /// pool when one of that size is idle.
    pub(crate) fn storage(&self, bytes: u64) -> DeviceBuffer {
        let reused = {
            let mut pool = self.pool.lock().expect("buffer pool");
            let found = pool.idle.iter().rposition(|b| b.size() == bytes);
            let reused = found.and_then(|i| pool.idle.remove(i));
            if reused.is_some() {
                pool.idle_bytes -= bytes;
            }
            reused
        };
        let buffer = reused.unwrap_or_else(|| {
            let mut work = self.count();
            work.buffers_created += 1;
            work.buffer_bytes += bytes;
            self.ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("storage"),
                size: bytes,
                usage: storage_usage(),
                mapped_at_creation: false,
            })
        });
        Arc::new(PooledBuffer {
            buffer,
            pool: self.pool.clone(),
        })
    }

    /// A storage buffer of `bytes` bytes, all zero (a pooled buffer and a
    /// recorded clear).
    pub(crate) fn zeroed(&self, bytes: u64) -> DeviceBuffer {
        let buffer = self.storage(bytes);
        {
            let mut work = self.count();
            work.clears += 1;
            work.clear_bytes += bytes;
        }
        self.record(|encoder| encoder.clear_buffer(&buffer, 0, None));
        buffer
    }

    /// A new storage buffer holding `bytes`, written at creation (a pooled
    /// buffer could still be read by recorded commands, which a queued
    /// write would overtake); it joins the pool when its last handle drops.
    pub(crate) fn upload(&self, bytes: &[u8]) -> DeviceBuffer {
        let buffer = self.created_init("upload", bytes, storage_usage());
        Arc::new(PooledBuffer {
            buffer,
            pool: self.pool.clone(),
        })
    }

    /// A buffer holding `bytes` with `usage`, outside the pool (tables,
    /// weights, constants), counted as created and uploaded.
    pub(crate) fn created_init(&self, label: &str, bytes: &[u8], usage: wgpu::BufferUsages) -> wgpu::Buffer {
        {
            let mut work = self.count();
            work.buffers_created += 1;
            work.buffer_bytes += bytes.len() as u64;
            work.uploads += 1;
            work.upload_bytes += bytes.len() as u64;
        }
        self.ctx.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytes,
            usage,
        })
    }

    /// Records a copy of `size` bytes from `src` at `from` to `dst` at `to`.
    pub(crate) fn copy(&self, src: &wgpu::Buffer, from: u64, dst: &wgpu::Buffer, to: u64, size: u64) {
        {
            let mut work = self.count();
            work.copies += 1;
            work.copy_bytes += size;
        }
        self.record(|encoder| encoder.copy_buffer_to_buffer(src, from, dst, to, size));
    }

    /// A uniform buffer holding `value` (shared with every other request for
    /// the same bytes; never written).
    pub(crate) fn uniform<T: Pod>(&self, value: &T) -> wgpu::Buffer {
        self.constant(true, bytemuck::bytes_of(value))
    }

    /// A read-only storage buffer holding `words` (shared as [`Self::uniform`]).
    pub(crate) fn constant_storage(&self, words: &[u32]) -> wgpu::Buffer {
        self.constant(false, bytemuck::cast_slice(words))
    }

    /// The cached buffer holding `bytes`, created on first use: creating a
    /// buffer per dispatch costs more than the dispatch on a real GPU.
    fn constant(&self, uniform: bool, bytes: &[u8]) -> wgpu::Buffer {
        let mut cache = self.constants.lock().expect("constant cache");
        let key = (uniform, bytes.to_vec());
        if let Some(buffer) = cache.get(&key) {
            return buffer.clone();
        }
        if cache.len() >= CONSTANT_CACHE_LIMIT {
            cache.clear();
        }
        let buffer = self.created_init(
            if uniform { "uniform" } else { "constant" },
            bytes,
            if uniform {
                wgpu::BufferUsages::UNIFORM
            } else {
                wgpu::BufferUsages::STORAGE
            },
        );
        cache.insert(key, buffer.clone());
        buffer
    }

    /// Compiles entry point `entry` of `module` with the pipeline-overridable
    /// constants `constants`, through the context's pipeline cache.
    pub(crate) fn pipeline(
        &self,
        module: &wgpu::ShaderModule,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> wgpu::ComputePipeline {
        let pipeline = self
            .ctx
            .device()
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    ..Default::default()
                },
                cache: self.ctx.pipeline_cache(),
            });
        self.entry_points
            .lock()
            .expect("entry points")
            .insert(pipeline.clone(), entry.to_string());
        pipeline
    }

    /// Queues one dispatch of `pipeline` with bind group 0 made of `entries`
    /// (buffer bindings only), reusing the bind group of an earlier dispatch
    /// that bound the same buffers.
    pub(crate) fn dispatch(
        &self,
        pipeline: &wgpu::ComputePipeline,
        entries: &[wgpu::BindGroupEntry<'_>],
        groups: (u32, u32, u32),
    ) {
        let bound: Vec<(u32, wgpu::Buffer, u64, Option<wgpu::BufferSize>)> = entries
            .iter()
            .map(|e| match &e.resource {
                wgpu::BindingResource::Buffer(b) => (e.binding, b.buffer.clone(), b.offset, b.size),
                _ => unreachable!("the kernels bind buffers only"),
            })
            .collect();
        let bound_bytes: u64 = bound
            .iter()
            .map(|(_, buffer, offset, size)| size.map_or(buffer.size() - offset, |s| s.get()))
            .sum();
        let key: BindKey = (pipeline.clone(), bound);
        let bind = {
            let mut cache = self.bind_groups.lock().expect("bind group cache");
            match cache.get(&key) {
                Some(bind) => bind.clone(),
                None => {
                    if cache.len() >= BIND_GROUP_CACHE_LIMIT {
                        cache.clear();
                    }
                    let bind = self.ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
                        label: None,
                        layout: &pipeline.get_bind_group_layout(0),
                        entries,
                    });
                    self.count().bind_groups += 1;
                    cache.insert(key, bind.clone());
                    bind
                }
            }
        };
        {
            let mut work = self.count();
            work.dispatches += 1;
            work.workgroups += u64::from(groups.0) * u64::from(groups.1) * u64::from(groups.2);
            work.bound_bytes += bound_bytes;
        }
        let kernel = self.entry_points.lock().expect("entry points").get(pipeline).cloned();
        // A profile that cannot be read back loses its timings, never the work.
        let timestamps = self
            .ctx
            .profile_slot(kernel.as_deref().unwrap_or("unnamed"), || self.flush())
            .unwrap_or(None);
        self.record(|encoder| {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: timestamps
                    .as_ref()
                    .map(|(queries, first)| wgpu::ComputePassTimestampWrites {
                        query_set: queries,
                        beginning_of_pass_write_index: Some(*first),
                        end_of_pass_write_index: Some(first + 1),
                    }),
            });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, groups.2);
        });
    }

    /// Records commands into the pending encoder; they run, in order, at the
    /// next [`Self::sync`] or read-back, or once [`FLUSH_EVERY`] commands
    /// have accumulated.
    pub(crate) fn record(&self, f: impl FnOnce(&mut wgpu::CommandEncoder)) {
        let mut pending = self.pending.lock().expect("pending encoder");
        let encoder = pending
            .0
            .get_or_insert_with(|| self.ctx.device().create_command_encoder(&Default::default()));
        f(encoder);
        pending.1 += 1;
        if pending.1 >= FLUSH_EVERY {
            self.submit(&mut pending);
        }
    }

    /// Submits the pending encoder, if any.
    pub(crate) fn flush(&self) {
        self.submit(&mut self.pending.lock().expect("pending encoder"));
    }

    fn submit(&self, pending: &mut (Option<wgpu::CommandEncoder>, usize)) {
        if let Some(encoder) = pending.0.take() {
            self.count().submits += 1;
            self.ctx.queue().submit([encoder.finish()]);
        }
        pending.1 = 0;
    }

    /// Submits the pending work and waits for it.
    ///
    /// # Errors
    /// [`GpuError::Runtime`] for an error wgpu reported.
    pub(crate) fn sync(&self) -> Result<(), GpuError> {
        self.flush();
        self.count().host_waits += 1;
        self.ctx.finish()
    }

    /// Copies bytes `offset..offset + size` of `buffer` (a whole number of
    /// `T`) back to the host, after every command recorded before.
    ///
    /// # Errors
    /// [`GpuError::Runtime`] if the device reported an error or the mapping failed.
    pub(crate) fn read_buffer<T: Pod>(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        size: u64,
    ) -> Result<Vec<T>, GpuError> {
        {
            let mut work = self.count();
            work.buffers_created += 1;
            work.buffer_bytes += size;
            work.readbacks += 1;
            work.readback_bytes += size;
            work.host_waits += 1;
        }
        let staging = self.ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("staging"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.copy(buffer, offset, &staging, 0, size);
        self.flush();
        let (sender, receiver) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = sender.send(r);
        });
        self.ctx.finish()?;
        receiver
            .recv()
            .map_err(|e| GpuError::Runtime(e.to_string()))?
            .map_err(|e| GpuError::Runtime(e.to_string()))?;
        let values = {
            let view = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| GpuError::Runtime(e.to_string()))?;
            bytemuck::pod_collect_to_vec::<u8, T>(&view)
        };
        staging.unmap();
        Ok(values)
    }
}
