// Stable LSD key–value radix sort, one RADIX_BITS-bit digit per pass,
// reduce-then-scan (no decoupled look-back, no inter-workgroup progress):
//
//   count_digits   per tile of TILE pairs: digit histogram → hist[d · tiles + tile]
//                  (per-thread counts in workgroup memory, no atomics)
//   scan_blocks    exclusive scan of SCAN_BLOCK entries per workgroup, in
//                  place, block total → the next level (hierarchical)
//   add_block_sums add each block's scanned total back into its entries
//   scatter        stable within the tile: thread t owns ITEMS consecutive
//                  pairs; pair positions come from per-(digit, thread)
//                  counts scanned digit-major in workgroup memory.
//
// The histogram is digit-major over tiles, so its exclusive scan gives each
// (digit, tile) the number of pairs that precede it in the stable order:
// all pairs with a smaller digit plus those with the same digit in earlier
// tiles. All arithmetic is on integers: every order of evaluation gives the
// same result.
//
// With `modulus` set, the digits are those of key % modulus: the pipeline
// sorts its image · K + label keys by label alone, since its rows are in
// image order already (half the passes or fewer; src/backend/gpu/stages/radix_sort.rs).
//
// The host may replace the `const` lines of SCAN_WG (threads of the scan
// kernels) to test deep scan hierarchies on small inputs.

const RADIX_BITS: u32 = 4u;
const RADIX: u32 = 16u;
// Threads per tile workgroup and pairs per thread in `scatter`.
const WG: u32 = 128u;
const ITEMS: u32 = 16u;
const TILE: u32 = WG * ITEMS;
// Threads per scan workgroup; each scans SCAN_ITEMS consecutive entries.
const SCAN_WG: u32 = 256u;
const SCAN_ITEMS: u32 = 4u;
const SCAN_BLOCK: u32 = SCAN_WG * SCAN_ITEMS;
// Threads per `add_block_sums` workgroup, one entry each.
const ADD_WG: u32 = 256u;

struct Params {
    // Pairs to sort.
    len: u32,
    // ceil(len / TILE).
    tiles: u32,
    // First key bit of this pass, and the digit mask (narrower on the
    // last pass when key_bits is not a multiple of RADIX_BITS).
    shift: u32,
    mask: u32,
    // Scan kernels: this level's entries are data[scan_offset ..
    // scan_offset + scan_len]; block totals go to data[sums_offset + block].
    scan_offset: u32,
    scan_len: u32,
    sums_offset: u32,
    // Nonzero: the digits are those of key % modulus, not of the key (the
    // pipeline sorts (image, label) keys by label only: see
    // src/backend/gpu/stages/radix_sort.rs).
    modulus: u32,
}

// Bindings are ordered so that every entry point uses a prefix 0..n of them.
@group(0) @binding(0) var<uniform> params: Params;
// Histograms and every level of their scan, one after another.
@group(0) @binding(1) var<storage, read_write> scan_data: array<u32>;
@group(0) @binding(2) var<storage, read> keys_in: array<u32>;
@group(0) @binding(3) var<storage, read> values_in: array<u32>;
@group(0) @binding(4) var<storage, read_write> keys_out: array<u32>;
@group(0) @binding(5) var<storage, read_write> values_out: array<u32>;

fn linear_group(wid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wid.y * groups.x + wid.x;
}

fn digit_of(key: u32) -> u32 {
    var sorted_on = key;
    if params.modulus != 0u {
        sorted_on = key % params.modulus;
    }
    return (sorted_on >> params.shift) & params.mask;
}

// ---------------------------------------------------------------- count

// Per (digit, thread) counts, digit-major: counts[d · WG + t]. Shared with
// `scatter` (a workgroup only runs one entry point). Each thread counts
// into its own column, so no atomics: no contention when keys repeat.
var<workgroup> counts: array<u32, RADIX * WG>;
var<workgroup> tile_partials: array<u32, WG>;

const COUNT_PARTS: u32 = WG / RADIX; // threads summing one digit's row

@compute @workgroup_size(WG)
fn count_digits(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let tile = linear_group(wid, groups);
    if tile >= params.tiles {
        return;
    }
    for (var d = 0u; d < RADIX; d++) {
        counts[d * WG + lid] = 0u;
    }
    // Coalesced: consecutive threads read consecutive keys (the order of
    // counting does not matter).
    let base = tile * TILE;
    for (var i = 0u; i < ITEMS; i++) {
        let idx = base + i * WG + lid;
        if idx < params.len {
            counts[digit_of(keys_in[idx]) * WG + lid] += 1u;
        }
    }
    workgroupBarrier();
    // Thread lid sums part lid % COUNT_PARTS of digit lid / COUNT_PARTS's row.
    let first = (lid / COUNT_PARTS) * WG + (lid % COUNT_PARTS) * RADIX;
    var sum = 0u;
    for (var i = 0u; i < RADIX; i++) {
        sum += counts[first + i];
    }
    tile_partials[lid] = sum;
    workgroupBarrier();
    if lid < RADIX {
        var total = 0u;
        for (var p = 0u; p < COUNT_PARTS; p++) {
            total += tile_partials[lid * COUNT_PARTS + p];
        }
        scan_data[lid * params.tiles + tile] = total;
    }
}

