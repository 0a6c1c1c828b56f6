//! Host side of `shaders/segmented_scan.wgsl`: the sum of each run of equal
//! sorted keys — true segments, fixed leaves of rows, the pieces of runs
//! that cross leaves joined by a fixed tree. CPU twin:
//! [`crate::twins::segmented_scan`], which documents the scheme and its error
//! bound (at most 60 roundings per term, `γ₆₀ ≈ 3.6·10⁻⁶ · Σ‖v − c‖∞`) and
//! gives bitwise the same sums: the same additions in the same order.
//!
//! One dispatch sums the leaves (`CHUNK_ROWS` rows each, one invocation
//! per leaf and feature); then one dispatch per tree level (`FANIN`
//! children per node) joins partials. For a million rows that is five
//! dispatches; no dispatch waits on another workgroup.

use std::sync::Mutex;

use crate::backend::gpu::context::{GpuContext, dispatch_2d};
use crate::backend::gpu::contract::ShaderContract;
use crate::backend::gpu::stages::host::{uniform_block, wgsl};
use crate::backend::gpu::stages::{BlockShape, Descriptors};
use crate::error::{Result, VladError};
use crate::twins::segmented_scan::{CHUNK_ROWS, FANIN, tree_levels};

const SHADER: &str = wgsl!("segmented_scan");
/// The shader's workgroup size.
const WORKGROUP: u32 = 64;
const FLAG_U8: u32 = 1;
const FLAG_SUBTRACT: u32 = 2;
/// Rows beyond this would let the shader's row arithmetic (≤ 2·rows)
/// overflow u32.
const MAX_ROWS: u32 = 1 << 31;

/// Inputs of one segmented reduction over sorted rows.
pub struct ScanJob<'a> {
    /// `rows` u32 keys `image · clusters + label`, equal keys contiguous
    /// (the pipeline's sort leaves them in (label, image) order).
    pub sorted_keys: &'a wgpu::Buffer,
    /// `rows` u32 row indices in the same order (into `input`).
    pub sorted_rows: &'a wgpu::Buffer,
    /// The rows summed (as many as there are sorted keys), and their width.
    pub input: Descriptors<'a>,
    /// `clusters × dim` f32 centroids.
    pub centroids: &'a wgpu::Buffer,
    /// Sum `v − c_label` (VLAD) when true, plain `v` (k-means update) when false.
    pub subtract_centroid: bool,
    /// Number of centroids K.
    pub clusters: u32,
    /// Number of images (keys are `< images · clusters`).
    pub images: u32,
}

/// Per-run sums left on the device for the residual stage.
///
/// The sums are laid out densely by key: run `key` (= `image · clusters +
/// label`) has its `dim` sums at `sums[key · dim ..]`, which is already the
/// `(images, clusters, dim)` block layout. Only the slots of keys that occur
/// are written; the others hold whatever was there before — the residual
/// stage tells them apart by the run lengths, which it counts exactly by
/// binary search in `sorted_keys`.
///
/// `sums` is the stage's reusable scratch: record the residual stage that
/// reads it before recording this stage's next reduction.
#[derive(Clone, Debug)]
pub struct SegmentSums {
    /// `images · clusters · dim` f32 (at least), slots of present keys written.
    pub sums: wgpu::Buffer,
    /// The job's sorted keys (`rows` u32), for the run lengths.
    pub sorted_keys: wgpu::Buffer,
    /// Number of sorted rows.
    pub rows: u32,
    /// The blocks the sums are laid out as.
    pub shape: BlockShape,
}

uniform_block! {
    /// The shader's `Params` (uniform), one per dispatch.
    struct Params {
        rows: u32,
        dim: u32,
        clusters: u32,
        flags: u32,
        nodes: u32,
        children: u32,
        child_span: u32,
        in_offset: u32,
        out_offset: u32,
        _pad: [u32; 3],
    }
}

