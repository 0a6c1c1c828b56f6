//! k-means as a map and a reduce (SPEC §13): `LloydWorker::step` per block,
//! `LloydStep::merge` in block order, `Lloyd::update` on the driver.

use ndarray::{Array2, s};
use vlad::Backend;
use vlad::kmeans::{KMeans, LloydWorker};

fn points(n: usize, dim: usize) -> Array2<f32> {
    // Five loose groups, deterministic.
    Array2::from_shape_fn((n, dim), |(i, j)| {
        let group = (i * 7) % 5;
        group as f32 * 4.0 + (((i * 31 + j * 17) % 23) as f32 - 11.0) * 0.13
    })
}

/// Run a distributed fit over `blocks` consecutive row blocks.
fn distributed(settings: &KMeans, x: &Array2<f32>, block: usize) -> (Array2<f32>, Vec<f64>, f64) {
    let worker = LloydWorker::new(Backend::Cpu, &Default::default()).unwrap();
    let mut lloyd = settings.lloyd(settings.seed_centroids(x.view()).unwrap());
    let step_all = |centroids: &vlad::Codebook| {
        let mut merged = None;
        for start in (0..x.nrows()).step_by(block) {
            let end = (start + block).min(x.nrows());
            let step = worker.step(x.slice(s![start..end, ..]), centroids).unwrap();
            match merged.as_mut() {
                None => merged = Some(step),
                Some(m) => m.merge(&step).unwrap(),
            }
        }
        merged.unwrap()
    };
    while !lloyd.is_done() {
        let step = step_all(lloyd.centroids());
        lloyd.update(&step).unwrap();
    }
    let exact = step_all(lloyd.centroids()).exact_inertia;
    (
        lloyd.centroids().centroids().to_owned(),
        lloyd.inertia_history().to_vec(),
        exact,
    )
}

#[test]
fn one_block_is_kmeans_fit_bit_for_bit() {
    let x = points(3000, 12);
    for k in [1, 5, 9] {
        let settings = KMeans::new(k)
            .seed(3)
            .max_points_per_centroid(None)
            .backend(Backend::Cpu);
        let fit = settings.fit(x.view()).unwrap();
        let (centroids, history, exact) = distributed(&settings, &x, x.nrows());
        assert_eq!(centroids, fit.codebook.centroids(), "k = {k}");
        assert_eq!(history, fit.inertia_history);
        assert_eq!(exact, fit.inertia);
    }
}

#[test]
fn many_blocks_stay_close_to_one_and_repeat_exactly() {
    let x = points(3000, 12);
    let settings = KMeans::new(6).seed(8).tolerance(0.0).iterations(10);
    let (one, one_history, _) = distributed(&settings, &x, x.nrows());
    let (many, history, exact) = distributed(&settings, &x, 128);
    let (again, history_again, exact_again) = distributed(&settings, &x, 128);
    assert_eq!(many, again);
    assert_eq!((history.clone(), exact), (history_again, exact_again));
    // Only the f64 summation order differs from one block.
    let worst = one
        .iter()
        .zip(&many)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "{worst}");
    for (a, b) in one_history.iter().zip(&history) {
        assert!((a - b).abs() <= 1e-9 * a, "{a} vs {b}");
    }
}

#[test]
fn a_step_reports_bad_rows_and_empty_blocks_are_zero() {
    let worker = LloydWorker::new(Backend::Cpu, &Default::default()).unwrap();
    let x = points(10, 4);
    let codebook = vlad::Codebook::new(x.slice(s![..3, ..])).unwrap();
    let empty = worker.step(x.slice(s![..0, ..]), &codebook).unwrap();
    assert_eq!(empty.counts, vec![0; 3]);
    assert!(empty.sums.iter().all(|&v| v == 0.0) && empty.inertia == 0.0);
    let mut bad = x.clone();
    bad[[7, 2]] = f32::NAN;
    let err = worker.step(bad.view(), &codebook).unwrap_err().to_string();
    assert!(err.contains("row 7"), "{err}");
    let narrow = Array2::<f32>::zeros((2, 3));
    assert!(worker.step(narrow.view(), &codebook).is_err());
}
