//! `vlad encode` / `vlad assign` streamed from memory-mapped inputs in
//! bounded batches (SPEC §11), run as a user runs them: the built binary on
//! `.npy` files, compared bit for bit with the library's in-memory result.

use std::path::Path;

use ndarray::{Array1, Array2, Array3, ShapeBuilder};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vlad::{Backend, Codebook, Encoder, Normalization};

use crate::common::cases::{normal_matrix, normal_ragged};
use crate::common::{backend_test, skip};
use crate::util::{Cmd, Folder, p, read, stderr, stdout};

const F: usize = 16;
const K: usize = 8;

/// Image sizes with empty images next to split ones and at both ends: with
/// a 256 KiB limit the cpu backend's batches hold ~950 rows and its pieces
/// 4096, so images of 5000, 9000 and 12000 rows are split (2, 3 and 3
/// pieces) and the small ones are grouped.
const SIZES: [usize; 12] = [0, 5000, 0, 3, 9000, 0, 1, 12000, 7, 0, 700, 0];

struct Case {
    folder: Folder,
    rows: Array2<f32>,
    offsets: Vec<usize>,
    centroids: Array2<f32>,
}

impl Case {
    fn new(seed: u64) -> Self {
        let data = normal_ragged(&mut ChaCha8Rng::seed_from_u64(seed), &SIZES, F, K);
        let folder = Folder::new();
        folder.write("d.npy", &data.rows);
        folder.write("c.npy", &data.centroids);
        let o: Array1<i64> = data.offsets.iter().map(|&o| o as i64).collect();
        folder.write("o.npy", &o);
        Case {
            folder,
            rows: data.rows,
            offsets: data.offsets,
            centroids: data.centroids,
        }
    }

    fn encoder(&self, backend: Backend, norm: &str, cap: Option<u64>) -> Encoder {
        Encoder::builder(Codebook::new(self.centroids.view()).unwrap())
            .backend(backend)
            .normalization(norm.parse::<Normalization>().unwrap())
            .gpu_max_binding_bytes(cap)
            .build()
    }

    fn path(&self, name: &str) -> String {
        p(&self.folder.path(name)).to_string()
    }

    /// `command --descriptors d.npy --centroids c.npy` on the case's files.
    fn cmd(&self, command: Cmd) -> Cmd {
        command
            .descriptors(self.path("d.npy"))
            .centroids(self.path("c.npy"))
    }
}

fn json(out: &std::process::Output) -> serde_json::Value {
    let text = stdout(out);
    assert_eq!(text.lines().count(), 1, "one JSON line on stdout: {text:?}");
    serde_json::from_str(&text).unwrap()
}

fn assert_bitwise(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let first = a
        .iter()
        .zip(b)
        .position(|(x, y)| x.to_bits() != y.to_bits());
    assert_eq!(first, None, "{what}: first differing element");
}

/// Stream `encode` on `backend` with a 256 KiB limit (and, given `cap`,
/// GPU bindings of that size), and check the file against the in-memory
/// library result, bit for bit.
fn encode_matches(backend: Backend, norms: &[&str], cap: Option<u64>) {
    let case = Case::new(7);
    let cap_text = cap.map(|c| c.to_string());
    let env: Vec<(&str, &str)> = cap_text
        .iter()
        .map(|c| ("VLAD_GPU_MAX_BINDING_BYTES", c.as_str()))
        .collect();
    for norm in norms {
        let out = case.path("v.npy");
        let run = case
            .cmd(Cmd::encode())
            .offsets(case.path("o.npy"))
            .out(&out)
            .backend(backend)
            .norm(norm)
            .memory_limit("256KiB")
            .json()
            .run_with_env(&env);
        assert!(run.status.success(), "{backend} {norm}: {}", stderr(&run));
        let report = json(&run);
        assert!(report["batches"].as_u64().unwrap() > 5, "{report}");
        assert!(report["split_images"].as_u64().unwrap() >= 3, "{report}");
        let streamed: Array2<f32> = read(Path::new(&out));
        let in_memory = case
            .encoder(backend, norm, cap)
            .encode_ragged(case.rows.view(), &case.offsets)
            .unwrap();
        assert_eq!(streamed.dim(), in_memory.dim());
        assert_bitwise(
            streamed.as_slice().unwrap(),
            in_memory.as_slice().unwrap(),
            &format!("{backend} {norm}"),
        );
    }
}

