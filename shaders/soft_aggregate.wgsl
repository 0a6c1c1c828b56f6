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
// `divide_by_mass`: SPEC §3's `mass` with the soft counts, x ← x / n where
// n > 0, one invocation per element.
//
// Host side: src/gpu/soft_aggregate.rs; CPU twin:
// src/cpu/soft_aggregate_tile.rs.

// Invocations per workgroup (4 features each in `aggregate`).
const WG: u32 = 64u;
// Clusters per workgroup (sums per invocation).
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
    _pad: u32,
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

    var total: array<vec4<f32>, KT>;
    var total_weight: array<f32, KT>;
    var total_mass: array<f32, KT>;
    var l = first;
    while l < end {
        let stop = min(l + SUM_BLOCK, end);
        var part: array<vec4<f32>, KT>;
        var part_weight: array<f32, KT>;
        var part_mass: array<f32, KT>;
        for (; l < stop; l++) {
            var x = vec4<f32>(0.0);
            for (var c = 0u; c < 4u; c++) {
                if f + c < params.dim {
                    x[c] = descriptor(l, f + c);
                }
            }
            for (var j = 0u; j < KT; j++) {
                var a = 0.0;
                var n = 0.0;
                if k0 + j < params.clusters {
                    a = weights[l * params.clusters + k0 + j];
                    n = mass_weights[l * params.clusters + k0 + j];
                }
                part[j] = fma(vec4(a), x, part[j]);
                part_weight[j] = part_weight[j] + a;
                part_mass[j] = part_mass[j] + n;
            }
        }
        for (var j = 0u; j < KT; j++) {
            total[j] = total[j] + part[j];
            total_weight[j] = total_weight[j] + part_weight[j];
            total_mass[j] = total_mass[j] + part_mass[j];
        }
    }

    for (var j = 0u; j < KT; j++) {
        let k = k0 + j;
        if k < params.clusters {
            for (var c = 0u; c < 4u; c++) {
                if f + c < params.dim {
                    let y = centroids[k * params.dim + f + c];
                    blocks[(image * params.clusters + k) * params.dim + f + c] =
                        fma(-total_weight[j], y, total[j][c]) + 0.0;
                }
            }
            if f == 0u {
                mass[image * params.clusters + k] = total_mass[j];
            }
        }
    }
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
