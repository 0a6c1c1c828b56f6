//! Every computation runs here: without the GIL (other Python threads keep
//! running), and inside `catch_unwind`, so a Rust panic becomes a Python
//! `RuntimeError` instead of taking the interpreter down.

use std::panic::{AssertUnwindSafe, catch_unwind};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use vlad::VladError;

use crate::errors::to_py;

/// Run `job` with the GIL released; its `VladError` becomes the matching
/// Python exception, a panic a `RuntimeError` naming it as a bug.
pub fn compute<T, F>(py: Python<'_>, job: F) -> PyResult<T>
where
    F: Send + FnOnce() -> Result<T, VladError>,
    T: Send,
{
    let outcome = py.detach(move || catch_unwind(AssertUnwindSafe(job)));
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
