//! The fast CPU backend (and the fallback when no GPU works).
//!
//! Three stages, each parallel with rayon and bitwise deterministic whatever
//! the thread count (SPEC §5):
//!
//! 1. [`assign`](mod@assign): nearest centroid by a blocked GEMM with the argmin fused in;
//! 2. [`aggregate`]: per-image residual sums in f64, rounded once to f32;
//! 3. [`normalize`]: SPEC §3's steps per row with fixed-order f64 norms.
//!
//! The shaders' CPU twins live apart, in [`crate::twins`]: the backend
//! itself needs no sort.

pub mod aggregate;
pub mod assign;
pub mod ceilings;
pub mod normalize;
pub mod residual_norm;
pub mod soft;
pub mod soft_aggregate;
pub mod soft_assign;
pub mod soft_kernel;

use ndarray::Array2;

use crate::model::batch::Batch;
use crate::model::codebook::Codebook;
use crate::model::element::Element;
use crate::model::normalization::Normalization;
use crate::model::report::StageTimes;

/// Nearest-centroid labels of every descriptor in `batch` (stage "assign").
pub fn assign<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    stages: &mut StageTimes,
) -> Vec<u32> {
    stages.time("assign", || {
        assign::assign_rows(codebook, batch.rows(), batch.dim())
    })
}

/// [`encode`] into the caller's `out` (`T · K · F` values, row-major, any
/// contents: every element is written); returns the labels used.
///
/// # Panics
///
/// If `out` is not `T · K · F` long.
pub fn encode_into<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    norm: &Normalization,
    stages: &mut StageTimes,
    out: &mut [f32],
) -> Vec<u32> {
    let labels = match batch.labels() {
        Some(given) => given.to_vec(),
        None => assign(codebook, batch, stages),
    };
    let mass = stages.time("aggregate", || {
        aggregate::aggregate_into(codebook, batch, &labels, out)
    });
    stages.time("normalize", || {
        let mass = mass.as_slice().unwrap_or_default();
        normalize::normalize_flat_rows(out, mass, codebook.clusters(), codebook.dim(), norm)
    });
    labels
}

/// Encode `batch` into `(T, K·F)`; returns the encoding and the labels used
/// (the batch's own when it carries labels, else computed). Stages
/// "assign", "aggregate" and "normalize" are timed into `stages`.
pub fn encode<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    norm: &Normalization,
    stages: &mut StageTimes,
) -> (Array2<f32>, Vec<u32>) {
    let labels = match batch.labels() {
        Some(given) => given.to_vec(),
        None => assign(codebook, batch, stages),
    };
    let (mut vlad, mass) = stages.time("aggregate", || {
        aggregate::aggregate(codebook, batch, &labels)
    });
    stages.time("normalize", || {
        normalize::normalize_rows(&mut vlad, &mass, codebook.clusters(), codebook.dim(), norm)
    });
    (vlad, labels)
}
