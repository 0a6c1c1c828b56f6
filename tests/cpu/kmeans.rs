//! k-means training: recovery of planted clusters, monotone inertia, the
//! value of k-means++, determinism, subsampling, and every bad input.

use ndarray::{Array2, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use vlad::kmeans::{Init, KMeans, KMeansProgress, KMeansResult};
use vlad::{Backend, Encoder, VladError};

/// `sizes[c]` points around each of `centres` with per-coordinate std
/// `sigma`, in a shuffled order; returns the points and their true cluster.
fn gaussian_clusters(
    centres: &Array2<f32>,
    sizes: &[usize],
    sigma: f32,
    seed: u64,
) -> (Array2<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let noise = Normal::new(0.0f32, sigma).unwrap();
    let dim = centres.ncols();
    let mut truth: Vec<usize> = sizes
        .iter()
        .enumerate()
        .flat_map(|(c, &n)| std::iter::repeat_n(c, n))
        .collect();
    // Fisher–Yates so clusters are interleaved in the input.
    for i in (1..truth.len()).rev() {
        let j = rng.random_range(0..=i);
        truth.swap(i, j);
    }
    let points = Array2::from_shape_fn((truth.len(), dim), |(i, f)| {
        centres[[truth[i], f]] + noise.sample(&mut rng)
    });
    (points, truth)
}

fn random_centres(k: usize, dim: usize, spread: f32, seed: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_fn((k, dim), |_| rng.random_range(-spread..spread))
}

fn nearest_labels(result: &KMeansResult, points: ArrayView2<'_, f32>) -> Vec<u32> {
    Encoder::builder(result.codebook.clone())
        .backend(Backend::Cpu)
        .build()
        .assign(points)
        .unwrap()
        .to_vec()
}

/// The CPU backend's k-means: these tests pin CPU behaviour (thread counts,
/// exact figures); `tests/gpu/kmeans.rs` covers the GPU engine.
fn cpu_kmeans(k: usize) -> KMeans {
    KMeans::new(k).backend(Backend::Cpu)
}

fn bits(result: &KMeansResult) -> Vec<u32> {
    result
        .codebook
        .as_slice()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

#[test]
fn well_separated_gaussian_clusters_are_recovered_exactly() {
    let (k, dim) = (6, 8);
    let centres = random_centres(k, dim, 50.0, 11);
    for a in 0..k {
        for b in a + 1..k {
            let d: f32 = (&centres.row(a) - &centres.row(b)).mapv(|x| x * x).sum();
            assert!(d.sqrt() > 20.0, "test data: centres {a} and {b} too close");
        }
    }
    let (points, truth) = gaussian_clusters(&centres, &[150; 6], 1.0, 12);
    for seed in [1, 2, 3] {
        let result = cpu_kmeans(k)
            .seed(seed)
            .max_points_per_centroid(None)
            .fit(points.view())
            .unwrap();
        let labels = nearest_labels(&result, points.view());
        // Labels equal up to permutation: a bijection true cluster → label.
        let mut map = vec![None; k];
        for (&t, &l) in truth.iter().zip(&labels) {
            match map[t] {
                None => map[t] = Some(l as usize),
                Some(m) => assert_eq!(m, l as usize, "seed {seed}: cluster {t} split"),
            }
        }
        let mut found: Vec<usize> = map.iter().map(|m| m.unwrap()).collect();
        found.sort_unstable();
        assert_eq!(
            found,
            (0..k).collect::<Vec<_>>(),
            "seed {seed}: clusters merged"
        );
        for (t, m) in map.iter().enumerate() {
            let centroid = result.codebook.centroids().row(m.unwrap()).to_owned();
            let members: Vec<usize> = (0..truth.len()).filter(|&i| truth[i] == t).collect();
            let mean = points.select(Axis(0), &members).mean_axis(Axis(0)).unwrap();
            for f in 0..dim {
                assert!((centroid[f] - centres[[t, f]]).abs() < 0.5, "seed {seed}");
                assert!((centroid[f] - mean[f]).abs() < 1e-3, "seed {seed}");
            }
        }
        // 150·6 points, 8 dims, σ = 1: inertia ≈ 900·8 = 7200.
        assert!(
            result.inertia > 6000.0 && result.inertia < 8400.0,
            "{}",
            result.inertia
        );
    }
}

#[test]
fn inertia_never_increases_between_iterations() {
    // Overlapping clusters and random init: many iterations of real movement.
    let centres = random_centres(10, 4, 3.0, 21);
    let (points, _) = gaussian_clusters(&centres, &[200; 10], 1.0, 22);
    for seed in [5, 6] {
        let result = cpu_kmeans(16)
            .init(Init::Random)
            .seed(seed)
            .iterations(40)
            .tolerance(0.0)
            .max_points_per_centroid(None)
            .fit(points.view())
            .unwrap();
        let h = &result.inertia_history;
        assert_eq!(h.len(), result.iterations);
        assert!(h.len() >= 5, "only {} iterations", h.len());
        // f32 distances carry rounding noise of ~1e-7 relative; a real
        // increase (a wrong update) is orders of magnitude larger.
        for w in h.windows(2) {
            assert!(w[1] <= w[0] * (1.0 + 1e-6), "inertia rose: {h:?}");
        }
        assert!(h[h.len() - 1] < 0.9 * h[0], "{h:?}");
        assert!(result.inertia <= h[h.len() - 1] * (1.0 + 1e-5));
    }
}

#[test]
fn kmeans_plus_plus_beats_random_init_on_a_trap() {
    // One crowded cluster and three tiny far ones: uniform seeds nearly
    // always land several centroids in the crowd and never escape it.
    let centres = ndarray::array![[0.0f32, 0.0], [100.0, 0.0], [0.0, 100.0], [100.0, 100.0]];
    let (points, _) = gaussian_clusters(&centres, &[970, 10, 10, 10], 1.0, 31);
    for seed in 0..5 {
        let fit = |init| {
            cpu_kmeans(4)
                .init(init)
                .seed(seed)
                .max_points_per_centroid(None)
                .fit(points.view())
                .unwrap()
                .inertia
        };
        let (plus, random) = (fit(Init::KMeansPlusPlus), fit(Init::Random));
        // Optimum ≈ 1000 points · 2 dims · σ² = 2000.
        assert!(plus < 2500.0, "seed {seed}: k-means++ inertia {plus}");
        assert!(
            plus < random,
            "seed {seed}: k-means++ {plus} vs random {random}"
        );
    }
}

#[test]
fn identical_centroids_run_after_run_and_whatever_the_thread_count() {
    let centres = random_centres(12, 16, 5.0, 41);
    let (points, _) = gaussian_clusters(&centres, &[250; 12], 1.5, 42);
    let fit = |threads: usize, init: Init| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                cpu_kmeans(20)
                    .init(init)
                    .max_points_per_centroid(Some(100))
                    .tolerance(0.0)
                    .iterations(10)
                    .fit(points.view())
                    .unwrap()
            })
    };
    for init in [Init::KMeansPlusPlus, Init::Random] {
        let one = fit(1, init);
        for threads in [1, 2, 3] {
            let other = fit(threads, init);
            assert_eq!(bits(&one), bits(&other), "{init}, {threads} threads");
            assert_eq!(one.inertia.to_bits(), other.inertia.to_bits());
            assert_eq!(one.inertia_history, other.inertia_history);
        }
    }
}

