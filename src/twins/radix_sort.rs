//! Stable LSD key–value radix sort on slices: the CPU twin of
//! `shaders/radix_sort.wgsl`, step for step (the same [`RADIX_BITS`]-bit
//! digits, the same number of passes, the same treatment of bits above
//! `key_bits`; per pass the same per-tile histograms, their digit-major
//! exclusive scan, and the scatter in rounds of [`ROUND`] pairs), so the
//! two can be compared element by element. With 8-bit digits, the
//! pipeline's sort by label (labels < K) is one counting pass for K ≤ 256
//! and two for K ≤ 65,536.

use crate::error::{Result, VladError};

/// Bits per digit: one counting-sort pass per digit.
pub const RADIX_BITS: u32 = 8;

/// Number of distinct digit values.
pub const RADIX: usize = 1 << RADIX_BITS;

/// Pairs per round of the scatter: the shader's threads per tile
/// workgroup (`WG`).
pub const ROUND: usize = 128;

/// Rounds per tile (the shader's `ITEMS`).
pub const ROUNDS: usize = 16;

/// Pairs per tile: one histogram (one workgroup) each.
pub const TILE: usize = ROUND * ROUNDS;

/// Passes needed to sort by the low `key_bits` bits: `ceil(key_bits / RADIX_BITS)`.
pub fn passes(key_bits: u32) -> u32 {
    key_bits.div_ceil(RADIX_BITS)
}

/// The digit mask of the pass starting at bit `shift` when the keys have
/// `key_bits` significant bits: the last pass is narrower when `key_bits`
/// is not a multiple of [`RADIX_BITS`]. The pass has `mask + 1` bins.
pub fn digit_mask(shift: u32, key_bits: u32) -> u32 {
    let width = RADIX_BITS.min(key_bits - shift);
    (1u32 << width) - 1
}

/// The digit of `key` sorted on by the pass starting at bit `shift`, limited
/// to the low `key_bits` bits of the key (higher bits never affect the order).
#[inline]
pub fn digit(key: u32, shift: u32, key_bits: u32) -> usize {
    ((key >> shift) & digit_mask(shift, key_bits)) as usize
}

/// Sort `keys` ascending by their low `key_bits` bits (1..=32), carrying
/// `values` along; equal keys keep their input order (stable).
///
/// ```
/// let mut keys = vec![3, 1, 3, 0];
/// let mut values = vec![10, 11, 12, 13];
/// vlad::twins::radix_sort::radix_sort_pairs(&mut keys, &mut values, 2)?;
/// assert_eq!((keys, values), (vec![0, 1, 3, 3], vec![13, 11, 10, 12]));
/// # Ok::<(), vlad::VladError>(())
/// ```
pub fn radix_sort_pairs(keys: &mut [u32], values: &mut [u32], key_bits: u32) -> Result<()> {
    radix_sort_pairs_by_remainder(keys, values, key_bits, 0)
}

/// [`radix_sort_pairs`] by `key % modulus` instead of the key (`modulus`
/// 0: by the key), stably: the GPU sort's `SortJob::modulus`, which sorts
/// the pipeline's `image · K + label` keys by label only.
///
/// ```
/// // Keys image · 3 + label, rows in image order: by label, images stay in order.
/// let mut keys = vec![2, 0, 5, 3, 4];
/// let mut values = vec![0, 1, 2, 3, 4];
/// vlad::twins::radix_sort::radix_sort_pairs_by_remainder(&mut keys, &mut values, 2, 3)?;
/// assert_eq!((keys, values), (vec![0, 3, 4, 2, 5], vec![1, 3, 4, 0, 2]));
/// # Ok::<(), vlad::VladError>(())
/// ```
pub fn radix_sort_pairs_by_remainder(
    keys: &mut [u32],
    values: &mut [u32],
    key_bits: u32,
    modulus: u32,
) -> Result<()> {
    if !(1..=32).contains(&key_bits) {
        return Err(VladError::InvalidArgument(format!(
            "radix sort key_bits = {key_bits}, must be in 1..=32"
        )));
    }
    if keys.len() != values.len() {
        return Err(VladError::DimensionMismatch(format!(
            "radix sort of {} keys with {} values",
            keys.len(),
            values.len()
        )));
    }
    if keys.len() < 2 {
        return Ok(());
    }
    let mut alt_keys = vec![0u32; keys.len()];
    let mut alt_values = vec![0u32; values.len()];
    // Ping-pong as the GPU does; `in_primary` says where the data is now.
    let mut in_primary = true;
    for pass in 0..passes(key_bits) {
        let shift = pass * RADIX_BITS;
        if in_primary {
            counting_pass(
                (keys, values),
                (&mut alt_keys, &mut alt_values),
                shift,
                key_bits,
                modulus,
            );
        } else {
            counting_pass(
                (&alt_keys, &alt_values),
                (keys, values),
                shift,
                key_bits,
                modulus,
            );
        }
        in_primary = !in_primary;
    }
    if !in_primary {
        keys.copy_from_slice(&alt_keys);
        values.copy_from_slice(&alt_values);
    }
    Ok(())
}

