//! `vlad bench`: the JSON it prints and the exit statuses it promises.

use crate::common::ci;
use crate::util::{BenchShape, Cmd, vlad};

#[test]
fn cpu_bench_json_has_stages_medians_and_throughput() {
    let shape = BenchShape {
        images: 8,
        per_image: 32,
        dim: 16,
        clusters: 4,
    };
    let out = Cmd::bench(shape).backend("cpu").repeats(3).json().run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["descriptors"], 256);
    let rows = v["rows"].as_array().expect("rows");
    let stages: Vec<&str> = rows.iter().filter_map(|r| r["stage"].as_str()).collect();
    assert!(stages.contains(&"assign"), "{stages:?}");
    assert!(stages.contains(&"total"), "{stages:?}");
    for r in rows {
        assert_eq!(r["backend"], "cpu");
        let med = r["median_seconds"].as_f64().expect("median");
        assert!(med >= r["min_seconds"].as_f64().unwrap());
        assert!(med <= r["max_seconds"].as_f64().unwrap());
    }
    let total = rows.iter().find(|r| r["stage"] == "total").unwrap();
    assert!(total["descriptors_per_second"].as_f64().unwrap() > 0.0);
    assert!(total["gigaflops_per_second"].as_f64().unwrap() > 0.0);
}

#[test]
fn bad_bench_shape_is_a_usage_error() {
    let out = vlad(&["bench", "--images", "0", "--backend", "cpu"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("images"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn gpu_bench_runs_or_exits_3() {
    let shape = BenchShape {
        images: 2,
        per_image: 8,
        dim: 4,
        clusters: 2,
    };
    let out = Cmd::bench(shape).backend("gpu").repeats(1).json().run();
    match out.status.code() {
        Some(0) => {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
            let rows = v["rows"].as_array().expect("rows");
            assert!(
                rows.iter()
                    .all(|r| r["backend"] == "gpu" && r["adapter"].is_string())
            );
        }
        Some(3) => {
            assert!(!ci(), "CI must have a GPU adapter (lavapipe)");
            assert!(out.stdout.is_empty());
        }
        other => panic!(
            "unexpected exit {other:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[test]
fn a_bad_binding_cap_in_the_environment_is_a_clear_error() {
    let shape = BenchShape {
        images: 2,
        per_image: 4,
        dim: 2,
        clusters: 2,
    };
    for value in ["0", "lots"] {
        let out = Cmd::bench(shape)
            .backend("gpu")
            .repeats(1)
            .run_with_env(&[("VLAD_GPU_MAX_BINDING_BYTES", value)]);
        let err = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(2) => assert!(err.contains("VLAD_GPU_MAX_BINDING_BYTES"), "{err}"),
            // Without an adapter the GPU is refused before the cap is read.
            Some(3) => assert!(!ci(), "CI has lavapipe: {err}"),
            other => panic!("{value:?}: unexpected exit {other:?}: {err}"),
        }
        assert!(out.stdout.is_empty());
    }
}
