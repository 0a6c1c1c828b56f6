// Segmented reduction over runs of equal sorted keys (one run per
// (image, label) pair): the sum of `v[row] − c[label]` (or of `v[row]`) over
// each run, written to `sums[key · dim + f]`.
//
// The sorted rows are cut into fixed CHUNK-row leaves; one invocation per
// (leaf, feature) sums its leaf sequentially. A tree over the leaves (FANIN
// children per node, combined pairwise inside one invocation) then joins the
// pieces of runs that cross leaf boundaries, always in the same order. Every
// run is written exactly once, by the smallest node that contains it whole,
// so no slot is written twice and no atomics are needed. Each node keeps two
// partial sums: `head`, the rows of its first key, and `tail`, the rows of its
// last key (equal when the node holds one key only).
//
// Host side, error bound and the CPU twin: src/backend/gpu/stages/segmented_scan.rs,
// src/twins/segmented_scan.rs (same constants, same order of additions).

const WG: u32 = 64u;
// Rows a leaf sums sequentially.
const CHUNK: u32 = 32u;
// Children a combine invocation joins (a 4-level binary tree).
const FANIN: u32 = 16u;

const FLAG_U8: u32 = 1u;
const FLAG_SUBTRACT: u32 = 2u;

struct Params {
    // Sorted rows in all.
    rows: u32,
    // Descriptor width F.
    dim: u32,
    // Centroids K (label = key % K).
    clusters: u32,
    // FLAG_U8 | FLAG_SUBTRACT.
    flags: u32,
    // Nodes this pass writes (leaves for `leaf`, parents for `combine`).
    nodes: u32,
    // Nodes of the level `combine` reads.
    children: u32,
    // Rows covered by one child node (`combine`).
    child_span: u32,
    // First f32 of the level read (`combine`) in `levels`.
    in_offset: u32,
    // First f32 of the level written in `levels`.
    out_offset: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Bindings 0–3 are shared by both entry points; 4–6 are the leaf's only, so
// each entry point's bindings are a prefix of the list.
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> keys: array<u32>;
// Node partials, level after level: node j of a level at `offset` keeps its
// head at offset + 2·j·dim + f and its tail at offset + (2·j + 1)·dim + f.
@group(0) @binding(2) var<storage, read_write> levels: array<f32>;
// Out: `images · clusters · dim`; only the slots of keys present are written.
@group(0) @binding(3) var<storage, read_write> sums: array<f32>;
@group(0) @binding(4) var<storage, read> rows: array<u32>;
// f32 bit patterns, or bytes packed four per word (little-endian).
@group(0) @binding(5) var<storage, read> descriptors: array<u32>;
@group(0) @binding(6) var<storage, read> centroids: array<f32>;

// The run holding row `start` began before it.
fn opens_left(start: u32) -> bool {
    return start > 0u && keys[start - 1u] == keys[start];
}

// The run holding row `end − 1` goes on past it.
fn opens_right(end: u32) -> bool {
    return end < params.rows && keys[end] == keys[end - 1u];
}

// Element `f` of sorted row `i`, minus its centroid element
// `centroids[centroid_at]` when asked.
fn value(i: u32, centroid_at: u32, f: u32) -> f32 {
    let e = rows[i] * params.dim + f;
    var x: f32;
    if (params.flags & FLAG_U8) != 0u {
        x = f32((descriptors[e >> 2u] >> ((e & 3u) * 8u)) & 0xffu);
    } else {
        x = bitcast<f32>(descriptors[e]);
    }
    if (params.flags & FLAG_SUBTRACT) != 0u {
        x = x - centroids[centroid_at];
    }
    return x;
}

// Where element `f` of the centroid of `key`'s label is. An integer
// division: done once per run, not per row.
fn centroid_index(key: u32, f: u32) -> u32 {
    return (key % params.clusters) * params.dim + f;
}

fn invocation(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn leaf(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let dim = params.dim;
    let id = invocation(wid, nwg, lid);
    let chunk = id / dim;
    if chunk >= params.nodes {
        return;
    }
    let f = id - chunk * dim;
    let start = chunk * CHUNK;
    let end = min(start + CHUNK, params.rows);
    let open_left = opens_left(start);

    var run_start = start;
    var run_key = keys[start];
    var centroid_at = centroid_index(run_key, f);
    var acc = 0.0;
    var head = 0.0;
    for (var i = start; i < end; i++) {
        let key = keys[i];
        if key != run_key {
            // The run [run_start, i) ends inside this leaf.
            if run_start == start {
                head = acc;
            }
            // Whole if it also began here.
            if run_start > start || !open_left {
                sums[run_key * dim + f] = acc;
            }
            run_start = i;
            run_key = key;
            centroid_at = centroid_index(key, f);
            acc = 0.0;
        }
        acc = acc + value(i, centroid_at, f);
    }
    if run_start == start {
        head = acc;
    }
    let starts_inside = run_start > start || !open_left;
    if starts_inside && !opens_right(end) {
        sums[run_key * dim + f] = acc;
    }
    let out = params.out_offset + 2u * chunk * dim + f;
    levels[out] = head;
    levels[out + dim] = acc;
}

@compute @workgroup_size(WG)
fn combine(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let dim = params.dim;
    let id = invocation(wid, nwg, lid);
    let parent = id / dim;
    if parent >= params.nodes {
        return;
    }
    let f = id - parent * dim;
    let first = parent * FANIN;
    let span = params.child_span;
    let n = params.rows;

    var head: array<f32, FANIN>;
    var tail: array<f32, FANIN>;
    for (var c = 0u; c < FANIN; c++) {
        let child = first + c;
        if child < params.children {
            let at = params.in_offset + 2u * child * dim + f;
            head[c] = levels[at];
            tail[c] = levels[at + dim];
        }
    }

    // Bottom-up binary tree: at width w, node c (children c .. c+w) absorbs
    // its right sibling c+w. Child indices are clamped before scaling by the
    // span so that no product exceeds 2·rows.
    for (var w = 1u; w < FANIN; w = w * 2u) {
        for (var c = 0u; c < FANIN; c = c + 2u * w) {
            let mid = min(first + c + w, params.children) * span;
            if mid >= n {
                break;
            }
            let a = min(first + c, params.children) * span;
            let b = min(min(first + c + 2u * w, params.children) * span, n);
            let key = keys[mid - 1u];
            if key == keys[mid] {
                let left_whole = keys[a] == key;
                let right_whole = keys[b - 1u] == key;
                let joined = tail[c] + head[c + w];
                // Whole here unless it goes on past the joined node.
                let starts_inside = !left_whole || !opens_left(a);
                let ends_inside = !right_whole || !opens_right(b);
                if starts_inside && ends_inside {
                    sums[key * dim + f] = joined;
                }
                if left_whole {
                    head[c] = joined;
                }
                tail[c] = select(tail[c + w], joined, right_whole);
            } else {
                tail[c] = tail[c + w];
            }
        }
    }

    let out = params.out_offset + 2u * parent * dim + f;
    levels[out] = head[0];
    levels[out + dim] = tail[0];
}
