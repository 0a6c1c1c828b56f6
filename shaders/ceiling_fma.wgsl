// Ceiling kernel: f32 FMA throughput, as vkpeak and clpeak measure it.
// Each invocation runs CHAINS independent chains x ← x · mul + add for
// `iters` steps, four vec4 registers of them, the loop unrolled four steps
// per trip so that nothing but FMAs issues (written as a multiply and an
// add, which every GPU compiler contracts to one FMA; the `fma` builtin can
// be emulated where contraction is not). Sixteen independent chains per
// invocation and a million invocations cover the FMA latency of any GPU.
// It stores the chains' sum, so nothing is optimized away.
// FLOPs = 2 · CHAINS · iters · invocations. `mul` and `add` come from the
// uniform, so no compiler can fold the chain. With mul = 0.5 and a small
// integer add every product is exact, so fused and unfused FMA agree bit
// for bit with the CPU twin (src/twins/ceiling_fma.rs). Host:
// src/backend/gpu/stages/ceilings.rs.

const WG: u32 = 256u;
const CHAINS: u32 = 16u;

struct FmaParams {
    // Steps per chain.
    iters: u32,
    // Invocations that store a result (the grid may be larger).
    invocations: u32,
    mul: f32,
    add: f32,
}

@group(0) @binding(0) var<uniform> params: FmaParams;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

// Chain c of invocation i starts at (i + c) mod 64.
fn start(i: u32, c: u32) -> vec4<f32> {
    return vec4<f32>(
        f32((i + c) % 64u),
        f32((i + c + 1u) % 64u),
        f32((i + c + 2u) % 64u),
        f32((i + c + 3u) % 64u),
    );
}

@compute @workgroup_size(WG)
fn fma_chains(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    // Chains 0–3 in the lanes of `a`, 4–7 in `b`, 8–11 in `c`, 12–15 in
    // `d`: registers, no indexed array that a compiler might keep in memory.
    var a = start(i, 0u);
    var b = start(i, 4u);
    var c = start(i, 8u);
    var d = start(i, 12u);
    let m = vec4<f32>(params.mul);
    let k = vec4<f32>(params.add);
    for (var s = 0u; s < params.iters / 4u; s++) {
        a = a * m + k;
        b = b * m + k;
        c = c * m + k;
        d = d * m + k;
        a = a * m + k;
        b = b * m + k;
        c = c * m + k;
        d = d * m + k;
        a = a * m + k;
        b = b * m + k;
        c = c * m + k;
        d = d * m + k;
        a = a * m + k;
        b = b * m + k;
        c = c * m + k;
        d = d * m + k;
    }
    for (var s = 0u; s < params.iters % 4u; s++) {
        a = a * m + k;
        b = b * m + k;
        c = c * m + k;
        d = d * m + k;
    }
    if i < params.invocations {
        // Chain order 0, 1, …, 15, as the CPU twin sums.
        var sum = 0.0;
        sum += a.x;
        sum += a.y;
        sum += a.z;
        sum += a.w;
        sum += b.x;
        sum += b.y;
        sum += b.z;
        sum += b.w;
        sum += c.x;
        sum += c.y;
        sum += c.z;
        sum += c.w;
        sum += d.x;
        sum += d.y;
        sum += d.z;
        sum += d.w;
        out[i] = sum;
    }
}
