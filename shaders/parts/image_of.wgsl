// Part (included by `// #include "parts/image_of.wgsl"`, see
// src/backend/gpu/shader_parts.rs): the image a row belongs to.
//
// Needs from the including shader: the binding `image_offsets:
// array<u32>` (images + 1 CSR offsets) and `params.images` (≥ 1).

// Largest image t with image_offsets[t] ≤ row (empty images are skipped).
fn image_of(row: u32) -> u32 {
    var lo = 0u;
    var hi = params.images - 1u;
    while lo < hi {
        let mid = (lo + hi + 1u) / 2u;
        if image_offsets[mid] <= row {
            lo = mid;
        } else {
            hi = mid - 1u;
        }
    }
    return lo;
}
