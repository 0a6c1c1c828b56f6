//! Host side of `shaders/assign_coop.wgsl`: nearest-centroid assignment on
//! cooperative matrices (tensor cores), through wgpu's experimental
//! `EXPERIMENTAL_COOPERATIVE_MATRIX` feature. CPU twin: `cpu::assign_coop`.
//!
//! Opt-in: it runs only when `VLAD_GPU_TENSOR_CORES=1` **and** the adapter
//! reports what the shader needs ([`tensor_core_status`]). Otherwise — or if
//! the device refuses the features, the shader does not compile, or the
//! stage fails its self-check on this device — the plain `assign` runs, and
//! the reason is kept in [`TensorCores::Unavailable`] and printed once to
//! stderr (never a silent fallback). Labels obey SPEC §4 exactly as the plain
//! path's do: see the shader's header for the error bound and the re-check.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::backend::gpu::context::{GpuContext, dispatch_2d};
use crate::backend::gpu::specialize::specialize;
use crate::backend::gpu::stages::assign::{AssignJob, Params, bind_job, check_job};
use crate::backend::options::TENSOR_CORES_VAR;
use crate::error::{Result, VladError};

const SHADER: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/shaders/assign_coop.wgsl"
));

/// Rows per workgroup (the shader's `BM`).
const ROWS_PER_WORKGROUP: u32 = 32;
/// Centroids per tile (`BN`).
const CLUSTERS_PER_TILE: u32 = 32;
/// Features per cooperative step (`STEP`).
const STEP: u32 = 16;
/// Subgroup sizes the shader is specialized for (one workgroup = one subgroup).
const SUBGROUP_SIZES: [u32; 3] = [16, 32, 64];

/// The stage name reported by timings when this variant ran.
pub const STAGE_NAME: &str = "assign (tensor cores)";

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

/// What this adapter offers the tensor-core assign: `Ok(description)` when
/// it can run it (e.g. "16×16×16 f16·f16→f32 cooperative matrices,
/// subgroup 32"), `Err(reason)` when not. Asks the adapter only; opens
/// nothing. For `vlad adapters`.
pub fn tensor_core_status(adapter: &wgpu::Adapter) -> std::result::Result<String, String> {
    let info = adapter.get_info();
    status_of(
        adapter.features(),
        &adapter.cooperative_matrix_properties(),
        (info.subgroup_min_size, info.subgroup_max_size),
    )
    .map(|size| format!("16×16×16 f16·f16→f32 cooperative matrices, subgroup {size}"))
}

/// [`tensor_core_status`] as an `Option` (the description when available).
pub fn tensor_core_support(adapter: &wgpu::Adapter) -> Option<String> {
    tensor_core_status(adapter).ok()
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

/// What [`GpuContext::new`] adds to its device request for tensor cores.
pub struct TensorRequest {
    /// Extra features to require (empty unless enabled).
    pub features: wgpu::Features,
    /// The experimental opt-in (disabled unless enabled).
    pub experimental: wgpu::ExperimentalFeatures,
    /// What the session will report if the device accepts the request.
    pub status: TensorCores,
}

/// The device request for tensor cores on `adapter`, when `requested`
/// ([`crate::backend::options::GpuOptions::tensor_cores`]).
pub fn device_request(adapter: &wgpu::Adapter, requested: bool) -> TensorRequest {
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
            // only through the validated shader below, and check its results
            // on this device (`AssignCoopStage::new`) before trusting it.
            experimental: unsafe { wgpu::ExperimentalFeatures::enabled() },
            status: TensorCores::Enabled { subgroup_size },
        },
    }
}

/// The WGSL the stage compiles for a subgroup size and input type.
pub fn shader_source(subgroup_size: u32, u8_input: bool) -> Result<String> {
    specialize(
        SHADER,
        &[("SG", subgroup_size.into()), ("U8_INPUT", u8_input.into())],
    )
}

