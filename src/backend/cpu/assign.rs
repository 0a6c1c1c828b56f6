//! Nearest-centroid assignment as a blocked GEMM with the argmin fused in.
//!
//! `argmin_k ‖v − c_k‖² = argmin_k (‖c_k‖² − 2 v·c_k)`: the `v·c_k` for a
//! block of rows is one small matrix product, which runs near the machine's
//! FMA peak, while the argmin over `K` is a cheap streaming pass. Rows are cut
//! into fixed blocks whose dot products fit in L2; rayon spreads the blocks
//! over the threads and each block runs a *single-threaded* GEMM (a threaded
//! one inside a rayon loop oversubscribes the cores). The full `N × K` matrix
//! never exists.
//!
//! The block size depends only on `K`, never on the thread count, so labels
//! are the same whatever `RAYON_NUM_THREADS` is (SPEC §5).

use std::cell::RefCell;

use rayon::prelude::*;

use crate::model::codebook::Codebook;
use crate::model::element::{DType, Element};

/// Dot products per block we aim to keep in L2 (1 MiB of the 2 MiB).
const BLOCK_DOTS: usize = 1 << 18;
/// Fewer rows per block and the per-call GEMM overhead shows.
const MIN_BLOCK_ROWS: usize = 1024;
/// More rows per block and small inputs no longer spread over the threads.
const MAX_BLOCK_ROWS: usize = 4096;

