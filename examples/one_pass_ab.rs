//! The cpu backend's hard encoding in one pass against the two passes it
//! replaced (assign every row, then aggregate them reading every row
//! again), interleaved A B A B in one process on the same seeded data, so
//! drift on a shared machine falls on both alike.
//!
//! ```sh
//! cargo run --release --example one_pass_ab -- [REPEATS]
//! ```
//!
//! Prints one line per shape: the median seconds of each (after one
//! warm-up each), the ratio one/two, and that both gave the same bits; then
//! the same for k-means' Lloyd step (labels, distances, cluster sums) on
//! those rows.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vlad::backend::cpu::{aggregate, assign, encode_into, normalize, one_pass};
use vlad::{Batch, Codebook, Normalization, StageTimes};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let repeats: usize = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(11);
    let norm: Normalization = "ssr,l2".parse().unwrap_or_else(|e| panic!("{e}"));
    for (t, l, f, k) in [
        (256, 128, 64, 16),
        (200, 500, 128, 64),
        (2000, 500, 128, 256),
    ] {
        let n = t * l;
        let mut rng = ChaCha8Rng::seed_from_u64(1234);
        let rows: Vec<f32> = (0..n * f).map(|_| rng.random::<f32>()).collect();
        let centroids: Vec<f32> = (0..k)
            .flat_map(|_| {
                let i = rng.random_range(0..n);
                rows[i * f..(i + 1) * f].to_vec()
            })
            .collect();
        let codebook = Codebook::from_owned(
            ndarray::Array2::from_shape_vec((k, f), centroids).unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let view =
            ndarray::ArrayView3::from_shape((t, l, f), &rows[..]).unwrap_or_else(|e| panic!("{e}"));
        let batch = Batch::fixed(view).unwrap_or_else(|e| panic!("{e}"));
        let mut two = vec![0f32; t * k * f];
        let mut one = vec![0f32; t * k * f];
        let two_passes = |out: &mut [f32]| {
            let labels = assign::assign_rows(&codebook, batch.rows(), f);
            let mass = aggregate::aggregate_into(&codebook, &batch, &labels, out);
            let mass = mass.as_slice().unwrap_or_default();
            normalize::normalize_flat_rows(out, mass, k, f, &norm);
        };
        let one_pass = |out: &mut [f32]| {
            encode_into(&codebook, &batch, &norm, &mut StageTimes::new(), out, false);
        };
        two_passes(&mut two);
        one_pass(&mut one);
        let same = two
            .iter()
            .zip(&one)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..repeats {
            let start = Instant::now();
            two_passes(&mut two);
            a.push(start.elapsed().as_secs_f64());
            let start = Instant::now();
            one_pass(&mut one);
            b.push(start.elapsed().as_secs_f64());
        }
        let (a, b) = (median(a), median(b));
        println!(
            "{t}x{l}x{f} K{k}: two passes {:.2} ms, one pass {:.2} ms, ratio {:.3}, same bits: {same}",
            a * 1e3,
            b * 1e3,
            b / a
        );
        // k-means' Lloyd step on the same rows: labels, distances, sums.
        let lloyd_two = || {
            let (labels, distances) = assign::assign_rows_with_distances(&codebook, &rows, f);
            let (mut sums, mut counts) = (vec![0f64; k * f], vec![0u64; k]);
            aggregate::add_cluster_sums(&rows, f, &labels, k, &mut sums, &mut counts);
            (labels, distances, sums)
        };
        let lloyd_one = || {
            let (mut sums, mut counts) = (vec![0f64; k * f], vec![0u64; k]);
            let (labels, distances) =
                one_pass::label_and_sum_rows(&codebook, &rows, &mut sums, &mut counts);
            (labels, distances, sums)
        };
        let same = lloyd_two() == lloyd_one();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..repeats {
            let start = Instant::now();
            std::hint::black_box(lloyd_two());
            a.push(start.elapsed().as_secs_f64());
            let start = Instant::now();
            std::hint::black_box(lloyd_one());
            b.push(start.elapsed().as_secs_f64());
        }
        let (a, b) = (median(a), median(b));
        println!(
            "  Lloyd step on those {n} rows: two passes {:.2} ms, one pass {:.2} ms, ratio {:.3}, same: {same}",
            a * 1e3,
            b * 1e3,
            b / a
        );
    }
}