/// Test support: the shader with its cooperative-matrix block (tile loads,
/// multiply-adds, the store into `dots`) replaced by plain WGSL computing
/// the same sums (`hi·hi + hi·lo + lo·hi` of the staged f16 tiles, in f32),
/// so that everything around that block runs on adapters without
/// cooperative matrices (tests/gpu/coop_emulated.rs, examples/coop_probe.rs).
/// Needs `SHADER_F16` only.
#[doc(hidden)]
pub fn emulated_shader_source(subgroup_size: u32, u8_input: bool) -> Result<String> {
    let source = shader_source(subgroup_size, u8_input)?;
    let begin = "        var acc00 = coop_mat16x16<f32, C>();\n";
    let end = "        coopStoreT(acc11, &dots[16u * BN + 16u], BN);\n";
    let (Some(start), Some(stop)) = (source.find(begin), source.find(end)) else {
        return Err(VladError::Gpu(
            "assign_coop.wgsl: the cooperative block to emulate was not found".to_string(),
        ));
    };
    let emulated = "        // Emulated: each invocation owns dots[lid + j·SG].
        var acc: array<f32, (BM * BN) / SG>;
        for (var j = 0u; j < (BM * BN) / SG; j++) {
            acc[j] = 0.0;
        }
        for (var chunk = 0u; chunk < params.chunks; chunk++) {
            workgroupBarrier();
            stage_step(lid, row0, col0, chunk * STEP);
            workgroupBarrier();
            for (var j = 0u; j < (BM * BN) / SG; j++) {
                let e = lid + j * SG;
                let r = e / BN;
                let c = e % BN;
                var s = acc[j];
                for (var f = 0u; f < STEP; f++) {
                    let ah = f32(a_hi[r * STEP + f]);
                    let bh = f32(b_hi[c * STEP + f]);
                    let bl = f32(b_lo[c * STEP + f]);
                    s += ah * bh + ah * bl;
                    if !U8_INPUT {
                        s += f32(a_lo[r * STEP + f]) * bh;
                    }
                }
                acc[j] = s;
            }
        }
        for (var j = 0u; j < (BM * BN) / SG; j++) {
            dots[lid + j * SG] = acc[j];
        }
";
    let out = format!(
        "{}{emulated}{}",
        &source[..start],
        &source[stop + end.len()..]
    );
    Ok(out.replace("enable wgpu_cooperative_matrix;\n", ""))
}

/// The note a report carries when tensor cores were asked for and the plain
/// assign ran instead (`None` when they ran, or were not asked for).
pub fn note(status: &TensorCores) -> Option<String> {
    match status {
        TensorCores::Unavailable(reason) => Some(format!(
            "{TENSOR_CORES_VAR}=1 but tensor cores are unavailable ({reason}); using the plain assign"
        )),
        _ => None,
    }
}

/// What this file assumes of every variant it compiles (checked against
/// naga by `tests/gpu/shader_contract.rs`; the twin's bound constants are
/// checked by `tests/gpu/shader_coop.rs`).
pub(crate) fn contracts() -> Result<Vec<crate::backend::gpu::contract::ShaderContract>> {
    let mut contracts = Vec::new();
    for &sg in &SUBGROUP_SIZES {
        for u8_input in [false, true] {
            contracts.push(crate::backend::gpu::contract::ShaderContract {
                name: format!("assign_coop sg={sg} u8={u8_input}"),
                file: "assign_coop",
                source: shader_source(sg, u8_input)?,
                constants: vec![
                    ("SG", sg.into()),
                    ("U8_INPUT", u8_input.into()),
                    ("BM", ROWS_PER_WORKGROUP.into()),
                    ("BN", CLUSTERS_PER_TILE.into()),
                    ("STEP", STEP.into()),
                ],
                entry_points: vec![("assign", Some([sg, 1, 1]))],
                uniform: Params::layout(),
            });
        }
    }
    Ok(contracts)
}

/// The subgroup sizes [`shader_source`] is meant for (for validation).
pub fn subgroup_sizes() -> &'static [u32] {
    &SUBGROUP_SIZES
}

/// The compiled tensor-core assignment pipelines.
pub struct AssignCoopStage {
    pipelines: Mutex<HashMap<bool, wgpu::ComputePipeline>>,
    subgroup_size: u32,
}

