//! `vlad._vlad.kmeans_fit`: the training behind `vlad.KMeans.fit`.

use numpy::PyArray2;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::{self, Centroids, with_descriptors};
use crate::detach::compute;
use crate::glue::{self, KMeansParams};

/// Train a codebook; returns a dict of the fit's outcome (centroids,
/// inertia, iterations, inertia_history, backend, adapter, adapter_kind,
/// fallback_reason, seconds, setup_seconds, training_points).
/// `init_centroids`: a `(K, F)` float32/float64 array to start from
/// (`init` is then not read).
#[pyfunction]
#[pyo3(signature = (descriptors, n_clusters, n_iter = 25, seed = 1234, init = "k-means++",
                    max_points_per_centroid = Some(256), tol = 1e-4, backend = "auto", verbose = false,
                    progress = None, init_centroids = None))]
#[allow(clippy::too_many_arguments)]
pub fn kmeans_fit<'py>(
    py: Python<'py>,
    descriptors: &Bound<'py, PyAny>,
    n_clusters: usize,
    n_iter: usize,
    seed: u64,
    init: &str,
    max_points_per_centroid: Option<usize>,
    tol: f64,
    backend: &str,
    verbose: bool,
    progress: Option<Py<PyAny>>,
    init_centroids: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    // Called from the computation's thread: it takes the GIL for the call.
    // An exception in the callback is reported (as Python reports an
    // exception it cannot raise) and training goes on.
    let progress = progress.map(|callback| -> glue::ProgressSink {
        std::sync::Arc::new(move |event: glue::ProgressData| {
            Python::attach(|py| {
                let args = (
                    event.stage,
                    event.iteration,
                    event.max_iterations,
                    event.text,
                );
                if let Err(error) = callback.call1(py, args) {
                    error.write_unraisable(py, None);
                }
            })
        })
    });
    let init_centroids = match init_centroids {
        None => None,
        Some(array) => {
            let codebook = match arrays::centroids(array)? {
                Centroids::F32(a) => glue::codebook_f32(a.as_array()),
                Centroids::F64(a) => glue::codebook_f64(a.as_array()),
            };
            Some(codebook.map_err(crate::errors::to_py)?.into_centroids())
        }
    };
    let params = KMeansParams {
        n_clusters,
        n_iter,
        seed,
        init: init.to_string(),
        max_points_per_centroid,
        tol,
        backend: backend.to_string(),
        verbose,
        progress,
        init_centroids,
    };
    let descriptors = arrays::descriptors(descriptors)?;
    let params = &params;
    let fit = with_descriptors!(&descriptors, |view| compute(py, move || glue::kmeans(
        params, view
    )))?;
    let out = PyDict::new(py);
    out.set_item(
        "cluster_centers",
        PyArray2::from_owned_array(py, fit.centroids),
    )?;
    out.set_item("inertia", fit.inertia)?;
    out.set_item("n_iter", fit.iterations)?;
    out.set_item("inertia_history", fit.inertia_history)?;
    out.set_item("backend", fit.backend)?;
    out.set_item("adapter", fit.adapter)?;
    out.set_item("adapter_kind", fit.adapter_kind)?;
    out.set_item("fallback_reason", fit.fallback_reason)?;
    out.set_item("seconds", fit.seconds)?;
    out.set_item("setup_seconds", fit.setup_seconds)?;
    out.set_item("training_points", fit.training_points)?;
    Ok(out)
}
