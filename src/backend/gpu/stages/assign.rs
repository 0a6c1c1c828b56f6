//! Host side of `shaders/assign.wgsl`: tiled nearest-centroid assignment
//! that also emits the (image, label) sort key. CPU twin: `cpu::assign`.
//!
//! The shader is specialized per [`TileShape`] (chosen from K, so small
//! codebooks do not pay for a 128-wide centroid tile) and per input type
//! (f32 or packed u8); pipelines are compiled on first use and cached.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::backend::gpu::context::{GpuContext, check_buffer_sizes};
use crate::backend::gpu::contract::ShaderContract;
use crate::backend::gpu::specialize::{ShaderValue, specialize};
use crate::backend::gpu::stages::Descriptors;
use crate::backend::gpu::stages::host::{record_dispatch, uniform_block, wgsl};
use crate::error::{Result, VladError};

const SHADER: &str = wgsl!("assign");

/// The workgroup tiling of one compiled variant. Every invocation owns an
/// 8 rows × 8 centroids register tile; the shapes differ in how many
/// invocations share the centroids (CT) and the rows (RT).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum TileShape {
    /// 256 rows × 16 centroids per workgroup tile, 64 invocations (K ≤ 16):
    /// the narrow tile would mask off at least half of its multiply-adds.
    Tiny,
    /// 256 rows × 32 centroids per workgroup tile, 128 invocations
    /// (16 < K ≤ 32).
    Narrow,
    /// 256 rows × 64 centroids, 256 invocations (32 < K ≤ 64).
    Medium,
    /// 128 rows × 128 centroids, 256 invocations (K > 64).
    Wide,
}

impl TileShape {
    /// Every shape, for validation.
    pub const ALL: [TileShape; 4] = [
        TileShape::Tiny,
        TileShape::Narrow,
        TileShape::Medium,
        TileShape::Wide,
    ];

    /// The shape that wastes least work on `clusters` centroids.
    pub fn for_clusters(clusters: u32) -> Self {
        match clusters {
            0..=16 => TileShape::Tiny,
            17..=32 => TileShape::Narrow,
            33..=64 => TileShape::Medium,
            _ => TileShape::Wide,
        }
    }

    /// (CT, RT): invocations along the centroids and along the rows.
    fn invocations(self) -> (u32, u32) {
        match self {
            TileShape::Tiny => (2, 32),
            TileShape::Narrow => (4, 32),
            TileShape::Medium => (8, 32),
            TileShape::Wide => (16, 16),
        }
    }

    /// The constants a shader on this tile (`shaders/parts/gemm_tile.wgsl`:
    /// the assignment and the soft logits) is specialized by: CT, RT, the
    /// features staged per chunk (BF) and the input type.
    pub(crate) fn specialization(
        self,
        chunk_features: u32,
        u8_input: bool,
    ) -> Vec<(&'static str, ShaderValue)> {
        let (ct, rt) = self.invocations();
        vec![
            ("CT", ct.into()),
            ("RT", rt.into()),
            ("BF", chunk_features.into()),
            ("U8_INPUT", u8_input.into()),
        ]
    }

