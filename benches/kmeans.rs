//! k-means training speed, median of a few repeats (the shapes are too slow
//! for criterion's minimum of 10 samples).
//!
//!     cargo bench --bench kmeans                  # small and large shapes
//!     cargo bench --bench kmeans -- small         # only shapes whose name matches
//!     VLAD_BENCH_REPEATS=5 cargo bench --bench kmeans
//!     VLAD_BENCH_ITERS=5 VLAD_BENCH_VERBOSE=1 cargo bench --bench kmeans -- large
//!
//! Per shape it times, on the cpu backend with no subsampling:
//! * `assign` — `iterations(0)` with random init: one nearest-centroid pass
//!   over all points plus the exact inertia sum, i.e. ≈ one assignment;
//! * `lloyd25/random` and `lloyd25/kmeans++` — 25 iterations (tolerance 0),
//!   the ratio `lloyd25 / (25 × assign)` (target ≤ 1.3; greedy k-means++
//!   seeding adds about `2 + ln K` distance passes over the data), and the
//!   time per iteration beyond the `assign` run.
//!
//! Second mode, used by `benches/kmeans_vs_sklearn.py`:
//!
//!     cargo bench --bench kmeans -- --npy X.npy --k 64 --iters 25 --seeds 0,1,2
//!
//! fits an `(N, F)` f32 `.npy` with k-means++ and no subsampling, once per
//! seed, and prints one JSON object per line.

use std::time::Instant;

use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};
use vlad::Backend;
use vlad::kmeans::{Init, KMeans};

struct Shape {
    name: &'static str,
    points: usize,
    dim: usize,
    clusters: usize,
}

const SHAPES: [Shape; 2] = [
    Shape {
        name: "small",
        points: 100_000,
        dim: 128,
        clusters: 64,
    },
    Shape {
        name: "large",
        points: 1_000_000,
        dim: 128,
        clusters: 256,
    },
];

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if let Some(i) = args.iter().position(|a| a == "--npy") {
        fit_npy(&args, i);
        return;
    }
    let repeats: usize = std::env::var("VLAD_BENCH_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let iterations: usize = std::env::var("VLAD_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    let verbose = std::env::var_os("VLAD_BENCH_VERBOSE").is_some();
    let threads = rayon::current_num_threads();
    for shape in SHAPES
        .iter()
        .filter(|s| args.is_empty() || args.iter().any(|a| s.name.contains(a.as_str())))
    {
        let data = mixture(shape, 2024);
        println!(
            "{}: N={} F={} K={} f32, cpu, {threads} threads, median of {repeats}",
            shape.name, shape.points, shape.dim, shape.clusters
        );
        let run = |init: Init, iterations: usize| {
            let mut kmeans = KMeans::new(shape.clusters)
                .init(init)
                .iterations(iterations)
                .tolerance(0.0)
                .max_points_per_centroid(None)
                .backend(Backend::Cpu);
            if verbose {
                kmeans = kmeans.on_progress(|event| eprintln!("kmeans: {event:?}"));
            }
            kmeans.fit(data.view()).expect("bench data is valid")
        };
        // Cheap next to the 25-iteration runs: always at least 3 repeats.
        let assign = median(repeats.max(3), || run(Init::Random, 0).seconds);
        println!("  assign           {assign:9.3} s");
        for init in [Init::Random, Init::KMeansPlusPlus] {
            let mut ran = 0;
            let t = median(repeats, || {
                let r = run(init, iterations);
                ran = r.iterations;
                r.seconds
            });
            // Both runs share the checks and the final assignment, so the
            // difference is the iterations (and the init for k-means++).
            println!(
                "  lloyd{iterations}/{:<8} {t:9.3} s  ({ran} iterations, {:.2} × {iterations} assign; \
                 {:.3} s per iteration beyond the assign run)",
                init.name(),
                t / (iterations as f64 * assign),
                (t - assign) / ran.max(1) as f64
            );
        }
    }
}

fn median(repeats: usize, mut f: impl FnMut() -> f64) -> f64 {
    let mut times: Vec<f64> = (0..repeats.max(1)).map(|_| f()).collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// A Gaussian mixture with twice as many components as clusters, so Lloyd
/// iterations keep moving centroids.
fn mixture(shape: &Shape, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let components = 2 * shape.clusters;
    let spread = Uniform::new(-1.5f32, 1.5).expect("valid range");
    let centres: Vec<f32> = (0..components * shape.dim)
        .map(|_| spread.sample(&mut rng))
        .collect();
    let noise = Normal::new(0.0f32, 1.0).expect("valid std");
    let pick = Uniform::new(0, components).expect("valid range");
    let mut data = Array2::zeros((shape.points, shape.dim));
    for mut row in data.rows_mut() {
        let c = pick.sample(&mut rng);
        for (x, m) in row
            .iter_mut()
            .zip(&centres[c * shape.dim..(c + 1) * shape.dim])
        {
            *x = m + noise.sample(&mut rng);
        }
    }
    data
}

fn fit_npy(args: &[String], at: usize) {
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let path = args.get(at + 1).expect("--npy needs a path");
    let k: usize = value("--k")
        .and_then(|v| v.parse().ok())
        .expect("--k K is required");
    let iterations: usize = value("--iters").and_then(|v| v.parse().ok()).unwrap_or(25);
    let seeds: Vec<u64> = value("--seeds")
        .unwrap_or_else(|| "1234".to_string())
        .split(',')
        .map(|s| s.trim().parse().expect("seeds are integers"))
        .collect();
    let data: Array2<f32> = ndarray_npy::read_npy(path).expect("an (N, F) f32 .npy");
    for seed in seeds {
        let start = Instant::now();
        let result = KMeans::new(k)
            .seed(seed)
            .init(Init::KMeansPlusPlus)
            .iterations(iterations)
            .tolerance(0.0)
            .max_points_per_centroid(None)
            .backend(Backend::Cpu)
            .fit(data.view())
            .expect("valid input");
        println!(
            "{{\"seed\": {seed}, \"inertia\": {}, \"iterations\": {}, \"seconds\": {:.3}}}",
            result.inertia,
            result.iterations,
            start.elapsed().as_secs_f64()
        );
    }
}
