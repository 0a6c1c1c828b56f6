// Stable LSD key–value radix sort, one RADIX_BITS-bit digit per pass,
// reduce-then-scan (no decoupled look-back, no inter-workgroup progress).
// The pipeline's labels are < K, so for K ≤ 256 the sort is a single
// stable counting pass, two for K ≤ 65,536:
//
//   count_digits   per tile of TILE pairs: digit histogram → hist[d · tiles + tile]
//                  (workgroup-memory integer atomics: the count is exact
//                  whatever order they land in)
//   scan_blocks    exclusive scan of SCAN_BLOCK entries per workgroup, in
//                  place, block total → the next level (hierarchical)
//   add_block_sums add each block's scanned total back into its entries
//   scatter        stable within the tile: the tile is taken in ITEMS
//                  rounds of WG consecutive pairs; a pair's rank among the
//                  equal digits of its round comes from comparing it with
//                  the digits of the lanes below it, four bytes to a word
//                  (no subgroups needed), and each digit's running position
//                  is carried from round to round in workgroup memory.
//
// The histogram is digit-major over tiles, so its exclusive scan gives each
// (digit, tile) the number of pairs that precede it in the stable order:
// all pairs with a smaller digit plus those with the same digit in earlier
// tiles. Only `mask + 1` digits (bins) are counted and scanned: for K = 16
// the histogram has 16 rows, not 256. All arithmetic is on integers: every
// order of evaluation gives the same result.
//
// With `modulus` set, the digits are those of key % modulus: the pipeline
// sorts its image · K + label keys by label alone, since its rows are in
// image order already (src/backend/gpu/stages/radix_sort.rs).
//
// The host may replace the `const` lines of SCAN_WG (threads of the scan
// kernels) to test deep scan hierarchies on small inputs.

const RADIX_BITS: u32 = 8u;
const RADIX: u32 = 256u;
// Threads per tile workgroup, and rounds of WG pairs per tile.
const WG: u32 = 128u;
const ITEMS: u32 = 16u;
const TILE: u32 = WG * ITEMS;
// Threads per scan workgroup; each scans SCAN_ITEMS consecutive entries.
const SCAN_WG: u32 = 256u;
const SCAN_ITEMS: u32 = 4u;
const SCAN_BLOCK: u32 = SCAN_WG * SCAN_ITEMS;
// Threads per `add_block_sums` workgroup, one entry each.
const ADD_WG: u32 = 256u;
// The digit of a round's slot past the end: never equal to a real digit.
const NO_DIGIT: u32 = RADIX;

struct Params {
    // Pairs to sort.
    len: u32,
    // ceil(len / TILE).
    tiles: u32,
    // First key bit of this pass, and the digit mask (narrower on the
    // last pass when key_bits is not a multiple of RADIX_BITS); the pass
    // has mask + 1 bins.
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

// The tile's count of each digit (integer atomics: exact in any order).
var<workgroup> tile_counts: array<atomic<u32>, RADIX>;

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
    let bins = params.mask + 1u;
    for (var d = lid; d < bins; d += WG) {
        atomicStore(&tile_counts[d], 0u);
    }
    workgroupBarrier();
    // Coalesced: consecutive threads read consecutive keys (the order of
    // counting does not matter).
    let base = tile * TILE;
    for (var i = 0u; i < ITEMS; i++) {
        let idx = base + i * WG + lid;
        if idx < params.len {
            atomicAdd(&tile_counts[digit_of(keys_in[idx])], 1u);
        }
    }
    workgroupBarrier();
    for (var d = lid; d < bins; d += WG) {
        scan_data[d * params.tiles + tile] = atomicLoad(&tile_counts[d]);
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

// Workgroup memory of a round is double-buffered by the round's parity, so
// a round's clean-up never races the next round's writes.
// The digits of a round, four 8-bit digits per word (lane l in byte l % 4
// of word l / 4); slots past the end hold 0, but they come after every
// pair of the round, so no pair ever counts them.
var<workgroup> round_digits: array<array<atomic<u32>, WORDS>, 2>;
// The pairs of each digit in a round (integer atomics: exact in any order).
var<workgroup> round_counts: array<array<atomic<u32>, RADIX>, 2>;
// Where the next pair of digit d goes: the scanned histogram entry of
// (d, tile), advanced by each round's pairs of digit d.
var<workgroup> next_slot: array<u32, RADIX>;

const WORDS: u32 = WG / 4u;

// The number of bytes of `x` that are zero (exact, no false positives).
fn zero_bytes(x: u32) -> u32 {
    let y = (x & 0x7f7f7f7fu) + 0x7f7f7f7fu;
    return countOneBits(~(y | x | 0x7f7f7f7fu));
}

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
    let bins = params.mask + 1u;
    for (var d = lid; d < bins; d += WG) {
        next_slot[d] = scan_data[d * params.tiles + tile];
        atomicStore(&round_counts[0][d], 0u);
        atomicStore(&round_counts[1][d], 0u);
    }
    if lid < WORDS {
        atomicStore(&round_digits[0][lid], 0u);
        atomicStore(&round_digits[1][lid], 0u);
    }
    workgroupBarrier();
    // Round r holds pairs tile · TILE + r · WG + (0 .. WG), in input order:
    // thread lid takes the lid-th. Stable: a pair goes after the pairs of
    // its digit in earlier rounds (next_slot) and after those in its round
    // with a lower lid (its rank, counted four digits at a time).
    let word = lid / 4u;
    let byte = lid % 4u;
    for (var r = 0u; r < ITEMS; r++) {
        let buf = r % 2u;
        let idx = tile * TILE + r * WG + lid;
        let valid = idx < params.len;
        var key = 0u;
        var value = 0u;
        var digit = 0u;
        if valid {
            key = keys_in[idx];
            value = values_in[idx];
            digit = digit_of(key);
            atomicOr(&round_digits[buf][word], digit << (byte * 8u));
            atomicAdd(&round_counts[buf][digit], 1u);
        }
        // Also orders the previous round's next_slot updates before the
        // reads below.
        workgroupBarrier();
        if valid {
            // Each word read by every thread of a group at once (a broadcast).
            let spread = digit * 0x01010101u;
            var before = 0u;
            for (var w = 0u; w < word; w++) {
                before += zero_bytes(atomicLoad(&round_digits[buf][w]) ^ spread);
            }
            // The lanes of its own word below it: the bytes above are set
            // to differ.
            let own = atomicLoad(&round_digits[buf][word]) ^ spread;
            let above = ~((1u << (byte * 8u)) - 1u);
            before += zero_bytes(own | (above & 0x01010101u));
            let dst = next_slot[digit] + before;
            keys_out[dst] = key;
            values_out[dst] = value;
        }
        // Every thread has read this round's digits, counts and slots.
        workgroupBarrier();
        // Move each digit's slot past the round; clear the round's buffers
        // for round r + 2 (round r + 1 uses the other ones).
        for (var d = lid; d < bins; d += WG) {
            next_slot[d] += atomicExchange(&round_counts[buf][d], 0u);
        }
        if lid < WORDS {
            atomicStore(&round_digits[buf][lid], 0u);
        }
    }
}
