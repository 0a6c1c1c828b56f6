//! `vlad._vlad.Whitening`: a learned whitening (SPEC §14); the Python
//! `vlad.Whitening` (scikit-learn's shape: `fit`, `transform`, `mean_`,
//! `components_`, `explained_variance_`) wraps it. Frozen and shared: the
//! matrices sit behind an `Arc`, which encoders holding it share too.

use std::sync::Arc;

use numpy::{PyArray1, PyArray2, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::detach::compute;
use crate::glue;

/// A learned whitening (see `vlad.Whitening`).
#[pyclass(module = "vlad._vlad", frozen, name = "Whitening")]
pub struct Whitening {
    pub(crate) inner: Arc<vlad::Whitening>,
}

#[pymethods]
impl Whitening {
    /// Learn from `(n, D)` float32 encodings (C-contiguous or not).
    #[staticmethod]
    #[pyo3(signature = (x, n_components, power = -0.5, eps = None, max_points = None, seed = 1234, post = "l2"))]
    #[allow(clippy::too_many_arguments)]
    fn fit(
        py: Python<'_>,
        x: PyReadonlyArray2<'_, f32>,
        n_components: usize,
        power: f64,
        eps: Option<f64>,
        max_points: Option<usize>,
        seed: u64,
        post: &str,
    ) -> PyResult<Self> {
        let view = x.as_array();
        let post = post.to_string();
        let inner = compute(py, move || {
            glue::fit_whitening(view, n_components, power, eps, max_points, seed, &post)
        })?;
        Ok(Whitening {
            inner: Arc::new(inner),
        })
    }

    /// `(n, D′)` float32: `x` whitened on the CPU backend.
    fn transform<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let view = x.as_array();
        let inner = &self.inner;
        let out = compute(py, move || inner.transform(view))?;
        Ok(PyArray2::from_owned_array(py, out))
    }

    /// The model-file bytes of this whitening alone (what pickling carries).
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = glue::whitening_bytes(&self.inner).map_err(crate::errors::to_py)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// The whitening in model-file bytes.
    #[staticmethod]
    fn from_bytes(bytes: &[u8]) -> PyResult<Self> {
        let inner = glue::whitening_from_bytes(bytes).map_err(crate::errors::to_py)?;
        Ok(Whitening { inner })
    }

    /// `μ`, `(D,)` float32.
    #[getter]
    fn mean<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        PyArray1::from_owned_array(py, self.inner.mean().clone())
    }

    /// Unit eigenvectors as rows, `(D′, D)` float32.
    #[getter]
    fn components<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        PyArray2::from_owned_array(py, self.inner.components().clone())
    }

    /// `λ`, `(D′,)` float64, non-increasing.
    #[getter]
    fn eigenvalues<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        PyArray1::from_owned_array(py, self.inner.eigenvalues().clone())
    }

    /// The power `p`.
    #[getter]
    fn power(&self) -> f64 {
        self.inner.power()
    }

    /// `ε`.
    #[getter]
    fn eps(&self) -> f64 {
        self.inner.eps()
    }

    /// The post normalization, e.g. "l2".
    #[getter]
    fn post(&self) -> String {
        self.inner.post().to_string()
    }

    /// `D`.
    #[getter]
    fn dims_in(&self) -> usize {
        self.inner.dims_in()
    }

    /// `D′`.
    #[getter]
    fn dims_out(&self) -> usize {
        self.inner.dims_out()
    }
}
