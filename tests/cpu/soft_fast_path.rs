//! The CPU soft pooling's fast path (src/backend/cpu/soft_aggregate.rs,
//! src/backend/cpu/soft_kernel.rs): the finiteness check fused into the pooling
//! for batches built with it deferred gives exactly the checked
//! constructors' error, on every route; values large enough to overflow the
//! scaled products are recomputed unscaled; weights near f32's smallest
//! normal stay accurate.

use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vlad::{Assignment, Backend, Batch, Codebook, Element, Encoder};

use crate::common::cases::offsets_from_sizes;

const F: usize = 40;
const K: usize = 12;

/// Ragged images (empty ones included, one long enough for several blocks
/// and chunks) of values in [0, 1).
fn rows(seed: u64) -> (Array2<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let offsets = offsets_from_sizes([3, 0, 70, 1, 600, 0, 9]);
    let n = offsets[offsets.len() - 1];
    (
        Array2::from_shape_fn((n, F), |_| rng.random::<f32>()),
        offsets,
    )
}

fn codebook_and_soft(seed: u64) -> (Codebook, Assignment) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let c = Array2::from_shape_fn((K, F), |_| rng.random::<f32>());
    let w = Array2::from_shape_fn((K, F), |_| (rng.random::<f32>() - 0.5) * 8.0);
    let b = Array1::from_shape_fn(K, |_| rng.random::<f32>() - 0.5);
    let soft = Assignment::soft(w.view(), b.view()).expect("finite parameters");
    (Codebook::from_owned(c).expect("finite"), soft)
}

fn encoder(codebook: &Codebook, assignment: &Assignment, norm: &str, backend: Backend) -> Encoder {
    Encoder::builder(codebook.clone())
        .assignment(assignment.clone())
        .normalization(norm.parse().expect("valid normalization"))
        .backend(backend)
        .build()
}

/// The checked constructor's error message for these rows.
fn checked_error<E: Element>(rows: &Array2<E>, offsets: &[usize]) -> String {
    match Batch::ragged(rows.view(), offsets) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("the checked constructor accepted a non-finite value"),
    }
}

fn routes(codebook: &Codebook, soft: &Assignment) -> Vec<(String, Encoder)> {
    let alpha = Assignment::soft_alpha(2.0).expect("α > 0");
    let mut out = Vec::new();
    for backend in [Backend::Cpu, Backend::Reference] {
        for (name, a) in [
            ("soft W/b", soft.clone()),
            ("soft α", alpha.clone()),
            ("hard", Assignment::Hard),
        ] {
            for norm in ["intra,l2", "rn,l2", "none"] {
                let what = format!("{backend:?} {name} {norm}");
                out.push((what, encoder(codebook, &a, norm, backend)));
            }
        }
    }
    out
}

/// Non-finite values anywhere: first row, middle of the long image, last
/// row; two at once (the first by row is named); every route.
#[test]
fn deferred_check_names_the_same_value_as_the_checked_constructor() {
    let (codebook, soft) = codebook_and_soft(3);
    let (good, offsets) = rows(4);
    let n = good.nrows();
    let places: [&[(usize, usize, f32)]; 5] = [
        &[(0, 0, f32::NAN)],
        &[(400, 17, f32::INFINITY)],
        &[(n - 1, F - 1, f32::NEG_INFINITY)],
        &[(650, 3, f32::NAN), (90, 39, f32::INFINITY)],
        &[(74, 5, f32::NAN), (74, 2, f32::NAN)],
    ];
    for bad in places {
        let mut rows = good.clone();
        for &(r, c, v) in bad {
            rows[[r, c]] = v;
        }
        let want = checked_error(&rows, &offsets);
        for (what, enc) in routes(&codebook, &soft) {
            match enc.encode_ragged(rows.view(), &offsets) {
                Err(e) => assert_eq!(e.to_string(), want, "{what} {bad:?}"),
                Ok(_) => panic!("{what} {bad:?}: a non-finite value was accepted"),
            }
            let batch = Batch::ragged_deferred(rows.view(), &offsets).expect("shapes fit");
            assert!(!batch.finite_checked());
            match enc.encode_batch(&batch) {
                Err(e) => assert_eq!(e.to_string(), want, "{what} {bad:?} (batch)"),
                Ok(_) => panic!("{what} {bad:?}: a non-finite value was accepted (batch)"),
            }
            match enc.assign_batch(&batch) {
                Err(e) => assert_eq!(e.to_string(), want, "{what} {bad:?} (assign)"),
                Ok(_) => panic!("{what} {bad:?}: assign accepted a non-finite value"),
            }
        }
    }
}

