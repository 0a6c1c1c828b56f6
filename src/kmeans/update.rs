//! The Lloyd update: each centroid moves to the mean of its points.

/// Set each centroid with points to `sums / count` (computed in f64,
/// stored in f32) and return the clusters that received no point, in
/// index order; their centroids are left where they were.
pub(crate) fn move_to_means(
    centroids: &mut [f32],
    sums: &[f64],
    counts: &[u64],
    dim: usize,
) -> Vec<usize> {
    let mut empty = Vec::new();
    for (k, ((c, s), &n)) in centroids
        .chunks_exact_mut(dim)
        .zip(sums.chunks_exact(dim))
        .zip(counts)
        .enumerate()
    {
        if n == 0 {
            empty.push(k);
            continue;
        }
        let n = n as f64;
        for (c, s) in c.iter_mut().zip(s) {
            *c = (s / n) as f32;
        }
    }
    empty
}
