//! `vlad bench` measures each backend's ceilings and reports every bounded
//! stage as a percentage of its ceiling, in the JSON and the table.

use crate::util::vlad;

fn bench_json(backend: &str) -> Option<serde_json::Value> {
    let out = vlad(&[
        "bench",
        "--images",
        "8",
        "--per-image",
        "64",
        "--dim",
        "16",
        "--clusters",
        "8",
        "--backend",
        backend,
        "--repeats",
        "2",
        "--json",
    ]);
    if backend == "gpu" && out.status.code() == Some(3) && std::env::var_os("CI").is_none() {
        eprintln!("*** SKIPPED the gpu bench: no adapter ***");
        return None;
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("one JSON object"))
}

/// The keys, finite positive percentages, plausible ceilings.
fn check(v: &serde_json::Value, backend: &str, bounded: &[&str]) {
    let ceilings = v["ceilings"].as_array().expect("ceilings");
    assert_eq!(ceilings.len(), 1, "{ceilings:?}");
    let c = &ceilings[0];
    assert_eq!(c["backend"], backend);
    for key in ["fma_gflops", "memory_gbps"] {
        let x = c[key].as_f64().unwrap_or_else(|| panic!("{key} in {c}"));
        assert!(x.is_finite() && x > 0.0, "{key} = {x}");
    }
    for key in ["upload_gbps", "readback_gbps"] {
        assert!(c.get(key).is_some(), "{key} missing in {c}");
        if backend == "gpu" {
            let x = c[key].as_f64().unwrap_or_else(|| panic!("{key} in {c}"));
            assert!(x.is_finite() && x > 0.0, "{key} = {x}");
        } else {
            assert!(c[key].is_null(), "{key} on the cpu: {c}");
        }
    }
    let rows = v["rows"].as_array().expect("rows");
    for r in rows {
        assert!(r.get("percent_of_ceiling").is_some(), "{r}");
        assert!(r.get("ceiling").is_some(), "{r}");
    }
    for stage in bounded {
        let r = rows
            .iter()
            .find(|r| r["stage"] == *stage)
            .unwrap_or_else(|| panic!("no {stage} row"));
        let p = r["percent_of_ceiling"]
            .as_f64()
            .unwrap_or_else(|| panic!("{stage} has no percentage: {r}"));
        assert!(p.is_finite() && p > 0.0, "{stage}: {p}");
        assert!(r["ceiling"].is_string(), "{r}");
    }
    let total = rows.iter().find(|r| r["stage"] == "total").expect("total");
    assert!(total["percent_of_ceiling"].is_null());
}

#[test]
fn cpu_bench_reports_ceilings_and_percentages() {
    let v = bench_json("cpu").expect("the cpu always runs");
    check(&v, "cpu", &["assign", "aggregate", "normalize"]);
}

#[test]
fn gpu_bench_reports_ceilings_and_percentages() {
    let Some(v) = bench_json("gpu") else {
        return;
    };
    check(
        &v,
        "gpu",
        &["upload", "readback", "assign", "sort", "scan", "residual"],
    );
}

#[test]
fn table_has_a_ceiling_column() {
    let out = vlad(&[
        "bench",
        "--images",
        "4",
        "--per-image",
        "16",
        "--dim",
        "8",
        "--clusters",
        "4",
        "--backend",
        "cpu",
        "--repeats",
        "1",
    ]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("% of ceiling"), "{table}");
    assert!(table.contains("ceilings: FMA"), "{table}");
    assert!(table.contains("% fma"), "{table}");
}