/// f64 values that overflow f32 are non-finite too (SPEC §6), found the
/// same way; fixed-size images through `Encoder::encode`.
#[test]
fn f64_overflowing_f32_and_fixed_images() {
    let (codebook, soft) = codebook_and_soft(5);
    let (good, _) = rows(6);
    let mut rows64 = good.mapv(|v| v as f64);
    rows64[[455, 7]] = 1e300;
    let offsets: Vec<usize> = (0..=good.nrows() / 7).map(|i| i * 7).collect();
    let rows64 = rows64
        .slice(ndarray::s![..offsets[offsets.len() - 1], ..])
        .to_owned();
    let want = checked_error(&rows64, &offsets);
    let enc = encoder(&codebook, &soft, "intra,l2", Backend::Cpu);
    let fixed = rows64
        .clone()
        .into_shape_with_order((offsets.len() - 1, 7, F))
        .expect("whole images");
    let err = enc.encode(fixed.view()).expect_err("non-finite in f32");
    assert_eq!(err.to_string(), want);
    match Batch::fixed(fixed.view()) {
        Err(e) => assert_eq!(e.to_string(), want),
        Ok(_) => panic!("the checked constructor accepted 1e300"),
    }
}

/// A finite image whose values are large enough to overflow the scaled
/// products (beyond 2^55; 1e19 here) is not an error: it is recomputed unscaled and
/// matches the reference, and an image before a non-finite one that
/// merely overflowed does not hide it.
#[test]
fn huge_finite_values_are_recomputed_and_do_not_hide_a_later_nan() {
    let (codebook, soft) = codebook_and_soft(7);
    let (mut rows, offsets) = rows(8);
    // Image 2 (rows 3..73): huge but finite.
    for r in 3..73 {
        for c in 0..F {
            rows[[r, c]] *= 1e19;
        }
    }
    for norm in ["intra,l2", "rn,intra,l2"] {
        let cpu = encoder(&codebook, &soft, norm, Backend::Cpu)
            .encode_ragged(rows.view(), &offsets)
            .expect("finite input");
        let reference = encoder(&codebook, &soft, norm, Backend::Reference)
            .encode_ragged(rows.view(), &offsets)
            .expect("finite input");
        for ((i, &y), &r) in cpu.indexed_iter().zip(reference.iter()) {
            assert!(y.is_finite(), "{norm} {i:?}");
            assert!((y - r).abs() <= 1e-5, "{norm} {i:?}: {y} vs {r}");
        }
    }
    let mut bad = rows.clone();
    bad[[500, 9]] = f32::NAN;
    let want = checked_error(&bad, &offsets);
    let err = encoder(&codebook, &soft, "intra,l2", Backend::Cpu)
        .encode_ragged(bad.view(), &offsets)
        .expect_err("NaN");
    assert_eq!(err.to_string(), want);
}

/// A temperature so large that most weights fall near or below f32's
/// smallest normal (the range the scaled products keep out of subnormals):
/// still within SPEC §4 of the reference, and deterministic.
#[test]
fn weights_near_the_smallest_normal_stay_accurate() {
    let (codebook, _) = codebook_and_soft(9);
    let (rows, offsets) = rows(10);
    let alpha = Assignment::soft_alpha(25.0).expect("α > 0");
    let cpu = encoder(&codebook, &alpha, "intra,l2", Backend::Cpu);
    let got = cpu.encode_ragged(rows.view(), &offsets).expect("encodes");
    let want = encoder(&codebook, &alpha, "intra,l2", Backend::Reference)
        .encode_ragged(rows.view(), &offsets)
        .expect("encodes");
    for ((i, &y), &r) in got.indexed_iter().zip(want.iter()) {
        assert!((y - r).abs() <= 1e-5, "{i:?}: {y} vs {r}");
    }
    let again = cpu.encode_ragged(rows.view(), &offsets).expect("encodes");
    assert!(
        got.iter()
            .zip(&again)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}

/// Deferred and checked batches give the same bits when every value is
/// finite.
#[test]
fn deferred_and_checked_batches_encode_alike() {
    let (codebook, soft) = codebook_and_soft(11);
    let (rows, offsets) = rows(12);
    let enc = encoder(&codebook, &soft, "rn,intra,l2", Backend::Cpu);
    let checked = Batch::ragged(rows.view(), &offsets).expect("finite");
    assert!(checked.finite_checked());
    let a = enc.encode_batch(&checked).expect("encodes").vlad;
    let b = enc.encode_ragged(rows.view(), &offsets).expect("encodes");
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
}
