//! numpy arrays → typed, borrowed ndarray views, with the dtype and shape
//! checks of SPEC §2. Nothing here copies: a view reads numpy's buffer in
//! place, whatever its strides; the library copies only what is not
//! C-contiguous (see `vlad::Batch`).

use ndarray::ArrayViewD;
use numpy::{
    PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use crate::errors::input_error;

/// Descriptors of one of the three element types SPEC §2 accepts.
pub enum Descriptors<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F64(PyReadonlyArrayDyn<'py, f64>),
    U8(PyReadonlyArrayDyn<'py, u8>),
}

/// Centroids: f32 or f64.
pub enum Centroids<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F64(PyReadonlyArrayDyn<'py, f64>),
}

/// A 1-D array of any integer dtype (offsets, labels).
pub enum Integers<'py> {
    I8(PyReadonlyArrayDyn<'py, i8>),
    I16(PyReadonlyArrayDyn<'py, i16>),
    I32(PyReadonlyArrayDyn<'py, i32>),
    I64(PyReadonlyArrayDyn<'py, i64>),
    U8(PyReadonlyArrayDyn<'py, u8>),
    U16(PyReadonlyArrayDyn<'py, u16>),
    U32(PyReadonlyArrayDyn<'py, u32>),
    U64(PyReadonlyArrayDyn<'py, u64>),
}

/// A borrowed view of [`Integers`], free of the GIL.
pub enum IntegerView<'a> {
    I8(ArrayViewD<'a, i8>),
    I16(ArrayViewD<'a, i16>),
    I32(ArrayViewD<'a, i32>),
    I64(ArrayViewD<'a, i64>),
    U8(ArrayViewD<'a, u8>),
    U16(ArrayViewD<'a, u16>),
    U32(ArrayViewD<'a, u32>),
    U64(ArrayViewD<'a, u64>),
}

/// Run `$body` with `$view` bound to the `ArrayViewD` of whichever element
/// type `$descriptors` holds (the body is generic code, expanded per type).
macro_rules! with_descriptors {
    ($descriptors:expr, |$view:ident| $body:expr) => {
        match $descriptors {
            $crate::arrays::Descriptors::F32(a) => {
                let $view = a.as_array();
                $body
            }
            $crate::arrays::Descriptors::F64(a) => {
                let $view = a.as_array();
                $body
            }
            $crate::arrays::Descriptors::U8(a) => {
                let $view = a.as_array();
                $body
            }
        }
    };
}
pub(crate) use with_descriptors;

/// `obj` as a numpy array, or an `InputError` naming `what`.
fn untyped<'a, 'py>(
    obj: &'a Bound<'py, PyAny>,
    what: &str,
) -> PyResult<&'a Bound<'py, PyUntypedArray>> {
    obj.cast::<PyUntypedArray>().map_err(|_| {
        let type_name = obj
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".to_string());
        input_error(format!("{what} must be a numpy array, got {type_name}"))
    })
}

/// An array's dtype as the command line names it: `int32 ('<i4')`.
fn dtype_name(array: &Bound<'_, PyUntypedArray>) -> String {
    let dtype = array.dtype();
    let attribute = |name: &str| {
        dtype
            .getattr(name)
            .and_then(|v| v.str().map(|s| s.to_string()))
            .unwrap_or_else(|_| "?".to_string())
    };
    format!("{} ('{}')", attribute("name"), attribute("str"))
}

/// numpy's spelling of a shape: `(3,)`, `(2, 3)`.
pub fn shape_string(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Read `obj` as `T`'s array in place, when its dtype is `T`'s.
fn typed<'py, T: numpy::Element>(
    array: &Bound<'py, PyUntypedArray>,
) -> Option<PyReadonlyArrayDyn<'py, T>> {
    array
        .cast::<PyArrayDyn<T>>()
        .ok()
        .and_then(|a| a.try_readonly().ok())
}

/// Descriptors `(T, L, F)` or `(N, F)` of dtype f32, f64 or u8.
pub fn descriptors<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Descriptors<'py>> {
    let array = untyped(obj, "descriptors")?;
    if !matches!(array.ndim(), 2 | 3) {
        return Err(input_error(format!(
            "descriptors must be (T, L, F) or (N, F), got shape {}",
            shape_string(array.shape())
        )));
    }
    if let Some(a) = typed::<f32>(array) {
        return Ok(Descriptors::F32(a));
    }
    if let Some(a) = typed::<f64>(array) {
        return Ok(Descriptors::F64(a));
    }
    if let Some(a) = typed::<u8>(array) {
        return Ok(Descriptors::U8(a));
    }
    Err(input_error(format!(
        "descriptors must be float32, float64 or uint8, got dtype {}: \
         use descriptors.astype(np.float32)",
        dtype_name(array)
    )))
}

/// Centroids `(K, F)` of dtype f32 or f64.
pub fn centroids<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Centroids<'py>> {
    let array = untyped(obj, "centroids")?;
    if array.ndim() != 2 {
        return Err(input_error(format!(
            "centroids must be (K, F), got shape {}",
            shape_string(array.shape())
        )));
    }
    if let Some(a) = typed::<f32>(array) {
        return Ok(Centroids::F32(a));
    }
    if let Some(a) = typed::<f64>(array) {
        return Ok(Centroids::F64(a));
    }
    Err(input_error(format!(
        "centroids must be float32 or float64, got dtype {}: use centroids.astype(np.float32)",
        dtype_name(array)
    )))
}

/// A one-dimensional integer array named `what` (offsets, labels).
pub fn integers<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Integers<'py>> {
    let array = untyped(obj, what)?;
    if array.ndim() != 1 {
        return Err(input_error(format!(
            "{what} must be one-dimensional, got shape {}",
            shape_string(array.shape())
        )));
    }
    macro_rules! try_each {
        ($($variant:ident: $t:ty),*) => {
            $(if let Some(a) = typed::<$t>(array) {
                return Ok(Integers::$variant(a));
            })*
        };
    }
    try_each!(I64: i64, I32: i32, U64: u64, U32: u32, I16: i16, U16: u16, I8: i8, U8: u8);
    Err(input_error(format!(
        "{what} must be int32, int64, uint32 or uint64, got dtype {}: \
         use {what}.astype(np.int64)",
        dtype_name(array)
    )))
}

impl Integers<'_> {
    /// A view free of the GIL (1-D, checked when made).
    pub fn view(&self) -> IntegerView<'_> {
        match self {
            Integers::I8(a) => IntegerView::I8(a.as_array()),
            Integers::I16(a) => IntegerView::I16(a.as_array()),
            Integers::I32(a) => IntegerView::I32(a.as_array()),
            Integers::I64(a) => IntegerView::I64(a.as_array()),
            Integers::U8(a) => IntegerView::U8(a.as_array()),
            Integers::U16(a) => IntegerView::U16(a.as_array()),
            Integers::U32(a) => IntegerView::U32(a.as_array()),
            Integers::U64(a) => IntegerView::U64(a.as_array()),
        }
    }
}

impl IntegerView<'_> {
    /// Convert every value (as i128, which holds each of them exactly)
    /// with `convert(index, value)`, stopping at the first error.
    pub fn convert<U, E>(
        &self,
        convert: impl Fn(usize, i128) -> Result<U, E>,
    ) -> Result<Vec<U>, E> {
        fn all<T: Copy + Into<i128>, U, E>(
            values: &ArrayViewD<'_, T>,
            convert: impl Fn(usize, i128) -> Result<U, E>,
        ) -> Result<Vec<U>, E> {
            values
                .iter()
                .enumerate()
                .map(|(i, &v)| convert(i, v.into()))
                .collect()
        }
        match self {
            IntegerView::I8(a) => all(a, convert),
            IntegerView::I16(a) => all(a, convert),
            IntegerView::I32(a) => all(a, convert),
            IntegerView::I64(a) => all(a, convert),
            IntegerView::U8(a) => all(a, convert),
            IntegerView::U16(a) => all(a, convert),
            IntegerView::U32(a) => all(a, convert),
            IntegerView::U64(a) => all(a, convert),
        }
    }
}

/// A soft-assignment parameter (`weights (K, F)`, `bias (K,)`) of dtype
/// f32 or f64, as an owned f32 array (f64 rounded once, as centroids are).
/// `shape` names the expected shape in messages.
pub fn parameter(
    obj: &Bound<'_, PyAny>,
    what: &str,
    ndim: usize,
    shape: &str,
) -> PyResult<ndarray::ArrayD<f32>> {
    let array = untyped(obj, what)?;
    if array.ndim() != ndim {
        return Err(input_error(format!(
            "{what} must be {shape}, got shape {}",
            shape_string(array.shape())
        )));
    }
    if let Some(a) = typed::<f32>(array) {
        return Ok(a.as_array().to_owned());
    }
    if let Some(a) = typed::<f64>(array) {
        return Ok(a.as_array().mapv(|v| v as f32));
    }
    Err(input_error(format!(
        "{what} must be float32 or float64, got dtype {}: use {what}.astype(np.float32)",
        dtype_name(array)
    )))
}
