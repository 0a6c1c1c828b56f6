//! Turning the arrays read from `.npy` files into a validated [`Batch`],
//! with errors that name the file they come from.

use std::path::Path;

use ndarray::{ArrayD, Ix2, Ix3};
use vlad::{Batch, Element, VladError};

use super::failure::{Failure, in_file, within};

/// Where each input came from, for messages.
#[derive(Copy, Clone, Debug)]
pub struct Sources<'p> {
    /// The descriptors file.
    pub descriptors: &'p Path,
    /// The centroids file.
    pub centroids: &'p Path,
    /// The offsets file, when given.
    pub offsets: Option<&'p Path>,
    /// The labels file, when given.
    pub labels: Option<&'p Path>,
}

/// A batch over `array`: `(T, L, F)` as fixed-size images; `(N, F)` split by
/// `offsets`, or as one image without them. `labels`, when given, must hold
/// one value in `[0, clusters)` per descriptor.
pub fn batch<'a, E: Element>(
    array: &'a ArrayD<E>,
    offsets: Option<&'a [usize]>,
    labels: Option<&'a [u32]>,
    clusters: usize,
    sources: Sources<'_>,
) -> Result<Batch<'a, E>, Failure> {
    let batch = match array.ndim() {
        3 => {
            if offsets.is_some() {
                return Err(in_file(sources.descriptors)(VladError::InvalidArgument(
                    format!(
                        "--offsets is for (N, F) descriptors, but these are (T, L, F) = {:?}: \
                         fixed-size images need no offsets",
                        array.shape()
                    ),
                )));
            }
            let view = array
                .view()
                .into_dimensionality::<Ix3>()
                .map_err(|e| internal_shape(sources.descriptors, e))?;
            Batch::fixed(view).map_err(in_file(sources.descriptors))?
        }
        2 => {
            let view = array
                .view()
                .into_dimensionality::<Ix2>()
                .map_err(|e| internal_shape(sources.descriptors, e))?;
            match offsets {
                Some(offsets) => Batch::ragged(view, offsets).map_err(|e| match e {
                    VladError::InvalidOffsets(_) => {
                        in_file(sources.offsets.unwrap_or(sources.descriptors))(e)
                    }
                    other => in_file(sources.descriptors)(other),
                })?,
                None => Batch::single(view).map_err(in_file(sources.descriptors))?,
            }
        }
        _ => {
            return Err(VladError::Unsupported {
                path: sources.descriptors.to_path_buf(),
                message: format!(
                    "descriptors must be (T, L, F) or (N, F), got {} dimensions",
                    array.ndim()
                ),
            }
            .into());
        }
    };
    match labels {
        Some(labels) => Ok(batch
            .with_labels(labels, clusters)
            .map_err(in_file(sources.labels.unwrap_or(sources.descriptors)))?),
        None => Ok(batch),
    }
}

/// Name the files an encoder error is about: both inputs for a width
/// mismatch; other errors (backend unavailable…) say enough themselves.
pub fn encoder_error(sources: Sources<'_>) -> impl FnOnce(VladError) -> Failure {
    move |error| match error {
        VladError::DimensionMismatch(_) => within(format!(
            "{} and {}",
            sources.descriptors.display(),
            sources.centroids.display()
        ))(error),
        other => other.into(),
    }
}

/// `io::read_descriptors` only returns 2- or 3-D arrays; a failed conversion
/// after checking `ndim` is a bug, reported as such rather than panicking.
fn internal_shape(path: &Path, e: ndarray::ShapeError) -> Failure {
    VladError::Unsupported {
        path: path.to_path_buf(),
        message: format!("unexpected array shape: {e}"),
    }
    .into()
}
