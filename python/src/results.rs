//! What `encode_batch` and `verify` hand back: small read-only objects.

use numpy::{PyArray1, PyArray2};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::glue::ReportData;

/// What ran and how long it took.
#[pyclass(module = "vlad", frozen, name = "Report")]
pub struct Report {
    data: ReportData,
}

impl Report {
    pub fn new(data: ReportData) -> Self {
        Report { data }
    }
}

#[pymethods]
impl Report {
    /// The backend that ran: "gpu", "cpu" or "reference" (never "auto").
    #[getter]
    fn backend(&self) -> &str {
        &self.data.backend
    }

    /// The GPU adapter's name when the GPU ran, else None.
    #[getter]
    fn adapter(&self) -> Option<&str> {
        self.data.adapter.as_deref()
    }

    /// The GPU adapter's kind when the GPU ran ("discrete", "integrated",
    /// "virtual", "software" for a software rasterizer such as lavapipe,
    /// "other"), else None.
    #[getter]
    fn adapter_kind(&self) -> Option<&'static str> {
        self.data.adapter_kind
    }

    /// Compute seconds (input checks included, no conversion to numpy; the
    /// GPU's one-time setup is in `setup_seconds`).
    #[getter]
    fn seconds(&self) -> f64 {
        self.data.seconds
    }

    /// Seconds of one-time setup in this call (opening the GPU, compiling
    /// its pipelines); 0 when nothing had to be set up.
    #[getter]
    fn setup_seconds(&self) -> f64 {
        self.data.setup_seconds
    }

    /// Seconds per stage, in the order the stages ran (a new dict each time).
    #[getter]
    fn stages<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stages = PyDict::new(py);
        for (name, seconds) in &self.data.stages {
            stages.set_item(name, seconds)?;
        }
        Ok(stages)
    }

    /// Why backend="auto" fell back to the CPU, when it did.
    #[getter]
    fn fallback_reason(&self) -> Option<&str> {
        self.data.fallback_reason.as_deref()
    }

    fn __repr__(&self) -> String {
        format!(
            "Report(backend={:?}, adapter={}, seconds={:.6}, setup_seconds={:.6}, stages={{{}}})",
            self.data.backend,
            self.data
                .adapter
                .as_deref()
                .map(|a| format!("{a:?}"))
                .unwrap_or_else(|| "None".to_string()),
            self.data.seconds,
            self.data.setup_seconds,
            self.data
                .stages
                .iter()
                .map(|(n, s)| format!("{n:?}: {s:.6}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// An encoding with the labels it was computed from and a report.
#[pyclass(module = "vlad", frozen, name = "EncodeResult")]
pub struct EncodeResult {
    /// `(T, K·F)` float32 encodings, cluster-major within each row.
    #[pyo3(get)]
    vlad: Py<PyArray2<f32>>,
    /// `(N,)` int64 labels (given or computed).
    #[pyo3(get)]
    labels: Py<PyArray1<i64>>,
    /// What ran: a `Report`.
    #[pyo3(get)]
    report: Py<Report>,
}

impl EncodeResult {
    pub fn new(vlad: Py<PyArray2<f32>>, labels: Py<PyArray1<i64>>, report: Py<Report>) -> Self {
        EncodeResult {
            vlad,
            labels,
            report,
        }
    }
}

#[pymethods]
impl EncodeResult {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "EncodeResult(vlad=<{} float32>, labels=<{} int64>, report={})",
            self.vlad.bind(py).getattr("shape")?.repr()?,
            self.labels.bind(py).getattr("shape")?.repr()?,
            self.report.bind(py).repr()?
        ))
    }
}

/// The outcome of `Encoder.verify`: SPEC §4 against the f64 reference.
#[pyclass(module = "vlad", frozen, name = "Verification")]
pub struct Verification {
    /// Fraction of labels equal to the exact f64 argmin (1.0 with given labels).
    #[pyo3(get)]
    label_agreement: f64,
    /// Labels that differ from the exact argmin by more than a near-tie.
    #[pyo3(get)]
    bad_labels: usize,
    /// Largest |output − reference| over all elements.
    #[pyo3(get)]
    max_abs_error: f64,
    /// Elements or blocks outside the tolerance that applies.
    #[pyo3(get)]
    violations: usize,
    /// Which tolerance was applied, in words.
    #[pyo3(get)]
    rule: &'static str,
}

impl Verification {
    pub fn new(v: &vlad::verify::Verification) -> Self {
        Verification {
            label_agreement: v.label_agreement,
            bad_labels: v.bad_labels,
            max_abs_error: v.max_abs_error,
            violations: v.violations,
            rule: v.rule,
        }
    }
}

#[pymethods]
impl Verification {
    /// Whether SPEC §4 holds (no bad label, no value outside tolerance).
    #[getter]
    fn passed(&self) -> bool {
        self.bad_labels == 0 && self.violations == 0
    }

    fn __repr__(&self) -> String {
        format!(
            "Verification(passed={}, label_agreement={}, bad_labels={}, max_abs_error={:e}, \
             violations={}, rule={:?})",
            if self.passed() { "True" } else { "False" },
            self.label_agreement,
            self.bad_labels,
            self.max_abs_error,
            self.violations,
            self.rule
        )
    }
}
