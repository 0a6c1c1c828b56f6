//! Seeded synthetic descriptors for the demo, the benchmarks and tests:
//! points scattered around a few random centres, so that nearest-centroid
//! assignment is meaningful and every cluster gets work.

use ndarray::Array3;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// `(T, L, F)` f32 descriptors drawn around `centres` random points in
/// `[0, 1)^F` with spread `0.1`, reproducible from `seed`.
pub fn clustered_images(
    images: usize,
    per_image: usize,
    dim: usize,
    centres: usize,
    seed: u64,
) -> Array3<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres = centres.max(1);
    let means: Vec<f32> = (0..centres * dim).map(|_| rng.random::<f32>()).collect();
    let noise = Normal::new(0.0f32, 0.1).unwrap_or_else(|_| unreachable!("0.1 is a valid std"));
    let mut data = Vec::with_capacity(images * per_image * dim);
    for _ in 0..images * per_image {
        let c = rng.random_range(0..centres);
        for j in 0..dim {
            data.push(means[c * dim + j] + noise.sample(&mut rng));
        }
    }
    Array3::from_shape_vec((images, per_image, dim), data)
        .unwrap_or_else(|_| unreachable!("length is images·per_image·dim"))
}
