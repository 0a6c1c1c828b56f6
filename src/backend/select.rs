//! SPEC §7's rule, applied in one place: which engine runs for a backend
//! choice, and when `auto` runs the CPU instead of the GPU.
//!
//! - `reference` and `cpu` run as asked.
//! - `gpu` runs on the adapter the options pick (a software one too); no
//!   adapter at all is [`VladError::BackendUnavailable`].
//! - `auto` lists the adapters first (no device opened, no shader compiled)
//!   and runs the GPU only on a hardware adapter that works; otherwise —
//!   only a software adapter, none at all, a device that fails to open, or
//!   a GPU failure during the call — the CPU runs and the report says why.
//!   An adapter asked for that matches nothing is an error under `auto`
//!   too: a typo to fix, not a reason to fall back quietly.
//!
//! In-memory encoding, the stream, k-means and distributed k-means all ask
//! [`select`], and [`fallback_reason`] decides for all of them which GPU
//! failures `auto` recovers from.

use std::sync::Arc;
use std::time::Instant;

use crate::backend::adapters::{AdapterKind, Adapters, is_no_match};
use crate::backend::gpu::GpuBackend;
use crate::backend::options::GpuOptions;
use crate::backend::slot::GpuSlot;
use crate::backend::{Backend, Engine};
use crate::error::{Result, VladError};

/// The engine a choice resolved to, and what the report says about it.
pub struct Selected {
    /// What computes.
    pub engine: Engine,
    /// The GPU adapter's name when the GPU runs.
    pub adapter: Option<String>,
    /// The GPU adapter's kind when the GPU runs.
    pub adapter_kind: Option<AdapterKind>,
    /// GPU setup spent by this selection (adapter listing, device,
    /// shaders): 0 when the session was open already, or for the CPU
    /// backends asked for as such.
    pub setup_seconds: f64,
    /// Why `auto` runs the CPU, when it does.
    pub fallback_reason: Option<String>,
    /// What else the caller should know (tensor cores asked for but not
    /// used, and why).
    pub notes: Vec<String>,
}

impl Selected {
    fn on(engine: Engine) -> Self {
        Selected {
            engine,
            adapter: None,
            adapter_kind: None,
            setup_seconds: 0.0,
            fallback_reason: None,
            notes: Vec::new(),
        }
    }

    /// The CPU, because `auto` could not use the GPU: `reason` says why,
    /// and the failed attempt's `setup_seconds` count as setup.
    pub fn cpu_instead(reason: String, setup_seconds: f64) -> Self {
        Selected {
            fallback_reason: Some(reason),
            setup_seconds,
            ..Selected::on(Engine::Cpu)
        }
    }

    /// The backend that runs (never `Auto`).
    pub fn backend(&self) -> Backend {
        self.engine.backend()
    }
}

/// The engine for `choice`. The GPU session comes from `slot`, made there
/// on first use with `options` (and kept: a failure to make it too, so
/// `auto` does not probe for an adapter on every call).
pub fn select(
    choice: Backend,
    options: &GpuOptions,
    slot: &GpuSlot<VladError>,
) -> Result<Selected> {
    match choice {
        Backend::Reference => Ok(Selected::on(Engine::Reference)),
        Backend::Cpu => Ok(Selected::on(Engine::Cpu)),
        Backend::Gpu | Backend::Auto => {
            let start = Instant::now();
            let mut made = false;
            let session = slot.get_or_make(|| {
                made = true;
                make_session(choice, options)
            });
            let setup_seconds = if made {
                start.elapsed().as_secs_f64()
            } else {
                0.0
            };
            match session {
                Ok(gpu) => Ok(on_gpu(gpu, setup_seconds)),
                Err(err) if choice == Backend::Auto => match fallback_reason(&err) {
                    Some(reason) => Ok(Selected::cpu_instead(reason, setup_seconds)),
                    None => Err(err),
                },
                Err(err) => Err(err),
            }
        }
    }
}

/// Every adapter wgpu sees and what `gpu` and `auto` would take (the data
/// behind `vlad adapters`), under `options` (its adapter and graphics
/// APIs). Cheap: no device is opened, no shader compiled. Without the
/// `gpu` feature the list is empty and both say why.
pub fn adapters(options: &GpuOptions) -> Adapters {
    crate::backend::gpu::adapters::list(options)
}

/// A GPU session for `choice`: under `auto`, only on a hardware adapter
/// (the listing answers a software-only machine in milliseconds).
fn make_session(choice: Backend, options: &GpuOptions) -> Result<GpuBackend> {
    if choice == Backend::Auto {
        let listed = adapters(options);
        if let Err(reason) = listed.auto_adapter()? {
            return Err(VladError::BackendUnavailable(reason.to_string()));
        }
    }
    GpuBackend::new(options)
}

fn on_gpu(gpu: Arc<GpuBackend>, setup_seconds: f64) -> Selected {
    Selected {
        adapter: Some(gpu.adapter_name()),
        adapter_kind: Some(gpu.adapter_kind()),
        notes: gpu.tensor_core_note().into_iter().collect(),
        setup_seconds,
        ..Selected::on(Engine::Gpu(gpu))
    }
}

/// Whether `auto` recovers from this GPU failure by running the CPU, and
/// the reason it reports: `Some` for an unavailable GPU or a GPU error,
/// `None` for everything else (bad input, a full disk, an adapter asked
/// for that matches none), which is the caller's error under every choice.
pub fn fallback_reason(err: &VladError) -> Option<String> {
    match err {
        VladError::BackendUnavailable(reason) if is_no_match(reason) => None,
        VladError::BackendUnavailable(reason) => Some(reason.clone()),
        VladError::Gpu(_) => Some(format!("{err}: using cpu")),
        _ => None,
    }
}