// Each backend's stream against its own in-memory encoding. On the gpu, 8
// KiB bindings: the in-memory run splits the large images into pieces and
// the rest into many chunks; the stream follows them.
backend_test!(stream_is_bitwise_the_in_memory_encoding, |backend| {
    let (norms, cap): (&[&str], _) = match backend {
        Backend::Reference => (&["ssr,l2", "mass,power=0.3,intra,l2"], None),
        Backend::Cpu => (&["ssr,l2", "none", "mass,intra"], None),
        _ => (&["ssr,l2", "none", "rn,ssr,l2"], Some(8192)),
    };
    encode_matches(backend, norms, cap);
});

#[test]
fn given_labels_stream_bitwise() {
    let case = Case::new(11);
    let n = case.rows.nrows();
    let labels: Array1<i64> = (0..n).map(|i| ((i * 7) % K) as i64).collect();
    let labels_path = case.folder.write("a.npy", &labels);
    let out = case.path("v.npy");
    let run = case
        .cmd(Cmd::encode())
        .offsets(case.path("o.npy"))
        .labels(&labels_path)
        .out(&out)
        .backend("cpu")
        .memory_limit("256KiB")
        .run();
    assert!(run.status.success(), "{}", stderr(&run));
    let given: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
    let in_memory = case
        .encoder(Backend::Cpu, "ssr,l2", None)
        .encode_ragged_with_labels(case.rows.view(), &case.offsets, &given)
        .unwrap();
    let streamed: Array2<f32> = read(Path::new(&out));
    assert_bitwise(
        streamed.as_slice().unwrap(),
        in_memory.as_slice().unwrap(),
        "labels",
    );
}

/// Stream `assign` on `backend` with a 256 KiB limit (and, given `cap`, GPU
/// bindings of that size) against the in-memory labels.
fn assign_matches(backend: Backend, cap: Option<u64>) {
    let case = Case::new(3);
    let out = case.path("a.npy");
    let cap_text = cap.map(|c| c.to_string());
    let env: Vec<(&str, &str)> = cap_text
        .iter()
        .map(|c| ("VLAD_GPU_MAX_BINDING_BYTES", c.as_str()))
        .collect();
    let run = case
        .cmd(Cmd::assign())
        .out(&out)
        .backend(backend)
        .memory_limit("256KiB")
        .json()
        .run_with_env(&env);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(json(&run)["batches"].as_u64().unwrap() > 5);
    let streamed: Array1<i64> = read(Path::new(&out));
    let in_memory = case
        .encoder(backend, "none", cap)
        .assign(case.rows.view())
        .unwrap();
    let in_memory: Vec<i64> = in_memory.iter().map(|&l| i64::from(l)).collect();
    assert_eq!(streamed.to_vec(), in_memory, "{backend}");
}

// 64 KiB bindings on the gpu.
backend_test!(assign_streams_bitwise, |backend| {
    let cap = (backend == Backend::Gpu).then_some(65536);
    assign_matches(backend, cap);
});

/// Fortran order and float64 are converted a batch at a time; the result is
/// the in-memory result on the same values.
#[test]
fn fortran_order_and_f64_stream_correctly() {
    let case = Case::new(5);
    let (n, _) = case.rows.dim();
    // (N, F) float64 in Fortran order.
    let mut fortran = Array2::<f64>::zeros((n, F).f());
    fortran.zip_mut_with(&case.rows, |a, &b| *a = b as f64 * 1.000_000_1);
    let d64 = case.folder.write("d64f.npy", &fortran);
    let header = std::fs::read(&d64).unwrap();
    assert!(String::from_utf8_lossy(&header[..128]).contains("'fortran_order': True"));
    // (T, L, F) float32 in Fortran order.
    let (t, l) = (37, 300);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let c3 = normal_matrix(&mut rng, t * l, F)
        .into_shape_with_order((t, l, F))
        .unwrap();
    let mut f3 = Array3::<f32>::zeros((t, l, F).f());
    f3.assign(&c3);
    let d3 = case.folder.write("d3f.npy", &f3);

    for (path, want) in [
        (
            d64,
            case.encoder(Backend::Cpu, "ssr,l2", None)
                .encode_ragged(fortran.as_standard_layout().view(), &case.offsets)
                .unwrap(),
        ),
        (
            d3,
            case.encoder(Backend::Cpu, "ssr,l2", None)
                .encode(c3.view())
                .unwrap(),
        ),
    ] {
        let out = case.path("v.npy");
        let mut cmd = Cmd::encode()
            .descriptors(&path)
            .centroids(case.path("c.npy"))
            .out(&out)
            .backend("cpu")
            .memory_limit("256KiB");
        if path.ends_with("d64f.npy") {
            cmd = cmd.offsets(case.path("o.npy"));
        }
        let run = cmd.run();
        assert!(run.status.success(), "{}", stderr(&run));
        let streamed: Array2<f32> = read(Path::new(&out));
        assert_bitwise(
            streamed.as_slice().unwrap(),
            want.as_slice().unwrap(),
            &path.display().to_string(),
        );
    }
}

