//! Host memory for large results the GPU path returns.
//!
//! A fresh `vec![0.0; n]` of hundreds of MB costs one page fault per 4 KiB
//! page when it is first written (the read-back), which took longer than
//! the transfer itself. On Linux, asking for transparent huge pages on the
//! range before it is touched cuts the faults 512-fold; elsewhere, or where
//! the kernel declines, this is a plain zeroed vector. The contents are the
//! same either way: zeros, then whatever the read-back writes.

/// Below this many bytes the faults are too few to matter.
const HUGE_PAGE_THRESHOLD: usize = 4 << 20;

/// A zeroed vector of `n` values whose pages, when large, are asked to be
/// huge pages before anything touches them.
pub fn zeroed<T: bytemuck::Zeroable + Clone>(n: usize) -> Vec<T> {
    // `vec![zeroed; n]` of a large size is a fresh anonymous mapping (calloc
    // does not write it), so the advice applies to every page.
    let v = vec![T::zeroed(); n];
    advise_huge_pages(&v);
    v
}

#[cfg(target_os = "linux")]
fn advise_huge_pages<T>(v: &[T]) {
    const HUGE: usize = 2 << 20;
    let bytes = std::mem::size_of_val(v);
    if bytes < HUGE_PAGE_THRESHOLD {
        return;
    }
    let start = v.as_ptr() as usize;
    // Only whole huge pages inside the vector.
    let first = start.next_multiple_of(HUGE);
    let end = (start + bytes) / HUGE * HUGE;
    if end > first {
        // SAFETY: [first, end) lies inside `v`'s allocation; MADV_HUGEPAGE
        // only changes how the kernel backs the range, never its contents.
        // A failure (e.g. THP disabled) leaves ordinary pages: ignored.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages<T>(_v: &[T]) {
    let _ = HUGE_PAGE_THRESHOLD;
}

#[cfg(test)]
mod tests {
    #[test]
    fn zeroed_is_zero_at_every_size() {
        for n in [0usize, 1, 1000, (9 << 20) / 4 + 3] {
            let v: Vec<f32> = super::zeroed(n);
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|&x| x == 0.0));
        }
    }
}
