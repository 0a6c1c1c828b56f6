//! SPEC §5: the cpu backend's output is bitwise identical whatever the
//! number of threads, on inputs split into many blocks (assignment row
//! blocks, many images, and one image long enough to be summed in parallel
//! partials).

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vlad::backend::cpu::{aggregate, assign};
use vlad::{Backend, Codebook, Element, Encoder};

use crate::common::cases::in_pool;

const THREADS: [usize; 4] = [1, 2, 3, 5];

/// 150 small images of 0..120 descriptors, then one of 8·PARTIAL_ROWS + 123.
fn offsets(rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut offsets = vec![0];
    for _ in 0..150 {
        offsets.push(offsets[offsets.len() - 1] + rng.random_range(0..120));
    }
    offsets.push(offsets[offsets.len() - 1] + 8 * aggregate::PARTIAL_ROWS + 123);
    offsets
}

fn check_all_thread_counts<E: Element>(make: impl Fn(&mut ChaCha8Rng) -> E) {
    let (f, k) = (24, 40);
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let offsets = offsets(&mut rng);
    let n = offsets[offsets.len() - 1];
    let rows = Array2::from_shape_fn((n, f), |_| make(&mut rng));
    let centroids = Array2::from_shape_fn((k, f), |_| rng.random::<f32>() * 2.0 - 1.0);
    let codebook = Codebook::from_owned(centroids).expect("finite centroids");
    let flat = rows.as_slice().expect("standard layout");

    let run = |threads: usize| {
        in_pool(threads, || {
            let mut out = Vec::new();
            for norm in ["none", "ssr,l2", "mass,ssr,intra,l2"] {
                let encoder = Encoder::builder(codebook.clone())
                    .normalization(norm.parse().expect("valid normalization"))
                    .backend(Backend::Cpu)
                    .build();
                let vlad = encoder
                    .encode_ragged(rows.view(), &offsets)
                    .expect("valid input");
                out.push(vlad.iter().map(|x| x.to_bits()).collect::<Vec<u32>>());
            }
            let (labels, distances) = assign::assign_rows_with_distances(&codebook, flat, f);
            let (sums, counts) = aggregate::cluster_sums(flat, f, &labels, k);
            (out, labels, distances, sums, counts)
        })
    };
    let (vlads, labels, distances, sums, counts) = run(1);
    assert!(labels.len() > 9 * 4096, "enough rows for many row blocks");
    for threads in &THREADS[1..] {
        let other = run(*threads);
        assert!(other.0 == vlads, "{threads} threads: encodings differ");
        assert!(other.1 == labels, "{threads} threads: labels differ");
        let bits = |d: &[f32]| d.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert!(
            bits(&other.2) == bits(&distances),
            "{threads} threads: distances differ"
        );
        let bits64 = |d: &[f64]| d.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert!(
            bits64(&other.3) == bits64(&sums),
            "{threads} threads: cluster sums differ"
        );
        assert!(other.4 == counts, "{threads} threads: counts differ");
    }
}

#[test]
fn f32_output_is_the_same_whatever_the_thread_count() {
    check_all_thread_counts(|rng| rng.random::<f32>() * 2.0 - 1.0);
}

#[test]
fn f64_output_is_the_same_whatever_the_thread_count() {
    check_all_thread_counts(|rng| rng.random::<f64>() * 2.0 - 1.0);
}

#[test]
fn u8_output_is_the_same_whatever_the_thread_count() {
    check_all_thread_counts(|rng| rng.random::<u8>());
}