#[test]
fn a_file_truncated_after_its_header_is_refused_with_nothing_written() {
    let case = Case::new(1);
    let bytes = std::fs::read(case.folder.path("d.npy")).unwrap();
    // Keep the header (128 bytes for this shape) and a little data.
    let cut = case.folder.write_bytes("cut.npy", &bytes[..128 + 1000]);
    let before = case.folder.listing();
    let run = Cmd::encode()
        .descriptors(&cut)
        .centroids(case.path("c.npy"))
        .out(case.path("v.npy"))
        .backend("cpu")
        .run();
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(stderr(&run).contains("truncated"), "{}", stderr(&run));
    assert_eq!(case.folder.listing(), before, "nothing written");
}

/// A NaN in the last image is found only after earlier batches were
/// written: the run fails naming the image and row in the whole file, and
/// leaves no file behind.
#[test]
fn a_failure_half_way_leaves_nothing() {
    let mut case = Case::new(2);
    let n = case.rows.nrows();
    case.rows[[n - 1, 3]] = f32::NAN;
    case.folder.write("nan.npy", &case.rows);
    let before = case.folder.listing();
    let run = Cmd::encode()
        .descriptors(case.path("nan.npy"))
        .centroids(case.path("c.npy"))
        .offsets(case.path("o.npy"))
        .out(case.path("v.npy"))
        .backend("cpu")
        .memory_limit("256KiB")
        .run();
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    let message = stderr(&run);
    assert!(
        message.contains(&format!("row {}", n - 1)) && message.contains("(image 10)"),
        "{message}"
    );
    assert_eq!(
        case.folder.listing(),
        before,
        "no output, no temporary file"
    );
}

/// `--out` where nothing can be created: under /proc (not writable even by
/// root, which these tests run as, so a chmod'ed folder would not do), and
/// below a regular file.
#[test]
fn an_unwritable_out_fails_cleanly() {
    let case = Case::new(4);
    let file = case.path("d.npy");
    for out in [
        "/proc/vlad-stream-test.npy".to_string(),
        format!("{file}/v.npy"),
    ] {
        let run = case.cmd(Cmd::encode()).out(&out).backend("cpu").run();
        assert_eq!(run.status.code(), Some(2), "{out}: {}", stderr(&run));
        assert!(stderr(&run).contains("cannot write"), "{}", stderr(&run));
        assert_eq!(stderr(&run).lines().count(), 1, "{}", stderr(&run));
    }
}

/// A full disk half-way through, simulated with a file-size limit
/// (`ulimit -f`, SIGXFSZ ignored so the write fails with EFBIG): the run
/// fails cleanly and the folder holds no partial or temporary file.
#[test]
fn a_full_disk_half_way_fails_cleanly() {
    let case = Case::new(6);
    let before = case.folder.listing();
    // The encoding is only 12 × 8 × 16 × 4 bytes, below any limit; assign
    // writes 8 bytes a row (~230 KB), past a 64 KiB one.
    let command = format!(
        "trap '' XFSZ; ulimit -f 64; exec '{}' assign --descriptors '{}' --centroids '{}' \
         --out '{}' --backend cpu --memory-limit 256KiB",
        env!("CARGO_BIN_EXE_vlad"),
        case.path("d.npy"),
        case.path("c.npy"),
        case.path("v.npy"),
    );
    let run = std::process::Command::new("bash")
        .arg("-c")
        .arg(&command)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(stderr(&run).contains("cannot write"), "{}", stderr(&run));
    assert_eq!(case.folder.listing(), before, "nothing left behind");
}

