//! k-means on the GPU (lavapipe in CI) against the CPU: one Lloyd iteration
//! gives the same centroids up to f32 summation order, and a full fit
//! recovers the same clusters.

use crate::common::gpu_or_skip;
use ndarray::Array2;
use vlad::Backend;
use vlad::kmeans::KMeans;

/// `per` points around each of `centres` well-separated centres.
fn blobs(centres: usize, per: usize, dim: usize) -> Array2<f32> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    Array2::from_shape_fn((centres * per, dim), |(i, j)| {
        let c = i / per;
        (c * 10 + j % 3) as f32 + 0.3 * next()
    })
}

#[test]
fn one_lloyd_iteration_matches_the_cpu() {
    gpu_or_skip!();
    let data = blobs(6, 150, 19);
    let fit = |backend| {
        KMeans::new(6)
            .iterations(1)
            .max_points_per_centroid(None)
            .backend(backend)
            .fit(data.view())
            .unwrap()
    };
    let cpu = fit(Backend::Cpu);
    let gpu = fit(Backend::Gpu);
    assert_eq!(gpu.backend, Backend::Gpu);
    assert_eq!(cpu.iterations, 1);
    assert_eq!(gpu.iterations, 1);
    for (a, b) in cpu.codebook.as_slice().iter().zip(gpu.codebook.as_slice()) {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs().max(1.0),
            "cpu {a} vs gpu {b}"
        );
    }
    let rel = (cpu.inertia - gpu.inertia).abs() / cpu.inertia;
    assert!(
        rel < 1e-5,
        "inertia cpu {} gpu {}",
        cpu.inertia,
        gpu.inertia
    );
}

#[test]
fn gpu_fit_recovers_the_clusters_and_is_deterministic() {
    gpu_or_skip!();
    let data = blobs(4, 100, 8);
    let fit = || {
        KMeans::new(4)
            .backend(Backend::Gpu)
            .fit(data.view())
            .unwrap()
    };
    let first = fit();
    let second = fit();
    assert_eq!(first.codebook, second.codebook, "two gpu fits differ");
    // Each true centre (c·10 + j%3) has a centroid within the noise.
    for c in 0..4 {
        let truth: Vec<f32> = (0..8).map(|j| (c * 10 + j % 3) as f32).collect();
        let best = first
            .codebook
            .centroids()
            .outer_iter()
            .map(|row| {
                row.iter()
                    .zip(&truth)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max)
            })
            .fold(f32::INFINITY, f32::min);
        assert!(best < 0.1, "centre {c} not recovered (closest {best})");
    }
}