impl AssignCoopStage {
    /// Compile both variants for this device and check them on a small
    /// problem against the f64 oracle (SPEC §4). `Err` when the device was
    /// not opened with tensor cores, a shader does not compile, or the
    /// self-check fails: the caller then runs the plain assign.
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        let subgroup_size = match &ctx.tensor_cores {
            TensorCores::Enabled { subgroup_size } => *subgroup_size,
            other => {
                return Err(VladError::BackendUnavailable(format!(
                    "tensor cores are not enabled on this device ({other:?})"
                )));
            }
        };
        let stage = AssignCoopStage {
            pipelines: Mutex::new(HashMap::new()),
            subgroup_size,
        };
        stage.pipeline(ctx, false)?;
        stage.pipeline(ctx, true)?;
        self_check::run(ctx, &stage)?;
        Ok(stage)
    }

    fn pipeline(&self, ctx: &GpuContext, u8_input: bool) -> Result<wgpu::ComputePipeline> {
        let mut cache = self
            .pipelines
            .lock()
            .map_err(|_| VladError::Gpu("assign_coop pipeline cache lock poisoned".to_string()))?;
        if let Some(p) = cache.get(&u8_input) {
            return Ok(p.clone());
        }
        let source = shader_source(self.subgroup_size, u8_input)?;
        let label = format!("assign_coop sg={} u8={u8_input}", self.subgroup_size);
        // On Vulkan naga declares the Vulkan memory model for cooperative
        // matrices but leaves workgroup accesses private: compile it
        // ourselves with the accesses made non-private
        // (src/gpu/memory_model.rs); elsewhere wgpu's own path.
        let pipeline = if ctx.can_rewrite_memory_model() {
            ctx.pipeline_vulkan_memory_model(&label, &source, "assign")?
        } else {
            ctx.pipeline(&label, &source, "assign")?
        };
        cache.insert(u8_input, pipeline.clone());
        Ok(pipeline)
    }

    /// Record the assignment of `job.rows` descriptors into `encoder` (same
    /// job, same outputs as the plain stage).
    pub fn record(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        job: &AssignJob<'_>,
    ) -> Result<()> {
        if job.rows == 0 {
            return Ok(());
        }
        check_job(job)?;
        let pipeline = self.pipeline(ctx, job.u8_input)?;
        let params = Params::for_job(job, ROWS_PER_WORKGROUP, CLUSTERS_PER_TILE, STEP);
        let bind_group = bind_job(ctx, "assign_coop", &pipeline, &params, job)?;
        let (x, y) = dispatch_2d(params.row_tiles(), ctx.max_workgroups_per_dim());
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("assign_coop"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(x, y, 1);
        Ok(())
    }
}

/// The assignment stage a session runs: tensor cores when enabled and they
/// pass their self-check, else the plain one. Why not is in the returned
/// status, which every report of the session carries as a note
/// ([`note`]): the library prints nothing.
pub fn select(ctx: &GpuContext) -> (Option<AssignCoopStage>, TensorCores) {
    match &ctx.tensor_cores {
        TensorCores::Off => (None, TensorCores::Off),
        TensorCores::Unavailable(_) => (None, ctx.tensor_cores.clone()),
        TensorCores::Enabled { .. } => match AssignCoopStage::new(ctx) {
            Ok(stage) => (Some(stage), ctx.tensor_cores.clone()),
            Err(e) => {
                let reason = format!("the tensor-core assign failed on this device: {e}");
                (None, TensorCores::Unavailable(reason))
            }
        },
    }
}

/// A small assignment run on the device at stage creation and judged by the
/// f64 oracle, so that a driver or compiler that gets cooperative matrices
/// wrong (transposed operands, wrong layout, broken f16 conversion) is caught
/// before it labels anything.
mod self_check {
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::AssignCoopStage;
    use crate::backend::gpu::context::GpuContext;
    use crate::backend::gpu::stages::assign::AssignJob;
    use crate::error::{Result, VladError};
    use crate::model::batch::Batch;
    use crate::model::codebook::Codebook;
    use crate::verify::is_near_tie;

    /// Rows, width and centroids of the check: not multiples of the tiles,
    /// and features of distinct magnitudes so that a transposed or
    /// mis-scaled product changes the labels.
    const ROWS: usize = 100;
    const DIM: usize = 37;
    const CLUSTERS: usize = 45;

