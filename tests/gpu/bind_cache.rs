//! Uniform buffers and bind groups are made once per shape and reused
//! (src/backend/gpu/bind_cache.rs): a repeated call makes none, gives the same
//! bits, and a new shape still gets its own.

use ndarray::{Array2, Array3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vlad::backend::gpu::{GpuBackend, GpuOptions};
use vlad::{Assignment, Batch, Codebook, Normalization, StageTimes};

use crate::util::encode;

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
    let hard = Assignment::Hard;

    // The first call allocates scratch buffers part-way, which drops the
    // bind groups cached before (they may name replaced buffers); from the
    // second call on, nothing is made.
    let mut first = None;
    for _ in 0..2 {
        let (out, _) = encode(
            &gpu,
            &codebook,
            &hard,
            &batch,
            &norm,
            &mut StageTimes::new(),
        )
        .unwrap();
        first.get_or_insert(out);
    }
    let first = first.unwrap();
    let after_first = gpu.context().binding_counts();
    assert!(after_first.made > 0, "{after_first:?}");
    for _ in 0..2 {
        let (again, _) = encode(
            &gpu,
            &codebook,
            &hard,
            &batch,
            &norm,
            &mut StageTimes::new(),
        )
        .unwrap();
        assert_eq!(again, first, "a reused binding changed the result");
    }
    let after = gpu.context().binding_counts();
    assert_eq!(after.made, after_first.made, "repeated calls made bindings");
    assert!(after.reused > after_first.reused, "{after:?}");

    // Another shape (fewer images: other uniforms) still runs correctly.
    let small = Batch::fixed(images.slice(ndarray::s![..2, ..7, ..])).unwrap();
    let (got, _) = encode(
        &gpu,
        &codebook,
        &hard,
        &small,
        &norm,
        &mut StageTimes::new(),
    )
    .unwrap();
    let fresh_gpu = GpuBackend::new(&GpuOptions::default()).unwrap();
    let (fresh, _) = encode(
        &fresh_gpu,
        &codebook,
        &hard,
        &small,
        &norm,
        &mut StageTimes::new(),
    )
    .unwrap();
    assert_eq!(got, fresh, "cached bindings gave another result");
    assert!(gpu.context().binding_counts().made > after.made);
}

/// The soft route and hard assignment with `rn` take their bind groups
/// from the same cache: once warm, a repeated call makes none and gives
/// the same bits.
#[test]
fn weighted_routes_reuse_their_bindings() {
    crate::common::require_gpu!();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let (k, f) = (16, 24);
    let centroids = Array2::from_shape_fn((k, f), |_| rng.random_range(-1.0f32..1.0));
    let codebook = Codebook::new(centroids.view()).unwrap();
    let weights = Array2::from_shape_fn((k, f), |_| rng.random_range(-1.0f32..1.0));
    let bias = ndarray::Array1::from_shape_fn(k, |_| rng.random_range(-1.0f32..1.0));
    let soft = Assignment::soft(weights.view(), bias.view()).unwrap();
    let images = Array3::from_shape_fn((5, 40, f), |_| rng.random_range(-1.0f32..1.0));
    let batch = Batch::fixed(images.view()).unwrap();
    let gpu = GpuBackend::new(&GpuOptions::default()).unwrap();
    for (assignment, norm) in [
        (&soft, "mass,intra,l2"),
        (&soft, "rn,mass,intra,l2"),
        (&Assignment::Hard, "rn,ssr,l2"),
    ] {
        let norm: Normalization = norm.parse().unwrap();
        let run = || {
            encode(
                &gpu,
                &codebook,
                assignment,
                &batch,
                &norm,
                &mut StageTimes::new(),
            )
        };
        // Warm: the first calls allocate pooled buffers part-way.
        let (first, _) = run().unwrap();
        run().unwrap();
        let warm = gpu.context().binding_counts();
        let (again, _) = run().unwrap();
        assert_eq!(again, first, "{norm}: a reused binding changed the result");
        let after = gpu.context().binding_counts();
        assert_eq!(
            after.made, warm.made,
            "{norm}: a repeated call made bindings"
        );
        assert!(after.reused > warm.reused, "{norm}: {after:?}");
    }
}
