//! Every computation runs here: without the GIL (other Python threads keep
//! running), and inside `catch_unwind`, so a Rust panic becomes a Python
//! `RuntimeError` instead of taking the interpreter down.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use vlad::VladError;

use crate::errors::to_py;

thread_local! {
    /// Wall seconds of this thread's last computation, inside the library
    /// (without the binding's argument handling): what the benchmark
    /// subtracts from the Python call's time to get the binding's cost.
    static LAST_SECONDS: Cell<f64> = const { Cell::new(f64::NAN) };
}

/// Seconds the calling thread's last computation took inside the library.
pub fn last_seconds() -> f64 {
    LAST_SECONDS.with(Cell::get)
}

/// Run `job` with the GIL released; its `VladError` becomes the matching
/// Python exception, a panic a `RuntimeError` naming it as a bug.
pub fn compute<T, F>(py: Python<'_>, job: F) -> PyResult<T>
where
    F: Send + FnOnce() -> Result<T, VladError>,
    T: Send,
{
    let outcome = py.detach(move || {
        let start = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(job));
        LAST_SECONDS.with(|s| s.set(start.elapsed().as_secs_f64()));
        outcome
    });
    match outcome {
        Ok(result) => result.map_err(to_py),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_string());
            Err(PyRuntimeError::new_err(format!(
                "internal error in vlad (a bug, please report it): {what}"
            )))
        }
    }
}
