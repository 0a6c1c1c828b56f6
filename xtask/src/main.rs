//! `cargo xtask test`: every test of the project in one command (the
//! cargo-xtask pattern; the alias is in `.cargo/config.toml`).
//!
//! 1. `cargo test --release`: the `vlad` crate's unit, integration and doc
//!    tests (release, because the numerical tests are heavy);
//! 2. a project-local virtual environment, `target/pyenv`, made on first
//!    use, with maturin, numpy and pytest from PyPI;
//! 3. `maturin develop --release`: the Python extension built into it;
//! 4. `pytest python/tests`.
//!
//! `cargo xtask test --python` skips step 1 (while working on the binding);
//! arguments after `--` go to pytest. `VLAD_PYTHON` names the interpreter
//! that makes the environment (default `python3`).
//!
//! Step 1 runs with `VLAD_SKIPPED_TESTS=<target>/vlad-skipped-tests.txt`
//! (emptied first): every Rust test that skips (no GPU adapter outside CI,
//! no golden fixture for the machine, a missing tool; tests/common/skip.rs)
//! appends a line there, and the run ends by saying how many tests were
//! skipped and which. With `CI` set, a recorded skip fails the run (in CI a
//! skip is a bug in the policy), except one that has nothing to compare on
//! this machine (`off this machine:`, a golden fixture recorded for other
//! CPU code paths), which no CI setup can fix.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// What the environment needs, pinned loosely; a change here reinstalls.
/// `ray[data]`, pyarrow and aiohttp are the `vlad[ray]` extra (SPEC §13,
/// python/tests/test_ray*.py; ≈ 620 MB installed).
const PYTHON_REQUIREMENTS: &[&str] = &[
    "maturin>=1.7,<2",
    "numpy>=1.21",
    "pytest>=7",
    "ray[data]>=2.9",
    "pyarrow>=12",
    "aiohttp",
    // scikit-learn's own estimator checks (python/tests/test_sklearn.py),
    // tqdm for the progress bar's path, mypy for the stubs and --strict.
    "scikit-learn>=1.6",
    "tqdm",
    "mypy>=1.10",
    // benches/retrieval's photographs and SIFT (python/tests/test_retrieval.py);
    // SIFT arrived in 0.19. About a minute to install here, with SciPy.
    "scikit-image>=0.19",
];

const USAGE: &str = "usage: cargo xtask test [--python] [-- PYTEST_ARGS...]

  test        cargo test --release, then the Python package built into
              target/pyenv (maturin develop --release) and pytest python/tests
  --python    only the Python part";

fn main() -> ExitCode {
    let args: Vec<OsString> = env::args_os().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[OsString]) -> Result<(), String> {
    let (ours, pytest_args) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let mut python_only = false;
    match ours.first().and_then(|a| a.to_str()) {
        Some("test") => {}
        _ => return Err(USAGE.to_string()),
    }
    for arg in &ours[1..] {
        match arg.to_str() {
            Some("--python") => python_only = true,
            _ => return Err(format!("unknown argument {arg:?}\n{USAGE}")),
        }
    }
    let root = project_root()?;
    let mut skipped = None;
    if !python_only {
        step("Rust tests: cargo test --release");
        let record = target_dir(&root).join(SKIPPED_FILE);
        if let Some(dir) = record.parent() {
            fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        fs::write(&record, "").map_err(|e| format!("emptying {}: {e}", record.display()))?;
        let tests = run_command(
            Command::new(cargo())
                .args(["test", "--release"])
                .env(SKIPPED_TESTS_VAR, &record)
                .current_dir(&root),
        );
        let text = fs::read_to_string(&record)
            .map_err(|e| format!("reading {}: {e}", record.display()))?;
        let skips = parse_skips(&text);
        if let Err(e) = tests {
            eprintln!("\n{}", skip_summary(&skips));
            return Err(e);
        }
        skipped = Some(skips);
    }
    let python = run_python(&root, pytest_args);
    if let Some(skips) = skipped {
        step("skipped Rust tests");
        eprintln!("{}", skip_summary(&skips));
        let failing = fails_ci(&skips);
        if ci() && failing > 0 {
            python?;
            return Err(format!(
                "CI is set and {failing} test{} skipped: in CI every test must run",
                if failing == 1 { " was" } else { "s were" }
            ));
        }
    }
    python
}

/// The environment variable the tests append their skips to, and the file
/// in the target folder it names (tests/common/skip.rs).
const SKIPPED_TESTS_VAR: &str = "VLAD_SKIPPED_TESTS";
const SKIPPED_FILE: &str = "vlad-skipped-tests.txt";

/// One skipped test: its path (`binary::module::test`) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Skip {
    test: String,
    why: String,
}

