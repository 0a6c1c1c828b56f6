//! Host side of `shaders/soft_aggregate.wgsl`: the NetVLAD sums
//! `Σ_l a_lk·v_l − (Σ_l a_lk)·c_k` of every image of a chunk, one
//! workgroup per (image, tile of clusters × features), rows in a fixed
//! order (no atomics), and the soft counts; `mass` by those counts. CPU
//! twin: [`crate::twins::soft_aggregate`] (counts bit for bit; sums
//! equal where the driver fuses `fma`, within about an ulp per term where
//! it does not; `mass` within a few ulp, the device's division not being
//! correctly rounded).

use crate::backend::gpu::context::{GpuContext, check_buffer_sizes};
use crate::backend::gpu::contract::ShaderContract;
use crate::backend::gpu::specialize::for_input_type;
use crate::backend::gpu::stages::host::{record_dispatch, uniform_block, wgsl};
use crate::backend::gpu::stages::{BlockShape, Blocks, Descriptors};
use crate::error::{Result, VladError};

const SHADER: &str = wgsl!("soft_aggregate");
/// Invocations per workgroup (the shader's `WG`), 4 features each.
const WORKGROUP: u32 = 64;
/// Clusters per workgroup (the shader's `KT`).
const CLUSTERS_PER_TILE: u32 = 8;
/// The shader's `SUM_BLOCK`.
const SUM_BLOCK: u32 = crate::twins::soft_aggregate::SUM_BLOCK as u32;

/// Buffers and sizes of one chunk's aggregation.
pub struct SoftAggregateJob<'a> {
    /// The chunk's descriptors (its rows and width with them).
    pub input: Descriptors<'a>,
    /// `rows × clusters` f32 weights (from the soft logits stage).
    pub weights: &'a wgpu::Buffer,
    /// `rows × clusters` f32 weights whose sums are the soft counts: the
    /// unscaled ones under `rn`, else `weights` itself.
    pub mass_weights: &'a wgpu::Buffer,
    /// `clusters × dim` f32 centroids.
    pub centroids: &'a wgpu::Buffer,
    /// K.
    pub clusters: u32,
    /// `images + 1` u32 local CSR offsets.
    pub image_offsets: &'a wgpu::Buffer,
    /// Images in the chunk.
    pub images: u32,
    /// Out: `images × clusters × dim` f32 sums.
    pub blocks: &'a wgpu::Buffer,
    /// Out: `images × clusters` f32 soft counts.
    pub mass: &'a wgpu::Buffer,
}

uniform_block! {
    /// The shader's uniform block.
    struct Params {
        rows: u32,
        dim: u32,
        clusters: u32,
        images: u32,
        f_tiles: u32,
        k_tiles: u32,
        elements: u32,
        /// 1 when `mass_weights` is `weights` (no `rn`): the shader then reads
        /// each weight once.
        mass_is_weights: u32,
    }
}

/// What this file assumes of every variant it compiles.
pub(crate) fn contracts() -> Result<Vec<ShaderContract>> {
    ShaderContract::per_input_type(
        "soft_aggregate",
        |u8_input| for_input_type(SHADER, u8_input),
        &[
            ("WG", WORKGROUP.into()),
            ("KT", CLUSTERS_PER_TILE.into()),
            ("SUM_BLOCK", SUM_BLOCK.into()),
        ],
        &[
            ("aggregate", Some([WORKGROUP, 1, 1])),
            ("divide_by_mass", Some([WORKGROUP, 1, 1])),
        ],
        Params::layout(),
    )
}

/// The compiled pipelines: `aggregate` for f32 and u8 input, and
/// `divide_by_mass`.
pub struct SoftAggregateStage {
    aggregate: [wgpu::ComputePipeline; 2],
    divide: wgpu::ComputePipeline,
}

