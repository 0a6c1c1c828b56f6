//! SPEC §10 on the cpu backend (and the reference's own sanity): soft
//! (NetVLAD) assignment from `W`/`b` and from `α`, residual normalization
//! (`rn`) with hard and soft assignment, every normalization after them,
//! ragged images with empty ones, f32/f64/u8 input — each against the f64
//! oracle `reference` within SPEC §4 — plus the large-α limit,
//! determinism across runs and thread counts, and every bad input.

use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vlad::{Assignment, Backend, Batch, Codebook, Element, Encoder, Normalization, Step};

use crate::common::cases::in_pool;
use crate::common::soft_case::{self, Case, NORMS, check_against_reference, ragged_offsets};

/// Ragged images, some empty (first, middle and last), one long enough to
/// span several aggregation blocks.
fn case<E: Element>(seed: u64, f: usize, k: usize, scale: f32, make: impl Fn(f32) -> E) -> Case<E> {
    soft_case::case(seed, f, k, scale, make, |rng| {
        ragged_offsets(rng, 12, 90, 5, 1300)
    })
}

fn encode<E: Element>(
    case: &Case<E>,
    assignment: &Assignment,
    norm: &str,
    backend: Backend,
) -> Array2<f32> {
    Encoder::builder(case.codebook.clone())
        .assignment(assignment.clone())
        .normalization(norm.parse().expect("valid normalization"))
        .backend(backend)
        .build()
        .encode_ragged(case.rows.view(), &case.offsets)
        .expect("encodes")
}

fn all_cases<E: Element>(dtype: &str, case: &Case<E>) {
    let assignments = [
        ("hard", Assignment::Hard),
        ("soft W/b", case.soft.clone()),
        ("soft α", case.alpha.clone()),
    ];
    for (name, assignment) in &assignments {
        for norm in NORMS {
            if assignment.is_hard() && !norm.starts_with("rn") {
                continue; // the hard path without rn is tested elsewhere
            }
            let what = format!("{dtype} cpu {name}");
            let got = encode(case, assignment, norm, Backend::Cpu);
            check_against_reference(&what, case, assignment, norm, got.view());
        }
    }
}

#[test]
fn cpu_matches_reference_f32() {
    all_cases("f32", &case(1, 40, 24, 1.0, |x| x));
}

#[test]
fn cpu_matches_reference_f64() {
    all_cases("f64", &case(2, 19, 7, 1.0, |x| x as f64 * 2.0 - 1.0));
}

#[test]
fn cpu_matches_reference_u8() {
    all_cases("u8", &case(3, 32, 16, 255.0, |x| (x * 255.0) as u8));
}

#[test]
fn reference_backend_is_the_oracle() {
    let case = case(4, 8, 5, 1.0, |x| x);
    for norm in ["rn,intra,l2", "mass,ssr,l2", "none"] {
        let got = encode(&case, &case.alpha, norm, Backend::Reference);
        let batch = Batch::ragged(case.rows.view(), &case.offsets).unwrap();
        let (want, _) = vlad::backend::reference::encode(
            &case.codebook,
            &batch,
            &case.alpha,
            &norm.parse().unwrap(),
        );
        assert_eq!(got, want.mapv(|x| x as f32), "{norm}");
    }
}

/// The reference itself, by hand: one descriptor, two centroids, α = ln 3
/// on distances 0 and 1 gives weights 3/4 and 1/4.
#[test]
fn reference_by_hand() {
    let codebook = Codebook::new(ndarray::array![[0.0f32, 0.0], [1.0, 0.0]].view()).unwrap();
    let rows = ndarray::array![[0.0f32, 0.0]];
    let batch = Batch::single(rows.view()).unwrap();
    let alpha = Assignment::soft_alpha(3f32.ln()).unwrap();
    let (vlad, labels) =
        vlad::backend::reference::encode(&codebook, &batch, &alpha, &Normalization::none());
    assert_eq!(labels, vec![0]);
    let want = [0.0, 0.0, -0.25, 0.0];
    for (g, w) in vlad.iter().zip(want) {
        assert!((g - w).abs() < 1e-7, "{vlad:?}");
    }
    let (mass, _) = (
        vlad::backend::reference::aggregate(&codebook, &batch, &alpha, false).1,
        0,
    );
    assert!((mass[[0, 0]] - 0.75).abs() < 1e-7 && (mass[[0, 1]] - 0.25).abs() < 1e-7);
    // rn: the residual to c_1 is (−1, 0), already unit; with mass the block
    // is −1 / 1 … divided by the soft count 1/4: (−1, 0).
    let (vlad, _) =
        vlad::backend::reference::encode(&codebook, &batch, &alpha, &"rn,mass".parse().unwrap());
    assert!(
        (vlad[[0, 2]] + 1.0).abs() < 1e-7 && vlad[[0, 0]] == 0.0,
        "{vlad:?}"
    );
}

