//! Device setup and the small, checked primitives every stage's host code
//! uses: shader and pipeline creation, buffers, submission, read-back.
//!
//! Nothing here panics on a GPU failure: validation errors are caught with
//! error scopes (and, as a last resort, an uncaptured-error handler that
//! records instead of panicking), and a lost device is remembered, so every
//! failure surfaces as [`VladError::Gpu`] and `auto` can fall back to the CPU.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use crate::backend::gpu::bind_cache::{BindCache, BindKey, Counts};
use crate::backend::gpu::tensor_cores::TensorCores;
use crate::error::{Result, VladError};

pub use crate::backend::options::GpuOptions;

/// An adapter, its device and queue, and what they can do.
pub struct GpuContext {
    /// The logical device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// Name, backend, driver of the adapter.
    pub info: wgpu::AdapterInfo,
    /// Features enabled on the device (a subset of the adapter's).
    pub features: wgpu::Features,
    /// Limits of the device (the adapter's own).
    pub limits: wgpu::Limits,
    /// Subgroup size range reported by the adapter (only meaningful when
    /// `features` contains `SUBGROUP`).
    pub subgroup_sizes: (u32, u32),
    /// Whether the device was opened with cooperative matrices for the
    /// tensor-core assign (`VLAD_GPU_TENSOR_CORES=1`), and if not, why.
    pub tensor_cores: TensorCores,
    max_binding_bytes: u64,
    vulkan_memory_model: bool,
    uncaptured: Arc<Mutex<Vec<String>>>,
    lost: Arc<AtomicBool>,
    /// Uniforms and bind groups reused between calls.
    bindings: BindCache,
}

/// Features used when the adapter has them; none is required.
const WANTED_FEATURES: wgpu::Features = wgpu::Features::SUBGROUP
    .union(wgpu::Features::TIMESTAMP_QUERY)
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS)
    // f16 arithmetic: the tensor-core assign's tiles (and its emulated
    // variant, tests/gpu/coop_emulated.rs, on adapters without
    // cooperative matrices).
    .union(wgpu::Features::SHADER_F16)
    // Lets the tensor-core assign hand the driver SPIR-V rewritten for the
    // Vulkan memory model (`compat::memory_model`).
    .union(wgpu::Features::PASSTHROUGH_SHADERS);

