//! `vlad bench --compare A.json B.json`: two `vlad bench --json` documents
//! (one run or a suite each) side by side, stage by stage, with the ratio
//! B / A of their median times (below 1: B is faster).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;
use vlad::VladError;

use super::bench_json::runs_of;
use super::failure::Failure;
use super::summary::format_seconds;

/// One stage of one run, as a comparison keys it.
#[derive(Clone, Debug, PartialEq)]
struct Key {
    run: String,
    backend: String,
    stage: String,
}

/// Read both files and print the table.
pub fn run(a: &Path, b: &Path) -> Result<(), Failure> {
    let (da, db) = (read(a)?, read(b)?);
    print!("{}", table(a, &da, b, &db)?);
    Ok(())
}

fn bad(path: &Path, message: impl std::fmt::Display) -> Failure {
    VladError::InvalidArgument(format!("{}: {message}", path.display())).into()
}

fn read(path: &Path) -> Result<Value, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| bad(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| bad(path, format!("not JSON: {e}")))
}

/// The run's name, one word: its suite label, else its shape `TxLxF/KK`.
fn run_name(run: &Value) -> String {
    match run.get("label").and_then(Value::as_str) {
        Some(label) if !label.is_empty() => label.to_string(),
        _ => format!(
            "{}x{}x{}/K{}",
            run["images"], run["per_image"], run["dim"], run["clusters"]
        ),
    }
}

/// `(key, median seconds, emulation)` of every row of a document.
fn stages(path: &Path, doc: &Value) -> Result<Vec<(Key, f64, bool)>, Failure> {
    let mut out = Vec::new();
    for run in runs_of(doc).map_err(|m| bad(path, m))? {
        let name = run_name(run);
        let rows = run
            .get("rows")
            .and_then(Value::as_array)
            .ok_or_else(|| bad(path, format!("run {name} has no \"rows\" array")))?;
        for r in rows {
            let field = |k: &str| {
                r.get(k)
                    .ok_or_else(|| bad(path, format!("a row of run {name} has no {k:?}")))
            };
            let text = |k: &str| -> Result<String, Failure> {
                field(k)?.as_str().map(str::to_string).ok_or_else(|| {
                    bad(
                        path,
                        format!("{k:?} of a row of run {name} is not a string"),
                    )
                })
            };
            let median = field("median_seconds")?
                .as_f64()
                .ok_or_else(|| bad(path, format!("a median of run {name} is not a number")))?;
            out.push((
                Key {
                    run: name.clone(),
                    backend: text("backend")?,
                    stage: text("stage")?,
                },
                median,
                r.get("emulation").and_then(Value::as_bool).unwrap_or(false),
            ));
        }
    }
    Ok(out)
}

/// The side-by-side table: every stage of A, with B's where B has it, and
/// then B's stages A lacks.
fn table(pa: &Path, a: &Value, pb: &Path, b: &Value) -> Result<String, Failure> {
    let (sa, sb) = (stages(pa, a)?, stages(pb, b)?);
    let host = |d: &Value| d["host"]["cpu"].as_str().unwrap_or("unknown").to_string();
    let mut out = String::new();
    let _ = writeln!(out, "A: {} (host CPU {})", pa.display(), host(a));
    let _ = writeln!(out, "B: {} (host CPU {})", pb.display(), host(b));
    let _ = writeln!(
        out,
        "{:<14} {:<10} {:<22} {:>11} {:>11} {:>9}",
        "run", "backend", "stage", "A median", "B median", "B / A"
    );
    let mut line = |k: &Key, ta: Option<f64>, tb: Option<f64>, emulation: bool| {
        let show = |t: Option<f64>| t.map(format_seconds).unwrap_or_else(|| "-".to_string());
        let ratio = match (ta, tb) {
            (Some(x), Some(y)) if x > 0.0 => format!("{:.3}", y / x),
            _ => "-".to_string(),
        };
        let mark = if emulation { "  (emulation)" } else { "" };
        let _ = writeln!(
            out,
            "{:<14} {:<10} {:<22} {:>11} {:>11} {:>9}{mark}",
            k.run,
            k.backend,
            k.stage,
            show(ta),
            show(tb),
            ratio
        );
    };
    for (k, ta, ea) in &sa {
        let other = sb.iter().find(|(kb, _, _)| kb == k);
        line(
            k,
            Some(*ta),
            other.map(|o| o.1),
            *ea || other.is_some_and(|o| o.2),
        );
    }
    for (k, tb, eb) in &sb {
        if !sa.iter().any(|(ka, _, _)| ka == k) {
            line(k, None, Some(*tb), *eb);
        }
    }
    Ok(out)
}
