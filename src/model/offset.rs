//! CSR offsets in the integer type the caller has: `usize` (read in place),
//! or `u64`, `i64`, `u32`, `i32` (converted once, a negative or too large
//! value being [`VladError::InvalidOffsets`]).

use std::borrow::Cow;

use crate::error::{Result, VladError};

/// An integer type offsets may come in.
pub trait Offset: Copy + Send + Sync + std::fmt::Display + 'static {
    /// The value as `usize`, `None` when it is negative or too large.
    fn to_usize(self) -> Option<usize>;

    /// The slice itself when it already is `usize` (no copy).
    fn as_usize_slice(offsets: &[Self]) -> Option<&[usize]> {
        let _ = offsets;
        None
    }
}

impl Offset for usize {
    fn to_usize(self) -> Option<usize> {
        Some(self)
    }

    fn as_usize_slice(offsets: &[Self]) -> Option<&[usize]> {
        Some(offsets)
    }
}

macro_rules! offset_via_try_from {
    ($($t:ty),*) => {$(
        impl Offset for $t {
            fn to_usize(self) -> Option<usize> {
                usize::try_from(self).ok()
            }
        }
    )*};
}

offset_via_try_from!(u64, i64, u32, i32);

/// `offsets` as `usize`: borrowed when they already are, else converted.
pub(crate) fn to_usize_offsets<O: Offset>(offsets: &[O]) -> Result<Cow<'_, [usize]>> {
    if let Some(same) = O::as_usize_slice(offsets) {
        return Ok(Cow::Borrowed(same));
    }
    offsets
        .iter()
        .enumerate()
        .map(|(i, &o)| {
            o.to_usize().ok_or_else(|| {
                VladError::InvalidOffsets(format!("offsets[{i}] = {o} is not a valid row index"))
            })
        })
        .collect::<Result<Vec<usize>>>()
        .map(Cow::Owned)
}