    /// What the shader contracts assume of this tile besides: its
    /// workgroup size (WG) and the rows (BM) and centroids (BN) it covers.
    pub(crate) fn extent(self) -> [(&'static str, ShaderValue); 3] {
        [
            ("WG", self.workgroup_size().into()),
            ("BM", self.rows_per_workgroup().into()),
            ("BN", self.clusters_per_tile().into()),
        ]
    }

    /// Invocations per workgroup.
    pub fn workgroup_size(self) -> u32 {
        let (ct, rt) = self.invocations();
        ct * rt
    }

    /// Rows per workgroup (BM).
    pub fn rows_per_workgroup(self) -> u32 {
        self.invocations().1 * 8
    }

    /// Centroids per tile (BN).
    pub fn clusters_per_tile(self) -> u32 {
        self.invocations().0 * 8
    }

    /// Features staged through workgroup memory per chunk (BF). The tiny
    /// tile stages 4, so that its 64 invocations fetch 16 row values each
    /// (as many as the narrow tile's do with 8), not 32.
    pub fn chunk_features(self) -> u32 {
        match self {
            TileShape::Tiny => 4,
            _ => 8,
        }
    }

    /// Values each invocation fetches per chunk: of the rows (A_LOADS) and
    /// of the centroids (B_LOADS). Both divisions are exact.
    pub fn loads(self) -> (u32, u32) {
        let (wg, bf) = (self.workgroup_size(), self.chunk_features());
        (
            self.rows_per_workgroup() * bf / wg,
            self.clusters_per_tile() * bf / wg,
        )
    }

    /// Multiply-adds the shader issues for `rows` rows against `clusters`
    /// centroids of width `dim`, padding included: whole row tiles, whole
    /// centroid tiles, whole feature chunks (what `vlad bench` models as
    /// `rows · clusters · dim`).
    pub fn issued_fmas(self, rows: u64, clusters: u64, dim: u64) -> u64 {
        let (bm, bn, bf) = (
            self.rows_per_workgroup() as u64,
            self.clusters_per_tile() as u64,
            self.chunk_features() as u64,
        );
        rows.div_ceil(bm) * bm * clusters.div_ceil(bn) * bn * dim.div_ceil(bf) * bf
    }
}

/// The WGSL the stage compiles for `shape` and input type.
pub fn shader_source(shape: TileShape, u8_input: bool) -> Result<String> {
    specialize(
        SHADER,
        &shape.specialization(shape.chunk_features(), u8_input),
    )
}

/// Buffers and sizes of one assignment dispatch.
pub struct AssignJob<'a> {
    /// The chunk's descriptors (its rows and width with them).
    pub input: Descriptors<'a>,
    /// `clusters × dim` f32 centroids.
    pub centroids: &'a wgpu::Buffer,
    /// `clusters` f32 squared norms `‖c‖²`.
    pub centroid_norms: &'a wgpu::Buffer,
    /// `images + 1` u32 CSR offsets of the images in this chunk (local rows).
    pub image_offsets: &'a wgpu::Buffer,
    /// Number of centroids K.
    pub clusters: u32,
    /// Number of images in the chunk.
    pub images: u32,
    /// Out: `rows` u32 labels.
    pub labels: &'a wgpu::Buffer,
    /// Out: `rows` u32 sort keys `image · clusters + label`.
    pub keys: &'a wgpu::Buffer,
    /// Out: `rows` u32 payload for the sort: the row index itself.
    pub values: &'a wgpu::Buffer,
}

uniform_block! {
    /// The uniform block of `shaders/parts/assign_interface.wgsl`, which the
    /// plain and the tensor-core assignment share.
    pub struct Params {
        rows: u32,
        dim: u32,
        clusters: u32,
        images: u32,
        row_tiles: u32,
        k_tiles: u32,
        chunks: u32,
        _pad: u32,
    }
}

impl Params {
    /// For `job` on workgroups of `rows_per_workgroup` rows that walk the
    /// centroids `clusters_per_tile` and the features `chunk` at a time.
    pub(crate) fn for_job(
        job: &AssignJob<'_>,
        rows_per_workgroup: u32,
        clusters_per_tile: u32,
        chunk: u32,
    ) -> Params {
        let Descriptors { rows, dim, .. } = job.input;
        Params {
            rows,
            dim,
            clusters: job.clusters,
            images: job.images,
            row_tiles: rows.div_ceil(rows_per_workgroup),
            k_tiles: job.clusters.div_ceil(clusters_per_tile),
            chunks: dim.div_ceil(chunk),
            _pad: 0,
        }
    }
}

