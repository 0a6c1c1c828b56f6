//! Host side of `shaders/residual.wgsl`: segment sums written into the
//! `(t, k, f)` layout, empty blocks exactly zero, plus per-block counts.
//! CPU twin: `cpu::residual`.
//!
//! STUB: signatures fixed by the lead; the body is being written.

use crate::error::{Result, VladError};
use crate::gpu::context::GpuContext;
use crate::gpu::segmented_scan::SegmentSums;

/// Where the blocks go.
pub struct ResidualJob<'a> {
    /// What the segmented scan left.
    pub segments: &'a SegmentSums,
    /// Out: `images × clusters × dim` f32, every element written.
    pub blocks: &'a wgpu::Buffer,
    /// Out: `images × clusters` u32 descriptor counts `n_{t,k}`.
    pub counts: &'a wgpu::Buffer,
    /// Number of images.
    pub images: u32,
    /// Number of centroids K.
    pub clusters: u32,
    /// Descriptor width F.
    pub dim: u32,
}

/// The compiled residual pipeline.
pub struct ResidualStage {}

impl ResidualStage {
    /// Compile the shader for this device.
    pub fn new(_ctx: &GpuContext) -> Result<Self> {
        Err(VladError::Gpu("residual stage not written yet".into()))
    }

    /// Record the layout pass into `encoder`.
    pub fn record(
        &self,
        _ctx: &GpuContext,
        _encoder: &mut wgpu::CommandEncoder,
        _job: &ResidualJob<'_>,
    ) -> Result<()> {
        Err(VladError::Gpu("residual stage not written yet".into()))
    }
}
