//! `vlad kmeans` run as a user runs it: the built binary on `.npy` files in
//! a temporary folder (SPEC §6 and §8).

use std::path::Path;
use std::process::Output;

use ndarray::{Array2, Array3, ArrayView1, ShapeBuilder};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

use crate::util::{Cmd, Folder as Scratch, p, read, stderr, vlad};

fn read_f32(path: &Path) -> Array2<f32> {
    read(path)
}

/// `vlad kmeans --descriptors d --out out -k k` plus `extra`; asserts exit 0.
fn kmeans_ok(d: &Path, out: &Path, k: usize, extra: &[&str]) -> Output {
    let cmd = Cmd::kmeans().descriptors(d).out(out).k(k).args(extra);
    let run = cmd.run();
    assert_eq!(run.status.code(), Some(0), "{cmd:?}: {}", stderr(&run));
    run
}

fn json_of(run: &Output) -> serde_json::Value {
    let text = String::from_utf8(run.stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "stdout is one JSON object: {text}");
    serde_json::from_str(&text).unwrap()
}

/// `centres.len()` groups of `per_centre` points, `noise` around each centre.
fn blobs(centres: &Array2<f32>, per_centre: usize, noise: f32, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, noise).unwrap();
    let (k, f) = centres.dim();
    Array2::from_shape_fn((k * per_centre, f), |(i, j)| {
        centres[[i % k, j]] + normal.sample(&mut rng)
    })
}

/// Centres far apart: a spread of 10 per coordinate.
fn far_centres(k: usize, f: usize, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let uniform = Uniform::new(-10.0f32, 10.0).unwrap();
    Array2::from_shape_simple_fn((k, f), || uniform.sample(&mut rng))
}

fn distance(a: ArrayView1<f32>, b: ArrayView1<f32>) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

