//! The `vlad` command line, run as a user runs it: the built binary on
//! `.npy` files in a temporary folder (SPEC §6 and §8).

use std::path::{Path, PathBuf};
use std::process::Output;

use ndarray::{Array1, Array2, Array3, ArrayD, ShapeBuilder, array, s};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use vlad::{Backend, Codebook, Encoder};

const T: usize = 6;
const L: usize = 9;
const F: usize = 5;
const K: usize = 4;

use crate::util::{Cmd, Folder, p, read, stderr, stdout, vlad};

/// A scratch folder with the standard good inputs written into it.
struct Scratch {
    folder: Folder,
    descriptors: Array3<f32>,
    centroids: Array2<f32>,
}

/// The folder's own helpers (`path`, `write`, `listing`…) on the scratch.
impl std::ops::Deref for Scratch {
    type Target = Folder;

    fn deref(&self) -> &Folder {
        &self.folder
    }
}

impl Scratch {
    fn new() -> Self {
        let folder = Folder::new();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let normal = Normal::new(0.0f32, 1.0).unwrap();
        let descriptors = Array3::from_shape_simple_fn((T, L, F), || normal.sample(&mut rng));
        let centroids = Array2::from_shape_simple_fn((K, F), || normal.sample(&mut rng));
        let scratch = Scratch {
            folder,
            descriptors,
            centroids,
        };
        scratch.write("d.npy", &scratch.descriptors);
        scratch.write("c.npy", &scratch.centroids);
        scratch
    }

    /// The descriptors as `(N, F)` rows with offsets `[0, L, 2L, …]`.
    fn write_ragged(&self) -> (PathBuf, PathBuf) {
        let rows = self
            .descriptors
            .clone()
            .into_shape_with_order((T * L, F))
            .unwrap();
        let offsets: Array1<i64> = (0..=T).map(|t| (t * L) as i64).collect();
        (
            self.write("rows.npy", &rows),
            self.write("offsets.npy", &offsets),
        )
    }
}

/// Run `cmd` (which writes to `out`) and check that it fails with `code`, a
/// one-line `vlad: error:` message containing every `needle`, and that the
/// output is neither created nor, when it exists, touched; no temporary file
/// is left behind.
fn expect_failure(scratch: &Scratch, cmd: &Cmd, out: &Path, code: i32, needles: &[&str]) {
    let args = cmd.argv();
    let _ = std::fs::remove_file(out);
    let before = scratch.listing();
    let run = cmd.run();
    let err = stderr(&run);
    assert_eq!(run.status.code(), Some(code), "{args:?}: stderr: {err}");
    assert!(
        err.lines().any(|l| l.starts_with("vlad: error: ")),
        "{args:?}: {err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("vlad: error")).count(),
        1,
        "{err}"
    );
    for needle in needles {
        assert!(
            err.contains(needle),
            "{args:?}: stderr should mention {needle:?}: {err}"
        );
    }
    assert!(!out.exists(), "{args:?} created {}", out.display());
    assert_eq!(scratch.listing(), before, "{args:?} left files behind");

    // The same failure must not touch an existing output.
    if out.parent().is_some_and(|d| d.is_dir()) && !out.is_dir() {
        let sentinel = b"not a real output; must survive a failed run".to_vec();
        std::fs::write(out, &sentinel).unwrap();
        let run = cmd.run();
        assert_eq!(run.status.code(), Some(code), "{args:?} (sentinel)");
        assert_eq!(std::fs::read(out).unwrap(), sentinel, "{args:?}");
        std::fs::remove_file(out).unwrap();
    }
}

/// `encode` on the standard inputs with descriptors replaced by `d`.
fn encode_failure(scratch: &Scratch, d: &Path, extra: &[&str], code: i32, needles: &[&str]) {
    let out = scratch.path("v.npy");
    let c = scratch.path("c.npy");
    let cmd = Cmd::encode()
        .descriptors(d)
        .centroids(&c)
        .out(&out)
        .backend("cpu")
        .args(extra);
    expect_failure(scratch, &cmd, &out, code, needles);
}

/// `encode` on the standard descriptors with centroids replaced by `c`.
fn centroid_failure(scratch: &Scratch, c: &Path, needles: &[&str]) {
    let out = scratch.path("v.npy");
    let d = scratch.path("d.npy");
    let cmd = Cmd::encode().descriptors(&d).centroids(c).out(&out);
    expect_failure(scratch, &cmd, &out, 2, needles);
    // `assign` reads centroids the same way and must refuse them too.
    let out = scratch.path("a.npy");
    let cmd = Cmd::assign().descriptors(&d).centroids(c).out(&out);
    expect_failure(scratch, &cmd, &out, 2, needles);
}

