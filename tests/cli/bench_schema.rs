//! `vlad bench --json` follows docs/bench-schema.md (`vlad-bench/2`): every
//! field the document lists is in the JSON, for one shape and for the
//! suite; `--dtype` runs each element type; `--compare` puts two files side
//! by side with the ratio per stage.

use serde_json::Value;
use vlad::Backend;

use crate::common::backend_test;
use crate::util::{BenchShape, Cmd, Folder, stderr, vlad};

const TINY: BenchShape = BenchShape {
    images: 4,
    per_image: 32,
    dim: 8,
    clusters: 4,
};

/// The fields docs/bench-schema.md lists under `## {section}`: the first
/// backticked name of each table row.
fn documented(section: &str) -> Vec<String> {
    let doc = include_str!("../../docs/bench-schema.md");
    let start = doc
        .find(&format!("\n## {section}"))
        .unwrap_or_else(|| panic!("no section {section}"));
    let body = &doc[start + 4..];
    let body = &body[..body.find("\n## ").unwrap_or(body.len())];
    let fields: Vec<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect();
    assert!(fields.len() >= 4, "{section}: {fields:?}");
    fields
}

/// `value` has `path` (dots go into objects); null counts as present.
fn has(value: &Value, path: &str) -> bool {
    let mut v = value;
    for key in path.split('.') {
        match v.get(key) {
            Some(inner) => v = inner,
            None => return false,
        }
    }
    true
}

fn assert_fields(value: &Value, section: &str) {
    for field in documented(section) {
        assert!(
            has(value, &field),
            "{section} field `{field}` missing in {value}"
        );
    }
}

/// Every documented field of a run, its ceilings and its rows.
fn assert_run(run: &Value) {
    assert_fields(run, "Run");
    let ceilings = run["ceilings"].as_array().expect("ceilings");
    assert!(!ceilings.is_empty());
    for c in ceilings {
        assert_fields(c, "Ceilings");
    }
    let rows = run["rows"].as_array().expect("rows");
    assert!(!rows.is_empty());
    for r in rows {
        assert_fields(r, "Rows");
    }
}

fn json_of(cmd: Cmd) -> Value {
    let out = cmd.run();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn one_shape_has_every_documented_field() {
    let v = json_of(Cmd::bench(TINY).backend("cpu").repeats(1).json());
    assert_eq!(v["schema"], "vlad-bench/2");
    assert_fields(&v, "Document");
    assert_run(&v);
    assert_ne!(v["host"]["cpu"], "");
    assert_eq!(v["dtype"], "f32");
    assert_eq!(v["ceilings"][0]["emulation"], false);
}

#[test]
fn the_suite_under_a_cap_runs_its_first_shape_only() {
    let v = json_of(
        Cmd::new("bench")
            .arg("--suite")
            .flag("--max-n", 40_000)
            .backend("cpu")
            .json(),
    );
    assert_eq!(v["schema"], "vlad-bench/2");
    assert_eq!(v["suite"], true);
    assert_fields(&v, "Document");
    let runs = v["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    assert_run(run);
    // The seed experiment's shape, fixed: 256 × 128 × 64, K = 16.
    assert_eq!(run["label"], "seed");
    assert_eq!(
        [
            &run["images"],
            &run["per_image"],
            &run["dim"],
            &run["clusters"]
        ],
        [256, 128, 64, 16]
    );
    assert_eq!(run["descriptors"], 256 * 128);
}

#[test]
fn a_cap_below_every_shape_is_a_usage_error() {
    let out = vlad(&["bench", "--suite", "--max-n", "10", "--backend", "cpu"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--max-n"), "{}", stderr(&out));
}

#[test]
fn an_unknown_dtype_is_a_usage_error() {
    let out = Cmd::bench(TINY).backend("cpu").flag("--dtype", "f64").run();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("f64"), "{}", stderr(&out));
}

// Each dtype runs on each backend and is named in the JSON; the gpu one is
// an emulation on lavapipe and says so.
backend_test!(every_dtype_runs, [cpu, gpu], |backend| {
    for dtype in ["u8", "f16", "f32"] {
        let v = json_of(
            Cmd::bench(TINY)
                .backend(backend)
                .repeats(1)
                .flag("--dtype", dtype)
                .json(),
        );
        assert_eq!(v["dtype"], dtype);
        assert_eq!(v["dtype_widened_on_host"], dtype == "f16");
        let c = &v["ceilings"][0];
        assert_eq!(c["backend"], backend.to_string());
        if backend == Backend::Gpu {
            assert!(c["driver"].is_string(), "{c}");
            assert!(c["adapter_kind"].is_string(), "{c}");
            let software = c["adapter_kind"] == "software";
            assert_eq!(c["emulation"], software, "{c}");
        } else {
            assert!(c["fma_path"].is_string(), "{c}");
        }
        assert_run(&v);
        // Each dtype's stages are modelled in its own width: none beats
        // its ceiling (a u8 upload counted as f32 bytes did, at 202 %).
        for r in v["rows"].as_array().unwrap() {
            if let Some(p) = r["percent_of_ceiling"].as_f64() {
                assert!(p <= 100.0, "{dtype}: {r}");
            }
        }
    }
});

/// `doc` with every median multiplied by `factor`.
fn scaled(doc: &Value, factor: f64) -> Value {
    let mut d = doc.clone();
    for r in d["rows"].as_array_mut().expect("rows") {
        let m = r["median_seconds"].as_f64().expect("median");
        r["median_seconds"] = (m * factor).into();
    }
    d
}

#[test]
fn compare_prints_the_ratio_of_every_stage() {
    let folder = Folder::new();
    let a = json_of(Cmd::bench(TINY).backend("cpu").repeats(1).json());
    let (pa, pb) = (folder.path("a.json"), folder.path("b.json"));
    std::fs::write(&pa, a.to_string()).unwrap();
    std::fs::write(&pb, scaled(&a, 2.0).to_string()).unwrap();
    let out = Cmd::new("bench")
        .arg("--compare")
        .arg(pa.display().to_string())
        .arg(pb.display().to_string())
        .run();
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("B / A"), "{table}");
    let stages: Vec<&str> = a["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["stage"].as_str())
        .collect();
    for stage in &stages {
        let line = table
            .lines()
            .find(|l| l.split_whitespace().nth(2) == Some(stage))
            .unwrap_or_else(|| panic!("no {stage} line in\n{table}"));
        // Medians of 0 have no ratio; every other stage is exactly twice.
        assert!(
            line.ends_with("2.000") || line.ends_with(" -"),
            "{stage}: {line}"
        );
    }
    assert!(table.contains("2.000"), "{table}");
}

#[test]
fn compare_refuses_a_file_of_another_schema() {
    let folder = Folder::new();
    let a = json_of(Cmd::bench(TINY).backend("cpu").repeats(1).json());
    let mut old = a.clone();
    old["schema"] = "vlad-bench/1".into();
    let (pa, pb) = (folder.path("a.json"), folder.path("old.json"));
    std::fs::write(&pa, a.to_string()).unwrap();
    std::fs::write(&pb, old.to_string()).unwrap();
    let out = Cmd::new("bench")
        .arg("--compare")
        .arg(pa.display().to_string())
        .arg(pb.display().to_string())
        .run();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("old.json") && err.contains("vlad-bench/1"),
        "{err}"
    );
    // Not JSON at all: also a usage error naming the file.
    std::fs::write(&pb, "not json").unwrap();
    let out = Cmd::new("bench")
        .arg("--compare")
        .arg(pa.display().to_string())
        .arg(pb.display().to_string())
        .run();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
