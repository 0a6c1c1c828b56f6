//! The wgpu backend: one WGSL shader per stage in `shaders/`, one host file
//! per stage in [`stages`], and one runner that chains them, chunk by
//! chunk, for every route of SPEC §10.
//!
//! Hard assignment: nearest-centroid assignment → stable radix sort of
//! (image, label) keys → segmented prefix sum over equal keys → residual
//! layout `(t, k, f)` → normalization; with `rn`, of unit residuals; soft
//! assignment: soft logits → per-image weighted sums → normalization.
//!
//! Host side, from the ground up: [`context`] opens the device (asking for
//! what [`tensor_cores`] decides) and holds the checked primitives and the
//! [`bind_cache`]; [`chunking`] plans chunks that fit the adapter's
//! bindings, `pool` and `staging` reuse device and host-mappable buffers,
//! `timing` turns encoder timestamps into per-stage seconds; [`stages`]
//! record the dispatches; `route` says which stages a chunk records for
//! which work, `runner` records, submits and reads back a run's chunks
//! (in the order of `chunk_loop`), and [`gpu_backend`] ties them into the
//! [`GpuBackend`] session behind [`Compute`](crate::backend::Compute).
//! [`adapters`] lists and picks adapters.

pub mod adapters;
pub mod bind_cache;
mod chunk_loop;
pub mod chunking;
pub(crate) mod compat;
pub mod context;
#[doc(hidden)]
pub mod contract;
pub mod gpu_backend;
pub mod host_memory;
pub(crate) mod pool;
mod route;
mod runner;
pub(crate) mod shader_parts;
pub(crate) mod specialize;
pub mod stages;
pub(crate) mod staging;
pub mod tensor_cores;
pub(crate) mod timing;
pub(crate) mod whitening;

pub use crate::backend::slot::GpuSlot;
pub use chunking::{Chunk, ChunkLimits, ChunkShape, Part, plan_chunks};
pub use context::{GpuContext, GpuOptions};
pub use gpu_backend::GpuBackend;

/// Host internals that the GPU tests in `tests/` exercise directly (the
/// compiled stages, the buffer pool, shader constants and the timestamp
/// clock). Not public API: no stability promise, hidden from the docs.
#[doc(hidden)]
pub mod __internal {
    pub use super::pool::{BufferPool, Role, pooled_size};
    pub use super::shader_parts::{PARTS as SHADER_PARTS, assemble as assemble_shader};
    pub use super::specialize::ShaderValue;
    pub use super::stages::CompiledStages;
    pub use super::timing::{GpuTimer, StageClock};
}
