//! The backends, behind one interface (SPEC §7).
//!
//! [`Backend`] is the user's choice: `auto`, `gpu`, `cpu` or `reference`.
//! [`select`] turns it into a running [`Engine`] — the only place that
//! applies SPEC §7's rule (a hardware adapter, else the CPU, with the
//! reason) — and every route (in-memory encoding, the stream, k-means)
//! asks it. An engine does what every route needs through [`Compute`]:
//! encode a batch into caller memory, assign, and add the pieces of an
//! image split across passes ([`combine`]).
//!
//! One folder or file per backend: [`mod@reference`] (the f64 oracle),
//! [`cpu`], and [`gpu`] — or, in a build without the `gpu` feature, its
//! stand-in (`gpu_standin.rs`), which has the same interface and answers
//! every call with [`VladError::BackendUnavailable`](crate::VladError::BackendUnavailable).

pub mod adapters;
pub mod combine;
pub mod compute;
pub mod cpu;
#[cfg(feature = "gpu")]
pub mod gpu;
#[cfg(not(feature = "gpu"))]
#[path = "gpu_standin.rs"]
pub mod gpu;
pub mod options;
pub mod reference;
pub mod select;
pub mod slot;

use std::sync::Arc;

pub use crate::model::choice::Backend;
pub use compute::{AddPiece, Assign, Compute, Cuts, EncodeInto, Model, Span};

/// A running backend: what [`select::select`] hands every route.
pub enum Engine {
    /// The f64 oracle.
    Reference,
    /// The fast CPU path.
    Cpu,
    /// A GPU session (device, compiled stages, buffers).
    Gpu(Arc<gpu::GpuBackend>),
}

impl Engine {
    /// The backend this is (never `Auto`).
    pub fn backend(&self) -> Backend {
        match self {
            Engine::Reference => Backend::Reference,
            Engine::Cpu => Backend::Cpu,
            Engine::Gpu(_) => Backend::Gpu,
        }
    }
}

/// `on_engine!(engine, backend => call)`: `call` on the backend that runs,
/// bound to `backend` (a [`Compute`]) — the one place a route meets the
/// backends' differences.
macro_rules! on_engine {
    ($engine:expr, $backend:ident => $call:expr) => {
        match $engine {
            $crate::backend::Engine::Reference => {
                let $backend = &$crate::backend::reference::ReferenceBackend;
                $call
            }
            $crate::backend::Engine::Cpu => {
                let $backend = &$crate::backend::cpu::CpuBackend;
                $call
            }
            $crate::backend::Engine::Gpu(gpu) => {
                let $backend = &**gpu;
                $call
            }
        }
    };
}
pub(crate) use on_engine;
