// Nearest-centroid assignment on cooperative matrices (tensor cores): the
// variant of assign.wgsl that `VLAD_GPU_TENSOR_CORES=1` selects where the
// adapter offers 16×16×16 f16 × f16 → f32 products. CPU twin:
// src/twins/assign_coop.rs; host: src/backend/gpu/stages/assign_coop.rs.
//
// Same bindings, outputs and label rule as assign.wgsl; labels obey SPEC §4
// at least as well (see "Labels" below).
//
// ## Arithmetic
//
// One workgroup is one subgroup (SG invocations, the adapter's fixed
// subgroup size) and owns BM = 32 rows. For each tile of BN = 32 centroids
// it computes the 32 × 32 dot products v·c as four 16 × 16 f32 accumulators,
// 16 features at a time:
//
// * every row v is scaled by 2^e_v, a power of two that puts its largest
//   |element| in [2^14, 2^15) (f16's largest finite value is 65504, its
//   smallest normal 2^-14), and every centroid c by its own 2^e_c; the scaled
//   element a is split into f16 hi = f16(a) and lo = f16(a − hi) (a − hi is
//   exact in f32). u8 rows are exact in f16: not scaled, not split.
// * acc += hi_v·hi_c + hi_v·lo_c + lo_v·hi_c (three 16×16×16 products; two
//   for u8 rows). Each f16 × f16 product is exact in f32.
// * dot = acc · 2^-e_v · 2^-e_c (exact), d = ‖c‖² − 2·dot, with the same f32
//   norms as the plain path. Each row keeps its best two (d̂₁ ≤ d̂₂) and the
//   label of d̂₁ (strict <, centroids in ascending order).
//
// ## The error bound (u = 2^-23, F = dim, C = max_k ‖c_k‖)
//
// For every centroid k, |d̂_k − (‖c_k‖² − 2 v·c_k)| ≤ B with
//
//     B = (8F + 48) · u · (‖v‖ + C)²,
//
// whatever order the hardware accumulates in, and even if it truncates
// instead of rounding or flushes f16 subnormals. Derivation, per dot product
// with a = scaled v, b = scaled c (so max|a_f| ≥ 2^14, likewise b; u8 rows
// are not scaled but are exact in f16, so their ε below is 0):
//
// 1. Split. WGSL lets f32 → f16 round to either neighbour, so
//    |a − hi| ≤ 2^-10|a| (2^-24 absolute for f16 subnormals),
//    |lo − (a − hi)| ≤ 2^-20|a| + 2^-24, hence a = hi + lo + ε with
//    |ε| ≤ 2^-20|a| + 2^-23. Expanding (hi_a + lo_a + ε_a)(hi_b + lo_b + ε_b),
//    the omitted terms (lo_a·lo_b, the ε terms) sum over f to at most
//    3·2^-20 Σ|a_f b_f| + 2^-22 (‖a‖₁ + ‖b‖₁) ≤ (24u + 2^-36 √F) ‖a‖‖b‖
//    (using ‖a‖₁ ≤ √F‖a‖ and ‖a‖ ≥ 2^14). Flushing f16 subnormals to zero
//    adds at most 2^-27 √F ‖a‖‖b‖ (error 2^-14 against ‖a‖ ≥ 2^14).
// 2. Accumulation. 3F exact products summed in f32 in any order, each
//    addition off by at most 1 ulp (truncation allowed): ≤ 3F·u·Σ|p|, with
//    Σ|p| ≤ 1.004‖a‖‖b‖; doubled for safety: ≤ 6.03 F u ‖a‖‖b‖.
//    Tensor cores may instead align each 16-product block and the
//    accumulator to the largest exponent and truncate (Fasi, Higham,
//    Mikaitis, Pranesh, "Numerical behavior of NVIDIA tensor cores", 2021):
//    ≤ 17u per block times (|acc| + Σ_block|p|), ≤ (3.2F + 17.1) u ‖a‖‖b‖
//    over the 3F/16 blocks — below 6.03F + 17.1, which B's constant covers.
//    Unscaling by powers of two is exact, so after it the two terms bound
//    |dot̂ − v·c| ≤ (41.1 + 6.03F + √F/16) u ‖v‖‖c‖ (rows/centroids whose
//    scale would leave f32's normal range are re-checked, see below).
// 3. The f32 norm ‖c_k‖² (computed by the host in any order, doubled):
//    ≤ F u C².
// 4. The subtraction ‖c‖² − 2·dot (fused or not): ≤ 2^-24 (C² + 2‖v‖C).
//
// With 2‖v‖C ≤ (‖v‖ + C)² and C² ≤ (‖v‖ + C)² the total is at most
// (41.1 + 6.03F + √F/16) + F + 0.51 (the three items, in units of
// u (‖v‖ + C)²), i.e. at most (7.1F + 42) u (‖v‖ + C)² ≤ B. ‖v‖ and C are
// themselves f32 results, so they enter B 1 % high (covering their rounding
// for any F below 10^5).
//
// ## Labels
//
// If d̂₂ − d̂₁ > 2B, every other centroid is provably farther than the one
// chosen: the label is the exact argmin. Otherwise — near ties, exact ties,
// a row or centroid whose scale exponent is out of range (largest |element|
// outside [2^-60, 2^61), or subnormal) — the row is re-checked: the whole
// workgroup computes Σ_f (v_f − c_f)² in f32 (blocks of 16 features summed
// in order with fma, block sums added in order) for every centroid, and
// takes the smallest, ties to the lowest index. A direct distance has no
// cancellation, so this is as good as or better than the plain path.
//
// ## Workgroup memory
//
// Cooperative loads and stores need their pointer 16-byte aligned (Vulkan:
// "the lesser of 16 bytes or the natural alignment of a row"), and a
// driver lays out workgroup variables as it likes. Every variable here is
// a multiple of 16 bytes long (no lone 4-byte word), so that packed one
// after another each starts 16-byte aligned: a 4-byte variable ahead of the
// tiles would move every cooperative access 4 bytes off its tile
// (`examples/coop_probe.rs` measures such offsets on a device;
// docs/tensor-cores.md has the status).
//
// The host specializes the `const` lines below before compiling.

