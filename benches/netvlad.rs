//! NetVLAD pooling (SPEC §10) at a place-recognition shape, against its
//! floor. Run: `cargo bench --bench netvlad` (env `NETVLAD_IMAGES`,
//! default 1000, and `NETVLAD_REPEATS`, default 3).
//!
//! * `logits GEMM alone`: `X·Wᵀ + b` over every row, in the same row blocks
//!   and threads as the pooling, with the `gemm` crate and with the AVX-512
//!   register kernel ([`soft_kernel`]) where the CPU has it — the floor the
//!   issue names is the faster of the two;
//! * `both GEMMs alone`: the logits plus the per-image `Aᵀ·X` (same FLOPs
//!   again), with no softmax or normalization — the real floor of the GEMM
//!   form;
//! * `both GEMMs + softmax`: the same with the stable softmax between them
//!   (the weights, not raw logits, go into `Aᵀ·X`);
//! * `cpu pooling`: `Encoder::encode` with soft `W`/`b` and `intra,l2`,
//!   end to end (logits, softmax, aggregation, normalization, and the
//!   finiteness check, fused into the pooling); and the same from a batch
//!   checked when built (`Batch::fixed` + `encode_batch`, one more pass over
//!   the input).
//!
//! Prints the median of the repeats: wall seconds and, on Linux, the CPU
//! seconds of all the process's threads (from `/proc/self/task/*/schedstat`),
//! which a shared machine's other load disturbs far less than wall time;
//! GFLOP/s per wall second (2·N·K·F per GEMM); ratios on both. Data are
//! seeded so every run measures the same input. Plain timing, not
//! criterion: one repeat at the full shape already takes seconds.

use std::time::Instant;

use ndarray::{Array1, Array2, Array3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use vlad::backend::cpu::{soft_aggregate, soft_assign, soft_kernel};
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

/// CPU seconds used so far by every thread of this process (Linux), or
/// `None` where `/proc` does not say.
fn cpu_seconds() -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e9)
}

/// Median wall and CPU seconds of `repeats` runs after a warm-up.
#[derive(Clone, Copy)]
struct Timing {
    wall: f64,
    cpu: Option<f64>,
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn time(repeats: usize, mut job: impl FnMut()) -> Timing {
    job(); // warm-up (page faults, thread pool, scratch buffers)
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..repeats {
        let (start, cpu_start) = (Instant::now(), cpu_seconds());
        job();
        wall.push(start.elapsed().as_secs_f64());
        if let (Some(a), Some(b)) = (cpu_start, cpu_seconds()) {
            cpu.push(b - a);
        }
    }
    Timing {
        wall: median(wall),
        cpu: (cpu.len() == repeats).then(|| median(cpu)),
    }
}

/// One result line: wall and CPU seconds, GFLOP/s (per wall second) and
/// the ratios to `floor` (wall, CPU).
fn report(name: &str, t: Timing, gflop: f64, floor: Option<Timing>, extra: &str) {
    let cpu = t.cpu.map_or("-".to_string(), |c| format!("{c:.3}"));
    let mut line = format!(
        "{name:<34} {:>7.3} s wall {:>7} s cpu {:>7.1} GFLOP/s",
        t.wall,
        cpu,
        gflop / t.wall
    );
    if let Some(floor) = floor {
        line += &format!("  {:.2}x wall", t.wall / floor.wall);
        if let (Some(c), Some(f)) = (t.cpu, floor.cpu) {
            line += &format!(", {:.2}x cpu", c / f);
        }
    }
    println!("{line}{extra}");
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
    let kernel = soft_kernel::SoftKernel::new(
        weights.as_slice().expect("standard"),
        bias.as_slice().expect("standard"),
        F,
    );
    let mut logits = vec![0f32; n * K];
    let gemm_floor = time(repeats, || {
        logits
            .par_chunks_mut(block * K)
            .zip(rows.par_chunks(block * F))
            .for_each(|(out, rows)| soft_assign::logits(&params, rows, rows.len() / F, out));
    });
    report(
        "logits GEMM alone (gemm crate)",
        gemm_floor,
        gflop,
        None,
        "",
    );
    let mut floor = gemm_floor;
    if let Some(kernel) = &kernel {
        let t = time(repeats, || {
            logits
                .par_chunks_mut(block * K)
                .zip(rows.par_chunks(block * F))
                .for_each(|(out, rows)| kernel.logits(rows, out));
        });
        report(
            "logits GEMM alone (AVX-512 kernel)",
            t,
            gflop,
            Some(gemm_floor),
            " of the gemm crate's",
        );
        if t.cpu.unwrap_or(t.wall) < floor.cpu.unwrap_or(floor.wall) {
            floor = t;
        }
    }
    println!("{:<34} ratios below are to the faster of the two", "");
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
    report(
        "both GEMMs alone (gemm crate)",
        both_gemms(false),
        2.0 * gflop,
        Some(floor),
        "",
    );
    report(
        "both GEMMs + softmax (gemm crate)",
        both_gemms(true),
        2.0 * gflop,
        Some(floor),
        "",
    );
    if let Some(kernel) = &kernel {
        let chunk = soft_aggregate::CHUNK_ROWS;
        let kernels = |softmax: bool| {
            time(repeats, || {
                rows.par_chunks(L * F).for_each(|image| {
                    let mut product = vec![0f32; K * F];
                    let mut a = vec![0f32; chunk * K];
                    for rows in image.chunks(chunk * F) {
                        let a = &mut a[..rows.len() / F * K];
                        kernel.logits(rows, a);
                        if softmax {
                            soft_assign::softmax_rows(a, K);
                        }
                        kernel.accumulate(a, rows, &mut product);
                    }
                    std::hint::black_box(&product);
                });
            })
        };
        report(
            "both GEMMs alone (kernel)",
            kernels(false),
            2.0 * gflop,
            Some(floor),
            "",
        );
        report(
            "both GEMMs + softmax (kernel)",
            kernels(true),
            2.0 * gflop,
            Some(floor),
            "",
        );
    }
    let encoder = Encoder::builder(codebook)
        .assignment(assignment)
        .normalization("intra,l2".parse().expect("valid normalization"))
        .backend(Backend::Cpu)
        .build();
    let mut stages = String::new();
    let pooling = time(repeats, || {
        std::hint::black_box(encoder.encode(x.view()).expect("encodes"));
    });
    report(
        "cpu pooling, Encoder::encode",
        pooling,
        2.0 * gflop,
        Some(floor),
        &format!(", {:.0} images/s", images as f64 / pooling.wall),
    );
    let checked = time(repeats, || {
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
    report(
        "  from Batch::fixed (checked)",
        checked,
        2.0 * gflop,
        Some(floor),
        "",
    );
    println!("{:<34} last run's stages: {stages}", "");
}