/// Per-thread buffers reused across blocks and calls.
#[derive(Default)]
struct Scratch {
    /// The block's rows converted to f32 (f64 and u8 input only).
    converted: Vec<f32>,
    /// `−2 v·c`, row-major `m × K`. (Row-major lets gemm run its
    /// transposed kernel, which broadcasts straight from the descriptor rows
    /// and needs no packing of them: 2.5× faster at K = 16, F = 64, and a
    /// little faster at larger K, measured single-threaded.)
    dots: Vec<f32>,
    /// The running minimum `‖c‖² − 2 v·c` of each row.
    best: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Rows per block for a codebook of `clusters` centroids: a function of `K`
/// alone (determinism), sized so a block's dot products stay in L2.
pub(crate) fn block_rows(clusters: usize) -> usize {
    (BLOCK_DOTS / clusters.max(1)).clamp(MIN_BLOCK_ROWS, MAX_BLOCK_ROWS)
}

/// Nearest-centroid label of each of the `rows.len() / dim` row-major rows;
/// exact ties go to the lowest index.
///
/// Distances are compared as `‖c‖² − 2 v·c` in f32, so a label may differ
/// from the exact f64 argmin only between near-tied centroids (SPEC §4).
///
/// # Panics
///
/// If `dim` differs from the codebook's width or does not divide
/// `rows.len()` (callers validate shapes before calling).
pub fn assign_rows<E: Element>(codebook: &Codebook, rows: &[E], dim: usize) -> Vec<u32> {
    check_shape(codebook, rows, dim);
    let n = rows.len() / dim;
    let mut labels = vec![0u32; n];
    let block = block_rows(codebook.clusters());
    labels
        .par_chunks_mut(block)
        .enumerate()
        .for_each(|(b, labels)| {
            let start = b * block;
            label_range(codebook, rows, start..start + labels.len(), labels, None)
        });
    labels
}

/// Like [`assign_rows`], plus each row's squared distance to its chosen
/// centroid, `‖v‖² + ‖c‖² − 2 v·c` in f32, clamped at 0 (k-means inertia).
///
/// # Panics
///
/// As [`assign_rows`].
pub fn assign_rows_with_distances<E: Element>(
    codebook: &Codebook,
    rows: &[E],
    dim: usize,
) -> (Vec<u32>, Vec<f32>) {
    check_shape(codebook, rows, dim);
    let n = rows.len() / dim;
    let mut labels = vec![0u32; n];
    let mut distances = vec![0f32; n];
    let block = block_rows(codebook.clusters());
    labels
        .par_chunks_mut(block)
        .zip(distances.par_chunks_mut(block))
        .enumerate()
        .for_each(|(b, (labels, distances))| {
            let start = b * block;
            let range = start..start + labels.len();
            label_range(codebook, rows, range, labels, Some(distances))
        });
    (labels, distances)
}

fn check_shape<E: Element>(codebook: &Codebook, rows: &[E], dim: usize) {
    assert_eq!(
        dim,
        codebook.dim(),
        "descriptor width must match the codebook's"
    );
    assert_eq!(rows.len() % dim, 0, "rows must hold a whole number of rows");
}

/// Fewest rows one GEMM call is given, so that gemm always runs its packed
/// kernels with their cache-derived depth blocking: below `m·K ≤ 256`, at
/// `m ≤ 1`, or at `m ≤ 64` (another depth blocking past F = 512) it takes
/// other paths that sum `v·c` in another order. Every call at least this
/// tall gives each row's dot products the same bits whichever block the row
/// falls in, so the one-pass encoder, [`assign_rows`] and k-means, which cut
/// rows into different blocks, agree on every label (checked in the tests).
fn min_gemm_rows(clusters: usize) -> usize {
    65usize.max(256 / clusters.max(1) + 1)
}

/// The rows a GEMM for `range` of `total` rows is run on: `range` itself,
/// widened (backwards first, then forwards) to [`min_gemm_rows`] rows when
/// it is shorter and the input has that many.
fn gemm_span(
    range: &std::ops::Range<usize>,
    total: usize,
    clusters: usize,
) -> std::ops::Range<usize> {
    let want = min_gemm_rows(clusters);
    if range.len() >= want {
        return range.clone();
    }
    let start = range.start.min(range.end.saturating_sub(want));
    let end = (start + want).min(total).max(range.end);
    start..end
}

/// Label rows `range` of the row-major `rows` (all of the input, `F` wide:
/// a short range is widened into its neighbours for the GEMM, see
/// [`gemm_span`]) into `labels` (`range.len()` of them), and fill
/// `distances` when asked. Exact ties go to the lowest index.
///
/// # Panics
///
/// If `labels` (or `distances`) is not `range.len()` long or `range`
/// reaches past the rows.
pub(crate) fn label_range<E: Element>(
    codebook: &Codebook,
    rows: &[E],
    range: std::ops::Range<usize>,
    labels: &mut [u32],
    distances: Option<&mut [f32]>,
) {
    let (k, f) = (codebook.clusters(), codebook.dim());
    assert_eq!(labels.len(), range.len(), "one label per row of the range");
    let span = gemm_span(&range, rows.len() / f.max(1), k);
    let (m, skip) = (span.len(), range.start - span.start);
    let rows = &rows[span.start * f..span.end * f];
    SCRATCH.with(|scratch| {
        let scratch = &mut *scratch.borrow_mut();
        let lhs: &[f32] = match as_f32(rows) {
            Some(rows) => rows,
            None => {
                // Only this block is converted, never the whole input.
                scratch.converted.clear();
                scratch.converted.extend(rows.iter().map(|x| x.to_f32()));
                &scratch.converted
            }
        };
        scratch.dots.resize(m * k, 0.0);
        scratch.best.resize(labels.len(), 0.0);
        // SAFETY: dst is m×k row-major (row stride k, column stride 1) in a
        // buffer of m·k; lhs is the m×f row-major block; rhs is the
        // codebook read as f×k (element (d, j) = c[j·f + d]). All three
        // slices hold exactly the elements these strides reach.
        unsafe {
            gemm::gemm(
                m,
                k,
                f,
                scratch.dots.as_mut_ptr(),
                1,
                k as isize,
                false,
                lhs.as_ptr(),
                1,
                f as isize,
                codebook.as_slice().as_ptr(),
                f as isize,
                1,
                0.0,
                -2.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        // No `vzeroupper` needed here: gemm's AVX kernels end with one (the
        // compiler inserts it; checked in the disassembly of gemm 0.19), and
        // the argmin that follows is VEX-encoded AVX2 code anyway.
        let dots = &scratch.dots[skip * k..(skip + labels.len()) * k];
        argmin_rows(dots, codebook.squared_norms(), &mut scratch.best, labels);
        if let Some(distances) = distances {
            let own = &lhs[skip * f..(skip + labels.len()) * f];
            for ((d, best), v) in distances.iter_mut().zip(&scratch.best).zip(own.chunks(f)) {
                *d = (squared_norm(v) + best).max(0.0);
            }
        }
    });
}

/// The rows as f32 without a copy when they already are.
fn as_f32<E: Element>(rows: &[E]) -> Option<&[f32]> {
    if E::DTYPE == DType::F32 {
        bytemuck::try_cast_slice(rows).ok()
    } else {
        None
    }
}

/// `‖v‖²` with eight independent partial sums (vectorizable, fixed order).
fn squared_norm(v: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = v.chunks_exact(8);
    for chunk in &mut chunks {
        for (a, x) in acc.iter_mut().zip(chunk) {
            *a += x * x;
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|x| x * x).sum();
    acc.iter().sum::<f32>() + tail
}

/// For each row `r` of the row-major `m × K` block `dots`,
/// `labels[r] = argmin_j (norms[j] + dots[r·K + j])` with ties to the lowest
/// `j`; `best[r]` receives that minimum.
fn argmin_rows(dots: &[f32], norms: &[f32], best: &mut [f32], labels: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { argmin_rows_avx2(dots, norms, best, labels) };
    }
    argmin_rows_portable(dots, norms, best, labels)
}

/// [`argmin_row`]'s scheme in AVX2 intrinsics, on 8 lanes. The compiler
/// turns the portable version's cross-lane merge into a serial chain of
/// scalar steps: measured 4× slower for the whole assignment at K = 16,
/// F = 64. (AVX2 rather than AVX-512: its intrinsics and target feature are
/// stable since Rust 1.27, and Zen 4 runs 512-bit vectors at half rate.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn argmin_rows_avx2(dots: &[f32], norms: &[f32], best: &mut [f32], labels: &mut [u32]) {
    use std::arch::x86_64::*;
    const WIDTH: usize = 8;
    let k = norms.len();
    let full = k / WIDTH;
    let tail = k % WIDTH;
    let infinity = _mm256_set1_ps(f32::INFINITY);
    let first_ids = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    // Lanes `0..tail` of the partial last chunk are real; the others read
    // as +Inf and never win.
    let tail_lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail as i32), first_ids);
    let tail_ids = _mm256_add_epi32(first_ids, _mm256_set1_epi32((full * WIDTH) as i32));
    // Lane-wise: keep `values` where strictly smaller (so each lane keeps its
    // lowest index on ties).
    let offer = |min: &mut __m256, index: &mut __m256i, values: __m256, ids: __m256i| {
        let closer = _mm256_cmp_ps::<_CMP_LT_OQ>(values, *min);
        *min = _mm256_blendv_ps(*min, values, closer);
        *index = _mm256_blendv_epi8(*index, ids, _mm256_castps_si256(closer));
    };
    // Across lanes: take the partner's candidate when smaller, or equal with
    // a lower index. After three swaps every lane holds the row's answer.
    let merge = |min: &mut __m256, index: &mut __m256i, other: __m256, other_ids: __m256i| {
        let smaller = _mm256_cmp_ps::<_CMP_LT_OQ>(other, *min);
        let equal = _mm256_cmp_ps::<_CMP_EQ_OQ>(other, *min);
        let lower = _mm256_castsi256_ps(_mm256_cmpgt_epi32(*index, other_ids));
        let take = _mm256_or_ps(smaller, _mm256_and_ps(equal, lower));
        *min = _mm256_blendv_ps(*min, other, take);
        *index = _mm256_blendv_epi8(*index, other_ids, _mm256_castps_si256(take));
    };
    for ((row, b), l) in dots.chunks_exact(k).zip(best.iter_mut()).zip(labels) {
        let mut min = infinity;
        let mut index = _mm256_setzero_si256();
        let mut ids = first_ids;
        for chunk in 0..full {
            // SAFETY: chunk·8 + 8 ≤ k, the length of both `row` and `norms`.
            let values = unsafe {
                _mm256_add_ps(
                    _mm256_loadu_ps(norms.as_ptr().add(chunk * WIDTH)),
                    _mm256_loadu_ps(row.as_ptr().add(chunk * WIDTH)),
                )
            };
            offer(&mut min, &mut index, values, ids);
            ids = _mm256_add_epi32(ids, _mm256_set1_epi32(WIDTH as i32));
        }
        if tail > 0 {
            // SAFETY: masked-off lanes are not read, and the lanes read are
            // in `full·8 .. k`, inside both slices.
            let values = unsafe {
                _mm256_add_ps(
                    _mm256_maskload_ps(norms.as_ptr().add(full * WIDTH), tail_lanes),
                    _mm256_maskload_ps(row.as_ptr().add(full * WIDTH), tail_lanes),
                )
            };
            let values = _mm256_blendv_ps(infinity, values, _mm256_castsi256_ps(tail_lanes));
            offer(&mut min, &mut index, values, tail_ids);
        }
        let (m, i) = (min, index);
        merge(
            &mut min,
            &mut index,
            _mm256_permute2f128_ps::<0x01>(m, m),
            _mm256_permute2x128_si256::<0x01>(i, i),
        );
        let (m, i) = (min, index);
        merge(
            &mut min,
            &mut index,
            _mm256_shuffle_ps::<0b01_00_11_10>(m, m),
            _mm256_shuffle_epi32::<0b01_00_11_10>(i),
        );
        let (m, i) = (min, index);
        merge(
            &mut min,
            &mut index,
            _mm256_shuffle_ps::<0b10_11_00_01>(m, m),
            _mm256_shuffle_epi32::<0b10_11_00_01>(i),
        );
        *l = _mm256_cvtsi256_si32(index) as u32;
        *b = _mm256_cvtss_f32(min);
    }
}

