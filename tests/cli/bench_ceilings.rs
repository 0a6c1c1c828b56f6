//! `vlad bench` measures each backend's ceilings and reports every bounded
//! stage as a percentage of its ceiling, in the JSON and the table; no
//! stage beats its own ceiling (SPEC §16: one that does means the ceiling
//! is wrong).

use vlad::Backend;

use crate::common::backend_test;
use crate::util::{BenchShape, Cmd, stderr};

fn bench_json(backend: Backend) -> serde_json::Value {
    // A modest shape: big enough that the assign stage runs its real
    // kernels (GEMM tiles, full GPU workgroups), small enough for lavapipe.
    let shape = BenchShape {
        images: 16,
        per_image: 256,
        dim: 32,
        clusters: 16,
    };
    let out = Cmd::bench(shape).backend(backend).repeats(3).json().run();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("one JSON object")
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
    for key in ["upload_gbps", "readback_gbps", "dispatch_seconds"] {
        assert!(c.get(key).is_some(), "{key} missing in {c}");
        if backend == "gpu" {
            let x = c[key].as_f64().unwrap_or_else(|| panic!("{key} in {c}"));
            assert!(x.is_finite() && x > 0.0, "{key} = {x}");
        } else {
            assert!(c[key].is_null(), "{key} on the cpu: {c}");
        }
    }
    assert!(
        c.get("fma_f16_gflops").is_some(),
        "fma_f16_gflops missing in {c}"
    );
    let rows = v["rows"].as_array().expect("rows");
    for r in rows {
        assert!(r.get("percent_of_ceiling").is_some(), "{r}");
        assert!(r.get("ceiling").is_some(), "{r}");
        // The stage's achieved rate never beats its own ceiling.
        if let Some(p) = r["percent_of_ceiling"].as_f64() {
            assert!(
                p <= 100.0,
                "{} runs at {p:.1} % of its {} ceiling: the ceiling is wrong\n{r}\n{c}",
                r["stage"],
                r["ceiling"]
            );
        }
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

// The gpu's bounded stages include the transfers.
backend_test!(
    bench_reports_ceilings_and_percentages,
    [cpu, gpu],
    |backend| {
        let bounded: &[&str] = match backend {
            Backend::Gpu => &["upload", "readback", "assign", "sort", "scan", "residual"],
            _ => &["assign", "aggregate", "normalize"],
        };
        check(&bench_json(backend), &backend.to_string(), bounded);
    }
);

#[test]
fn table_has_a_ceiling_column() {
    let shape = BenchShape {
        images: 4,
        per_image: 16,
        dim: 8,
        clusters: 4,
    };
    let out = Cmd::bench(shape).backend("cpu").repeats(1).run();
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("% of ceiling"), "{table}");
    assert!(table.contains("ceilings: FMA"), "{table}");
    assert!(table.contains("% fma"), "{table}");
}
