//! Adapter discovery and selection, device creation with the adapter's own
//! limits, and GPU errors surfaced as values.

use super::profile::{KernelTime, Profiler};
use super::shaders::WideMul;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// Environment variable naming a substring of the adapter to use.
pub const ADAPTER_ENV: &str = "LATENT_HE_ADAPTER";

/// What can go wrong on the GPU side.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GpuError {
    /// No usable adapter (or none matching the filter).
    #[error("no GPU adapter{}: install a Vulkan, Metal or DX12 driver (on Linux without a GPU: mesa-vulkan-drivers), or use --backend cpu", filter.as_ref().map(|f| format!(" matching `{f}`")).unwrap_or_default())]
    NoAdapter {
        /// The name filter, if any.
        filter: Option<String>,
    },
    /// The device request failed.
    #[error("cannot open the GPU device `{adapter}`: {reason}")]
    Device {
        /// Adapter name.
        adapter: String,
        /// wgpu's reason.
        reason: String,
    },
    /// A validation error, out-of-memory or device loss reported by wgpu.
    #[error("GPU error: {0}")]
    Runtime(String),
    /// The adapter lacks a feature the request needs.
    #[error("the GPU adapter `{adapter}` has no {feature}")]
    Unsupported {
        /// Adapter name.
        adapter: String,
        /// The missing wgpu feature.
        feature: &'static str,
    },
    /// A buffer larger than the device allows in one binding.
    #[error("{what} needs {bytes} bytes in one binding; the adapter allows {limit}")]
    TooLarge {
        /// What was being allocated.
        what: &'static str,
        /// Bytes needed.
        bytes: u64,
        /// The adapter's limit.
        limit: u64,
    },
}

/// A short description of an adapter, as `latent-he devices` prints it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    /// Adapter name.
    pub name: String,
    /// Graphics API (Vulkan, Metal, Dx12, Gl).
    pub backend: String,
    /// Discrete, integrated, virtual, CPU or other.
    pub device_type: String,
    /// Largest buffer.
    pub max_buffer_size: u64,
    /// Largest storage binding.
    pub max_storage_buffer_binding_size: u64,
    /// Optional features the adapter offers (wgpu names).
    pub features: Vec<String>,
}

fn summary(adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    let limits = adapter.limits();
    AdapterSummary {
        name: info.name,
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        max_buffer_size: limits.max_buffer_size,
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
        features: adapter
            .features()
            .iter_names()
            .map(|(name, _)| name.to_string())
            .collect(),
    }
}

/// The pipeline cache file: wgpu's per-adapter name in [`crate::cache::cache_dir`].
fn pipeline_cache_file(info: &wgpu::AdapterInfo) -> Option<std::path::PathBuf> {
    let key = wgpu::util::pipeline_cache_key(info)?;
    Some(crate::cache::cache_dir()?.join(key))
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle())
}

/// Every adapter wgpu can see, in preference order (discrete GPUs first, the
/// GL duplicates of Vulkan devices last).
pub fn adapters() -> Vec<AdapterSummary> {
    ranked_adapters(&instance()).iter().map(summary).collect()
}

fn ranked_adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    let mut all = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    let rank = |a: &wgpu::Adapter| {
        let info = a.get_info();
        let device = match info.device_type {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Other => 3,
            wgpu::DeviceType::Cpu => 4,
        };
        let api = usize::from(info.backend == wgpu::Backend::Gl);
        (api, device)
    };
    all.sort_by_key(rank);
    all
}

/// An open device and queue, with the adapter's description and a slot that
/// collects errors wgpu reports asynchronously.
pub struct GpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter: AdapterSummary,
    limits: wgpu::Limits,
    wide_mul: WideMul,
    pipeline_cache: Option<(wgpu::PipelineCache, std::path::PathBuf)>,
    errors: Arc<Mutex<Vec<String>>>,
    /// The kernel profile in progress, if any (see [`Self::start_profile`]).
    profiler: Mutex<Option<Profiler>>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.adapter.name)
            .finish()
    }
}

impl GpuContext {
    /// Opens the best adapter whose name contains `filter` (case-insensitive),
    /// or `$LATENT_HE_ADAPTER` when `filter` is `None`, requesting the
    /// adapter's own limits rather than wgpu's defaults.
    ///
    /// # Errors
    /// [`GpuError::NoAdapter`], [`GpuError::Device`].
    pub fn new(filter: Option<&str>) -> Result<Arc<Self>, GpuError> {
        Self::open(filter, true)
    }