/// A hand-made `.npy` (for dtypes ndarray-npy does not write, like f16).
fn raw_npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    bytes.extend_from_slice(dict.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

fn encode_ok(scratch: &Scratch, d: &Path, out: &str, extra: &[&str]) -> (Output, Array2<f32>) {
    let out = scratch.path(out);
    let c = scratch.path("c.npy");
    let cmd = Cmd::encode()
        .descriptors(d)
        .centroids(&c)
        .out(&out)
        .args(extra);
    let run = cmd.run();
    assert_eq!(run.status.code(), Some(0), "{cmd:?}: {}", stderr(&run));
    (run, read(&out))
}

fn max_abs_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    assert_eq!(a.dim(), b.dim());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

// ---------------------------------------------------------------- bad input

#[test]
fn non_finite_descriptors_name_the_row_and_image() {
    let scratch = Scratch::new();
    let mut d = scratch.descriptors.clone();
    d[[2, 3, 1]] = f32::NAN;
    let path = scratch.write("nan.npy", &d);
    encode_failure(
        &scratch,
        &path,
        &[],
        2,
        &["nan.npy", "NaN", "image 2", "row 21"],
    );

    let mut d = scratch.descriptors.clone();
    d[[4, 0, 0]] = f32::NEG_INFINITY;
    let path = scratch.write("inf.npy", &d);
    encode_failure(&scratch, &path, &[], 2, &["inf.npy", "inf", "image 4"]);

    // Ragged rows: the image comes from the offsets.
    let (rows, offsets) = scratch.write_ragged();
    let mut r: Array2<f32> = read(&rows);
    r[[L + 2, 4]] = f32::INFINITY;
    let path = scratch.write("rows_inf.npy", &r);
    encode_failure(
        &scratch,
        &path,
        &["--offsets", p(&offsets)],
        2,
        &["rows_inf.npy", "image 1", "row 11"],
    );
}

#[test]
fn non_finite_centroids_are_refused() {
    let scratch = Scratch::new();
    let mut c = scratch.centroids.clone();
    c[[3, 2]] = f32::NAN;
    let path = scratch.write("c_nan.npy", &c);
    centroid_failure(&scratch, &path, &["c_nan.npy", "centroids", "row 3"]);
    let mut c = scratch.centroids.mapv(f64::from);
    c[[1, 0]] = f64::INFINITY;
    let path = scratch.write("c_inf.npy", &c);
    centroid_failure(&scratch, &path, &["c_inf.npy", "centroids", "row 1"]);
    // Finite in f64 but not in f32, where the arithmetic happens.
    c[[1, 0]] = 1e300;
    let path = scratch.write("c_huge.npy", &c);
    centroid_failure(&scratch, &path, &["c_huge.npy", "row 1"]);
}

#[test]
fn width_mismatch_and_empty_shapes_are_refused() {
    let scratch = Scratch::new();
    let d = scratch.write("d6.npy", &Array3::<f32>::ones((2, 3, F + 1)));
    encode_failure(
        &scratch,
        &d,
        &[],
        2,
        &["dimension mismatch", "d6.npy", "c.npy"],
    );

    let c = scratch.write("k0.npy", &Array2::<f32>::zeros((0, F)));
    centroid_failure(&scratch, &c, &["k0.npy", "K = 0"]);
    let c = scratch.write("f0.npy", &Array2::<f32>::zeros((K, 0)));
    centroid_failure(&scratch, &c, &["f0.npy", "F = 0"]);
    let d = scratch.write("df0.npy", &Array3::<f32>::zeros((2, 3, 0)));
    encode_failure(&scratch, &d, &[], 2, &["df0.npy", "F = 0"]);
}

#[test]
fn offsets_that_are_not_csr_are_refused() {
    let scratch = Scratch::new();
    let (rows, _) = scratch.write_ragged();
    let n = (T * L) as i64;
    let cases: [(&str, Array1<i64>, &[&str]); 5] = [
        ("o_start.npy", array![1, 10, n], &["offsets[0] = 1"]),
        ("o_down.npy", array![0, 20, 10, n], &["index 2"]),
        ("o_end.npy", array![0, 10, n - 1], &["index 2", "end"]),
        (
            "o_neg.npy",
            array![0, -3, n],
            &["offsets[1] = -3", "negative"],
        ),
        ("o_empty.npy", Array1::zeros(0), &["empty"]),
    ];
    for (name, offsets, needles) in cases {
        let o = scratch.write(name, &offsets);
        let mut needles = needles.to_vec();
        needles.push(name);
        encode_failure(&scratch, &rows, &["--offsets", p(&o)], 2, &needles);
    }
    // Offsets belong to (N, F) input only.
    let o = scratch.write("o_ok.npy", &array![0i64, n]);
    let d = scratch.path("d.npy");
    encode_failure(
        &scratch,
        &d,
        &["--offsets", p(&o)],
        2,
        &["--offsets", "(T, L, F)"],
    );
}

#[test]
fn labels_out_of_range_or_of_the_wrong_length_are_refused() {
    let scratch = Scratch::new();
    let d = scratch.path("d.npy");
    let mut labels = Array1::<i64>::zeros(T * L);
    labels[17] = K as i64;
    let a = scratch.write("l_big.npy", &labels);
    encode_failure(
        &scratch,
        &d,
        &["--labels", p(&a)],
        2,
        &["l_big.npy", "index 17", "out of range"],
    );
    labels[17] = 0;
    labels[3] = -1;
    let a = scratch.write("l_neg.npy", &labels);
    encode_failure(
        &scratch,
        &d,
        &["--labels", p(&a)],
        2,
        &["l_neg.npy", "index 3", "-1"],
    );
    let a = scratch.write("l_short.npy", &Array1::<u32>::zeros(T * L - 1));
    encode_failure(
        &scratch,
        &d,
        &["--labels", p(&a)],
        2,
        &["l_short.npy", "labels"],
    );
}

#[test]
fn wrong_dtypes_are_refused() {
    let scratch = Scratch::new();
    let d = scratch.write("d_i32.npy", &Array2::<i32>::zeros((4, F)));
    encode_failure(&scratch, &d, &[], 2, &["d_i32.npy", "int32"]);
    let d = scratch.write("d_bool.npy", &Array2::<bool>::from_elem((4, F), true));
    encode_failure(&scratch, &d, &[], 2, &["d_bool.npy", "b1"]);
    let d = scratch.write_bytes("d_f16.npy", &raw_npy("<f2", "(2, 5)", &[0; 20]));
    encode_failure(&scratch, &d, &[], 2, &["d_f16.npy", "<f2"]);
    let c = scratch.write("c_u8.npy", &Array2::<u8>::zeros((K, F)));
    centroid_failure(&scratch, &c, &["c_u8.npy", "uint8"]);
    let (rows, _) = scratch.write_ragged();
    let o = scratch.write("o_f32.npy", &array![0.0f32, (T * L) as f32]);
    encode_failure(
        &scratch,
        &rows,
        &["--offsets", p(&o)],
        2,
        &["o_f32.npy", "float32"],
    );
}

#[test]
fn wrong_number_of_dimensions_is_refused() {
    let scratch = Scratch::new();
    let d = scratch.write("d1.npy", &Array1::<f32>::zeros(F));
    encode_failure(&scratch, &d, &[], 2, &["d1.npy", "(5,)"]);
    let d = scratch.write("d4.npy", &ArrayD::<f32>::zeros(vec![1, 2, 3, F]));
    encode_failure(&scratch, &d, &[], 2, &["d4.npy", "(1, 2, 3, 5)"]);
    let c = scratch.write("c3.npy", &Array3::<f32>::zeros((1, K, F)));
    centroid_failure(&scratch, &c, &["c3.npy", "(K, F)"]);
    let (rows, _) = scratch.write_ragged();
    let o = scratch.write("o2.npy", &Array2::<i64>::zeros((2, 2)));
    encode_failure(
        &scratch,
        &rows,
        &["--offsets", p(&o)],
        2,
        &["o2.npy", "one-dimensional"],
    );
}

#[test]
fn unreadable_and_malformed_files_are_refused() {
    let scratch = Scratch::new();
    let good = std::fs::read(scratch.path("d.npy")).unwrap();
    let d = scratch.write_bytes("trunc.npy", &good[..good.len() - 7]);
    encode_failure(&scratch, &d, &[], 2, &["trunc.npy", "truncated"]);
    let d = scratch.write_bytes("trunc_header.npy", &good[..30]);
    encode_failure(&scratch, &d, &[], 2, &["trunc_header.npy"]);
    let d = scratch.write_bytes("garbage.npy", b"col1,col2\n1,2\n3,4\n");
    encode_failure(&scratch, &d, &[], 2, &["garbage.npy", "not a .npy"]);
    let d = scratch.write_bytes("bad_dict.npy", &raw_npy("<f4", "'five'", &[]));
    encode_failure(&scratch, &d, &[], 2, &["bad_dict.npy"]);
    let d = scratch.path("missing.npy");
    encode_failure(&scratch, &d, &[], 2, &["missing.npy"]);
    let c = scratch.path("missing_c.npy");
    centroid_failure(&scratch, &c, &["missing_c.npy"]);
}

#[test]
fn unwritable_output_paths_are_refused() {
    let scratch = Scratch::new();
    let d = scratch.path("d.npy");
    let c = scratch.path("c.npy");
    let out = scratch.path("no/such/folder/v.npy");
    let cmd = Cmd::encode().descriptors(&d).centroids(&c).out(&out);
    expect_failure(&scratch, &cmd, &out, 2, &["cannot write", "does not exist"]);
    // An existing folder cannot be replaced by the output.
    let folder = scratch.path("folder");
    std::fs::create_dir(&folder).unwrap();
    let run = Cmd::assign()
        .descriptors(&d)
        .centroids(&c)
        .out(&folder)
        .run();
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(folder.is_dir());
    assert!(stderr(&run).contains("folder"));
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let scratch = Scratch::new();
    let d = scratch.path("d.npy");
    let c = scratch.path("c.npy");
    let out = scratch.path("v.npy");
    for extra in [
        &["--norm", "ssr,l3"][..],
        &["--backend", "tpu"][..],
        &["--no-such-flag"][..],
    ] {
        let run = Cmd::encode()
            .descriptors(&d)
            .centroids(&c)
            .out(&out)
            .args(extra)
            .run();
        assert_eq!(run.status.code(), Some(2), "{extra:?}: {}", stderr(&run));
        assert!(!out.exists());
    }
    assert_eq!(
        vlad(&["encode", "--descriptors", p(&d)]).status.code(),
        Some(2)
    );
    assert_eq!(vlad::<&str>(&[]).status.code(), Some(2));
    assert_eq!(vlad(&["frobnicate"]).status.code(), Some(2));
    let help = vlad(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).contains("encode"));
    assert_eq!(vlad(&["encode", "--help"]).status.code(), Some(0));
    let version = vlad(&["--version"]);
    assert_eq!(version.status.code(), Some(0));
    assert!(stdout(&version).contains(env!("CARGO_PKG_VERSION")));
}

