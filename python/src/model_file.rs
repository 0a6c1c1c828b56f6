//! Model files (SPEC §15) from Python: `vlad.load(path)` reads one into an
//! encoder (or, for a file of a whitening alone, a whitening); `save`
//! writes one atomically. The same format pickling carries as bytes.

use pyo3::prelude::*;

use crate::encoder::Encoder;
use crate::errors::to_py;
use crate::glue;
use crate::whitening::Whitening;

/// The model file at `path`: `("encoder", Encoder)` or, for a whitening
/// alone, `("whitening", Whitening)`.
#[pyfunction]
#[pyo3(signature = (path, backend = "auto"))]
pub fn load_model(
    py: Python<'_>,
    path: std::path::PathBuf,
    backend: &str,
) -> PyResult<(String, Py<PyAny>)> {
    let parts = vlad::io::model_file::read(&path).map_err(to_py)?;
    if parts.codebooks.is_empty() {
        let Some(inner) = parts.whitening else {
            return Err(to_py(vlad::VladError::Model {
                path,
                message: "it holds neither a codebook nor a whitening".to_string(),
            }));
        };
        let w = Whitening { inner };
        return Ok(("whitening".to_string(), Py::new(py, w)?.into_any()));
    }
    let inner = glue::encoder_from_model(parts, backend).map_err(to_py)?;
    Ok((
        "encoder".to_string(),
        Py::new(py, Encoder::from_inner(inner))?.into_any(),
    ))
}

/// Write `encoder`'s model to `path`, atomically.
#[pyfunction]
pub fn save_encoder(encoder: PyRef<'_, Encoder>, path: std::path::PathBuf) -> PyResult<()> {
    encoder.inner().save(&path).map_err(to_py)
}

/// Write `whitening` alone to `path`, atomically.
#[pyfunction]
pub fn save_whitening(whitening: PyRef<'_, Whitening>, path: std::path::PathBuf) -> PyResult<()> {
    whitening.inner.save(&path).map_err(to_py)
}
