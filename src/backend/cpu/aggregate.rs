//! Per-image residual sums `Σ (v − c_label)` and counts per cluster (as
//! the f32 mass the normalizer divides by).
//!
//! Each residual `v − c` is formed in f64 and summed in f64, then rounded
//! once to f32: far inside SPEC §4's `1e-5 · Σ‖v − c‖∞` bound. For an image
//! of up to [`PARTIAL_ROWS`] rows this is the reference's own arithmetic in
//! the reference's own order.
//!
//! Determinism (SPEC §5): an image's sum is a fixed function of its rows.
//! Images up to [`PARTIAL_ROWS`] rows are summed sequentially in row order;
//! longer ones are cut into fixed [`PARTIAL_ROWS`]-row blocks, summed in
//! parallel, and the block partials added in block order. No split depends
//! on the thread count.

use std::cell::RefCell;

use ndarray::Array2;
use rayon::prelude::*;

use crate::model::batch::Batch;
use crate::model::codebook::Codebook;
use crate::model::element::Element;

/// Rows per independent partial sum: the unit of parallel work inside one
/// long image and inside [`cluster_sums`].
pub const PARTIAL_ROWS: usize = 4096;

/// How many block partials are held at once while they are combined in
/// order; bounds memory to this many `K × F` f64 arrays.
pub(super) const PARTIALS_PER_ROUND: usize = 16;

/// Per-thread f64 accumulators of one image, reused across images.
#[derive(Default)]
struct Scratch {
    sums: Vec<f64>,
    counts: Vec<u64>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Raw VLAD of every image: `(T, K·F)` residual sums, cluster-major, and the
/// `(T, K)` counts as f32 mass, from the given labels. A cluster that
/// receives no descriptor gives an exact zero block.
///
/// # Panics
///
/// If `labels` has not one entry per descriptor, a label is `≥ K`, or the
/// batch's width differs from the codebook's (the encoder checks all three).
pub fn aggregate<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    labels: &[u32],
) -> (Array2<f32>, Array2<f32>) {
    per_image(codebook, batch, labels, |rows, labels, out, counts| {
        image_sums(codebook, rows, labels, out, counts)
    })
}

/// `(T, K·F)` sums and `(T, K)` masses of every image, the images in
/// parallel: `sum_image(rows, labels, sums, mass)` fills one image's
/// blocks from zeros (the hard route's and hard `rn`'s per-image sums).
///
/// # Panics
///
/// As [`aggregate`].
pub fn per_image<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    labels: &[u32],
    sum_image: impl Fn(&[E], &[u32], &mut [f32], &mut [f32]) + Sync,
) -> (Array2<f32>, Array2<f32>) {
    let (t, k, f) = (batch.images(), codebook.clusters(), codebook.dim());
    assert_eq!(labels.len(), batch.len(), "one label per descriptor");
    assert_eq!(batch.dim(), f, "descriptor width must match the codebook's");
    let mut sums = Array2::<f32>::zeros((t, k * f));
    let mut counts = Array2::<f32>::zeros((t, k));
    let (Some(sums_flat), Some(counts_flat)) = (sums.as_slice_mut(), counts.as_slice_mut()) else {
        unreachable!("fresh arrays are contiguous");
    };
    if sums_flat.is_empty() {
        return (sums, counts);
    }
    sums_flat
        .par_chunks_mut(k * f)
        .zip(counts_flat.par_chunks_mut(k))
        .enumerate()
        .for_each(|(image, (out, counts))| {
            let range = batch.image_range(image);
            let rows = &batch.rows()[range.start * f..range.end * f];
            sum_image(rows, &labels[range], out, counts);
        });
    (sums, counts)
}

