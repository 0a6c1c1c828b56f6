//! NetVLAD pooling (SPEC §10) at a place-recognition shape, against its
//! floor. Run: `cargo bench --bench netvlad` (env `NETVLAD_IMAGES`,
//! default 1000, and `NETVLAD_REPEATS`, default 3).
//!
//! * `logits GEMM alone`: `X·Wᵀ + b` over every row, in the same row blocks
//!   and threads as the pooling — the floor the issue names;
//! * `both GEMMs alone`: the logits GEMM plus the per-image `Aᵀ·X` (same
//!   FLOPs again), with no softmax or normalization — the real floor of the
//!   GEMM form;
//! * `both GEMMs + softmax`: the same with the stable softmax between them
//!   (the weights, not raw logits, go into `Aᵀ·X`);
//! * `cpu pooling`: `Encoder::encode` with soft `W`/`b` and `intra,l2`,
//!   end to end (validation, logits, softmax, aggregation, normalization).
//!
//! Prints the median of the repeats, seconds and GFLOP/s (2·N·K·F per GEMM).
//! Data are seeded so every run measures the same input. Plain timing, not
//! criterion: one repeat at the full shape already takes seconds.

use std::time::Instant;

use ndarray::{Array1, Array2, Array3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use vlad::cpu::{soft_aggregate, soft_assign};
use vlad::{Assignment, Backend, Batch, Codebook, Encoder};

const L: usize = 1200;
const F: usize = 512;
const K: usize = 64;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn time(repeats: usize, mut job: impl FnMut()) -> f64 {
    job(); // warm-up (page faults, thread pool, scratch buffers)
    median(
        (0..repeats)
            .map(|_| {
                let start = Instant::now();
                job();
                start.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() {
    let images = env("NETVLAD_IMAGES", 1000);
    let repeats = env("NETVLAD_REPEATS", 3).max(1);
    let n = images * L;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // L2-normalized local features, as NetVLAD's input usually is.
    let mut x = Array3::<f32>::from_shape_fn((images, L, F), |_| rng.random::<f32>() - 0.5);
    for mut row in x.rows_mut() {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        row.mapv_inplace(|v| v / norm);
    }
    let centroids = Array2::from_shape_fn((K, F), |_| rng.random::<f32>() - 0.5);
    let weights = centroids.mapv(|c| 2.0 * 30.0 * c + 0.1 * (rng.random::<f32>() - 0.5));
    let bias = Array1::from_shape_fn(K, |_| rng.random::<f32>() - 0.5);
    let codebook = Codebook::from_owned(centroids).expect("finite centroids");
    let assignment = Assignment::soft(weights.view(), bias.view()).expect("finite parameters");
    let params = assignment
        .soft_params(&codebook)
        .expect("shapes fit")
        .expect("soft");
    let rows = x.as_slice().expect("standard layout");
    let gflop = 2.0 * (n * K * F) as f64 / 1e9;
    let block = soft_aggregate::BLOCK_ROWS;

    println!(
        "NetVLAD pooling, {images} images x {L} features, F = {F}, K = {K}, f32, {} threads, median of {repeats}",
        rayon::current_num_threads()
    );
    let mut logits = vec![0f32; n * K];
    let floor = time(repeats, || {
        logits
            .par_chunks_mut(block * K)
            .zip(rows.par_chunks(block * F))
            .for_each(|(out, rows)| soft_assign::logits(&params, rows, rows.len() / F, out));
    });
    println!(
        "{:<24} {:>8.3} s {:>8.1} GFLOP/s",
        "logits GEMM alone",
        floor,
        gflop / floor
    );
    let both_gemms = |softmax: bool| {
        time(repeats, || {
            rows.par_chunks(L * F).for_each(|image| {
                let mut product = vec![0f32; K * F];
                let mut a = vec![0f32; block * K];
                for rows in image.chunks(block * F) {
                    let m = rows.len() / F;
                    if softmax {
                        soft_assign::soft_weights(&params, rows, &mut a[..m * K]);
                    } else {
                        soft_assign::logits(&params, rows, m, &mut a[..m * K]);
                    }
                    soft_aggregate::weighted_rows(&a[..m * K], rows, m, K, F, &mut product);
                }
                std::hint::black_box(&product);
            });
        })
    };
    let both = both_gemms(false);
    println!(
        "{:<24} {:>8.3} s {:>8.1} GFLOP/s  ({:.2}x the logits GEMM)",
        "both GEMMs alone",
        both,
        2.0 * gflop / both,
        both / floor
    );
    let with_softmax = both_gemms(true);
    println!(
        "{:<24} {:>8.3} s {:>8.1} GFLOP/s  ({:.2}x the logits GEMM)",
        "both GEMMs + softmax",
        with_softmax,
        2.0 * gflop / with_softmax,
        with_softmax / floor
    );
    let encoder = Encoder::builder(codebook)
        .assignment(assignment)
        .normalization("intra,l2".parse().expect("valid normalization"))
        .backend(Backend::Cpu)
        .build();
    let mut stages = String::new();
    let pooling = time(repeats, || {
        let batch = Batch::fixed(x.view()).expect("valid input");
        let encoded = encoder.encode_batch(&batch).expect("encodes");
        stages = encoded
            .report
            .stages
            .iter()
            .map(|(name, s)| format!("{name} {s:.3} s"))
            .collect::<Vec<_>>()
            .join(", ");
        std::hint::black_box(encoded);
    });
    println!(
        "{:<24} {:>8.3} s {:>8.1} GFLOP/s  ({:.2}x the logits GEMM, {:.2}x both GEMMs, {:.0} images/s)",
        "cpu pooling (intra,l2)",
        pooling,
        2.0 * gflop / pooling,
        pooling / floor,
        pooling / both,
        images as f64 / pooling
    );
    println!("{:<24} last run's stages: {stages}", "");
}
