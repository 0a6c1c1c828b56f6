//! What a run reports: the `--json` object on stdout (SPEC §8) and the
//! short human summary on stderr.

use serde_json::{Map, Value, json};
use vlad::verify::Verification;
use vlad::{AdapterKind, RunReport};

/// The sizes of a run.
#[derive(Copy, Clone, Debug)]
pub struct Sizes {
    /// `T`.
    pub images: usize,
    /// `N`.
    pub descriptors: usize,
    /// `K`.
    pub clusters: usize,
    /// `F`.
    pub dim: usize,
}

/// The fields SPEC §8 requires of every `--json` object.
pub fn run_json(report: &RunReport, sizes: Sizes) -> Map<String, Value> {
    let stages: Map<String, Value> = report
        .stages
        .iter()
        .map(|(name, seconds)| (name.to_string(), json!(seconds)))
        .collect();
    let mut map = Map::new();
    map.insert("backend".into(), json!(report.backend.name()));
    map.insert("adapter".into(), json!(report.adapter));
    map.insert(
        "adapter_kind".into(),
        json!(report.adapter_kind.map(|k| k.name())),
    );
    map.insert("images".into(), json!(sizes.images));
    map.insert("descriptors".into(), json!(sizes.descriptors));
    map.insert("clusters".into(), json!(sizes.clusters));
    map.insert("dim".into(), json!(sizes.dim));
    map.insert("seconds".into(), json!(report.seconds));
    map.insert("setup_seconds".into(), json!(report.setup_seconds));
    map.insert("stages".into(), Value::Object(stages));
    map.insert("fallback_reason".into(), json!(report.fallback_reason));
    map.insert("notes".into(), json!(report.notes));
    map
}

/// Add the `--verify` fields.
pub fn add_verification(map: &mut Map<String, Value>, v: &Verification, seconds: f64) {
    map.insert("label_agreement".into(), json!(v.label_agreement));
    map.insert("max_abs_error".into(), json!(v.max_abs_error));
    map.insert("bad_labels".into(), json!(v.bad_labels));
    map.insert("violations".into(), json!(v.violations));
    map.insert("verify_rule".into(), json!(v.rule));
    map.insert("verified".into(), json!(v.passed()));
    map.insert("verify_seconds".into(), json!(seconds));
}

/// Print the one JSON object on stdout.
pub fn print_json(map: Map<String, Value>) {
    println!("{}", Value::Object(map));
}

/// `1 image`, `2 images`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// ` (NAME)`, or ` (NAME, a software adapter: not GPU speed)`.
pub fn adapter_note(adapter: Option<&str>, kind: Option<AdapterKind>) -> String {
    match (adapter, kind) {
        (Some(a), Some(AdapterKind::Software)) => {
            format!(" ({a}, a software adapter: the CPU emulates the GPU, not GPU speed)")
        }
        (Some(a), _) => format!(" ({a})"),
        _ => String::new(),
    }
}

/// The lines for stderr: why `auto` did not use the GPU (when it did
/// not), the report's notes, then what ran on how much, in how long (GPU setup apart).
pub fn human(verb: &str, report: &RunReport, sizes: Sizes) -> String {
    let fallback = report
        .fallback_reason
        .as_deref()
        .map(|r| format!("vlad: {r}\n"))
        .into_iter()
        .chain(report.notes.iter().map(|n| format!("vlad: {n}\n")))
        .collect::<String>();
    let setup = match (report.setup_seconds > 0.0, report.backend) {
        (false, _) => String::new(),
        (true, vlad::Backend::Gpu) => {
            format!(" (+ {} GPU setup)", format_seconds(report.setup_seconds))
        }
        (true, _) => format!(
            " (+ {} looking for a GPU)",
            format_seconds(report.setup_seconds)
        ),
    };
    format!(
        "{fallback}vlad: {verb} {}, {} (K = {}, F = {}) on {}{} in {}{setup}",
        count(sizes.images, "image", "images"),
        count(sizes.descriptors, "descriptor", "descriptors"),
        sizes.clusters,
        sizes.dim,
        report.backend,
        adapter_note(report.adapter.as_deref(), report.adapter_kind),
        format_seconds(report.seconds)
    )
}

/// One line for stderr describing a verification.
pub fn human_verification(v: &Verification) -> String {
    format!(
        "vlad: verify: {}: label agreement {:.4} % ({} beyond a near-tie), max abs error {:.3e}, \
         {} outside tolerance ({})",
        if v.passed() { "pass" } else { "FAIL" },
        100.0 * v.label_agreement,
        v.bad_labels,
        v.max_abs_error,
        v.violations,
        v.rule
    )
}

/// `12.3 ms`, `1.25 s`.
pub fn format_seconds(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{:.3} ms", seconds * 1e3)
    } else {
        format!("{seconds:.3} s")
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_are_plural_except_one() {
        assert_eq!(count(1, "image", "images"), "1 image");
        assert_eq!(count(0, "image", "images"), "0 images");
        assert_eq!(count(2, "descriptor", "descriptors"), "2 descriptors");
    }
}