/// The skips recorded in `text`, one `TEST\tWHY` line each (a line without
/// a tab is a test without a reason), sorted by test, repeats dropped.
fn parse_skips(text: &str) -> Vec<Skip> {
    let mut skips: Vec<Skip> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (test, why) = l.split_once('\t').unwrap_or((l, ""));
            Skip {
                test: test.trim().to_string(),
                why: why.trim().to_string(),
            }
        })
        .collect();
    skips.sort_by(|a, b| a.test.cmp(&b.test).then(a.why.cmp(&b.why)));
    skips.dedup();
    skips
}

/// What a skip CI tolerates says first (tests/common/skip.rs): nothing to
/// compare on this machine, which no CI setup can fix.
const OFF_THIS_MACHINE: &str = "off this machine:";

/// How many of `skips` fail a CI run: all but those off this machine.
fn fails_ci(skips: &[Skip]) -> usize {
    skips
        .iter()
        .filter(|s| !s.why.starts_with(OFF_THIS_MACHINE))
        .count()
}

/// "0 tests skipped", or how many and which, one per line with why.
fn skip_summary(skips: &[Skip]) -> String {
    match skips.len() {
        0 => "0 tests skipped".to_string(),
        n => {
            let mut text = format!(
                "{n} test{} skipped (they did not run; they are not passes):",
                if n == 1 { "" } else { "s" }
            );
            for s in skips {
                text.push_str("\n  ");
                text.push_str(&s.test);
                if !s.why.is_empty() {
                    text.push_str(": ");
                    text.push_str(&s.why);
                }
            }
            text
        }
    }
}

/// Whether this runs in CI: `CI` set to anything but empty, `0` or `false`
/// (the rule of tests/common/skip.rs).
fn ci() -> bool {
    env::var("CI").is_ok_and(|v| {
        let v = v.trim().to_ascii_lowercase();
        !(v.is_empty() || v == "0" || v == "false")
    })
}

/// Cargo's target folder: `CARGO_TARGET_DIR`, else `target` in the root.
fn target_dir(root: &Path) -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// Steps 2 to 4: the binary, the environment, the extension and pytest.
fn run_python(root: &Path, pytest_args: &[OsString]) -> Result<(), String> {
    // The Python tests compare with the command line (`vlad kmeans`, error
    // messages): make sure its release binary is current.
    step("the vlad command line: cargo build --release --bin vlad");
    run_command(
        Command::new(cargo())
            .args(["build", "--release", "--bin", "vlad"])
            .current_dir(root),
    )?;
    let venv = root.join("target").join("pyenv");
    let python = ensure_venv(&venv)?;
    step("Python extension: maturin develop --release");
    run_command(
        Command::new(venv_bin(&venv, "maturin"))
            .args([
                "develop",
                "--release",
                "--manifest-path",
                "python/Cargo.toml",
            ])
            .env("VIRTUAL_ENV", &venv)
            .env("PATH", path_with(&venv_bin_dir(&venv))?)
            .current_dir(root),
    )?;
    step("Python tests: pytest python/tests");
    run_command(
        Command::new(&python)
            .args(["-m", "pytest", "python/tests"])
            .args(pytest_args)
            .env("VIRTUAL_ENV", &venv)
            .env("PATH", path_with(&venv_bin_dir(&venv))?)
            .env("VLAD_BIN", root.join("target").join("release").join("vlad"))
            .current_dir(root),
    )
}

/// The workspace root: this crate's parent folder.
fn project_root() -> Result<PathBuf, String> {
    let manifest = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("xtask"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("cannot find the project root above {}", manifest.display()))
}

