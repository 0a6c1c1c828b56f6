// Ceiling kernel: FMA throughput. Each invocation runs CHAINS independent
// chains x ← x · mul + add for `iters` steps (written as a multiply and an
// add, which every GPU compiler contracts to one FMA; the `fma` builtin can
// be emulated where contraction is not) (so the device can overlap
// their latencies) and stores their sum, so nothing is optimized away.
// FLOPs = 2 · CHAINS · iters · invocations. `mul` and `add` come from the
// uniform, so no compiler can fold the chain. With mul = 0.5 and a small
// integer add every product is exact, so fused and unfused FMA agree bit
// for bit with the CPU twin (src/twins/ceiling_fma.rs). Host:
// src/backend/gpu/stages/ceilings.rs.

const WG: u32 = 256u;
const CHAINS: u32 = 8u;

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

@compute @workgroup_size(WG)
fn fma_chains(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    // Chains 0–3 in the lanes of `a`, 4–7 in those of `b`: registers, no
    // indexed array that a compiler might keep in memory.
    var a = vec4<f32>(
        f32(i % 64u),
        f32((i + 1u) % 64u),
        f32((i + 2u) % 64u),
        f32((i + 3u) % 64u),
    );
    var b = vec4<f32>(
        f32((i + 4u) % 64u),
        f32((i + 5u) % 64u),
        f32((i + 6u) % 64u),
        f32((i + 7u) % 64u),
    );
    let m = vec4<f32>(params.mul);
    let c = vec4<f32>(params.add);
    for (var s = 0u; s < params.iters; s++) {
        a = a * m + c;
        b = b * m + c;
    }
    if i < params.invocations {
        // Chain order 0, 1, …, 7, as the CPU twin sums.
        var sum = 0.0;
        sum += a.x;
        sum += a.y;
        sum += a.z;
        sum += a.w;
        sum += b.x;
        sum += b.y;
        sum += b.z;
        sum += b.w;
        out[i] = sum;
    }
}