/// SPEC §10: soft assignment with α → ∞ tends to hard assignment.
#[test]
fn large_alpha_tends_to_hard() {
    // Descriptors near their centroid (no near ties), so the nearest
    // centroid wins by a clear margin once α is large.
    let mut case = case(5, 16, 12, 1.0, |x| x);
    let mut rng = ChaCha8Rng::seed_from_u64(55);
    let centroids = case.codebook.centroids().to_owned();
    for mut row in case.rows.outer_iter_mut() {
        let c = centroids.row(rng.random_range(0..12));
        for (x, &y) in row.iter_mut().zip(c) {
            *x = y + (rng.random::<f32>() - 0.5) * 0.1;
        }
    }
    for norm in ["none", "mass,intra,l2", "rn,ssr,l2"] {
        let hard = encode(&case, &Assignment::Hard, norm, Backend::Cpu);
        let mut previous = f64::INFINITY;
        for alpha in [1.0, 30.0, 3000.0] {
            let soft = encode(
                &case,
                &Assignment::soft_alpha(alpha).unwrap(),
                norm,
                Backend::Cpu,
            );
            let diff = soft
                .iter()
                .zip(&hard)
                .map(|(a, b)| ((a - b) as f64).abs())
                .fold(0.0, f64::max);
            assert!(
                diff <= previous,
                "{norm}: α = {alpha} moved away from hard ({diff})"
            );
            previous = diff;
        }
        assert!(
            previous < 1e-4,
            "{norm}: α = 3000 still {previous} from hard"
        );
    }
}

#[test]
fn deterministic_across_runs_and_thread_counts() {
    let case = case(6, 48, 32, 1.0, |x| x);
    for (assignment, norm) in [
        (&case.soft, "intra,l2"),
        (&case.alpha, "mass,ssr,l2"),
        (&case.soft, "rn,none"),
        (&Assignment::Hard, "rn,ssr,l2"),
    ] {
        let norm = if norm == "rn,none" { "rn" } else { norm };
        let first = encode(&case, assignment, norm, Backend::Cpu);
        for threads in [1, 2, 3, 5] {
            let again = in_pool(threads, || encode(&case, assignment, norm, Backend::Cpu));
            let same = first
                .iter()
                .zip(&again)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{norm}: {threads} threads changed the output");
        }
    }
}

#[test]
fn bad_parameters_are_refused() {
    let w = Array2::<f32>::ones((3, 4));
    assert!(Assignment::soft(w.view(), Array1::zeros(2).view()).is_err());
    assert!(
        Assignment::soft(Array2::<f32>::zeros((0, 4)).view(), Array1::zeros(0).view()).is_err()
    );
    let mut bad = w.clone();
    bad[[1, 2]] = f32::NAN;
    let err = Assignment::soft(bad.view(), Array1::zeros(3).view()).unwrap_err();
    assert!(err.to_string().contains("row 1"), "{err}");
    let bias = Array1::from(vec![0.0, f32::INFINITY, 0.0]);
    assert!(Assignment::soft(w.view(), bias.view()).is_err());
    for alpha in [0.0, -1.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        assert!(Assignment::soft_alpha(alpha).is_err(), "α = {alpha}");
    }
    // rn anywhere but first.
    for norm in ["ssr,rn", "l2,rn", "rn,rn", "mass,rn,l2"] {
        assert!(norm.parse::<Normalization>().is_err(), "{norm}");
    }
    assert!(Normalization::new(vec![Step::L2, Step::ResidualNorm]).is_err());
}

