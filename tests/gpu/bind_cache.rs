//! Uniform buffers and bind groups are made once per shape and reused
//! (src/backend/gpu/bind_cache.rs): a repeated call makes none, gives the same
//! bits, and a new shape still gets its own.

use ndarray::{Array2, Array3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vlad::backend::gpu::{GpuBackend, GpuOptions};
use vlad::{Batch, Codebook, Normalization, StageTimes};

#[test]
fn repeated_calls_make_no_bindings_and_agree() {
    crate::common::gpu_or_skip!();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let centroids = Array2::from_shape_fn((16, 24), |_| rng.random_range(-1.0f32..1.0));
    let codebook = Codebook::new(centroids.view()).unwrap();
    let images = Array3::from_shape_fn((5, 40, 24), |_| rng.random_range(-1.0f32..1.0));
    let batch = Batch::fixed(images.view()).unwrap();
    let gpu = GpuBackend::new(&GpuOptions::default()).unwrap();
    let norm: Normalization = "mass,ssr,intra,l2".parse().unwrap();

    // The first call allocates scratch buffers part-way, which drops the
    // bind groups cached before (they may name replaced buffers); from the
    // second call on, nothing is made.
    let mut first = None;
    for _ in 0..2 {
        let (out, _) = gpu
            .encode(&codebook, &batch, &norm, &mut StageTimes::new())
            .unwrap();
        first.get_or_insert(out);
    }
    let first = first.unwrap();
    let after_first = gpu.context().binding_counts();
    assert!(after_first.made > 0, "{after_first:?}");
    for _ in 0..2 {
        let (again, _) = gpu
            .encode(&codebook, &batch, &norm, &mut StageTimes::new())
            .unwrap();
        assert_eq!(again, first, "a reused binding changed the result");
    }
    let after = gpu.context().binding_counts();
    assert_eq!(after.made, after_first.made, "repeated calls made bindings");
    assert!(after.reused > after_first.reused, "{after:?}");

    // Another shape (fewer images: other uniforms) still runs correctly.
    let small = Batch::fixed(images.slice(ndarray::s![..2, ..7, ..])).unwrap();
    let (got, _) = gpu
        .encode(&codebook, &small, &norm, &mut StageTimes::new())
        .unwrap();
    let (fresh, _) = GpuBackend::new(&GpuOptions::default())
        .unwrap()
        .encode(&codebook, &small, &norm, &mut StageTimes::new())
        .unwrap();
    assert_eq!(got, fresh, "cached bindings gave another result");
    assert!(gpu.context().binding_counts().made > after.made);
}