// ---------------------------------------------------------------- good runs

#[test]
fn encode_writes_t_by_kf_f32_matching_the_library() {
    let scratch = Scratch::new();
    let d = scratch.path("d.npy");
    let (run, vlad_cpu) = encode_ok(&scratch, &d, "v.npy", &["--backend", "cpu"]);
    assert_eq!(vlad_cpu.dim(), (T, K * F));
    assert!(run.stdout.is_empty(), "without --json stdout stays empty");
    assert!(stderr(&run).contains("cpu"));

    let codebook = Codebook::new(scratch.centroids.view()).unwrap();
    let library = Encoder::builder(codebook.clone())
        .backend(Backend::Cpu)
        .build()
        .encode(scratch.descriptors.view())
        .unwrap();
    assert_eq!(vlad_cpu, library, "same backend, same input: bitwise equal");
    let reference = Encoder::builder(codebook)
        .backend(Backend::Reference)
        .build()
        .encode(scratch.descriptors.view())
        .unwrap();
    assert!(max_abs_diff(&vlad_cpu, &reference) <= 1e-5);
    // Each row is L2-normalized by the default ssr,l2.
    for row in vlad_cpu.rows() {
        let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }

    let (_, vlad_ref) = encode_ok(&scratch, &d, "v_ref.npy", &["--backend", "reference"]);
    assert!(max_abs_diff(&vlad_ref, &reference) == 0.0);
    // The default backend (auto) runs too, whichever backend it picks.
    let (_, vlad_auto) = encode_ok(&scratch, &d, "v_auto.npy", &[]);
    assert!(max_abs_diff(&vlad_auto, &reference) <= 1e-5);
    // Output files only: no temporary left over.
    assert_eq!(
        scratch.listing(),
        ["c.npy", "d.npy", "v.npy", "v_auto.npy", "v_ref.npy"]
    );
}

