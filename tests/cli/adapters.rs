//! SPEC §7 on the command line: `vlad adapters`, `auto` never on a software
//! adapter (one stderr line saying why), `gpu` on one (and saying so, with
//! `adapter_kind` and `setup_seconds` in `--json`), `VLAD_ADAPTER`, the demo
//! skipping a software adapter, no Mesa noise on stderr, and an output too
//! large for memory refused up front.
//!
//! The machine decides which branch runs: with a hardware adapter `auto`
//! must take it; with only a software one (CI: lavapipe) it must not. With
//! `CI` set, a machine with no adapter at all is a failure.

use std::process::{Command, Output};

use ndarray::{Array2, Array3};
use serde_json::Value;

use crate::common::{ci, skip_without_gpu};
use crate::util::{Cmd, Folder, p, stderr, stdout, vlad, vlad_with_env};

fn adapters_json() -> Value {
    let run = vlad(&["adapters", "--json"]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    serde_json::from_slice(&run.stdout).expect("vlad adapters --json prints one JSON object")
}

/// `(has a hardware adapter, has any adapter)`.
fn machine() -> (bool, bool) {
    let json = adapters_json();
    let list = json["adapters"].as_array().unwrap();
    let hardware = list.iter().any(|a| {
        matches!(
            a["device_type"].as_str(),
            Some("discrete" | "integrated" | "virtual")
        )
    });
    (hardware, !list.is_empty())
}

fn inputs(folder: &Folder) -> (String, String, String) {
    let d = Array3::from_shape_fn((3, 20, 4), |(t, i, j)| ((t * 7 + i * 3 + j) % 11) as f32);
    let c = Array2::from_shape_fn((5, 4), |(i, j)| (i * 2 + j) as f32);
    (
        p(&folder.write("d.npy", &d)).to_string(),
        p(&folder.write("c.npy", &c)).to_string(),
        p(&folder.path("v.npy")).to_string(),
    )
}

fn encode(backend: &str, env: &[(&str, &str)]) -> Output {
    let folder = Folder::new();
    let (d, c, v) = inputs(&folder);
    Cmd::encode()
        .descriptors(&d)
        .centroids(&c)
        .out(&v)
        .backend(backend)
        .json()
        .run_with_env(env)
}

#[test]
fn adapters_lists_every_adapter_with_what_vlad_uses() {
    let json = adapters_json();
    let list = json["adapters"].as_array().unwrap();
    if ci() {
        assert!(
            !list.is_empty(),
            "CI must have an adapter (lavapipe): {json}"
        );
    }
    for (i, a) in list.iter().enumerate() {
        assert_eq!(a["index"].as_u64(), Some(i as u64));
        for key in ["name", "device_type", "api", "driver"] {
            assert!(a[key].is_string(), "{key} in {a}");
        }
        for key in [
            "subgroups",
            "timestamps",
            "shader_f16",
            "cooperative_matrix",
        ] {
            assert!(a["features"][key].is_boolean(), "{key} in {a}");
        }
        assert!(a["max_binding_bytes"].as_u64().unwrap() > 0);
        let name = a["name"].as_str().unwrap().to_lowercase();
        if name.contains("llvmpipe") || name.contains("lavapipe") {
            assert_eq!(a["software"], Value::Bool(true), "{a}");
            assert_eq!(a["device_type"], "software", "{a}");
        }
    }
    // auto never marks a software adapter.
    if let Some(i) = json["auto"]["adapter"].as_u64() {
        assert_ne!(list[i as usize]["software"], Value::Bool(true), "{json}");
    }
    let (hardware, any) = machine();
    assert_eq!(
        json["auto"]["backend"],
        if hardware { "gpu" } else { "cpu" }
    );
    assert_eq!(
        json["gpu"]["backend"],
        if any { "gpu" } else { "unavailable" }
    );
    // The table says the same in words.
    let table = stdout(&vlad(&["adapters"]));
    assert!(
        table.contains("--backend auto:") && table.contains("--backend gpu:"),
        "{table}"
    );
}

#[test]
fn auto_takes_only_a_hardware_adapter_and_says_why_not() {
    let (hardware, _) = machine();
    let run = encode("auto", &[]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let json: Value = serde_json::from_slice(&run.stdout).unwrap();
    let err = stderr(&run);
    if hardware {
        assert_eq!(json["backend"], "gpu", "{json}");
        assert_ne!(json["adapter_kind"], "software");
    } else {
        assert_eq!(json["backend"], "cpu", "{json}");
        assert_eq!(json["adapter"], Value::Null);
        let reason = json["fallback_reason"].as_str().unwrap();
        let lines: Vec<&str> = err.lines().filter(|l| l.contains(reason)).collect();
        assert_eq!(lines.len(), 1, "the reason once on stderr: {err}");
        if machine().1 {
            assert!(
                reason.contains("only a software adapter") && reason.contains("--backend gpu"),
                "{reason}"
            );
        }
    }
}

#[test]
fn gpu_runs_on_a_software_adapter_and_says_so() {
    let json = adapters_json();
    let Some(index) = json["gpu"]["adapter"].as_u64() else {
        skip_without_gpu!("`vlad adapters --json` lists no adapter for --backend gpu")
    };
    let picked = &json["adapters"][index as usize];
    let run = encode("gpu", &[]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let out: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(out["backend"], "gpu");
    assert_eq!(out["adapter_kind"], picked["device_type"], "{out}");
    // Setup (device, shader compilation) is apart from compute.
    assert!(out["setup_seconds"].as_f64().unwrap() > 0.0, "{out}");
    assert!(out["seconds"].as_f64().unwrap() >= 0.0);
    if picked["software"] == Value::Bool(true) {
        assert_eq!(out["adapter_kind"], "software");
        assert!(
            stderr(&run).contains("software adapter"),
            "{}",
            stderr(&run)
        );
    }
}

#[test]
fn vlad_adapter_picks_by_index_and_a_miss_is_exit_3() {
    for backend in ["gpu", "auto"] {
        let run = encode(backend, &[("VLAD_ADAPTER", "no-such-adapter-xyz")]);
        assert_eq!(run.status.code(), Some(3), "{backend}: {}", stderr(&run));
        assert!(stderr(&run).contains("VLAD_ADAPTER=no-such-adapter-xyz"));
        assert!(run.stdout.is_empty());
    }
    let run = vlad_with_env(
        &["adapters", "--json"],
        &[("VLAD_ADAPTER", "no-such-adapter-xyz")],
    );
    let json: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(json["gpu"]["backend"], "unavailable");
    if machine().1 {
        let run = encode("gpu", &[("VLAD_ADAPTER", "0")]);
        assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
        let out: Value = serde_json::from_slice(&run.stdout).unwrap();
        let first = &adapters_json()["adapters"][0];
        assert!(
            out["adapter"]
                .as_str()
                .unwrap()
                .starts_with(first["name"].as_str().unwrap()),
            "{out}"
        );
    }
}

#[test]
fn kmeans_auto_follows_the_same_rule() {
    let (hardware, _) = machine();
    let folder = Folder::new();
    let (d, _, _) = inputs(&folder);
    let out = folder.path("c.npy");
    let run = Cmd::kmeans().descriptors(&d).k(3).out(&out).json().run();
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let json: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        json["backend"],
        if hardware { "gpu" } else { "cpu" },
        "{json}"
    );
    if !hardware {
        let reason = json["fallback_reason"].as_str().unwrap();
        assert!(stderr(&run).contains(reason), "{}", stderr(&run));
    }
}

/// The demo: reference and cpu always; the gpu only on a hardware adapter
/// (else it says it skipped the software one and how to run it). Mesa's
/// XDG_RUNTIME_DIR complaint does not appear even with the variable unset.
#[test]
fn demo_skips_a_software_adapter_quietly() {
    let (hardware, _) = machine();
    let run = Command::new(env!("CARGO_BIN_EXE_vlad"))
        .arg("demo")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    let (out, err) = (stdout(&run), stderr(&run));
    assert_eq!(run.status.code(), Some(0), "{out}\n{err}");
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
    assert!(
        out.contains("\nreference ") && out.contains("\ncpu "),
        "{out}"
    );
    if hardware {
        assert!(out.contains("\ngpu "), "{out}");
    } else {
        assert!(
            out.contains("gpu: skipped") && out.contains("--software-gpu"),
            "{out}"
        );
    }
}

#[test]
fn an_output_too_large_for_memory_is_refused_up_front() {
    // (2^50, 0, 128): a header-only file claiming 2^50 empty images; with
    // K = 2 the (T, K·F) f32 output is 2^60 bytes.
    let folder = Folder::new();
    let d = folder.write("d.npy", &Array3::<f32>::zeros((1 << 50, 0, 128)));
    let c = folder.write("c.npy", &Array2::<f32>::ones((2, 128)));
    let out = folder.path("v.npy");
    let run = Cmd::encode()
        .descriptors(&d)
        .centroids(&c)
        .out(&out)
        .backend("cpu")
        .run();
    let err = stderr(&run);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("1152921504606846976 bytes") && err.contains("fewer images"),
        "{err}"
    );
    assert!(!out.exists());
}
