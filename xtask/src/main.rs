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
    if !python_only {
        step("Rust tests: cargo test --release");
        run_command(
            Command::new(cargo())
                .args(["test", "--release"])
                .current_dir(&root),
        )?;
    }
    // The Python tests compare with the command line (`vlad kmeans`, error
    // messages): make sure its release binary is current.
    step("the vlad command line: cargo build --release --bin vlad");
    run_command(
        Command::new(cargo())
            .args(["build", "--release", "--bin", "vlad"])
            .current_dir(&root),
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
            .current_dir(&root),
    )?;
    step("Python tests: pytest python/tests");
    run_command(
        Command::new(&python)
            .args(["-m", "pytest", "python/tests"])
            .args(pytest_args)
            .env("VIRTUAL_ENV", &venv)
            .env("PATH", path_with(&venv_bin_dir(&venv))?)
            .env("VLAD_BIN", root.join("target").join("release").join("vlad"))
            .current_dir(&root),
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
