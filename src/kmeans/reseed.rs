//! Empty clusters: a centroid that received no point is moved next to the
//! centroid of the most populous cluster, splitting it (as faiss does).
//!
//! Rule, for each empty cluster in index order:
//! 1. pick the cluster `j` with the most points (ties → lowest index) among
//!    those whose points are not all at its centroid;
//! 2. move the empty centroid to `c_j + δ`, where `δ_f = ±σ_j / 32` with
//!    signs drawn from the seeded ChaCha8 stream, `σ_j² = SSE_j / (n_j·F)`
//!    the mean squared deviation per coordinate of cluster `j` (at least a
//!    few ulps of `c_j`, so the move is never lost to rounding); should that
//!    spot hold a centroid already (same signs drawn twice), draw again with
//!    `2δ`, `3δ`…;
//! 3. count the two halves as `⌊n_j/2⌋` and `n_j − ⌊n_j/2⌋` points (with
//!    half the squared error each) so the next empty cluster may split
//!    another one.
//!
//! Only the empty centroid moves. It had no point, so the k-means objective
//! for the current labels is unchanged, and the next assignment can only
//! lower it: inertia still never increases. The next assignment gives it
//! the points of cluster `j` on its side of a hyperplane through (nearly)
//! `c_j`, about half of them.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// ChaCha stream of the split directions.
pub(crate) const RESEED_STREAM: u64 = 2;

/// Re-seed every cluster in `empty` (see the module doc). `counts`,
/// `labels` and `distances` come from the assignment the means were
/// computed from. Returns how many centroids moved.
pub(crate) fn split_largest(
    centroids: &mut [f32],
    dim: usize,
    empty: &[usize],
    counts: &[u64],
    labels: &[u32],
    distances: &[f32],
    rng: &mut ChaCha8Rng,
) -> usize {
    if empty.is_empty() {
        return 0;
    }
    let mut errors = vec![0f64; counts.len()];
    for (&label, &d) in labels.iter().zip(distances) {
        errors[label as usize] += d as f64;
    }
    split_largest_by_errors(centroids, dim, empty, counts, &errors, rng)
}

/// [`split_largest`] from each cluster's squared error `Σ d` (f64) instead
/// of the labels and distances it is summed from: what a distributed
/// iteration has once the per-block sums are reduced.
pub(crate) fn split_largest_by_errors(
    centroids: &mut [f32],
    dim: usize,
    empty: &[usize],
    counts: &[u64],
    errors: &[f64],
    rng: &mut ChaCha8Rng,
) -> usize {
    if empty.is_empty() {
        return 0;
    }
    let mut counts = counts.to_vec();
    let mut errors = errors.to_vec();
    let mut moved = 0;
    for &e in empty {
        let Some(j) = (0..counts.len())
            .filter(|&j| counts[j] >= 2 && errors[j] > 0.0)
            .fold(None, |best: Option<usize>, j| match best {
                Some(b) if counts[b] >= counts[j] => Some(b),
                _ => Some(j),
            })
        else {
            // No cluster holds two distinct points: nothing to split.
            continue;
        };
        let sigma = (errors[j] / (counts[j] as f64 * dim as f64)).sqrt() as f32;
        let mut candidate = vec![0f32; dim];
        // A cluster split twice could draw the same signs twice (likely
        // when F is small): retry, farther out, until the spot is free.
        for attempt in 0..16 {
            let scale = (attempt + 1) as f32;
            for (f, x) in candidate.iter_mut().enumerate() {
                let base = centroids[j * dim + f];
                let step = (sigma / 32.0).max(base.abs() * f32::EPSILON * 4.0);
                let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
                *x = base + sign * scale * step;
            }
            if !centroids
                .chunks_exact(dim)
                .any(|c| c == candidate.as_slice())
            {
                break;
            }
        }
        centroids[e * dim..(e + 1) * dim].copy_from_slice(&candidate);
        let half = counts[j] / 2;
        counts[e] = half;
        counts[j] -= half;
        errors[j] /= 2.0;
        errors[e] = errors[j];
        moved += 1;
    }
    moved
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn an_empty_centroid_splits_the_largest_spread_cluster() {
        // Cluster 1 has 4 points 1 apart around (10, 0); cluster 2 has more
        // points but all at its centroid; cluster 0 is empty.
        let dim = 2;
        let mut centroids = vec![-5.0, -5.0, 10.0, 0.0, 50.0, 50.0];
        let labels = [1, 1, 1, 1, 2, 2, 2, 2, 2];
        let distances = [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let counts = [0, 4, 5];
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let moved = split_largest(
            &mut centroids,
            dim,
            &[0],
            &counts,
            &labels,
            &distances,
            &mut rng,
        );
        assert_eq!(moved, 1);
        // σ² = 4 / (4·2) → σ/32 ≈ 0.0221 on each coordinate, either sign.
        let step = (0.5f32).sqrt() / 32.0;
        assert!((centroids[0] - 10.0).abs() - step < 1e-6 && (centroids[0] - 10.0).abs() > 0.0);
        assert!(centroids[1].abs() - step < 1e-6 && centroids[1] != 0.0);
        assert_eq!(&centroids[2..], &[10.0, 0.0, 50.0, 50.0]);

        // Same seed, same move; two empties split two different halves.
        let mut again = vec![-5.0, -5.0, 10.0, 0.0, 50.0, 50.0];
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        split_largest(
            &mut again,
            dim,
            &[0],
            &counts,
            &labels,
            &distances,
            &mut rng,
        );
        assert_eq!(again[..2], centroids[..2]);
        let mut two = vec![0.0, 0.0, 10.0, 0.0, 7.0, 7.0];
        let counts = [4, 0, 0];
        let labels = [0, 0, 0, 0];
        let distances = [2.0, 2.0, 2.0, 2.0];
        let moved = split_largest(
            &mut two,
            dim,
            &[1, 2],
            &counts,
            &labels,
            &distances,
            &mut rng,
        );
        assert_eq!(moved, 2);
        assert_ne!(two[2..4], two[4..6]);
    }
}