impl SoftAggregateStage {
    /// Compile the shader for this device.
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        let f32_source = for_input_type(SHADER, false)?;
        let u8_source = for_input_type(SHADER, true)?;
        Ok(SoftAggregateStage {
            aggregate: [
                ctx.pipeline("soft aggregate u8=false", &f32_source, "aggregate")?,
                ctx.pipeline("soft aggregate u8=true", &u8_source, "aggregate")?,
            ],
            divide: ctx.pipeline("soft mass", &f32_source, "divide_by_mass")?,
        })
    }

    /// Record the aggregation of every image of the chunk.
    pub fn record(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        job: &SoftAggregateJob<'_>,
    ) -> Result<()> {
        let (rows, dim, k) = job.input.checked_sizes("soft aggregate", job.clusters)?;
        let images = job.images as u64;
        if images == 0 {
            return Ok(());
        }
        if images * k * dim > u32::MAX as u64 {
            return Err(VladError::InvalidArgument(
                "soft aggregate: the chunk exceeds the shader's 32-bit index".to_string(),
            ));
        }
        check_buffer_sizes(
            "soft aggregate",
            &[
                ("weights", job.weights, rows * k * 4),
                ("mass weights", job.mass_weights, rows * k * 4),
                ("centroids", job.centroids, k * dim * 4),
                ("image offsets", job.image_offsets, (images + 1) * 4),
                ("blocks", job.blocks, images * k * dim * 4),
                ("mass", job.mass, images * k * 4),
            ],
        )?;
        let f_tiles = job.input.dim.div_ceil(4 * WORKGROUP);
        let k_tiles = job.clusters.div_ceil(CLUSTERS_PER_TILE);
        let workgroups = images * f_tiles as u64 * k_tiles as u64;
        let max = ctx.max_workgroups_per_dim();
        if workgroups > max as u64 * max as u64 {
            return Err(VladError::InvalidArgument(format!(
                "soft aggregate: {workgroups} workgroups exceed the dispatch grid"
            )));
        }
        let params = Params {
            rows: job.input.rows,
            dim: job.input.dim,
            clusters: job.clusters,
            images: job.images,
            f_tiles,
            k_tiles,
            elements: (images * k * dim) as u32,
            mass_is_weights: u32::from(job.mass_weights == job.weights),
        };
        record_dispatch(
            ctx,
            encoder,
            "soft aggregate",
            &self.aggregate[job.input.u8_input as usize],
            &params,
            &[
                (1, job.input.buffer.as_entire_binding()),
                (2, job.weights.as_entire_binding()),
                (3, job.centroids.as_entire_binding()),
                (4, job.image_offsets.as_entire_binding()),
                (5, job.blocks.as_entire_binding()),
                (6, job.mass.as_entire_binding()),
                (7, job.mass_weights.as_entire_binding()),
            ],
            workgroups as u32,
            max,
        )
    }

    /// Record `mass` with the soft counts: each block of `dim` of `blocks`
    /// divided by its count in `mass` where that is > 0.
    pub fn record_mass(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        job: &Blocks<'_>,
    ) -> Result<()> {
        let Blocks {
            shape,
            values: blocks,
            counts: mass,
        } = *job;
        let BlockShape {
            images,
            clusters,
            dim,
        } = shape;
        let elements = shape.values();
        if elements == 0 {
            return Ok(());
        }
        if elements > u32::MAX as u64
            || blocks.size() < elements * 4
            || mass.size() < shape.blocks() * 4
        {
            return Err(VladError::Gpu(format!(
                "soft mass: {elements} elements do not fit the buffers or a 32-bit index"
            )));
        }
        let params = Params {
            rows: 0,
            dim,
            clusters,
            images,
            f_tiles: 0,
            k_tiles: 0,
            elements: elements as u32,
            mass_is_weights: 0,
        };
        record_dispatch(
            ctx,
            encoder,
            "soft mass",
            &self.divide,
            &params,
            &[
                (5, blocks.as_entire_binding()),
                (6, mass.as_entire_binding()),
            ],
            (elements as u32).div_ceil(WORKGROUP),
            ctx.max_workgroups_per_dim(),
        )
    }
}
