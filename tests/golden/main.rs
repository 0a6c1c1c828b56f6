//! Golden outputs: the sha256 of every output of a fixed matrix of cases —
//! every backend × hard / soft (weights and α) assignment × with and
//! without `rn` × several normalizations × fixed, ragged and empty images ×
//! f32, f64 and u8 × in memory, into caller memory, split across GPU
//! chunks, streamed and split across stream batches, plus k-means
//! codebooks and labels — against a fixture recorded before a change.
//!
//! It pins behaviour bit for bit across refactors that must not change a
//! bit (SPEC §5 holds either way; a commit that changes an output on
//! purpose says which and why, and re-records).
//!
//! Floating-point bits depend on the code paths the CPU selects (AVX-512,
//! AVX2 + FMA, portable) and on the GPU adapter and driver, so the fixture
//! is one file per machine signature, `tests/golden/SIGNATURE.sha256`. On
//! a machine with no recorded signature nothing is compared: the test says
//! so loudly and records the skip (tests/common/skip.rs; `cargo xtask
//! test`'s summary lists it). With `CI` set and the `gpu` feature, a GPU
//! that does not work is a failure, as in every GPU test.
//!
//! Record (on the commit before a change): `VLAD_GOLDEN_RECORD=1 cargo
//! test --release --test golden`.

#[cfg(feature = "cli")]
#[path = "../cli/util.rs"]
mod cli_util;
#[path = "../common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use ndarray::{Array1, Array2, Array3, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use vlad::{Assignment, Backend, Batch, Codebook, Element, Encoder, Normalization};

const F: usize = 20;
const K: usize = 6;

/// Case name → sha256 (hex) of its outputs.
type Hashes = BTreeMap<String, String>;