#[test]
fn different_seeds_give_different_centroids() {
    let centres = random_centres(8, 4, 2.0, 51);
    let (points, _) = gaussian_clusters(&centres, &[100; 8], 1.0, 52);
    let fit = |seed| cpu_kmeans(8).seed(seed).fit(points.view()).unwrap();
    assert_ne!(bits(&fit(1)), bits(&fit(2)));
}

#[test]
fn subsampling_is_seeded_and_uses_only_the_sampled_rows() {
    let centres = random_centres(5, 6, 10.0, 61);
    let (points, _) = gaussian_clusters(&centres, &[400; 5], 1.0, 62);
    let kmeans = cpu_kmeans(5).max_points_per_centroid(Some(50)).seed(9);
    let picked = kmeans.training_indices(points.nrows());
    assert_eq!(picked, kmeans.training_indices(points.nrows()));
    assert_eq!(picked.len(), 250);
    assert!(
        picked.windows(2).all(|w| w[0] < w[1]),
        "sorted and distinct"
    );
    assert!(*picked.last().unwrap() < points.nrows());
    assert_ne!(
        picked,
        kmeans.clone().seed(10).training_indices(points.nrows())
    );
    // Small inputs are used whole.
    assert_eq!(kmeans.training_indices(200), (0..200).collect::<Vec<_>>());

    // Training on the subsample = training on exactly those rows.
    let sampled = kmeans.fit(points.view()).unwrap();
    let subset = points.select(Axis(0), &picked);
    let whole = kmeans
        .clone()
        .max_points_per_centroid(None)
        .fit(subset.view())
        .unwrap();
    assert_eq!(bits(&sampled), bits(&whole));
    assert_eq!(sampled.inertia.to_bits(), whole.inertia.to_bits());
    assert_ne!(picked.len(), points.nrows());
}