enable f16;
enable wgpu_cooperative_matrix;

// Invocations per workgroup: the adapter's (fixed) subgroup size, so that
// one workgroup is one subgroup and every cooperative operation is made by
// all of it.
const SG: u32 = 32u;
// Descriptors are bytes packed four per u32 (little-endian) instead of f32 bits.
const U8_INPUT: bool = false;

// Rows and centroids per workgroup tile (two 16-wide cooperative tiles each),
// features per cooperative step.
const BM: u32 = 32u;
const BN: u32 = 32u;
const STEP: u32 = 16u;
// Scaled values have their largest |element| in [2^TARGET, 2^(TARGET + 1)).
const TARGET_EXPONENT: i32 = 14;
// Largest |binary exponent| of a row's / centroid's largest |element| that
// is scaled; beyond it the row (every row, for a centroid) is re-checked.
const EXPONENT_RANGE: i32 = 60;
// B = (BOUND_PER_FEATURE · F + BOUND_CONSTANT) · 2^-23 · (‖v‖ + C)², with
// ‖v‖ and C taken NORM_MARGIN high (see the header).
const BOUND_PER_FEATURE: f32 = 8.0;
const BOUND_CONSTANT: f32 = 48.0;
const NORM_MARGIN: f32 = 1.01;

// The uniform and bindings, shared with shaders/assign.wgsl.
// #include "parts/assign_interface.wgsl"

