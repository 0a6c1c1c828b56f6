//! The whole GPU backend against the f64 reference (SPEC §4) and itself
//! (SPEC §5): random shapes, every normalization step, ragged input with
//! empty images, duplicate centroids and exact ties, u8 and f64 input,
//! given labels, assignment, k-means sums, buffer reuse and stage times.

use crate::common::cases::random_codebook;
use crate::common::{NORMALIZATIONS, gpu_or_skip};
use crate::util::encode;
use ndarray::{Array2, Array3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vlad::backend::gpu::{GpuBackend, GpuOptions};
use vlad::verify::{is_near_tie, verify};
use vlad::{
    Assignment, Backend, Batch, Codebook, Element, Encoder, Normalization, StageTimes, reference,
};

fn gpu_encoder(codebook: &Codebook, norm: &Normalization) -> Encoder {
    Encoder::builder(codebook.clone())
        .normalization(norm.clone())
        .backend(Backend::Gpu)
        .build()
}

/// Encode on the GPU and check SPEC §4 against the reference.
fn encode_and_verify<E: Element>(
    what: &str,
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    norm: &Normalization,
) -> (Array2<f32>, Vec<u32>) {
    let out = gpu_encoder(codebook, norm).encode_batch(batch).unwrap();
    assert_eq!(out.report.backend, Backend::Gpu, "{what}");
    assert!(out.report.adapter.is_some(), "{what}: no adapter reported");
    assert_eq!(
        out.vlad.dim(),
        (batch.images(), codebook.clusters() * codebook.dim())
    );
    let check = verify(
        codebook,
        batch,
        &Assignment::Hard,
        norm,
        out.vlad.view(),
        &out.labels,
    );
    assert!(check.passed(), "{what} ({norm}): {check:?}");
    (out.vlad, out.labels)
}

#[test]
fn random_shapes_match_the_reference() {
    let _ctx = gpu_or_skip!();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for (t, l, f, k) in [
        (1, 1, 1, 1),
        (3, 17, 5, 4),
        (4, 64, 32, 16),
        (2, 150, 128, 64),
    ] {
        let codebook = random_codebook(&mut rng, k, f);
        let images = Array3::from_shape_fn((t, l, f), |_| rng.random_range(-1.0f32..1.0));
        let batch = Batch::fixed(images.view()).unwrap();
        encode_and_verify(
            &format!("T={t} L={l} F={f} K={k}"),
            &codebook,
            &batch,
            &Normalization::default(),
        );
    }
}

#[test]
fn every_normalization_matches_the_reference() {
    let _ctx = gpu_or_skip!();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let codebook = random_codebook(&mut rng, 8, 12);
    let images = Array3::from_shape_fn((5, 40, 12), |_| rng.random_range(-2.0f32..2.0));
    let batch = Batch::fixed(images.view()).unwrap();
    for norm in NORMALIZATIONS {
        let norm: Normalization = norm.parse().unwrap();
        encode_and_verify("normalization", &codebook, &batch, &norm);
    }
}

#[test]
fn ragged_input_with_empty_images() {
    let _ctx = gpu_or_skip!();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let codebook = random_codebook(&mut rng, 6, 9);
    let offsets = [0usize, 0, 5, 5, 6, 40, 40];
    let rows = Array2::from_shape_fn((40, 9), |_| rng.random_range(-1.0f32..1.0));
    let batch = Batch::ragged(rows.view(), &offsets).unwrap();
    for norm in ["ssr,l2", "none", "mass,intra"] {
        let norm: Normalization = norm.parse().unwrap();
        let (vlad, _) = encode_and_verify("ragged", &codebook, &batch, &norm);
        for empty in [0, 2, 5] {
            assert!(
                vlad.row(empty).iter().all(|&x| x == 0.0),
                "empty image {empty} is not exactly zero ({norm})"
            );
        }
    }
    // Only empty images.
    let none = Array2::<f32>::zeros((0, 9));
    let offsets = [0usize, 0, 0];
    let batch = Batch::ragged(none.view(), &offsets).unwrap();
    let (vlad, labels) =
        encode_and_verify("all empty", &codebook, &batch, &Normalization::default());
    assert!(vlad.iter().all(|&x| x == 0.0) && labels.is_empty());
}

#[test]
fn duplicate_centroids_and_exact_ties_go_to_the_lowest_index() {
    let _ctx = gpu_or_skip!();
    // Centroids 1 and 3 are copies of 0 and 2; small integers keep every
    // distance exact in f32.
    let c = ndarray::array![
        [0.0f32, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
        [4.0, 4.0, 0.0, 0.0],
        [4.0, 4.0, 0.0, 0.0],
        [0.0, 0.0, 4.0, 4.0],
    ];
    let codebook = Codebook::new(c.view()).unwrap();
    let mut rows = Vec::new();
    for i in 0..64 {
        let r = match i % 4 {
            0 => [0.0f32, 0.0, 0.0, 0.0], // on the duplicated centroid 0/1
            1 => [4.0, 4.0, 0.0, 0.0],    // on the duplicated centroid 2/3
            2 => [2.0, 2.0, 0.0, 0.0],    // exactly between 0/1 and 2/3
            _ => [0.0, 0.0, 2.0, 2.0],    // exactly between 0/1 and 4
        };
        rows.extend_from_slice(&r);
    }
    let rows = Array2::from_shape_vec((64, 4), rows).unwrap();
    let offsets = [0usize, 30, 64];
    let batch = Batch::ragged(rows.view(), &offsets).unwrap();
    let (_, labels) = encode_and_verify("ties", &codebook, &batch, &Normalization::none());
    for (i, &label) in labels.iter().enumerate() {
        assert!(
            label != 1 && label != 3,
            "row {i}: label {label} has a lower-index twin"
        );
    }
    // Exact ties under any arithmetic (duplicates) must follow the rule.
    for i in (0..64).step_by(4) {
        assert_eq!(labels[i], 0, "row {i}");
        assert_eq!(labels[i + 1], 2, "row {}", i + 1);
    }
}

#[test]
fn u8_and_f64_inputs_match_the_reference() {
    let _ctx = gpu_or_skip!();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    // SIFT-like bytes; F = 7 makes packed rows straddle u32 words.
    for f in [7usize, 32] {
        let c = Array2::from_shape_fn((10, f), |_| rng.random_range(0.0f32..255.0));
        let codebook = Codebook::new(c.view()).unwrap();
        let images = Array3::from_shape_fn((3, 33, f), |_| rng.random_range(0u8..=255));
        let batch = Batch::fixed(images.view()).unwrap();
        encode_and_verify("u8", &codebook, &batch, &Normalization::default());
        encode_and_verify("u8", &codebook, &batch, &Normalization::none());
    }
    let codebook = random_codebook(&mut rng, 7, 16);
    let images = Array3::from_shape_fn((4, 25, 16), |_| rng.random_range(-1.0f64..1.0));
    let batch = Batch::fixed(images.view()).unwrap();
    let (from_f64, _) = encode_and_verify("f64", &codebook, &batch, &Normalization::default());
    // f64 is rounded to f32 on the host: the same as giving f32.
    let as_f32 = images.mapv(|x| x as f32);
    let batch32 = Batch::fixed(as_f32.view()).unwrap();
    let (from_f32, _) =
        encode_and_verify("f64 as f32", &codebook, &batch32, &Normalization::default());
    assert_eq!(from_f64, from_f32);
}

#[test]
fn given_labels_skip_assignment() {
    let _ctx = gpu_or_skip!();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (k, f) = (5, 6);
    let codebook = random_codebook(&mut rng, k, f);
    let rows = Array2::from_shape_fn((50, f), |_| rng.random_range(-1.0f32..1.0));
    let offsets = [0usize, 20, 20, 50];
    // Deliberately not the nearest centroids.
    let labels: Vec<u32> = (0..50).map(|i| ((i * 3) % k) as u32).collect();
    let batch = Batch::ragged(rows.view(), &offsets)
        .unwrap()
        .with_labels(&labels, k)
        .unwrap();
    for norm in ["none", "mass,ssr,l2"] {
        let norm: Normalization = norm.parse().unwrap();
        let (vlad, used) = encode_and_verify("given labels", &codebook, &batch, &norm);
        assert_eq!(used, labels);
        let out = gpu_encoder(&codebook, &norm)
            .encode_ragged_with_labels(rows.view(), &offsets, &labels)
            .unwrap();
        assert_eq!(out, vlad);
    }
}

#[test]
fn gpu_runs_are_bitwise_reproducible() {
    let _ctx = gpu_or_skip!();
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let codebook = random_codebook(&mut rng, 16, 24);
    let images = Array3::from_shape_fn((6, 120, 24), |_| rng.random_range(-1.0f32..1.0));
    let batch = Batch::fixed(images.view()).unwrap();
    let norm = Normalization::default();
    let encoder = gpu_encoder(&codebook, &norm);
    let a = encoder.encode_batch(&batch).unwrap();
    let b = encoder.encode_batch(&batch).unwrap();
    let c = gpu_encoder(&codebook, &norm).encode_batch(&batch).unwrap();
    assert_eq!(a.labels, b.labels);
    let bits = |x: &Array2<f32>| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.vlad), bits(&b.vlad), "same session");
    assert_eq!(bits(&a.vlad), bits(&c.vlad), "fresh session");
}