#[test]
fn f64_and_u8_inputs_train_like_f32() {
    let mut rng = ChaCha8Rng::seed_from_u64(71);
    let bytes = Array2::from_shape_fn((600, 12), |(i, _)| {
        (i % 3) as u8 * 80 + rng.random_range(0..20u8)
    });
    let as_f32 = bytes.mapv(|x| x as f32);
    let as_f64 = bytes.mapv(|x| x as f64);
    let kmeans = cpu_kmeans(3).max_points_per_centroid(None);
    let reference = kmeans.fit(as_f32.view()).unwrap();
    for other in [
        kmeans.fit(bytes.view()).unwrap(),
        kmeans.fit(as_f64.view()).unwrap(),
    ] {
        for (a, b) in reference
            .codebook
            .as_slice()
            .iter()
            .zip(other.codebook.as_slice())
        {
            assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "{a} vs {b}");
        }
        assert!((reference.inertia - other.inertia).abs() <= 1e-6 * reference.inertia);
    }
}

#[test]
fn stops_early_on_tolerance_and_at_a_fixed_point() {
    let centres = random_centres(4, 3, 20.0, 81);
    let (points, _) = gaussian_clusters(&centres, &[100; 4], 1.0, 82);
    let base = cpu_kmeans(4).max_points_per_centroid(None).iterations(100);
    // Any decrease is at most 100 % of the inertia: stops at iteration 2.
    assert_eq!(
        base.clone()
            .tolerance(1.0)
            .fit(points.view())
            .unwrap()
            .iterations,
        2
    );
    // Tolerance off: runs until the labels stop changing. That last
    // iteration changed no centroid: stopping one iteration earlier gives
    // the same codebook, and the final inertia is the last one seen.
    let fixed = base.clone().tolerance(0.0).fit(points.view()).unwrap();
    assert!(fixed.iterations >= 2 && fixed.iterations < 100);
    let earlier = base
        .clone()
        .tolerance(0.0)
        .iterations(fixed.iterations - 1)
        .fit(points.view())
        .unwrap();
    assert_eq!(bits(&earlier), bits(&fixed));
    let last = fixed.inertia_history[fixed.iterations - 1];
    assert!((fixed.inertia - last).abs() <= 1e-5 * last);
    // Zero iterations: the seeds themselves, still a valid codebook.
    let seeds = base.clone().iterations(0).fit(points.view()).unwrap();
    assert_eq!((seeds.iterations, seeds.inertia_history.len()), (0, 0));
    assert!(seeds.inertia >= fixed.inertia);
}

#[test]
fn one_cluster_is_the_mean() {
    let points = ndarray::array![[1.0f32, 2.0], [3.0, 6.0], [5.0, 1.0], [7.0, 3.0]];
    let result = cpu_kmeans(1).fit(points.view()).unwrap();
    assert_eq!(result.codebook.as_slice(), &[4.0, 3.0]);
    // Σ‖x − (4, 3)‖² = (9+1) + (1+9) + (1+4) + (9+0) = 34.
    assert_eq!(result.inertia, 34.0);
}

#[test]
fn identical_points_train_one_cluster_and_refuse_two() {
    let points = Array2::from_elem((50, 3), 2.5f32);
    let result = cpu_kmeans(1).fit(points.view()).unwrap();
    assert_eq!(result.codebook.as_slice(), &[2.5, 2.5, 2.5]);
    assert_eq!(result.inertia, 0.0);
    let err = cpu_kmeans(2).fit(points.view()).unwrap_err();
    assert!(
        matches!(&err, VladError::InvalidArgument(m) if m.contains("1 distinct")),
        "{err}"
    );
}