#[test]
fn fixed_and_ragged_inputs_give_the_same_rows() {
    let scratch = Scratch::new();
    let d = scratch.path("d.npy");
    let (rows, offsets) = scratch.write_ragged();
    let (_, fixed) = encode_ok(&scratch, &d, "v1.npy", &["--backend", "cpu"]);
    let (_, ragged) = encode_ok(
        &scratch,
        &rows,
        "v2.npy",
        &["--backend", "cpu", "--offsets", p(&offsets)],
    );
    assert_eq!(fixed, ragged);

    // Offsets of every integer dtype, with an empty image (a zero row).
    let mut o: Vec<u64> = (0..=T).map(|t| (t * L) as u64).collect();
    o.insert(2, o[1]);
    for (name, path) in [
        ("u64", scratch.write("o_u64.npy", &Array1::from(o.clone()))),
        (
            "i32",
            scratch.write(
                "o_i32.npy",
                &o.iter().map(|&x| x as i32).collect::<Array1<_>>(),
            ),
        ),
        (
            "u32",
            scratch.write(
                "o_u32.npy",
                &o.iter().map(|&x| x as u32).collect::<Array1<_>>(),
            ),
        ),
    ] {
        let (_, v) = encode_ok(
            &scratch,
            &rows,
            &format!("v_{name}.npy"),
            &["--backend", "cpu", "--offsets", p(&path)],
        );
        assert_eq!(v.nrows(), T + 1, "{name}");
        assert!(v.row(1).iter().all(|&x| x == 0.0), "{name}: empty image");
        assert_eq!(v.slice(s![..1, ..]), fixed.slice(s![..1, ..]), "{name}");
        assert_eq!(v.slice(s![2.., ..]), fixed.slice(s![1.., ..]), "{name}");
    }

    // (N, F) without offsets is one image: all rows pooled.
    let (_, single) = encode_ok(&scratch, &rows, "v3.npy", &["--backend", "cpu"]);
    assert_eq!(single.dim(), (1, K * F));
    let codebook = Codebook::new(scratch.centroids.view()).unwrap();
    let pooled = Encoder::builder(codebook)
        .backend(Backend::Reference)
        .build()
        .encode(
            scratch
                .descriptors
                .view()
                .into_shape_with_order((1, T * L, F))
                .unwrap(),
        )
        .unwrap();
    assert!(max_abs_diff(&single, &pooled) <= 1e-5);
}