    pub fn run(ctx: &GpuContext, stage: &AssignCoopStage) -> Result<()> {
        let mut rng = ChaCha8Rng::seed_from_u64(0x7e45);
        let centroids = Array2::from_shape_fn((CLUSTERS, DIM), |(k, f)| {
            rng.random_range(-1.0f32..1.0) * (1.0 + f as f32 / 8.0) + k as f32 * 1e-3
        });
        let codebook = Codebook::from_owned(centroids)?;
        // Rows near centroids (so labels are meaningful), plus noise.
        let mut rows = Vec::with_capacity(ROWS * DIM);
        for i in 0..ROWS {
            let k = (i * 7) % CLUSTERS;
            for f in 0..DIM {
                let c = codebook.as_slice()[k * DIM + f];
                rows.push(c + rng.random_range(-0.3f32..0.3));
            }
        }
        let u8_rows: Vec<u8> = (0..ROWS * DIM).map(|_| rng.random()).collect();
        let u8_codebook = Codebook::from_owned(Array2::from_shape_fn((CLUSTERS, DIM), |_| {
            rng.random_range(0.0f32..255.0)
        }))?;
        check(ctx, stage, &codebook, &rows, false)?;
        check(ctx, stage, &u8_codebook, &u8_rows, true)
    }

    fn check<E: crate::model::element::Element>(
        ctx: &GpuContext,
        stage: &AssignCoopStage,
        codebook: &Codebook,
        rows: &[E],
        u8_input: bool,
    ) -> Result<()> {
        let n = rows.len() / DIM;
        let descriptors = ctx.upload("self-check descriptors", rows)?;
        let centroids = ctx.upload("self-check centroids", codebook.as_slice())?;
        let norms = ctx.upload("self-check norms", codebook.squared_norms())?;
        let offsets = ctx.upload("self-check offsets", &[0u32, n as u32])?;
        let poison = vec![u32::MAX; n];
        let labels = ctx.upload("self-check labels", &poison)?;
        let keys = ctx.upload("self-check keys", &poison)?;
        let values = ctx.upload("self-check values", &poison)?;
        let mut encoder = ctx.encoder("assign_coop self-check");
        stage.record(
            ctx,
            &mut encoder,
            &AssignJob {
                descriptors: &descriptors,
                u8_input,
                centroids: &centroids,
                centroid_norms: &norms,
                image_offsets: &offsets,
                rows: n as u32,
                dim: DIM as u32,
                clusters: CLUSTERS as u32,
                images: 1,
                labels: &labels,
                keys: &keys,
                values: &values,
            },
        )?;
        ctx.submit_and_wait("assign_coop self-check", encoder)?;
        let got: Vec<u32> = ctx.read_back("self-check labels", &labels, 0, n)?;
        let got_keys: Vec<u32> = ctx.read_back("self-check keys", &keys, 0, n)?;
        let got_values: Vec<u32> = ctx.read_back("self-check values", &values, 0, n)?;
        // One image: the sort key is the label, the value the row index.
        if got_keys != got || got_values.iter().enumerate().any(|(i, &v)| v as usize != i) {
            return Err(VladError::Gpu(
                "self-check: sort keys or row values are wrong".to_string(),
            ));
        }
        let view = ndarray::ArrayView2::from_shape((n, DIM), rows)
            .map_err(|e| VladError::Gpu(format!("self-check shape: {e}")))?;
        let batch = Batch::single(view)?;
        let exact = crate::backend::reference::assign(codebook, &batch);
        for (i, (&g, &e)) in got.iter().zip(&exact).enumerate() {
            if g as usize >= CLUSTERS || !is_near_tie(codebook, batch.row(i), g, e) {
                return Err(VladError::Gpu(format!(
                    "self-check ({} rows): row {i} got label {g}, the exact nearest centroid is {e}",
                    if u8_input { "u8" } else { "f32" }
                )));
            }
        }
        Ok(())
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

    #[test]
    fn every_subgroup_size_specializes() {
        for &sg in subgroup_sizes() {
            for u8_input in [false, true] {
                let source = shader_source(sg, u8_input).unwrap();
                assert!(source.contains(&format!("const SG: u32 = {sg}u;")));
            }
        }
    }
}
