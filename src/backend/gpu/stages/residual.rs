//! Host side of `shaders/residual.wgsl`: segment sums written into the
//! `(t, k, f)` layout, empty blocks exactly zero, plus per-block counts.
//! CPU twin: [`crate::twins::residual`]. No arithmetic happens here, so the
//! output equals the twin's bit for bit given the same segment sums.
//!
//! Two dispatches: one invocation per block counts its rows (binary search
//! in the sorted keys — exact, and no buffer needs clearing first), then one
//! per element copies the run's sum or writes 0. The keys come sorted by
//! label alone over rows in image order (`chunking::sort_by_label`), so
//! the search orders them by (label, image).

use crate::backend::gpu::context::{GpuContext, dispatch_2d};
use crate::backend::gpu::contract::ShaderContract;
use crate::backend::gpu::stages::Blocks;
use crate::backend::gpu::stages::host::{uniform_block, wgsl};
use crate::backend::gpu::stages::segmented_scan::SegmentSums;
use crate::error::{Result, VladError};

const SHADER: &str = wgsl!("residual");
/// The shader's workgroup size.
const WORKGROUP: u32 = 64;

/// Where the blocks go.
pub struct ResidualJob<'a> {
    /// What the segmented scan left.
    pub segments: &'a SegmentSums,
    /// Out, of the caller's shape, which `segments` must have: every
    /// element of the blocks written, and the u32 descriptor counts
    /// `n_{t,k}`. When the blocks are the buffer the scan wrote its sums
    /// into (`segments.sums`), only the empty blocks are written (zeroed),
    /// in place.
    pub out: Blocks<'a>,
}

uniform_block! {
    /// The shader's `Params` (uniform).
    struct Params {
        rows: u32,
        blocks: u32,
        dim: u32,
        clusters: u32,
    }
}

/// What this file assumes of the shader.
pub(crate) fn contracts() -> Vec<ShaderContract> {
    vec![ShaderContract {
        name: "residual".into(),
        file: "residual",
        source: SHADER.into(),
        constants: vec![("WG", WORKGROUP.into())],
        entry_points: vec![
            ("count_blocks", Some([WORKGROUP, 1, 1])),
            ("write_blocks", Some([WORKGROUP, 1, 1])),
            ("zero_empty_blocks", Some([WORKGROUP, 1, 1])),
        ],
        uniform: Params::layout(),
    }]
}

/// The compiled residual pipelines.
pub struct ResidualStage {
    count: wgpu::ComputePipeline,
    write: wgpu::ComputePipeline,
    zero_empty: wgpu::ComputePipeline,
}

impl ResidualStage {
    /// Compile the shader for this device.
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        Ok(ResidualStage {
            count: ctx.pipeline("residual counts", SHADER, "count_blocks")?,
            write: ctx.pipeline("residual blocks", SHADER, "write_blocks")?,
            zero_empty: ctx.pipeline("residual empty blocks", SHADER, "zero_empty_blocks")?,
        })
    }

    /// Record the layout pass into `encoder`.
    pub fn record(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        job: &ResidualJob<'_>,
    ) -> Result<()> {
        let seg = job.segments;
        let Blocks {
            shape: want,
            values: out,
            counts,
        } = job.out;
        let have = seg.shape;
        if want != have {
            return Err(VladError::DimensionMismatch(format!(
                "residual layout of {}×{}×{} blocks from segment sums of {}×{}×{}",
                want.images, want.clusters, want.dim, have.images, have.clusters, have.dim
            )));
        }
        let (blocks, elements) = (want.blocks(), want.values());
        if elements == 0 {
            return Ok(());
        }
        if elements > u32::MAX as u64 {
            return Err(VladError::Gpu(format!(
                "residual layout of {elements} elements: at most {} per dispatch",
                u32::MAX
            )));
        }
        for (what, buffer, need) in [
            ("blocks", out, elements * 4),
            ("counts", counts, blocks * 4),
            ("segment sums", &seg.sums, elements * 4),
        ] {
            if buffer.size() < need {
                return Err(VladError::Gpu(format!(
                    "residual {what} buffer holds {} bytes, needs {need}",
                    buffer.size()
                )));
            }
        }

        let params = ctx.uniform(
            "residual params",
            &Params {
                rows: seg.rows,
                blocks: blocks as u32,
                dim: want.dim,
                clusters: want.clusters,
            },
        )?;
        let count_group = ctx.bind_group_numbered(
            "residual counts",
            &self.count,
            &[
                (0, params.as_entire_binding()),
                (1, counts.as_entire_binding()),
                (2, seg.sorted_keys.as_entire_binding()),
            ],
        )?;
        let in_place = seg.sums == *out;
        let (write, write_group) = if in_place {
            let group = ctx.bind_group_numbered(
                "residual empty blocks",
                &self.zero_empty,
                &[
                    (0, params.as_entire_binding()),
                    (1, counts.as_entire_binding()),
                    (4, out.as_entire_binding()),
                ],
            )?;
            (&self.zero_empty, group)
        } else {
            let group = ctx.bind_group_numbered(
                "residual blocks",
                &self.write,
                &[
                    (0, params.as_entire_binding()),
                    (1, counts.as_entire_binding()),
                    (3, seg.sums.as_entire_binding()),
                    (4, out.as_entire_binding()),
                ],
            )?;
            (&self.write, group)
        };

        let max_per_dim = ctx.max_workgroups_per_dim();
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("residual"),
            timestamp_writes: None,
        });
        for (pipeline, group, invocations) in [
            (&self.count, &count_group, blocks),
            (write, &write_group, elements),
        ] {
            let (x, y) = dispatch_2d(invocations.div_ceil(WORKGROUP as u64) as u32, max_per_dim);
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, group, &[]);
            pass.dispatch_workgroups(x, y, 1);
        }
        Ok(())
    }
}
