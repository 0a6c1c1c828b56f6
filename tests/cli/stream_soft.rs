//! Soft assignment (W/b and α) and `rn` streamed (SPEC §10, §11): `vlad
//! encode` with a small `--memory-limit` cuts the input into many batches,
//! with batch boundaries between images, inside images (split into row
//! pieces) and empty images at the boundaries, and writes bit for bit the
//! library's in-memory encoding.

use std::path::Path;

use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use vlad::{Assignment, Backend, Codebook, Encoder, Normalization};

use crate::common::cases::normal_ragged;
use crate::util::{Cmd, Folder, p, raw_field, read, stderr, stdout};

const F: usize = 16;
const K: usize = 8;
/// As tests/cli/stream.rs: with 256 KiB the cpu backend splits the images
/// of 5000, 9000 and 12000 rows and groups the small and empty ones.
const SIZES: [usize; 12] = [0, 5000, 0, 3, 9000, 0, 1, 12000, 7, 0, 700, 0];

struct Case {
    folder: Folder,
    rows: Array2<f32>,
    offsets: Vec<usize>,
    centroids: Array2<f32>,
    weights: Array2<f32>,
    bias: Array1<f32>,
}

fn case() -> Case {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let normal = Normal::new(0.0f32, 1.0).unwrap();
    let data = normal_ragged(&mut rng, &SIZES, F, K);
    let weights = Array2::from_shape_fn((K, F), |_| normal.sample(&mut rng) * 0.5);
    let bias = Array1::from_shape_fn(K, |_| normal.sample(&mut rng));
    let folder = Folder::new();
    folder.write("d.npy", &data.rows);
    folder.write("c.npy", &data.centroids);
    folder.write("w.npy", &weights);
    folder.write("b.npy", &bias);
    let o: Array1<i64> = data.offsets.iter().map(|&o| o as i64).collect();
    folder.write("o.npy", &o);
    Case {
        folder,
        rows: data.rows,
        offsets: data.offsets,
        centroids: data.centroids,
        weights,
        bias,
    }
}

/// `vlad encode` of the case with a 256 KiB memory limit on `backend` (GPU
/// bindings capped at `max_binding` bytes, if given) runs in more than five
/// batches and writes bit for bit what `lib` encodes in memory under the
/// same cap; returns the run's `--json` report.
fn stream_is_in_memory(
    case: &Case,
    backend: &str,
    lib: Backend,
    extra: &[&str],
    norm: &str,
    assignment: &Assignment,
    max_binding: Option<u64>,
) -> serde_json::Value {
    let what = format!("{backend} {extra:?} {norm}");
    let path = |name: &str| p(&case.folder.path(name)).to_string();
    let out = path("v.npy");
    let cmd = Cmd::encode()
        .descriptors(path("d.npy"))
        .centroids(path("c.npy"))
        .offsets(path("o.npy"))
        .out(&out)
        .backend(backend)
        .norm(norm)
        .memory_limit("256KiB")
        .json()
        .args(extra);
    let run = match max_binding {
        Some(cap) => cmd.run_with_env(&[("VLAD_GPU_MAX_BINDING_BYTES", &cap.to_string())]),
        None => cmd.run(),
    };
    assert!(run.status.success(), "{what}: {}", stderr(&run));
    let report: serde_json::Value = serde_json::from_str(&stdout(&run)).unwrap();
    assert!(report["batches"].as_u64().unwrap() > 5, "{what}: {report}");
    let streamed: Array2<f32> = read(Path::new(&out));
    let in_memory = Encoder::builder(Codebook::new(case.centroids.view()).unwrap())
        .backend(lib)
        .normalization(norm.parse::<Normalization>().unwrap())
        .assignment(assignment.clone())
        .gpu_max_binding_bytes(max_binding)
        .build()
        .encode_ragged(case.rows.view(), &case.offsets)
        .unwrap();
    assert_eq!(streamed.dim(), in_memory.dim(), "{what}");
    let first = streamed
        .iter()
        .zip(in_memory.iter())
        .position(|(a, b)| a.to_bits() != b.to_bits());
    assert_eq!(first, None, "{what}: first differing element");
    report
}