    /// As [`Self::new`]; `use_int64` false keeps the portable 16-bit-halves
    /// product even where the adapter offers `SHADER_INT64` (both give the
    /// same words; the tests run both).
    ///
    /// # Errors
    /// [`GpuError::NoAdapter`], [`GpuError::Device`].
    pub fn open(filter: Option<&str>, use_int64: bool) -> Result<Arc<Self>, GpuError> {
        let env_filter = std::env::var(ADAPTER_ENV).ok().filter(|s| !s.is_empty());
        let filter = filter.map(str::to_string).or(env_filter);
        let instance = instance();
        let adapter = ranked_adapters(&instance)
            .into_iter()
            .find(|a| {
                filter
                    .as_ref()
                    .is_none_or(|f| a.get_info().name.to_lowercase().contains(&f.to_lowercase()))
            })
            .ok_or(GpuError::NoAdapter { filter })?;
        let limits = adapter.limits();
        let int64 = use_int64 && adapter.features().contains(wgpu::Features::SHADER_INT64);
        let mut required_features = wgpu::Features::empty();
        if int64 {
            required_features |= wgpu::Features::SHADER_INT64;
        }
        let cache_file = adapter
            .features()
            .contains(wgpu::Features::PIPELINE_CACHE)
            .then(|| pipeline_cache_file(&adapter.get_info()))
            .flatten();
        if cache_file.is_some() {
            required_features |= wgpu::Features::PIPELINE_CACHE;
        }
        required_features |= adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("latent-he"),
            required_features,
            required_limits: limits.clone(),
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        };
        let summary = summary(&adapter);
        let (device, queue) =
            pollster::block_on(adapter.request_device(&descriptor)).map_err(|e| GpuError::Device {
                adapter: summary.name.clone(),
                reason: e.to_string(),
            })?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().expect("error sink").push(e.to_string());
        }));
        let wide_mul = if int64 { WideMul::Int64 } else { WideMul::Portable };
        let pipeline_cache = cache_file.map(|path| {
            let data = std::fs::read(&path).ok();
            // SAFETY: the data was written by `save_pipeline_cache` from a cache
            // of an adapter with the same `pipeline_cache_key` (the file name);
            // `fallback: true` makes wgpu start empty if the driver rejects it.
            let cache = unsafe {
                device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                    label: Some("latent-he pipelines"),
                    data: data.as_deref(),
                    fallback: true,
                })
            };
            (cache, path)
        });
        Ok(Arc::new(Self {
            device,
            queue,
            adapter: summary,
            limits,
            wide_mul,
            pipeline_cache,
            errors,
            profiler: Mutex::new(None),
        }))
    }

    /// The device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// The adapter this context runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }

    /// How the kernels build 64-bit products on this device.
    pub fn wide_mul(&self) -> WideMul {
        self.wide_mul
    }

    /// The driver's pipeline cache, where the adapter supports one (Vulkan).
    pub fn pipeline_cache(&self) -> Option<&wgpu::PipelineCache> {
        self.pipeline_cache.as_ref().map(|(cache, _)| cache)
    }

    /// Writes the pipeline cache to its file so that the next run skips
    /// shader compilation. Best effort: a cache that cannot be written only
    /// costs compile time later, so failures are ignored.
    pub fn save_pipeline_cache(&self) {
        let Some((cache, path)) = &self.pipeline_cache else {
            return;
        };
        let Some(data) = cache.get_data() else { return };
        let Some(dir) = path.parent() else { return };
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        let _ = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, &data))
            .and_then(|()| std::fs::rename(&tmp, path));
    }

    /// Starts timing every dispatch on this device, per kernel entry point,
    /// until [`Self::finish_profile`] (a profile already running restarts).
    ///
    /// # Errors
    /// [`GpuError::Unsupported`] without `TIMESTAMP_QUERY`.
    pub fn start_profile(&self) -> Result<(), GpuError> {
        if !self.device.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            return Err(GpuError::Unsupported {
                adapter: self.adapter.name.clone(),
                feature: "TIMESTAMP_QUERY",
            });
        }
        *self.profile() = Some(Profiler::new(&self.device, self.queue.get_timestamp_period()));
        Ok(())
    }

    /// Ends the profile: GPU time and dispatches per kernel entry point,
    /// empty when none was running. Every recorder on this device must
    /// have submitted its work (a sync or a read-back does).
    ///
    /// # Errors
    /// [`GpuError::Runtime`] when the timestamps cannot be read back.
    pub fn finish_profile(&self) -> Result<BTreeMap<String, KernelTime>, GpuError> {
        let Some(mut profiler) = self.profile().take() else {
            return Ok(BTreeMap::new());
        };
        profiler.harvest(&self.device, &self.queue)?;
        Ok(profiler.totals().clone())
    }

    fn profile(&self) -> std::sync::MutexGuard<'_, Option<Profiler>> {
        self.profiler.lock().expect("profiler")
    }

    /// The timestamp writes of the next dispatch, of `kernel`, while a
    /// profile runs. `flush` submits the caller's pending work: it runs
    /// first when the query set is full, then the set is read back.
    ///
    /// # Errors
    /// [`GpuError::Runtime`] when a full set cannot be read back.
    pub(crate) fn profile_slot(
        &self,
        kernel: &str,
        flush: impl FnOnce(),
    ) -> Result<Option<(wgpu::QuerySet, u32)>, GpuError> {
        let mut profile = self.profile();
        let Some(profiler) = profile.as_mut() else {
            return Ok(None);
        };
        if profiler.full() {
            flush();
            profiler.harvest(&self.device, &self.queue)?;
        }
        Ok(Some(profiler.next(kernel)))
    }

    /// The limits the device was opened with.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// Waits for all submitted work and returns the first error wgpu
    /// reported since the last check, if any.
    ///
    /// # Errors
    /// [`GpuError::Runtime`].
    pub fn finish(&self) -> Result<(), GpuError> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Runtime(e.to_string()))?;
        let mut errors = self.errors.lock().expect("error sink");
        if errors.is_empty() {
            Ok(())
        } else {
            let first = errors.remove(0);
            errors.clear();
            let detail: Vec<&str> = first.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            Err(GpuError::Runtime(detail.join(" / ")))
        }
    }
}
