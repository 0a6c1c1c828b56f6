// Normalization steps (SPEC §3), one dispatch per step, in place on the
// `(images, clusters, dim)` f32 blocks:
//
// * `mass`   x ← x / n_{t,k} where n > 0 (one invocation per element);
// * `power`  x ← sign(x)·|x|^α, sqrt for α = 0.5 (one per element);
// * `scale_segments`, for `intra` (segments = blocks of `dim`) and `l2`
//   (segments = rows of `clusters · dim`): x ← x / ‖segment‖₂, skipped for
//   a zero segment, which so stays exactly zero. With FUSED_POWER set it
//   applies `power` as it reads each element, so that `power` followed by
//   `intra` or `l2` (the default `ssr,l2`) is one dispatch that writes each
//   element once; after the signed square root the squares it sums are
//   |x| themselves (‖ssr(x)‖² = Σ|x|), so no root is taken before the
//   last pass.
//
// The norm takes two reads of the segment: the plain sum of squares (and
// the largest square) in one pass, then the scaling pass. Only where the
// largest square lies outside [2⁻⁸⁰, 2⁸⁰] (squares that overflow or
// underflow) does it take the scaled form m · sqrt(Σ (x/m)²), m = max |x|,
// at one more read. `lanes` invocations (a power of two, set by
// the host from the segment length) share a segment: each sums the squares of
// its strided elements in blocks of BLOCK sequential terms, block sums joined
// pairwise (a binary counter), then the lanes' sums are joined by a fixed
// tree in workgroup memory. Every order is fixed: same input, same bits.
// Host side: src/backend/gpu/stages/normalize.rs.

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
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// `scale_segments` only: the `power` step fused into it, applied to each
// element as it is read. 0: none; 1: the signed square root; 2: power α
// (`params.alpha`). Set by the host per pipeline (src/backend/gpu/specialize.rs),
// so that the per-element code has no branch on it.
const FUSED_POWER: u32 = 0u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> data: array<f32>;
// `mass` only: the per-block counts.
@group(0) @binding(2) var<storage, read> counts: array<u32>;

var<workgroup> partial: array<vec2<f32>, WG>;

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
    if params.alpha == 0.5 {
        return signed_sqrt(x);
    }
    let a = abs(x);
    var y = 0.0;
    if a > 0.0 {
        y = pow(a, params.alpha);
    }
    return with_sign_of(y, x);
}

// sign(x)·sqrt|x|, +0 for a zero of either sign.
fn signed_sqrt(x: f32) -> f32 {
    return with_sign_of(sqrt(abs(x)), x);
}