/// Record one dispatch of `pipeline` (a variant of the assignment
/// interface) over `job`: its buffers bound in the interface's order after
/// the uniform `params`, one workgroup per row tile, at most `max_per_dim`
/// per dimension.
pub(crate) fn dispatch_job(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    label: &str,
    pipeline: &wgpu::ComputePipeline,
    params: &Params,
    job: &AssignJob<'_>,
    max_per_dim: u32,
) -> Result<()> {
    record_dispatch(
        ctx,
        encoder,
        label,
        pipeline,
        params,
        &[
            (1, job.input.buffer.as_entire_binding()),
            (2, job.centroids.as_entire_binding()),
            (3, job.centroid_norms.as_entire_binding()),
            (4, job.image_offsets.as_entire_binding()),
            (5, job.labels.as_entire_binding()),
            (6, job.keys.as_entire_binding()),
            (7, job.values.as_entire_binding()),
        ],
        params.row_tiles,
        max_per_dim,
    )
}

/// What this file assumes of every variant it compiles.
pub(crate) fn contracts() -> Result<Vec<ShaderContract>> {
    let mut contracts = Vec::new();
    for shape in TileShape::ALL {
        for u8_input in [false, true] {
            let (a_loads, b_loads) = shape.loads();
            let mut constants = shape.specialization(shape.chunk_features(), u8_input);
            constants.extend(shape.extent());
            constants.extend([("A_LOADS", a_loads.into()), ("B_LOADS", b_loads.into())]);
            contracts.push(ShaderContract {
                name: format!("assign {shape:?} u8={u8_input}"),
                file: "assign",
                source: shader_source(shape, u8_input)?,
                constants,
                entry_points: vec![("assign", Some([shape.workgroup_size(), 1, 1]))],
                uniform: Params::layout(),
            });
        }
    }
    Ok(contracts)
}

/// The compiled assignment pipelines.
pub struct AssignStage {
    pipelines: Mutex<HashMap<(TileShape, bool), wgpu::ComputePipeline>>,
    /// Cap on workgroups per dispatch dimension below the adapter's.
    max_workgroups_per_dim: Option<u32>,
}

impl AssignStage {
    /// Compile the shader (f32 and u8 variants) for this device. The wide
    /// variants are compiled now, so a device that cannot run the shader
    /// fails here; the others on first use.
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        let stage = AssignStage {
            pipelines: Mutex::new(HashMap::new()),
            max_workgroups_per_dim: None,
        };
        stage.pipeline(ctx, TileShape::Wide, false)?;
        stage.pipeline(ctx, TileShape::Wide, true)?;
        Ok(stage)
    }

    /// Split dispatches as if the adapter allowed at most `max` (≥ 1)
    /// workgroups per dimension, so small inputs exercise the 2-D dispatch
    /// that only huge ones need otherwise.
    pub fn with_max_workgroups_per_dim(mut self, max: u32) -> Self {
        self.max_workgroups_per_dim = Some(max.max(1));
        self
    }

    fn pipeline(
        &self,
        ctx: &GpuContext,
        shape: TileShape,
        u8_input: bool,
    ) -> Result<wgpu::ComputePipeline> {
        let mut cache = self
            .pipelines
            .lock()
            .map_err(|_| VladError::Gpu("assign pipeline cache lock poisoned".to_string()))?;
        if let Some(p) = cache.get(&(shape, u8_input)) {
            return Ok(p.clone());
        }
        let source = shader_source(shape, u8_input)?;
        let label = format!("assign {shape:?} u8={u8_input}");
        let pipeline = ctx.pipeline(&label, &source, "assign")?;
        cache.insert((shape, u8_input), pipeline.clone());
        Ok(pipeline)
    }
}

impl AssignVariant for AssignStage {
    const LABEL: &'static str = "assign";

    /// The tile shape for `job`'s K, at most the cap on workgroups.
    fn prepare(&self, ctx: &GpuContext, job: &AssignJob<'_>) -> Result<Prepared> {
        let shape = TileShape::for_clusters(job.clusters);
        let pipeline = self.pipeline(ctx, shape, job.input.u8_input)?;
        let params = Params::for_job(
            job,
            shape.rows_per_workgroup(),
            shape.clusters_per_tile(),
            shape.chunk_features(),
        );
        let max = ctx
            .max_workgroups_per_dim()
            .min(self.max_workgroups_per_dim.unwrap_or(u32::MAX));
        Ok((pipeline, params, max))
    }
}

