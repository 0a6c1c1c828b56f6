// Ceiling kernel: FMA throughput. Each invocation runs CHAINS independent
// chains x ← x · mul + add for `iters` steps (written as a multiply and an
// add, which every GPU compiler contracts to one FMA; the `fma` builtin can
// be emulated where contraction is not) (so the device can overlap
// their latencies) and stores their sum, so nothing is optimized away.
// FLOPs = 2 · CHAINS · iters · invocations. `mul` and `add` come from the
// uniform, so no compiler can fold the chain. With mul = 0.5 and a small
// integer add every product is exact, so fused and unfused FMA agree bit
// for bit with the CPU twin (src/cpu/ceilings.rs). Host: src/gpu/ceilings.rs.

const WG: u32 = 256u;
const CHAINS: u32 = 8u;

struct Params {
    // Steps per chain.
    iters: u32,
    // Invocations that store a result (the grid may be larger).
    invocations: u32,
    mul: f32,
    add: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn fma_chains(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    var x: array<f32, CHAINS>;
    for (var c = 0u; c < CHAINS; c++) {
        x[c] = f32((i + c) % 64u);
    }
    for (var s = 0u; s < params.iters; s++) {
        x[0] = x[0] * params.mul + params.add;
        x[1] = x[1] * params.mul + params.add;
        x[2] = x[2] * params.mul + params.add;
        x[3] = x[3] * params.mul + params.add;
        x[4] = x[4] * params.mul + params.add;
        x[5] = x[5] * params.mul + params.add;
        x[6] = x[6] * params.mul + params.add;
        x[7] = x[7] * params.mul + params.add;
    }
    if i < params.invocations {
        var sum = 0.0;
        for (var c = 0u; c < CHAINS; c++) {
            sum += x[c];
        }
        out[i] = sum;
    }
}