fn cargo() -> OsString {
    env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Make `venv` (once) and install the requirements (when they changed);
/// returns its interpreter.
fn ensure_venv(venv: &Path) -> Result<PathBuf, String> {
    let python = venv_bin(venv, "python");
    if !python.exists() {
        let base = env::var_os("VLAD_PYTHON").unwrap_or_else(|| "python3".into());
        step(&format!(
            "virtual environment: {} -m venv {}",
            base.to_string_lossy(),
            venv.display()
        ));
        run_command(Command::new(&base).arg("-m").arg("venv").arg(venv))
            .map_err(|e| format!("{e} (on Debian: apt-get install python3-venv)"))?;
    }
    let stamp = venv.join(".vlad-requirements");
    let wanted = PYTHON_REQUIREMENTS.join("\n");
    if fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        step(&format!("pip install {}", PYTHON_REQUIREMENTS.join(" ")));
        run_command(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(PYTHON_REQUIREMENTS),
        )?;
        fs::write(&stamp, wanted).map_err(|e| format!("writing {}: {e}", stamp.display()))?;
    }
    Ok(python)
}

fn venv_bin_dir(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts")
    } else {
        venv.join("bin")
    }
}

fn venv_bin(venv: &Path, name: &str) -> PathBuf {
    venv_bin_dir(venv).join(name)
}

/// `PATH` with `dir` first.
fn path_with(dir: &Path) -> Result<OsString, String> {
    let mut paths = vec![dir.to_path_buf()];
    if let Some(path) = env::var_os("PATH") {
        paths.extend(env::split_paths(&path));
    }
    env::join_paths(paths).map_err(|e| format!("PATH: {e}"))
}

fn step(what: &str) {
    eprintln!("\n==> {what}");
}

fn run_command(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let status = command
        .status()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_skips_say_zero() {
        assert!(parse_skips("").is_empty());
        assert!(parse_skips("\n  \n").is_empty());
        assert_eq!(skip_summary(&parse_skips("")), "0 tests skipped");
    }

    #[test]
    fn skips_are_counted_sorted_and_listed_with_why() {
        let text = "gpu::radix_sort::two_dimensional_dispatch\tno GPU adapter (none found)\n\
                    cli::stream::assign_streams_bitwise::gpu\tno GPU adapter (none found)\n\
                    golden::every_output_keeps_its_bits\tno golden outputs for x86_64+no-gpu\n\
                    gpu::radix_sort::two_dimensional_dispatch\tno GPU adapter (none found)\n\
                    a_test_without_a_reason\n";
        let skips = parse_skips(text);
        assert_eq!(skips.len(), 4, "{skips:?}");
        assert_eq!(skips[0].test, "a_test_without_a_reason");
        assert_eq!(skips[0].why, "");
        assert_eq!(skips[1].test, "cli::stream::assign_streams_bitwise::gpu");
        assert_eq!(
            skip_summary(&skips),
            "4 tests skipped (they did not run; they are not passes):\n  \
             a_test_without_a_reason\n  \
             cli::stream::assign_streams_bitwise::gpu: no GPU adapter (none found)\n  \
             golden::every_output_keeps_its_bits: no golden outputs for x86_64+no-gpu\n  \
             gpu::radix_sort::two_dimensional_dispatch: no GPU adapter (none found)"
        );
        assert_eq!(
            skip_summary(&skips[..1]),
            "1 test skipped (they did not run; they are not passes):\n  a_test_without_a_reason"
        );
    }

    #[test]
    fn only_skips_off_this_machine_pass_ci() {
        let skips = parse_skips(
            "golden::every_output_keeps_its_bits\toff this machine: no fixture for x86_64-avx512f\n\
             cli::stream::progress\t`script` is not installed\n",
        );
        assert_eq!(fails_ci(&skips), 1);
        assert_eq!(fails_ci(&skips[..0]), 0);
        let golden: Vec<Skip> = skips
            .into_iter()
            .filter(|s| s.test.starts_with("golden"))
            .collect();
        assert_eq!(fails_ci(&golden), 0);
    }
}
