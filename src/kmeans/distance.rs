//! Small f32 kernels on one row: squared norm, dot product and squared
//! distance, each summed in 16 independent lanes so the compiler can keep
//! them in vector registers. Strict IEEE order forbids it from
//! re-associating one running sum by itself; the lane split makes the
//! summation order fixed (and so deterministic) *and* vectorizable.

use crate::element::Element;

const LANES: usize = 16;

/// Fold the lanes in a fixed pairwise order.
#[inline(always)]
fn fold(lanes: [f32; LANES]) -> f32 {
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

/// `Σ_f row[f] · centroid[f]` in f32.
#[cfg(test)]
#[inline]
pub(crate) fn dot<E: Element>(row: &[E], centroid: &[f32]) -> f32 {
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

/// `‖row‖²` in f32.
#[cfg(test)]
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

/// `‖row − centroid‖²` in f32, from the differences (no cancellation), for
/// the places where a distance is used as a sampling weight.
#[inline]
pub(crate) fn squared_distance<E: Element>(row: &[E], centroid: &[f32]) -> f32 {
    debug_assert_eq!(row.len(), centroid.len());
    let mut lanes = [0f32; LANES];
    let (row_body, row_tail) = row.split_at(row.len() - row.len() % LANES);
    let (c_body, c_tail) = centroid.split_at(row_body.len());
    for (r, c) in row_body.chunks_exact(LANES).zip(c_body.chunks_exact(LANES)) {
        for j in 0..LANES {
            let d = r[j].to_f32() - c[j];
            lanes[j] += d * d;
        }
    }
    for (j, (r, c)) in row_tail.iter().zip(c_tail).enumerate() {
        let d = r.to_f32() - c;
        lanes[j] += d * d;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_plain_f64_loops_on_odd_widths() {
        for dim in [1usize, 5, 16, 17, 40] {
            let a: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
            let b: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.11).cos() - 0.5).collect();
            let dot64: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let norm64: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
            let dist64: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
                .sum();
            assert!((dot(&a, &b) as f64 - dot64).abs() < 1e-4 * (1.0 + dot64.abs()));
            assert!((squared_norm(&a) as f64 - norm64).abs() < 1e-4 * (1.0 + norm64));
            assert!((squared_distance(&a, &b) as f64 - dist64).abs() < 1e-4 * (1.0 + dist64));
            assert!((squared_distance_f64(&a, &b) - dist64).abs() < 1e-9 * (1.0 + dist64));
        }
    }
}
