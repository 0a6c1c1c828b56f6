//! `vlad.adapters()`: the GPU adapters wgpu finds here, as dicts.
//!
//! Listed directly with wgpu (the library has no adapter listing yet); the
//! instance is made as the library makes its own, so `WGPU_BACKEND` and the
//! Vulkan driver environment apply alike.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::detach::compute;

/// One adapter, in plain data.
#[derive(Debug)]
#[cfg_attr(not(feature = "gpu"), allow(dead_code))]
struct AdapterData {
    name: String,
    backend: String,
    device_type: String,
    driver: String,
    driver_info: String,
    vendor: u32,
    device: u32,
    software: bool,
}

#[cfg(feature = "gpu")]
fn list() -> Vec<AdapterData> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    adapters
        .iter()
        .map(|adapter| {
            let info = adapter.get_info();
            AdapterData {
                name: info.name.clone(),
                backend: format!("{:?}", info.backend).to_lowercase(),
                device_type: match info.device_type {
                    wgpu::DeviceType::DiscreteGpu => "discrete",
                    wgpu::DeviceType::IntegratedGpu => "integrated",
                    wgpu::DeviceType::VirtualGpu => "virtual",
                    wgpu::DeviceType::Cpu => "cpu",
                    wgpu::DeviceType::Other => "other",
                }
                .to_string(),
                driver: info.driver.clone(),
                driver_info: info.driver_info.clone(),
                vendor: info.vendor,
                device: info.device,
                software: info.device_type == wgpu::DeviceType::Cpu,
            }
        })
        .collect()
}

#[cfg(not(feature = "gpu"))]
fn list() -> Vec<AdapterData> {
    Vec::new()
}

/// The GPU adapters found (empty without one, or without the gpu feature).
#[pyfunction]
pub fn adapters(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    let found = compute(py, || Ok(list()))?;
    found
        .into_iter()
        .enumerate()
        .map(|(index, a)| {
            let d = PyDict::new(py);
            d.set_item("index", index)?;
            d.set_item("name", a.name)?;
            d.set_item("backend", a.backend)?;
            d.set_item("device_type", a.device_type)?;
            d.set_item("driver", a.driver)?;
            d.set_item("driver_info", a.driver_info)?;
            d.set_item("vendor", a.vendor)?;
            d.set_item("device", a.device)?;
            d.set_item("software", a.software)?;
            Ok(d)
        })
        .collect()
}
