//! Shared by the command-line tests: a temporary folder for `.npy` inputs
//! and outputs, the built `vlad` binary run on them, and the argument lists
//! every run of a command starts with.
// Each test module uses a different subset of these helpers.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::{Array, Dimension};
use ndarray_npy::{ReadNpyExt, ReadableElement, WritableElement, WriteNpyExt};

/// A temporary folder for one test's files.
pub struct Folder {
    dir: tempfile::TempDir,
}

impl Folder {
    /// A fresh, empty folder (removed when dropped).
    pub fn new() -> Self {
        Folder {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `name` inside the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write `a` as `.npy` to `name`; returns its path.
    pub fn write<A: WritableElement, D: Dimension>(&self, name: &str, a: &Array<A, D>) -> PathBuf {
        let path = self.path(name);
        a.write_npy(File::create(&path).unwrap()).unwrap();
        path
    }

    /// Write raw bytes (a damaged `.npy`, say) to `name`; returns its path.
    pub fn write_bytes(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Names in the folder, sorted: to see that no temporary file is left.
    pub fn listing(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// Run the built binary with `args`.
pub fn vlad<S: AsRef<OsStr>>(args: &[S]) -> Output {
    vlad_with_env(args, &[])
}

/// Run the built binary with `args` and extra environment variables.
pub fn vlad_with_env<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vlad"))
        .args(args)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// Run the built binary with `args`, polling the child's peak resident
/// memory (`VmHWM` in `/proc/PID/status`, Linux) while it runs: its output
/// and the largest value read (0 if none could be read).
pub fn vlad_with_peak_rss<S: AsRef<OsStr>>(args: &[S]) -> (Output, u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vlad"))
        .args(args)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut polled = 0u64;
    while child.try_wait().unwrap().is_none() {
        if let Ok(status) = std::fs::read_to_string(&status_path)
            && let Some(kib) = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        {
            polled = polled.max(kib * 1024);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    (child.wait_with_output().unwrap(), polled)
}

/// A path as a command-line argument.
pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// What the run printed on stderr.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What the run printed on stdout.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Read an `.npy` file written by a run.
pub fn read<A: ReadableElement, D: Dimension>(path: &Path) -> Array<A, D> {
    Array::<A, D>::read_npy(File::open(path).unwrap()).unwrap()
}

/// `COMMAND --descriptors D --centroids C --out OUT` then `extra`: how every
/// `encode` and `assign` run starts.
pub fn io_args<'a>(
    command: &'a str,
    descriptors: &'a Path,
    centroids: &'a Path,
    out: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        command,
        "--descriptors",
        p(descriptors),
        "--centroids",
        p(centroids),
        "--out",
        p(out),
    ];
    args.extend_from_slice(extra);
    args
}

/// `kmeans --descriptors D --out OUT` then `extra` (`-k` among them).
pub fn kmeans_args<'a>(descriptors: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["kmeans", "--descriptors", p(descriptors), "--out", p(out)];
    args.extend_from_slice(extra);
    args
}

/// The synthetic problem `vlad bench` times: `images` × `per_image`
/// descriptors of `dim` values, `clusters` clusters.
#[derive(Clone, Copy, Debug)]
pub struct BenchShape {
    pub images: usize,
    pub per_image: usize,
    pub dim: usize,
    pub clusters: usize,
}

/// `bench` on `shape` with `backend`, `repeats` runs each, then `extra`.
pub fn bench_args(shape: BenchShape, backend: &str, repeats: usize, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["bench".into()];
    for (flag, value) in [
        ("--images", shape.images),
        ("--per-image", shape.per_image),
        ("--dim", shape.dim),
        ("--clusters", shape.clusters),
    ] {
        args.push(flag.into());
        args.push(value.to_string());
    }
    args.extend(["--backend".into(), backend.into()]);
    args.extend(["--repeats".into(), repeats.to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}