#[test]
fn soft_and_rn_stream_bitwise_the_in_memory_encoding() {
    let case = case();
    let path = |name: &str| p(&case.folder.path(name)).to_string();
    let (w, b) = (path("w.npy"), path("b.npy"));
    let soft_wb = Assignment::soft(case.weights.view(), case.bias.view()).unwrap();
    let soft_alpha = Assignment::soft_alpha(0.5).unwrap();
    let runs: [(&[&str], &str, &Assignment); 5] = [
        (
            &["--soft-weights", &w, "--soft-bias", &b],
            "intra,l2",
            &soft_wb,
        ),
        (
            &["--soft-weights", &w, "--soft-bias", &b],
            "rn,mass",
            &soft_wb,
        ),
        (&["--soft-alpha", "0.5"], "intra,l2", &soft_alpha),
        (&["--soft-alpha", "0.5"], "rn,ssr,l2", &soft_alpha),
        (&[], "rn,ssr,l2", &Assignment::Hard),
    ];
    for (backend, lib) in [("cpu", Backend::Cpu), ("reference", Backend::Reference)] {
        for (extra, norm, assignment) in &runs {
            let what = format!("{backend} {extra:?} {norm}");
            let report = stream_is_in_memory(&case, backend, lib, extra, norm, assignment, None);
            assert_eq!(report["assignment"], assignment.name(), "{what}");
            if backend == "cpu" {
                // Images cut into pieces, summed across them.
                assert!(report["split_images"].as_u64().unwrap() >= 3, "{what}");
            }
        }
    }
}

/// The GPU's soft route streamed: with 16 KiB bindings the in-memory run
/// splits the large images into pieces, and the stream's batches follow
/// its chunks, pieces added on the GPU one by one.
#[cfg(feature = "gpu")]
#[test]
fn gpu_soft_stream_is_bitwise_the_in_memory_encoding() {
    crate::common::require_gpu!();
    let case = case();
    let path = |name: &str| p(&case.folder.path(name)).to_string();
    let (w, b) = (path("w.npy"), path("b.npy"));
    let soft_wb = Assignment::soft(case.weights.view(), case.bias.view()).unwrap();
    let soft_alpha = Assignment::soft_alpha(0.5).unwrap();
    let runs: [(&[&str], &str, &Assignment); 2] = [
        (
            &["--soft-weights", &w, "--soft-bias", &b],
            "mass,intra,l2",
            &soft_wb,
        ),
        (&["--soft-alpha", "0.5"], "rn,ssr,l2", &soft_alpha),
    ];
    for (extra, norm, assignment) in &runs {
        let what = format!("gpu {extra:?} {norm}");
        let report = stream_is_in_memory(
            &case,
            "gpu",
            Backend::Gpu,
            extra,
            norm,
            assignment,
            Some(16384),
        );
        assert!(report["split_images"].as_u64().unwrap() >= 3, "{what}");
    }
}

/// `--verify` streamed, batch by batch, reports what verifying the whole
/// in-memory encoding reports: the same label agreement, largest error
/// and counts, for hard and soft assignment.
#[test]
fn verify_streamed_reports_what_it_reports_in_memory() {
    let case = case();
    let soft_alpha = Assignment::soft_alpha(0.5).unwrap();
    for (extra, norm, assignment) in [
        (&[][..], "ssr,l2", &Assignment::Hard),
        (&[][..], "none", &Assignment::Hard),
        (&["--soft-alpha", "0.5"][..], "intra,l2", &soft_alpha),
    ] {
        let what = format!("{extra:?} {norm}");
        let out = case.folder.path("v.npy");
        let (d, c, o) = (
            case.folder.path("d.npy"),
            case.folder.path("c.npy"),
            case.folder.path("o.npy"),
        );
        let run = Cmd::encode()
            .descriptors(&d)
            .centroids(&c)
            .offsets(&o)
            .out(&out)
            .backend("cpu")
            .norm(norm)
            .memory_limit("256KiB")
            .verify()
            .json()
            .args(extra)
            .run();
        assert!(run.status.success(), "{what}: {}", stderr(&run));
        let text = stdout(&run);
        let report: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(report["batches"].as_u64().unwrap() > 5, "{what}: {report}");
        assert!(out.exists(), "{what}");

        let codebook = Codebook::new(case.centroids.view()).unwrap();
        let norm: Normalization = norm.parse().unwrap();
        let encoder = Encoder::builder(codebook.clone())
            .backend(Backend::Cpu)
            .normalization(norm.clone())
            .assignment(assignment.clone())
            .build();
        let batch = vlad::Batch::ragged(case.rows.view(), &case.offsets).unwrap();
        let encoded = encoder.encode_batch(&batch).unwrap();
        let want = vlad::verify::verify(
            &codebook,
            &batch,
            assignment,
            &norm,
            encoded.vlad.view(),
            &encoded.labels,
        );
        assert!(want.passed(), "{what}: {want:?}");
        for (field, value) in [
            (
                "label_agreement",
                serde_json::to_string(&want.label_agreement),
            ),
            ("max_abs_error", serde_json::to_string(&want.max_abs_error)),
            ("bad_labels", serde_json::to_string(&want.bad_labels)),
            ("violations", serde_json::to_string(&want.violations)),
        ] {
            assert_eq!(raw_field(&text, field), value.unwrap(), "{what}: {field}");
        }
    }
}