#[test]
fn too_few_distinct_points_is_a_clear_error() {
    // 30 points, 3 distinct values (−0.0 and 0.0 are one point).
    let mut points = Array2::from_shape_fn((30, 2), |(i, _)| (i % 3) as f32);
    points[[0, 0]] = -0.0;
    assert!(cpu_kmeans(3).fit(points.view()).is_ok());
    let err = cpu_kmeans(4).fit(points.view()).unwrap_err();
    assert!(
        matches!(&err, VladError::InvalidArgument(m) if m.contains("3 distinct")),
        "{err}"
    );
}

#[test]
fn bad_inputs_are_errors() {
    let good = Array2::from_shape_fn((20, 3), |(i, j)| (i * 3 + j) as f32);

    let mut nan = good.clone();
    nan[[7, 2]] = f32::NAN;
    nan[[12, 0]] = f32::NAN;
    match cpu_kmeans(2).fit(nan.view()).unwrap_err() {
        VladError::NonFinite { row, col, .. } => assert_eq!((row, col), (7, 2)),
        other => panic!("{other}"),
    }
    let mut inf = good.mapv(|x| x as f64);
    inf[[4, 1]] = f64::INFINITY;
    assert!(matches!(
        cpu_kmeans(2).fit(inf.view()),
        Err(VladError::NonFinite { row: 4, col: 1, .. })
    ));
    // Finite in f64, infinite in the f32 arithmetic.
    let mut huge = good.mapv(|x| x as f64);
    huge[[9, 0]] = 1e300;
    assert!(matches!(
        cpu_kmeans(2).fit(huge.view()),
        Err(VladError::NonFinite { row: 9, col: 0, .. })
    ));
    // Outside any subsample, still refused.
    let mut late = Array2::from_shape_fn((5000, 2), |(i, j)| (i + j) as f32);
    late[[4999, 1]] = f32::NEG_INFINITY;
    assert!(matches!(
        cpu_kmeans(2)
            .max_points_per_centroid(Some(10))
            .fit(late.view()),
        Err(VladError::NonFinite { row: 4999, .. })
    ));

    assert!(matches!(
        cpu_kmeans(2).fit(Array2::<f32>::zeros((10, 0)).view()),
        Err(VladError::Empty(_))
    ));
    assert!(matches!(
        cpu_kmeans(2).fit(Array2::<f32>::zeros((0, 4)).view()),
        Err(VladError::Empty(_))
    ));
    assert!(matches!(
        cpu_kmeans(0).fit(good.view()),
        Err(VladError::InvalidArgument(_))
    ));
    let err = cpu_kmeans(21).fit(good.view()).unwrap_err();
    assert!(
        matches!(&err, VladError::InvalidArgument(m) if m.contains("N = 20")),
        "{err}"
    );
    assert!(matches!(
        cpu_kmeans(2)
            .max_points_per_centroid(Some(0))
            .fit(good.view()),
        Err(VladError::InvalidArgument(_))
    ));
    assert!(matches!(
        cpu_kmeans(2).tolerance(-1.0).fit(good.view()),
        Err(VladError::InvalidArgument(_))
    ));
}

#[test]
fn backends_run_or_say_why_not() {
    let points = Array2::from_shape_fn((40, 2), |(i, j)| ((i * 7 + j) % 11) as f32);
    // The GPU trains where an adapter exists (lavapipe in CI) and says why
    // not, with the "unavailable" exit status, where none does — or where
    // the crate is built without its `gpu` feature (CI's lean run).
    match KMeans::new(2).backend(Backend::Gpu).fit(points.view()) {
        Ok(gpu) => assert_eq!(gpu.backend, Backend::Gpu),
        Err(err) => {
            assert!(
                cfg!(not(feature = "gpu")) || !crate::common::ci(),
                "CI must have a GPU: {err}"
            );
            assert!(matches!(err, VladError::BackendUnavailable(_)), "{err}");
        }
    }
    assert!(matches!(
        KMeans::new(2)
            .backend(Backend::Reference)
            .fit(points.view()),
        Err(VladError::InvalidArgument(_))
    ));
    // Auto is the GPU when one works, else the CPU; either way it gives
    // exactly what asking for that backend gives.
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let auto = KMeans::new(2)
        .on_progress(move |e| sink.lock().unwrap().push(e.clone()))
        .fit(points.view())
        .unwrap();
    let events = events.lock().unwrap();
    assert!(matches!(
        events.first(),
        Some(KMeansProgress::Started { .. })
    ));
    assert!(matches!(
        events.last(),
        Some(KMeansProgress::Finished { .. })
    ));
    let iterations = events
        .iter()
        .filter(|e| matches!(e, KMeansProgress::Iteration { .. }))
        .count();
    assert_eq!(iterations, auto.iterations);
    let same = KMeans::new(2)
        .backend(auto.backend)
        .fit(points.view())
        .unwrap();
    assert!(matches!(auto.backend, Backend::Gpu | Backend::Cpu));
    assert_eq!(bits(&auto), bits(&same));
}