// ---------------------------------------------------------------- scan

var<workgroup> scan_partials: array<u32, SCAN_WG>;

// Inclusive Hillis–Steele scan of `scan_partials` (one entry per thread).
fn scan_workgroup_inclusive(lid: u32) {
    for (var stride = 1u; stride < SCAN_WG; stride <<= 1u) {
        var left = 0u;
        if lid >= stride {
            left = scan_partials[lid - stride];
        }
        workgroupBarrier();
        scan_partials[lid] += left;
        workgroupBarrier();
    }
}

@compute @workgroup_size(SCAN_WG)
fn scan_blocks(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let block = linear_group(wid, groups);
    let blocks = (params.scan_len + SCAN_BLOCK - 1u) / SCAN_BLOCK;
    if block >= blocks {
        return;
    }
    let first = block * SCAN_BLOCK + lid * SCAN_ITEMS;
    var own: array<u32, SCAN_ITEMS>;
    var sum = 0u;
    for (var i = 0u; i < SCAN_ITEMS; i++) {
        var x = 0u;
        if first + i < params.scan_len {
            x = scan_data[params.scan_offset + first + i];
        }
        own[i] = x;
        sum += x;
    }
    scan_partials[lid] = sum;
    workgroupBarrier();
    scan_workgroup_inclusive(lid);
    var running = scan_partials[lid] - sum;
    for (var i = 0u; i < SCAN_ITEMS; i++) {
        if first + i < params.scan_len {
            scan_data[params.scan_offset + first + i] = running;
        }
        running += own[i];
    }
    if lid == SCAN_WG - 1u {
        scan_data[params.sums_offset + block] = scan_partials[lid];
    }
}

@compute @workgroup_size(ADD_WG)
fn add_block_sums(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = linear_group(wid, groups) * ADD_WG + lid;
    if i < params.scan_len {
        scan_data[params.scan_offset + i] += scan_data[params.sums_offset + i / SCAN_BLOCK];
    }
}

// ---------------------------------------------------------------- scatter

// Here counts[d · WG + t] holds the pairs of digit d among thread t's
// ITEMS, then their exclusive scan over the tile in (digit, thread) order,
// then each thread's running position for digit d. Only thread t writes
// column t after the scan.
// Global position of the tile's first pair of digit d, minus the tile-local
// position of that pair.
var<workgroup> digit_base: array<u32, RADIX>;

@compute @workgroup_size(WG)
fn scatter(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let tile = linear_group(wid, groups);
    if tile >= params.tiles {
        return;
    }
    for (var d = 0u; d < RADIX; d++) {
        counts[d * WG + lid] = 0u;
    }
    // Thread `lid` owns pairs first .. first + ITEMS, in input order.
    let first = tile * TILE + lid * ITEMS;
    var keys: array<u32, ITEMS>;
    var values: array<u32, ITEMS>;
    for (var i = 0u; i < ITEMS; i++) {
        let idx = first + i;
        if idx < params.len {
            keys[i] = keys_in[idx];
            values[i] = values_in[idx];
            counts[digit_of(keys[i]) * WG + lid] += 1u;
        }
    }
    workgroupBarrier();

    // Exclusive scan of the RADIX · WG counts in (digit, thread) order:
    // each thread takes RADIX consecutive entries.
    let run = lid * RADIX;
    var own: array<u32, RADIX>;
    var sum = 0u;
    for (var i = 0u; i < RADIX; i++) {
        own[i] = counts[run + i];
        sum += own[i];
    }
    tile_partials[lid] = sum;
    workgroupBarrier();
    for (var stride = 1u; stride < WG; stride <<= 1u) {
        var left = 0u;
        if lid >= stride {
            left = tile_partials[lid - stride];
        }
        workgroupBarrier();
        tile_partials[lid] += left;
        workgroupBarrier();
    }
    var running = tile_partials[lid] - sum;
    for (var i = 0u; i < RADIX; i++) {
        counts[run + i] = running;
        running += own[i];
    }
    workgroupBarrier();
    if lid < RADIX {
        // Wrapping u32 arithmetic: the sum with a tile-local position below
        // is always the true (non-negative) global position.
        digit_base[lid] = scan_data[lid * params.tiles + tile] - counts[lid * WG];
    }
    workgroupBarrier();

    for (var i = 0u; i < ITEMS; i++) {
        if first + i < params.len {
            let d = digit_of(keys[i]);
            let slot = d * WG + lid;
            let local = counts[slot];
            counts[slot] = local + 1u;
            let dst = digit_base[d] + local;
            keys_out[dst] = keys[i];
            values_out[dst] = values[i];
        }
    }
}
