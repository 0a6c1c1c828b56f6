//! Seeded data and codebook builders used by more than one test file: the
//! same seed gives the same values in every binary.

use ndarray::Array2;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use vlad::Codebook;

/// A `(rows, cols)` matrix uniform in [-1, 1), drawn row by row.
pub fn random_matrix(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
}

/// A codebook of `k` centroids of `f` values uniform in [-1, 1).
pub fn random_codebook(rng: &mut ChaCha8Rng, k: usize, f: usize) -> Codebook {
    Codebook::new(random_matrix(rng, k, f).view()).unwrap()
}

/// A `(rows, cols)` matrix of standard normal values, drawn row by row.
pub fn normal_matrix(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Array2<f32> {
    let normal = Normal::new(0.0f32, 1.0).unwrap();
    Array2::from_shape_fn((rows, cols), |_| normal.sample(rng))
}

/// CSR offsets of images of `sizes` rows (a zero is an empty image):
/// `[0, s0, s0 + s1, …]`.
pub fn offsets_from_sizes(sizes: impl IntoIterator<Item = usize>) -> Vec<usize> {
    let mut offsets = vec![0];
    for s in sizes {
        offsets.push(offsets[offsets.len() - 1] + s);
    }
    offsets
}

/// Ragged images of standard normal rows and a standard normal codebook.
pub struct NormalRagged {
    pub rows: Array2<f32>,
    pub offsets: Vec<usize>,
    pub centroids: Array2<f32>,
}

/// Images of `sizes` rows of `f` values, then `k` centroids, all drawn from
/// `rng` in that order (draw more from it afterwards for soft parameters).
pub fn normal_ragged(rng: &mut ChaCha8Rng, sizes: &[usize], f: usize, k: usize) -> NormalRagged {
    let offsets = offsets_from_sizes(sizes.iter().copied());
    let rows = normal_matrix(rng, offsets[offsets.len() - 1], f);
    let centroids = normal_matrix(rng, k, f);
    NormalRagged {
        rows,
        offsets,
        centroids,
    }
}

/// `job` run inside a rayon pool of `threads` threads.
pub fn in_pool<T: Send>(threads: usize, job: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool")
        .install(job)
}
