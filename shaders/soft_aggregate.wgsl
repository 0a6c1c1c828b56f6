// NetVLAD aggregation (SPEC §10) per image, without atomics:
//
//     r_{t,k} = Σ_l a_lk·v_l − (Σ_l a_lk)·c_k
//
// over the image's rows l, with the weights a (rows × K) of
// shaders/soft_logits.wgsl (already divided by ‖v − c_k‖ under `rn`), and
// the soft counts Σ_l a_lk of `mass_weights` (the unscaled weights under
// `rn`; the same buffer as `weights` otherwise).
//
// `aggregate`: one workgroup per (image, tile of KT clusters × 4·WG
// features); each invocation owns the KT sums of 4 consecutive features
// (vec4s: each weight read serves 4 fma). It
// walks the image's rows in order, SUM_BLOCK rows at a time into block
// sums (fma), block sums added to the running totals in order; Σ a_lk and
// the soft counts the same way. Every order is fixed and no two invocations
// write the same element: same input, same bits. An image with no rows
// gets exact zeros (and zero counts).
//
// The sums (`Sums`) are written out by hand for KT = 8 (`add_row`,
// `add_block`, the eight `write_cluster` calls): every access has a
// constant index, so that compilers keep them in registers. Indexed by a
// loop variable, arrays of per-invocation sums may live in local memory
// instead, read and written for every row (BENCHMARKS.md has the H100
// figures behind this).
//
// `divide_by_mass`: SPEC §3's `mass` with the soft counts, x ← x / n where
// n > 0, one invocation per element.
//
// Host side: src/backend/gpu/stages/soft_aggregate.rs; CPU twin:
// src/twins/soft_aggregate.rs.

// Invocations per workgroup (4 features each in `aggregate`).
const WG: u32 = 64u;
// Clusters per workgroup (sums per invocation). The code below is written
// out for exactly 8.
const KT: u32 = 8u;
// Rows summed sequentially before a block sum joins the running total.
const SUM_BLOCK: u32 = 32u;
// Descriptors are bytes packed four per u32 (little-endian) instead of f32 bits.
const U8_INPUT: bool = false;

struct Params {
    rows: u32,
    dim: u32,
    clusters: u32,
    images: u32,
    // ceil(dim / (4·WG)), ceil(clusters / KT).
    f_tiles: u32,
    k_tiles: u32,
    // `divide_by_mass`: images · clusters · dim.
    elements: u32,
    // `aggregate`: 1 when `mass_weights` is `weights` (no `rn`), so that
    // each weight is read once.
    mass_is_weights: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> descriptors: array<u32>;
// rows × K soft-assignment weights.
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read> centroids: array<f32>;
// images + 1 local CSR offsets.
@group(0) @binding(4) var<storage, read> image_offsets: array<u32>;
// Out of `aggregate`, in/out of `divide_by_mass`: images × K × F.
@group(0) @binding(5) var<storage, read_write> blocks: array<f32>;
// Out of `aggregate`, in of `divide_by_mass`: images × K soft counts.
@group(0) @binding(6) var<storage, read_write> mass: array<f32>;
// rows × K weights whose sums are the soft counts.
@group(0) @binding(7) var<storage, read> mass_weights: array<f32>;

// #include "parts/descriptor.wgsl"

// One invocation's sums over a run of rows, for its KT = 8 clusters
// k0 + j: `v[j]` is Σ a·x over its 4 features, `weight[h]` and `mass[h]`
// the Σ a and the soft counts of clusters k0 + 4h .. k0 + 4h + 3.
struct Sums {
    v: array<vec4<f32>, KT>,
    weight: array<vec4<f32>, 2>,
    mass: array<vec4<f32>, 2>,
}

// Weights of clusters k .. k + 3 of row l (zeros past K: they add nothing).
fn weights4(l: u32, k: u32) -> vec4<f32> {
    var w = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        if k + c < params.clusters {
            w[c] = weights[l * params.clusters + k + c];
        }
    }
    return w;
}

// The same from `mass_weights`.
fn mass_weights4(l: u32, k: u32) -> vec4<f32> {
    var w = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        if k + c < params.clusters {
            w[c] = mass_weights[l * params.clusters + k + c];
        }
    }
    return w;
}

