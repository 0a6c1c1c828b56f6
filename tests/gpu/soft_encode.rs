//! SPEC §10 on the gpu backend: soft (NetVLAD) assignment from `W`/`b` and
//! from `α`, residual normalization (`rn`) with hard and soft assignment,
//! every normalization after them, ragged images with empty ones,
//! f32/f64/u8 input — each against the f64 oracle `reference` within
//! SPEC §4 — plus bitwise determinism across runs, given labels under hard
//! `rn`, and chunking forced small (images split across chunks) matching
//! too. Sizes stay modest: lavapipe runs the shaders on the CPU.

use ndarray::Array2;
use vlad::{Assignment, Backend, Batch, Element, Encoder, Normalization};

use crate::common::require_gpu;
use crate::common::soft_case::{self, Case, NORMS, check_against_reference, ragged_offsets};

/// Ragged images, some empty (first, middle and last), one long enough to
/// span many aggregation blocks (and, with a small binding cap, chunks).
fn case<E: Element>(seed: u64, f: usize, k: usize, scale: f32, make: impl Fn(f32) -> E) -> Case<E> {
    soft_case::case(seed, f, k, scale, make, |rng| {
        ragged_offsets(rng, 9, 60, 4, 700)
    })
}

fn encoder<E>(case: &Case<E>, assignment: &Assignment, norm: &str, cap: Option<u64>) -> Encoder {
    Encoder::builder(case.codebook.clone())
        .assignment(assignment.clone())
        .normalization(norm.parse().expect("valid normalization"))
        .backend(Backend::Gpu)
        .gpu_max_binding_bytes(cap)
        .build()
}

fn encode<E: Element>(
    case: &Case<E>,
    assignment: &Assignment,
    norm: &str,
    cap: Option<u64>,
) -> Array2<f32> {
    encoder(case, assignment, norm, cap)
        .encode_ragged(case.rows.view(), &case.offsets)
        .expect("encodes on the gpu backend")
}

/// Fewer steps lists, for the variations whose every list would mostly
/// re-run the same shaders (each encoder compiles a session: seconds on
/// lavapipe).
const SOME_NORMS: [&str; 6] = [
    "none",
    "mass",
    "rn",
    "rn,mass",
    "mass,intra,l2",
    "rn,intra,l2",
];

fn all_cases<E: Element>(dtype: &str, case: &Case<E>, cap: Option<u64>, norms: &[&str]) {
    let assignments = [
        ("hard", Assignment::Hard),
        ("soft W/b", case.soft.clone()),
        ("soft α", case.alpha.clone()),
    ];
    for (name, assignment) in &assignments {
        for &norm in norms {
            if assignment.is_hard() && !norm.starts_with("rn") {
                continue; // the hard path without rn is tested elsewhere
            }
            let what = format!("{dtype} gpu {name} cap={cap:?}");
            let got = encode(case, assignment, norm, cap);
            check_against_reference(&what, case, assignment, norm, got.view());
        }
    }
}

#[test]
fn gpu_matches_reference_f32() {
    require_gpu!();
    all_cases("f32", &case(1, 40, 24, 1.0, |x| x), None, &NORMS);
}

#[test]
fn gpu_matches_reference_f64() {
    require_gpu!();
    all_cases(
        "f64",
        &case(2, 19, 7, 1.0, |x| x as f64 * 2.0 - 1.0),
        None,
        &SOME_NORMS,
    );
}

#[test]
fn gpu_matches_reference_u8() {
    require_gpu!();
    all_cases(
        "u8",
        &case(3, 32, 16, 255.0, |x| (x * 255.0) as u8),
        None,
        &NORMS,
    );
}

/// A binding cap of 4 KiB: F = 16, K = 8 gives about 64 rows per chunk, so
/// the 700-row image is split into many pieces (summed on the host) and
/// small images share chunks. Within SPEC §4 of the reference, and within
/// rounding of the unchunked run.
#[test]
fn small_chunks_split_images_and_still_match() {
    require_gpu!();
    let case = case(4, 16, 8, 1.0, |x| x);
    let cap = Some(4096);
    all_cases("f32", &case, cap, &SOME_NORMS);
    for assignment in [case.soft.clone(), Assignment::Hard] {
        for norm in ["rn,intra,l2", "mass,intra,l2"] {
            if assignment.is_hard() && !norm.starts_with("rn") {
                continue;
            }
            let whole = encode(&case, &assignment, norm, None);
            let split = encode(&case, &assignment, norm, cap);
            for (a, b) in whole.iter().zip(&split) {
                assert!(
                    (a - b).abs() <= 1e-5,
                    "{norm}: {a} unchunked vs {b} chunked"
                );
            }
        }
    }
}

/// SPEC §5: same input, same backend, same device → the same bits, from a
/// fresh encoder (and session) and from the same one again.
#[test]
fn runs_are_bitwise_identical() {
    require_gpu!();
    let case = case(5, 24, 12, 1.0, |x| x);
    for assignment in [case.soft.clone(), case.alpha.clone(), Assignment::Hard] {
        for norm in ["rn,ssr,l2", "none", "mass,intra,l2"] {
            if assignment.is_hard() && !norm.starts_with("rn") {
                continue;
            }
            let first = encode(&case, &assignment, norm, None);
            let enc = encoder(&case, &assignment, norm, Some(8192));
            let a = enc.encode_ragged(case.rows.view(), &case.offsets).unwrap();
            let b = enc.encode_ragged(case.rows.view(), &case.offsets).unwrap();
            let again = encode(&case, &assignment, norm, None);
            let bits = |x: &Array2<f32>| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&first), bits(&again), "{norm}: two sessions");
            assert_eq!(bits(&a), bits(&b), "{norm}: one session, chunked, twice");
        }
    }
}

/// Hard assignment with `rn` from given labels: the same as letting the
/// GPU assign (its labels are the nearest centroids), and labels come back
/// unchanged; soft assignment reports the centroid of largest weight.
#[test]
fn given_labels_and_reported_labels() {
    require_gpu!();
    let case = case(6, 12, 6, 1.0, |x| x);
    let enc = encoder(&case, &Assignment::Hard, "rn,ssr,l2", None);
    let batch = Batch::ragged(case.rows.view(), &case.offsets).unwrap();
    let computed = enc.encode_batch(&batch).unwrap();
    let labelled = Batch::ragged(case.rows.view(), &case.offsets)
        .unwrap()
        .with_labels(&computed.labels, 6)
        .unwrap();
    let given = enc.encode_batch(&labelled).unwrap();
    assert_eq!(given.labels, computed.labels);
    assert_eq!(given.vlad, computed.vlad);

    let soft = encoder(&case, &case.soft, "intra,l2", None)
        .encode_batch(&batch)
        .unwrap();
    let (_, want) = vlad::backend::reference::encode(
        &case.codebook,
        &batch,
        &case.soft,
        &Normalization::none(),
    );
    let differ = soft
        .labels
        .iter()
        .zip(&want)
        .filter(|(a, b)| a != b)
        .count();
    // Only near-ties may differ (none expected with random data).
    assert!(differ <= soft.labels.len() / 100, "{differ} labels differ");
    // Soft assignment with given labels is refused, as on the cpu.
    assert!(
        encoder(&case, &case.soft, "intra,l2", None)
            .encode_batch(&labelled)
            .is_err()
    );
}
