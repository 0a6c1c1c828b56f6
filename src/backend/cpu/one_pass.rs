//! The hard route's encoding in one pass over the descriptors: each block of
//! rows is labelled (blocked GEMM + argmin, `label_range`) and its
//! residuals added to their image's per-cluster sums while the rows are
//! still in cache, instead of an assignment pass over all rows followed by
//! an aggregation pass that reads every descriptor from memory again.
//!
//! The arithmetic is `aggregate`'s, in its order, so the bits are those
//! of the two passes (SPEC §4, §5):
//!
//! * an image of up to [`PARTIAL_ROWS`] rows is summed by one thread in row
//!   order, whatever blocks its rows are labelled in (the image's f64
//!   accumulators carry over from one block to the next);
//! * a longer image is cut into [`PARTIAL_ROWS`]-row segments from its
//!   start, each summed from zero (in parallel), the partials added in
//!   segment order;
//! * a row's label does not depend on the block it is labelled in (see
//!   `label_range`).
//!
//! Parallel work is planned from the images alone (runs of consecutive
//! short images of about one GEMM block, or one long image), never from the
//! thread count.

use std::cell::RefCell;
use std::ops::Range;
use std::time::Instant;

use ndarray::Array2;
use rayon::prelude::*;

use super::aggregate::{
    Labelled, PARTIAL_ROWS, PARTIALS_PER_ROUND, accumulate, mass_of, round_into,
};
use super::assign::{block_rows, label_range};
use crate::model::batch::Batch;
use crate::model::codebook::Codebook;
use crate::model::element::Element;
use crate::model::report::StageTimes;

/// Per-thread accumulators of the image being summed, reused across jobs.
#[derive(Default)]
struct Scratch {
    sums: Vec<f64>,
    counts: Vec<u64>,
    labels: Vec<u32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Thread seconds spent labelling and summing, over all threads: how the
/// pass's wall time is shared between the "assign" and "aggregate" stages.
#[derive(Clone, Copy, Debug, Default)]
pub struct Split {
    assign: f64,
    aggregate: f64,
}

impl Split {
    fn add(self, other: Split) -> Split {
        Split {
            assign: self.assign + other.assign,
            aggregate: self.aggregate + other.aggregate,
        }
    }

    /// Record `wall` seconds of the fused pass as stages "assign" and
    /// "aggregate", shared in proportion to the thread time each part took
    /// (the two no longer run one after the other, so each one's own wall
    /// time does not exist; the shares still say where the time goes).
    pub fn record(self, wall: f64, stages: &mut StageTimes) {
        let busy = self.assign + self.aggregate;
        let share = if busy > 0.0 { self.assign / busy } else { 1.0 };
        stages.add("assign", wall * share);
        stages.add("aggregate", wall * (1.0 - share));
    }
}

/// One unit of parallel work and the part of the outputs it writes.
struct Job<'a> {
    /// Consecutive images: several short ones, or one long one.
    images: Range<usize>,
    long: bool,
    out: &'a mut [f32],
    counts: &'a mut [f32],
    labels: Option<&'a mut [u32]>,
}

/// Raw VLAD of every image into `out` (`T · K · F` values, any contents:
/// every element is written) and its counts as `(T, K)` f32 mass, labelling
/// the rows on the way; their labels go to `labels` when given (one per
/// descriptor). Returns the masses and the thread time of each part.
///
/// # Panics
///
/// If the batch's width differs from the codebook's, `out` is not
/// `T · K · F` long, or `labels` not one per descriptor.
pub fn encode_sums_into<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    out: &mut [f32],
    labels: Option<&mut [u32]>,
) -> (Array2<f32>, Split) {
    let (t, k, f) = (batch.images(), codebook.clusters(), codebook.dim());
    assert_eq!(batch.dim(), f, "descriptor width must match the codebook's");
    assert_eq!(out.len(), t * k * f, "sums must be T · K · F long");
    if let Some(labels) = &labels {
        assert_eq!(labels.len(), batch.len(), "one label per descriptor");
    }
    let mut counts = Array2::<f32>::zeros((t, k));
    let Some(counts_flat) = counts.as_slice_mut() else {
        unreachable!("fresh arrays are contiguous");
    };
    if k * f == 0 {
        return (counts, Split::default());
    }
    let block = block_rows(k);
    let jobs = plan(
        batch,
        job_rows(batch.len(), block),
        k * f,
        k,
        out,
        counts_flat,
        labels,
    );
    let split = jobs
        .into_par_iter()
        .map(|job| {
            if job.long {
                long_image(codebook, batch, job, block)
            } else {
                short_images(codebook, batch, job, block)
            }
        })
        .reduce(Split::default, Split::add);
    (counts, split)
}

