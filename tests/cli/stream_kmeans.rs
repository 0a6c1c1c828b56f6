//! `vlad kmeans --max-points-per-centroid 0` (every point) on inputs larger
//! than `--memory-limit` (SPEC §11): k-means++, every Lloyd iteration and
//! the final inertia stream over windows of the memory-mapped input, and
//! give the codebook, inertia and iterations of the library's in-memory
//! k-means bit for bit, whatever the window size.

use ndarray::{Array2, Array3, ShapeBuilder};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use vlad::Backend;
use vlad::kmeans::{Init, KMeans};

use crate::util::{Cmd, Folder, raw_field, read, stderr, stdout};

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&stdout(out)).unwrap()
}

/// Limits that cut 30 000 rows of F = 8 into windows of 4096 rows (the
/// smallest), 8192 rows, and one window.
const LIMITS: [&str; 3] = ["64KiB", "2MiB", "64GiB"];

#[test]
fn all_points_kmeans_is_the_in_memory_result_for_every_window_size() {
    let (n, f, k, iters) = (30_000usize, 8usize, 7usize, 6usize);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let d = Normal::new(0.0f32, 1.0).unwrap();
    // Clusters of different spread, so the iterations move.
    let rows = Array2::from_shape_fn((n, f), |(i, _)| {
        d.sample(&mut rng) * (1 + i % 3) as f32 + (i % 5) as f32 * 3.0
    });
    let folder = Folder::new();
    let mut fortran = Array2::<f32>::zeros((n, f).f());
    fortran.assign(&rows);
    let wide = rows.mapv(f64::from);
    let inputs = [
        ("c.npy", folder.write("c.npy", &rows)),
        ("fortran.npy", folder.write("fortran.npy", &fortran)),
        ("f64.npy", folder.write("f64.npy", &wide)),
    ];
    for init in [Init::KMeansPlusPlus, Init::Random] {
        let in_memory = KMeans::new(k)
            .iterations(iters)
            .init(init)
            .tolerance(0.0)
            .max_points_per_centroid(None)
            .backend(Backend::Cpu)
            .fit(rows.view())
            .unwrap();
        let want = in_memory.codebook.centroids();
        for (name, input) in &inputs {
            // f64 input converts to the same f32 values: the same codebook.
            for limit in LIMITS {
                let out = folder.path("centroids.npy");
                let run = Cmd::kmeans()
                    .descriptors(input)
                    .k(k)
                    .out(&out)
                    .backend("cpu")
                    .flag("--init", init.name())
                    .flag("--max-points-per-centroid", 0)
                    .flag("--iters", iters)
                    .flag("--tolerance", 0)
                    .memory_limit(limit)
                    .json()
                    .run();
                let what = format!("{init} {name} {limit}");
                assert!(run.status.success(), "{what}: {}", stderr(&run));
                let report = json(&run);
                let streamed: Array2<f32> = read(&out);
                assert_eq!(streamed.dim(), want.dim(), "{what}");
                for (a, b) in streamed.iter().zip(want.iter()) {
                    assert_eq!(a.to_bits(), b.to_bits(), "{what}: centroids");
                }
                assert_eq!(report["training_points"], n, "{what}");
                assert_eq!(report["iterations"], in_memory.iterations, "{what}");
                // Compared as printed (shortest round-trip digits): serde_json
                // parses floats to within an ulp only.
                let text = stdout(&run);
                assert_eq!(
                    raw_field(&text, "inertia"),
                    serde_json::to_string(&in_memory.inertia).unwrap(),
                    "{what}: inertia"
                );
                assert_eq!(
                    raw_field(&text, "inertia_history"),
                    serde_json::to_string(&in_memory.inertia_history).unwrap(),
                    "{what}: history"
                );
            }
        }
    }
}

/// What the run may use beyond `--memory-limit`, as for the streamed
/// encode (tests/cli/stream.rs): the process's baseline.
const ALLOWANCE: u64 = 32 << 20;

/// k-means on every point of an input 12× the limit stays under the limit
/// plus the allowance: the child's `VmHWM`, polled while it runs and
/// reported in its `--json`.
#[test]
fn all_points_kmeans_peak_memory_is_bounded_by_the_limit() {
    let folder = Folder::new();
    let (t, l, f) = (400usize, 1000usize, 128usize);
    let data: Vec<f32> = (0..t * l * f)
        .map(|i| ((i as u64 * 2_654_435_761) % 1000) as f32 / 1000.0 + (i / (f * 37) % 9) as f32)
        .collect();
    let descriptors = Array3::from_shape_vec((t, l, f), data).unwrap();
    let d = folder.write("big.npy", &descriptors);
    drop(descriptors);
    let input_bytes = std::fs::metadata(&d).unwrap().len();
    let limit: u64 = 16 << 20;
    assert!(input_bytes >= 8 * limit);
    let out = folder.path("centroids.npy");
    let (run, polled) = Cmd::kmeans()
        .descriptors(&d)
        .k(16)
        .out(&out)
        .backend("cpu")
        .flag("--max-points-per-centroid", 0)
        .flag("--iters", 2)
        .memory_limit("16MiB")
        .json()
        .run_with_peak_rss();
    assert!(run.status.success(), "{}", stderr(&run));
    let report = json(&run);
    assert_eq!(report["training_points"], t * l);
    let reported = report["peak_rss_bytes"].as_u64().unwrap();
    assert!(polled > 0, "the child's status was read while it ran");
    assert!(
        reported <= limit + ALLOWANCE && polled <= limit + ALLOWANCE,
        "peak {reported} bytes (polled {polled}) over {limit} + {ALLOWANCE}"
    );
}