/// With stderr a terminal (a pty from `script`) a progress bar may be drawn
/// there, but stdout — redirected to a file — holds only the JSON object.
#[test]
fn progress_never_reaches_stdout_or_the_json() {
    let case = Case::new(8);
    let json_path = case.path("run.json");
    let command = format!(
        "'{}' assign --descriptors '{}' --centroids '{}' --out '{}' --backend cpu \
         --memory-limit 256KiB --json > '{}'",
        env!("CARGO_BIN_EXE_vlad"),
        case.path("d.npy"),
        case.path("c.npy"),
        case.path("a.npy"),
        json_path,
    );
    let run = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output();
    let Ok(run) = run else {
        skip!("`script` (util-linux) is not installed")
    };
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
    let text = std::fs::read_to_string(&json_path).unwrap();
    assert_eq!(text.lines().count(), 1, "{text:?}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v["wall_seconds"].as_f64().unwrap() > 0.0);
    assert!(v["peak_rss_bytes"].as_u64().unwrap() > 0);
    // Not a terminal: nothing but the summary line on stderr.
    let plain = case
        .cmd(Cmd::assign())
        .out(case.path("a.npy"))
        .backend("cpu")
        .memory_limit("256KiB")
        .run();
    assert!(plain.status.success());
    assert_eq!(stdout(&plain), "");
    assert_eq!(stderr(&plain).lines().count(), 1, "{}", stderr(&plain));
}

#[test]
fn memory_limit_is_validated() {
    let case = Case::new(10);
    for bad in ["0", "lots", "12 parsecs"] {
        let run = case
            .cmd(Cmd::encode())
            .out(case.path("v.npy"))
            .memory_limit(bad)
            .run();
        assert_eq!(run.status.code(), Some(2), "{bad}");
        assert!(!case.folder.path("v.npy").exists());
    }
}

/// What the streamed run may use beyond `--memory-limit`: the process's
/// own baseline (binary and libraries, thread stacks, the codebook,
/// allocator slack). Measured at 23 MiB peak for a 16 MiB limit on a
/// 512 MB input (Intel Xeon, Emerald Rapids-class).
const ALLOWANCE: u64 = 32 << 20;

/// Peak resident memory stays under the limit plus the allowance on an
/// input 12× the limit: read from the child's /proc status while it runs
/// (VmHWM only grows) and from its own `peak_rss_bytes`.
#[test]
fn peak_memory_is_bounded_by_the_limit() {
    let folder = Folder::new();
    let (t, l, f, k) = (400usize, 1000usize, 128usize, 16usize);
    let data: Vec<f32> = (0..t * l * f)
        .map(|i| ((i as u64 * 2_654_435_761) % 1000) as f32 / 1000.0)
        .collect();
    let descriptors = Array3::from_shape_vec((t, l, f), data).unwrap();
    let d = folder.write("big.npy", &descriptors);
    drop(descriptors);
    let centroids = Array2::from_shape_fn((k, f), |(i, j)| ((i * 31 + j * 7) % 100) as f32 / 100.0);
    let c = folder.write("c.npy", &centroids);
    let input_bytes = std::fs::metadata(&d).unwrap().len();
    let limit: u64 = 16 << 20;
    assert!(input_bytes >= 8 * limit);

    for command in ["encode", "assign"] {
        let out = folder.path("out.npy");
        let (run, polled) = Cmd::new(command)
            .descriptors(&d)
            .centroids(&c)
            .out(&out)
            .backend("cpu")
            .memory_limit("16MiB")
            .json()
            .run_with_peak_rss();
        assert!(run.status.success(), "{}", stderr(&run));
        let report = json(&run);
        let reported = report["peak_rss_bytes"].as_u64().unwrap();
        assert!(polled > 0, "the child's status was read while it ran");
        assert!(
            reported <= limit + ALLOWANCE && polled <= limit + ALLOWANCE,
            "{command}: peak {reported} bytes (polled {polled}) over {limit} + {ALLOWANCE}"
        );
        assert!(report["batches"].as_u64().unwrap() >= 8);
    }
}
