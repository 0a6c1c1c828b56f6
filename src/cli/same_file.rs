//! Refusing an `--out` that names one of the command's inputs (SPEC §11):
//! the output is renamed over its path at the end, so writing the encodings
//! "to the descriptors" would silently replace them.
//!
//! Two paths name the same file when they are the same path, when one is a
//! symbolic link to the other, or when they are hard links of one file:
//! on Unix the device and inode numbers (of the files the paths resolve to)
//! are compared; elsewhere the canonical paths.

use std::path::Path;

use vlad::VladError;

/// Fail with one line naming both files when `out` is the same file as any
/// of `inputs` (`(flag, path)` pairs, e.g. `("--descriptors", path)`).
/// An `out` that does not exist yet names no input.
pub fn refuse_input_as_output(
    out: &Path,
    inputs: &[(&str, Option<&Path>)],
) -> Result<(), VladError> {
    for (flag, input) in inputs {
        let Some(input) = input else { continue };
        if same_file(out, input) {
            return Err(VladError::InvalidArgument(format!(
                "--out {} is the same file as {flag} {}: refusing to overwrite an input \
                 (choose another output path)",
                out.display(),
                input.display()
            )));
        }
    }
    Ok(())
}

/// Whether `a` and `b` name the same existing file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(ma), Ok(mb)) => ma.dev() == mb.dev() && ma.ino() == mb.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(ca), Ok(cb)) => ca == cb,
            _ => false,
        }
    }
}
