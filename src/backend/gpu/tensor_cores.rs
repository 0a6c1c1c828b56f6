//! Whether a session uses tensor cores: what the device request adds for
//! the tensor-core assign (`stages::assign_coop`), and the status every
//! report of the session carries. Decided from the adapter alone, before
//! the device is opened, so it sits below the context that opens it.

use crate::backend::options::TENSOR_CORES_VAR;

/// Subgroup sizes the tensor-core shader is specialized for (one workgroup
/// is one subgroup).
pub(crate) const SUBGROUP_SIZES: [u32; 3] = [16, 32, 64];

/// Whether and how the session uses tensor cores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TensorCores {
    /// Not asked for (`VLAD_GPU_TENSOR_CORES` unset or 0): plain assign.
    Off,
    /// Asked for but not usable here, with the reason: plain assign.
    Unavailable(String),
    /// The device was opened with cooperative matrices; the shader is
    /// specialized for this (fixed) subgroup size.
    Enabled {
        /// The adapter's subgroup size, the shader's workgroup size.
        subgroup_size: u32,
    },
}

impl TensorCores {
    /// Whether the device was opened with cooperative matrices.
    pub fn is_enabled(&self) -> bool {
        matches!(self, TensorCores::Enabled { .. })
    }
}

/// The subgroup size to specialize for, or why the adapter cannot run the
/// shader.
fn status_of(
    features: wgpu::Features,
    properties: &[wgpu::CooperativeMatrixProperties],
    subgroup_sizes: (u32, u32),
) -> std::result::Result<u32, String> {
    if !features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        return Err("the adapter has no cooperative matrices \
                    (wgpu feature EXPERIMENTAL_COOPERATIVE_MATRIX)"
            .to_string());
    }
    if !features.contains(wgpu::Features::SHADER_F16) {
        return Err("the adapter has no f16 in shaders (wgpu feature SHADER_F16)".to_string());
    }
    let wanted = properties.iter().any(|p| {
        p.m_size == 16
            && p.n_size == 16
            && p.k_size == 16
            && p.ab_type == wgpu::CooperativeScalarType::F16
            && p.cr_type == wgpu::CooperativeScalarType::F32
    });
    if !wanted {
        let offered: Vec<String> = properties
            .iter()
            .map(|p| {
                format!(
                    "{}×{}×{} {:?}→{:?}",
                    p.m_size, p.n_size, p.k_size, p.ab_type, p.cr_type
                )
            })
            .collect();
        return Err(format!(
            "no 16×16×16 f16·f16→f32 cooperative-matrix configuration (offered: {})",
            if offered.is_empty() {
                "none".to_string()
            } else {
                offered.join(", ")
            }
        ));
    }
    let (min, max) = subgroup_sizes;
    if min != max || !SUBGROUP_SIZES.contains(&min) {
        return Err(format!(
            "subgroup size varies or is unsupported ({min}..={max}; \
             the shader needs one fixed size among {SUBGROUP_SIZES:?})"
        ));
    }
    Ok(min)
}

/// What [`GpuContext::new`](crate::backend::gpu::GpuContext::new) adds to its device request for tensor cores.
pub(crate) struct TensorRequest {
    /// Extra features to require (empty unless enabled).
    pub(crate) features: wgpu::Features,
    /// The experimental opt-in (disabled unless enabled).
    pub(crate) experimental: wgpu::ExperimentalFeatures,
    /// What the session will report if the device accepts the request.
    pub(crate) status: TensorCores,
}

/// The device request for tensor cores on `adapter`, when `requested`
/// ([`crate::backend::options::GpuOptions::tensor_cores`]).
pub(crate) fn device_request(adapter: &wgpu::Adapter, requested: bool) -> TensorRequest {
    let none = |status| TensorRequest {
        features: wgpu::Features::empty(),
        experimental: wgpu::ExperimentalFeatures::disabled(),
        status,
    };
    if !requested {
        return none(TensorCores::Off);
    }
    let info = adapter.get_info();
    match status_of(
        adapter.features(),
        &adapter.cooperative_matrix_properties(),
        (info.subgroup_min_size, info.subgroup_max_size),
    ) {
        Err(reason) => none(TensorCores::Unavailable(reason)),
        Ok(subgroup_size) => TensorRequest {
            features: wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16,
            // SAFETY: wgpu marks cooperative matrices experimental (possible
            // implementation bugs, not a memory-safety contract on our side).
            // We opt in only when the user asked for it, use the feature
            // only through the validated shader (`stages::assign_coop`), and check its results
            // on this device (`AssignCoopStage::new`) before trusting it.
            experimental: unsafe { wgpu::ExperimentalFeatures::enabled() },
            status: TensorCores::Enabled { subgroup_size },
        },
    }
}

/// The note a report carries when tensor cores were asked for and the plain
/// assign ran instead (`None` when they ran, or were not asked for).
pub(crate) fn note(status: &TensorCores) -> Option<String> {
    match status {
        TensorCores::Unavailable(reason) => Some(format!(
            "{TENSOR_CORES_VAR}=1 but tensor cores are unavailable ({reason}); using the plain assign"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(ab: wgpu::CooperativeScalarType, size: u32) -> wgpu::CooperativeMatrixProperties {
        wgpu::CooperativeMatrixProperties {
            m_size: size,
            n_size: size,
            k_size: size,
            ab_type: ab,
            cr_type: wgpu::CooperativeScalarType::F32,
            saturating_accumulation: false,
        }
    }

    #[test]
    fn status_needs_every_piece() {
        use wgpu::CooperativeScalarType::{F16, F32};
        let all = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16;
        let good = [props(F32, 8), props(F16, 16)];
        assert_eq!(status_of(all, &good, (32, 32)), Ok(32));
        let no_coop = status_of(wgpu::Features::SHADER_F16, &good, (32, 32));
        assert!(
            no_coop
                .unwrap_err()
                .contains("EXPERIMENTAL_COOPERATIVE_MATRIX")
        );
        let no_f16 = status_of(
            wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX,
            &good,
            (32, 32),
        );
        assert!(no_f16.unwrap_err().contains("SHADER_F16"));
        // Only 8×8 f32 (what wgpu's Metal path offers): refused, and said so.
        let only_8 = status_of(all, &[props(F32, 8)], (32, 32)).unwrap_err();
        assert!(only_8.contains("8×8×8 F32→F32"), "{only_8}");
        let varying = status_of(all, &good, (32, 64)).unwrap_err();
        assert!(varying.contains("32..=64"), "{varying}");
        assert!(status_of(all, &good, (8, 8)).is_err());
    }
}