// `magnitude` (≥ 0) with the sign of `x`; +0 when x is a zero.
fn with_sign_of(magnitude: f32, x: f32) -> f32 {
    if x < 0.0 {
        return -magnitude;
    }
    return magnitude;
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
// tree: `.x` summed, `.y` by maximum; every lane gets the result. Must be
// called in uniform control flow.
fn reduce_lanes(value: vec2<f32>, lid: u32, lane: u32) -> vec2<f32> {
    partial[lid] = value;
    workgroupBarrier();
    for (var stride = params.lanes / 2u; stride > 0u; stride = stride / 2u) {
        if lane < stride {
            let other = partial[lid + stride];
            let mine = partial[lid];
            partial[lid] = vec2(mine.x + other.x, max(mine.y, other.y));
        }
        workgroupBarrier();
    }
    let result = partial[lid - lane];
    workgroupBarrier();
    return result;
}

// The element as the segment step sees it: after the fused power, if any.
fn value_of(x: f32) -> f32 {
    if FUSED_POWER == 1u {
        return signed_sqrt(x);
    }
    if FUSED_POWER == 2u {
        return power_of(x);
    }
    return x;
}

// True when the squares summed are |x| itself: after the fused signed
// square root, whose exact square is |x| (‖ssr(x)‖² = Σ|x|, no root taken).
fn squares_are_magnitudes() -> bool {
    return FUSED_POWER == 1u;
}

// A lane's sum is BLOCK terms at a time sequentially, the block sums
// joined pairwise by a binary counter: blocks 2j and 2j+1 join as soon as
// both are done, and so on up. `Pairwise` is that counter.
struct Pairwise {
    stack: array<f32, 32>,
    depth: u32,
    blocks: u32,
}

fn push_block(p: ptr<function, Pairwise>, block_sum: f32) {
    var s = block_sum;
    (*p).blocks += 1u;
    var done = (*p).blocks;
    while (done & 1u) == 0u {
        (*p).depth -= 1u;
        s = (*p).stack[(*p).depth] + s;
        done = done >> 1u;
    }
    (*p).stack[(*p).depth] = s;
    (*p).depth += 1u;
}

fn pairwise_total(p: ptr<function, Pairwise>) -> f32 {
    var total = 0.0;
    while (*p).depth > 0u {
        (*p).depth -= 1u;
        total = (*p).stack[(*p).depth] + total;
    }
    return total;
}

// This lane's share of a segment (elements base + lane + k·lanes): the
// plain sum of the squares of value_of(x) in `.x` (|x| after a fused
// square root), and the largest |x| in `.y`.
fn lane_plain_sum(base: u32, lane: u32) -> vec2<f32> {
    var pairwise: Pairwise;
    let magnitudes = squares_are_magnitudes();
    var largest = 0.0;
    var i = lane;
    while i < params.len {
        var s = 0.0;
        for (var k = 0u; k < BLOCK && i < params.len; k++) {
            let x = data[base + i];
            largest = max(largest, abs(x));
            var t = abs(x);
            if !magnitudes {
                let y = value_of(x);
                t = y * y;
            }
            s = s + t;
            i = i + params.lanes;
        }
        push_block(&pairwise, s);
    }
    return vec2(pairwise_total(&pairwise), largest);
}

// This lane's share of Σ (value_of(x)/m)², in the same order.
fn lane_scaled_sum(base: u32, lane: u32, m: f32) -> f32 {
    var pairwise: Pairwise;
    var i = lane;
    while i < params.len {
        var s = 0.0;
        for (var k = 0u; k < BLOCK && i < params.len; k++) {
            let y = value_of(data[base + i]) / m;
            s = s + y * y;
            i = i + params.lanes;
        }
        push_block(&pairwise, s);
    }
    return pairwise_total(&pairwise);
}

// The plain sum is used when the largest square lies in
// [SAFE_LOW, SAFE_HIGH]: then no partial sum of at most 2³² terms can
// overflow (2³²·2⁸⁰ < 2¹²⁸), and the squares that underflow lose at most
// 2³²·2⁻¹⁵⁰ = 2⁻¹¹⁸ in all, below 2⁻³⁸ of the sum (≥ SAFE_LOW).
const SAFE_LOW: f32 = 0x1p-80f;
const SAFE_HIGH: f32 = 0x1p80f;

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

    // Pass 1: the plain sum of squares and the largest |x|, in one read
    // and one reduction.
    var mine = vec2(0.0);
    if valid {
        mine = lane_plain_sum(base, lane);
    }
    let joined = reduce_lanes(mine, lid, lane);
    // The largest |value_of(x)| is value_of(the largest |x|), the power
    // being monotonic; its square is the largest term summed.
    let m = abs(value_of(joined.y));
    let largest_square = select(m * m, joined.y, squares_are_magnitudes());
    let in_range = largest_square >= SAFE_LOW && largest_square <= SAFE_HIGH;

    // Out of range (squares that overflow or underflow, or an all-zero
    // segment): Σ (x/m)², one more read. The reduction runs whatever the
    // range, so that its barriers stay in uniform control flow; it has the
    // barriers of the separate maximum that came first before, and
    // costs no read.
    var scaled = 0.0;
    if valid && !in_range && m > 0.0 {
        scaled = lane_scaled_sum(base, lane, m);
    }
    let scaled_sum = reduce_lanes(vec2(scaled, 0.0), lid, lane).x;

    if !valid {
        return;
    }
    if in_range {
        let norm = sqrt(joined.x);
        for (var i = lane; i < params.len; i += lanes) {
            data[base + i] = value_of(data[base + i]) / norm;
        }
    } else if m > 0.0 {
        // scaled_sum ≥ 1 (the largest element contributes exactly 1).
        let norm = sqrt(scaled_sum);
        for (var i = lane; i < params.len; i += lanes) {
            data[base + i] = (value_of(data[base + i]) / m) / norm;
        }
    } else if FUSED_POWER != 0u {
        // An all-zero segment after the power: it stays as `power` leaves
        // it (signed zeros of underflowed powers included).
        for (var i = lane; i < params.len; i += lanes) {
            data[base + i] = value_of(data[base + i]);
        }
    }
}