// One step of 16 features: rows row-major (r · STEP + f, the A operand read
// with coopLoadT), centroids centroid-major (c · STEP + f, the B operand
// K × N read column-major with coopLoad).
var<workgroup> a_hi: array<f16, BM * STEP>;
var<workgroup> a_lo: array<f16, BM * STEP>;
var<workgroup> b_hi: array<f16, BN * STEP>;
var<workgroup> b_lo: array<f16, BN * STEP>;
// The tile's scaled dot products, row-major (r · BN + c).
var<workgroup> dots: array<f32, BM * BN>;

var<workgroup> row_scale: array<f32, BM>;
var<workgroup> row_unscale: array<f32, BM>;
// 2B for each row.
var<workgroup> row_gap_bound: array<f32, BM>;
var<workgroup> row_force: array<u32, BM>;
var<workgroup> col_scale: array<f32, BN>;
var<workgroup> col_unscale: array<f32, BN>;
// Per invocation: some centroid it scaled is out of range, so every row
// is re-checked. An array of SG words rather than one atomic word: see
// "Workgroup memory" below.
var<workgroup> force_flags: array<u32, SG>;

var<workgroup> best1: array<f32, BM>;
var<workgroup> best1_label: array<u32, BM>;
var<workgroup> best2: array<f32, BM>;
var<workgroup> recheck: array<u32, BM>;

// Per-invocation partial results (max ‖c‖², re-check minima).
var<workgroup> lane_dist: array<f32, SG>;
var<workgroup> lane_label: array<u32, SG>;


fn infinity() -> f32 {
    return bitcast<f32>(0x7f800000u);
}

// #include "parts/descriptor.wgsl"
// #include "parts/image_of.wgsl"

// 2^e as f32, |e| ≤ 126.
fn pow2(e: i32) -> f32 {
    return bitcast<f32>(u32(127 + e) << 23u);
}

struct Scale {
    scale: f32,
    unscale: f32,
    ok: bool,
}

// The power of two that brings max_abs into [2^14, 2^15); not ok (and
// unscaled) when max_abs is subnormal or its exponent is out of range.
fn scale_of(max_abs: f32) -> Scale {
    if max_abs == 0.0 {
        return Scale(1.0, 1.0, true);
    }
    let biased = i32((bitcast<u32>(max_abs) >> 23u) & 0xffu);
    let e = biased - 127;
    if biased == 0 || biased == 255 || abs(e) > EXPONENT_RANGE {
        return Scale(1.0, 1.0, false);
    }
    let s = TARGET_EXPONENT - e;
    return Scale(pow2(s), pow2(-s), true);
}

// Stage features f0 .. f0 + STEP of the tile's rows and centroids, scaled
// and split; zeros outside the matrices.
fn stage_step(lid: u32, row0: u32, col0: u32, f0: u32) {
    for (var e = lid; e < BM * STEP; e += SG) {
        let r = e / STEP;
        let f = f0 + e % STEP;
        let row = row0 + r;
        var x = 0.0;
        if row < params.rows && f < params.dim {
            x = descriptor(row, f) * row_scale[r];
        }
        let hi = f16(x);
        a_hi[e] = hi;
        if !U8_INPUT {
            a_lo[e] = f16(x - f32(hi));
        }
    }
    for (var e = lid; e < BN * STEP; e += SG) {
        let c = e / STEP;
        let f = f0 + e % STEP;
        let col = col0 + c;
        var x = 0.0;
        if col < params.clusters && f < params.dim {
            x = centroids[col * params.dim + f] * col_scale[c];
        }
        let hi = f16(x);
        b_hi[e] = hi;
        b_lo[e] = f16(x - f32(hi));
    }
}

// Σ_f (v_f − c_f)² in f32: blocks of STEP features in order, block sums in
// order (the twin's `recheck_distance`).
fn direct_distance(row: u32, k: u32) -> f32 {
    var total = 0.0;
    for (var f0 = 0u; f0 < params.dim; f0 += STEP) {
        var block = 0.0;
        let end = min(f0 + STEP, params.dim);
        for (var f = f0; f < end; f++) {
            let d = descriptor(row, f) - centroids[k * params.dim + f];
            block = fma(d, d, block);
        }
        total += block;
    }
    return total;
}

