//! The wgpu backend: one WGSL shader per stage in `shaders/`, one host file
//! per stage here, and the pipeline that chains them.
//!
//! nearest-centroid assignment → stable radix sort of (image, label) keys →
//! segmented prefix sum over equal keys → residual layout `(t, k, f)` →
//! normalization.
//!
//! Host side: [`chunking`] plans chunks that fit the adapter's bindings,
//! `pool` reuses device buffers, `pipeline` records a chunk's stages into
//! one submission and reads the results back, `timing` turns encoder
//! timestamps into per-stage seconds (these three and `specialize` are
//! internal), [`adapters`] lists and picks adapters, and [`backend`] ties
//! them into the [`GpuBackend`] session the [`Encoder`](crate::Encoder)
//! uses.

pub mod adapters;
pub mod bind_cache;
pub(crate) mod chunk_loop;
pub mod chunking;
pub(crate) mod compat;
pub mod context;
#[doc(hidden)]
pub mod contract;
pub mod gpu_backend;
pub mod host_memory;
pub(crate) mod pipeline;
pub(crate) mod pool;
pub(crate) mod shader_parts;
pub mod soft_pipeline;
pub(crate) mod specialize;
pub mod stages;
pub(crate) mod staging;
pub(crate) mod timing;

pub use crate::backend::slot::GpuSlot;
pub use chunking::{Chunk, ChunkLimits, ChunkShape, Part, plan_chunks};
pub use context::{GpuContext, GpuOptions};
pub use gpu_backend::GpuBackend;

/// Host internals that the GPU tests in `tests/` exercise directly (the
/// compiled stages, the buffer pool, shader constants and the timestamp
/// clock). Not public API: no stability promise, hidden from the docs.
#[doc(hidden)]
pub mod __internal {
    pub use super::pipeline::CompiledStages;
    pub use super::pool::{BufferPool, Role, pooled_size};
    pub use super::shader_parts::{PARTS as SHADER_PARTS, assemble as assemble_shader};
    pub use super::specialize::ShaderValue;
    pub use super::timing::{GpuTimer, StageClock};
}
