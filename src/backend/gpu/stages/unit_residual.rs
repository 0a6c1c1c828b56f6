//! Host side of `shaders/unit_residual.wgsl`: under hard assignment with
//! `rn`, each row's residual to its labelled centroid at unit length, as
//! f32 rows for the existing sort and segmented sum. CPU twin:
//! [`crate::twins::unit_residual`] (within a few ulp: the device's division
//! and square root are not correctly rounded).

use crate::backend::gpu::context::{GpuContext, check_buffer_sizes};
use crate::backend::gpu::contract::ShaderContract;
use crate::backend::gpu::specialize::for_input_type;
use crate::backend::gpu::stages::Descriptors;
use crate::backend::gpu::stages::host::{record_dispatch, uniform_block, wgsl};
use crate::error::Result;

const SHADER: &str = wgsl!("unit_residual");
const WORKGROUP: u32 = 64;
/// The shader's `SUM_BLOCK`.
const SUM_BLOCK: u32 = crate::twins::unit_residual::SUM_BLOCK as u32;

/// Buffers and sizes of one chunk's unit residuals.
pub struct UnitResidualJob<'a> {
    /// The chunk's descriptors (its rows and width with them).
    pub input: Descriptors<'a>,
    /// `clusters × dim` f32 centroids.
    pub centroids: &'a wgpu::Buffer,
    /// `rows` u32 labels.
    pub labels: &'a wgpu::Buffer,
    /// K.
    pub clusters: u32,
    /// Out: `rows × dim` f32.
    pub units: &'a wgpu::Buffer,
}

uniform_block! {
    /// The shader's uniform block.
    struct Params {
        rows: u32,
        dim: u32,
        clusters: u32,
        _pad: u32,
    }
}

/// What this file assumes of every variant it compiles.
pub(crate) fn contracts() -> Result<Vec<ShaderContract>> {
    ShaderContract::per_input_type(
        "unit_residual",
        |u8_input| for_input_type(SHADER, u8_input),
        &[("WG", WORKGROUP.into()), ("SUM_BLOCK", SUM_BLOCK.into())],
        &[("unit_residual", Some([WORKGROUP, 1, 1]))],
        Params::layout(),
    )
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
                    &for_input_type(SHADER, false)?,
                    "unit_residual",
                )?,
                ctx.pipeline(
                    "unit residual u8=true",
                    &for_input_type(SHADER, true)?,
                    "unit_residual",
                )?,
            ],
        })
    }

    /// Record the unit residuals of `job.input.rows` rows.
    pub fn record(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        job: &UnitResidualJob<'_>,
    ) -> Result<()> {
        if job.input.rows == 0 {
            return Ok(());
        }
        let (rows, dim, k) = job.input.checked_sizes("unit residual", job.clusters)?;
        check_buffer_sizes(
            "unit residual",
            &[
                ("centroids", job.centroids, k * dim * 4),
                ("labels", job.labels, rows * 4),
                ("units", job.units, rows * dim * 4),
            ],
        )?;
        let params = Params {
            rows: job.input.rows,
            dim: job.input.dim,
            clusters: job.clusters,
            _pad: 0,
        };
        record_dispatch(
            ctx,
            encoder,
            "unit residual",
            &self.pipelines[job.input.u8_input as usize],
            &params,
            &[
                (1, job.input.buffer.as_entire_binding()),
                (2, job.centroids.as_entire_binding()),
                (3, job.labels.as_entire_binding()),
                (4, job.units.as_entire_binding()),
            ],
            job.input.rows.div_ceil(WORKGROUP),
            ctx.max_workgroups_per_dim(),
        )
    }
}
