//! Shared by the command-line tests: a temporary folder for `.npy` inputs
//! and outputs, the built `vlad` binary run on them, and [`Cmd`], the
//! builder of its command lines.
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

/// A `vlad` command line, flag by flag, and its runs:
/// `Cmd::encode().descriptors(&d).centroids(&c).out(&o).backend("cpu")
/// .norm("ssr,l2").json().run()`. Paths are anything `AsRef<Path>`;
/// `flag` and `arg` add what has no method of its own.
#[derive(Clone, Debug)]
pub struct Cmd {
    args: Vec<String>,
}

impl Cmd {
    /// `vlad COMMAND`.
    pub fn new(command: &str) -> Cmd {
        Cmd {
            args: vec![command.to_string()],
        }
    }

    pub fn encode() -> Cmd {
        Cmd::new("encode")
    }

    pub fn assign() -> Cmd {
        Cmd::new("assign")
    }

    pub fn kmeans() -> Cmd {
        Cmd::new("kmeans")
    }

    /// `bench` on the synthetic problem `shape`.
    pub fn bench(shape: BenchShape) -> Cmd {
        Cmd::new("bench")
            .flag("--images", shape.images)
            .flag("--per-image", shape.per_image)
            .flag("--dim", shape.dim)
            .flag("--clusters", shape.clusters)
    }

    /// `NAME VALUE`.
    pub fn flag(mut self, name: &str, value: impl std::fmt::Display) -> Cmd {
        self.args.push(name.to_string());
        self.args.push(value.to_string());
        self
    }

    /// `NAME PATH`.
    pub fn path_flag(self, name: &str, path: impl AsRef<Path>) -> Cmd {
        let path = p(path.as_ref()).to_string();
        self.flag(name, path)
    }

    /// One more argument as it is.
    pub fn arg(mut self, arg: impl AsRef<str>) -> Cmd {
        self.args.push(arg.as_ref().to_string());
        self
    }

    /// More arguments as they are.
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Cmd {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    pub fn descriptors(self, path: impl AsRef<Path>) -> Cmd {
        self.path_flag("--descriptors", path)
    }

    pub fn centroids(self, path: impl AsRef<Path>) -> Cmd {
        self.path_flag("--centroids", path)
    }

    pub fn offsets(self, path: impl AsRef<Path>) -> Cmd {
        self.path_flag("--offsets", path)
    }

    pub fn labels(self, path: impl AsRef<Path>) -> Cmd {
        self.path_flag("--labels", path)
    }

    pub fn out(self, path: impl AsRef<Path>) -> Cmd {
        self.path_flag("--out", path)
    }

    /// `--soft-weights W --soft-bias B`.
    pub fn soft(self, weights: impl AsRef<Path>, bias: impl AsRef<Path>) -> Cmd {
        self.path_flag("--soft-weights", weights)
            .path_flag("--soft-bias", bias)
    }

    pub fn soft_alpha(self, alpha: impl std::fmt::Display) -> Cmd {
        self.flag("--soft-alpha", alpha)
    }

    pub fn backend(self, backend: impl std::fmt::Display) -> Cmd {
        self.flag("--backend", backend)
    }

    pub fn norm(self, norm: &str) -> Cmd {
        self.flag("--norm", norm)
    }

    pub fn memory_limit(self, limit: &str) -> Cmd {
        self.flag("--memory-limit", limit)
    }

    /// `-k K` (kmeans).
    pub fn k(self, k: impl std::fmt::Display) -> Cmd {
        self.flag("-k", k)
    }

    pub fn repeats(self, repeats: usize) -> Cmd {
        self.flag("--repeats", repeats)
    }

    pub fn json(self) -> Cmd {
        self.arg("--json")
    }

    pub fn verify(self) -> Cmd {
        self.arg("--verify")
    }

    /// The argument list (the command first).
    pub fn argv(&self) -> &[String] {
        &self.args
    }

    /// Run it ([`vlad`]).
    pub fn run(&self) -> Output {
        vlad(&self.args)
    }

    /// Run it with extra environment variables ([`vlad_with_env`]).
    pub fn run_with_env(&self, env: &[(&str, &str)]) -> Output {
        vlad_with_env(&self.args, env)
    }

    /// Run it polling its peak memory ([`vlad_with_peak_rss`]).
    pub fn run_with_peak_rss(&self) -> (Output, u64) {
        vlad_with_peak_rss(&self.args)
    }
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

/// The text of field `name` in a one-line JSON object (floats compared as
/// printed: serde_json parses them to within an ulp only).
pub fn raw_field(text: &str, name: &str) -> String {
    let key = format!("\"{name}\":");
    let start = text.find(&key).unwrap() + key.len();
    let rest = &text[start..];
    let end = rest.find(",\"").or_else(|| rest.rfind('}')).unwrap();
    rest[..end].to_string()
}
