//! Host side of `shaders/radix_sort.wgsl`: stable LSD key–value radix sort
//! (reduce-then-scan: count, scan, scatter), only as many passes as the
//! keys' significant bits need. CPU twin: `cpu::radix_sort`.
//!
//! STUB: signatures fixed by the lead; the body is being written.

use crate::error::{Result, VladError};
use crate::gpu::context::GpuContext;

/// Keys and values to sort, with their ping-pong partners.
pub struct SortJob<'a> {
    /// `len` u32 keys (only the low `key_bits` bits are significant).
    pub keys: &'a wgpu::Buffer,
    /// `len` u32 values carried along.
    pub values: &'a wgpu::Buffer,
    /// Scratch of the same size as `keys`.
    pub alt_keys: &'a wgpu::Buffer,
    /// Scratch of the same size as `values`.
    pub alt_values: &'a wgpu::Buffer,
    /// Number of pairs.
    pub len: u32,
    /// Significant key bits (1..=32); keys must be `< 2^key_bits`.
    pub key_bits: u32,
}

/// Where the sorted pairs ended up after an even or odd number of passes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SortedIn {
    /// In `keys` / `values`.
    Primary,
    /// In `alt_keys` / `alt_values`.
    Alternate,
}

/// The compiled sort pipelines and their reusable scratch (histograms).
pub struct RadixSortStage {}

impl RadixSortStage {
    /// Compile the shaders for this device.
    pub fn new(_ctx: &GpuContext) -> Result<Self> {
        Err(VladError::Gpu("radix sort stage not written yet".into()))
    }

    /// Record a stable sort of `job`'s pairs by key into `encoder`.
    pub fn record(
        &self,
        _ctx: &GpuContext,
        _encoder: &mut wgpu::CommandEncoder,
        _job: &SortJob<'_>,
    ) -> Result<SortedIn> {
        Err(VladError::Gpu("radix sort stage not written yet".into()))
    }
}
