//! Small f32 kernels on rows: squared norm and squared distances, each summed in 16 independent lanes so the compiler can keep
//! them in vector registers. Strict IEEE order forbids it from
//! re-associating one running sum by itself; the lane split makes the
//! summation order fixed (and so deterministic) *and* vectorizable.

use crate::model::element::Element;

pub(crate) const LANES: usize = 16;

/// Fold the lanes in a fixed pairwise order.
#[inline(always)]
pub(crate) fn fold(lanes: [f32; LANES]) -> f32 {
    let mut width = LANES;
    let mut lanes = lanes;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
    }
    lanes[0]
}

/// `‖row‖²` in f32.
#[inline]
pub(crate) fn squared_norm<E: Element>(row: &[E]) -> f32 {
    let mut lanes = [0f32; LANES];
    let (body, tail) = row.split_at(row.len() - row.len() % LANES);
    for r in body.chunks_exact(LANES) {
        for j in 0..LANES {
            let x = r[j].to_f32();
            lanes[j] += x * x;
        }
    }
    for (j, r) in tail.iter().enumerate() {
        let x = r.to_f32();
        lanes[j] += x * x;
    }
    fold(lanes)
}

/// `‖row − centroid‖²` in f64: the exact figure reported as inertia.
#[inline]
pub(crate) fn squared_distance_f64<E: Element>(row: &[E], centroid: &[f32]) -> f64 {
    row.iter()
        .zip(centroid)
        .map(|(r, &c)| {
            let d = r.to_f64() - c as f64;
            d * d
        })
        .sum()
}

/// `rows` (`n × dim`, row-major) widened to f32 and transposed to
/// column-major (`out[f·n + i] = rows[i·dim + f]`): the layout in which
/// [`distances_to_each`] runs without gemm repacking it on every call.
///
/// Done in 16 × 16 tiles: row by row, each row's values would land `n`
/// floats apart (4 KiB for the 1024-row blocks k-means++ uses, so every
/// write aliases in the cache); a tile writes 16 consecutive floats of each
/// column instead. A pure copy: the tiling changes no value. (Streamed
/// k-means++ transposes every window on every pass, so this matters.)
pub(crate) fn column_major<E: Element>(rows: &[E], dim: usize, out: &mut [f32]) {
    const TILE: usize = 16;
    let n = rows.len() / dim;
    debug_assert_eq!(out.len(), n * dim);
    for i0 in (0..n).step_by(TILE) {
        let i1 = (i0 + TILE).min(n);
        for f0 in (0..dim).step_by(TILE) {
            let f1 = (f0 + TILE).min(dim);
            for f in f0..f1 {
                let column = &mut out[f * n + i0..f * n + i1];
                for (i, o) in (i0..i1).zip(column) {
                    *o = rows[i * dim + f].to_f32();
                }
            }
        }
    }
}

/// `out[c·n + i] = max(‖x_i‖² + ‖c‖² − 2 x_i·c, 0)` for each of the `n`
/// rows `x_i` of `columns` (`n × dim` column-major, see [`column_major`])
/// and each of the `C` candidates (`C × dim` row-major), candidate-major.
/// The dot products come from one single-threaded GEMM: `gemm` picks
/// AVX-512/AVX2 kernels at run time, and a fixed shape always takes the same
/// path, so results are reproducible.
pub(crate) fn distances_to_each(
    columns: &[f32],
    row_norms: &[f32],
    dim: usize,
    candidates: &[f32],
    candidate_norms: &[f32],
    out: &mut [f32],
) {
    let (n, count) = (row_norms.len(), candidate_norms.len());
    assert_eq!(
        (columns.len(), candidates.len(), out.len()),
        (n * dim, count * dim, n * count),
        "distances_to_each: inconsistent extents"
    );
    if n == 0 || count == 0 {
        return;
    }
    // SAFETY: the assert above makes every pointer cover exactly what gemm
    // touches: `out` is n × count column-major (column stride n), `columns`
    // n × dim column-major (column stride n), and the right-hand matrix
    // (dim × count) is the row-major candidates read with row stride 1 and
    // column stride dim. `out` aliases neither input.
    unsafe {
        gemm::gemm(
            n,
            count,
            dim,
            out.as_mut_ptr(),
            n as isize,
            1,
            false,
            columns.as_ptr(),
            n as isize,
            1,
            candidates.as_ptr(),
            dim as isize,
            1,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    for (out, &c_norm) in out.chunks_exact_mut(n).zip(candidate_norms) {
        for (o, &x_norm) in out.iter_mut().zip(row_norms) {
            *o = (x_norm + c_norm - 2.0 * *o).max(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_plain_f64_loops_on_odd_widths() {
        for dim in [1usize, 5, 16, 17, 40] {
            let a: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
            let b: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.11).cos() - 0.5).collect();
            let norm64: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
            let dist64: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
                .sum();
            assert!((squared_norm(&a) as f64 - norm64).abs() < 1e-4 * (1.0 + norm64));
            assert!((squared_distance_f64(&a, &b) - dist64).abs() < 1e-9 * (1.0 + dist64));
            // Rows (a, b) against candidates (b, a), from f32 and f64 input.
            let both: Vec<f32> = a.iter().chain(&b).copied().collect();
            let swapped: Vec<f32> = b.iter().chain(&a).copied().collect();
            let norms = [squared_norm(&a), squared_norm(&b)];
            let mut columns = vec![0f32; 2 * dim];
            column_major(&both, dim, &mut columns);
            let both64: Vec<f64> = both.iter().map(|&x| x as f64).collect();
            let mut columns64 = vec![0f32; 2 * dim];
            column_major(&both64, dim, &mut columns64);
            assert_eq!(columns, columns64);
            let mut out = [0f32; 4];
            let swapped_norms = [norms[1], norms[0]];
            distances_to_each(&columns, &norms, dim, &swapped, &swapped_norms, &mut out);
            // out[c·2 + i]: (a,b) (b,b) (a,a) (b,a).
            for d in [out[0], out[3]] {
                assert!(
                    (d as f64 - dist64).abs() < 1e-4 * (1.0 + dist64),
                    "{d} vs {dist64}"
                );
            }
            for d in [out[1], out[2]] {
                assert!((d as f64) < 1e-5 * (1.0 + norm64), "{d}");
            }
        }
    }
}
