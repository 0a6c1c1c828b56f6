// Residual normalization (`rn`, SPEC §10) under hard assignment: each row's
// residual to its centroid, scaled to unit length,
//
//     u_l = (v_l − c_{label(l)}) / ‖v_l − c_{label(l)}‖    (0 if the residual is 0)
//
// written as f32 rows. The existing sort and segmented sum then add the u_l
// of each (image, label) run (without subtracting a centroid): the sums of
// unit residuals, in the hard path's fixed order.
//
// One invocation per row: ‖·‖² summed SUM_BLOCK features at a time (fma),
// block sums added in order, then one pass writing d / sqrt(‖·‖²).
// Host side: src/backend/gpu/stages/unit_residual.rs; CPU twin: src/twins/unit_residual.rs.

const WG: u32 = 64u;
// Features summed sequentially before a block sum joins the running total.
const SUM_BLOCK: u32 = 16u;
// Descriptors are bytes packed four per u32 (little-endian) instead of f32 bits.
const U8_INPUT: bool = false;

struct Params {
    rows: u32,
    dim: u32,
    clusters: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> descriptors: array<u32>;
@group(0) @binding(2) var<storage, read> centroids: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
// rows × F f32 unit residuals.
@group(0) @binding(4) var<storage, read_write> units: array<f32>;

// #include "parts/descriptor.wgsl"

@compute @workgroup_size(WG)
fn unit_residual(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let row = gid.y * groups.x * WG + gid.x;
    if row >= params.rows {
        return;
    }
    let c = min(labels[row], params.clusters - 1u) * params.dim;
    var total = 0.0;
    var f = 0u;
    while f < params.dim {
        let stop = min(f + SUM_BLOCK, params.dim);
        var s = 0.0;
        for (; f < stop; f++) {
            let d = descriptor(row, f) - centroids[c + f];
            s = fma(d, d, s);
        }
        total = total + s;
    }
    let norm = sqrt(total);
    for (var g = 0u; g < params.dim; g++) {
        var u = 0.0;
        if total > 0.0 {
            u = (descriptor(row, g) - centroids[c + g]) / norm;
        }
        units[row * params.dim + g] = u;
    }
}
