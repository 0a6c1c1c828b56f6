//! Host side of `shaders/normalize.wgsl`: mass, power α, intra and l2 in
//! the order given, with fixed-order reductions. CPU twin: `cpu::normalize`.
//!
//! STUB: signatures fixed by the lead; the body is being written.

use crate::error::{Result, VladError};
use crate::gpu::context::GpuContext;
use crate::normalization::Normalization;

/// Blocks to normalize in place.
pub struct NormalizeJob<'a> {
    /// In/out: `images × clusters × dim` f32 (one `K·F` row per image).
    pub blocks: &'a wgpu::Buffer,
    /// `images × clusters` u32 counts (read by `mass`).
    pub counts: &'a wgpu::Buffer,
    /// Number of images (rows).
    pub images: u32,
    /// Number of centroids K.
    pub clusters: u32,
    /// Descriptor width F.
    pub dim: u32,
    /// The steps, applied in order.
    pub normalization: &'a Normalization,
}

/// The compiled normalization pipelines.
pub struct NormalizeStage {}

impl NormalizeStage {
    /// Compile the shader for this device.
    pub fn new(_ctx: &GpuContext) -> Result<Self> {
        Err(VladError::Gpu("normalize stage not written yet".into()))
    }

    /// Record the steps into `encoder` (nothing for an empty list).
    pub fn record(
        &self,
        _ctx: &GpuContext,
        _encoder: &mut wgpu::CommandEncoder,
        _job: &NormalizeJob<'_>,
    ) -> Result<()> {
        Err(VladError::Gpu("normalize stage not written yet".into()))
    }
}
