// Normalization steps (SPEC §3), one dispatch per step, in place on the
// `(images, clusters, dim)` f32 blocks:
//
// * `mass`   x ← x / n_{t,k} where n > 0 (one invocation per element);
// * `power`  x ← sign(x)·|x|^α, sqrt for α = 0.5 (one per element);
// * `scale_segments`, for `intra` (segments = blocks of `dim`) and `l2`
//   (segments = rows of `clusters · dim`): x ← x / ‖segment‖₂, skipped for
//   a zero segment, which so stays exactly zero. With `fused_power` set it
//   first applies `power` in place during its first pass over the segment
//   (the max), so that `power` followed by `intra` or `l2` (the default
//   `ssr,l2`) is one dispatch, reading each element three times and
//   writing it twice instead of four and twice, with no power computed
//   twice. Same values either way: each invocation later reads only the
//   elements it wrote itself.
//
// The norm is computed as m · sqrt(Σ (x/m)²) with m = max |x|, so that no
// square overflows or underflows. `lanes` invocations (a power of two, set by
// the host from the segment length) share a segment: each sums the squares of
// its strided elements in blocks of BLOCK sequential terms, block sums joined
// pairwise (a binary counter), then the lanes' sums are joined by a fixed
// tree in workgroup memory. Every order is fixed: same input, same bits.
// Host side: src/gpu/normalize.rs.

const WG: u32 = 256u;
// Strided elements one invocation squares and sums sequentially.
const BLOCK: u32 = 32u;

struct Params {
    // Elements per segment (`scale_segments`), or in all (`mass`, `power`).
    len: u32,
    // Segments (`scale_segments`).
    segments: u32,
    // Invocations per segment (`scale_segments`), a power of two ≤ WG.
    lanes: u32,
    // Descriptor width F (`mass`: element e belongs to block e / dim).
    dim: u32,
    // Exponent α (`power`).
    alpha: f32,
    // `scale_segments`: 1 to apply `power` (α) to each element as it is read.
    fused_power: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> data: array<f32>;
// `mass` only: the per-block counts.
@group(0) @binding(2) var<storage, read> counts: array<u32>;

var<workgroup> partial: array<f32, WG>;

fn linear_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

@compute @workgroup_size(WG)
fn mass(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = linear_workgroup(wid, nwg) * WG + lid;
    if e >= params.len {
        return;
    }
    let n = counts[e / params.dim];
    if n > 0u {
        data[e] = data[e] / f32(n);
    }
}

// sign(x)·|x|^α (sqrt for α = 0.5); zero of either sign becomes +0, never
// pow(0, α).
fn power_of(x: f32) -> f32 {
    let a = abs(x);
    var y = 0.0;
    if a > 0.0 {
        if params.alpha == 0.5 {
            y = sqrt(a);
        } else {
            y = pow(a, params.alpha);
        }
        if x < 0.0 {
            y = -y;
        }
    }
    return y;
}

@compute @workgroup_size(WG)
fn power(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = linear_workgroup(wid, nwg) * WG + lid;
    if e >= params.len {
        return;
    }
    data[e] = power_of(data[e]);
}

// Join the `lanes` values of each segment in this workgroup by a fixed
// tree (`take_max`: maximum, else sum); every lane gets the result. Must be
// called in uniform control flow.
fn reduce_lanes(value: f32, lid: u32, lane: u32, take_max: bool) -> f32 {
    partial[lid] = value;
    workgroupBarrier();
    for (var stride = params.lanes / 2u; stride > 0u; stride = stride / 2u) {
        if lane < stride {
            let other = partial[lid + stride];
            let mine = partial[lid];
            partial[lid] = select(mine + other, max(mine, other), take_max);
        }
        workgroupBarrier();
    }
    let result = partial[lid - lane];
    workgroupBarrier();
    return result;
}

// Σ (x/m)² over this lane's elements base + lane + k·lanes: BLOCK terms at a
// time sequentially, block sums joined pairwise with a binary counter.
fn lane_sum_of_squares(base: u32, lane: u32, m: f32) -> f32 {
    var stack: array<f32, 32>;
    var depth = 0u;
    var blocks = 0u;
    var i = lane;
    loop {
        if i >= params.len {
            break;
        }
        var s = 0.0;
        for (var k = 0u; k < BLOCK && i < params.len; k++) {
            let x = data[base + i] / m;
            s = s + x * x;
            i = i + params.lanes;
        }
        blocks = blocks + 1u;
        // Blocks 2j and 2j+1 join as soon as both are done, and so on up.
        var done = blocks;
        while (done & 1u) == 0u {
            depth = depth - 1u;
            s = stack[depth] + s;
            done = done >> 1u;
        }
        stack[depth] = s;
        depth = depth + 1u;
    }
    var total = 0.0;
    while depth > 0u {
        depth = depth - 1u;
        total = stack[depth] + total;
    }
    return total;
}

@compute @workgroup_size(WG)
fn scale_segments(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let lanes = params.lanes;
    let segment = linear_workgroup(wid, nwg) * (WG / lanes) + lid / lanes;
    let lane = lid % lanes;
    let valid = segment < params.segments;
    let base = segment * params.len;

    var m = 0.0;
    if valid {
        for (var i = lane; i < params.len; i += lanes) {
            var x = data[base + i];
            if params.fused_power != 0u {
                x = power_of(x);
                data[base + i] = x;
            }
            m = max(m, abs(x));
        }
    }
    m = reduce_lanes(m, lid, lane, true);

    var s = 0.0;
    if valid && m > 0.0 {
        s = lane_sum_of_squares(base, lane, m);
    }
    s = reduce_lanes(s, lid, lane, false);

    // s ≥ 1 when m > 0 (the largest element contributes exactly 1).
    if valid && m > 0.0 {
        let norm = sqrt(s);
        for (var i = lane; i < params.len; i += lanes) {
            data[base + i] = (data[base + i] / m) / norm;
        }
    }
}