/// Every true centre has a trained centroid within `within`, and the
/// matching is one-to-one.
fn assert_recovers(trained: &Array2<f32>, truth: &Array2<f32>, within: f32) {
    assert_eq!(trained.dim(), truth.dim());
    let mut used = vec![false; trained.nrows()];
    for (c, centre) in truth.outer_iter().enumerate() {
        let (best, d) = trained
            .outer_iter()
            .enumerate()
            .map(|(i, row)| (i, distance(row, centre)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        assert!(d < within, "centre {c} is {d} from the nearest centroid");
        assert!(!used[best], "centroid {best} matches two centres");
        used[best] = true;
    }
}

/// `Σ_x min_k ‖x − c_k‖²` in f64.
fn inertia(points: &Array2<f32>, centroids: &Array2<f32>) -> f64 {
    points
        .outer_iter()
        .map(|x| {
            centroids
                .outer_iter()
                .map(|c| {
                    x.iter()
                        .zip(c)
                        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                        .sum::<f64>()
                })
                .fold(f64::INFINITY, f64::min)
        })
        .sum()
}

// ---------------------------------------------------------------- good runs

#[test]
fn writes_k_by_f_f32_and_reports_json() {
    let scratch = Scratch::new();
    let truth = far_centres(5, 6, 1);
    let points = blobs(&truth, 40, 0.5, 2);
    let d = scratch.write("d.npy", &points);
    let out = scratch.path("c.npy");
    let run = kmeans_ok(
        &d,
        &out,
        5,
        &[
            "--json",
            "--backend",
            "cpu",
            "--max-points-per-centroid",
            "0",
        ],
    );
    let centroids = read_f32(&out);
    assert_eq!(centroids.dim(), (5, 6));

    let json = json_of(&run);
    assert_eq!(json["backend"], "cpu");
    assert!(json["adapter"].is_null());
    assert_eq!(json["clusters"], 5);
    assert_eq!(json["dim"], 6);
    assert_eq!(json["points"], 200);
    assert_eq!(json["training_points"], 200);
    assert_eq!(json["init"], "kmeans++");
    let iterations = json["iterations"].as_u64().unwrap();
    assert!((1..=25).contains(&iterations), "{json}");
    assert!(json["seconds"].as_f64().unwrap() >= 0.0);
    let history: Vec<f64> = json["inertia_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(history.len() as u64, iterations);
    assert!(history.windows(2).all(|w| w[1] <= w[0]), "{history:?}");
    // The reported inertia is that of the written centroids on every point.
    let reported = json["inertia"].as_f64().unwrap();
    let recomputed = inertia(&points, &centroids);
    assert!(
        (reported - recomputed).abs() <= 1e-6 * recomputed,
        "reported {reported}, recomputed {recomputed}"
    );

    // Progress goes to stderr as plain lines (stderr is not a terminal here).
    let err = stderr(&run);
    assert!(err.contains("iteration 1/25: inertia"), "{err}");
    assert!(err.contains(p(&out)), "{err}");
}

#[test]
fn well_separated_clusters_are_recovered() {
    let scratch = Scratch::new();
    let truth = far_centres(6, 8, 3);
    let points = blobs(&truth, 60, 0.2, 4);
    let d = scratch.write("d.npy", &points);
    for init in ["kmeans++", "random"] {
        let out = scratch.path(&format!("c-{init}.npy"));
        // `random` init can start two centroids in one blob; more iterations
        // and a zero tolerance let the empty-cluster splits fix that.
        kmeans_ok(
            &d,
            &out,
            6,
            &[
                "--init",
                init,
                "--backend",
                "cpu",
                "--iters",
                "100",
                "--tolerance",
                "0",
            ],
        );
        // The mean of 60 points of spread 0.2 in 8-D is ~0.07 from its centre.
        assert_recovers(&read_f32(&out), &truth, 0.25);
    }
}

#[test]
fn images_u8_and_f64_fortran_inputs_are_accepted() {
    let scratch = Scratch::new();
    // (T, L, F) uint8 images: four well-separated grey levels.
    let levels = [20u8, 90, 160, 230];
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let jitter = Uniform::new_inclusive(-3i32, 3).unwrap();
    let images = Array3::from_shape_fn((6, 10, 4), |(t, l, _)| {
        let level = levels[(t * 10 + l) % 4] as i32;
        (level + jitter.sample(&mut rng)) as u8
    });
    let d = scratch.write("d-u8.npy", &images);
    let out = scratch.path("c-u8.npy");
    let run = kmeans_ok(&d, &out, 4, &["--backend", "cpu", "--json"]);
    assert_eq!(json_of(&run)["points"], 60);
    let truth = Array2::from_shape_fn((4, 4), |(k, _)| levels[k] as f32);
    assert_recovers(&read_f32(&out), &truth, 2.0);

    // The same rows as (N, F) float64 in Fortran order train the same way.
    let rows = images
        .mapv(f64::from)
        .into_shape_with_order((60, 4))
        .unwrap();
    let mut fortran = Array2::<f64>::zeros((60, 4).f());
    fortran.assign(&rows);
    let d = scratch.write("d-f64.npy", &fortran);
    let out_f64 = scratch.path("c-f64.npy");
    kmeans_ok(&d, &out_f64, 4, &["--backend", "cpu"]);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&out_f64).unwrap(),
        "u8 (T, L, F) and f64 (N, F) of the same values"
    );
}

#[test]
fn images_and_their_rows_give_the_same_file() {
    let scratch = Scratch::new();
    let truth = far_centres(4, 5, 6);
    let rows = blobs(&truth, 30, 1.0, 7);
    let images = rows.clone().into_shape_with_order((12, 10, 5)).unwrap();
    let d_rows = scratch.write("rows.npy", &rows);
    let d_images = scratch.write("images.npy", &images);
    let a = scratch.path("a.npy");
    let b = scratch.path("b.npy");
    kmeans_ok(&d_rows, &a, 4, &["--backend", "cpu"]);
    kmeans_ok(&d_images, &b, 4, &["--backend", "cpu"]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn same_seed_same_bytes_whatever_the_thread_count() {
    let scratch = Scratch::new();
    let truth = far_centres(8, 16, 8);
    let points = blobs(&truth, 100, 3.0, 9);
    let d = scratch.write("d.npy", &points);
    let a = scratch.path("a.npy");
    let b = scratch.path("b.npy");
    for (out, threads) in [(&a, "1"), (&b, "2")] {
        let run = Cmd::kmeans()
            .descriptors(&d)
            .out(out)
            .k(8)
            .flag("--seed", 42)
            .flag("--max-points-per-centroid", 64)
            .backend("cpu")
            .run_with_env(&[("RAYON_NUM_THREADS", threads)]);
        assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn a_different_seed_draws_a_different_sample() {
    // With one training point per centroid, training is K points drawn with
    // the seed and each becomes a centroid: two seeds drawing the same 4 of
    // 300 points is a 1-in-3·10⁸ event, and fixed once observed.
    let scratch = Scratch::new();
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let uniform = Uniform::new(0.0f32, 1.0).unwrap();
    let points = Array2::from_shape_simple_fn((300, 3), || uniform.sample(&mut rng));
    let d = scratch.write("d.npy", &points);
    let mut outputs = Vec::new();
    for seed in ["1", "2"] {
        let out = scratch.path(&format!("c{seed}.npy"));
        let run = kmeans_ok(
            &d,
            &out,
            4,
            &[
                "--seed",
                seed,
                "--max-points-per-centroid",
                "1",
                "--backend",
                "cpu",
                "--json",
            ],
        );
        assert_eq!(json_of(&run)["training_points"], 4);
        let centroids = read_f32(&out);
        for c in centroids.outer_iter() {
            assert!(
                points.outer_iter().any(|x| x == c),
                "seed {seed}: centroid {c} is not an input point"
            );
        }
        assert_eq!(json_of(&run)["inertia"].as_f64(), Some(0.0));
        outputs.push(std::fs::read(&out).unwrap());
    }
    assert_ne!(outputs[0], outputs[1]);
}

#[test]
fn zero_iterations_return_the_seeded_points() {
    let scratch = Scratch::new();
    let truth = far_centres(3, 4, 11);
    let points = blobs(&truth, 20, 1.0, 12);
    let d = scratch.write("d.npy", &points);
    let out = scratch.path("c.npy");
    let run = kmeans_ok(
        &d,
        &out,
        3,
        &[
            "--iters",
            "0",
            "--init",
            "random",
            "--backend",
            "cpu",
            "--json",
        ],
    );
    assert_eq!(json_of(&run)["iterations"], 0);
    for c in read_f32(&out).outer_iter() {
        assert!(points.outer_iter().any(|x| x == c), "{c}");
    }
}

// ---------------------------------------------------------------- bad input

/// Run `kmeans` on `d` writing `out` and check that it fails with `code`, a
/// one-line `vlad: error:` message containing every `needle`, that no output
/// (nor temporary file) is left, and that an existing output is untouched.
fn expect_failure(
    scratch: &Scratch,
    d: &Path,
    out: &Path,
    extra: &[&str],
    code: i32,
    needles: &[&str],
) {
    let cmd = Cmd::kmeans().descriptors(d).out(out).args(extra);
    let args = cmd.argv();
    let _ = std::fs::remove_file(out);
    let before = scratch.listing();
    let run = cmd.run();
    let err = stderr(&run);
    assert_eq!(run.status.code(), Some(code), "{args:?}: stderr: {err}");
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("vlad: error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{args:?}: {err}");
    for needle in needles {
        assert!(
            errors[0].contains(needle),
            "{args:?}: the error should mention {needle:?}: {err}"
        );
    }
    assert!(run.stdout.is_empty(), "{args:?}: stdout on failure");
    assert!(!out.exists(), "{args:?} created {}", out.display());
    assert_eq!(scratch.listing(), before, "{args:?} left files behind");

    if out.parent().is_some_and(|dir| dir.is_dir()) {
        let sentinel = b"an earlier codebook; must survive a failed run".to_vec();
        std::fs::write(out, &sentinel).unwrap();
        let run = cmd.run();
        assert_eq!(run.status.code(), Some(code), "{args:?} (sentinel)");
        assert_eq!(std::fs::read(out).unwrap(), sentinel, "{args:?}");
        std::fs::remove_file(out).unwrap();
    }
}

#[test]
fn bad_inputs_exit_2_naming_file_and_problem() {
    let scratch = Scratch::new();
    let out = scratch.path("c.npy");
    let truth = far_centres(3, 4, 13);
    let good = blobs(&truth, 5, 1.0, 14);

    let mut with_nan = good.clone();
    with_nan[[7, 2]] = f32::NAN;
    let d = scratch.write("nan.npy", &with_nan);
    expect_failure(
        &scratch,
        &d,
        &out,
        &["-k", "3"],
        2,
        &["nan.npy", "row 7", "NaN"],
    );

    let mut with_inf = good.clone().into_shape_with_order((3, 5, 4)).unwrap();
    with_inf[[2, 1, 0]] = f32::NEG_INFINITY;
    let d = scratch.write("inf.npy", &with_inf);
    expect_failure(
        &scratch,
        &d,
        &out,
        &["-k", "3"],
        2,
        &["inf.npy", "row 11", "image 2"],
    );

    let d = scratch.write("good.npy", &good);
    expect_failure(&scratch, &d, &out, &["-k", "0"], 2, &["-k 0"]);
    expect_failure(
        &scratch,
        &d,
        &out,
        &["-k", "16"],
        2,
        &["good.npy", "k = 16", "N = 15"],
    );
    expect_failure(
        &scratch,
        &d,
        &out,
        &["-k", "3", "--tolerance", "-1"],
        2,
        &["--tolerance"],
    );

    let duplicates = Array2::from_shape_fn((10, 2), |(i, _)| (i % 2) as f32);
    let d = scratch.write("dup.npy", &duplicates);
    expect_failure(
        &scratch,
        &d,
        &out,
        &["-k", "3"],
        2,
        &["dup.npy", "2 distinct"],
    );

    let d = scratch.write("f0.npy", &Array2::<f32>::zeros((5, 0)));
    expect_failure(&scratch, &d, &out, &["-k", "1"], 2, &["f0.npy", "F = 0"]);

    let d = scratch.write("n0.npy", &Array2::<f32>::zeros((0, 4)));
    expect_failure(&scratch, &d, &out, &["-k", "1"], 2, &["n0.npy", "N = 0"]);

    let d = scratch.write("i32.npy", &Array2::<i32>::zeros((5, 4)));
    expect_failure(&scratch, &d, &out, &["-k", "1"], 2, &["i32.npy", "int32"]);

    let d = scratch.write("1d.npy", &ndarray::Array1::<f32>::zeros(5));
    expect_failure(&scratch, &d, &out, &["-k", "1"], 2, &["1d.npy", "(5,)"]);

    let d = scratch.write("4d.npy", &ndarray::Array4::<f32>::zeros((2, 2, 2, 2)));
    expect_failure(
        &scratch,
        &d,
        &out,
        &["-k", "1"],
        2,
        &["4d.npy", "(2, 2, 2, 2)"],
    );

    let bytes = std::fs::read(scratch.path("good.npy")).unwrap();
    let d = scratch.path("truncated.npy");
    std::fs::write(&d, &bytes[..bytes.len() - 10]).unwrap();
    expect_failure(
        &scratch,
        &d,
        &out,
        &["-k", "3"],
        2,
        &["truncated.npy", "truncated"],
    );

    let d = scratch.path("garbage.npy");
    std::fs::write(&d, b"this is not numpy").unwrap();
    expect_failure(&scratch, &d, &out, &["-k", "3"], 2, &["garbage.npy"]);

    let d = scratch.path("missing.npy");
    expect_failure(&scratch, &d, &out, &["-k", "3"], 2, &["missing.npy"]);
}

#[test]
fn unwritable_output_fails_before_reading() {
    let scratch = Scratch::new();
    let d = scratch.write("d.npy", &blobs(&far_centres(2, 3, 15), 5, 1.0, 16));
    let out = scratch.path("no-such-folder/c.npy");
    expect_failure(&scratch, &d, &out, &["-k", "2"], 2, &["no-such-folder"]);
    // The output is reserved before the input is read: a missing input with
    // an unwritable output reports the output.
    let missing = scratch.path("missing.npy");
    expect_failure(
        &scratch,
        &missing,
        &out,
        &["-k", "2"],
        2,
        &["no-such-folder"],
    );
}

#[test]
fn usage_errors_exit_2() {
    let scratch = Scratch::new();
    let d = scratch.write("d.npy", &blobs(&far_centres(2, 3, 17), 5, 1.0, 18));
    let out = scratch.path("c.npy");
    expect_failure(
        &scratch,
        &d,
        &out,
        &["-k", "2", "--backend", "reference"],
        2,
        &["reference", "auto, gpu or cpu"],
    );
    for extra in [
        &["-k", "2", "--init", "kmeans--"][..],
        &["-k", "2", "--backend", "tpu"][..],
        &["-k", "two"][..],
        &[][..],
    ] {
        let run = Cmd::kmeans().descriptors(&d).out(&out).args(extra).run();
        assert_eq!(run.status.code(), Some(2), "{extra:?}: {}", stderr(&run));
        assert!(!out.exists());
    }
    let help = vlad(&["kmeans", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("--max-points-per-centroid"), "{text}");
    assert!(!text.contains("reference"), "reference is hidden: {text}");
}

#[test]
fn gpu_backend_exits_3_or_trains_on_the_gpu() {
    // Without an adapter the k-means GPU engine is unavailable (exit 3;
    // never in CI, which has lavapipe); with one it runs and says so.
    let scratch = Scratch::new();
    let truth = far_centres(3, 4, 19);
    let d = scratch.write("d.npy", &blobs(&truth, 20, 0.2, 20));
    let out = scratch.path("c.npy");
    let run = Cmd::kmeans()
        .descriptors(&d)
        .out(&out)
        .k(3)
        .backend("gpu")
        .json()
        .run();
    match run.status.code() {
        Some(3) => {
            let err = stderr(&run);
            assert!(!crate::common::ci(), "CI has lavapipe: {err}");
            assert!(err.contains("vlad: error:"), "{err}");
            assert!(err.contains("unavailable"), "{err}");
            assert!(!out.exists());
        }
        Some(0) => {
            let json = json_of(&run);
            assert_eq!(json["backend"], "gpu");
            assert!(json["adapter"].is_string(), "the GPU run names its adapter");
            assert_recovers(&read_f32(&out), &truth, 0.25);
        }
        other => panic!("--backend gpu exited {other:?}: {}", stderr(&run)),
    }
}

/// `--init C.npy`: the given centroids are the start (`--iters 0` returns
/// them as they are; `--iters 1` is the library's one step from them), and
/// a file of the wrong K, F or with a NaN exits 2 naming the problem.
#[test]
fn init_from_a_centroids_file() {
    let scratch = Scratch::new();
    let truth = far_centres(3, 4, 21);
    let points = blobs(&truth, 30, 1.0, 22);
    let d = scratch.write("d.npy", &points);
    let given = truth.mapv(|x| x + 0.5);
    let c = scratch.write("given.npy", &given);
    let out = scratch.path("c.npy");
    let run = kmeans_ok(
        &d,
        &out,
        3,
        &[
            "--init",
            p(&c),
            "--iters",
            "0",
            "--backend",
            "cpu",
            "--json",
        ],
    );
    assert_eq!(json_of(&run)["init"], "given");
    assert_eq!(read_f32(&out), given);
    kmeans_ok(
        &d,
        &out,
        3,
        &["--init", p(&c), "--iters", "1", "--backend", "cpu"],
    );
    let want = ::vlad::kmeans::KMeans::new(3)
        .backend(::vlad::Backend::Cpu)
        .initial_centroids(given.clone())
        .iterations(1)
        .fit(points.view())
        .unwrap();
    assert_eq!(read_f32(&out).view(), want.codebook.centroids());
    assert_ne!(read_f32(&out), given);

    let wrong_k = scratch.write("k4.npy", &Array2::<f32>::zeros((4, 4)));
    expect_failure(
        &scratch,
        &d,
        &out,
        &["-k", "3", "--init", p(&wrong_k)],
        2,
        &["4 centroids", "-k is 3"],
    );
    let wrong_f = scratch.write("f5.npy", &Array2::<f32>::zeros((3, 5)));
    expect_failure(
        &scratch,
        &d,
        &out,
        &["-k", "3", "--init", p(&wrong_f)],
        2,
        &["(3, 5)"],
    );
    let mut nan = given.clone();
    nan[[1, 2]] = f32::NAN;
    let nan = scratch.write("nan.npy", &nan);
    expect_failure(
        &scratch,
        &d,
        &out,
        &["-k", "3", "--init", p(&nan)],
        2,
        &["nan.npy", "NaN"],
    );
    let run = Cmd::kmeans()
        .descriptors(&d)
        .out(&out)
        .args(["-k", "3", "--init", "sideways"])
        .run();
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(stderr(&run).contains("C.npy"), "{}", stderr(&run));
}
