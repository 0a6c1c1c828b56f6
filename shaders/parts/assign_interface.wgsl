// Part (included by `// #include "parts/assign_interface.wgsl"`, see
// src/backend/gpu/shader_parts.rs): the uniform and bindings of the assignment,
// which its plain (shaders/assign.wgsl) and tensor-core
// (shaders/assign_coop.wgsl) variants share: the host binds both alike
// (src/backend/gpu/stages/assign.rs).
//
// Needs from the including shader: `const BM, BN: u32` (rows and
// centroids per workgroup) and its chunk width (BF or STEP features).

struct Params {
    rows: u32,
    dim: u32,
    clusters: u32,
    images: u32,
    // ceil(rows / BM), ceil(clusters / BN), and ceil(dim / the chunk
    // width).
    row_tiles: u32,
    k_tiles: u32,
    chunks: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// f32 bits, or packed bytes (U8_INPUT): one binding type for both variants.
@group(0) @binding(1) var<storage, read> descriptors: array<u32>;
@group(0) @binding(2) var<storage, read> centroids: array<f32>;
@group(0) @binding(3) var<storage, read> centroid_norms: array<f32>;
@group(0) @binding(4) var<storage, read> image_offsets: array<u32>;
@group(0) @binding(5) var<storage, read_write> labels: array<u32>;
@group(0) @binding(6) var<storage, read_write> keys: array<u32>;
@group(0) @binding(7) var<storage, read_write> values: array<u32>;
