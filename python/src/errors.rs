//! The Python exceptions, and how each [`VladError`] becomes one: the same
//! classes of failure as the command line's exit statuses (SPEC §8, §12).
//!
//! | exit status | exception |
//! | --- | --- |
//! | 2 bad input | `vlad.InputError` (a `ValueError`) |
//! | 3 backend unavailable | `vlad.BackendUnavailable` (a `RuntimeError`) |
//! | 4 verification failed | `vlad.VerificationError` (a `RuntimeError`) |
//! | 1 internal failure (a GPU error) | `RuntimeError` |

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use vlad::VladError;

pyo3::create_exception!(
    vlad,
    InputError,
    PyValueError,
    "Bad input (SPEC §6): non-finite values, mismatched shapes, an unsupported dtype, \
     invalid offsets or labels. The message is the command line's, less the file name."
);
pyo3::create_exception!(
    vlad,
    BackendUnavailable,
    PyRuntimeError,
    "The requested backend cannot run here: `backend=\"gpu\"` without a GPU adapter \
     (the command line's exit status 3)."
);
pyo3::create_exception!(
    vlad,
    VerificationError,
    PyRuntimeError,
    "An encoding is outside SPEC §4's tolerance of the f64 reference (the command \
     line's exit status 4). Its `verification` attribute holds the details."
);

/// The Python exception for a library error, with the library's message
/// (which is the command line's, less the file it names).
pub fn to_py(error: VladError) -> PyErr {
    let message = error.to_string();
    match error {
        VladError::BackendUnavailable(_) => BackendUnavailable::new_err(message),
        VladError::VerificationFailed(_) => VerificationError::new_err(message),
        VladError::Gpu(_) => PyRuntimeError::new_err(message),
        VladError::NonFinite { .. }
        | VladError::DimensionMismatch(_)
        | VladError::Empty(_)
        | VladError::InvalidOffsets(_)
        | VladError::LabelOutOfRange { .. }
        | VladError::InvalidArgument(_)
        | VladError::Unsupported { .. }
        | VladError::Npy { .. }
        | VladError::Model { .. }
        | VladError::Io { .. }
        | VladError::TooLarge { .. } => InputError::new_err(message),
        // A variant added later: bad input unless the library says otherwise,
        // as the command line's exit statuses treat it.
        _ => InputError::new_err(message),
    }
}

/// An `InputError` with `message`, for what the binding itself refuses
/// (dtypes, shapes of Python objects).
pub fn input_error(message: impl Into<String>) -> PyErr {
    InputError::new_err(message.into())
}
