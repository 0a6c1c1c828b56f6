// Whitening (SPEC §14), the stage after `normalize`: for each encoding row
// t and output column i of one group of columns,
//
//   y[t, col0 + i] = Σ_k (x[t, k] − μ[k]) · Pᵀ[k, i]
//
// with Pᵀ = (diag((λ + ε)^p) · Uᵀ)ᵀ laid out `dim × width` (the outputs of
// one input column contiguous, so the invocations of a workgroup read
// neighbouring words). Each invocation computes one output column for ROWS
// rows, which share its loads of Pᵀ; the rows' values are the same for the
// whole workgroup (one broadcast load each).
//
// The order of every sum is fixed and the same whatever rows come with a
// row: over k in blocks of KB columns, each block summed from zero with
// `fma`, then added to the row's running total. The CPU twin
// (src/twins/whiten.rs) is this arithmetic in Rust. The post normalization
// (l2 of T × D′ values) is done on the host after read-back.
// Host side: src/backend/gpu/stages/whiten.rs.

const WG: u32 = 64u;
const ROWS: u32 = 4u;
const KB: u32 = 256u;

struct Params {
    // Encoding rows T in this dispatch.
    rows: u32,
    // Their width D.
    dim: u32,
    // Row stride of Pᵀ (this group's columns, a multiple of WG).
    width: u32,
    // Row stride of the output.
    out_stride: u32,
    // First output column this group writes.
    col0: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> pt: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn project(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let tiles = params.width / WG;
    let g = wid.y * nwg.x + wid.x;
    let t0 = (g / tiles) * ROWS;
    if t0 >= params.rows {
        return;
    }
    let i = (g % tiles) * WG + lid;
    // Rows past the end read the last row (in bounds) and write nothing.
    var base: array<u32, ROWS>;
    for (var r = 0u; r < ROWS; r++) {
        base[r] = min(t0 + r, params.rows - 1u) * params.dim;
    }
    var total: array<f32, ROWS>;
    for (var k0 = 0u; k0 < params.dim; k0 += KB) {
        let k1 = min(k0 + KB, params.dim);
        var acc: array<f32, ROWS>;
        for (var k = k0; k < k1; k++) {
            let p = pt[k * params.width + i];
            let m = mean[k];
            for (var r = 0u; r < ROWS; r++) {
                acc[r] = fma(x[base[r] + k] - m, p, acc[r]);
            }
        }
        for (var r = 0u; r < ROWS; r++) {
            total[r] += acc[r];
        }
    }
    for (var r = 0u; r < ROWS; r++) {
        if t0 + r < params.rows {
            y[(t0 + r) * params.out_stride + params.col0 + i] = total[r];
        }
    }
}
