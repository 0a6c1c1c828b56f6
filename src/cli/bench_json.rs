//! `vlad bench --json`: the versioned schema of docs/bench-schema.md
//! (`"schema": "vlad-bench/2"`). One run is one object; `--suite` prints
//! its runs in a `runs` array. `--compare` and `--plot` read it back.

use serde_json::{Value, json};
use vlad::bench::BenchReport;
use vlad::bench::host::Host;

/// The schema this build writes; a reader refuses any other.
pub const SCHEMA: &str = "vlad-bench/2";

/// The fields every document carries: the schema and the host.
fn envelope(host: &Host) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("schema".into(), json!(SCHEMA));
    m.insert(
        "host".into(),
        json!({
            "cpu": host.cpu,
            "threads": host.threads,
            "os": host.os,
            "arch": host.arch,
        }),
    );
    m
}

/// One run: what `vlad bench --json` prints for one shape, with `schema`
/// and `host`.
pub fn single(report: &BenchReport, label: &str, host: &Host) -> Value {
    let mut m = envelope(host);
    if let Value::Object(run) = run(report, label) {
        m.extend(run);
    }
    Value::Object(m)
}

/// Every shape of `--suite`: `schema`, `host`, `suite: true`, `runs`.
pub fn suite(runs: &[(String, BenchReport)], host: &Host) -> Value {
    let mut m = envelope(host);
    m.insert("suite".into(), json!(true));
    m.insert(
        "runs".into(),
        Value::Array(runs.iter().map(|(label, r)| run(r, label)).collect()),
    );
    Value::Object(m)
}

/// The object of one run (shape, protocol, ceilings, rows).
fn run(report: &BenchReport, label: &str) -> Value {
    let c = &report.config;
    let rows: Vec<Value> = report
        .rows
        .iter()
        .map(|r| {
            json!({
                "backend": r.backend.name(),
                "adapter": r.adapter,
                "software_adapter": r.software_adapter,
                "emulation": r.software_adapter,
                "stage": r.stage,
                "median_seconds": r.median_seconds,
                "min_seconds": r.min_seconds,
                "max_seconds": r.max_seconds,
                "descriptors_per_second": r.descriptors_per_second,
                "gigabytes_per_second": r.gigabytes_per_second,
                "gigaflops_per_second": r.gigaflops_per_second,
                "arithmetic_intensity": r.arithmetic_intensity,
                "ceiling": r.ceiling,
                "percent_of_ceiling": r.percent_of_ceiling,
            })
        })
        .collect();
    let skipped: Vec<Value> = report
        .skipped
        .iter()
        .map(|s| json!({"backend": s.backend.name(), "reason": s.reason}))
        .collect();
    let ceilings: Vec<Value> = report
        .ceilings
        .iter()
        .map(|b| {
            json!({
                "backend": b.backend.name(),
                "adapter": b.adapter,
                "adapter_kind": b.adapter_kind,
                "driver": b.driver,
                "emulation": b.emulation,
                "fma_path": b.fma_path,
                "fma_gflops": b.ceilings.fma_gflops,
                "fma_f16_gflops": b.ceilings.fma_f16_gflops,
                "memory_gbps": b.ceilings.memory_gbps,
                "upload_gbps": b.ceilings.upload_gbps,
                "readback_gbps": b.ceilings.readback_gbps,
                "dispatch_seconds": b.ceilings.dispatch_seconds,
            })
        })
        .collect();
    json!({
        "label": label,
        "images": c.images,
        "per_image": c.per_image,
        "descriptors": c.images * c.per_image,
        "dim": c.dim,
        "clusters": c.clusters,
        "dtype": c.dtype.name(),
        "dtype_widened_on_host": c.dtype.widened_on_host(),
        "seed": c.seed,
        "repeats": c.repeats,
        "normalization": c.normalization.to_string(),
        "assignment": c.assignment.name(),
        "rows": rows,
        "skipped": skipped,
        "notes": report.notes,
        "ceilings": ceilings,
    })
}

/// The runs of a document this schema wrote: its `runs`, or the document
/// itself when it is one run. `Err` says why it is not one.
pub fn runs_of(doc: &Value) -> Result<Vec<&Value>, String> {
    match doc.get("schema").and_then(Value::as_str) {
        Some(SCHEMA) => {}
        Some(other) => {
            return Err(format!(
                "schema {other:?}, but this vlad reads {SCHEMA:?} (re-run `vlad bench --json`)"
            ));
        }
        None => {
            return Err(format!(
                "no \"schema\" field: not a `vlad bench --json` ({SCHEMA}) document"
            ));
        }
    }
    match doc.get("runs") {
        Some(Value::Array(runs)) => Ok(runs.iter().collect()),
        Some(_) => Err("\"runs\" is not an array".to_string()),
        None => Ok(vec![doc]),
    }
}
