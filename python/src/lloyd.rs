//! The pieces of a distributed k-means (SPEC §13, `vlad.ray.kmeans`):
//! `kmeans_seed` seeds the centroids on the driver, `LloydWorker.step` maps
//! one block of rows to per-cluster f64 sums, counts and inertia, and
//! `Lloyd.update` applies the reduced step with `vlad.KMeans`' own rules.

use numpy::{PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use vlad::Codebook;
use vlad::kmeans::{Lloyd as VladLloyd, LloydWorker as VladWorker};

use crate::arrays::{self, Centroids, with_descriptors};
use crate::detach::compute;
use crate::errors::input_error;
use crate::glue::{self, DistributedParams, StepData};

fn codebook(py: Python<'_>, centroids: &Bound<'_, PyAny>) -> PyResult<Codebook> {
    match &arrays::centroids(centroids)? {
        Centroids::F32(a) => {
            let view = a.as_array();
            compute(py, move || glue::codebook_f32(view))
        }
        Centroids::F64(a) => {
            let view = a.as_array();
            compute(py, move || glue::codebook_f64(view))
        }
    }
}

/// The centroids `vlad.KMeans` would seed from `sample` (every row of it):
/// `(K, F)` float32.
#[pyfunction]
#[pyo3(signature = (sample, n_clusters, seed = 1234, init = "k-means++"))]
pub fn kmeans_seed<'py>(
    py: Python<'py>,
    sample: &Bound<'py, PyAny>,
    n_clusters: usize,
    seed: u64,
    init: &str,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let params = DistributedParams {
        n_clusters,
        n_iter: 0,
        seed,
        init: init.to_string(),
        tol: 0.0,
    };
    let sample = arrays::descriptors(sample)?;
    let params = &params;
    let seeded = with_descriptors!(&sample, |view| compute(py, move || {
        glue::seed_centroids(params, view)
    }))?;
    Ok(PyArray2::from_owned_array(py, seeded))
}

/// Computes one block's Lloyd step on one backend, holding the GPU device
/// between calls when it runs there.
#[pyclass(module = "vlad._vlad", frozen, name = "LloydWorker")]
pub struct LloydWorker {
    inner: VladWorker,
}

#[pymethods]
impl LloydWorker {
    #[new]
    #[pyo3(signature = (backend = "auto"))]
    fn new(py: Python<'_>, backend: &str) -> PyResult<Self> {
        let backend = backend.to_string();
        let inner = compute(py, move || glue::lloyd_worker(&backend))?;
        Ok(LloydWorker { inner })
    }

    /// The backend that runs: "cpu" or "gpu".
    #[getter]
    fn backend(&self) -> &'static str {
        glue::lloyd_worker_backend(&self.inner)
    }

    /// `(n, F)` rows (float32, float64 or uint8; n may be 0) against
    /// `(K, F)` centroids: a dict of `sums` (K, F) float64, `counts` (K,)
    /// int64, `errors` (K,) float64, `inertia` and `exact_inertia`.
    fn step<'py>(
        &self,
        py: Python<'py>,
        rows: &Bound<'py, PyAny>,
        centroids: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let codebook = codebook(py, centroids)?;
        let rows = arrays::descriptors(rows)?;
        let (worker, codebook) = (&self.inner, &codebook);
        let step = with_descriptors!(&rows, |view| compute(py, move || {
            glue::lloyd_step(worker, view, codebook)
        }))?;
        step_dict(py, step, codebook.clusters(), codebook.dim())
    }
}

fn step_dict<'py>(
    py: Python<'py>,
    step: StepData,
    k: usize,
    dim: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let sums = ndarray::Array2::from_shape_vec((k, dim), step.sums)
        .map_err(|e| input_error(format!("Lloyd step sums: {e}")))?;
    let counts: Vec<i64> = step
        .counts
        .iter()
        .map(|&c| i64::try_from(c).unwrap_or(i64::MAX))
        .collect();
    let out = PyDict::new(py);
    out.set_item("sums", PyArray2::from_owned_array(py, sums))?;
    out.set_item("counts", PyArray1::from_vec(py, counts))?;
    out.set_item("errors", PyArray1::from_vec(py, step.errors))?;
    out.set_item("inertia", step.inertia)?;
    out.set_item("exact_inertia", step.exact_inertia)?;
    Ok(out)
}

/// The driver's side of a distributed fit: the centroids between
/// iterations and `vlad.KMeans`' rules that move them.
#[pyclass(module = "vlad._vlad", name = "Lloyd")]
pub struct Lloyd {
    inner: VladLloyd,
}

#[pymethods]
impl Lloyd {
    #[new]
    #[pyo3(signature = (centroids, n_iter = 25, seed = 1234, tol = 1e-4))]
    fn new(
        py: Python<'_>,
        centroids: &Bound<'_, PyAny>,
        n_iter: usize,
        seed: u64,
        tol: f64,
    ) -> PyResult<Self> {
        if !(tol.is_finite() && tol >= 0.0) {
            return Err(input_error(format!(
                "tol = {tol}: expected a finite number ≥ 0"
            )));
        }
        let seeded = codebook(py, centroids)?;
        let params = DistributedParams {
            n_clusters: seeded.clusters(),
            n_iter,
            seed,
            init: "k-means++".to_string(),
            tol,
        };
        let inner = compute(py, move || glue::lloyd(&params, seeded))?;
        Ok(Lloyd { inner })
    }

    /// The current centroids, `(K, F)` float32.
    #[getter]
    fn centroids<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        PyArray2::from_owned_array(py, glue::lloyd_centroids(&self.inner))
    }

    /// The inertia of each iteration so far.
    #[getter]
    fn inertia_history(&self) -> Vec<f64> {
        glue::lloyd_history(&self.inner)
    }

    /// Apply one iteration's step, reduced over every block in block order;
    /// returns whether another iteration should run.
    fn update(
        &mut self,
        py: Python<'_>,
        sums: PyReadonlyArray2<'_, f64>,
        counts: PyReadonlyArray1<'_, i64>,
        errors: PyReadonlyArray1<'_, f64>,
        inertia: f64,
    ) -> PyResult<bool> {
        let counts = counts
            .as_array()
            .iter()
            .map(|&c| u64::try_from(c).map_err(|_| input_error(format!("negative count {c}"))))
            .collect::<PyResult<Vec<u64>>>()?;
        let step = StepData {
            sums: sums.as_array().iter().copied().collect(),
            counts,
            errors: errors.as_array().to_vec(),
            inertia,
            exact_inertia: f64::NAN,
        };
        let lloyd = &mut self.inner;
        compute(py, move || glue::lloyd_update(lloyd, step))
    }
}
