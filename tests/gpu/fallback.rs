//! Without any GPU adapter, `auto` encodes on the CPU and says why in its
//! report (the library prints nothing), and `gpu` is refused as
//! unavailable (SPEC §7).
//!
//! The driver is hidden from a child process (this test binary, re-run on
//! one test with a marker variable), because wgpu reads the Vulkan loader's
//! variables when it starts and the parent may already have a device.

use std::process::Command;

use ndarray::{Array2, Array3};
use vlad::{Backend, Batch, Codebook, Encoder, VladError};

/// Set in the child: run the body of the test instead of spawning.
const CHILD_MARKER: &str = "VLAD_TEST_NO_GPU_CHILD";

/// Re-run this binary on test `name` (of this module) with no Vulkan driver
/// reachable.
fn run_child_without_gpu(name: &str) -> (bool, String, String) {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let out = Command::new(exe)
        .arg(harness_name(name))
        .args(["--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_MARKER, "1")
        .env("VK_ICD_FILENAMES", "/nonexistent.json")
        .env("VK_DRIVER_FILES", "/nonexistent.json")
        .env("WGPU_BACKEND", "vulkan")
        .env("XDG_RUNTIME_DIR", "/tmp")
        .env_remove("VLAD_GPU_MAX_BINDING_BYTES")
        .output()
        .expect("spawning the test binary");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Test `name` as the harness filters it: its path inside this binary
/// (`fallback::name`), the crate name left out.
fn harness_name(name: &str) -> String {
    match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::{name}"),
        None => name.to_string(),
    }
}

fn in_child() -> bool {
    std::env::var_os(CHILD_MARKER).is_some()
}

fn codebook() -> Codebook {
    Codebook::new(ndarray::array![[0.0f32, 0.0, 0.0], [5.0, 5.0, 5.0]].view()).unwrap()
}

fn images() -> Array3<f32> {
    Array3::from_shape_vec(
        (2, 2, 3),
        vec![1.0, 0.0, 0.0, 4.0, 5.0, 6.0, 0.0, 2.0, 0.0, 5.0, 5.0, 4.0],
    )
    .unwrap()
}

/// Child body: `auto` runs on the CPU, gives the CPU's answer and the reason.
#[test]
fn child_auto_encodes_on_cpu() {
    if !in_child() {
        return;
    }
    let images = images();
    let batch = Batch::fixed(images.view()).unwrap();
    let auto = Encoder::new(codebook()).encode_batch(&batch).unwrap();
    let cpu = Encoder::builder(codebook())
        .backend(Backend::Cpu)
        .build()
        .encode_batch(&batch)
        .unwrap();
    assert_eq!(auto.report.backend, Backend::Cpu);
    assert_eq!(auto.report.adapter, None);
    let reason = auto
        .report
        .fallback_reason
        .expect("auto says why it fell back");
    assert!(reason.contains("no GPU adapter"), "reason: {reason}");
    assert_eq!(auto.vlad, cpu.vlad);
    assert_eq!(auto.labels, cpu.labels);
    // Assignment falls back the same way; the stderr line is said once.
    let rows = Array2::from_shape_vec((2, 3), vec![1.0f32, 0.0, 0.0, 4.0, 5.0, 6.0]).unwrap();
    let encoder = Encoder::new(codebook());
    let assigned = encoder
        .assign_batch(&Batch::single(rows.view()).unwrap())
        .unwrap();
    assert_eq!(assigned.report.backend, Backend::Cpu);
    assert_eq!(assigned.labels, vec![0, 1]);
    encoder.encode(images.view()).unwrap();
    println!("CHILD-AUTO-OK");
}

/// Child body: `gpu` is an error, exit status 3.
#[test]
fn child_gpu_is_unavailable() {
    if !in_child() {
        return;
    }
    let images = images();
    let err = Encoder::builder(codebook())
        .backend(Backend::Gpu)
        .build()
        .encode(images.view())
        .unwrap_err();
    assert!(matches!(err, VladError::BackendUnavailable(_)), "{err}");
    let rows = Array2::from_shape_vec((1, 3), vec![1.0f32, 0.0, 0.0]).unwrap();
    let err = Encoder::builder(codebook())
        .backend(Backend::Gpu)
        .build()
        .assign(rows.view())
        .unwrap_err();
    assert!(matches!(err, VladError::BackendUnavailable(_)), "{err}");
    println!("CHILD-GPU-OK");
}

#[test]
fn auto_falls_back_to_cpu_without_an_adapter() {
    if in_child() {
        return;
    }
    let (ok, stdout, stderr) = run_child_without_gpu("child_auto_encodes_on_cpu");
    assert!(ok, "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("CHILD-AUTO-OK"),
        "child did not run:\n{stdout}"
    );
    // The reason is in the report (checked in the child); the library
    // itself prints nothing.
    assert!(
        !stderr.lines().any(|l| l.starts_with("vlad:")),
        "the library printed:\n{stderr}"
    );
}

#[test]
fn gpu_without_an_adapter_is_unavailable() {
    if in_child() {
        return;
    }
    let (ok, stdout, stderr) = run_child_without_gpu("child_gpu_is_unavailable");
    assert!(ok, "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("CHILD-GPU-OK"),
        "child did not run:\n{stdout}"
    );
    assert!(
        !stderr.contains("using the cpu backend"),
        "gpu must not fall back:\n{stderr}"
    );
}
