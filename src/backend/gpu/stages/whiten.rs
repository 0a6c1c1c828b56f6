//! Host side of `shaders/whiten.wgsl`: the projection of whitening (SPEC
//! §14) on the GPU, after `normalize`, so that a whitened encoding reads
//! back `T × D′` values instead of `T × K·F`. CPU twin:
//! [`crate::twins::whiten`] (bit for bit where the device's `fma` is
//! fused). The post normalization (`l2` over `D′` values) is applied on the
//! host after read-back (`Whitening::post_normalize_row`).
//!
//! `Pᵀ` (`D × W`, `W` = `D′` rounded up to 64) is bound whole when it fits
//! one storage binding; a larger one is split into groups of output
//! columns ([`ProjectionGroups`]), one dispatch each.

use crate::backend::gpu::context::GpuContext;
use crate::backend::gpu::contract::ShaderContract;
use crate::backend::gpu::stages::host::{record_dispatch, uniform_block, wgsl};
use crate::error::{Result, VladError};
use crate::whitening::Whitening;

const SHADER: &str = wgsl!("whiten");
/// The shader's workgroup size: output columns per workgroup.
pub const WORKGROUP: u32 = 64;
/// Rows each invocation computes.
pub const ROWS: u32 = 4;

uniform_block! {
    /// The shader's `Params` (uniform).
    struct Params {
        rows: u32,
        dim: u32,
        width: u32,
        out_stride: u32,
        col0: u32,
        _pad: [u32; 3],
    }
}

/// What this file assumes of the shader.
pub(crate) fn contracts() -> Result<Vec<ShaderContract>> {
    Ok(vec![ShaderContract {
        name: "whiten".to_string(),
        file: "whiten",
        source: SHADER.to_string(),
        constants: vec![
            ("WG", WORKGROUP.into()),
            ("ROWS", ROWS.into()),
            ("KB", (crate::twins::whiten::KB as u32).into()),
        ],
        entry_points: vec![("project", Some([WORKGROUP, 1, 1]))],
        uniform: Params::layout(),
    }])
}

/// One group of `Pᵀ`'s output columns, on the device.
pub struct ProjectionGroup {
    /// `D × width` f32.
    pub pt: wgpu::Buffer,
    /// Its columns (a multiple of [`WORKGROUP`]).
    pub width: u32,
    /// Its first output column.
    pub col0: u32,
}

/// A whitening's mean and `Pᵀ` uploaded, `Pᵀ` in groups of columns that
/// each fit one storage binding.
pub struct ProjectionGroups {
    /// `μ`, `D` f32.
    pub mean: wgpu::Buffer,
    /// The column groups, in order.
    pub groups: Vec<ProjectionGroup>,
    /// `D`.
    pub dim: u32,
    /// The padded output width `W` (the output's row stride).
    pub width: u32,
}

impl ProjectionGroups {
    /// Upload `w`'s mean and `Pᵀ`.
    pub fn upload(ctx: &GpuContext, w: &Whitening) -> Result<Self> {
        let (pt, width) = w.transposed();
        let dim = w.dims_in();
        let max = ctx.max_binding_bytes();
        let column_bytes = dim as u64 * 4;
        let per_group = (max / column_bytes) / WORKGROUP as u64 * WORKGROUP as u64;
        if per_group == 0 || u32::try_from(width).is_err() || u32::try_from(dim).is_err() {
            return Err(VladError::Unsupported {
                path: "whitening".into(),
                message: format!(
                    "D = {dim}: {} output columns of Pᵀ need {} bytes, more than one storage \
                     binding ({max}) holds; whiten on the cpu backend",
                    WORKGROUP,
                    column_bytes * WORKGROUP as u64
                ),
            });
        }
        let per_group = per_group as usize;
        let mut groups = Vec::new();
        for col0 in (0..width).step_by(per_group) {
            let cols = per_group.min(width - col0);
            let mut part = Vec::with_capacity(dim * cols);
            for k in 0..dim {
                part.extend_from_slice(&pt[k * width + col0..k * width + col0 + cols]);
            }
            groups.push(ProjectionGroup {
                pt: ctx.upload("whiten projection", &part)?,
                width: cols as u32,
                col0: col0 as u32,
            });
        }
        let mean = w
            .mean()
            .as_slice()
            .unwrap_or_else(|| unreachable!("owned, standard layout"));
        Ok(ProjectionGroups {
            mean: ctx.upload("whiten mean", mean)?,
            groups,
            dim: dim as u32,
            width: width as u32,
        })
    }
}

/// The compiled whitening pipeline.
pub struct WhitenStage {
    project: wgpu::ComputePipeline,
}

impl WhitenStage {
    /// Compile the shader for this device.
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        Ok(WhitenStage {
            project: ctx.pipeline("whiten project", SHADER, "project")?,
        })
    }

    /// Record `rows` rows of `input` (`rows × D` f32) projected into `out`
    /// (`rows × W` f32, every column written): one dispatch per group.
    pub fn record(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        projection: &ProjectionGroups,
        input: &wgpu::Buffer,
        rows: u32,
        out: &wgpu::Buffer,
    ) -> Result<()> {
        if rows == 0 {
            return Ok(());
        }
        for group in &projection.groups {
            let params = Params {
                rows,
                dim: projection.dim,
                width: group.width,
                out_stride: projection.width,
                col0: group.col0,
                _pad: [0; 3],
            };
            let tiles = group.width / WORKGROUP;
            let workgroups = rows.div_ceil(ROWS).checked_mul(tiles).ok_or_else(|| {
                VladError::Gpu(format!("whitening {rows} rows: too many workgroups"))
            })?;
            record_dispatch(
                ctx,
                encoder,
                "whiten project",
                &self.project,
                &params,
                &[
                    (1, input.as_entire_binding()),
                    (2, projection.mean.as_entire_binding()),
                    (3, group.pt.as_entire_binding()),
                    (4, out.as_entire_binding()),
                ],
                workgroups,
                ctx.max_workgroups_per_dim(),
            )?;
        }
        Ok(())
    }
}
