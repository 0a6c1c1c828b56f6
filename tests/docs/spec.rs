//! `SPEC.md` is the contract, in the repository: its sections are numbered
//! `## 1.`, `## 2.`, … without gaps, every "SPEC §n" reference in the code,
//! the tests, the shaders and the documents resolves to one of them, and the
//! README and the crate docs point at it (not at a file outside the
//! repository).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The section numbers of `## N. Title` headings, in order.
fn sections(spec: &str) -> Vec<u32> {
    spec.lines()
        .filter_map(|line| line.strip_prefix("## "))
        .filter_map(|rest| rest.split_once('.'))
        .filter_map(|(n, _)| n.trim().parse().ok())
        .collect()
}

/// Every section number a "SPEC §…" reference in `text` names, with its
/// line: `SPEC §4`, `SPEC §6 and §8`, `SPEC §1–§3` (a range: every section
/// in it). A `§` not followed by a digit (`SPEC §n`) is a placeholder.
fn references(text: &str) -> Vec<(usize, u32)> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("SPEC §") {
            rest = &rest[at + "SPEC §".len()..];
            let Some((first, mut tail)) = number(rest) else {
                continue;
            };
            found.push((i + 1, first));
            let mut last = first;
            // Further sections joined by "and", "or", ",", "–" or "-".
            loop {
                let t = tail.trim_start();
                let (range, t) = if let Some(t) = t.strip_prefix('–').or(t.strip_prefix('-')) {
                    (true, t)
                } else if let Some(t) = t
                    .strip_prefix("and ")
                    .or(t.strip_prefix("or "))
                    .or(t.strip_prefix(','))
                {
                    (false, t)
                } else {
                    break;
                };
                let Some(t) = t.trim_start().strip_prefix('§') else {
                    break;
                };
                let Some((n, t)) = number(t) else { break };
                if range {
                    found.extend((last.saturating_add(1)..=n).map(|s| (i + 1, s)));
                } else {
                    found.push((i + 1, n));
                }
                last = n;
                tail = t;
            }
            rest = tail;
        }
    }
    found
}

/// A leading decimal number and what follows it.
fn number(s: &str) -> Option<(u32, &str)> {
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let n = s[..digits].parse().ok()?;
    Some((n, &s[digits..]))
}

/// The files whose "SPEC §" references must resolve: sources, tests,
/// benches, shaders, the Python package and the Markdown documents (the
/// root's and `docs/`).
fn documents() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [
        "src", "tests", "benches", "shaders", "python", "xtask", ".ci", "docs",
    ] {
        walk(&root().join(dir), &mut files);
    }
    for entry in std::fs::read_dir(root()).expect("the repository root is readable") {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|e| e == "md") && !path.ends_with("SPEC.md") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return; // a folder this checkout does not have
    };
    for entry in entries {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !(name.starts_with('.') || name == "target" || name == "__pycache__") {
                walk(&path, files);
            }
        } else if ["rs", "md", "wgsl", "py", "pyi", "toml", "yml", "yaml"]
            .iter()
            .any(|e| path.extension().is_some_and(|x| x == *e))
            || name == "run"
        {
            files.push(path);
        }
    }
}

fn spec() -> String {
    std::fs::read_to_string(root().join("SPEC.md")).expect("SPEC.md in the repository root")
}

#[test]
fn sections_are_numbered_one_to_n_without_gaps() {
    let numbers = sections(&spec());
    let expected: Vec<u32> = (1..=numbers.len() as u32).collect();
    assert_eq!(numbers, expected, "`## N.` headings of SPEC.md");
    // The contract today: what is computed (§1) to Ray (§13).
    assert!(numbers.len() >= 13, "{} sections", numbers.len());
}

#[test]
fn every_spec_reference_names_a_section() {
    let known: BTreeSet<u32> = sections(&spec()).into_iter().collect();
    let mut dangling = Vec::new();
    let mut count = 0;
    for path in documents() {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // not UTF-8: no references
        };
        for (line, section) in references(&text) {
            count += 1;
            if !known.contains(&section) {
                let shown = path.strip_prefix(root()).unwrap_or(&path);
                dangling.push(format!("{}:{line}: SPEC §{section}", shown.display()));
            }
        }
    }
    assert!(
        dangling.is_empty(),
        "references to sections SPEC.md does not have:\n{}",
        dangling.join("\n")
    );
    // The sources cite the contract in many places; finding none would mean
    // the scan looked in the wrong place.
    assert!(count >= 50, "only {count} references found");
}

#[test]
fn nothing_points_outside_the_repository_and_the_readme_links_the_spec() {
    let outside = ["shared/", "SPEC.md"].concat();
    for path in documents() {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        assert!(
            !text.contains(&outside),
            "{} cites {outside}, which a clone does not have",
            path.display()
        );
    }
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    assert!(readme.contains("](SPEC.md)"), "the README links SPEC.md");
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).expect("src/lib.rs");
    assert!(lib.contains("SPEC.md"), "the crate docs name SPEC.md");
}

#[test]
fn the_reference_scanner_reads_every_form() {
    let sample = [
        concat!("see SPEC ", "§4, from the same labels"),
        concat!("(SPEC ", "§6 and §8)"),
        concat!("SPEC ", "§1–§3 as loops; SPEC ", "§12 or §10"),
        concat!("SPEC ", "§n is a placeholder"),
    ]
    .join("\n");
    assert_eq!(
        references(&sample),
        [
            (1, 4),
            (2, 6),
            (2, 8),
            (3, 1),
            (3, 2),
            (3, 3),
            (3, 12),
            (3, 10)
        ]
    );
    assert_eq!(
        sections("## 1. A\ntext\n## 2. B\n### 2.1 sub\n## 10. C"),
        [1, 2, 10]
    );
}
