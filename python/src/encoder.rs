//! `vlad._vlad.Encoder`: one codebook, a normalization and a backend; the
//! Python `vlad.Encoder` wraps it (lists of images, float16, array-likes).
//!
//! Frozen and `Sync`: one encoder is shared by any number of Python threads,
//! and every call releases the GIL while it computes.

use ndarray::{Array1, Array2, ArrayViewMut2};
use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use vlad::{Batch, Element, Encoder as VladEncoder, VladError};

use crate::arrays::{self, Centroids, with_descriptors};
use crate::detach::compute;
use crate::errors::VerificationError;
use crate::glue::{self, AssignedData, AssignmentArgs, Checked, EncodedData};
use crate::results::{EncodeResult, Report, Verification};
use crate::whitening::Whitening;
use pyo3::types::PyBytes;

/// Encodes images against one codebook (see `vlad.Encoder`).
#[pyclass(module = "vlad._vlad", frozen, name = "Encoder")]
pub struct Encoder {
    inner: VladEncoder,
}

/// Work on one validated batch, generic over its element type, run
/// without the GIL.
trait BatchJob: Send {
    type Out: Send;
    fn run<E: Element>(
        self,
        encoder: &VladEncoder,
        batch: &Batch<'_, E>,
    ) -> Result<Self::Out, VladError>;
}

struct Encode;
impl BatchJob for Encode {
    type Out = (EncodedData, Array1<i64>);
    fn run<E: Element>(
        self,
        encoder: &VladEncoder,
        batch: &Batch<'_, E>,
    ) -> Result<Self::Out, VladError> {
        let encoded = glue::encode(encoder, batch)?;
        let labels = encoded.labels.iter().map(|&l| i64::from(l)).collect();
        Ok((encoded, labels))
    }
}

/// The encoding alone (no labels built): into the caller's array when one
/// is given, else into a fresh one.
struct EncodeOnly<'a> {
    out: Option<ArrayViewMut2<'a, f32>>,
    /// `(images done, images)` after each group, when asked for.
    progress: Option<EncodeProgress>,
}
impl BatchJob for EncodeOnly<'_> {
    type Out = Option<Array2<f32>>;
    fn run<E: Element>(
        self,
        encoder: &VladEncoder,
        batch: &Batch<'_, E>,
    ) -> Result<Self::Out, VladError> {
        let Some(progress) = self.progress else {
            return match self.out {
                Some(out) => {
                    encoder.encode_batch_into(batch, out)?;
                    Ok(None)
                }
                None => encoder.encode_batch_vlad(batch).map(Some),
            };
        };
        let mut report = |done: usize, total: usize| progress(done, total);
        match self.out {
            Some(out) => {
                encoder.encode_batch_into_with_progress(batch, out, &mut report)?;
                Ok(None)
            }
            None => {
                encoder.check_output_fits(batch.images())?;
                let mut vlad = Array2::<f32>::zeros((batch.images(), encoder.dims_out()));
                encoder.encode_batch_into_with_progress(batch, vlad.view_mut(), &mut report)?;
                Ok(Some(vlad))
            }
        }
    }
}

/// An encode's progress, to a Python callable `(done, total)` called with
/// the GIL (an exception in it is reported as unraisable; encoding goes on).
type EncodeProgress = Box<dyn Fn(usize, usize) + Send + Sync>;

fn encode_progress(callback: Py<PyAny>) -> EncodeProgress {
    Box::new(move |done, total| {
        Python::attach(|py| {
            if let Err(error) = callback.call1(py, (done, total)) {
                error.write_unraisable(py, None);
            }
        })
    })
}

struct Assign;
impl BatchJob for Assign {
    type Out = (AssignedData, Array1<i64>);
    fn run<E: Element>(
        self,
        encoder: &VladEncoder,
        batch: &Batch<'_, E>,
    ) -> Result<Self::Out, VladError> {
        let assigned = glue::assign(encoder, batch)?;
        let labels = assigned.labels.iter().map(|&l| i64::from(l)).collect();
        Ok((assigned, labels))
    }
}

