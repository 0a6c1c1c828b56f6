//! The wgpu backend: one WGSL shader per stage in `shaders/`, one host file
//! per stage here, and the pipeline that chains them.
//!
//! nearest-centroid assignment → stable radix sort of (image, label) keys →
//! segmented prefix sum over equal keys → residual layout `(t, k, f)` →
//! normalization.
//!
//! Host side: [`chunking`] plans chunks that fit the adapter's bindings,
//! [`pool`] reuses device buffers, [`pipeline`] records a chunk's stages into
//! one submission and reads the results back, [`timing`] turns encoder
//! timestamps into per-stage seconds, and [`backend`] ties them into the
//! [`GpuBackend`] session the [`Encoder`](crate::Encoder) uses.

pub mod assign;
pub mod backend;
pub mod ceilings;
pub mod chunking;
pub mod context;
pub mod host_memory;
pub mod normalize;
pub mod pipeline;
pub mod pool;
pub mod radix_sort;
pub mod residual;
pub mod segmented_scan;
pub mod session;
pub mod specialize;
pub mod staging;
pub mod timing;

pub use backend::GpuBackend;
pub use chunking::{Chunk, ChunkLimits, ChunkShape, Part, plan_chunks};
pub use context::{GpuContext, GpuOptions};
pub use session::GpuSlot;
