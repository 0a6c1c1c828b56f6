//! The overlapped chunk pipeline (upload of chunk i+1 and read-back of
//! chunk i−1 while chunk i computes, two staging slots) gives the same bits
//! as chunks run one after the other, for every input type, given labels,
//! assignment and k-means sums, with many chunks (a small binding cap) and
//! with split images. Software adapters run sequentially by default, so
//! this forces each mode.

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vlad::backend::gpu::{GpuBackend, GpuOptions};
use vlad::backend::{Assign, Compute};
use vlad::{Assignment, Batch, Codebook, Normalization, StageTimes};

use crate::util::encode;

fn backend(cap: Option<u64>, overlap: bool) -> GpuBackend {
    let gpu = GpuBackend::new(&GpuOptions {
        max_binding_bytes: cap,
        ..Default::default()
    })
    .unwrap();
    gpu.set_overlap(Some(overlap));
    gpu
}

#[test]
fn overlapped_chunks_give_the_sequential_bits() {
    crate::common::gpu_or_skip!();
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let (k, f) = (7, 12);
    let c = Array2::from_shape_fn((k, f), |_| rng.random_range(-1.0f32..1.0));
    let codebook = Codebook::new(c.view()).unwrap();
    // Ragged, with empty images and one image too large for a chunk.
    let sizes = [30usize, 0, 45, 400, 12, 0, 90, 3];
    let mut offsets = vec![0usize];
    for s in sizes {
        offsets.push(offsets.last().unwrap() + s);
    }
    let n = *offsets.last().unwrap();
    let rows32 = Array2::from_shape_fn((n, f), |_| rng.random_range(-2.0f32..2.0));
    let rows64 = rows32.mapv(|x| x as f64 * 1.000_000_1);
    let rows8 = Array2::from_shape_fn((n, f), |_| rng.random_range(0u8..=255));
    let labels: Vec<u32> = (0..n).map(|i| (i * 5 % k) as u32).collect();
    let norm: Normalization = "ssr,l2".parse().unwrap();
    let hard = Assignment::Hard;

    for cap in [Some(4096u64), Some(16384), None] {
        let seq = backend(cap, false);
        let ovl = backend(cap, true);
        let run = |gpu: &GpuBackend| {
            let mut t = StageTimes::new();
            let b32 = Batch::ragged(rows32.view(), &offsets).unwrap();
            let b64 = Batch::ragged(rows64.view(), &offsets).unwrap();
            let b8 = Batch::ragged(rows8.view(), &offsets).unwrap();
            let given = Batch::ragged(rows32.view(), &offsets)
                .unwrap()
                .with_labels(&labels, k)
                .unwrap();
            let flat: Vec<f32> = rows32.iter().copied().collect();
            (
                encode(gpu, &codebook, &hard, &b32, &norm, &mut t).unwrap(),
                encode(gpu, &codebook, &hard, &b64, &norm, &mut t).unwrap(),
                encode(gpu, &codebook, &hard, &b8, &norm, &mut t).unwrap(),
                encode(gpu, &codebook, &hard, &given, &norm, &mut t).unwrap(),
                gpu.assign(Assign {
                    codebook: &codebook,
                    batch: &b32,
                    stages: &mut t,
                })
                .unwrap(),
                gpu.cluster_sums(&codebook, &flat, f, &mut t).unwrap(),
            )
        };
        let (a, b) = (run(&seq), run(&ovl));
        let bits = |x: &Array2<f32>| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a.0.0), bits(&b.0.0), "f32, cap {cap:?}");
        assert_eq!(a.0.1, b.0.1, "f32 labels, cap {cap:?}");
        assert_eq!(bits(&a.1.0), bits(&b.1.0), "f64, cap {cap:?}");
        assert_eq!(bits(&a.2.0), bits(&b.2.0), "u8, cap {cap:?}");
        assert_eq!(bits(&a.3.0), bits(&b.3.0), "given labels, cap {cap:?}");
        assert_eq!(a.3.1, labels);
        assert_eq!(a.4, b.4, "assign, cap {cap:?}");
        assert_eq!(a.5.0, b.5.0, "k-means labels, cap {cap:?}");
        let sum_bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            sum_bits(&a.5.1),
            sum_bits(&b.5.1),
            "k-means sums, cap {cap:?}"
        );
        assert_eq!(a.5.2, b.5.2, "k-means counts, cap {cap:?}");
        // Repeated calls reuse every buffer.
        let before = ovl.pool_allocations().unwrap();
        let _ = run(&ovl);
        assert_eq!(ovl.pool_allocations().unwrap(), before, "cap {cap:?}");
    }
}