struct Verify<'a> {
    output: Option<ndarray::ArrayView2<'a, f32>>,
}
impl BatchJob for Verify<'_> {
    type Out = Checked;
    fn run<E: Element>(
        self,
        encoder: &VladEncoder,
        batch: &Batch<'_, E>,
    ) -> Result<Checked, VladError> {
        glue::verify(encoder, batch, self.output)
    }
}

/// Where the batch's rows are read from, and where numpy keeps them.
struct RowsAddress;
impl BatchJob for RowsAddress {
    type Out = usize;
    fn run<E: Element>(
        self,
        _encoder: &VladEncoder,
        batch: &Batch<'_, E>,
    ) -> Result<usize, VladError> {
        Ok(glue::rows_address(batch))
    }
}

impl Encoder {
    /// Wrap a library encoder.
    pub(crate) fn from_inner(inner: VladEncoder) -> Self {
        Encoder { inner }
    }

    /// The library encoder.
    pub(crate) fn inner(&self) -> &VladEncoder {
        &self.inner
    }

    /// Check the arrays (dtype and rank, with the GIL), then build the batch
    /// and run `job` on it without the GIL.
    fn run<J: BatchJob>(
        &self,
        py: Python<'_>,
        descriptors: &Bound<'_, PyAny>,
        offsets: Option<&Bound<'_, PyAny>>,
        labels: Option<&Bound<'_, PyAny>>,
        job: J,
    ) -> PyResult<J::Out> {
        let descriptors = arrays::descriptors(descriptors)?;
        let offsets = offsets
            .map(|o| arrays::integers(o, "offsets"))
            .transpose()?;
        let labels = labels.map(|l| arrays::integers(l, "labels")).transpose()?;
        let offsets = offsets.as_ref().map(|o| o.view());
        let labels = labels.as_ref().map(|l| l.view());
        let encoder = &self.inner;
        let (clusters, _) = glue::codebook_shape(encoder);
        with_descriptors!(&descriptors, |view| compute(py, move || {
            let offsets = offsets.as_ref().map(glue::offsets).transpose()?;
            let labels = labels
                .as_ref()
                .map(|l| glue::labels(l, clusters))
                .transpose()?;
            let batch = glue::batch(view, offsets.as_deref(), labels.as_deref(), clusters)?;
            job.run(encoder, &batch)
        }))
    }
}

/// `out=` as the array the encoding is written into: float32, 2-D,
/// C-contiguous (its shape is checked against the batch later); anything
/// else is an `InputError` saying what it must be.
fn output_array<'py>(out: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let want = "out must be a C-contiguous float32 numpy array of shape (T, K·F)";
    let Ok(array) = out.cast::<numpy::PyUntypedArray>() else {
        return Err(crate::errors::input_error(format!(
            "{want}, got {}",
            out.get_type().name()?
        )));
    };
    let Ok(typed) = out.cast::<PyArray2<f32>>() else {
        return Err(crate::errors::input_error(format!(
            "{want}, got dtype {} with shape {}",
            array.dtype(),
            arrays::shape_string(array.shape())
        )));
    };
    if !typed.is_c_contiguous() {
        return Err(crate::errors::input_error(format!(
            "{want}, got a non-contiguous view: pass np.ascontiguousarray(out) or a fresh \
             np.empty((T, K·F), np.float32)"
        )));
    }
    Ok(typed.clone())
}

