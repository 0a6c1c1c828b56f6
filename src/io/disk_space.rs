//! Free space on the filesystem that holds a folder: the streamed output's
//! up-front check (the output goes to disk batch by batch, so the disk, not
//! memory, is what it must fit in).

use std::path::Path;

/// Bytes an unprivileged process may still write in `dir`'s filesystem;
/// `None` where that cannot be asked (not Linux, or `statvfs` failed).
#[cfg(target_os = "linux")]
pub(crate) fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero `statvfs` is a valid value of this plain C struct.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `stats` a valid place to write.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return None;
    }
    // The field types differ between targets (u32 on some 32-bit ones).
    #[allow(clippy::unnecessary_cast)]
    let (available, block) = (stats.f_bavail as u64, stats.f_frsize as u64);
    Some(available.saturating_mul(block))
}

/// Not asked outside Linux: the write itself reports a full disk.
#[cfg(not(target_os = "linux"))]
pub(crate) fn free_bytes(_dir: &Path) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_temp_folder_has_some_free_space_or_cannot_say() {
        let free = super::free_bytes(&std::env::temp_dir());
        if cfg!(target_os = "linux") {
            assert!(free.is_some_and(|b| b > 0), "{free:?}");
        }
    }
}
