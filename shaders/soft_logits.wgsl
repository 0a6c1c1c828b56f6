// NetVLAD soft assignment (SPEC §10), in two entry points:
//
// * `logits`: l_{row,k} = w_k · v_row + b_k for every row of the chunk and
//   every cluster, tiled exactly like the assignment's GEMM
//   (shaders/assign.wgsl: BM rows × BN clusters per workgroup, features
//   staged through workgroup memory BF at a time, an 8 × 8 register tile
//   per invocation), with W in place of the centroids. Each chunk's BF
//   products are chained by fma from zero into a block sum, block sums
//   added in feature order (the logits' rounding error then grows with
//   BF + F/BF, not F: the softmax turns a logit's absolute error into its
//   weight's relative error). Instead of folding an argmin, each tile's
//   dot products plus the bias are written to `weights` (rows × K: one
//   chunk's worth, never more).
// * `softmax`: one invocation per row turns its K logits into weights in
//   place, stably: m = max_k l_k, e_k = exp(l_k − m), s = Σ e_k (blocks of
//   SUM_BLOCK sequential terms, block sums added in order), a_k = e_k / s.
//   It writes the row's label (largest weight, lowest k on ties) and, with
//   `residual_norm` (`rn`), scales a_k by 1/‖v − c_k‖ (0 for a zero residual)
//   so that the aggregation's Σ a·v − (Σ a)·c sums unit residuals; the
//   unscaled a_k then also go to `unscaled`, for the soft counts that
//   `mass` divides by.
//
// Every order is fixed, so the same input gives the same bits.
// Host side: src/backend/gpu/stages/soft_logits.rs; CPU twin: src/twins/soft_logits.rs.
// The host specializes the `const` lines (tile shape by K, u8 input).

// Invocations along the clusters (CT) and along the rows (RT).
const CT: u32 = 16u;
const RT: u32 = 16u;
// Features per chunk staged through workgroup memory.
const BF: u32 = 8u;
// Descriptors are bytes packed four per u32 (little-endian) instead of f32 bits.
const U8_INPUT: bool = false;

// The GEMM core (tile constants WG, BM, BN, the staged chunks,
// `fetch_chunk`, `stage_chunk`, `multiply_chunk`), shared with
// shaders/assign.wgsl; B is W. `write_tile` writes an invocation's 8 × 8
// register tile with constant indices, like the assignment's fold.
// #include "parts/gemm_tile.wgsl"
// #include "parts/descriptor.wgsl"

// Terms summed sequentially before a block sum joins the running total.
const SUM_BLOCK: u32 = 16u;
// `softmax` invocations per workgroup.
const ROW_WG: u32 = 64u;