@compute @workgroup_size(SG)
fn assign(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let tile = wid.y * groups.x + wid.x;
    if tile >= params.row_tiles {
        return;
    }
    let row0 = tile * BM;

    // C² = max_k ‖c_k‖².
    var partial = 0.0;
    for (var k = lid; k < params.clusters; k += SG) {
        partial = max(partial, centroid_norms[k]);
    }
    lane_dist[lid] = partial;
    force_flags[lid] = 0u;
    workgroupBarrier();
    var c_max2 = 0.0;
    for (var i = 0u; i < SG; i++) {
        c_max2 = max(c_max2, lane_dist[i]);
    }
    let c_max = sqrt(c_max2) * NORM_MARGIN;

    // Each row's scale and gap bound 2B.
    for (var r = lid; r < BM; r += SG) {
        let row = row0 + r;
        var max_abs = 0.0;
        var norm2 = 0.0;
        if row < params.rows {
            for (var f = 0u; f < params.dim; f++) {
                let x = descriptor(row, f);
                max_abs = max(max_abs, abs(x));
                norm2 = fma(x, x, norm2);
            }
        }
        var s = Scale(1.0, 1.0, true);
        if !U8_INPUT {
            s = scale_of(max_abs);
        }
        row_scale[r] = s.scale;
        row_unscale[r] = s.unscale;
        row_force[r] = select(1u, 0u, s.ok);
        let v = sqrt(norm2) * NORM_MARGIN;
        let b = (BOUND_PER_FEATURE * f32(params.dim) + BOUND_CONSTANT) * pow2(-23)
            * (v + c_max) * (v + c_max);
        row_gap_bound[r] = 2.0 * b;
        best1[r] = infinity();
        best1_label[r] = 0u;
        best2[r] = infinity();
    }

    for (var kt = 0u; kt < params.k_tiles; kt++) {
        let col0 = kt * BN;
        for (var c = lid; c < BN; c += SG) {
            let col = col0 + c;
            var max_abs = 0.0;
            if col < params.clusters {
                for (var f = 0u; f < params.dim; f++) {
                    max_abs = max(max_abs, abs(centroids[col * params.dim + f]));
                }
            }
            let s = scale_of(max_abs);
            col_scale[c] = s.scale;
            col_unscale[c] = s.unscale;
            if !s.ok {
                // c ≡ lid (mod SG): only this invocation writes this flag.
                force_flags[lid] = 1u;
            }
        }

        var acc00 = coop_mat16x16<f32, C>();
        var acc01 = coop_mat16x16<f32, C>();
        var acc10 = coop_mat16x16<f32, C>();
        var acc11 = coop_mat16x16<f32, C>();
        for (var chunk = 0u; chunk < params.chunks; chunk++) {
            // Scales written (first step) / previous step's tiles consumed.
            workgroupBarrier();
            stage_step(lid, row0, col0, chunk * STEP);
            workgroupBarrier();
            let ah0 = coopLoadT<coop_mat16x16<f16, A>>(&a_hi[0], STEP);
            let ah1 = coopLoadT<coop_mat16x16<f16, A>>(&a_hi[16u * STEP], STEP);
            let bh0 = coopLoad<coop_mat16x16<f16, B>>(&b_hi[0], STEP);
            let bh1 = coopLoad<coop_mat16x16<f16, B>>(&b_hi[16u * STEP], STEP);
            let bl0 = coopLoad<coop_mat16x16<f16, B>>(&b_lo[0], STEP);
            let bl1 = coopLoad<coop_mat16x16<f16, B>>(&b_lo[16u * STEP], STEP);
            acc00 = coopMultiplyAdd(ah0, bh0, acc00);
            acc01 = coopMultiplyAdd(ah0, bh1, acc01);
            acc10 = coopMultiplyAdd(ah1, bh0, acc10);
            acc11 = coopMultiplyAdd(ah1, bh1, acc11);
            acc00 = coopMultiplyAdd(ah0, bl0, acc00);
            acc01 = coopMultiplyAdd(ah0, bl1, acc01);
            acc10 = coopMultiplyAdd(ah1, bl0, acc10);
            acc11 = coopMultiplyAdd(ah1, bl1, acc11);
            if !U8_INPUT {
                let al0 = coopLoadT<coop_mat16x16<f16, A>>(&a_lo[0], STEP);
                let al1 = coopLoadT<coop_mat16x16<f16, A>>(&a_lo[16u * STEP], STEP);
                acc00 = coopMultiplyAdd(al0, bh0, acc00);
                acc01 = coopMultiplyAdd(al0, bh1, acc01);
                acc10 = coopMultiplyAdd(al1, bh0, acc10);
                acc11 = coopMultiplyAdd(al1, bh1, acc11);
            }
        }
        coopStoreT(acc00, &dots[0], BN);
        coopStoreT(acc01, &dots[16u], BN);
        coopStoreT(acc10, &dots[16u * BN], BN);
        coopStoreT(acc11, &dots[16u * BN + 16u], BN);
        workgroupBarrier();

        // Fold the tile into each row's best two, centroids ascending.
        for (var r = lid; r < BM; r += SG) {
            var b1 = best1[r];
            var k1 = best1_label[r];
            var b2 = best2[r];
            for (var c = 0u; c < BN; c++) {
                let k = col0 + c;
                if k < params.clusters {
                    let dot = dots[r * BN + c] * row_unscale[r] * col_unscale[c];
                    let d = centroid_norms[k] - 2.0 * dot;
                    if d < b1 {
                        b2 = b1;
                        b1 = d;
                        k1 = k;
                    } else if d < b2 {
                        b2 = d;
                    }
                }
            }
            best1[r] = b1;
            best1_label[r] = k1;
            best2[r] = b2;
        }
        // dots and the column scales are rewritten by the next tile.
        workgroupBarrier();
    }

    // Which rows the bound cannot decide (`!(gap > 2B)` also catches NaN).
    // (The centroid-tile loop ended with a barrier: every flag is written.)
    var everything = false;
    for (var i = 0u; i < SG; i++) {
        everything = everything || force_flags[i] != 0u;
    }
    for (var r = lid; r < BM; r += SG) {
        let gap = best2[r] - best1[r];
        let decided = gap > row_gap_bound[r];
        recheck[r] = select(0u, 1u, everything || row_force[r] != 0u || !decided);
    }

    // Re-check those rows one at a time, every invocation taking every
    // SG-th centroid, then merging by (distance, label).
    for (var r = 0u; r < BM; r++) {
        let row = row0 + r;
        let flagged = workgroupUniformLoad(&recheck[r]);
        if flagged != 0u && row < params.rows {
            var bd = infinity();
            var bk = 0u;
            for (var k = lid; k < params.clusters; k += SG) {
                let d = direct_distance(row, k);
                if d < bd {
                    bd = d;
                    bk = k;
                }
            }
            lane_dist[lid] = bd;
            lane_label[lid] = bk;
            workgroupBarrier();
            if lid == 0u {
                var d = lane_dist[0];
                var k = lane_label[0];
                for (var i = 1u; i < SG; i++) {
                    if lane_dist[i] < d || (lane_dist[i] == d && lane_label[i] < k) {
                        d = lane_dist[i];
                        k = lane_label[i];
                    }
                }
                best1_label[r] = k;
            }
            workgroupBarrier();
        }
    }
    workgroupBarrier();

    for (var r = lid; r < BM; r += SG) {
        let row = row0 + r;
        if row < params.rows {
            let k = best1_label[r];
            labels[row] = k;
            keys[row] = image_of(row) * params.clusters + k;
            values[row] = row;
        }
    }
}
