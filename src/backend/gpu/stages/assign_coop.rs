//! Host side of `shaders/assign_coop.wgsl`: nearest-centroid assignment on
//! cooperative matrices (tensor cores), through wgpu's experimental
//! `EXPERIMENTAL_COOPERATIVE_MATRIX` feature. CPU twin: `cpu::assign_coop`.
//!
//! Opt-in: it runs only when `VLAD_GPU_TENSOR_CORES=1` **and** the adapter
//! reports what the shader needs ([`crate::backend::gpu::tensor_cores`]).
//! Otherwise — or if the device refuses the features, the shader does not
//! compile, or the stage fails its self-check on this device — the plain
//! `assign` runs, and the reason is kept in [`TensorCores::Unavailable`],
//! which every report of the session carries as a note (never a silent
//! fallback). Labels obey SPEC §4 exactly as the plain
//! path's do: see the shader's header for the error bound and the re-check.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::backend::gpu::context::GpuContext;
use crate::backend::gpu::specialize::specialize;
use crate::backend::gpu::stages::assign::{AssignJob, AssignVariant, Params, Prepared};
use crate::backend::gpu::stages::host::wgsl;
use crate::backend::gpu::tensor_cores::{SUBGROUP_SIZES, TensorCores};
use crate::error::{Result, VladError};

const SHADER: &str = wgsl!("assign_coop");

/// Rows per workgroup (the shader's `BM`).
const ROWS_PER_WORKGROUP: u32 = 32;
/// Centroids per tile (`BN`).
const CLUSTERS_PER_TILE: u32 = 32;
/// Features per cooperative step (`STEP`).
const STEP: u32 = 16;

/// The stage name reported by timings when this variant ran.
pub const STAGE_NAME: &str = "assign (tensor cores)";

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
        // (`compat::memory_model`); elsewhere wgpu's own path.
        let pipeline = if ctx.can_rewrite_memory_model() {
            ctx.pipeline_vulkan_memory_model(&label, &source, "assign")?
        } else {
            ctx.pipeline(&label, &source, "assign")?
        };
        cache.insert(u8_input, pipeline.clone());
        Ok(pipeline)
    }
}

impl AssignVariant for AssignCoopStage {
    const LABEL: &'static str = "assign_coop";

    /// Its fixed tiles, at the adapter's workgroup limit.
    fn prepare(&self, ctx: &GpuContext, job: &AssignJob<'_>) -> Result<Prepared> {
        let pipeline = self.pipeline(ctx, job.input.u8_input)?;
        let params = Params::for_job(job, ROWS_PER_WORKGROUP, CLUSTERS_PER_TILE, STEP);
        Ok((pipeline, params, ctx.max_workgroups_per_dim()))
    }
}

/// The assignment stage a session runs: tensor cores when enabled and they
/// pass their self-check, else the plain one. Why not is in the returned
/// status, which every report of the session carries as a note
/// (`tensor_cores::note`): the library prints nothing.
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
    use crate::backend::gpu::stages::Descriptors;
    use crate::backend::gpu::stages::assign::{AssignJob, AssignVariant};
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
                input: Descriptors {
                    buffer: &descriptors,
                    u8_input,
                    rows: n as u32,
                    dim: DIM as u32,
                },
                centroids: &centroids,
                centroid_norms: &norms,
                image_offsets: &offsets,
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