#[test]
fn assignment_matches_the_exact_argmin() {
    let _ctx = gpu_or_skip!();
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let codebook = random_codebook(&mut rng, 32, 20);
    let rows = Array2::from_shape_fn((777, 20), |_| rng.random_range(-1.0f32..1.0));
    let encoder = gpu_encoder(&codebook, &Normalization::default());
    let assigned = encoder
        .assign_batch(&Batch::single(rows.view()).unwrap())
        .unwrap();
    assert_eq!(assigned.report.backend, Backend::Gpu);
    let exact = reference::assign(&codebook, &Batch::single(rows.view()).unwrap());
    assert_eq!(assigned.labels.len(), 777);
    for (i, (&got, &want)) in assigned.labels.iter().zip(&exact).enumerate() {
        let row = rows.row(i);
        assert!(
            is_near_tie(&codebook, row.as_slice().unwrap(), got, want),
            "row {i}: {got} vs exact {want}"
        );
    }
}

#[test]
fn cluster_sums_are_plain_sums_per_label() {
    let _ctx = gpu_or_skip!();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let (k, f, n) = (6, 10, 500);
    let codebook = random_codebook(&mut rng, k, f);
    let rows: Vec<f32> = (0..n * f).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    // Whole, and split into pieces by a small cap (500 rows × 40 bytes).
    for cap in [None, Some(4096u64)] {
        let gpu = GpuBackend::new(&GpuOptions {
            max_binding_bytes: cap,
            ..Default::default()
        })
        .unwrap();
        let mut times = StageTimes::new();
        let (labels, sums, counts) = gpu.cluster_sums(&codebook, &rows, f, &mut times).unwrap();
        assert_eq!((labels.len(), sums.len(), counts.len()), (n, k * f, k));
        let mut want = vec![0f64; k * f];
        let mut want_counts = vec![0u32; k];
        let view = Array2::from_shape_vec((n, f), rows.clone()).unwrap();
        let exact = reference::assign(&codebook, &Batch::single(view.view()).unwrap());
        for i in 0..n {
            let row = &rows[i * f..(i + 1) * f];
            assert!(is_near_tie(&codebook, row, labels[i], exact[i]), "row {i}");
            let l = labels[i] as usize;
            want_counts[l] += 1;
            for j in 0..f {
                want[l * f + j] += row[j] as f64;
            }
        }
        assert_eq!(counts, want_counts, "cap {cap:?}");
        for (i, (&got, &w)) in sums.iter().zip(&want).enumerate() {
            let n_k = want_counts[i / f].max(1) as f64;
            assert!(
                (got as f64 - w).abs() <= 1e-5 * n_k,
                "cap {cap:?}: sum {i}: {got} vs {w}"
            );
        }
    }
}