#[test]
fn init_names_parse() {
    assert_eq!("kmeans++".parse::<Init>().unwrap(), Init::KMeansPlusPlus);
    assert_eq!("Random".parse::<Init>().unwrap(), Init::Random);
    assert!("forgy".parse::<Init>().is_err());
    assert_eq!(Init::default().to_string(), "kmeans++");
}

/// Vocabulary adaptation: one iteration from given centroids is one Lloyd
/// step, computed here by hand (nearest given centroid in f64, then each
/// cluster's mean). Integer-valued points near far-apart centroids: no
/// near-tie, and every sum is exact, so the means match bit for bit.
#[test]
fn one_iteration_from_given_centroids_is_one_lloyd_step_by_hand() {
    let (k, dim, n) = (5, 7, 600);
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let given = Array2::from_shape_fn((k, dim), |(c, f)| ((c * 7 + f * 3) % 11) as f32 * 20.0);
    let points = Array2::from_shape_fn((n, dim), |(i, f)| {
        given[[i % k, f]] + rng.random_range(-3i32..=4) as f32
    });
    let result = cpu_kmeans(k)
        .initial_centroids(given.clone())
        .iterations(1)
        .max_points_per_centroid(None)
        .fit(points.view())
        .unwrap();
    assert_eq!(result.iterations, 1);
    let mut sums = vec![0f64; k * dim];
    let mut counts = vec![0u64; k];
    for row in points.rows() {
        let distance = |c: usize| -> f64 {
            (0..dim)
                .map(|f| (row[f] as f64 - given[[c, f]] as f64).powi(2))
                .sum()
        };
        let nearest = (0..k)
            .min_by(|&a, &b| distance(a).total_cmp(&distance(b)))
            .unwrap();
        counts[nearest] += 1;
        for f in 0..dim {
            sums[nearest * dim + f] += row[f] as f64;
        }
    }
    let want = Array2::from_shape_fn((k, dim), |(c, f)| {
        (sums[c * dim + f] / counts[c] as f64) as f32
    });
    assert_ne!(want, given, "the step must move the centroids");
    assert_eq!(result.codebook.centroids(), want.view());

    // Zero iterations: the given centroids come back untouched.
    let unchanged = cpu_kmeans(k)
        .initial_centroids(given.clone())
        .iterations(0)
        .fit(points.view())
        .unwrap();
    assert_eq!(unchanged.codebook.centroids(), given.view());
}

#[test]
fn given_centroids_of_the_wrong_shape_or_not_finite_are_clear_errors() {
    let points = Array2::from_shape_fn((50, 3), |(i, f)| (i * 3 + f) as f32);
    let fit =
        |given: Array2<f32>, k: usize| cpu_kmeans(k).initial_centroids(given).fit(points.view());
    let wrong_k = fit(Array2::zeros((4, 3)), 3).unwrap_err();
    assert!(
        matches!(&wrong_k, VladError::DimensionMismatch(m) if m.contains("(4, 3)") && m.contains("(3, 3)")),
        "{wrong_k}"
    );
    let wrong_f = fit(Array2::zeros((3, 2)), 3).unwrap_err();
    assert!(
        matches!(wrong_f, VladError::DimensionMismatch(_)),
        "{wrong_f}"
    );
    let mut nan = Array2::zeros((3, 3));
    nan[[2, 1]] = f32::NAN;
    let not_finite = fit(nan, 3).unwrap_err();
    assert!(
        matches!(
            not_finite,
            VladError::NonFinite {
                what: "initial centroids",
                row: 2,
                col: 1,
                ..
            }
        ),
        "{not_finite}"
    );
    // Init::Given without centroids.
    let missing = cpu_kmeans(3)
        .init(Init::Given)
        .fit(points.view())
        .unwrap_err();
    assert!(
        matches!(missing, VladError::InvalidArgument(_)),
        "{missing}"
    );
}