/// One stable counting-sort pass on the digit at `shift` (of `key %
/// modulus` when `modulus` is not 0), as the shader runs it: a digit
/// histogram per tile of [`TILE`] pairs (`count_digits`), their exclusive
/// scan in (digit, tile) order (`scan_blocks`, `add_block_sums`), then each
/// tile's pairs placed in rounds of [`ROUND`] (`scatter`): a pair goes to
/// its (digit, tile) slot, advanced by the pairs of its digit in earlier
/// rounds and by those before it in its round.
fn counting_pass(
    (keys, values): (&[u32], &[u32]),
    (out_keys, out_values): (&mut [u32], &mut [u32]),
    shift: u32,
    key_bits: u32,
    modulus: u32,
) {
    let digit_of = |k: u32| digit(if modulus == 0 { k } else { k % modulus }, shift, key_bits);
    let bins = digit_mask(shift, key_bits) as usize + 1;
    let tiles = keys.len().div_ceil(TILE);

    // count_digits: histogram[d · tiles + tile].
    let mut histogram = vec![0usize; bins * tiles];
    for (tile, tile_keys) in keys.chunks(TILE).enumerate() {
        for &k in tile_keys {
            histogram[digit_of(k) * tiles + tile] += 1;
        }
    }

    // The scan: exclusive, digit-major over tiles.
    let mut running = 0;
    for entry in histogram.iter_mut() {
        let count = *entry;
        *entry = running;
        running += count;
    }

    // scatter, tile by tile, round by round.
    let mut next_slot = vec![0usize; bins];
    let mut rank_in_round = vec![0usize; bins];
    for (tile, (tile_keys, tile_values)) in keys.chunks(TILE).zip(values.chunks(TILE)).enumerate() {
        for (d, slot) in next_slot.iter_mut().enumerate() {
            *slot = histogram[d * tiles + tile];
        }
        for (round_keys, round_values) in tile_keys.chunks(ROUND).zip(tile_values.chunks(ROUND)) {
            // The shader counts a pair's rank by comparing its digit with
            // every digit of the round; counting in lane order is the same.
            rank_in_round.fill(0);
            for (&k, &v) in round_keys.iter().zip(round_values) {
                let d = digit_of(k);
                let dst = next_slot[d] + rank_in_round[d];
                out_keys[dst] = k;
                out_values[dst] = v;
                rank_in_round[d] += 1;
            }
            for (slot, &placed) in next_slot.iter_mut().zip(&rank_in_round) {
                *slot += placed;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn check_against_stable_std_sort(keys: Vec<u32>, key_bits: u32) {
        let values: Vec<u32> = (0..keys.len() as u32).collect();
        let mask = if key_bits == 32 {
            u32::MAX
        } else {
            (1 << key_bits) - 1
        };
        let mut expected: Vec<(u32, u32)> = keys.iter().copied().zip(values.clone()).collect();
        expected.sort_by_key(|&(k, _)| k & mask);
        let (mut k, mut v) = (keys, values);
        radix_sort_pairs(&mut k, &mut v, key_bits).unwrap();
        let got: Vec<(u32, u32)> = k.into_iter().zip(v).collect();
        assert_eq!(got, expected, "key_bits = {key_bits}");
    }

    #[test]
    fn matches_stable_sort_on_random_keys() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for key_bits in [1, 3, 4, 7, 12, 17, 31, 32] {
            for len in [0, 1, 2, 15, 1000] {
                let bound = if key_bits == 32 {
                    u32::MAX
                } else {
                    (1 << key_bits) - 1
                };
                let few: Vec<u32> = (0..len)
                    .map(|_| rng.random_range(0..=bound.min(3)))
                    .collect();
                let many: Vec<u32> = (0..len).map(|_| rng.random_range(0..=bound)).collect();
                check_against_stable_std_sort(few, key_bits);
                check_against_stable_std_sort(many, key_bits);
            }
        }
    }

    #[test]
    fn equal_keys_keep_input_order() {
        check_against_stable_std_sort(vec![5; 100], 3);
        check_against_stable_std_sort((0..100).rev().collect(), 7);
        check_against_stable_std_sort((0..100).collect(), 7);
    }

    #[test]
    fn bits_above_key_bits_do_not_affect_order() {
        // 0x10 and 0x00 share the low 4 bits: they must stay in input order.
        check_against_stable_std_sort(vec![0x13, 0x10, 0x02, 0x00, 0x11], 4);
        check_against_stable_std_sort(vec![0x313, 0x110, 0x202, 0x400, 0x111], 9);
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(radix_sort_pairs(&mut [1], &mut [1], 0).is_err());
        assert!(radix_sort_pairs(&mut [1], &mut [1], 33).is_err());
        assert!(radix_sort_pairs(&mut [1, 2], &mut [1], 8).is_err());
    }

    #[test]
    fn by_remainder_is_a_stable_sort_by_the_remainder() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for (modulus, key_bits) in [
            (1, 1),
            (3, 2),
            (16, 4),
            (17, 5),
            (256, 8),
            (1000, 10),
            (70_000, 17),
        ] {
            let keys: Vec<u32> = (0..3000).map(|_| rng.random_range(0..50_000)).collect();
            let values: Vec<u32> = (0..keys.len() as u32).collect();
            let mut expected: Vec<(u32, u32)> = keys.iter().copied().zip(values.clone()).collect();
            expected.sort_by_key(|&(k, _)| k % modulus);
            let (mut k, mut v) = (keys, values);
            radix_sort_pairs_by_remainder(&mut k, &mut v, key_bits, modulus).unwrap();
            let got: Vec<(u32, u32)> = k.into_iter().zip(v).collect();
            assert_eq!(got, expected, "modulus {modulus}");
        }
    }

    #[test]
    fn pass_count() {
        assert_eq!(passes(1), 1);
        assert_eq!(passes(8), 1);
        assert_eq!(passes(9), 2);
        assert_eq!(passes(16), 2);
        assert_eq!(passes(32), 4);
    }

    #[test]
    fn the_last_pass_is_narrower() {
        assert_eq!(digit_mask(0, 3), 0b111);
        assert_eq!(digit_mask(0, 12), 0xff);
        assert_eq!(digit_mask(8, 12), 0xf);
        assert_eq!(digit(0xabc, 8, 12), 0xa);
        assert_eq!(digit(0xfabc, 8, 12), 0xa);
    }

    #[test]
    fn many_tiles_and_rounds_stay_stable() {
        // Several tiles, a partial last round, few keys: every step of the
        // tile structure matters.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for len in [ROUND - 1, ROUND + 1, TILE, TILE + ROUND + 3, 3 * TILE + 7] {
            let keys: Vec<u32> = (0..len).map(|_| rng.random_range(0..5)).collect();
            check_against_stable_std_sort(keys, 3);
            let keys: Vec<u32> = (0..len).map(|_| rng.random_range(0..1 << 12)).collect();
            check_against_stable_std_sort(keys, 12);
        }
    }
}