#[pymethods]
impl Encoder {
    #[new]
    #[pyo3(signature = (centroids, norm = "ssr,l2", backend = "auto", assignment = "hard",
                        weights = None, bias = None, alpha = None, whitening = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        centroids: &Bound<'_, PyAny>,
        norm: &str,
        backend: &str,
        assignment: &str,
        weights: Option<&Bound<'_, PyAny>>,
        bias: Option<&Bound<'_, PyAny>>,
        alpha: Option<f64>,
        whitening: Option<PyRef<'_, Whitening>>,
    ) -> PyResult<Self> {
        let whitening = whitening.map(|w| w.inner.clone());
        let centroids = arrays::centroids(centroids)?;
        let args = AssignmentArgs {
            name: assignment.to_string(),
            weights: weights
                .map(|w| arrays::parameter(w, "weights", 2, "(K, F)"))
                .transpose()?,
            bias: bias
                .map(|b| arrays::parameter(b, "bias", 1, "(K,)"))
                .transpose()?,
            alpha,
        };
        let (norm, backend) = (norm.to_string(), backend.to_string());
        let inner = match &centroids {
            Centroids::F32(a) => {
                let view = a.as_array();
                compute(py, move || {
                    glue::encoder(glue::codebook_f32(view)?, &norm, &backend, args, whitening)
                })?
            }
            Centroids::F64(a) => {
                let view = a.as_array();
                compute(py, move || {
                    glue::encoder(glue::codebook_f64(view)?, &norm, &backend, args, whitening)
                })?
            }
        };
        Ok(Encoder { inner })
    }

    /// `(T, K·F)` float32 encodings; with `out`, written into that
    /// C-contiguous, writeable float32 `(T, K·F)` array, which is returned.
    /// With `progress`, a callable `(images done, images)` is called as
    /// groups of whole images finish (the same bits).
    #[pyo3(signature = (descriptors, offsets = None, labels = None, out = None, progress = None))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        descriptors: &Bound<'py, PyAny>,
        offsets: Option<&Bound<'py, PyAny>>,
        labels: Option<&Bound<'py, PyAny>>,
        out: Option<&Bound<'py, PyAny>>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let progress = progress.map(encode_progress);
        let Some(out) = out else {
            let job = EncodeOnly {
                out: None,
                progress,
            };
            let vlad = self.run(py, descriptors, offsets, labels, job)?;
            let vlad = vlad.unwrap_or_else(|| unreachable!("no out: a fresh array"));
            return Ok(PyArray2::from_owned_array(py, vlad));
        };
        let array = output_array(out)?;
        let mut writable = array.try_readwrite().map_err(|e| {
            crate::errors::input_error(format!(
                "out must be a writeable array that shares no memory with the inputs ({e})"
            ))
        })?;
        let job = EncodeOnly {
            out: Some(writable.as_array_mut()),
            progress,
        };
        self.run(py, descriptors, offsets, labels, job)?;
        drop(writable);
        Ok(array)
    }

    /// `(N,)` int64 nearest-centroid labels.
    fn assign<'py>(
        &self,
        py: Python<'py>,
        descriptors: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let (_, labels) = self.run(py, descriptors, None, None, Assign)?;
        Ok(PyArray1::from_owned_array(py, labels))
    }

    /// Encodings, labels and a report.
    #[pyo3(signature = (descriptors, offsets = None, labels = None))]
    fn encode_batch(
        &self,
        py: Python<'_>,
        descriptors: &Bound<'_, PyAny>,
        offsets: Option<&Bound<'_, PyAny>>,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<EncodeResult> {
        let (encoded, labels) = self.run(py, descriptors, offsets, labels, Encode)?;
        Ok(EncodeResult::new(
            PyArray2::from_owned_array(py, encoded.vlad).unbind(),
            PyArray1::from_owned_array(py, labels).unbind(),
            Py::new(py, Report::new(encoded.report))?,
        ))
    }

    /// Labels and a report, as a tuple.
    fn assign_batch(
        &self,
        py: Python<'_>,
        descriptors: &Bound<'_, PyAny>,
    ) -> PyResult<(Py<PyArray1<i64>>, Py<Report>)> {
        let (assigned, labels) = self.run(py, descriptors, None, None, Assign)?;
        Ok((
            PyArray1::from_owned_array(py, labels).unbind(),
            Py::new(py, Report::new(assigned.report))?,
        ))
    }

    /// SPEC §4 against the f64 reference; raises VerificationError when it fails.
    #[pyo3(signature = (descriptors, vlad = None, offsets = None, labels = None))]
    fn verify(
        &self,
        py: Python<'_>,
        descriptors: &Bound<'_, PyAny>,
        vlad: Option<&Bound<'_, PyAny>>,
        offsets: Option<&Bound<'_, PyAny>>,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Verification> {
        let output: Option<PyReadonlyArray2<'_, f32>> = match vlad {
            None => None,
            Some(v) => Some(v.extract().map_err(|_| {
                crate::errors::input_error(
                    "vlad must be a (T, K·F) float32 array: use vlad.astype(np.float32)",
                )
            })?),
        };
        let job = Verify {
            output: output.as_ref().map(|o| o.as_array()),
        };
        let checked = self.run(py, descriptors, offsets, labels, job)?;
        let verification = Verification::new(&checked.verification);
        if checked.verification.passed() {
            return Ok(verification);
        }
        let error = VerificationError::new_err(glue::verification_message(&checked));
        error
            .value(py)
            .setattr("verification", Py::new(py, verification)?)?;
        Err(error)
    }

    /// The model-file bytes of this encoder (SPEC §15): what `save` writes
    /// and pickling carries.
    fn to_model_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = glue::model_bytes(&self.inner).map_err(crate::errors::to_py)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// The encoder of model-file bytes, on `backend`.
    #[staticmethod]
    #[pyo3(signature = (bytes, backend = "auto"))]
    fn from_model_bytes(bytes: &[u8], backend: &str) -> PyResult<Self> {
        let parts = vlad::io::model_file::from_bytes(bytes).map_err(crate::errors::to_py)?;
        let inner = glue::encoder_from_model(parts, backend).map_err(crate::errors::to_py)?;
        Ok(Encoder { inner })
    }

    /// The whitening applied after the normalization, if any.
    #[getter]
    fn whitening(&self) -> Option<Whitening> {
        self.inner
            .shared_whitening()
            .map(|inner| Whitening { inner })
    }

    /// The width of one encoding: `K·F`, or the whitening's `D′`.
    #[getter]
    fn dims_out(&self) -> usize {
        glue::dims_out(&self.inner)
    }

    /// Number of centroids K.
    #[getter]
    fn n_clusters(&self) -> usize {
        glue::codebook_shape(&self.inner).0
    }

    /// Descriptor width F.
    #[getter]
    fn dim(&self) -> usize {
        glue::codebook_shape(&self.inner).1
    }

    /// The normalization steps, e.g. "ssr,l2".
    #[getter]
    fn norm(&self) -> String {
        glue::norm_name(&self.inner)
    }

    /// The backend asked for.
    #[getter]
    fn backend(&self) -> &'static str {
        glue::backend_name(&self.inner)
    }

    /// The assignment: "hard", "soft" (weights and bias) or "soft-alpha".
    #[getter]
    fn assignment(&self) -> &'static str {
        glue::assignment_name(&self.inner)
    }

    /// A float32 copy of the `(K, F)` centroids.
    #[getter]
    fn centroids<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f32>> {
        let centroids: Array2<f32> = glue::centroids(&self.inner);
        PyArray2::from_owned_array(py, centroids)
    }

    /// Soft assignment's learned `(K, F)` weights (a float32 copy), or
    /// None for hard assignment and for a temperature.
    #[getter]
    fn weights<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyArray2<f32>>> {
        glue::soft_weights(&self.inner).map(|(w, _)| PyArray2::from_owned_array(py, w))
    }

    /// Soft assignment's learned `(K,)` bias (a float32 copy), or None.
    #[getter]
    fn bias<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyArray1<f32>>> {
        glue::soft_weights(&self.inner).map(|(_, b)| PyArray1::from_owned_array(py, b))
    }

    /// Soft assignment's temperature α (as float32 holds it), or None.
    #[getter]
    fn alpha(&self) -> Option<f32> {
        glue::soft_alpha(&self.inner)
    }

    /// Test hook: the address of the first descriptor value the library
    /// reads for this input (equal to `descriptors.ctypes.data` when it is
    /// read in place, without a copy).
    #[pyo3(signature = (descriptors, offsets = None))]
    fn _rows_address(
        &self,
        py: Python<'_>,
        descriptors: &Bound<'_, PyAny>,
        offsets: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        self.run(py, descriptors, offsets, None, RowsAddress)
    }
}