/// A compiled variant of the assignment interface
/// (`shaders/parts/assign_interface.wgsl`): the plain tiled GEMM-argmin or
/// the tensor-core one. Both take the same job and write the same outputs;
/// a variant says only how it is dispatched.
pub trait AssignVariant {
    /// The name of its pass.
    const LABEL: &'static str;

    /// Its pipeline for `job`'s input type, the uniforms that size the
    /// dispatch, and the most workgroups per dimension.
    fn prepare(&self, ctx: &GpuContext, job: &AssignJob<'_>) -> Result<Prepared>;

    /// Record the assignment of `job.input.rows` descriptors into `encoder`.
    fn record(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        job: &AssignJob<'_>,
    ) -> Result<()> {
        if job.input.rows == 0 {
            return Ok(());
        }
        check_job(job)?;
        let (pipeline, params, max) = self.prepare(ctx, job)?;
        dispatch_job(ctx, encoder, Self::LABEL, &pipeline, &params, job, max)
    }
}

/// What [`AssignVariant::prepare`] hands [`AssignVariant::record`].
pub type Prepared = (wgpu::ComputePipeline, Params, u32);

/// Sizes that make sense and buffers large enough for them, so the shader
/// never indexes out of its bindings (which WGSL would clamp silently).
pub(crate) fn check_job(job: &AssignJob<'_>) -> Result<()> {
    let Descriptors { rows, dim, .. } = job.input;
    if dim == 0 || job.clusters == 0 || job.images == 0 {
        return Err(VladError::InvalidArgument(format!(
            "assign: dim = {dim}, clusters = {}, images = {} (all must be ≥ 1 when rows > 0)",
            job.clusters, job.images
        )));
    }
    if job.input.values() > u32::MAX as u64 {
        return Err(VladError::InvalidArgument(format!(
            "assign: {rows} rows × {dim} dims exceed the shader's 32-bit element index"
        )));
    }
    if job.images as u64 * job.clusters as u64 > 1u64 << 32 {
        return Err(VladError::InvalidArgument(format!(
            "assign: keys image·K + label for {} images × {} clusters do not fit in 32 bits",
            job.images, job.clusters
        )));
    }
    let rows_bytes = rows as u64 * 4;
    check_buffer_sizes(
        "assign",
        &[
            ("descriptors", job.input.buffer, job.input.bytes()),
            (
                "centroids",
                job.centroids,
                job.clusters as u64 * dim as u64 * 4,
            ),
            (
                "centroid_norms",
                job.centroid_norms,
                job.clusters as u64 * 4,
            ),
            (
                "image_offsets",
                job.image_offsets,
                (job.images as u64 + 1) * 4,
            ),
            ("labels", job.labels, rows_bytes),
            ("keys", job.keys, rows_bytes),
            ("values", job.values, rows_bytes),
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::TileShape;

    #[test]
    fn every_shape_loads_whole_values_and_k_picks_the_smallest_tile() {
        for shape in TileShape::ALL {
            let (wg, bf) = (shape.workgroup_size(), shape.chunk_features());
            let (a, b) = shape.loads();
            assert!(a >= 1 && b >= 1, "{shape:?}");
            assert_eq!(a * wg, shape.rows_per_workgroup() * bf, "{shape:?}");
            assert_eq!(b * wg, shape.clusters_per_tile() * bf, "{shape:?}");
        }
        for (k, shape) in [
            (1, TileShape::Tiny),
            (16, TileShape::Tiny),
            (17, TileShape::Narrow),
            (32, TileShape::Narrow),
            (33, TileShape::Medium),
            (65, TileShape::Wide),
        ] {
            assert_eq!(TileShape::for_clusters(k), shape, "K = {k}");
        }
    }

    #[test]
    fn the_tiny_tile_issues_half_the_narrow_tiles_work_at_k_16() {
        let (n, k, f) = (32_768, 16, 64);
        assert_eq!(TileShape::Tiny.issued_fmas(n, k, f), n * k * f);
        assert_eq!(TileShape::Narrow.issued_fmas(n, k, f), 2 * n * k * f);
    }
}
