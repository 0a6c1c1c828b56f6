// Ceiling kernel: f16 FMA throughput, on adapters with SHADER_F16 (the
// rate half-precision features would run at). The twin of
// shaders/ceiling_fma.wgsl in f16: CHAINS independent chains
// x ← x · mul + add per invocation in four vec4<f16> registers, four steps
// per loop trip; each chain is widened to f32 and the sixteen summed in
// chain order. FLOPs = 2 · CHAINS · iters · invocations. CPU twin:
// crate::twins::ceiling_fma::fma_chains_f16 (the f32 chains: with mul = 0.5,
// a small integer add and at most 5 steps every value is exact in f16, so
// the two agree bit for bit). Host: src/backend/gpu/stages/ceilings.rs.

enable f16;

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
fn start(i: u32, c: u32) -> vec4<f16> {
    return vec4<f16>(
        f16((i + c) % 64u),
        f16((i + c + 1u) % 64u),
        f16((i + c + 2u) % 64u),
        f16((i + c + 3u) % 64u),
    );
}

@compute @workgroup_size(WG)
fn fma_chains_f16(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    var a = start(i, 0u);
    var b = start(i, 4u);
    var c = start(i, 8u);
    var d = start(i, 12u);
    let m = vec4<f16>(f16(params.mul));
    let k = vec4<f16>(f16(params.add));
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
        // Chain order 0, 1, …, 15, in f32, as the CPU twin sums.
        let wa = vec4<f32>(a);
        let wb = vec4<f32>(b);
        let wc = vec4<f32>(c);
        let wd = vec4<f32>(d);
        var sum = 0.0;
        sum += wa.x;
        sum += wa.y;
        sum += wa.z;
        sum += wa.w;
        sum += wb.x;
        sum += wb.y;
        sum += wb.z;
        sum += wb.w;
        sum += wc.x;
        sum += wc.y;
        sum += wc.z;
        sum += wc.w;
        sum += wd.x;
        sum += wd.y;
        sum += wd.z;
        sum += wd.w;
        out[i] = sum;
    }
}
