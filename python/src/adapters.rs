//! `vlad.adapters()`: the library's adapter listing (`vlad::adapters()`),
//! as the dict `vlad adapters --json` prints (same keys, same values), so
//! `VLAD_ADAPTER`, `WGPU_BACKEND` and the Vulkan driver environment apply
//! alike.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use vlad::{AdapterInfo, AdapterPick};

use crate::detach::compute;

fn adapter<'py>(py: Python<'py>, a: &AdapterInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("index", a.index)?;
    d.set_item("name", &a.name)?;
    d.set_item("device_type", a.kind.name())?;
    d.set_item("software", a.is_software())?;
    d.set_item("api", &a.api)?;
    d.set_item("driver", &a.driver)?;
    let features = PyDict::new(py);
    features.set_item("subgroups", a.subgroups)?;
    features.set_item("timestamps", a.timestamps)?;
    features.set_item("shader_f16", a.shader_f16)?;
    features.set_item("cooperative_matrix", a.cooperative_matrix)?;
    d.set_item("features", features)?;
    d.set_item("max_binding_bytes", a.max_binding_bytes)?;
    Ok(d)
}

/// What `backend="gpu"` (`cpu_when_none` false) or `backend="auto"` (true)
/// would take: `{"adapter": index or None, "backend": "gpu" | "cpu" |
/// "unavailable", "reason": ...}`.
fn pick<'py>(
    py: Python<'py>,
    pick: &Result<AdapterPick, String>,
    cpu_when_none: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    match pick {
        Ok(p) => {
            d.set_item("adapter", p.index)?;
            let backend = match (p.index, cpu_when_none) {
                (Some(_), _) => "gpu",
                (None, true) => "cpu",
                (None, false) => "unavailable",
            };
            d.set_item("backend", backend)?;
            d.set_item("reason", &p.reason)?;
        }
        Err(why) => {
            d.set_item("adapter", py.None())?;
            d.set_item("backend", "unavailable")?;
            d.set_item("reason", why)?;
        }
    }
    Ok(d)
}

/// `{"adapters": [...], "gpu": {...}, "auto": {...}}`, as `vlad adapters
/// --json` prints it (no adapters, and `gpu` unavailable, without the gpu
/// feature).
#[pyfunction]
pub fn adapters(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let found = compute(py, || Ok(vlad::adapters(&crate::glue::gpu_options()?)))?;
    let list = found
        .adapters
        .iter()
        .map(|a| adapter(py, a))
        .collect::<PyResult<Vec<_>>>()?;
    let out = PyDict::new(py);
    out.set_item("adapters", list)?;
    out.set_item("gpu", pick(py, &found.gpu, false)?)?;
    out.set_item("auto", pick(py, &found.auto, true)?)?;
    Ok(out)
}