#[test]
fn repeated_encodes_reuse_buffers_and_report_stages() {
    let _ctx = gpu_or_skip!();
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let codebook = random_codebook(&mut rng, 8, 16);
    let images = Array3::from_shape_fn((4, 50, 16), |_| rng.random_range(-1.0f32..1.0));
    let batch = Batch::fixed(images.view()).unwrap();
    let gpu = GpuBackend::new(&GpuOptions::default()).unwrap();
    let norm = Normalization::default();
    let mut times = StageTimes::new();
    encode(
        &gpu,
        &codebook,
        &Assignment::Hard,
        &batch,
        &norm,
        &mut times,
    )
    .unwrap();
    let after_first = gpu.pool_allocations().unwrap();
    assert!(after_first > 0);
    for _ in 0..3 {
        encode(
            &gpu,
            &codebook,
            &Assignment::Hard,
            &batch,
            &norm,
            &mut StageTimes::new(),
        )
        .unwrap();
    }
    assert_eq!(
        gpu.pool_allocations().unwrap(),
        after_first,
        "encodes reallocated"
    );
    // A smaller batch fits the same buffers too.
    let small = Batch::fixed(images.slice(ndarray::s![..2, ..10, ..])).unwrap();
    encode(
        &gpu,
        &codebook,
        &Assignment::Hard,
        &small,
        &norm,
        &mut StageTimes::new(),
    )
    .unwrap();
    assert_eq!(gpu.pool_allocations().unwrap(), after_first);

    let names: Vec<&str> = times.iter().map(|(n, _)| n).collect();
    let expected: &[&str] = if gpu.has_stage_timestamps() {
        &[
            "upload",
            "assign",
            "sort",
            "scan",
            "residual",
            "normalize",
            "readback",
        ]
    } else {
        &["upload", "compute", "readback"]
    };
    for name in expected {
        assert!(names.contains(name), "stage {name} missing from {names:?}");
    }
    for (name, s) in times.iter() {
        assert!(s.is_finite() && s >= 0.0, "{name}: {s}");
    }
}