#[test]
fn fortran_order_f64_and_u8_inputs_are_accepted() {
    let scratch = Scratch::new();
    let d = scratch.path("d.npy");
    let (_, c_order) = encode_ok(&scratch, &d, "v.npy", &["--backend", "cpu"]);

    let mut fortran = Array3::<f32>::zeros((T, L, F).f());
    fortran.assign(&scratch.descriptors);
    let d_f = scratch.write("d_fortran.npy", &fortran);
    assert!(vlad::io::inspect(&d_f).unwrap().fortran_order);
    let mut centroids_f = Array2::<f32>::zeros((K, F).f());
    centroids_f.assign(&scratch.centroids);
    scratch.write("c_fortran.npy", &centroids_f);
    let c_f = scratch.path("c_fortran.npy");
    let out = scratch.path("v_f.npy");
    let run = Cmd::encode()
        .descriptors(&d_f)
        .centroids(&c_f)
        .out(&out)
        .backend("cpu")
        .run();
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert_eq!(read::<f32, ndarray::Ix2>(&out), c_order);

    // f64 descriptors and centroids: computed in f32 (SPEC §2), so equal to
    // the f32 run on the same values.
    let d64 = scratch.write("d64.npy", &scratch.descriptors.mapv(f64::from));
    let (_, v64) = encode_ok(&scratch, &d64, "v64.npy", &["--backend", "cpu"]);
    assert!(max_abs_diff(&v64, &c_order) <= 1e-6);

    // u8 descriptors (SIFT-like): compare with the f32 run on the same values.
    let bytes = Array3::from_shape_fn((T, L, F), |(t, l, f)| {
        ((t * 31 + l * 7 + f * 3) % 256) as u8
    });
    let d8 = scratch.write("d8.npy", &bytes);
    let d8f = scratch.write("d8f.npy", &bytes.mapv(f32::from));
    let c_big = scratch.write("c_big.npy", &(&scratch.centroids * 40.0 + 128.0));
    for (d, name) in [(&d8, "v8.npy"), (&d8f, "v8f.npy")] {
        let out = scratch.path(name);
        let run = Cmd::encode()
            .descriptors(d)
            .centroids(&c_big)
            .out(&out)
            .backend("cpu")
            .run();
        assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    }
    let v8: Array2<f32> = read(&scratch.path("v8.npy"));
    let v8f: Array2<f32> = read(&scratch.path("v8f.npy"));
    assert_eq!(v8.dim(), (T, K * F));
    assert!(max_abs_diff(&v8, &v8f) <= 1e-6);
}

