//! An `--out` that names an input — the same path, a symbolic link to it,
//! or a hard link of it — is refused with exit status 2 and one line naming
//! both files, and the input is left byte for byte as it was (SPEC §11).
//! Every input flag of every command that writes a file is tried.

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2};

use crate::util::{Cmd, Folder, p, stderr};

/// How `--out` reaches the input.
#[derive(Copy, Clone, Debug)]
enum Alias {
    SamePath,
    Symlink,
    HardLink,
}

const ALIASES: [Alias; 3] = [Alias::SamePath, Alias::Symlink, Alias::HardLink];

/// Good inputs for every command.
struct Inputs {
    folder: Folder,
    descriptors: PathBuf,
    centroids: PathBuf,
    offsets: PathBuf,
    labels: PathBuf,
}

fn inputs() -> Inputs {
    let folder = Folder::new();
    let d = Array2::from_shape_fn((12, 3), |(i, j)| ((i * 5 + j * 3) % 7) as f32);
    let c = Array2::from_shape_fn((3, 3), |(i, j)| (i * 2 + j) as f32);
    let o = Array1::from(vec![0i64, 4, 12]);
    let a = Array1::from((0..12).map(|i| (i % 3) as i64).collect::<Vec<_>>());
    Inputs {
        descriptors: folder.write("d.npy", &d),
        centroids: folder.write("c.npy", &c),
        offsets: folder.write("o.npy", &o),
        labels: folder.write("a.npy", &a),
        folder,
    }
}

/// The path to pass as `--out` so that it names `target`.
fn alias(folder: &Folder, target: &Path, how: Alias) -> PathBuf {
    match how {
        Alias::SamePath => target.to_path_buf(),
        Alias::Symlink => {
            let link = folder.path("link.npy");
            std::os::unix::fs::symlink(target, &link).unwrap();
            link
        }
        Alias::HardLink => {
            let link = folder.path("hard.npy");
            std::fs::hard_link(target, &link).unwrap();
            link
        }
    }
}

/// Run the command `with_inputs` makes plus `--out` aliasing the file of
/// `flag`, and check the refusal.
fn refused(with_inputs: fn(&Inputs) -> Cmd, flag: &str, pick: fn(&Inputs) -> &Path) {
    for how in ALIASES {
        let inputs = inputs();
        let target = pick(&inputs).to_path_buf();
        let before = std::fs::read(&target).unwrap();
        let out = alias(&inputs.folder, &target, how);
        let cmd = with_inputs(&inputs).out(&out).backend("cpu");
        let command = &cmd.argv()[0];
        let run = cmd.run();
        let err = stderr(&run);
        assert_eq!(
            run.status.code(),
            Some(2),
            "{command} {flag} via {how:?}: {err}"
        );
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "{command} {flag} via {how:?}: one line, got {err:?}"
        );
        assert!(
            err.contains(p(&out)) && err.contains(p(&target)) && err.contains(flag),
            "{command} {flag} via {how:?}: names both files and the flag: {err}"
        );
        assert_eq!(
            std::fs::read(&target).unwrap(),
            before,
            "{command} {flag} via {how:?}: input changed"
        );
        assert!(run.stdout.is_empty());
    }
}

fn encode(i: &Inputs) -> Cmd {
    Cmd::encode()
        .descriptors(&i.descriptors)
        .centroids(&i.centroids)
        .offsets(&i.offsets)
        .labels(&i.labels)
}

fn assign(i: &Inputs) -> Cmd {
    Cmd::assign()
        .descriptors(&i.descriptors)
        .centroids(&i.centroids)
}

fn kmeans(i: &Inputs) -> Cmd {
    Cmd::kmeans().descriptors(&i.descriptors).k(2)
}

#[test]
fn encode_refuses_out_naming_the_descriptors() {
    refused(encode, "--descriptors", |i| &i.descriptors);
}

#[test]
fn encode_refuses_out_naming_the_centroids() {
    refused(encode, "--centroids", |i| &i.centroids);
}

#[test]
fn encode_refuses_out_naming_the_offsets() {
    refused(encode, "--offsets", |i| &i.offsets);
}

#[test]
fn encode_refuses_out_naming_the_labels() {
    refused(encode, "--labels", |i| &i.labels);
}

#[test]
fn assign_refuses_out_naming_the_descriptors() {
    refused(assign, "--descriptors", |i| &i.descriptors);
}

#[test]
fn assign_refuses_out_naming_the_centroids() {
    refused(assign, "--centroids", |i| &i.centroids);
}

#[test]
fn kmeans_refuses_out_naming_the_descriptors() {
    refused(kmeans, "--descriptors", |i| &i.descriptors);
}

/// The check compares files, not spellings: a different file in the same
/// folder is a fine output, and the run succeeds.
#[test]
fn a_distinct_output_is_written() {
    let inputs = inputs();
    let out = inputs.folder.path("v.npy");
    let run = encode(&inputs).out(&out).backend("cpu").run();
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert!(out.exists());
}
