//! Host side of `shaders/assign.wgsl`: tiled nearest-centroid assignment
//! that also emits the (image, label) sort key. CPU twin: `cpu::assign`.
//!
//! STUB: signatures fixed by the lead; the body is being written.

use crate::error::{Result, VladError};
use crate::gpu::context::GpuContext;

/// Buffers and sizes of one assignment dispatch.
pub struct AssignJob<'a> {
    /// `rows × dim` descriptors: f32 row-major, or (when `u8_input`) bytes
    /// packed four per `u32` word, row-major, `rows·dim` bytes in all.
    pub descriptors: &'a wgpu::Buffer,
    /// Whether `descriptors` holds packed u8 (widened on the device).
    pub u8_input: bool,
    /// `clusters × dim` f32 centroids.
    pub centroids: &'a wgpu::Buffer,
    /// `clusters` f32 squared norms `‖c‖²`.
    pub centroid_norms: &'a wgpu::Buffer,
    /// `images + 1` u32 CSR offsets of the images in this chunk (local rows).
    pub image_offsets: &'a wgpu::Buffer,
    /// Number of descriptors in the chunk.
    pub rows: u32,
    /// Descriptor width F.
    pub dim: u32,
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

/// The compiled assignment pipelines.
pub struct AssignStage {}

impl AssignStage {
    /// Compile the shader (f32 and u8 variants) for this device.
    pub fn new(_ctx: &GpuContext) -> Result<Self> {
        Err(VladError::Gpu("assign stage not written yet".into()))
    }

    /// Record the assignment of `job.rows` descriptors into `encoder`.
    pub fn record(
        &self,
        _ctx: &GpuContext,
        _encoder: &mut wgpu::CommandEncoder,
        _job: &AssignJob<'_>,
    ) -> Result<()> {
        Err(VladError::Gpu("assign stage not written yet".into()))
    }
}
