//! Host side of `shaders/soft_logits.wgsl`: NetVLAD logits `W·v + b` by
//! the assignment's GEMM tiling (one chunk's `rows × K` of them, never
//! more), then a stable softmax per row, the row's label and, under `rn`,
//! the weights divided by the residual norms. CPU twin:
//! [`crate::twins::soft_logits`] (logits equal where the driver fuses
//! `fma`, within an ulp or so where it does not; softmax within a few ulp,
//! the device's `exp`, division and square root not being correctly
//! rounded).
//!
//! The logits entry point is specialized per [`TileShape`] (chosen from K,
//! as for the assignment) and input type; the softmax per input type.
//! Pipelines are compiled on first use and cached.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::backend::gpu::context::{GpuContext, check_buffer_sizes, dispatch_2d};
use crate::backend::gpu::contract::ShaderContract;
use crate::backend::gpu::specialize::specialize;
use crate::backend::gpu::stages::Descriptors;
use crate::backend::gpu::stages::assign::TileShape;
use crate::backend::gpu::stages::host::{uniform_block, wgsl};
use crate::error::{Result, VladError};

const SHADER: &str = wgsl!("soft_logits");
/// Features staged through workgroup memory per chunk (the shader's `BF`),
/// and per block sum of a dot product (the twin's).
const CHUNK_FEATURES: u32 = crate::twins::soft_logits::CHUNK_FEATURES as u32;
/// Invocations per workgroup of `softmax` (one row each).
const ROW_WORKGROUP: u32 = 64;
/// The shader's `SUM_BLOCK`.
const SUM_BLOCK: u32 = crate::twins::soft_logits::SUM_BLOCK as u32;

/// The WGSL compiled for `shape` and input type.
pub fn shader_source(shape: TileShape, u8_input: bool) -> Result<String> {
    specialize(SHADER, &shape.specialization(CHUNK_FEATURES, u8_input))
}

/// Buffers and sizes of one chunk's soft assignment.
pub struct SoftLogitsJob<'a> {
    /// Divide each weight by `‖v − c_k‖` (`rn`), keeping `unscaled`.
    pub residual_norm: bool,
    /// The chunk's descriptors (its rows and width with them).
    pub input: Descriptors<'a>,
    /// `clusters × dim` f32 `W`.
    pub soft_weights: &'a wgpu::Buffer,
    /// `clusters` f32 `b`.
    pub soft_bias: &'a wgpu::Buffer,
    /// `clusters × dim` f32 centroids (read only under `rn`).
    pub centroids: &'a wgpu::Buffer,
    /// K.
    pub clusters: u32,
    /// Out: `rows × clusters` f32 weights.
    pub weights: &'a wgpu::Buffer,
    /// Out: `rows` u32 labels (largest weight).
    pub labels: &'a wgpu::Buffer,
    /// Out under `rn`: `rows × clusters` f32 weights before scaling (the
    /// soft counts' terms). Any other buffer (4 bytes will do) otherwise.
    pub unscaled: &'a wgpu::Buffer,
}

uniform_block! {
    /// The shader's uniform block.
    struct Params {
        rows: u32,
        dim: u32,
        clusters: u32,
        row_tiles: u32,
        k_tiles: u32,
        chunks: u32,
        residual_norm: u32,
        _pad1: u32,
    }
}

/// What this file assumes of every variant it compiles.
pub(crate) fn contracts() -> Result<Vec<ShaderContract>> {
    let mut contracts = Vec::new();
    for shape in TileShape::ALL {
        for u8_input in [false, true] {
            let mut constants = shape.specialization(CHUNK_FEATURES, u8_input);
            constants.extend(shape.extent());
            constants.extend([
                ("ROW_WG", ROW_WORKGROUP.into()),
                ("SUM_BLOCK", SUM_BLOCK.into()),
            ]);
            contracts.push(ShaderContract {
                name: format!("soft_logits {shape:?} u8={u8_input}"),
                file: "soft_logits",
                source: shader_source(shape, u8_input)?,
                constants,
                entry_points: vec![
                    ("logits", Some([shape.workgroup_size(), 1, 1])),
                    ("softmax", Some([ROW_WORKGROUP, 1, 1])),
                ],
                uniform: Params::layout(),
            });
        }
    }
    Ok(contracts)
}

/// The compiled pipelines, by (entry point is softmax, tile shape, u8).
#[derive(Default)]
pub struct SoftLogitsStage {
    pipelines: Mutex<HashMap<(bool, TileShape, bool), wgpu::ComputePipeline>>,
}

impl SoftLogitsStage {
    /// An empty cache; variants compile on first use.
    pub fn new() -> Self {
        Self::default()
    }

