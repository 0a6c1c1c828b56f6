//! Criterion benchmarks of the cpu backend, in process.
//!
//! * `encode/*`: `Encoder::encode` end to end (input validation, assign,
//!   aggregate, normalize with the default `ssr,l2`) on f32 input, at the
//!   seed shape and a SIFT-like shape;
//! * `stages/*`: each stage of the SIFT-like shape alone, to see where the
//!   end-to-end time goes;
//! * `assign/*`: nearest-centroid assignment alone on a large input; its
//!   throughput is in FLOP (2·N·K·F), so criterion's "elem/s" reads as FLOP/s.
//!
//! Data are seeded (rand_chacha) so every run measures the same input.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{Array2, Array3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vlad::backend::cpu::{aggregate, assign, normalize};
use vlad::{Backend, Batch, Codebook, Encoder, Normalization};

/// `n` descriptors of width `f`, uniform in `[0, 1)`, and a codebook of `k`
/// centroids drawn from them (as k-means would leave them: spread over the
/// data, so labels are spread too).
fn data(n: usize, f: usize, k: usize, seed: u64) -> (Vec<f32>, Codebook) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let rows: Vec<f32> = (0..n * f).map(|_| rng.random::<f32>()).collect();
    let mut centroids = Array2::<f32>::zeros((k, f));
    for mut c in centroids.outer_iter_mut() {
        let i = rng.random_range(0..n);
        c.iter_mut()
            .zip(&rows[i * f..(i + 1) * f])
            .for_each(|(c, &v)| *c = v + 0.01 * (rng.random::<f32>() - 0.5));
    }
    let codebook = Codebook::from_owned(centroids).expect("finite, non-empty centroids");
    (rows, codebook)
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    group.measurement_time(Duration::from_secs(5));
    for (t, l, f, k) in [(256, 128, 64, 16), (200, 500, 128, 64)] {
        let (rows, codebook) = data(t * l, f, k, 7);
        let images = Array3::from_shape_vec((t, l, f), rows).expect("t·l·f values");
        let encoder = Encoder::builder(codebook).backend(Backend::Cpu).build();
        group.throughput(Throughput::Elements((t * l) as u64));
        group.bench_function(
            BenchmarkId::from_parameter(format!("T{t}xL{l}xF{f}xK{k}")),
            |b| {
                b.iter(|| {
                    encoder
                        .encode(black_box(images.view()))
                        .expect("valid input")
                })
            },
        );
    }
    group.finish();
}

fn stages(c: &mut Criterion) {
    let (t, l, f, k) = (200, 500, 128, 64);
    let (rows, codebook) = data(t * l, f, k, 7);
    let images = Array3::from_shape_vec((t, l, f), rows).expect("t·l·f values");
    let batch = Batch::fixed(images.view()).expect("valid input");
    let labels = assign::assign_rows(&codebook, batch.rows(), f);
    let (raw, mass) = aggregate::aggregate(&codebook, &batch, &labels);
    let norm = Normalization::default();

    let mut group = c.benchmark_group("stages/T200xL500xF128xK64");
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("validate", |b| {
        b.iter(|| Batch::fixed(black_box(images.view())).expect("valid input"))
    });
    group.bench_function("assign", |b| {
        b.iter(|| assign::assign_rows(&codebook, black_box(batch.rows()), f))
    });
    group.bench_function("aggregate", |b| {
        b.iter(|| aggregate::aggregate(&codebook, black_box(&batch), &labels))
    });
    group.bench_function("normalize", |b| {
        b.iter_batched_ref(
            || raw.clone(),
            |vlad| normalize::normalize_rows(vlad, &mass, k, f, &norm),
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn assign_large(c: &mut Criterion) {
    let (n, f, k) = (1_000_000, 128, 256);
    let (rows, codebook) = data(n, f, k, 11);
    let mut group = c.benchmark_group("assign");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements((2 * n * k * f) as u64));
    group.bench_function(
        BenchmarkId::from_parameter(format!("N{n}xF{f}xK{k}")),
        |b| b.iter(|| assign::assign_rows(&codebook, black_box(&rows), f)),
    );
    group.finish();
}

criterion_group!(benches, encode, stages, assign_large);
criterion_main!(benches);
