// Ceiling kernel: device memory bandwidth. One invocation copies one
// vec4<f32> from `src` to `dst`; bytes moved = 2 · 16 · `len`.
// CPU twin: a plain copy. Host: src/backend/gpu/stages/ceilings.rs.

const WG: u32 = 256u;

struct CopyParams {
    // vec4 elements to copy.
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: CopyParams;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn copy(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if i < params.len {
        dst[i] = src[i];
    }
}