/// Rows per run of short images: one GEMM block, or fewer in a small batch
/// so that it still makes at least [`MIN_JOBS`] jobs (whole images of a
/// few milliseconds of work, where a thread descheduled on a busy machine
/// would otherwise hold a large share of it); never under 1024 rows (the
/// GEMM's own per-call cost). A function of the batch's size and `K` alone.
fn job_rows(rows: usize, block: usize) -> usize {
    (rows / MIN_JOBS).clamp(1024, block.max(1024))
}

/// Jobs a small batch is cut into at least (see [`job_rows`]).
const MIN_JOBS: usize = 16;

/// Cut the images into jobs: each long image (over [`PARTIAL_ROWS`] rows)
/// alone, the others in runs of consecutive images of at most `block` rows
/// (or one image, when it alone is longer), each with its own slices of
/// the outputs.
fn plan<'a, E: Element>(
    batch: &Batch<'_, E>,
    block: usize,
    width: usize,
    clusters: usize,
    mut out: &'a mut [f32],
    mut counts: &'a mut [f32],
    mut labels: Option<&'a mut [u32]>,
) -> Vec<Job<'a>> {
    let t = batch.images();
    let mut jobs = Vec::new();
    let mut first = 0;
    while first < t {
        let start = batch.image_range(first).start;
        let long = batch.image_range(first).len() > PARTIAL_ROWS;
        let mut end = first + 1;
        if !long {
            while end < t {
                let next = batch.image_range(end);
                if next.len() > PARTIAL_ROWS || next.end - start > block {
                    break;
                }
                end += 1;
            }
        }
        let rows = batch.image_range(end - 1).end - start;
        let (mine, rest) = std::mem::take(&mut out).split_at_mut((end - first) * width);
        out = rest;
        let (my_counts, rest) = std::mem::take(&mut counts).split_at_mut((end - first) * clusters);
        counts = rest;
        let my_labels = labels.take().map(|all| {
            let (mine, rest) = all.split_at_mut(rows);
            labels = Some(rest);
            mine
        });
        jobs.push(Job {
            images: first..end,
            long,
            out: mine,
            counts: my_counts,
            labels: my_labels,
        });
        first = end;
    }
    jobs
}

/// A run of short images, one thread: label `block` rows at a time and add
/// each row to its image's sums at once, in row order.
fn short_images<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    job: Job<'_>,
    block: usize,
) -> Split {
    let (k, f) = (codebook.clusters(), codebook.dim());
    let all_rows = batch.rows();
    let first_row = batch.image_range(job.images.start).start;
    let end_row = batch.image_range(job.images.end - 1).end;
    let Job {
        images,
        out,
        counts,
        mut labels,
        ..
    } = job;
    let mut split = Split::default();
    SCRATCH.with(|scratch| {
        let scratch = &mut *scratch.borrow_mut();
        scratch.sums.resize(k * f, 0.0);
        scratch.counts.clear();
        scratch.counts.resize(k, 0);
        scratch.labels.resize(block, 0);
        let mut image = images.start;
        let mut start = first_row;
        while start < end_row {
            let end = (start + block).min(end_row);
            let block_labels = &mut scratch.labels[..end - start];
            let began = Instant::now();
            label_range(codebook, all_rows, start..end, block_labels, None);
            let labelled = Instant::now();
            split.assign += (labelled - began).as_secs_f64();
            let mut row = start;
            while row < end {
                let range = batch.image_range(image);
                let piece_end = range.end.min(end);
                let input = Labelled {
                    rows: &all_rows[row * f..piece_end * f],
                    dim: f,
                    labels: &block_labels[row - start..piece_end - start],
                    centroids: Some(codebook.as_slice()),
                };
                // Only the blocks a descriptor lands in are cleared and
                // read back: an image touches few of K clusters when K is
                // large.
                accumulate(input, &mut scratch.sums, &mut scratch.counts, true);
                row = piece_end;
                if row == range.end {
                    let at = image - images.start;
                    finish(
                        &scratch.sums,
                        &mut scratch.counts,
                        f,
                        &mut out[at * k * f..(at + 1) * k * f],
                        &mut counts[at * k..(at + 1) * k],
                    );
                    image += 1;
                }
            }
            if let Some(labels) = labels.as_deref_mut() {
                labels[start - first_row..end - first_row].copy_from_slice(block_labels);
            }
            split.aggregate += labelled.elapsed().as_secs_f64();
            start = end;
        }
        // Images with no rows after the last row (or a run of only those).
        while image < images.end {
            let at = image - images.start;
            finish(
                &scratch.sums,
                &mut scratch.counts,
                f,
                &mut out[at * k * f..(at + 1) * k * f],
                &mut counts[at * k..(at + 1) * k],
            );
            image += 1;
        }
    });
    split
}

