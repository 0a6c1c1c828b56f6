// Part (included by `// #include "parts/gemm_tile.wgsl"`, see
// src/backend/gpu/shader_parts.rs): the register-tiled GEMM core that the
// assignment (shaders/assign.wgsl) and the NetVLAD logits
// (shaders/soft_logits.wgsl) share. A workgroup computes BM rows × BN
// columns of A·Bᵀ (A: the descriptors, B: the centroids or W), staging
// features through workgroup memory BF at a time: the next chunk is
// fetched into registers while the current one is multiplied.
//
// Needs from the including shader: `const CT, RT, BF: u32` (set by the
// host per variant), `params.rows`, `params.clusters` (B's rows) and
// `params.dim`, `fn descriptor(row, f) -> f32` (parts/descriptor.wgsl) and
// `fn b_element(col, f) -> f32`, B's element.

// Each invocation owns an 8 × 8 register tile: two vec4s of rows × two
// vec4s of columns. It is written out by hand (`multiply_chunk` and the
// includer's fold or write): every access to `acc` has a constant index,
// so compilers keep it in registers instead of spilling an indexed array
// to memory.
const WG: u32 = CT * RT;
const BM: u32 = RT * 8u;
const BN: u32 = CT * 8u;
// One spare vec4 per feature row keeps the transposing stores below free of
// bank conflicts; reads are unaffected.
const A_STRIDE: u32 = BM / 4u + 1u;
const B_STRIDE: u32 = BN / 4u + 1u;
const A_LOADS: u32 = BM * BF / WG;
const B_LOADS: u32 = BN * BF / WG;

// Chunk of BF features × BM rows (resp. BN columns), feature-major, rows
// (columns) packed in vec4s: a_tile[f · A_STRIDE + r / 4][r % 4].
var<workgroup> a_tile: array<vec4<f32>, BF * A_STRIDE>;
var<workgroup> b_tile: array<vec4<f32>, BF * B_STRIDE>;

// The next chunk, fetched from global memory while the current one is used.
var<private> a_next: array<f32, A_LOADS>;
var<private> b_next: array<f32, B_LOADS>;

// Fetch features f0 .. f0 + BF of the tile's rows and columns; zeros
// outside the matrices (they add nothing to a dot product).
fn fetch_chunk(lid: u32, row0: u32, col0: u32, f0: u32) {
    for (var s = 0u; s < A_LOADS; s++) {
        let e = lid + s * WG;
        let row = row0 + e / BF;
        let f = f0 + e % BF;
        var x = 0.0;
        if row < params.rows && f < params.dim {
            x = descriptor(row, f);
        }
        a_next[s] = x;
    }
    for (var s = 0u; s < B_LOADS; s++) {
        let e = lid + s * WG;
        let col = col0 + e / BF;
        let f = f0 + e % BF;
        var x = 0.0;
        if col < params.clusters && f < params.dim {
            x = b_element(col, f);
        }
        b_next[s] = x;
    }
}

fn stage_chunk(lid: u32) {
    for (var s = 0u; s < A_LOADS; s++) {
        let e = lid + s * WG;
        let r = e / BF;
        a_tile[(e % BF) * A_STRIDE + r / 4u][r % 4u] = a_next[s];
    }
    for (var s = 0u; s < B_LOADS; s++) {
        let e = lid + s * WG;
        let c = e / BF;
        b_tile[(e % BF) * B_STRIDE + c / 4u][c % 4u] = b_next[s];
    }
}

// Invocation (tx, ty) owns tile rows 4·ty + c and 4·RT + 4·ty + c, and
// tile columns 4·tx + c and 4·CT + 4·tx + c (c = 0..3): strided by vec4
// so that neighbouring invocations read neighbouring vec4s.
// acc[2·r + h] holds row r (0..7) × columns of half h, one per component.
fn multiply_chunk(acc: ptr<function, array<vec4<f32>, 16>>, tx: u32, ty: u32) {
    for (var f = 0u; f < BF; f++) {
        let a0 = a_tile[f * A_STRIDE + ty];
        let a1 = a_tile[f * A_STRIDE + RT + ty];
        let b0 = b_tile[f * B_STRIDE + tx];
        let b1 = b_tile[f * B_STRIDE + CT + tx];
        (*acc)[0] = fma(vec4(a0.x), b0, (*acc)[0]);
        (*acc)[1] = fma(vec4(a0.x), b1, (*acc)[1]);
        (*acc)[2] = fma(vec4(a0.y), b0, (*acc)[2]);
        (*acc)[3] = fma(vec4(a0.y), b1, (*acc)[3]);
        (*acc)[4] = fma(vec4(a0.z), b0, (*acc)[4]);
        (*acc)[5] = fma(vec4(a0.z), b1, (*acc)[5]);
        (*acc)[6] = fma(vec4(a0.w), b0, (*acc)[6]);
        (*acc)[7] = fma(vec4(a0.w), b1, (*acc)[7]);
        (*acc)[8] = fma(vec4(a1.x), b0, (*acc)[8]);
        (*acc)[9] = fma(vec4(a1.x), b1, (*acc)[9]);
        (*acc)[10] = fma(vec4(a1.y), b0, (*acc)[10]);
        (*acc)[11] = fma(vec4(a1.y), b1, (*acc)[11]);
        (*acc)[12] = fma(vec4(a1.z), b0, (*acc)[12]);
        (*acc)[13] = fma(vec4(a1.z), b1, (*acc)[13]);
        (*acc)[14] = fma(vec4(a1.w), b0, (*acc)[14]);
        (*acc)[15] = fma(vec4(a1.w), b1, (*acc)[15]);
    }
}
