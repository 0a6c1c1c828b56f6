//! `vlad bench --suite`: fixed, seeded shapes, so that two machines'
//! numbers compare (SPEC §16). From the seed experiment's shape up to
//! `N = 10⁷` descriptors; a cap on `N` (`--max-n`) keeps small machines and
//! the tests to the first few.

/// One shape of the suite.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SuiteShape {
    /// Its name in the table and the JSON.
    pub label: &'static str,
    /// Images `T`.
    pub images: usize,
    /// Descriptors per image `L`.
    pub per_image: usize,
    /// Descriptor width `F`.
    pub dim: usize,
    /// Centroids `K`.
    pub clusters: usize,
    /// Timed runs (fewer for the big shapes: their medians are steadier and
    /// each run is long).
    pub repeats: usize,
}

impl SuiteShape {
    /// Descriptors `N = T·L`.
    pub fn descriptors(&self) -> usize {
        self.images * self.per_image
    }
}

/// Every shape of the suite, smallest first. The data seed is the
/// benchmark's (`--seed`, 1234 by default) for every shape.
pub const SUITE: [SuiteShape; 4] = [
    // The seed experiment: 256 images of 128 descriptors, F = 64, K = 16.
    SuiteShape {
        label: "seed",
        images: 256,
        per_image: 128,
        dim: 64,
        clusters: 16,
        repeats: 9,
    },
    // SIFT-like (SPEC §8's default shape).
    SuiteShape {
        label: "sift",
        images: 200,
        per_image: 500,
        dim: 128,
        clusters: 64,
        repeats: 7,
    },
    // N = 10⁶ at K = 256: the shape of BENCHMARKS.md's device tables.
    SuiteShape {
        label: "1m",
        images: 2000,
        per_image: 500,
        dim: 128,
        clusters: 256,
        repeats: 5,
    },
    // N = 10⁷: 5.1 GB of f32 descriptors.
    SuiteShape {
        label: "10m",
        images: 20000,
        per_image: 500,
        dim: 128,
        clusters: 256,
        repeats: 3,
    },
];

/// The default cap on `N`: the whole suite.
pub const MAX_N: usize = 10_000_000;

/// The shapes with at most `max_n` descriptors, in suite order.
pub fn shapes(max_n: usize) -> Vec<SuiteShape> {
    SUITE
        .into_iter()
        .filter(|s| s.descriptors() <= max_n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suite_runs_from_the_seed_shape_to_ten_million() {
        assert_eq!(SUITE[0].descriptors(), 256 * 128);
        assert_eq!(SUITE[SUITE.len() - 1].descriptors(), MAX_N);
        assert!(
            SUITE
                .windows(2)
                .all(|w| w[0].descriptors() < w[1].descriptors())
        );
        assert_eq!(shapes(MAX_N).len(), SUITE.len());
        assert_eq!(shapes(100_000), SUITE[..2].to_vec());
        assert!(shapes(1000).is_empty());
    }
}