/// [`aggregate`] into the caller's `sums` (`T · K · F` values, row-major,
/// any contents: every element is written); returns the counts (as mass).
///
/// # Panics
///
/// As [`aggregate`], and if `sums` is not `T · K · F` long.
pub fn aggregate_into<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    labels: &[u32],
    sums: &mut [f32],
) -> Array2<f32> {
    let (t, k, f) = (batch.images(), codebook.clusters(), codebook.dim());
    assert_eq!(labels.len(), batch.len(), "one label per descriptor");
    assert_eq!(batch.dim(), f, "descriptor width must match the codebook's");
    assert_eq!(sums.len(), t * k * f, "sums must be T · K · F long");
    let mut counts = Array2::<f32>::zeros((t, k));
    let Some(counts_flat) = counts.as_slice_mut() else {
        unreachable!("fresh arrays are contiguous");
    };
    if k * f == 0 {
        return counts;
    }
    sums.par_chunks_mut(k * f)
        .zip(counts_flat.par_chunks_mut(k))
        .enumerate()
        .for_each(|(image, (out, counts))| {
            out.fill(0.0);
            let range = batch.image_range(image);
            let rows = &batch.rows()[range.start * f..range.end * f];
            image_sums(codebook, rows, &labels[range], out, counts);
        });
    counts
}

/// One image's residual sums into `out` (`K·F`, zero on entry) and its
/// counts into `counts` (`K`, as mass).
fn image_sums<E: Element>(
    codebook: &Codebook,
    rows: &[E],
    labels: &[u32],
    out: &mut [f32],
    counts: &mut [f32],
) {
    let (k, f) = (codebook.clusters(), codebook.dim());
    if labels.len() > PARTIAL_ROWS {
        let (sums, wide_counts) = blocked_sums(rows, f, labels, k, Some(codebook.as_slice()));
        for (c, (&n, block)) in wide_counts.iter().zip(sums.chunks_exact(f)).enumerate() {
            counts[c] = mass_of(n);
            if n > 0 {
                round_into(block, &mut out[c * f..(c + 1) * f]);
            }
        }
        return;
    }
    SCRATCH.with(|scratch| {
        let scratch = &mut *scratch.borrow_mut();
        scratch.sums.resize(k * f, 0.0);
        scratch.counts.clear();
        scratch.counts.resize(k, 0);
        // Only the blocks a descriptor lands in are cleared and read back:
        // an image touches few of K clusters when K is large.
        let input = Labelled {
            rows,
            dim: f,
            labels,
            centroids: Some(codebook.as_slice()),
        };
        accumulate(input, &mut scratch.sums, &mut scratch.counts, true);
        for (c, &n) in scratch.counts.iter().enumerate() {
            counts[c] = mass_of(n);
            if n > 0 {
                round_into(
                    &scratch.sums[c * f..(c + 1) * f],
                    &mut out[c * f..(c + 1) * f],
                );
            }
        }
    });
}

/// Sums of the rows per cluster (the centroid taken as zero) and counts:
/// `sums[k·dim + j] = Σ_{label = k} rows[·, j]` in f64. What k-means needs
/// for its centroid update.
///
/// Deterministic whatever the thread count: fixed [`PARTIAL_ROWS`]-row
/// blocks are summed in parallel and their partials added in block order.
///
/// # Panics
///
/// If `dim` is 0 or does not divide `rows.len()`, `labels` has not one
/// entry per row, or a label is `≥ clusters`.
pub fn cluster_sums<E: Element>(
    rows: &[E],
    dim: usize,
    labels: &[u32],
    clusters: usize,
) -> (Vec<f64>, Vec<u64>) {
    assert!(dim > 0, "dim must be positive");
    assert_eq!(rows.len(), labels.len() * dim, "one label per row");
    blocked_sums(rows, dim, labels, clusters, None)
}

