// Nearest-centroid assignment, tiled like a GEMM with the argmin fused in:
// no rows × K distance matrix is ever stored.
//
// A workgroup owns BM rows and walks the centroids in tiles of BN. For each
// tile it stages rows and centroids through workgroup memory in chunks of BF
// features (the next chunk is fetched into registers while the current one
// is multiplied), and each invocation accumulates an 8 × 8 register tile
// of dot products v·c. After a centroid tile the invocation folds
// d = ‖c‖² − 2 v·c into a running (distance, label) minimum per row; at the
// end the CT invocations sharing a row merge their minima in workgroup
// memory and one invocation writes the label, the sort key
// image · K + label and the row index.
//
// Ties: every (row, centroid) distance is the same f32 whatever the tiling
// (features are summed in ascending order from zero), and minima are merged
// by (distance, label) lexicographically, so exact ties go to the lowest
// label independently of BN, CT or K.
//
// The host specializes the `const` lines below (tile shape and BF by K:
// 16, 32, 64 or 128 centroids per tile; u8 input)
// before compiling; the defaults are the large-K f32 variant.

// Invocations along the centroids (CT) and along the rows (RT).
const CT: u32 = 16u;
const RT: u32 = 16u;
// Features per chunk staged through workgroup memory.
const BF: u32 = 8u;
// Descriptors are bytes packed four per u32 (little-endian) instead of f32 bits.
const U8_INPUT: bool = false;

// The GEMM core (tile constants WG, BM, BN, the staged chunks,
// `fetch_chunk`, `stage_chunk`, `multiply_chunk`), shared with
// shaders/soft_logits.wgsl; B is the centroids.
// #include "parts/gemm_tile.wgsl"
// #include "parts/descriptor.wgsl"
// #include "parts/image_of.wgsl"
// The uniform and bindings, shared with shaders/assign_coop.wgsl.
// #include "parts/assign_interface.wgsl"

var<workgroup> best_dist: array<f32, BM>;
var<workgroup> best_label: array<u32, BM>;

fn b_element(col: u32, f: u32) -> f32 {
    return centroids[col * params.dim + f];
}

// The running minimum of one row: (distance, label).
struct Best {
    dist: f32,
    label: u32,
}

// Fold one row's 8 dot products (halves h0, h1) into its running minimum,
// centroids in ascending label order so that strict < keeps the lowest.
fn fold_row(best: Best, h0: vec4<f32>, h1: vec4<f32>, n0: vec4<f32>, n1: vec4<f32>, k0: u32, k1: u32) -> Best {
    var out = best;
    let d0 = n0 - 2.0 * h0;
    let d1 = n1 - 2.0 * h1;
    for (var c = 0u; c < 4u; c++) {
        if k0 + c < params.clusters && d0[c] < out.dist {
            out = Best(d0[c], k0 + c);
        }
    }
    for (var c = 0u; c < 4u; c++) {
        if k1 + c < params.clusters && d1[c] < out.dist {
            out = Best(d1[c], k1 + c);
        }
    }
    return out;
}

// ‖c‖² of centroids k .. k + 3 (zero past the end; those are never chosen).
fn norms4(k: u32) -> vec4<f32> {
    var n = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        if k + c < params.clusters {
            n[c] = centroid_norms[k + c];
        }
    }
    return n;
}

fn fold_tile(best: ptr<function, array<Best, 8>>, acc: ptr<function, array<vec4<f32>, 16>>, col0: u32, tx: u32) {
    let k0 = col0 + 4u * tx;
    let k1 = k0 + 4u * CT;
    let n0 = norms4(k0);
    let n1 = norms4(k1);
    (*best)[0] = fold_row((*best)[0], (*acc)[0], (*acc)[1], n0, n1, k0, k1);
    (*best)[1] = fold_row((*best)[1], (*acc)[2], (*acc)[3], n0, n1, k0, k1);
    (*best)[2] = fold_row((*best)[2], (*acc)[4], (*acc)[5], n0, n1, k0, k1);
    (*best)[3] = fold_row((*best)[3], (*acc)[6], (*acc)[7], n0, n1, k0, k1);
    (*best)[4] = fold_row((*best)[4], (*acc)[8], (*acc)[9], n0, n1, k0, k1);
    (*best)[5] = fold_row((*best)[5], (*acc)[10], (*acc)[11], n0, n1, k0, k1);
    (*best)[6] = fold_row((*best)[6], (*acc)[12], (*acc)[13], n0, n1, k0, k1);
    (*best)[7] = fold_row((*best)[7], (*acc)[14], (*acc)[15], n0, n1, k0, k1);
}

@compute @workgroup_size(WG)
fn assign(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let tile = wid.y * groups.x + wid.x;
    if tile >= params.row_tiles {
        return;
    }
    let tx = lid % CT;
    let ty = lid / CT;
    let row0 = tile * BM;

    // Running minimum per owned row over the centroids this invocation saw.
    var best: array<Best, 8>;
    for (var i = 0u; i < 8u; i++) {
        best[i] = Best(bitcast<f32>(0x7f800000u), 0u); // (+inf, 0)
    }

    for (var kt = 0u; kt < params.k_tiles; kt++) {
        let col0 = kt * BN;
        var acc: array<vec4<f32>, 16>;
        fetch_chunk(lid, row0, col0, 0u);
        for (var chunk = 0u; chunk < params.chunks; chunk++) {
            workgroupBarrier();
            stage_chunk(lid);
            workgroupBarrier();
            if chunk + 1u < params.chunks {
                fetch_chunk(lid, row0, col0, (chunk + 1u) * BF);
            }
            multiply_chunk(&acc, tx, ty);
        }
        fold_tile(&best, &acc, col0, tx);
    }

    // Merge the CT partial minima of each row, one invocation column at a
    // time, by (distance, label) so the order of merging does not matter.
    for (var column = 0u; column < CT; column++) {
        if tx == column {
            for (var i = 0u; i < 8u; i++) {
                let r = (i / 4u) * 4u * RT + ty * 4u + i % 4u;
                let b = best[i];
                if column == 0u || b.dist < best_dist[r]
                    || (b.dist == best_dist[r] && b.label < best_label[r]) {
                    best_dist[r] = b.dist;
                    best_label[r] = b.label;
                }
            }
        }
        workgroupBarrier();
    }

    for (var r = lid; r < BM; r += WG) {
        let row = row0 + r;
        if row < params.rows {
            let k = best_label[r];
            labels[row] = k;
            keys[row] = image_of(row) * params.clusters + k;
            values[row] = row;
        }
    }
}