/// Write one image from its running sums: each cluster's mass, its f64 sum
/// rounded once to f32 (an empty cluster's block exactly zero); then reset
/// the counts for the next image (the sums are cleared lazily).
fn finish(sums: &[f64], wide_counts: &mut [u64], dim: usize, out: &mut [f32], counts: &mut [f32]) {
    for (c, (n, block)) in wide_counts
        .iter_mut()
        .zip(sums.chunks_exact(dim))
        .enumerate()
    {
        counts[c] = mass_of(*n);
        let out = &mut out[c * dim..(c + 1) * dim];
        if *n > 0 {
            round_into(block, out);
        } else {
            out.fill(0.0);
        }
        *n = 0;
    }
}

/// One image of more than [`PARTIAL_ROWS`] rows: its segments labelled and
/// summed in parallel, each from zero, the partials added in segment order.
fn long_image<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    job: Job<'_>,
    block: usize,
) -> Split {
    let (k, f) = (codebook.clusters(), codebook.dim());
    let range = batch.image_range(job.images.start);
    let segments: Vec<Range<usize>> = (range.start..range.end)
        .step_by(PARTIAL_ROWS)
        .map(|s| s..(s + PARTIAL_ROWS).min(range.end))
        .collect();
    let mut segment_labels: Vec<Option<&mut [u32]>> = match job.labels {
        Some(labels) => labels.chunks_mut(PARTIAL_ROWS).map(Some).collect(),
        None => segments.iter().map(|_| None).collect(),
    };
    let mut sums = vec![0f64; k * f];
    let mut wide_counts = vec![0u64; k];
    let mut split = Split::default();
    for (round, labels) in segments
        .chunks(PARTIALS_PER_ROUND)
        .zip(segment_labels.chunks_mut(PARTIALS_PER_ROUND))
    {
        let partials: Vec<(Vec<f64>, Vec<u64>, Split)> = round
            .par_iter()
            .zip(labels.par_iter_mut())
            .map(|(segment, labels)| {
                segment_sums(
                    codebook,
                    batch,
                    segment.clone(),
                    labels.as_deref_mut(),
                    block,
                )
            })
            .collect();
        for (partial_sums, partial_counts, partial_split) in &partials {
            for (s, p) in sums.iter_mut().zip(partial_sums) {
                *s += p;
            }
            for (n, p) in wide_counts.iter_mut().zip(partial_counts) {
                *n += p;
            }
            split = split.add(*partial_split);
        }
    }
    finish(&sums, &mut wide_counts, f, job.out, job.counts);
    split
}

/// One segment of a long image: its rows labelled `block` at a time and
/// summed from zero in row order.
fn segment_sums<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    segment: Range<usize>,
    mut labels: Option<&mut [u32]>,
    block: usize,
) -> (Vec<f64>, Vec<u64>, Split) {
    let (k, f) = (codebook.clusters(), codebook.dim());
    let all_rows = batch.rows();
    let mut sums = vec![0f64; k * f];
    let mut counts = vec![0u64; k];
    let mut block_labels = vec![0u32; block];
    let mut split = Split::default();
    for start in segment.clone().step_by(block) {
        let end = (start + block).min(segment.end);
        let block_labels = &mut block_labels[..end - start];
        let began = Instant::now();
        label_range(codebook, all_rows, start..end, block_labels, None);
        let labelled = Instant::now();
        split.assign += (labelled - began).as_secs_f64();
        let input = Labelled {
            rows: &all_rows[start * f..end * f],
            dim: f,
            labels: block_labels,
            centroids: Some(codebook.as_slice()),
        };
        accumulate(input, &mut sums, &mut counts, false);
        if let Some(labels) = labels.as_deref_mut() {
            labels[start - segment.start..end - segment.start].copy_from_slice(block_labels);
        }
        split.aggregate += labelled.elapsed().as_secs_f64();
    }
    (sums, counts, split)
}

