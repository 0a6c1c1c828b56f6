//! Host side of `shaders/segmented_scan.wgsl`: segmented prefix sum over
//! runs of equal sorted keys — true segments, fixed chunks of rows per
//! workgroup, partials of segments that cross chunks combined in a fixed
//! order. CPU twin: `cpu::segmented_scan`.
//!
//! STUB: signatures fixed by the lead; the body is being written.

use crate::error::{Result, VladError};
use crate::gpu::context::GpuContext;

/// Inputs of one segmented reduction over sorted rows.
pub struct ScanJob<'a> {
    /// `rows` u32 keys sorted ascending: `image · clusters + label`.
    pub sorted_keys: &'a wgpu::Buffer,
    /// `rows` u32 row indices in the same order (into `descriptors`).
    pub sorted_rows: &'a wgpu::Buffer,
    /// Descriptors, f32 or packed u8 (see `AssignJob::descriptors`).
    pub descriptors: &'a wgpu::Buffer,
    /// Whether `descriptors` holds packed u8.
    pub u8_input: bool,
    /// `clusters × dim` f32 centroids.
    pub centroids: &'a wgpu::Buffer,
    /// Sum `v − c_label` (VLAD) when true, plain `v` (k-means update) when false.
    pub subtract_centroid: bool,
    /// Number of rows.
    pub rows: u32,
    /// Descriptor width F.
    pub dim: u32,
    /// Number of centroids K.
    pub clusters: u32,
    /// Number of images (keys are `< images · clusters`).
    pub images: u32,
}

/// Per-segment sums and counts left on the device for the residual stage.
/// The layout is this stage's business; `ResidualStage` reads it.
#[derive(Clone, Debug)]
pub struct SegmentSums {}

/// The compiled scan pipelines and their reusable scratch.
pub struct SegmentedScanStage {}

impl SegmentedScanStage {
    /// Compile the shaders for this device.
    pub fn new(_ctx: &GpuContext) -> Result<Self> {
        Err(VladError::Gpu(
            "segmented scan stage not written yet".into(),
        ))
    }

    /// Record the segmented reduction of `job` into `encoder`.
    pub fn record(
        &self,
        _ctx: &GpuContext,
        _encoder: &mut wgpu::CommandEncoder,
        _job: &ScanJob<'_>,
    ) -> Result<SegmentSums> {
        Err(VladError::Gpu(
            "segmented scan stage not written yet".into(),
        ))
    }
}
