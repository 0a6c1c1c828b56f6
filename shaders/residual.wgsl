// Residual layout: the segmented scan's per-key sums into the `(images,
// clusters, dim)` f32 blocks, every element written (blocks of keys with no
// row are exactly 0), and the per-block counts `n_{t,k}`.
//
// `count_blocks` counts each key's rows exactly, by two binary searches in
// the sorted keys (by rank: see `rank`); `write_blocks` then copies the
// sums of the keys present and writes zeros elsewhere. The scan stage
// leaves its sums laid out densely by key (slot key·dim + f), which is
// already the block layout: no arithmetic happens here. When the scan
// wrote straight into the blocks buffer, `zero_empty_blocks` replaces
// `write_blocks`: it only zeroes the blocks no row went to, in place, and
// copies nothing.
// Host side: src/backend/gpu/stages/residual.rs.

const WG: u32 = 64u;

struct Params {
    // Sorted rows (keys) in all.
    rows: u32,
    // images · clusters.
    blocks: u32,
    // Descriptor width F.
    dim: u32,
    // Centroids K (`count_blocks`).
    clusters: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// Out of `count_blocks`, in of `write_blocks`: `blocks` u32.
@group(0) @binding(1) var<storage, read_write> counts: array<u32>;
// `count_blocks` only: the sorted keys.
@group(0) @binding(2) var<storage, read> keys: array<u32>;
// `write_blocks` only: the scan's sums, slot key·dim + f.
@group(0) @binding(3) var<storage, read> sums: array<f32>;
// `write_blocks` only, out: `blocks · dim` f32.
@group(0) @binding(4) var<storage, read_write> out_blocks: array<f32>;

// The sorted keys are in (label, image) order: the sort orders them by
// label alone, stably, over rows already in image order. So a key's rank
// label · images + image grows along them.
fn rank(key: u32, images: u32) -> u32 {
    return (key % params.clusters) * images + key / params.clusters;
}

// First position in the sorted keys whose rank is ≥ `r`.
fn lower_bound(r: u32, images: u32) -> u32 {
    var lo = 0u;
    var hi = params.rows;
    while lo < hi {
        let mid = lo + (hi - lo) / 2u;
        if rank(keys[mid], images) < r {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    return lo;
}

fn invocation(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn count_blocks(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let block = invocation(wid, nwg, lid);
    if block >= params.blocks {
        return;
    }
    // r + 1 cannot overflow: ranks < blocks ≤ 2³² − 1 elements of a buffer.
    let images = params.blocks / params.clusters;
    let r = rank(block, images);
    counts[block] = lower_bound(r + 1u, images) - lower_bound(r, images);
}

@compute @workgroup_size(WG)
fn write_blocks(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = invocation(wid, nwg, lid);
    if e >= params.blocks * params.dim {
        return;
    }
    var x = 0.0;
    if counts[e / params.dim] > 0u {
        x = sums[e];
    }
    out_blocks[e] = x;
}

@compute @workgroup_size(WG)
fn zero_empty_blocks(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = invocation(wid, nwg, lid);
    if e >= params.blocks * params.dim {
        return;
    }
    if counts[e / params.dim] == 0u {
        out_blocks[e] = 0.0;
    }
}