/// [`cluster_sums`] added onto running `sums` and `counts`: called on
/// consecutive windows of rows that each start at a multiple of
/// [`PARTIAL_ROWS`] rows, the partials are added in the order
/// [`cluster_sums`] adds them on all the rows at once, so the result is
/// bitwise the same (streamed k-means, SPEC §11).
///
/// # Panics
///
/// As [`cluster_sums`], or if `sums`/`counts` are not `clusters × dim` /
/// `clusters` long.
pub fn add_cluster_sums<E: Element>(
    rows: &[E],
    dim: usize,
    labels: &[u32],
    clusters: usize,
    sums: &mut [f64],
    counts: &mut [u64],
) {
    assert!(dim > 0, "dim must be positive");
    assert_eq!(rows.len(), labels.len() * dim, "one label per row");
    assert_eq!(sums.len(), clusters * dim, "K·F sums");
    assert_eq!(counts.len(), clusters, "K counts");
    blocked_sums_into(rows, dim, labels, clusters, None, sums, counts);
}

/// `Σ (v − c_label)` (or `Σ v` without centroids) per cluster over fixed
/// row blocks, the partials added in block order.
fn blocked_sums<E: Element>(
    rows: &[E],
    dim: usize,
    labels: &[u32],
    clusters: usize,
    centroids: Option<&[f32]>,
) -> (Vec<f64>, Vec<u64>) {
    let mut sums = vec![0f64; clusters * dim];
    let mut counts = vec![0u64; clusters];
    blocked_sums_into(
        rows,
        dim,
        labels,
        clusters,
        centroids,
        &mut sums,
        &mut counts,
    );
    (sums, counts)
}

/// Continue one long image's raw sums over its next rows: `rows` must start
/// at a multiple of [`PARTIAL_ROWS`] rows into the image, so the blocks (and
/// the order their partials are added to `sums`, `counts`) are those
/// [`aggregate`] uses for the whole image — the streamed result of an image
/// cut into such pieces is bitwise the in-memory one. Finish with
/// [`finish_image`].
///
/// # Panics
///
/// If the lengths disagree with the codebook or a label is `≥ K`.
pub fn add_image_rows<E: Element>(
    codebook: &Codebook,
    rows: &[E],
    labels: &[u32],
    sums: &mut [f64],
    counts: &mut [u64],
) {
    let (k, f) = (codebook.clusters(), codebook.dim());
    assert_eq!(rows.len(), labels.len() * f, "one label per row");
    assert_eq!(sums.len(), k * f, "K·F sums");
    assert_eq!(counts.len(), k, "K counts");
    blocked_sums_into(rows, f, labels, k, Some(codebook.as_slice()), sums, counts);
}

/// Round an image's f64 sums to its `K·F` f32 row and its counts to f32
/// mass, as [`aggregate`] does (an empty cluster's block stays exactly
/// zero).
pub fn finish_image(
    sums: &[f64],
    wide_counts: &[u64],
    dim: usize,
    out: &mut [f32],
    counts: &mut [f32],
) {
    for (c, (&n, block)) in wide_counts.iter().zip(sums.chunks_exact(dim)).enumerate() {
        counts[c] = mass_of(n);
        if n > 0 {
            round_into(block, &mut out[c * dim..(c + 1) * dim]);
        }
    }
}

/// [`blocked_sums`] added onto running `sums` and `counts`.
fn blocked_sums_into<E: Element>(
    rows: &[E],
    dim: usize,
    labels: &[u32],
    clusters: usize,
    centroids: Option<&[f32]>,
    sums: &mut [f64],
    counts: &mut [u64],
) {
    let blocks: Vec<(&[E], &[u32])> = rows
        .chunks(PARTIAL_ROWS * dim)
        .zip(labels.chunks(PARTIAL_ROWS))
        .collect();
    for round in blocks.chunks(PARTIALS_PER_ROUND) {
        let partials: Vec<(Vec<f64>, Vec<u64>)> = round
            .par_iter()
            .map(|&(rows, labels)| {
                let mut sums = vec![0f64; clusters * dim];
                let mut counts = vec![0u64; clusters];
                let input = Labelled {
                    rows,
                    dim,
                    labels,
                    centroids,
                };
                accumulate(input, &mut sums, &mut counts, false);
                (sums, counts)
            })
            .collect();
        for (partial_sums, partial_counts) in &partials {
            for (s, p) in sums.iter_mut().zip(partial_sums) {
                *s += p;
            }
            for (n, p) in counts.iter_mut().zip(partial_counts) {
                *n += p;
            }
        }
    }
}

