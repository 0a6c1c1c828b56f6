//! ====================================================================
//! PLACEHOLDERS for the fast CPU kernels, to be deleted at merge time.
//!
//! `crate::cpu::assign::assign_rows_with_distances` (fused GEMM-argmin)
//! and `crate::cpu::aggregate::cluster_sums` are written on another
//! branch. These two functions have exactly their signatures and
//! semantics, simply and deterministically, so k-means can be built and
//! tested now. The one line to change is the `use` in `engine.rs`.
//! ====================================================================

use rayon::prelude::*;

use super::distance::{LANES, fold, squared_norm};
use crate::codebook::Codebook;
use crate::element::Element;

/// Rows per rayon task. Each row's result depends on that row alone, so the
/// split never changes the output.
const ROWS_PER_TASK: usize = 256;

/// Nearest centroid of each `dim`-wide row of `rows` and its squared
/// distance `‖v‖² + ‖c‖² − 2 v·c` in f32, clamped at 0; exact ties go to
/// the lowest centroid index.
pub fn assign_rows_with_distances<E: Element>(
    codebook: &Codebook,
    rows: &[E],
    dim: usize,
) -> (Vec<u32>, Vec<f32>) {
    debug_assert_eq!(codebook.dim(), dim);
    let n = rows.len() / dim;
    let mut labels = vec![0u32; n];
    let mut distances = vec![0f32; n];
    let centroids = codebook.as_slice();
    let norms = codebook.squared_norms();
    labels
        .par_chunks_mut(ROWS_PER_TASK)
        .zip(distances.par_chunks_mut(ROWS_PER_TASK))
        .zip(rows.par_chunks(ROWS_PER_TASK * dim))
        .for_each(|((labels, distances), rows)| {
            for ((label, distance), row) in labels
                .iter_mut()
                .zip(distances.iter_mut())
                .zip(rows.chunks_exact(dim))
            {
                // ‖v‖² is the same for every centroid: argmin over ‖c‖² − 2v·c.
                let mut best = (f32::INFINITY, 0u32);
                for (k, (c, &c_norm)) in centroids.chunks_exact(dim).zip(norms).enumerate() {
                    let partial = c_norm - 2.0 * dot(row, c);
                    if partial < best.0 {
                        best = (partial, k as u32);
                    }
                }
                *label = best.1;
                *distance = (squared_norm(row) + best.0).max(0.0);
            }
        });
    (labels, distances)
}

/// Per-cluster sums of the rows (`clusters × dim`, f64, row-major) and the
/// number of rows in each cluster, summed sequentially in row order.
pub fn cluster_sums<E: Element>(
    rows: &[E],
    dim: usize,
    labels: &[u32],
    clusters: usize,
) -> (Vec<f64>, Vec<u64>) {
    let mut sums = vec![0f64; clusters * dim];
    let mut counts = vec![0u64; clusters];
    for (row, &label) in rows.chunks_exact(dim).zip(labels) {
        let k = label as usize;
        counts[k] += 1;
        for (s, x) in sums[k * dim..(k + 1) * dim].iter_mut().zip(row) {
            *s += x.to_f64();
        }
    }
    (sums, counts)
}

/// `Σ_f row[f] · centroid[f]` in f32.
#[inline]
fn dot<E: Element>(row: &[E], centroid: &[f32]) -> f32 {
    debug_assert_eq!(row.len(), centroid.len());
    let mut lanes = [0f32; LANES];
    let (row_body, row_tail) = row.split_at(row.len() - row.len() % LANES);
    let (c_body, c_tail) = centroid.split_at(row_body.len());
    for (r, c) in row_body.chunks_exact(LANES).zip(c_body.chunks_exact(LANES)) {
        for j in 0..LANES {
            lanes[j] += r[j].to_f32() * c[j];
        }
    }
    for (j, (r, c)) in row_tail.iter().zip(c_tail).enumerate() {
        lanes[j] += r.to_f32() * c;
    }
    fold(lanes)
}
