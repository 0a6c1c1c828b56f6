//! Residual normalization (`rn`, SPEC §10) on the CPU: each residual
//! `v − c_k` counts with unit length (a zero residual counts as zero).
//!
//! * Hard assignment: [`aggregate_hard`] adds `(v − c)/‖v − c‖` per image in
//!   f64, in row order (one image per task: the thread count cannot change
//!   the result), rounded once to f32.
//! * Soft assignment: [`scale_by_inverse_norms`] turns the weights `a_k(v)`
//!   into `a_k(v)/‖v − c_k‖`, after which the soft aggregation's GEMM form
//!   `Σ u·v − (Σ u)·c` applies unchanged. The norms are taken from the
//!   residuals themselves (not `‖v‖² + ‖c‖² − 2v·c`, which cancels).

use ndarray::Array2;

use crate::model::batch::Batch;
use crate::model::codebook::Codebook;
use crate::model::element::Element;

/// Under hard assignment with `rn`: the `(T, K·F)` sums of unit residuals
/// and the `(T, K)` counts (as f32, the weighted normalizer's type).
///
/// # Panics
///
/// If `labels` has not one entry per descriptor or one is `≥ K`.
pub fn aggregate_hard<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    labels: &[u32],
) -> (Array2<f32>, Array2<f32>) {
    let (k, f) = (codebook.clusters(), codebook.dim());
    super::aggregate::per_image(codebook, batch, labels, |rows, labels, out, counts| {
        let mut acc = vec![0f64; k * f];
        let mut n = vec![0f64; k];
        add_rows(codebook, rows, labels, &mut acc, &mut n);
        for (o, a) in out.iter_mut().zip(&acc) {
            *o = *a as f32 + 0.0;
        }
        for (o, &n) in counts.iter_mut().zip(&n) {
            *o = n as f32;
        }
    })
}

/// Add `(v − c)/‖v − c‖` of each row `v` (labelled, in row order) to its
/// cluster's f64 block of `sums` (`K·F`), and one to its count in
/// `counts` (`K`): one image's hard `rn` sums, whole or a piece at a time
/// (the same additions in the same order either way).
///
/// # Panics
///
/// If the lengths disagree with the codebook or a label is `≥ K`.
pub fn add_rows<E: Element>(
    codebook: &Codebook,
    rows: &[E],
    labels: &[u32],
    sums: &mut [f64],
    counts: &mut [f64],
) {
    let f = codebook.dim();
    let centroids = codebook.as_slice();
    let mut residual = vec![0f64; f];
    for (v, &label) in rows.chunks_exact(f).zip(labels) {
        let label = label as usize;
        let c = &centroids[label * f..(label + 1) * f];
        for ((d, &x), &y) in residual.iter_mut().zip(v).zip(c) {
            *d = x.to_f64() - y as f64;
        }
        counts[label] += 1.0;
        let norm2: f64 = residual.iter().map(|d| d * d).sum();
        if norm2 > 0.0 {
            let inv = 1.0 / norm2.sqrt();
            for (a, d) in sums[label * f..(label + 1) * f].iter_mut().zip(&residual) {
                *a += d * inv;
            }
        }
    }
}

/// `weights[l·K + k] ← weights[l·K + k] / ‖rows_l − c_k‖` (0 where the
/// residual is zero), for the `m` row-major rows of width `F` in `rows`.
///
/// # Panics
///
/// If the lengths disagree with the codebook's `K` and `F`.
pub fn scale_by_inverse_norms(codebook: &Codebook, rows: &[f32], weights: &mut [f32]) {
    let (k, f) = (codebook.clusters(), codebook.dim());
    assert_eq!(
        rows.len() / f * k,
        weights.len(),
        "one weight per row and centroid"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { scale_avx2(codebook.as_slice(), f, rows, weights) };
    }
    scale_portable(codebook.as_slice(), f, rows, weights)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scale_avx2(centroids: &[f32], f: usize, rows: &[f32], weights: &mut [f32]) {
    scale_portable(centroids, f, rows, weights)
}

#[inline(always)]
fn scale_portable(centroids: &[f32], f: usize, rows: &[f32], weights: &mut [f32]) {
    let k = centroids.len() / f;
    for (v, w) in rows.chunks_exact(f).zip(weights.chunks_exact_mut(k)) {
        for (c, w) in centroids.chunks_exact(f).zip(w.iter_mut()) {
            let norm2 = squared_distance(v, c);
            *w = if norm2 > 0.0 {
                (*w as f64 / norm2.sqrt()) as f32
            } else {
                0.0
            };
        }
    }
}

/// `‖v − c‖²`: f32 differences, squares summed in f64 over eight lanes.
#[inline(always)]
fn squared_distance(v: &[f32], c: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let mut vs = v.chunks_exact(8);
    let mut cs = c.chunks_exact(8);
    for (v8, c8) in (&mut vs).zip(&mut cs) {
        for lane in 0..8 {
            let d = (v8[lane] - c8[lane]) as f64;
            acc[lane] += d * d;
        }
    }
    let tail: f64 = vs
        .remainder()
        .iter()
        .zip(cs.remainder())
        .map(|(&x, &y)| ((x - y) as f64).powi(2))
        .sum();
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}
