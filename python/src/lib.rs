//! The native module `vlad._vlad` behind the Python package `vlad`
//! (SPEC §12). The package `python/vlad/` wraps it with the friendlier
//! parts (lists of images, float16, array-likes, `KMeans`).
//!
//! One concept per file: [`arrays`] turns numpy arrays into borrowed views,
//! [`glue`] is the only file that calls the `vlad` library, [`detach`] runs
//! every computation without the GIL and without letting a panic through,
//! [`errors`] maps library errors to exceptions, [`encoder`], [`kmeans`], [`lloyd`] and
//! [`adapters`] are what Python sees, [`results`] what they return.

mod adapters;
mod arrays;
mod detach;
mod encoder;
mod errors;
mod glue;
mod kmeans;
mod lloyd;
mod model_file;
mod results;
mod whitening;

use pyo3::prelude::*;

/// Test hook: panic inside a computation, to show a panic becomes a Python
/// `RuntimeError` and the interpreter goes on.
#[pyfunction]
fn _panic_for_test(py: Python<'_>) -> PyResult<()> {
    detach::compute(py, || -> Result<(), vlad::VladError> {
        panic!("a deliberate panic, for the tests")
    })
}

/// Benchmark hook: wall seconds of this thread's last computation inside
/// the library (the Python call's time less the binding's own work).
#[pyfunction]
fn _last_compute_seconds() -> f64 {
    detach::last_seconds()
}

#[pymodule]
fn _vlad(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", glue::VERSION)?;
    m.add("InputError", py.get_type::<errors::InputError>())?;
    m.add(
        "BackendUnavailable",
        py.get_type::<errors::BackendUnavailable>(),
    )?;
    m.add(
        "VerificationError",
        py.get_type::<errors::VerificationError>(),
    )?;
    m.add_class::<encoder::Encoder>()?;
    m.add_class::<whitening::Whitening>()?;
    m.add_class::<results::Report>()?;
    m.add_class::<results::EncodeResult>()?;
    m.add_class::<results::Verification>()?;
    m.add_function(wrap_pyfunction!(kmeans::kmeans_fit, m)?)?;
    m.add_function(wrap_pyfunction!(lloyd::kmeans_seed, m)?)?;
    m.add_class::<lloyd::LloydWorker>()?;
    m.add_class::<lloyd::Lloyd>()?;
    m.add_function(wrap_pyfunction!(adapters::adapters, m)?)?;
    m.add_function(wrap_pyfunction!(model_file::load_model, m)?)?;
    m.add_function(wrap_pyfunction!(model_file::save_encoder, m)?)?;
    m.add_function(wrap_pyfunction!(model_file::save_whitening, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_test, m)?)?;
    m.add_function(wrap_pyfunction!(_last_compute_seconds, m)?)?;
    Ok(())
}
