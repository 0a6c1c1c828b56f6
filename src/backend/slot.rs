//! The GPU session an [`Encoder`](crate::Encoder) keeps between calls, and
//! its re-creation after a lost device.
//!
//! Making a session opens a device and compiles every shader, so it is made
//! once, on first use, and kept; a failure to make it is kept too (so `auto`
//! does not probe for an adapter on every call). A device, though, can be
//! lost while the session lives (driver reset, GPU removed, watchdog): the
//! call that meets the loss fails (and `auto` falls back to the CPU for it),
//! and the next call finds the session marked lost and makes a new one.

use std::sync::{Arc, Mutex};

use crate::backend::gpu::GpuBackend;

/// A lazily made [`GpuBackend`], re-made when its device is lost. `E` is the
/// caller's record of why making it failed (kept, and cloned to each caller).
pub struct GpuSlot<E> {
    held: Mutex<Option<Result<Arc<GpuBackend>, E>>>,
}

impl<E> Default for GpuSlot<E> {
    fn default() -> Self {
        GpuSlot {
            held: Mutex::new(None),
        }
    }
}

impl<E: Clone> GpuSlot<E> {
    /// An empty slot: the first [`GpuSlot::get_or_make`] makes the session.
    pub fn new() -> Self {
        Self::default()
    }

    /// The session, made by `make` on first use or when the one held has
    /// lost its device; a failure of `make` is kept and returned from then on.
    pub fn get_or_make(
        &self,
        make: impl FnOnce() -> Result<GpuBackend, E>,
    ) -> Result<Arc<GpuBackend>, E> {
        // A panic while making a session leaves nothing half-made in the
        // slot: recover the guard rather than poisoning every later call.
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        match &*held {
            Some(Ok(session)) if !session.is_lost() => return Ok(session.clone()),
            Some(Err(e)) => return Err(e.clone()),
            // Empty, or its device is gone: (re)make it below.
            Some(Ok(_)) | None => {}
        }
        let made = make().map(Arc::new);
        *held = Some(made.clone());
        made
    }

    /// The session held now, if one was made and its device is not lost.
    pub fn current(&self) -> Option<Arc<GpuBackend>> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        match &*held {
            Some(Ok(session)) if !session.is_lost() => Some(session.clone()),
            _ => None,
        }
    }
}