fn sha(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn f32_bytes(x: &[f32]) -> Vec<u8> {
    x.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn u32_bytes(x: &[u32]) -> Vec<u8> {
    x.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The CPU code paths and the GPU adapter this machine takes.
fn signature(adapter: Option<&str>) -> String {
    #[cfg(target_arch = "x86_64")]
    let cpu = if std::arch::is_x86_feature_detected!("avx512f") {
        "x86_64-avx512f"
    } else if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
    {
        "x86_64-avx2-fma"
    } else {
        "x86_64-portable"
    };
    #[cfg(not(target_arch = "x86_64"))]
    let cpu = std::env::consts::ARCH;
    let gpu: String = adapter
        .unwrap_or("no-gpu")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let mut gpu = gpu
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    gpu.truncate(60);
    format!("{cpu}+{gpu}")
}

/// The seeded data every case is made from.
struct Data {
    /// `(T, L, F)` fixed-size images, f32.
    fixed: Array3<f32>,
    /// Ragged rows and offsets, with empty images first, inside and last,
    /// and one image large enough to be split by a small GPU binding.
    ragged: Array2<f32>,
    offsets: Vec<usize>,
    /// The codebook, soft weights and bias.
    centroids: Array2<f32>,
    weights: Array2<f32>,
    bias: Array1<f32>,
}

impl Data {
    fn new(seed: u64, offsets: Vec<usize>) -> Data {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centres: Vec<Vec<f32>> = (0..K)
            .map(|_| (0..F).map(|_| rng.random_range(20.0f32..230.0)).collect())
            .collect();
        let row = |rng: &mut ChaCha8Rng| -> Vec<f32> {
            let c = &centres[rng.random_range(0..K)];
            c.iter()
                .map(|&x| (x + rng.random_range(-18.0f32..18.0)).clamp(0.0, 255.0))
                .collect()
        };
        let (t, l) = (5, 37);
        let fixed: Vec<f32> = (0..t * l).flat_map(|_| row(&mut rng)).collect();
        let n = *offsets.last().unwrap_or(&0);
        let ragged: Vec<f32> = (0..n).flat_map(|_| row(&mut rng)).collect();
        let centroids: Vec<f32> = centres
            .iter()
            .flat_map(|c| c.iter().map(|&x| x + 0.37))
            .collect();
        let weights: Vec<f32> = (0..K * F)
            .map(|_| rng.random_range(-0.02f32..0.02))
            .collect();
        let bias: Vec<f32> = (0..K).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        Data {
            fixed: Array3::from_shape_vec((t, l, F), fixed).unwrap(),
            ragged: Array2::from_shape_vec((n, F), ragged).unwrap(),
            offsets,
            centroids: Array2::from_shape_vec((K, F), centroids).unwrap(),
            weights: Array2::from_shape_vec((K, F), weights).unwrap(),
            bias: Array1::from(bias),
        }
    }

    fn codebook(&self) -> Codebook {
        Codebook::new(self.centroids.view()).unwrap()
    }

    fn assignments(&self) -> Vec<(&'static str, Assignment)> {
        vec![
            ("hard", Assignment::Hard),
            (
                "soft",
                Assignment::soft(self.weights.view(), self.bias.view()).unwrap(),
            ),
            ("alpha", Assignment::soft_alpha(2e-3).unwrap()),
        ]
    }
}

/// The three input dtypes from the same values: f32 as is, f64 with bits
/// below f32's precision, u8 rounded.
enum Typed {
    F32(Array2<f32>),
    F64(Array2<f64>),
    U8(Array2<u8>),
}

fn typed(rows: &Array2<f32>) -> Vec<(&'static str, Typed)> {
    vec![
        ("f32", Typed::F32(rows.clone())),
        (
            "f64",
            Typed::F64(rows.mapv(|x| x as f64 + (x as f64) * 1.234e-9)),
        ),
        ("u8", Typed::U8(rows.mapv(|x| x.round() as u8))),
    ]
}

const NORMS: &[&str] = &[
    "none",
    "ssr,l2",
    "mass,ssr,intra,l2",
    "power=0.3,intra",
    "mass",
    "rn",
    "rn,ssr,l2",
    "rn,mass,intra,l2",
];

fn backends(gpu: bool) -> Vec<Backend> {
    let mut b = vec![Backend::Reference, Backend::Cpu];
    if gpu {
        b.push(Backend::Gpu);
    }
    b
}

fn encoder(
    data: &Data,
    backend: Backend,
    assignment: &Assignment,
    norm: &str,
    binding: Option<u64>,
) -> Encoder {
    Encoder::builder(data.codebook())
        .backend(backend)
        .assignment(assignment.clone())
        .normalization(norm.parse::<Normalization>().unwrap())
        .gpu_max_binding_bytes(binding)
        .build()
}

/// Encode `batch` (and, when `into`, also into caller memory, which must
/// give the same bits); the hash of the encoding and its labels.
fn encode_hash<E: Element>(encoder: &Encoder, batch: &Batch<'_, E>, into: bool) -> String {
    let encoded = encoder.encode_batch(batch).unwrap();
    assert!(encoded.report.fallback_reason.is_none());
    let vlad = encoded.vlad.as_standard_layout().to_owned();
    let flat = vlad.as_slice().unwrap();
    if into {
        let mut out = Array2::<f32>::from_elem(encoded.vlad.dim(), f32::NAN);
        encoder.encode_batch_into(batch, out.view_mut()).unwrap();
        let same = out
            .iter()
            .zip(flat)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "encode_batch_into differs from encode_batch");
    }
    sha(&[&f32_bytes(flat), &u32_bytes(&encoded.labels)])
}

/// `f(batch)` for each of the three layouts in dtype `E`.
fn with_layouts<E: Element>(
    fixed: ArrayView2<'_, E>,
    ragged: ArrayView2<'_, E>,
    offsets: &[usize],
    mut f: impl FnMut(&str, &Batch<'_, E>),
) {
    let fixed3 = fixed.into_shape_with_order((5, 37, F)).unwrap();
    f("fixed", &Batch::fixed(fixed3).unwrap());
    f("ragged", &Batch::ragged(ragged, offsets).unwrap());
    let none = ragged.slice(ndarray::s![0..0, ..]);
    f(
        "empty",
        &Batch::ragged(none, &[0usize, 0, 0, 0][..]).unwrap(),
    );
}

fn in_memory(data: &Data, gpu: bool, hashes: &mut Hashes) {
    let fixed2 = data
        .fixed
        .view()
        .into_shape_with_order((5 * 37, F))
        .unwrap()
        .to_owned();
    let fixed_typed = typed(&fixed2);
    let ragged_typed = typed(&data.ragged);
    for backend in backends(gpu) {
        for (aname, assignment) in data.assignments() {
            for &norm in NORMS {
                let enc = encoder(data, backend, &assignment, norm, None);
                for ((dname, fixed), (_, ragged)) in fixed_typed.iter().zip(&ragged_typed) {
                    let into = norm == "ssr,l2" || norm == "rn,mass,intra,l2";
                    let mut case = |layout: &str, hash: String| {
                        hashes.insert(
                            format!("memory/{backend}/{aname}/{norm}/{layout}/{dname}"),
                            hash,
                        );
                    };
                    match (fixed, ragged) {
                        (Typed::F32(a), Typed::F32(b)) => {
                            with_layouts(a.view(), b.view(), &data.offsets, |l, batch| {
                                case(l, encode_hash(&enc, batch, into))
                            })
                        }
                        (Typed::F64(a), Typed::F64(b)) => {
                            with_layouts(a.view(), b.view(), &data.offsets, |l, batch| {
                                case(l, encode_hash(&enc, batch, into))
                            })
                        }
                        (Typed::U8(a), Typed::U8(b)) => {
                            with_layouts(a.view(), b.view(), &data.offsets, |l, batch| {
                                case(l, encode_hash(&enc, batch, into))
                            })
                        }
                        _ => unreachable!(),
                    }
                }
            }
        }
        // Given labels (hard assignment skips its own).
        let labels: Vec<u32> = (0..data.ragged.nrows())
            .map(|i| ((i * 7 + 3) % K) as u32)
            .collect();
        for norm in ["ssr,l2", "mass", "rn,ssr,l2"] {
            let enc = encoder(data, backend, &Assignment::Hard, norm, None);
            let batch = Batch::ragged(data.ragged.view(), &data.offsets)
                .unwrap()
                .with_labels(&labels, K)
                .unwrap();
            hashes.insert(
                format!("memory/{backend}/given-labels/{norm}"),
                encode_hash(&enc, &batch, true),
            );
        }
        // Assignment alone.
        let enc = encoder(data, backend, &Assignment::Hard, "ssr,l2", None);
        for (dname, rows) in typed(&data.ragged) {
            let labels = match &rows {
                Typed::F32(a) => enc.assign_batch(&Batch::ragged(a.view(), &data.offsets).unwrap()),
                Typed::F64(a) => enc.assign_batch(&Batch::ragged(a.view(), &data.offsets).unwrap()),
                Typed::U8(a) => enc.assign_batch(&Batch::ragged(a.view(), &data.offsets).unwrap()),
            }
            .unwrap()
            .labels;
            hashes.insert(
                format!("assign/{backend}/{dname}"),
                sha(&[&u32_bytes(&labels)]),
            );
        }
    }
}

/// The GPU with a storage binding small enough that images are split
/// across chunks and recombined.
fn gpu_chunked(data: &Data, hashes: &mut Hashes) {
    for (aname, assignment) in data.assignments() {
        for norm in ["none", "ssr,l2", "mass,ssr,intra,l2", "rn,mass,intra,l2"] {
            let enc = encoder(data, Backend::Gpu, &assignment, norm, Some(4096));
            for (dname, rows) in typed(&data.ragged) {
                let hash = match &rows {
                    Typed::F32(a) => {
                        encode_hash(&enc, &Batch::ragged(a.view(), &data.offsets).unwrap(), true)
                    }
                    Typed::F64(a) => {
                        encode_hash(&enc, &Batch::ragged(a.view(), &data.offsets).unwrap(), true)
                    }
                    Typed::U8(a) => {
                        encode_hash(&enc, &Batch::ragged(a.view(), &data.offsets).unwrap(), true)
                    }
                };
                hashes.insert(format!("gpu-chunked/{aname}/{norm}/{dname}"), hash);
            }
        }
    }
}

fn kmeans(data: &Data, gpu: bool, hashes: &mut Hashes) {
    let mut list = vec![Backend::Cpu];
    if gpu {
        list.push(Backend::Gpu);
    }
    for backend in list {
        for (mname, m) in [("all", None), ("sampled", Some(20))] {
            for (dname, rows) in typed(&data.ragged) {
                let km = vlad::kmeans::KMeans::new(K)
                    .seed(7)
                    .iterations(6)
                    .max_points_per_centroid(m)
                    .backend(backend);
                let fit = match &rows {
                    Typed::F32(a) => km.fit(a.view()),
                    Typed::F64(a) => km.fit(a.view()),
                    Typed::U8(a) => km.fit(a.view()),
                }
                .unwrap();
                let centroids = fit.codebook.centroids().to_owned();
                hashes.insert(
                    format!("kmeans/{backend}/{mname}/{dname}"),
                    sha(&[
                        &f32_bytes(centroids.as_slice().unwrap()),
                        &fit.inertia.to_le_bytes(),
                        &(fit.iterations as u64).to_le_bytes(),
                    ]),
                );
            }
        }
    }
}

/// The command line, streaming from `.npy` files: one batch, and a memory
/// limit small enough that images are split across batches.
#[cfg(feature = "cli")]
fn streamed(gpu: bool, hashes: &mut Hashes) {
    use cli_util::{Cmd, Folder, read};
    // Images of up to 9,000 rows: above the CPU's 4,096-row pieces.
    let offsets = vec![0usize, 0, 300, 300, 9300, 9301, 9800, 9800];
    let data = Data::new(99, offsets.clone());
    let folder = Folder::new();
    let d32 = folder.write("d32.npy", &data.ragged);
    let d8 = folder.write("d8.npy", &data.ragged.mapv(|x| x.round() as u8));
    let d64 = folder.write(
        "d64.npy",
        &data.ragged.mapv(|x| x as f64 + (x as f64) * 1.234e-9),
    );
    let c = folder.write("c.npy", &data.centroids);
    let w = folder.write("w.npy", &data.weights);
    let b = folder.write("b.npy", &data.bias);
    let o = folder.write(
        "o.npy",
        &Array1::from(offsets.iter().map(|&x| x as i64).collect::<Vec<_>>()),
    );
    let run = |cmd: Cmd| {
        let out = cmd.run();
        assert!(
            out.status.success(),
            "vlad {:?}: {}",
            cmd.argv(),
            cli_util::stderr(&out)
        );
    };
    let read_f32 = |p: &Path| -> Vec<f32> {
        let a: ndarray::ArrayD<f32> = read(p);
        a.iter().copied().collect()
    };
    let read_i64 = |p: &Path| -> Vec<u8> {
        let a: ndarray::ArrayD<i64> = read(p);
        a.iter().flat_map(|v| v.to_le_bytes()).collect()
    };
    let mut backs = vec!["reference", "cpu"];
    if gpu {
        backs.push("gpu");
    }
    let out = folder.path("out.npy");
    for back in &backs {
        for (dname, d) in [("f32", &d32), ("f64", &d64), ("u8", &d8)] {
            for (limit_name, limit) in [("one-batch", "1GiB"), ("split", "256KiB")] {
                for assignment in ["hard", "soft", "alpha"] {
                    for norm in ["ssr,l2", "mass", "rn,mass,intra,l2"] {
                        let cmd = Cmd::encode()
                            .descriptors(d)
                            .offsets(&o)
                            .centroids(&c)
                            .out(&out)
                            .backend(back)
                            .norm(norm)
                            .memory_limit(limit);
                        run(match assignment {
                            "soft" => cmd.soft(&w, &b),
                            "alpha" => cmd.soft_alpha("0.002"),
                            _ => cmd,
                        });
                        hashes.insert(
                            format!("stream/{back}/{limit_name}/{assignment}/{norm}/{dname}"),
                            sha(&[&f32_bytes(&read_f32(&out))]),
                        );
                    }
                }
                if *back != "reference" || limit_name == "one-batch" {
                    let labels = folder.path("labels.npy");
                    run(Cmd::assign()
                        .descriptors(d)
                        .centroids(&c)
                        .out(&labels)
                        .backend(back)
                        .memory_limit(limit));
                    hashes.insert(
                        format!("stream-assign/{back}/{limit_name}/{dname}"),
                        sha(&[&read_i64(&labels)]),
                    );
                }
                if *back != "reference" {
                    let words = folder.path("words.npy");
                    run(Cmd::kmeans()
                        .descriptors(d)
                        .k(8)
                        .flag("--iters", 4)
                        .flag("--max-points-per-centroid", 0)
                        .out(&words)
                        .backend(back)
                        .memory_limit(limit));
                    hashes.insert(
                        format!("stream-kmeans/{back}/{limit_name}/{dname}"),
                        sha(&[&f32_bytes(&read_f32(&words))]),
                    );
                }
            }
        }
    }
}

#[cfg(not(feature = "cli"))]
fn streamed(_gpu: bool, _hashes: &mut Hashes) {}

/// The adapter `Backend::Gpu` runs on, if any (`None` without one, or in a
/// build without the `gpu` feature).
fn gpu_adapter(data: &Data) -> Option<String> {
    let enc = encoder(data, Backend::Gpu, &Assignment::Hard, "ssr,l2", None);
    let batch = Batch::ragged(data.ragged.view(), &data.offsets).unwrap();
    match enc.encode_batch(&batch) {
        Ok(encoded) => encoded.report.adapter,
        Err(e) => {
            assert!(
                !(cfg!(feature = "gpu") && common::ci()),
                "golden: CI is set and no GPU adapter works: {e}"
            );
            eprintln!("golden: no GPU adapter ({e}): GPU cases are left out of the signature");
            None
        }
    }
}

#[test]
fn every_output_keeps_its_bits() {
    // Empty images first, inside and last; image 2 (160 rows) is split by
    // a 4 KiB binding.
    let data = Data::new(1234, vec![0, 0, 13, 13, 173, 174, 200, 200]);
    let adapter = gpu_adapter(&data);
    let gpu = adapter.is_some();
    let mut hashes = Hashes::new();
    in_memory(&data, gpu, &mut hashes);
    if gpu {
        gpu_chunked(&data, &mut hashes);
    }
    kmeans(&data, gpu, &mut hashes);
    streamed(gpu, &mut hashes);

    let sig = signature(adapter.as_deref());
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{sig}.sha256"));
    let text: String = hashes.iter().map(|(k, v)| format!("{v}  {k}\n")).collect();
    if std::env::var_os("VLAD_GOLDEN_RECORD").is_some() {
        std::fs::write(&file, text).unwrap();
        eprintln!(
            "golden: recorded {} cases in {}",
            hashes.len(),
            file.display()
        );
        return;
    }
    let Ok(recorded) = std::fs::read_to_string(&file) else {
        common::off_this_machine!(
            "no golden outputs are recorded for this machine's signature {sig} ({} cases \
             computed, none compared). Record them on the commit before a change: \
             VLAD_GOLDEN_RECORD=1 cargo test --release --test golden",
            hashes.len()
        )
    };
    let want: Hashes = recorded
        .lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(h, k)| (k.to_string(), h.to_string()))
        .collect();
    let mut differ = Vec::new();
    for (case, hash) in &want {
        match hashes.get(case) {
            Some(h) if h == hash => {}
            Some(_) => differ.push(format!("changed: {case}")),
            None => differ.push(format!("no longer computed: {case}")),
        }
    }
    for case in hashes.keys().filter(|k| !want.contains_key(*k)) {
        differ.push(format!("not recorded: {case}"));
    }
    assert!(
        differ.is_empty(),
        "{} of {} golden outputs differ from {}:\n{}",
        differ.len(),
        want.len(),
        file.display(),
        differ.join("\n")
    );
}
