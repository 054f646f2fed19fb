//! The command plumbing every family of kernels shares: one pending command
//! encoder that dispatches and copies are recorded into and that is
//! submitted as a whole at the next read-back or sync (or every
//! [`FLUSH_EVERY`] commands), constant buffers (uniforms, prime lists,
//! tables) cached by content, and read-back of buffers.
//!
//! Work recorded here runs in recording order, so a buffer may be read by
//! one recorded dispatch and overwritten by a later one: the queue orders
//! them. An error wgpu reports surfaces at the next [`CommandRecorder::sync`]
//! or read-back.

use super::device::{GpuContext, GpuError};
use bytemuck::Pod;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

/// Commands recorded before the pending encoder is submitted on its own,
/// bounding what one command buffer holds.
const FLUSH_EVERY: usize = 256;

/// Distinct constant buffers kept before the cache is emptied: a bound on
/// its memory (an inference uses a few hundred distinct contents).
const CONSTANT_CACHE_LIMIT: usize = 4096;

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

/// A device's pending command encoder and how many commands it holds.
///
/// Invariant: the encoder, when present, was created on `ctx`'s device and
/// holds `pending.1` commands not yet submitted; every buffer in
/// `constants` holds exactly its key's bytes and is never written.
pub(crate) struct CommandRecorder {
    ctx: Arc<GpuContext>,
    pending: Mutex<(Option<wgpu::CommandEncoder>, usize)>,
    constants: Mutex<HashMap<(bool, Vec<u8>), wgpu::Buffer>>,
}

impl CommandRecorder {
    /// An empty recorder on `ctx`.
    pub(crate) fn new(ctx: &Arc<GpuContext>) -> Self {
        CommandRecorder {
            ctx: ctx.clone(),
            pending: Mutex::new((None, 0)),
            constants: Mutex::new(HashMap::new()),
        }
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
        let buffer = self.ctx.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(if uniform { "uniform" } else { "constant" }),
            contents: bytes,
            usage: if uniform {
                wgpu::BufferUsages::UNIFORM
            } else {
                wgpu::BufferUsages::STORAGE
            },
        });
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
        self.ctx
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
            })
    }

    /// Queues one dispatch of `pipeline` with bind group 0 made of `entries`.
    pub(crate) fn dispatch(
        &self,
        pipeline: &wgpu::ComputePipeline,
        entries: &[wgpu::BindGroupEntry<'_>],
        groups: (u32, u32, u32),
    ) {
        let bind = self.ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries,
        });
        self.record(|encoder| {
            let mut pass = encoder.begin_compute_pass(&Default::default());
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
            Self::submit(&self.ctx, &mut pending);
        }
    }

    /// Submits the pending encoder, if any.
    pub(crate) fn flush(&self) {
        Self::submit(&self.ctx, &mut self.pending.lock().expect("pending encoder"));
    }

    fn submit(ctx: &GpuContext, pending: &mut (Option<wgpu::CommandEncoder>, usize)) {
        if let Some(encoder) = pending.0.take() {
            ctx.queue().submit([encoder.finish()]);
        }
        pending.1 = 0;
    }

    /// Submits the pending work and waits for it.
    ///
    /// # Errors
    /// [`GpuError::Runtime`] for an error wgpu reported.
    pub(crate) fn sync(&self) -> Result<(), GpuError> {
        self.flush();
        self.ctx.finish()
    }

    /// Copies all of `buffer` (a whole number of `T`) back to the host, after
    /// every command recorded before.
    ///
    /// # Errors
    /// [`GpuError::Runtime`] if the device reported an error or the mapping failed.
    pub(crate) fn read_buffer<T: Pod>(&self, buffer: &wgpu::Buffer) -> Result<Vec<T>, GpuError> {
        let size = buffer.size();
        let staging = self.ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("staging"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.record(|encoder| encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, size));
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