struct Params {
    rows: u32,
    dim: u32,
    clusters: u32,
    // ceil(rows / BM), ceil(clusters / BN), ceil(dim / BF).
    row_tiles: u32,
    k_tiles: u32,
    chunks: u32,
    // `softmax`: 1 to scale each weight by the inverse residual norm (`rn`).
    residual_norm: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// f32 bits, or packed bytes (U8_INPUT): one binding type for both variants.
@group(0) @binding(1) var<storage, read> descriptors: array<u32>;
// `logits`: W (K × F) and b (K).
@group(0) @binding(2) var<storage, read> soft_weights: array<f32>;
@group(0) @binding(3) var<storage, read> soft_bias: array<f32>;
// Out of `logits`, in and out of `softmax`: rows × K.
@group(0) @binding(4) var<storage, read_write> weights: array<f32>;
// `softmax` with `residual_norm`: the centroids (K × F).
@group(0) @binding(5) var<storage, read> centroids: array<f32>;
// Out of `softmax`: one label per row.
@group(0) @binding(6) var<storage, read_write> labels: array<u32>;
// Out of `softmax` with `residual_norm`: the weights before scaling, rows × K.
@group(0) @binding(7) var<storage, read_write> unscaled: array<f32>;

fn b_element(col: u32, f: u32) -> f32 {
    return soft_weights[col * params.dim + f];
}

// total += acc, with constant indices (kept in registers).
fn add_tile(total: ptr<function, array<vec4<f32>, 16>>, acc: ptr<function, array<vec4<f32>, 16>>) {
    (*total)[0] = (*total)[0] + (*acc)[0];
    (*total)[1] = (*total)[1] + (*acc)[1];
    (*total)[2] = (*total)[2] + (*acc)[2];
    (*total)[3] = (*total)[3] + (*acc)[3];
    (*total)[4] = (*total)[4] + (*acc)[4];
    (*total)[5] = (*total)[5] + (*acc)[5];
    (*total)[6] = (*total)[6] + (*acc)[6];
    (*total)[7] = (*total)[7] + (*acc)[7];
    (*total)[8] = (*total)[8] + (*acc)[8];
    (*total)[9] = (*total)[9] + (*acc)[9];
    (*total)[10] = (*total)[10] + (*acc)[10];
    (*total)[11] = (*total)[11] + (*acc)[11];
    (*total)[12] = (*total)[12] + (*acc)[12];
    (*total)[13] = (*total)[13] + (*acc)[13];
    (*total)[14] = (*total)[14] + (*acc)[14];
    (*total)[15] = (*total)[15] + (*acc)[15];
}

// Write one row's 8 logits (clusters k0..k0+3 in h0, k1..k1+3 in h1),
// bias added after the dot product.
fn write_row(row: u32, h0: vec4<f32>, h1: vec4<f32>, k0: u32, k1: u32) {
    if row >= params.rows {
        return;
    }
    let base = row * params.clusters;
    for (var c = 0u; c < 4u; c++) {
        if k0 + c < params.clusters {
            weights[base + k0 + c] = h0[c] + soft_bias[k0 + c];
        }
        if k1 + c < params.clusters {
            weights[base + k1 + c] = h1[c] + soft_bias[k1 + c];
        }
    }
}

fn write_tile(acc: ptr<function, array<vec4<f32>, 16>>, row0: u32, col0: u32, tx: u32, ty: u32) {
    let k0 = col0 + 4u * tx;
    let k1 = k0 + 4u * CT;
    let r0 = row0 + 4u * ty;
    let r1 = row0 + 4u * RT + 4u * ty;
    write_row(r0, (*acc)[0], (*acc)[1], k0, k1);
    write_row(r0 + 1u, (*acc)[2], (*acc)[3], k0, k1);
    write_row(r0 + 2u, (*acc)[4], (*acc)[5], k0, k1);
    write_row(r0 + 3u, (*acc)[6], (*acc)[7], k0, k1);
    write_row(r1, (*acc)[8], (*acc)[9], k0, k1);
    write_row(r1 + 1u, (*acc)[10], (*acc)[11], k0, k1);
    write_row(r1 + 2u, (*acc)[12], (*acc)[13], k0, k1);
    write_row(r1 + 3u, (*acc)[14], (*acc)[15], k0, k1);
}

@compute @workgroup_size(WG)
fn logits(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let tile = wid.y * groups.x + wid.x;
    // Uniform per workgroup: the barriers below stay in uniform control flow.
    if tile >= params.row_tiles {
        return;
    }
    let tx = lid % CT;
    let ty = lid / CT;
    let row0 = tile * BM;
    for (var kt = 0u; kt < params.k_tiles; kt++) {
        let col0 = kt * BN;
        var total: array<vec4<f32>, 16>;
        fetch_chunk(lid, row0, col0, 0u);
        for (var chunk = 0u; chunk < params.chunks; chunk++) {
            workgroupBarrier();
            stage_chunk(lid);
            workgroupBarrier();
            if chunk + 1u < params.chunks {
                fetch_chunk(lid, row0, col0, (chunk + 1u) * BF);
            }
            var acc: array<vec4<f32>, 16>;
            multiply_chunk(&acc, tx, ty);
            add_tile(&total, &acc);
        }
        write_tile(&total, row0, col0, tx, ty);
    }
}

// ‖v_row − c_k‖²: f32 differences squared, SUM_BLOCK terms at a time.
fn residual_norm2(row: u32, k: u32) -> f32 {
    var total = 0.0;
    var f = 0u;
    while f < params.dim {
        let stop = min(f + SUM_BLOCK, params.dim);
        var s = 0.0;
        for (; f < stop; f++) {
            let d = descriptor(row, f) - centroids[k * params.dim + f];
            s = fma(d, d, s);
        }
        total = total + s;
    }
    return total;
}

@compute @workgroup_size(ROW_WG)
fn softmax(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let row = gid.y * groups.x * ROW_WG + gid.x;
    if row >= params.rows {
        return;
    }
    let base = row * params.clusters;
    var m = weights[base];
    for (var k = 1u; k < params.clusters; k++) {
        m = max(m, weights[base + k]);
    }
    var total = 0.0;
    var k = 0u;
    while k < params.clusters {
        let stop = min(k + SUM_BLOCK, params.clusters);
        var s = 0.0;
        for (; k < stop; k++) {
            let e = exp(weights[base + k] - m);
            weights[base + k] = e;
            s = s + e;
        }
        total = total + s;
    }
    var best = 0u;
    var best_weight = -1.0;
    for (var k = 0u; k < params.clusters; k++) {
        var a = weights[base + k] / total;
        if a > best_weight {
            best_weight = a;
            best = k;
        }
        if params.residual_norm != 0u {
            unscaled[base + k] = a;
            let n2 = residual_norm2(row, k);
            a = select(0.0, a / sqrt(n2), n2 > 0.0);
        }
        weights[base + k] = a;
    }
    labels[row] = best;
}