#[inline(always)]
fn argmin_rows_portable(dots: &[f32], norms: &[f32], best: &mut [f32], labels: &mut [u32]) {
    let k = norms.len();
    for ((row, b), l) in dots.chunks_exact(k).zip(best.iter_mut()).zip(labels) {
        (*l, *b) = argmin_row(row, norms);
    }
}

/// Lanes of the portable per-row argmin.
const LANES: usize = 16;

/// `(argmin_j, min_j)` of `norms[j] + dots[j]`, lowest `j` on exact ties.
///
/// Written as fixed-width lane arrays so the compiler keeps each lane in one
/// vector register: lane `l` scans `j ≡ l (mod 16)` in increasing order with
/// a strict `<`, so it keeps its lowest index; the lanes are then merged by
/// smallest value, then smallest index.
#[inline(always)]
fn argmin_row(dots: &[f32], norms: &[f32]) -> (u32, f32) {
    let mut best = [f32::INFINITY; LANES];
    let mut index = [0u32; LANES];
    let mut dots_chunks = dots.chunks_exact(LANES);
    let mut norm_chunks = norms.chunks_exact(LANES);
    for (chunk, (d, n)) in (&mut dots_chunks).zip(&mut norm_chunks).enumerate() {
        let base = (chunk * LANES) as u32;
        for lane in 0..LANES {
            let v = n[lane] + d[lane];
            let closer = v < best[lane];
            best[lane] = if closer { v } else { best[lane] };
            index[lane] = if closer {
                base + lane as u32
            } else {
                index[lane]
            };
        }
    }
    let mut min = best[0];
    for &b in &best[1..] {
        min = if b < min { b } else { min };
    }
    let mut label = u32::MAX;
    for lane in 0..LANES {
        let candidate = if best[lane] == min {
            index[lane]
        } else {
            u32::MAX
        };
        label = label.min(candidate);
    }
    // The tail's indices exceed every lane's, so strict `<` keeps ties low.
    let tail_start = dots.len() - dots_chunks.remainder().len();
    for (j, (&d, &n)) in dots_chunks
        .remainder()
        .iter()
        .zip(norm_chunks.remainder())
        .enumerate()
    {
        let v = n + d;
        if v < min {
            min = v;
            label = (tail_start + j) as u32;
        }
    }
    // Only when every distance is +Inf or NaN (overflowing input).
    if label == u32::MAX {
        label = 0;
    }
    (label, min)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn labels_and_distances_of_a_small_case() {
        let codebook = Codebook::new(array![[0.0f32, 0.0], [4.0, 0.0], [0.0, 4.0]].view()).unwrap();
        let rows = [1.0f32, 0.0, 3.0, 1.0, 0.0, 3.5, 2.0, 0.0];
        let (labels, distances) = assign_rows_with_distances(&codebook, &rows, 2);
        // [2, 0] is equidistant from c0 and c1: the lowest index wins.
        assert_eq!(labels, vec![0, 1, 2, 0]);
        assert_eq!(distances, vec![1.0, 2.0, 0.25, 4.0]);
        assert_eq!(assign_rows(&codebook, &rows, 2), labels);
    }

    /// The one-pass encoder and k-means cut rows into other blocks than
    /// [`assign_rows`]: a row's distance bits must not depend on its block.
    #[test]
    fn a_rows_bits_do_not_depend_on_the_block_it_falls_in() {
        let mut seed = 99u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        for (k, f) in [(1, 3), (3, 5), (16, 64), (64, 128), (256, 128), (5, 600)] {
            let n = 1500;
            let centroids: Vec<f32> = (0..k * f).map(|_| next()).collect();
            let codebook =
                Codebook::new(ndarray::ArrayView2::from_shape((k, f), &centroids).unwrap())
                    .unwrap();
            let rows: Vec<f32> = (0..n * f).map(|_| next()).collect();
            let (labels, distances) = assign_rows_with_distances(&codebook, &rows, f);
            for cut in [
                (0, 1),
                (0, 7),
                (3, 4),
                (100, 117),
                (1499, 1500),
                (200, 1300),
            ] {
                let len = cut.1 - cut.0;
                let (mut l, mut d) = (vec![0u32; len], vec![0f32; len]);
                label_range(&codebook, &rows, cut.0..cut.1, &mut l, Some(&mut d));
                assert_eq!(l, labels[cut.0..cut.1], "k={k} f={f} {cut:?}");
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&d),
                    bits(&distances[cut.0..cut.1]),
                    "k={k} f={f} {cut:?}"
                );
            }
        }
    }

    #[test]
    fn every_argmin_path_agrees_with_the_portable_one_ties_included() {
        let mut seed = 12345u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) % 7) as f32 // few values: many exact ties
        };
        for k in [1, 2, 15, 16, 17, 31, 32, 33, 64, 100, 256, 300] {
            let m = 50;
            let norms: Vec<f32> = (0..k).map(|_| next()).collect();
            let dots: Vec<f32> = (0..m * k).map(|_| -next()).collect();
            let (mut want_labels, mut want_best) = (vec![0u32; m], vec![0f32; m]);
            argmin_rows_portable(&dots, &norms, &mut want_best, &mut want_labels);
            for r in 0..m {
                let row: Vec<f32> = (0..k).map(|j| norms[j] + dots[r * k + j]).collect();
                let min = row.iter().copied().fold(f32::INFINITY, f32::min);
                let first = row.iter().position(|&x| x == min).unwrap();
                assert_eq!(
                    (want_labels[r] as usize, want_best[r]),
                    (first, min),
                    "k={k}"
                );
            }
            let (mut labels, mut best) = (vec![7u32; m], vec![0f32; m]);
            argmin_rows(&dots, &norms, &mut best, &mut labels);
            assert_eq!((labels, best), (want_labels, want_best), "k={k}");
        }
    }

    #[test]
    fn block_size_depends_on_k_only() {
        assert_eq!(block_rows(16), MAX_BLOCK_ROWS);
        assert_eq!(block_rows(256), MIN_BLOCK_ROWS);
        assert_eq!(block_rows(128), 2048);
    }
}
