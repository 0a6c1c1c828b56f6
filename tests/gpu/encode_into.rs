//! `Encoder::encode_batch_into` on the GPU: read-back straight into the
//! caller's array, bit for bit what `encode_batch` returns, with empty
//! images, and with a small binding cap (many chunks, split images).

use crate::common::encode_into::check_backend;
use vlad::Backend;

#[test]
fn gpu_writes_what_encode_batch_returns() {
    crate::common::gpu_or_skip!();
    check_backend(Backend::Gpu, &["ssr,l2", "none", "mass,intra"], |b| b);
    // 4 KiB bindings: ~85 rows of F = 12 per chunk, so images split.
    check_backend(Backend::Gpu, &["ssr,l2"], |b| {
        b.gpu_max_binding_bytes(Some(4096))
    });
}

#[test]
fn gpu_with_progress_gives_the_same_bits() {
    crate::common::gpu_or_skip!();
    crate::common::encode_into::check_progress(
        Backend::Gpu,
        |b| b,
        // 1 MiB bindings: ~65 k rows of F = 4 per planned chunk.
        Some(|b| b.gpu_max_binding_bytes(Some(1 << 20))),
    );
    // 4 KiB bindings on the small case: split images, planned spans.
    crate::common::encode_into::check_progress(
        Backend::Gpu,
        |b| b.gpu_max_binding_bytes(Some(4096)),
        None,
    );
}
