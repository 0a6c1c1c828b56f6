// Nearest-centroid assignment, tiled like a GEMM with the argmin fused in:
// no rows × K distance matrix is ever stored.
//
// A workgroup owns BM rows and walks the centroids in tiles of BN. For each
// tile it stages rows and centroids through workgroup memory in chunks of BF
// features (the next chunk is fetched into registers while the current one
// is multiplied), and each invocation accumulates a TM × TN register tile of
// dot products v·c. After a centroid tile the invocation folds
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
// The host specializes the `const` lines below (tile shape by K, u8 input)
// before compiling; the defaults are the large-K f32 variant.

// Invocations along the centroids (CT) and along the rows (RT).
const CT: u32 = 16u;
const RT: u32 = 16u;
// vec4s of rows (TM4) and of centroids (TN4) in each invocation's register tile.
const TM4: u32 = 2u;
const TN4: u32 = 2u;
// Features per chunk staged through workgroup memory.
const BF: u32 = 8u;
// Descriptors are bytes packed four per u32 (little-endian) instead of f32 bits.
const U8_INPUT: bool = false;

const WG: u32 = CT * RT;
const TM: u32 = TM4 * 4u;
const TN: u32 = TN4 * 4u;
const BM: u32 = RT * TM;
const BN: u32 = CT * TN;
// One spare vec4 per feature row keeps the transposing stores below free of
// bank conflicts; reads are unaffected.
const A_STRIDE: u32 = BM / 4u + 1u;
const B_STRIDE: u32 = BN / 4u + 1u;
const A_LOADS: u32 = BM * BF / WG;
const B_LOADS: u32 = BN * BF / WG;
const ACC: u32 = TM * TN4;

struct Params {
    rows: u32,
    dim: u32,
    clusters: u32,
    images: u32,
    // ceil(rows / BM), ceil(clusters / BN), ceil(dim / BF).
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

// Chunk of BF features × BM rows (resp. BN centroids), feature-major, rows
// (centroids) packed in vec4s: a_tile[f · A_STRIDE + r / 4][r % 4].
var<workgroup> a_tile: array<vec4<f32>, BF * A_STRIDE>;
var<workgroup> b_tile: array<vec4<f32>, BF * B_STRIDE>;
var<workgroup> best_dist: array<f32, BM>;
var<workgroup> best_label: array<u32, BM>;

// The next chunk, fetched from global memory while the current one is used.
var<private> a_next: array<f32, A_LOADS>;
var<private> b_next: array<f32, B_LOADS>;

fn descriptor(row: u32, f: u32) -> f32 {
    let i = row * params.dim + f;
    if U8_INPUT {
        return f32((descriptors[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu);
    }
    return bitcast<f32>(descriptors[i]);
}

// Fetch features f0 .. f0 + BF of the tile's rows and centroids; zeros
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
            x = centroids[col * params.dim + f];
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

// Invocation (tx, ty) owns tile rows p·4·RT + 4·ty + c and tile centroids
// q·4·CT + 4·tx + c: strided by vec4 so that neighbouring invocations read
// neighbouring vec4s. acc[(4p + c) · TN4 + q] holds row (p, c) × centroids q.
fn multiply_chunk(acc: ptr<function, array<vec4<f32>, ACC>>, tx: u32, ty: u32) {
    for (var f = 0u; f < BF; f++) {
        var a: array<vec4<f32>, TM4>;
        var b: array<vec4<f32>, TN4>;
        for (var p = 0u; p < TM4; p++) {
            a[p] = a_tile[f * A_STRIDE + p * RT + ty];
        }
        for (var q = 0u; q < TN4; q++) {
            b[q] = b_tile[f * B_STRIDE + q * CT + tx];
        }
        for (var p = 0u; p < TM4; p++) {
            for (var c = 0u; c < 4u; c++) {
                let v = vec4<f32>(a[p][c]);
                for (var q = 0u; q < TN4; q++) {
                    let i = (p * 4u + c) * TN4 + q;
                    (*acc)[i] = fma(v, b[q], (*acc)[i]);
                }
            }
        }
    }
}

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

    // Running minimum per owned row over the centroids this invocation saw,
    // in ascending label order (so strict < keeps the lowest label).
    var dist: array<f32, TM>;
    var label: array<u32, TM>;
    for (var i = 0u; i < TM; i++) {
        dist[i] = bitcast<f32>(0x7f800000u); // +inf
        label[i] = 0u;
    }

    for (var kt = 0u; kt < params.k_tiles; kt++) {
        let col0 = kt * BN;
        var acc: array<vec4<f32>, ACC>;
        for (var i = 0u; i < ACC; i++) {
            acc[i] = vec4<f32>(0.0);
        }
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

        for (var q = 0u; q < TN4; q++) {
            for (var c = 0u; c < 4u; c++) {
                let k = col0 + q * 4u * CT + tx * 4u + c;
                if k < params.clusters {
                    let norm = centroid_norms[k];
                    for (var i = 0u; i < TM; i++) {
                        let d = norm - 2.0 * acc[i * TN4 + q][c];
                        if d < dist[i] {
                            dist[i] = d;
                            label[i] = k;
                        }
                    }
                }
            }
        }
    }

    // Merge the CT partial minima of each row, one invocation column at a time.
    for (var column = 0u; column < CT; column++) {
        if tx == column {
            for (var p = 0u; p < TM4; p++) {
                for (var c = 0u; c < 4u; c++) {
                    let i = p * 4u + c;
                    let r = p * 4u * RT + ty * 4u + c;
                    if column == 0u || dist[i] < best_dist[r]
                        || (dist[i] == best_dist[r] && label[i] < best_label[r]) {
                        best_dist[r] = dist[i];
                        best_label[r] = label[i];
                    }
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