#[test]
fn given_labels_replace_assignment() {
    let scratch = Scratch::new();
    let d = scratch.path("d.npy");
    let c = scratch.path("c.npy");

    // The labels `assign` writes reproduce the plain encoding.
    let a = scratch.path("a.npy");
    let run = Cmd::assign()
        .descriptors(&d)
        .centroids(&c)
        .out(&a)
        .backend("cpu")
        .run();
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let (_, plain) = encode_ok(&scratch, &d, "v.npy", &["--backend", "cpu"]);
    let (_, relabelled) = encode_ok(
        &scratch,
        &d,
        "v2.npy",
        &["--backend", "cpu", "--labels", p(&a)],
    );
    assert!(max_abs_diff(&plain, &relabelled) <= 1e-6);

    // Other labels (not nearest) change the result as the reference says.
    let labels: Vec<u32> = (0..T * L).map(|i| (i % K) as u32).collect();
    let a2 = scratch.write(
        "a2.npy",
        &labels.iter().map(|&l| l as u64).collect::<Array1<u64>>(),
    );
    let (_, forced) = encode_ok(
        &scratch,
        &d,
        "v3.npy",
        &[
            "--backend",
            "cpu",
            "--labels",
            p(&a2),
            "--norm",
            "none",
            "--verify",
        ],
    );
    let offsets: Vec<usize> = (0..=T).map(|t| t * L).collect();
    let rows = scratch
        .descriptors
        .view()
        .into_shape_with_order((T * L, F))
        .unwrap();
    let want = Encoder::builder(Codebook::new(scratch.centroids.view()).unwrap())
        .backend(Backend::Reference)
        .normalization(vlad::Normalization::none())
        .build()
        .encode_ragged_with_labels(rows, &offsets, &labels)
        .unwrap();
    assert!(max_abs_diff(&forced, &want) <= 1e-5);
    let nearest = Encoder::builder(Codebook::new(scratch.centroids.view()).unwrap())
        .backend(Backend::Reference)
        .normalization(vlad::Normalization::none())
        .build()
        .encode(scratch.descriptors.view())
        .unwrap();
    assert!(
        max_abs_diff(&forced, &nearest) > 1e-2,
        "the given labels were used"
    );
}

#[test]
fn json_reports_the_spec_fields_and_verify_passes() {
    let scratch = Scratch::new();
    let d = scratch.path("d.npy");
    let (run, _) = encode_ok(
        &scratch,
        &d,
        "v.npy",
        &[
            "--backend",
            "cpu",
            "--json",
            "--verify",
            "--norm",
            "mass,intra,l2",
        ],
    );
    let json: serde_json::Value = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is one JSON object ({e}): {}", stdout(&run)));
    assert_eq!(json["backend"], "cpu");
    assert!(json["adapter"].is_null());
    assert_eq!(json["images"], T);
    assert_eq!(json["descriptors"], T * L);
    assert_eq!(json["clusters"], K);
    assert_eq!(json["dim"], F);
    assert_eq!(json["normalization"], "mass,intra,l2");
    let seconds = json["seconds"].as_f64().unwrap();
    assert!(seconds >= 0.0);
    let stages = json["stages"].as_object().unwrap();
    assert!(!stages.is_empty());
    assert!(
        stages
            .values()
            .all(|s| s.as_f64().is_some_and(|s| s >= 0.0))
    );
    assert_eq!(json["label_agreement"].as_f64(), Some(1.0));
    let err = json["max_abs_error"].as_f64().unwrap();
    assert!((0.0..=1e-5).contains(&err), "{err}");
    assert!(stderr(&run).contains("verify: pass"), "{}", stderr(&run));

    // assign --json has the same fields.
    let c = scratch.path("c.npy");
    let a = scratch.path("a.npy");
    let run = Cmd::assign()
        .descriptors(&d)
        .centroids(&c)
        .out(&a)
        .backend("reference")
        .json()
        .run();
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let json: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    for field in [
        "backend",
        "adapter",
        "images",
        "descriptors",
        "clusters",
        "dim",
        "seconds",
        "stages",
    ] {
        assert!(json.get(field).is_some(), "assign --json lacks {field}");
    }
    assert_eq!(json["backend"], "reference");
    assert_eq!(json["descriptors"], T * L);
}