/// What this file assumes of the shader: the twin's leaf size and fan-in,
/// the flag bits and the workgroup size.
pub(crate) fn contracts() -> Vec<ShaderContract> {
    vec![ShaderContract {
        name: "segmented_scan".into(),
        file: "segmented_scan",
        source: SHADER.into(),
        constants: vec![
            ("WG", WORKGROUP.into()),
            ("CHUNK", (CHUNK_ROWS as u32).into()),
            ("FANIN", (FANIN as u32).into()),
            ("FLAG_U8", FLAG_U8.into()),
            ("FLAG_SUBTRACT", FLAG_SUBTRACT.into()),
        ],
        entry_points: vec![
            ("leaf", Some([WORKGROUP, 1, 1])),
            ("combine", Some([WORKGROUP, 1, 1])),
        ],
        uniform: Params::layout(),
    }]
}

/// Buffers kept between calls, grown when too small.
#[derive(Default)]
struct Scratch {
    levels: Option<wgpu::Buffer>,
    sums: Option<wgpu::Buffer>,
}

/// The compiled scan pipelines and their reusable scratch.
pub struct SegmentedScanStage {
    leaf: wgpu::ComputePipeline,
    combine: wgpu::ComputePipeline,
    scratch: Mutex<Scratch>,
}

impl SegmentedScanStage {
    /// Compile the shaders for this device.
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        Ok(SegmentedScanStage {
            leaf: ctx.pipeline("segmented scan leaves", SHADER, "leaf")?,
            combine: ctx.pipeline("segmented scan tree", SHADER, "combine")?,
            scratch: Mutex::new(Scratch::default()),
        })
    }

    /// Record the segmented reduction of `job` into `encoder`.
    ///
    /// Equal keys of `job.sorted_keys` must be contiguous and every key
    /// `< images · clusters`, and
    /// `job.sorted_rows` must index rows of `job.input`: the stage
    /// cannot check this on the device.
    pub fn record(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        job: &ScanJob<'_>,
    ) -> Result<SegmentSums> {
        self.record_into(ctx, encoder, job, None)
    }

    /// [`SegmentedScanStage::record`], writing the sums into `out` (at
    /// least `images · clusters · dim` f32) instead of the stage's own
    /// buffer. Their layout (slot `key · dim + f`) is already the `(t, k, f)`
    /// block layout, so the pipeline passes its blocks buffer and the
    /// residual stage need not copy them ([`crate::backend::gpu::stages::residual`]'s
    /// in-place mode). Slots of keys with no row are left as they were.
    pub fn record_into(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        job: &ScanJob<'_>,
        out: Option<&wgpu::Buffer>,
    ) -> Result<SegmentSums> {
        let Descriptors { rows, dim, .. } = job.input;
        if dim == 0 || job.clusters == 0 {
            return Err(VladError::Empty(format!(
                "segmented scan with F = {dim} and K = {}",
                job.clusters
            )));
        }
        if rows > MAX_ROWS {
            return Err(VladError::InvalidArgument(format!(
                "segmented scan of {rows} rows: at most {MAX_ROWS} per dispatch"
            )));
        }
        let dim = dim as u64;
        let sums_bytes = job.images as u64 * job.clusters as u64 * dim * 4;
        let levels = tree_levels(rows as usize);
        // Offset of each level in the levels buffer, in f32.
        let mut offsets = Vec::with_capacity(levels.len());
        let mut level_floats = 0u64;
        for &nodes in &levels {
            offsets.push(level_floats);
            level_floats += 2 * nodes as u64 * dim;
        }
        let max_binding = ctx
            .limits
            .max_storage_buffer_binding_size
            .min(ctx.limits.max_buffer_size);
        for (what, bytes) in [("sums", sums_bytes), ("tree partials", level_floats * 4)] {
            if bytes > max_binding || bytes / 4 > u32::MAX as u64 {
                return Err(VladError::Gpu(format!(
                    "segmented scan {what} need {bytes} bytes, more than one storage \
                     binding ({max_binding}); chunk the input"
                )));
            }
        }

        let mut scratch = self
            .scratch
            .lock()
            .map_err(|_| VladError::Gpu("segmented scan scratch poisoned".into()))?;
        let sums = match out {
            Some(out) if out.size() >= sums_bytes => out.clone(),
            Some(out) => {
                return Err(VladError::Gpu(format!(
                    "segmented scan output holds {} bytes, needs {sums_bytes}",
                    out.size()
                )));
            }
            None => grow(ctx, &mut scratch.sums, "segment sums", sums_bytes)?,
        };
        let segments = SegmentSums {
            sums: sums.clone(),
            sorted_keys: job.sorted_keys.clone(),
            rows,
            shape: BlockShape {
                images: job.images,
                clusters: job.clusters,
                dim: job.input.dim,
            },
        };
        if levels.is_empty() {
            return Ok(segments);
        }
        let level_buffer = grow(ctx, &mut scratch.levels, "segment tree", level_floats * 4)?;

        let flags = if job.input.u8_input { FLAG_U8 } else { 0 }
            | if job.subtract_centroid {
                FLAG_SUBTRACT
            } else {
                0
            };
        let base = Params {
            rows,
            dim: job.input.dim,
            clusters: job.clusters,
            flags,
            nodes: 0,
            children: 0,
            child_span: 0,
            in_offset: 0,
            out_offset: 0,
            _pad: [0; 3],
        };

        // (pipeline, bind group, invocations) per dispatch, leaves first.
        let mut dispatches = Vec::with_capacity(levels.len());
        let leaf_params = ctx.uniform(
            "segmented scan leaf params",
            &Params {
                nodes: levels[0] as u32,
                ..base
            },
        )?;
        let leaf_group = ctx.bind_group(
            "segmented scan leaves",
            &self.leaf,
            &[
                leaf_params.as_entire_binding(),
                job.sorted_keys.as_entire_binding(),
                level_buffer.as_entire_binding(),
                sums.as_entire_binding(),
                job.sorted_rows.as_entire_binding(),
                job.input.buffer.as_entire_binding(),
                job.centroids.as_entire_binding(),
            ],
        )?;
        dispatches.push((&self.leaf, leaf_group, levels[0] as u64 * dim));
        let mut span = CHUNK_ROWS as u64;
        for l in 1..levels.len() {
            let params = ctx.uniform(
                "segmented scan tree params",
                &Params {
                    nodes: levels[l] as u32,
                    children: levels[l - 1] as u32,
                    child_span: span as u32,
                    in_offset: offsets[l - 1] as u32,
                    out_offset: offsets[l] as u32,
                    ..base
                },
            )?;
            let group = ctx.bind_group(
                "segmented scan tree",
                &self.combine,
                &[
                    params.as_entire_binding(),
                    job.sorted_keys.as_entire_binding(),
                    level_buffer.as_entire_binding(),
                    sums.as_entire_binding(),
                ],
            )?;
            dispatches.push((&self.combine, group, levels[l] as u64 * dim));
            span *= FANIN as u64;
        }

        let max_per_dim = ctx.max_workgroups_per_dim();
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("segmented scan"),
            timestamp_writes: None,
        });
        for (pipeline, group, invocations) in &dispatches {
            let workgroups = invocations.div_ceil(WORKGROUP as u64);
            let workgroups = u32::try_from(workgroups).map_err(|_| {
                VladError::Gpu(format!("segmented scan needs {workgroups} workgroups"))
            })?;
            let (x, y) = dispatch_2d(workgroups, max_per_dim);
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, group, &[]);
            pass.dispatch_workgroups(x, y, 1);
        }
        drop(pass);
        Ok(segments)
    }
}

/// The buffer in `slot`, replaced by a larger one when it holds fewer than
/// `bytes` bytes.
fn grow(
    ctx: &GpuContext,
    slot: &mut Option<wgpu::Buffer>,
    label: &str,
    bytes: u64,
) -> Result<wgpu::Buffer> {
    let bytes = bytes.max(4);
    match slot {
        Some(buffer) if buffer.size() >= bytes => Ok(buffer.clone()),
        _ => {
            let buffer = ctx.storage_buffer(label, bytes)?;
            *slot = Some(buffer.clone());
            Ok(buffer)
        }
    }
}