#[test]
fn parameters_must_fit_the_codebook() {
    let case = case(7, 8, 5, 1.0, |x| x);
    let encode_with = |assignment: Assignment, backend: Backend| {
        Encoder::builder(case.codebook.clone())
            .assignment(assignment)
            .backend(backend)
            .build()
            .encode_ragged(case.rows.view(), &case.offsets)
    };
    for backend in [Backend::Cpu, Backend::Reference] {
        for (k, f) in [(5, 9), (4, 8), (6, 8)] {
            let soft =
                Assignment::soft(Array2::zeros((k, f)).view(), Array1::zeros(k).view()).unwrap();
            let err = encode_with(soft, backend).unwrap_err();
            assert!(
                matches!(err, vlad::VladError::DimensionMismatch(_)),
                "{err}"
            );
        }
    }
    // Labels make no sense with soft assignment.
    let labels = vec![0u32; case.rows.nrows()];
    let err = Encoder::builder(case.codebook.clone())
        .assignment(case.alpha.clone())
        .backend(Backend::Cpu)
        .build()
        .encode_ragged_with_labels(case.rows.view(), &case.offsets, &labels)
        .unwrap_err();
    assert!(matches!(err, vlad::VladError::InvalidArgument(_)), "{err}");
}

/// Hard assignment with `rn` from given labels matches the reference from
/// the same labels (the labels path of the hard route).
#[test]
fn rn_with_given_labels() {
    let case = case(8, 12, 6, 1.0, |x| x);
    let labels: Vec<u32> = (0..case.rows.nrows()).map(|i| (i * 7 % 6) as u32).collect();
    for norm in ["rn", "rn,intra,l2"] {
        let got = Encoder::builder(case.codebook.clone())
            .normalization(norm.parse().unwrap())
            .backend(Backend::Cpu)
            .build()
            .encode_ragged_with_labels(case.rows.view(), &case.offsets, &labels)
            .unwrap();
        let batch = Batch::ragged(case.rows.view(), &case.offsets)
            .unwrap()
            .with_labels(&labels, 6)
            .unwrap();
        let (want, used) = vlad::backend::reference::encode(
            &case.codebook,
            &batch,
            &Assignment::Hard,
            &norm.parse().unwrap(),
        );
        assert_eq!(used, labels);
        for (g, w) in got.iter().zip(&want) {
            assert!(((*g as f64) - w).abs() <= 1e-5, "{norm}: {g} vs {w}");
        }
    }
}

/// `auto` follows the usual rule with SPEC §10 too: the cpu backend (and
/// exactly its output) unless a hardware adapter runs it, then within
/// SPEC §4 of the cpu's. (The gpu backend itself: tests/gpu/soft_encode.rs.)
#[test]
fn auto_runs_cpu_or_a_hardware_gpu() {
    let case = case(9, 8, 5, 1.0, |x| x);
    for (assignment, norm) in [(&case.alpha, "intra,l2"), (&Assignment::Hard, "rn,l2")] {
        let encoder = |backend| {
            Encoder::builder(case.codebook.clone())
                .assignment(assignment.clone())
                .normalization(norm.parse().unwrap())
                .backend(backend)
                .build()
        };
        let batch = Batch::ragged(case.rows.view(), &case.offsets).unwrap();
        let auto = encoder(Backend::Auto).encode_batch(&batch).unwrap();
        let cpu = encoder(Backend::Cpu).encode_batch(&batch).unwrap();
        if auto.report.backend == Backend::Cpu {
            assert_eq!(auto.vlad, cpu.vlad);
        } else {
            assert_eq!(auto.report.backend, Backend::Gpu);
            for (a, c) in auto.vlad.iter().zip(&cpu.vlad) {
                assert!((a - c).abs() <= 2e-5, "{norm}: auto (gpu) {a} vs cpu {c}");
            }
        }
    }
}

/// `--soft-alpha α` is the soft assignment with `W = 2α·C`, `b = −α‖c‖²`:
/// both routes give the same encoding (the ‖v‖² term cancels in the
/// softmax), on the reference and, within SPEC §4, on the cpu backend.
#[test]
fn alpha_is_weights_and_bias_from_the_centroids() {
    let case = case(10, 20, 9, 1.0, |x| x);
    let alpha = 3.0f32;
    let c = case.codebook.centroids().mapv(|x| x as f64);
    let w = c.mapv(|x| (2.0 * alpha as f64 * x) as f32);
    let b = Array1::from_shape_fn(9, |k| (-(alpha as f64) * c.row(k).dot(&c.row(k))) as f32);
    let explicit = Assignment::soft(w.view(), b.view()).unwrap();
    let from_alpha = Assignment::soft_alpha(alpha).unwrap();
    for backend in [Backend::Reference, Backend::Cpu] {
        for norm in ["intra,l2", "rn,mass,ssr,l2"] {
            let x = encode(&case, &explicit, norm, backend);
            let y = encode(&case, &from_alpha, norm, backend);
            for (a, b) in x.iter().zip(&y) {
                assert!((a - b).abs() <= 1e-5, "{backend} {norm}: {a} vs {b}");
            }
        }
    }
}