/// One k-means (Lloyd) assignment in one pass: each row's label and its
/// squared distance to that centroid, and the rows' plain sums and counts
/// per cluster added onto `sums` (`K·F`) and `counts` (`K`), block by block
/// while the rows are in cache. Bitwise what
/// [`assign_rows_with_distances`](super::assign::assign_rows_with_distances)
/// then [`add_cluster_sums`](super::aggregate::add_cluster_sums) give: the
/// same [`PARTIAL_ROWS`]-row partials from the start of `rows`, each summed
/// from zero, added in order.
///
/// # Panics
///
/// If `rows` is not whole `F`-wide rows or `sums`, `counts` are not
/// `K·F`, `K` long.
pub fn label_and_sum_rows<E: Element>(
    codebook: &Codebook,
    rows: &[E],
    sums: &mut [f64],
    counts: &mut [u64],
) -> (Vec<u32>, Vec<f32>) {
    let (k, f) = (codebook.clusters(), codebook.dim());
    assert_eq!(rows.len() % f, 0, "rows must hold a whole number of rows");
    assert_eq!(sums.len(), k * f, "K·F sums");
    assert_eq!(counts.len(), k, "K counts");
    let n = rows.len() / f;
    let mut labels = vec![0u32; n];
    let mut distances = vec![0f32; n];
    let block = block_rows(k);
    let segments: Vec<Range<usize>> = (0..n)
        .step_by(PARTIAL_ROWS)
        .map(|s| s..(s + PARTIAL_ROWS).min(n))
        .collect();
    let mut label_parts: Vec<&mut [u32]> = labels.chunks_mut(PARTIAL_ROWS).collect();
    let mut distance_parts: Vec<&mut [f32]> = distances.chunks_mut(PARTIAL_ROWS).collect();
    for ((round, labels), distances) in segments
        .chunks(PARTIALS_PER_ROUND)
        .zip(label_parts.chunks_mut(PARTIALS_PER_ROUND))
        .zip(distance_parts.chunks_mut(PARTIALS_PER_ROUND))
    {
        let partials: Vec<(Vec<f64>, Vec<u64>)> = round
            .par_iter()
            .zip(labels.par_iter_mut())
            .zip(distances.par_iter_mut())
            .map(|((segment, labels), distances)| {
                let mut partial = vec![0f64; k * f];
                let mut partial_counts = vec![0u64; k];
                for start in segment.clone().step_by(block) {
                    let end = (start + block).min(segment.end);
                    let at = start - segment.start..end - segment.start;
                    let block_labels = &mut labels[at.clone()];
                    label_range(
                        codebook,
                        rows,
                        start..end,
                        block_labels,
                        Some(&mut distances[at]),
                    );
                    let input = Labelled {
                        rows: &rows[start * f..end * f],
                        dim: f,
                        labels: block_labels,
                        centroids: None,
                    };
                    accumulate(input, &mut partial, &mut partial_counts, false);
                }
                (partial, partial_counts)
            })
            .collect();
        for (partial, partial_counts) in &partials {
            for (s, p) in sums.iter_mut().zip(partial) {
                *s += p;
            }
            for (c, p) in counts.iter_mut().zip(partial_counts) {
                *c += p;
            }
        }
    }
    (labels, distances)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::{aggregate, assign};

    fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    /// The two passes this replaces: labels of all rows, then the sums.
    fn two_passes<E: Element>(
        codebook: &Codebook,
        batch: &Batch<'_, E>,
    ) -> (Vec<f32>, Vec<f32>, Vec<u32>) {
        let labels = assign::assign_rows(codebook, batch.rows(), batch.dim());
        let mut sums = vec![f32::NAN; batch.images() * codebook.clusters() * codebook.dim()];
        let mass = aggregate::aggregate_into(codebook, batch, &labels, &mut sums);
        (sums, mass.into_raw_vec_and_offset().0, labels)
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Images empty, short, spanning GEMM blocks, longer than one segment
    /// (and the runs of images the plan makes around them): the one pass
    /// gives the two passes' labels and bits.
    #[test]
    fn one_pass_gives_the_two_passes_bits() {
        let sizes = [
            0, 3, 500, 500, 0, 1, 1200, 4096, 4097, 700, 0, 9000, 2, 500, 4000, 0,
        ];
        let mut offsets = vec![0usize];
        for s in sizes {
            offsets.push(offsets.last().copied().unwrap_or(0) + s);
        }
        let n = *offsets.last().unwrap_or(&0);
        for (k, f) in [(16, 8), (64, 16), (256, 12), (3, 5)] {
            let centroids = pseudo_random(k * f, 7 + k as u64);
            let codebook =
                Codebook::new(ndarray::ArrayView2::from_shape((k, f), &centroids).unwrap())
                    .unwrap();
            let rows = pseudo_random(n * f, 11);
            let view = ndarray::ArrayView2::from_shape((n, f), &rows).unwrap();
            let batch = Batch::ragged(view, &offsets).unwrap();
            let (want_sums, want_mass, want_labels) = two_passes(&codebook, &batch);
            let mut sums = vec![f32::NAN; want_sums.len()];
            let mut labels = vec![u32::MAX; n];
            let (mass, _) = encode_sums_into(&codebook, &batch, &mut sums, Some(&mut labels));
            assert_eq!(labels, want_labels, "K = {k}");
            assert_eq!(bits(&sums), bits(&want_sums), "K = {k}");
            assert_eq!(mass.into_raw_vec_and_offset().0, want_mass, "K = {k}");
            // Without labels, and on one thread: the same bits.
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap();
            let mut alone = vec![f32::NAN; want_sums.len()];
            pool.install(|| encode_sums_into(&codebook, &batch, &mut alone, None));
            assert_eq!(bits(&alone), bits(&want_sums), "K = {k}, one thread");
        }
    }

    /// k-means' one-pass step: the labels, distances and sums of the two
    /// passes, bit for bit, carried over two windows.
    #[test]
    fn lloyd_step_in_one_pass_gives_the_two_passes_bits() {
        for (k, f) in [(256, 24), (16, 8), (3, 5)] {
            let n = 3 * PARTIAL_ROWS + 17;
            let centroids = pseudo_random(k * f, 5);
            let codebook =
                Codebook::new(ndarray::ArrayView2::from_shape((k, f), &centroids).unwrap())
                    .unwrap();
            let rows = pseudo_random(n * f, 9);
            let (mut want_sums, mut want_counts) = (vec![0f64; k * f], vec![0u64; k]);
            let (mut sums, mut counts) = (vec![0f64; k * f], vec![0u64; k]);
            for window in [&rows[..2 * PARTIAL_ROWS * f], &rows[2 * PARTIAL_ROWS * f..]] {
                let (want_labels, want_distances) =
                    assign::assign_rows_with_distances(&codebook, window, f);
                aggregate::add_cluster_sums(
                    window,
                    f,
                    &want_labels,
                    k,
                    &mut want_sums,
                    &mut want_counts,
                );
                let (labels, distances) =
                    label_and_sum_rows(&codebook, window, &mut sums, &mut counts);
                assert_eq!(labels, want_labels, "K = {k}");
                assert_eq!(bits(&distances), bits(&want_distances), "K = {k}");
            }
            let bits64 = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits64(&sums), bits64(&want_sums), "K = {k}");
            assert_eq!(counts, want_counts, "K = {k}");
        }
    }

    /// u8 input is converted block by block, as the assignment does.
    #[test]
    fn u8_rows_give_the_two_passes_bits() {
        let (k, f, n) = (32, 16, 5000);
        let centroids: Vec<f32> = pseudo_random(k * f, 3)
            .iter()
            .map(|x| (x + 0.5) * 255.0)
            .collect();
        let codebook =
            Codebook::new(ndarray::ArrayView2::from_shape((k, f), &centroids).unwrap()).unwrap();
        let rows: Vec<u8> = pseudo_random(n * f, 5)
            .iter()
            .map(|x| ((x + 0.5) * 255.0) as u8)
            .collect();
        let view = ndarray::ArrayView2::from_shape((n, f), &rows).unwrap();
        let offsets = [0usize, 10, 2000, 2001, 5000];
        let batch = Batch::ragged(view, &offsets[..]).unwrap();
        let (want_sums, _, _) = two_passes(&codebook, &batch);
        let mut sums = vec![f32::NAN; want_sums.len()];
        encode_sums_into(&codebook, &batch, &mut sums, None);
        assert_eq!(bits(&sums), bits(&want_sums));
    }
}
