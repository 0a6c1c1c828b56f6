//! How the GPU backend is set up: which adapter, which graphics APIs, the
//! storage-binding cap and the tensor-core opt-in. Plain data, present in a
//! build without the `gpu` feature too, so every layer can carry it.
//!
//! The library never reads the environment (SPEC §9): the command line and
//! the Python package read `VLAD_ADAPTER`, `WGPU_BACKEND`,
//! `VLAD_GPU_MAX_BINDING_BYTES` and `VLAD_GPU_TENSOR_CORES` at their edge
//! and hand them over through [`GpuOptions::from_vars`], which parses but
//! looks nothing up itself.

use crate::error::{Result, VladError};

/// `VLAD_ADAPTER`: one adapter by index or case-insensitive name substring.
pub const ADAPTER_VAR: &str = "VLAD_ADAPTER";
/// `WGPU_BACKEND`: the graphics APIs wgpu tries (`vulkan`, `metal`, `dx12`,
/// `gl`, comma-separated).
pub const BACKENDS_VAR: &str = "WGPU_BACKEND";
/// `VLAD_GPU_MAX_BINDING_BYTES`: cap the storage-binding size the GPU
/// backend plans with, so small inputs exercise every chunking path.
pub const MAX_BINDING_VAR: &str = "VLAD_GPU_MAX_BINDING_BYTES";
/// `VLAD_GPU_TENSOR_CORES`: `1` asks for the tensor-core assignment.
pub const TENSOR_CORES_VAR: &str = "VLAD_GPU_TENSOR_CORES";

/// GPU setup. `Default` is what a user gets with nothing set: the best
/// adapter (SPEC §7), every graphics API but OpenGL, the adapter's own
/// binding limit, no tensor cores.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GpuOptions {
    /// Pick this adapter: an index, or a case-insensitive substring of its
    /// name, as `vlad adapters` lists them (`VLAD_ADAPTER`). `None`: the
    /// best kind wins. A value that matches nothing is an error, under
    /// `auto` too.
    pub adapter: Option<String>,
    /// The graphics APIs to try, as `WGPU_BACKEND` spells them
    /// (`"vulkan"`, `"metal,vulkan"`, `"gl"`…). `None`: every API but
    /// OpenGL (which adds nothing vlad uses where Vulkan works).
    pub backends: Option<String>,
    /// Plan with storage bindings of at most this many bytes (below the
    /// adapter's own limit; `VLAD_GPU_MAX_BINDING_BYTES`).
    pub max_binding_bytes: Option<u64>,
    /// Ask for the tensor-core assignment (`VLAD_GPU_TENSOR_CORES=1`); it
    /// runs only where the adapter has the cooperative matrices it needs
    /// and its self-check passes, and a report note says why otherwise.
    pub tensor_cores: bool,
    /// Test hook: compile every shader through the Vulkan-memory-model
    /// rewrite as a passthrough module, as the tensor-core assign is.
    /// Vulkan only.
    #[doc(hidden)]
    pub vulkan_memory_model: bool,
}

impl GpuOptions {
    /// The options the variables above give, each looked up with `lookup`
    /// (at the edge, a lookup in the process environment). Unset or blank
    /// variables leave the default; a malformed one is
    /// [`VladError::InvalidArgument`] naming it.
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let max_binding_bytes = match get(MAX_BINDING_VAR) {
            None => None,
            Some(s) => match s.parse::<u64>() {
                Ok(bytes) if bytes > 0 => Some(bytes),
                _ => {
                    return Err(VladError::InvalidArgument(format!(
                        "{MAX_BINDING_VAR}={s:?}: expected a positive number of bytes"
                    )));
                }
            },
        };
        let tensor_cores = match get(TENSOR_CORES_VAR) {
            None => false,
            Some(s) => parse_switch(&s).ok_or_else(|| {
                VladError::InvalidArgument(format!(
                    "{TENSOR_CORES_VAR}={s:?}: expected 1 or 0 (true/false, on/off, yes/no)"
                ))
            })?,
        };
        Ok(GpuOptions {
            adapter: get(ADAPTER_VAR),
            backends: get(BACKENDS_VAR),
            max_binding_bytes,
            tensor_cores,
            vulkan_memory_model: false,
        })
    }

    /// These options with the binding cap lowered to `bytes` where that is
    /// smaller (`None` changes nothing): two caps, the smaller wins.
    pub fn with_binding_cap(mut self, bytes: Option<u64>) -> Self {
        self.max_binding_bytes = match (self.max_binding_bytes, bytes) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self
    }
}

fn parse_switch(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Some(true),
        "" | "0" | "false" | "off" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn parses_every_variable_and_names_a_bad_one() {
        let options = GpuOptions::from_vars(vars(&[
            (ADAPTER_VAR, " h100 "),
            (BACKENDS_VAR, "vulkan"),
            (MAX_BINDING_VAR, "4096"),
            (TENSOR_CORES_VAR, "on"),
        ]))
        .unwrap();
        assert_eq!(options.adapter.as_deref(), Some("h100"));
        assert_eq!(options.backends.as_deref(), Some("vulkan"));
        assert_eq!(options.max_binding_bytes, Some(4096));
        assert!(options.tensor_cores);
        assert_eq!(
            GpuOptions::from_vars(vars(&[(ADAPTER_VAR, "  ")])).unwrap(),
            GpuOptions::default()
        );
        for (name, value) in [
            (MAX_BINDING_VAR, "0"),
            (MAX_BINDING_VAR, "lots"),
            (TENSOR_CORES_VAR, "maybe"),
        ] {
            let err = GpuOptions::from_vars(vars(&[(name, value)])).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn switch_values() {
        assert_eq!(parse_switch("1"), Some(true));
        assert_eq!(parse_switch(" TRUE "), Some(true));
        assert_eq!(parse_switch("0"), Some(false));
        assert_eq!(parse_switch(""), Some(false));
        assert_eq!(parse_switch("2"), None);
        assert_eq!(parse_switch("tensor"), None);
    }

    #[test]
    fn the_smaller_cap_wins() {
        let capped = |a, b| {
            GpuOptions {
                max_binding_bytes: a,
                ..GpuOptions::default()
            }
            .with_binding_cap(b)
            .max_binding_bytes
        };
        assert_eq!(capped(Some(10), Some(20)), Some(10));
        assert_eq!(capped(None, Some(20)), Some(20));
        assert_eq!(capped(Some(10), None), Some(10));
        assert_eq!(capped(None, None), None);
    }
}
