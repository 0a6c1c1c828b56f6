//! The wgpu backend: one WGSL shader per stage in `shaders/`, one host file
//! per stage here, and the pipeline that chains them.
//!
//! nearest-centroid assignment → stable radix sort of (image, label) keys →
//! segmented prefix sum over equal keys → residual layout `(t, k, f)` →
//! normalization.

pub mod assign;
pub mod context;
pub mod normalize;
pub mod radix_sort;
pub mod residual;
pub mod segmented_scan;
pub mod specialize;

pub use context::{GpuContext, GpuOptions};