/// Labelled rows to add to per-cluster sums: `dim`-wide `rows`, one label
/// each, and the centroids to subtract (`None`: plain sums, for k-means).
#[derive(Clone, Copy)]
pub(super) struct Labelled<'a, E> {
    pub(super) rows: &'a [E],
    pub(super) dim: usize,
    pub(super) labels: &'a [u32],
    pub(super) centroids: Option<&'a [f32]>,
}

/// Add each row's residual to its cluster's f64 block, in row order.
/// With `lazy_clear`, a block is zeroed on its first descriptor instead of
/// relying on `sums` being zero on entry.
pub(super) fn accumulate<E: Element>(
    input: Labelled<'_, E>,
    sums: &mut [f64],
    counts: &mut [u64],
    lazy_clear: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { accumulate_avx2(input, sums, counts, lazy_clear) };
    }
    accumulate_portable(input, sums, counts, lazy_clear)
}

/// [`accumulate_portable`] compiled for AVX2: 4 f64 lanes instead of 2.
/// The same operations in the same order, so the same result.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn accumulate_avx2<E: Element>(
    input: Labelled<'_, E>,
    sums: &mut [f64],
    counts: &mut [u64],
    lazy_clear: bool,
) {
    accumulate_portable(input, sums, counts, lazy_clear)
}

#[inline(always)]
fn accumulate_portable<E: Element>(
    input: Labelled<'_, E>,
    sums: &mut [f64],
    counts: &mut [u64],
    lazy_clear: bool,
) {
    let Labelled {
        rows,
        dim,
        labels,
        centroids,
    } = input;
    for (v, &label) in rows.chunks_exact(dim).zip(labels) {
        let label = label as usize;
        let acc = &mut sums[label * dim..(label + 1) * dim];
        if lazy_clear && counts[label] == 0 {
            acc.fill(0.0);
        }
        counts[label] += 1;
        match centroids {
            Some(centroids) => {
                let c = &centroids[label * dim..(label + 1) * dim];
                for ((a, &x), &y) in acc.iter_mut().zip(v).zip(c) {
                    *a += x.to_f64() - y as f64;
                }
            }
            None => {
                for (a, &x) in acc.iter_mut().zip(v) {
                    *a += x.to_f64();
                }
            }
        }
    }
}

/// Round an f64 block to f32 once; `+ 0.0` turns a `-0.0` into `0.0`.
pub(super) fn round_into(block: &[f64], out: &mut [f32]) {
    for (o, &s) in out.iter_mut().zip(block) {
        *o = s as f32 + 0.0;
    }
}

/// A count as the f32 mass `mass` divides by: exact up to 2²⁴, the nearest
/// f32 beyond (what converting the u32 count gave before; more than 4·10⁹
/// descriptors in one cluster of one image does not fit in memory anyway).
pub(super) fn mass_of(n: u64) -> f32 {
    n as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_sums_match_a_plain_loop_across_blocks() {
        let dim = 3;
        let n = 3 * PARTIAL_ROWS + 17;
        let rows: Vec<f32> = (0..n * dim).map(|i| (i % 13) as f32 - 6.0).collect();
        let labels: Vec<u32> = (0..n).map(|i| (i * 7 % 5) as u32).collect();
        let (sums, counts) = cluster_sums(&rows, dim, &labels, 6);
        let mut want = vec![0f64; 6 * dim];
        let mut want_counts = vec![0u64; 6];
        for (i, &l) in labels.iter().enumerate() {
            want_counts[l as usize] += 1;
            for j in 0..dim {
                want[l as usize * dim + j] += rows[i * dim + j] as f64;
            }
        }
        assert_eq!(counts, want_counts);
        assert_eq!(sums, want); // small integers: every sum is exact
        assert_eq!(counts[5], 0);
    }
}