impl GpuContext {
    /// Find an adapter (`VLAD_ADAPTER`, else the best kind; honouring
    /// `WGPU_BACKEND` and friends) and open a
    /// device with its full limits and the optional features it has.
    /// No adapter → [`VladError::BackendUnavailable`].
    pub fn new(options: &GpuOptions) -> Result<Self> {
        // The adapter SPEC §7's rule picks (VLAD_ADAPTER, else the best
        // kind): `gpu::adapters`.
        // One device opened at a time per process: opening many at once (a
        // test harness's threads, each with its own context) stalled inside
        // the NVIDIA driver (BENCHMARKS.md, "Tests in parallel"); opening
        // is rare and takes milliseconds, so this costs a real caller
        // nothing.
        static OPENING: Mutex<()> = Mutex::new(());
        let _opening = OPENING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (adapter, _) = crate::backend::gpu::adapters::select(options)?;
        let info = adapter.get_info();
        let features = adapter.features() & WANTED_FEATURES;
        let limits = adapter.limits();
        let subgroup_sizes = (info.subgroup_min_size, info.subgroup_max_size);
        // Tensor cores are opt-in; a device that refuses them is opened
        // without them (the plain assign runs, and says why).
        let tensor =
            crate::backend::gpu::tensor_cores::device_request(&adapter, options.tensor_cores);
        let open = |extra: wgpu::Features, experimental: wgpu::ExperimentalFeatures| {
            pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
                label: Some("vlad"),
                required_features: features | extra,
                required_limits: limits.clone(),
                experimental_features: experimental,
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            }))
        };
        let refused = |e: wgpu::RequestDeviceError| {
            VladError::BackendUnavailable(format!(
                "GPU adapter {:?} refused a device: {e}",
                info.name
            ))
        };
        let (device, queue, tensor_cores) = match open(tensor.features, tensor.experimental) {
            Ok((device, queue)) => (device, queue, tensor.status),
            Err(e) if tensor.status.is_enabled() => {
                let (device, queue) = open(
                    wgpu::Features::empty(),
                    wgpu::ExperimentalFeatures::disabled(),
                )
                .map_err(refused)?;
                let reason = format!("the device refused cooperative matrices: {e}");
                (device, queue, TensorCores::Unavailable(reason))
            }
            Err(e) => return Err(refused(e)),
        };
        let features = match tensor_cores {
            TensorCores::Enabled { .. } => features | tensor.features,
            _ => features,
        };

        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut errors) = sink.lock() {
                errors.push(e.to_string());
            }
        }));
        let lost = Arc::new(AtomicBool::new(false));
        let lost_flag = lost.clone();
        device.set_device_lost_callback(move |_reason, _message| {
            lost_flag.store(true, Ordering::SeqCst);
        });

        let adapter_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let max_binding_bytes = [Some(adapter_binding), options.max_binding_bytes]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(adapter_binding)
            // Stages bind whole rows; below a few KiB nothing useful fits.
            .max(4096)
            & !3;

        Ok(GpuContext {
            device,
            queue,
            info,
            features,
            limits,
            subgroup_sizes,
            tensor_cores,
            max_binding_bytes,
            vulkan_memory_model: options.vulkan_memory_model,
            uncaptured,
            lost,
            bindings: BindCache::default(),
        })
    }

    /// The adapter's name, e.g. "NVIDIA H100" or "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub fn adapter_name(&self) -> String {
        format!("{} ({:?})", self.info.name, self.info.backend)
    }

    /// Whether the adapter is a software rasterizer (lavapipe, WARP…): its
    /// timings are not GPU speed.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// The largest storage binding a plan may use, in bytes (multiple of 4).
    pub fn max_binding_bytes(&self) -> u64 {
        self.max_binding_bytes
    }

    /// Largest number of workgroups per dispatch dimension.
    pub fn max_workgroups_per_dim(&self) -> u32 {
        self.limits.max_compute_workgroups_per_dimension
    }

    /// Whether subgroup operations may be used in shaders.
    pub fn has_subgroups(&self) -> bool {
        self.features.contains(wgpu::Features::SUBGROUP)
    }

    /// Whether GPU timestamps can be written inside compute passes.
    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Run `f` inside validation and out-of-memory error scopes; any error
    /// becomes [`VladError::Gpu`] naming `what`.
    pub fn checked<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let validation_error = pollster::block_on(validation.pop());
        let oom_error = pollster::block_on(oom.pop());
        if let Some(e) = validation_error.or(oom_error) {
            return Err(VladError::Gpu(format!("{what}: {e}")));
        }
        self.check_health()?;
        Ok(out)
    }

    /// Whether the device was lost (driver reset, GPU removed, or
    /// [`GpuContext::simulate_loss`]): nothing on it can run again, a new
    /// context must be made.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Test hook: lose the device now, as a driver reset would. The device
    /// is destroyed (every later call on it fails) and marked lost.
    #[doc(hidden)]
    pub fn simulate_loss(&self) {
        self.lost.store(true, Ordering::SeqCst);
        self.device.destroy();
    }

    /// Fail if the device was lost or an error escaped every scope.
    pub fn check_health(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(VladError::Gpu("the GPU device was lost".to_string()));
        }
        if let Ok(mut errors) = self.uncaptured.lock()
            && let Some(first) = errors.first().cloned()
        {
            errors.clear();
            return Err(VladError::Gpu(first));
        }
        Ok(())
    }

    /// Compile WGSL source (a file from `shaders/`) into a compute pipeline
    /// for entry point `entry`, with the layout derived from the shader.
    pub fn pipeline(&self, label: &str, wgsl: &str, entry: &str) -> Result<wgpu::ComputePipeline> {
        if self.vulkan_memory_model {
            return self.pipeline_vulkan_memory_model(label, wgsl, entry);
        }
        self.checked(&format!("compiling {label}"), || {
            let module = self
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(label),
                    source: wgpu::ShaderSource::Wgsl(wgsl.into()),
                });
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(label),
                    layout: None,
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: Default::default(),
                    cache: None,
                })
        })
    }

    /// Whether [`GpuContext::pipeline_vulkan_memory_model`] can run here.
    pub fn can_rewrite_memory_model(&self) -> bool {
        self.info.backend == wgpu::Backend::Vulkan
            && self.features.contains(wgpu::Features::PASSTHROUGH_SHADERS)
    }

    /// Like [`GpuContext::pipeline`], but compiled by naga here and
    /// rewritten for the Vulkan memory model (`memory_model`: shared
    /// accesses non-private, barriers that make them available and
    /// visible), then created as a passthrough module with an explicit
    /// layout. Vulkan only.
    pub fn pipeline_vulkan_memory_model(
        &self,
        label: &str,
        wgsl: &str,
        entry: &str,
    ) -> Result<wgpu::ComputePipeline> {
        if !self.can_rewrite_memory_model() {
            return Err(VladError::Gpu(format!(
                "compiling {label}: the memory-model rewrite needs Vulkan with passthrough \
                 shaders ({:?} adapter)",
                self.info.backend
            )));
        }
        let compiled =
            crate::backend::gpu::compat::memory_model::compile(wgsl, entry, self.features)
                .map_err(|e| {
                    VladError::Gpu(format!(
                        "compiling {label} for the Vulkan memory model: {e}"
                    ))
                })?;
        let [x, y, z] = compiled.workgroup_size;
        let rewrite = compiled.rewrite;
        let what = format!(
            "compiling {label} (Vulkan memory model: {} accesses made non-private, {} barriers \
             made available/visible)",
            rewrite.accesses, rewrite.barriers
        );
        self.checked(&what, || {
            let entry_points = [wgpu::PassthroughShaderEntryPoint {
                name: entry.into(),
                workgroup_size: (x, y, z),
            }];
            // SAFETY: the words are naga's own output for a module naga
            // validated above, changed only by `memory_model`'s rewrite
            // (operands and constants the Vulkan memory model defines; unit-
            // tested there, and every shader is run through it on lavapipe
            // by tests/gpu/memory_model.rs against the plain path).
            let module = unsafe {
                self.device.create_shader_module_passthrough(
                    wgpu::ShaderModuleDescriptorPassthrough {
                        label: Some(label),
                        entry_points: entry_points[..].into(),
                        spirv: Some(compiled.spirv[..].into()),
                        ..Default::default()
                    },
                )
            };
            let group = self
                .device
                .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(label),
                    entries: &compiled.bindings,
                });
            let layout = self
                .device
                .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some(label),
                    bind_group_layouts: &[Some(&group)],
                    immediate_size: 0,
                });
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(label),
                    layout: Some(&layout),
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: Default::default(),
                    cache: None,
                })
        })
    }

    /// A bind group for `pipeline`'s group 0 with `buffers` bound in order at
    /// bindings 0, 1, 2, …
    /// The same bind group is returned again while `pipeline` and the
    /// buffers are the same objects (see [`crate::backend::gpu::bind_cache`]).
    pub fn bind_group(
        &self,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[wgpu::BindingResource<'_>],
    ) -> Result<wgpu::BindGroup> {
        let numbered: Vec<(u32, wgpu::BindingResource<'_>)> = buffers
            .iter()
            .enumerate()
            .map(|(i, resource)| (i as u32, resource.clone()))
            .collect();
        self.bind_group_numbered(label, pipeline, &numbered)
    }

    /// A bind group for `pipeline`'s group 0 with explicit binding numbers
    /// (for entry points that use only some of a shader's declarations);
    /// cached like [`GpuContext::bind_group`].
    pub fn bind_group_numbered(
        &self,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        entries: &[(u32, wgpu::BindingResource<'_>)],
    ) -> Result<wgpu::BindGroup> {
        let key = BindKey::new(pipeline, entries);
        if let Some(group) = key.as_ref().and_then(|k| self.bindings.group(k)) {
            self.check_health()?;
            return Ok(group);
        }
        let group = self.checked(&format!("binding {label}"), || {
            let entries: Vec<wgpu::BindGroupEntry<'_>> = entries
                .iter()
                .map(|(binding, resource)| wgpu::BindGroupEntry {
                    binding: *binding,
                    resource: resource.clone(),
                })
                .collect();
            self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(label),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            })
        })?;
        if let Some(key) = key {
            self.bindings.keep_group(key, &group);
        }
        Ok(group)
    }

    /// Uniform buffers and bind groups made, and handed out again, so far.
    pub fn binding_counts(&self) -> Counts {
        self.bindings.counts()
    }

    /// Drop the cached bind groups, so that buffers only they still hold
    /// are freed: called whenever a storage buffer is allocated (pools
    /// replace buffers by larger ones then).
    pub fn forget_bindings(&self) {
        self.bindings.forget();
    }

    /// An uninitialized storage buffer of `size` bytes (rounded up to 4),
    /// usable as copy source and destination too.
    pub fn storage_buffer(&self, label: &str, size: u64) -> Result<wgpu::Buffer> {
        self.forget_bindings();
        self.checked(&format!("allocating {label} ({size} bytes)"), || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: size.max(4).next_multiple_of(4),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
    }

    /// A storage buffer holding `data` (padded to a multiple of 4 bytes).
    pub fn upload<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> Result<wgpu::Buffer> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let mut padded;
        let contents = if bytes.len().is_multiple_of(4) && !bytes.is_empty() {
            bytes
        } else {
            padded = bytes.to_vec();
            padded.resize(bytes.len().max(4).next_multiple_of(4), 0);
            &padded
        };
        self.forget_bindings();
        self.checked(&format!("uploading {label}"), || {
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                })
        })
    }

    /// A small uniform buffer holding `params` (a `#[repr(C)]` Pod struct).
    ///
    /// Never written after it is made, so the buffer made for the same bytes
    /// before is returned again (see [`crate::backend::gpu::bind_cache`]).
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, params: &T) -> Result<wgpu::Buffer> {
        let bytes = bytemuck::bytes_of(params);
        if let Some(buffer) = self.bindings.uniform(bytes) {
            self.check_health()?;
            return Ok(buffer);
        }
        let buffer = self.checked(&format!("uploading {label}"), || {
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: bytes,
                    usage: wgpu::BufferUsages::UNIFORM,
                })
        })?;
        self.bindings.keep_uniform(bytes, &buffer);
        Ok(buffer)
    }

    /// A command encoder.
    pub fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    }

    /// Submit `encoder` and block until the GPU has finished it.
    pub fn submit_and_wait(&self, label: &str, encoder: wgpu::CommandEncoder) -> Result<()> {
        let index = self.checked(&format!("submitting {label}"), || {
            self.queue.submit([encoder.finish()])
        })?;
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            })
            .map_err(|e| VladError::Gpu(format!("waiting for {label}: {e}")))?;
        self.check_health()
    }

    /// Copy `count` elements of `T` starting at element `first` of `buffer`
    /// back to the host (through a staging buffer) and return them.
    pub fn read_back<T: bytemuck::Pod>(
        &self,
        label: &str,
        buffer: &wgpu::Buffer,
        first: u64,
        count: usize,
    ) -> Result<Vec<T>> {
        let elem = std::mem::size_of::<T>() as u64;
        let bytes = count as u64 * elem;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let padded = bytes.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
        let staging = self.checked(&format!("staging {label}"), || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: padded,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        let mut encoder = self.encoder(label);
        encoder.copy_buffer_to_buffer(buffer, first * elem, &staging, 0, padded);
        self.submit_and_wait(label, encoder)?;
        self.map_and_copy(label, &staging, bytes)
    }

    /// Map a `MAP_READ` buffer, copy out its first `bytes` bytes as `T`s, unmap.
    pub fn map_and_copy<T: bytemuck::Pod>(
        &self,
        label: &str,
        staging: &wgpu::Buffer,
        bytes: u64,
    ) -> Result<Vec<T>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let padded = bytes.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
        staging.map_async(wgpu::MapMode::Read, 0..padded, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: None,
            })
            .map_err(|e| VladError::Gpu(format!("mapping {label}: {e}")))?;
        rx.recv()
            .map_err(|_| VladError::Gpu(format!("mapping {label}: no answer")))?
            .map_err(|e| VladError::Gpu(format!("mapping {label}: {e}")))?;
        let out = {
            let view = staging
                .get_mapped_range(0..padded)
                .map_err(|e| VladError::Gpu(format!("mapping {label}: {e}")))?;
            let bytes = &view[..bytes as usize];
            // The mapped range is only guaranteed 4-byte aligned: copy out
            // without assuming T's alignment.
            bytemuck::pod_collect_to_vec::<u8, T>(bytes)
        };
        staging.unmap();
        self.check_health()?;
        Ok(out)
    }
}

