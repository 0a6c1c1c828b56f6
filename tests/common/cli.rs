//! Shared by the command-line test files: a temporary folder for `.npy`
//! inputs and outputs, and the built `vlad` binary run on them.
// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

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
pub fn vlad(args: &[&str]) -> Output {
    vlad_with_env(args, &[])
}

/// Run the built binary with `args` and extra environment variables.
pub fn vlad_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vlad"))
        .args(args)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .envs(env.iter().copied())
        .output()
        .unwrap()
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
