//! Listing wgpu's adapters and opening the one the rule in
//! [`crate::backend::adapters`] picks.
//!
//! Listing only enumerates adapters and reads their info, features and
//! limits: no device is created and no shader is compiled, so `auto` can
//! decide against a software adapter in milliseconds.

use std::sync::Mutex;

use crate::backend::adapters::{AdapterInfo, AdapterKind, Adapters};
use crate::backend::options::GpuOptions;
use crate::error::{Result, VladError};

/// The instance every adapter comes from: one per process and set of
/// graphics APIs, made on first use and never dropped.
///
/// The APIs are `options.backends` (`WGPU_BACKEND`'s spelling, read at the
/// edge) when given; otherwise every backend but OpenGL. Two reasons, both
/// seen on an NVIDIA H100 (BENCHMARKS.md): an instance per context meant
/// every test thread set up and tore down the driver's EGL display beside
/// the Vulkan one, and with many threads at once those calls stalled on a
/// lock inside the driver; and the GL adapter adds nothing vlad can use
/// where Vulkan works (no subgroups, no f16, no cooperative matrices).
/// Asking for `gl` still reaches it.
fn instance(options: &GpuOptions) -> (wgpu::Instance, wgpu::Backends) {
    static INSTANCES: Mutex<Vec<(wgpu::Backends, wgpu::Instance)>> = Mutex::new(Vec::new());
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
    match &options.backends {
        Some(list) => descriptor.backends = wgpu::Backends::from_comma_list(list),
        None => descriptor.backends.remove(wgpu::Backends::GL),
    }
    let backends = descriptor.backends;
    let mut made = INSTANCES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, instance)) = made.iter().find(|(b, _)| *b == backends) {
        return (instance.clone(), backends);
    }
    let instance = wgpu::Instance::new(descriptor);
    made.push((backends, instance.clone()));
    (instance, backends)
}

/// The library's kind for wgpu's device type.
pub(crate) fn kind_of(device_type: wgpu::DeviceType) -> AdapterKind {
    match device_type {
        wgpu::DeviceType::DiscreteGpu => AdapterKind::Discrete,
        wgpu::DeviceType::IntegratedGpu => AdapterKind::Integrated,
        wgpu::DeviceType::VirtualGpu => AdapterKind::Virtual,
        wgpu::DeviceType::Cpu => AdapterKind::Software,
        wgpu::DeviceType::Other => AdapterKind::Other,
    }
}

fn describe(index: usize, adapter: &wgpu::Adapter) -> AdapterInfo {
    let info = adapter.get_info();
    let features = adapter.features();
    let limits = adapter.limits();
    let driver = format!("{} {}", info.driver, info.driver_info)
        .trim()
        .to_string();
    AdapterInfo {
        index,
        name: info.name,
        kind: kind_of(info.device_type),
        api: format!("{:?}", info.backend),
        driver,
        subgroups: features.contains(wgpu::Features::SUBGROUP),
        timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
        shader_f16: features.contains(wgpu::Features::SHADER_F16),
        cooperative_matrix: features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX),
        max_binding_bytes: limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size),
    }
}

fn enumerate(options: &GpuOptions) -> (Vec<wgpu::Adapter>, Adapters) {
    let (instance, backends) = instance(options);
    let adapters = pollster::block_on(instance.enumerate_adapters(backends));
    let infos = adapters
        .iter()
        .enumerate()
        .map(|(i, a)| describe(i, a))
        .collect();
    let chosen = Adapters::choose(infos, options.adapter.as_deref());
    (adapters, chosen)
}

/// Every adapter and what `gpu` and `auto` would take under `options`.
pub fn list(options: &GpuOptions) -> Adapters {
    enumerate(options).1
}

/// The adapter `--backend gpu` runs on (software included), with its
/// description; [`VladError::BackendUnavailable`] when there is none or
/// `VLAD_ADAPTER` matches none.
pub(crate) fn select(options: &GpuOptions) -> Result<(wgpu::Adapter, AdapterInfo)> {
    let (mut adapters, chosen) = enumerate(options);
    let info = chosen.gpu_adapter()?.clone();
    if info.index >= adapters.len() {
        return Err(VladError::BackendUnavailable(
            "the chosen GPU adapter disappeared".to_string(),
        ));
    }
    Ok((adapters.swap_remove(info.index), info))
}