/// Bytes a stage reads for `elements` descriptor values: f32, or u8 packed
/// four per word (the upload pads to whole words).
pub(crate) fn descriptor_bytes(elements: u64, u8_input: bool) -> u64 {
    if u8_input {
        elements.next_multiple_of(4)
    } else {
        elements * 4
    }
}

/// Fail, naming `stage` and the buffer, if any `(name, buffer, bytes)` is
/// smaller than the job needs: a stage's check before it binds anything.
pub(crate) fn check_buffer_sizes(
    stage: &str,
    buffers: &[(&str, &wgpu::Buffer, u64)],
) -> Result<()> {
    for &(name, buffer, need) in buffers {
        if buffer.size() < need {
            return Err(VladError::Gpu(format!(
                "{stage}: {name} holds {} bytes, the job needs {need}",
                buffer.size()
            )));
        }
    }
    Ok(())
}

/// Split `workgroups` into a 2D dispatch `(x, y)` with `x ≤ max_per_dim`;
/// shaders recover the linear id as `id.y * x + id.x` (and must bound-check,
/// since `x·y` may exceed `workgroups`).
pub fn dispatch_2d(workgroups: u32, max_per_dim: u32) -> (u32, u32) {
    if workgroups <= max_per_dim {
        (workgroups.max(1), 1)
    } else {
        let y = workgroups.div_ceil(max_per_dim);
        (workgroups.div_ceil(y), y)
    }
}

#[cfg(test)]
mod tests {
    use super::dispatch_2d;

    #[test]
    fn dispatch_2d_covers_and_respects_limit() {
        for (n, max) in [
            (0, 10),
            (1, 10),
            (10, 10),
            (11, 10),
            (65_535 * 3 + 1, 65_535),
        ] {
            let (x, y) = dispatch_2d(n, max);
            assert!(x <= max && y <= max);
            assert!(x as u64 * y as u64 >= n as u64);
        }
    }
}
