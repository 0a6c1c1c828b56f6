// Part (included by `// #include "parts/descriptor.wgsl"`, see
// src/backend/gpu/shader_parts.rs): descriptor element (row, f) as f32.
//
// Needs from the including shader: the binding `descriptors: array<u32>`
// (f32 bits, or bytes packed four per u32, little-endian), `params.dim`
// and `const U8_INPUT: bool` (set by the host per variant).

fn descriptor(row: u32, f: u32) -> f32 {
    let i = row * params.dim + f;
    if U8_INPUT {
        return f32((descriptors[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu);
    }
    return bitcast<f32>(descriptors[i]);
}