#[test]
fn assign_writes_image_major_i64_labels() {
    let scratch = Scratch::new();
    let d = scratch.path("d.npy");
    let c = scratch.path("c.npy");
    let a = scratch.path("a.npy");
    for backend in ["cpu", "reference"] {
        let run = Cmd::assign()
            .descriptors(&d)
            .centroids(&c)
            .out(&a)
            .backend(backend)
            .run();
        assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
        assert!(run.stdout.is_empty());
        let labels: Array1<i64> = read(&a);
        assert_eq!(labels.len(), T * L);
        // Image-major: label i is descriptor (i / L, i % L); check it is the
        // exact nearest centroid.
        for (i, &label) in labels.iter().enumerate() {
            let v = scratch.descriptors.slice(s![i / L, i % L, ..]);
            let dist = |k: usize| -> f64 {
                v.iter()
                    .zip(scratch.centroids.row(k))
                    .map(|(&x, &c)| (f64::from(x) - f64::from(c)).powi(2))
                    .sum()
            };
            let best = (0..K).min_by(|&x, &y| dist(x).total_cmp(&dist(y))).unwrap();
            assert!((0..K as i64).contains(&label));
            assert!(
                label as usize == best || (dist(label as usize) - dist(best)).abs() < 1e-4,
                "{backend}: descriptor {i}: {label} vs {best}"
            );
        }
    }
}

#[test]
fn gpu_backend_exits_3_or_runs_on_the_gpu() {
    // Without an adapter `--backend gpu` is unavailable (exit 3; never in
    // CI, which has lavapipe); with one it runs and reports that the GPU ran.
    let scratch = Scratch::new();
    let d = scratch.path("d.npy");
    let c = scratch.path("c.npy");
    let out = scratch.path("v.npy");
    let run = Cmd::encode()
        .descriptors(&d)
        .centroids(&c)
        .out(&out)
        .backend("gpu")
        .json()
        .run();
    match run.status.code() {
        Some(3) => {
            assert!(!crate::common::ci(), "CI has lavapipe: {}", stderr(&run));
            assert!(stderr(&run).contains("vlad: error:"), "{}", stderr(&run));
            assert!(stderr(&run).contains("unavailable"), "{}", stderr(&run));
            assert!(!out.exists());
        }
        Some(0) => {
            let json: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
            assert_eq!(json["backend"], "gpu");
            assert!(json["adapter"].is_string());
            let v: Array2<f32> = read(&out);
            assert_eq!(v.dim(), (T, K * F));
        }
        other => panic!("--backend gpu exited {other:?}: {}", stderr(&run)),
    }
}

#[test]
fn demo_runs_every_backend_and_prints_the_table() {
    let run = vlad(&["demo"]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let out = stdout(&run);
    assert!(out.contains("label agreement"), "{out}");
    assert!(out.contains("max abs error"), "{out}");
    // The codebook is trained by k-means, and the demo says how.
    let codebook = out
        .lines()
        .find(|l| l.starts_with("codebook: "))
        .unwrap_or_else(|| panic!("no codebook line: {out}"));
    for needle in ["k-means++ / Lloyd", "iterations", "inertia", "trained on"] {
        assert!(codebook.contains(needle), "{codebook}");
    }
    for backend in ["reference", "cpu"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(backend))
            .unwrap_or_else(|| panic!("no {backend} row: {out}"));
        assert!(line.contains("pass"), "{line}");
    }
    let gpu = out
        .lines()
        .find(|l| l.starts_with("gpu"))
        .unwrap_or_else(|| panic!("{out}"));
    // The gpu runs on a hardware adapter; a software-only machine skips it
    // (cli_adapters.rs checks which happens where).
    assert!(
        gpu.contains("pass")
            || gpu.starts_with("gpu: unavailable (")
            || gpu.starts_with("gpu: skipped ("),
        "{gpu}"
    );
}