    fn pipeline(
        &self,
        ctx: &GpuContext,
        softmax: bool,
        shape: TileShape,
        u8_input: bool,
    ) -> Result<wgpu::ComputePipeline> {
        // The softmax does not depend on the tile shape: one per input type.
        let shape = if softmax { TileShape::Wide } else { shape };
        let mut cache = self
            .pipelines
            .lock()
            .map_err(|_| VladError::Gpu("soft logits pipeline cache poisoned".to_string()))?;
        if let Some(p) = cache.get(&(softmax, shape, u8_input)) {
            return Ok(p.clone());
        }
        let source = shader_source(shape, u8_input)?;
        let entry = if softmax { "softmax" } else { "logits" };
        let label = format!("soft {entry} {shape:?} u8={u8_input}");
        let pipeline = ctx.pipeline(&label, &source, entry)?;
        cache.insert((softmax, shape, u8_input), pipeline.clone());
        Ok(pipeline)
    }

    /// Record the logits and the softmax of `job.input.rows` rows.
    pub fn record(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        job: &SoftLogitsJob<'_>,
    ) -> Result<()> {
        self.record_entries(ctx, encoder, job, true)
    }

    /// Record the logits only (`job.weights` then holds `W·v + b`): what
    /// the twin test compares bit for bit.
    pub fn record_logits(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        job: &SoftLogitsJob<'_>,
    ) -> Result<()> {
        self.record_entries(ctx, encoder, job, false)
    }

    fn record_entries(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        job: &SoftLogitsJob<'_>,
        with_softmax: bool,
    ) -> Result<()> {
        if job.input.rows == 0 {
            return Ok(());
        }
        check_job(job)?;
        let shape = TileShape::for_clusters(job.clusters);
        let logits = self.pipeline(ctx, false, shape, job.input.u8_input)?;
        let softmax = self.pipeline(ctx, true, shape, job.input.u8_input)?;
        let row_tiles = job.input.rows.div_ceil(shape.rows_per_workgroup());
        let params = ctx.uniform(
            "soft logits params",
            &Params {
                rows: job.input.rows,
                dim: job.input.dim,
                clusters: job.clusters,
                row_tiles,
                k_tiles: job.clusters.div_ceil(shape.clusters_per_tile()),
                chunks: job.input.dim.div_ceil(CHUNK_FEATURES),
                residual_norm: job.residual_norm as u32,
                _pad1: 0,
            },
        )?;
        let logits_group = ctx.bind_group_numbered(
            "soft logits",
            &logits,
            &[
                (0, params.as_entire_binding()),
                (1, job.input.buffer.as_entire_binding()),
                (2, job.soft_weights.as_entire_binding()),
                (3, job.soft_bias.as_entire_binding()),
                (4, job.weights.as_entire_binding()),
            ],
        )?;
        let softmax_group = ctx.bind_group_numbered(
            "soft softmax",
            &softmax,
            &[
                (0, params.as_entire_binding()),
                (1, job.input.buffer.as_entire_binding()),
                (4, job.weights.as_entire_binding()),
                (5, job.centroids.as_entire_binding()),
                (6, job.labels.as_entire_binding()),
                (7, job.unscaled.as_entire_binding()),
            ],
        )?;
        let max = ctx.max_workgroups_per_dim();
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("soft logits"),
            timestamp_writes: None,
        });
        let (x, y) = dispatch_2d(row_tiles, max);
        pass.set_pipeline(&logits);
        pass.set_bind_group(0, &logits_group, &[]);
        pass.dispatch_workgroups(x, y, 1);
        if with_softmax {
            let (x, y) = dispatch_2d(job.input.rows.div_ceil(ROW_WORKGROUP), max);
            pass.set_pipeline(&softmax);
            pass.set_bind_group(0, &softmax_group, &[]);
            pass.dispatch_workgroups(x, y, 1);
        }
        Ok(())
    }
}

/// Sizes that make sense and buffers large enough for them.
fn check_job(job: &SoftLogitsJob<'_>) -> Result<()> {
    let (rows, dim, k) = job.input.checked_sizes("soft logits", job.clusters)?;
    check_buffer_sizes(
        "soft logits",
        &[
            ("W", job.soft_weights, k * dim * 4),
            ("b", job.soft_bias, k * 4),
            ("centroids", job.centroids, k * dim * 4),
            ("weights", job.weights, rows * k * 4),
            ("labels", job.labels, rows * 4),
            (
                "unscaled weights",
                job.unscaled,
                if job.residual_norm { rows * k * 4 } else { 4 },
            ),
        ],
    )?;
    Ok(())
}
