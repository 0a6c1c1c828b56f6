//! The rows a whitening is learned from: all of them, or a seeded sample
//! of `cap` rows (faiss's `max_points_per_d` idea), in increasing order so
//! that a stream reads them as they come.

use rand::SeedableRng;
use rand::seq::index;
use rand_chacha::ChaCha8Rng;

/// Which of `rows` rows are used: `None` for all of them (no more than
/// `cap`), else `cap` distinct row indices drawn with `seed`, sorted.
pub(crate) fn sample_rows(rows: usize, cap: usize, seed: u64) -> Option<Vec<usize>> {
    if rows <= cap {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut picked = index::sample(&mut rng, rows, cap).into_vec();
    picked.sort_unstable();
    Some(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_rows_under_the_cap_and_a_sorted_seeded_sample_over_it() {
        assert_eq!(sample_rows(10, 10, 1), None);
        let a = sample_rows(1000, 50, 7).unwrap();
        assert_eq!(a.len(), 50);
        assert!(a.windows(2).all(|w| w[0] < w[1]) && a[49] < 1000);
        assert_eq!(Some(a.clone()), sample_rows(1000, 50, 7));
        assert_ne!(Some(a), sample_rows(1000, 50, 8));
    }
}