// One row: x its 4 features, a0 / a1 the weights of clusters k0 .. k0 + 3
// and k0 + 4 .. k0 + 7, n0 / n1 their mass weights.
fn add_row(s: ptr<function, Sums>, x: vec4<f32>, a0: vec4<f32>, a1: vec4<f32>, n0: vec4<f32>, n1: vec4<f32>) {
    (*s).v[0] = fma(vec4(a0.x), x, (*s).v[0]);
    (*s).v[1] = fma(vec4(a0.y), x, (*s).v[1]);
    (*s).v[2] = fma(vec4(a0.z), x, (*s).v[2]);
    (*s).v[3] = fma(vec4(a0.w), x, (*s).v[3]);
    (*s).v[4] = fma(vec4(a1.x), x, (*s).v[4]);
    (*s).v[5] = fma(vec4(a1.y), x, (*s).v[5]);
    (*s).v[6] = fma(vec4(a1.z), x, (*s).v[6]);
    (*s).v[7] = fma(vec4(a1.w), x, (*s).v[7]);
    (*s).weight[0] = (*s).weight[0] + a0;
    (*s).weight[1] = (*s).weight[1] + a1;
    (*s).mass[0] = (*s).mass[0] + n0;
    (*s).mass[1] = (*s).mass[1] + n1;
}

// total += part, element by element.
fn add_block(total: ptr<function, Sums>, part: ptr<function, Sums>) {
    (*total).v[0] = (*total).v[0] + (*part).v[0];
    (*total).v[1] = (*total).v[1] + (*part).v[1];
    (*total).v[2] = (*total).v[2] + (*part).v[2];
    (*total).v[3] = (*total).v[3] + (*part).v[3];
    (*total).v[4] = (*total).v[4] + (*part).v[4];
    (*total).v[5] = (*total).v[5] + (*part).v[5];
    (*total).v[6] = (*total).v[6] + (*part).v[6];
    (*total).v[7] = (*total).v[7] + (*part).v[7];
    (*total).weight[0] = (*total).weight[0] + (*part).weight[0];
    (*total).weight[1] = (*total).weight[1] + (*part).weight[1];
    (*total).mass[0] = (*total).mass[0] + (*part).mass[0];
    (*total).mass[1] = (*total).mass[1] + (*part).mass[1];
}

// r_{t,k} = Σ a·x − (Σ a)·c_k for this invocation's 4 features of cluster
// k, and cluster k's soft count (written once, by the invocation of the
// first features).
fn write_cluster(image: u32, k: u32, f: u32, v: vec4<f32>, weight: f32, count: f32) {
    if k >= params.clusters {
        return;
    }
    for (var c = 0u; c < 4u; c++) {
        if f + c < params.dim {
            let y = centroids[k * params.dim + f + c];
            blocks[(image * params.clusters + k) * params.dim + f + c] =
                fma(-weight, y, v[c]) + 0.0;
        }
    }
    if f == 0u {
        mass[image * params.clusters + k] = count;
    }
}

@compute @workgroup_size(WG)
fn aggregate(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let tiles = params.f_tiles * params.k_tiles;
    let linear = wid.y * groups.x + wid.x;
    let image = linear / tiles;
    if image >= params.images {
        return;
    }
    let tile = linear % tiles;
    let f = ((tile % params.f_tiles) * WG + lid) * 4u;
    let k0 = (tile / params.f_tiles) * KT;
    let first = image_offsets[image];
    let end = image_offsets[image + 1u];

    var total: Sums;
    var l = first;
    while l < end {
        let stop = min(l + SUM_BLOCK, end);
        var part: Sums;
        for (; l < stop; l++) {
            var x = vec4<f32>(0.0);
            for (var c = 0u; c < 4u; c++) {
                if f + c < params.dim {
                    x[c] = descriptor(l, f + c);
                }
            }
            let a0 = weights4(l, k0);
            let a1 = weights4(l, k0 + 4u);
            var n0 = a0;
            var n1 = a1;
            if params.mass_is_weights == 0u {
                n0 = mass_weights4(l, k0);
                n1 = mass_weights4(l, k0 + 4u);
            }
            add_row(&part, x, a0, a1, n0, n1);
        }
        add_block(&total, &part);
    }

    write_cluster(image, k0, f, total.v[0], total.weight[0].x, total.mass[0].x);
    write_cluster(image, k0 + 1u, f, total.v[1], total.weight[0].y, total.mass[0].y);
    write_cluster(image, k0 + 2u, f, total.v[2], total.weight[0].z, total.mass[0].z);
    write_cluster(image, k0 + 3u, f, total.v[3], total.weight[0].w, total.mass[0].w);
    write_cluster(image, k0 + 4u, f, total.v[4], total.weight[1].x, total.mass[1].x);
    write_cluster(image, k0 + 5u, f, total.v[5], total.weight[1].y, total.mass[1].y);
    write_cluster(image, k0 + 6u, f, total.v[6], total.weight[1].z, total.mass[1].z);
    write_cluster(image, k0 + 7u, f, total.v[7], total.weight[1].w, total.mass[1].w);
}

@compute @workgroup_size(WG)
fn divide_by_mass(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let e = gid.y * groups.x * WG + gid.x;
    if e >= params.elements {
        return;
    }
    let n = mass[e / params.dim];
    if n > 0.0 {
        blocks[e] = blocks[e] / n;
    }
}
