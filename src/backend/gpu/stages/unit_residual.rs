//! Host side of `shaders/unit_residual.wgsl`: under hard assignment with
//! `rn`, each row's residual to its labelled centroid at unit length, as
//! f32 rows for the existing sort and segmented sum. CPU twin:
//! [`crate::twins::unit_residual`] (within a few ulp: the device's division
//! and square root are not correctly rounded).

use crate::backend::gpu::context::{GpuContext, check_buffer_sizes, descriptor_bytes, dispatch_2d};
use crate::backend::gpu::contract::{ShaderContract, uniform_layout};
use crate::backend::gpu::specialize::specialize;
use crate::error::{Result, VladError};

const SHADER: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/shaders/unit_residual.wgsl"
));
const WORKGROUP: u32 = 64;
/// The shader's `SUM_BLOCK`.
const SUM_BLOCK: u32 = crate::twins::unit_residual::SUM_BLOCK as u32;

/// The WGSL compiled for an input type.
pub fn shader_source(u8_input: bool) -> Result<String> {
    specialize(SHADER, &[("U8_INPUT", u8_input.into())])
}

/// Buffers and sizes of one chunk's unit residuals.
pub struct UnitResidualJob<'a> {
    /// `rows × dim` descriptors (f32, or packed u8 when `u8_input`).
    pub descriptors: &'a wgpu::Buffer,
    /// Whether `descriptors` holds packed u8.
    pub u8_input: bool,
    /// `clusters × dim` f32 centroids.
    pub centroids: &'a wgpu::Buffer,
    /// `rows` u32 labels.
    pub labels: &'a wgpu::Buffer,
    /// Rows in the chunk.
    pub rows: u32,
    /// F.
    pub dim: u32,
    /// K.
    pub clusters: u32,
    /// Out: `rows × dim` f32.
    pub units: &'a wgpu::Buffer,
}

#[repr(C)]
#[derive(Copy, Clone, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    dim: u32,
    clusters: u32,
    _pad: u32,
}

/// What this file assumes of every variant it compiles.
pub(crate) fn contracts() -> Result<Vec<ShaderContract>> {
    let mut contracts = Vec::new();
    for u8_input in [false, true] {
        contracts.push(ShaderContract {
            name: format!("unit_residual u8={u8_input}"),
            file: "unit_residual",
            source: shader_source(u8_input)?,
            constants: vec![
                ("WG", WORKGROUP.into()),
                ("SUM_BLOCK", SUM_BLOCK.into()),
                ("U8_INPUT", u8_input.into()),
            ],
            entry_points: vec![("unit_residual", Some([WORKGROUP, 1, 1]))],
            uniform: uniform_layout!(Params {
                rows,
                dim,
                clusters,
                _pad,
            }),
        });
    }
    Ok(contracts)
}

/// The compiled pipelines, for f32 and u8 input.
pub struct UnitResidualStage {
    pipelines: [wgpu::ComputePipeline; 2],
}

impl UnitResidualStage {
    /// Compile the shader for this device.
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        Ok(UnitResidualStage {
            pipelines: [
                ctx.pipeline(
                    "unit residual u8=false",
                    &shader_source(false)?,
                    "unit_residual",
                )?,
                ctx.pipeline(
                    "unit residual u8=true",
                    &shader_source(true)?,
                    "unit_residual",
                )?,
            ],
        })
    }

    /// Record the unit residuals of `job.rows` rows.
    pub fn record(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        job: &UnitResidualJob<'_>,
    ) -> Result<()> {
        let (rows, dim, k) = (job.rows as u64, job.dim as u64, job.clusters as u64);
        if rows == 0 {
            return Ok(());
        }
        if dim == 0 || k == 0 || rows * dim > u32::MAX as u64 {
            return Err(VladError::InvalidArgument(format!(
                "unit residual: {rows} rows, F = {dim}, K = {k}"
            )));
        }
        let descriptor_bytes = descriptor_bytes(rows * dim, job.u8_input);
        check_buffer_sizes(
            "unit residual",
            &[
                ("descriptors", job.descriptors, descriptor_bytes),
                ("centroids", job.centroids, k * dim * 4),
                ("labels", job.labels, rows * 4),
                ("units", job.units, rows * dim * 4),
            ],
        )?;
        let params = ctx.uniform(
            "unit residual params",
            &Params {
                rows: job.rows,
                dim: job.dim,
                clusters: job.clusters,
                _pad: 0,
            },
        )?;
        let pipeline = &self.pipelines[job.u8_input as usize];
        let group = ctx.bind_group_numbered(
            "unit residual",
            pipeline,
            &[
                (0, params.as_entire_binding()),
                (1, job.descriptors.as_entire_binding()),
                (2, job.centroids.as_entire_binding()),
                (3, job.labels.as_entire_binding()),
                (4, job.units.as_entire_binding()),
            ],
        )?;
        let (x, y) = dispatch_2d(job.rows.div_ceil(WORKGROUP), ctx.max_workgroups_per_dim());
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("unit residual"),
            timestamp_writes: None,
        });
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(x, y, 1);
        Ok(())
    }
}
