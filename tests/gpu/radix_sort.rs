//! The GPU radix sort against its CPU twin and a stable std sort: values
//! must follow their keys, equal keys must keep their input order.

use crate::common::gpu_or_skip;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vlad::backend::gpu::GpuContext;
use vlad::backend::gpu::stages::radix_sort::{RadixSortStage, SortJob, SortedIn, TILE};
use vlad::twins::radix_sort::{radix_sort_pairs, radix_sort_pairs_by_remainder};

/// Sort on the GPU (by `key % modulus` when `modulus` is not 0); returns
/// the sorted (keys, values).
fn gpu_sort_by(
    ctx: &GpuContext,
    stage: &RadixSortStage,
    keys: &[u32],
    values: &[u32],
    key_bits: u32,
    modulus: u32,
) -> (Vec<u32>, Vec<u32>) {
    let len = keys.len();
    let k = ctx.upload("keys", keys).unwrap();
    let v = ctx.upload("values", values).unwrap();
    // Garbage in the ping-pong partners: the sort must not depend on them.
    let junk = vec![0xdead_beefu32; len.max(1)];
    let alt_k = ctx.upload("alt keys", &junk).unwrap();
    let alt_v = ctx.upload("alt values", &junk).unwrap();
    let mut encoder = ctx.encoder("sort");
    let job = SortJob {
        keys: &k,
        values: &v,
        alt_keys: &alt_k,
        alt_values: &alt_v,
        len: len as u32,
        key_bits,
        modulus,
    };
    let sorted_in = stage.record(ctx, &mut encoder, &job).unwrap();
    ctx.submit_and_wait("sort", encoder).unwrap();
    let (rk, rv) = match sorted_in {
        SortedIn::Primary => (&k, &v),
        SortedIn::Alternate => (&alt_k, &alt_v),
    };
    (
        ctx.read_back("sorted keys", rk, 0, len).unwrap(),
        ctx.read_back("sorted values", rv, 0, len).unwrap(),
    )
}

fn gpu_sort(
    ctx: &GpuContext,
    stage: &RadixSortStage,
    keys: &[u32],
    values: &[u32],
    key_bits: u32,
) -> (Vec<u32>, Vec<u32>) {
    gpu_sort_by(ctx, stage, keys, values, key_bits, 0)
}

fn mask(key_bits: u32) -> u32 {
    if key_bits == 32 {
        u32::MAX
    } else {
        (1 << key_bits) - 1
    }
}

/// Sort on the GPU and compare with the CPU twin and `sort_by_key`.
fn check(ctx: &GpuContext, stage: &RadixSortStage, keys: &[u32], key_bits: u32, what: &str) {
    let values: Vec<u32> = (0..keys.len() as u32).map(|i| i ^ 0x5a5a_0000).collect();
    let (gpu_keys, gpu_values) = gpu_sort(ctx, stage, keys, &values, key_bits);

    let mut stable: Vec<(u32, u32)> = keys.iter().copied().zip(values.iter().copied()).collect();
    stable.sort_by_key(|&(k, _)| k & mask(key_bits));
    let (want_keys, want_values): (Vec<u32>, Vec<u32>) = stable.into_iter().unzip();

    let (mut cpu_keys, mut cpu_values) = (keys.to_vec(), values.clone());
    radix_sort_pairs(&mut cpu_keys, &mut cpu_values, key_bits).unwrap();
    assert_eq!(cpu_keys, want_keys, "{what}: CPU twin keys");
    assert_eq!(cpu_values, want_values, "{what}: CPU twin values");

    if let Some(i) = (0..keys.len()).find(|&i| gpu_keys[i] != want_keys[i]) {
        panic!(
            "{what} (len {}, key_bits {key_bits}): first wrong key at {i}: got {} want {}",
            keys.len(),
            gpu_keys[i],
            want_keys[i]
        );
    }
    if let Some(i) = (0..keys.len()).find(|&i| gpu_values[i] != want_values[i]) {
        panic!(
            "{what} (len {}, key_bits {key_bits}): first wrong value at {i}: got {} want {} \
             (key {}): not stable",
            keys.len(),
            gpu_values[i],
            want_values[i],
            want_keys[i]
        );
    }
}

fn random_keys(rng: &mut ChaCha8Rng, len: usize, key_bits: u32, distinct: Option<u32>) -> Vec<u32> {
    let top = mask(key_bits);
    match distinct {
        // A few distinct keys spread over the whole key range.
        Some(n) => {
            let pool: Vec<u32> = (0..n).map(|_| rng.random_range(0..=top)).collect();
            (0..len)
                .map(|_| pool[rng.random_range(0..pool.len())])
                .collect()
        }
        None => (0..len).map(|_| rng.random_range(0..=top)).collect(),
    }
}

#[test]
fn tiny_and_structured_inputs() {
    let ctx = gpu_or_skip!();
    let stage = RadixSortStage::new(&ctx).unwrap();
    check(&ctx, &stage, &[], 8, "empty");
    check(&ctx, &stage, &[3], 2, "one pair");
    check(&ctx, &stage, &[1, 0], 1, "two pairs");
    for len in [5, 127, 2047, 2049, 5000] {
        check(&ctx, &stage, &vec![9u32; len], 7, "all keys equal");
        let ascending: Vec<u32> = (0..len as u32).collect();
        check(&ctx, &stage, &ascending, 13, "already sorted");
        let descending: Vec<u32> = (0..len as u32).rev().collect();
        check(&ctx, &stage, &descending, 13, "reversed");
    }
}

#[test]
fn random_keys_every_width() {
    let ctx = gpu_or_skip!();
    let stage = RadixSortStage::new(&ctx).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    for key_bits in [1, 7, 8, 12, 16, 32] {
        for len in [2, 100, 2048, 3 * 2048 + 17] {
            let few = random_keys(&mut rng, len, key_bits, Some(3));
            check(&ctx, &stage, &few, key_bits, "few distinct keys");
            let many = random_keys(&mut rng, len, key_bits, None);
            check(&ctx, &stage, &many, key_bits, "many distinct keys");
        }
    }
}

#[test]
fn bits_above_key_bits_are_ignored_stably() {
    let ctx = gpu_or_skip!();
    let stage = RadixSortStage::new(&ctx).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let keys: Vec<u32> = (0..3000).map(|_| rng.random()).collect();
    check(&ctx, &stage, &keys, 6, "junk above key_bits");
}

#[test]
fn histogram_scan_over_many_workgroups() {
    let ctx = gpu_or_skip!();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // Default scan blocks of 1024 entries: 256 digits × 69 tiles (the
    // first pass) and 64 × 69 (the second) take several blocks and a
    // second level.
    let stage = RadixSortStage::new(&ctx).unwrap();
    let len = 68 * TILE as usize + 1000;
    let keys = random_keys(&mut rng, len, 14, None);
    check(&ctx, &stage, &keys, 14, "two-level scan");

    // Tiny scan workgroups (8 threads × 4 entries): three and more levels
    // on small inputs, and a stage reused across sizes (its scratch grows).
    let deep = RadixSortStage::with_scan_workgroup(&ctx, 8).unwrap();
    for len in [100, 2049, 40 * TILE as usize + 3, 70 * TILE as usize] {
        let keys = random_keys(&mut rng, len, 12, None);
        check(&ctx, &deep, &keys, 12, "deep scan hierarchy");
        let keys = random_keys(&mut rng, len, 9, Some(5));
        check(&ctx, &deep, &keys, 9, "deep scan hierarchy, few keys");
    }
}

#[test]
fn two_dimensional_dispatch() {
    let ctx = gpu_or_skip!();
    // 7 tiles, at most 3 workgroups per dimension: a 3 × 3 grid with two
    // workgroups past the end (and 2-D scans of the histograms).
    let stage = RadixSortStage::with_scan_workgroup(&ctx, 8)
        .unwrap()
        .with_max_workgroups_per_dim(3);
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let keys = random_keys(&mut rng, 6 * TILE as usize + 5, 10, None);
    check(&ctx, &stage, &keys, 10, "2-D dispatch");
}

#[test]
fn where_the_result_lands_follows_the_pass_count() {
    let ctx = gpu_or_skip!();
    let stage = RadixSortStage::new(&ctx).unwrap();
    let buf = ctx.upload("k", &[1u32, 0, 1, 0]).unwrap();
    for (key_bits, want) in [
        // 8-bit digits: one pass up to 8 bits, two up to 16, ...
        (4, SortedIn::Alternate),
        (8, SortedIn::Alternate),
        (12, SortedIn::Primary),
        (16, SortedIn::Primary),
        (24, SortedIn::Alternate),
        (32, SortedIn::Primary),
    ] {
        let (k, v, ak, av) = (
            ctx.upload("k", &[1u32, 0, 1, 0]).unwrap(),
            ctx.upload("v", &[0u32, 1, 2, 3]).unwrap(),
            ctx.upload("ak", &[0u32; 4]).unwrap(),
            ctx.upload("av", &[0u32; 4]).unwrap(),
        );
        let mut encoder = ctx.encoder("sort");
        let job = SortJob {
            keys: &k,
            values: &v,
            alt_keys: &ak,
            alt_values: &av,
            len: 4,
            key_bits,
            modulus: 0,
        };
        assert_eq!(stage.record(&ctx, &mut encoder, &job).unwrap(), want);
        ctx.submit_and_wait("sort", encoder).unwrap();
    }
    // Bad arguments are errors, not panics.
    let mut encoder = ctx.encoder("bad");
    let job = |key_bits, len| SortJob {
        keys: &buf,
        values: &buf,
        alt_keys: &buf,
        alt_values: &buf,
        len,
        key_bits,
        modulus: 0,
    };
    assert!(stage.record(&ctx, &mut encoder, &job(0, 4)).is_err());
    assert!(stage.record(&ctx, &mut encoder, &job(33, 4)).is_err());
    assert!(
        stage.record(&ctx, &mut encoder, &job(8, 5)).is_err(),
        "buffers too small"
    );
}

/// The pipeline's sort: keys `image · K + label` over rows in image order,
/// sorted by label alone (`chunking::sort_by_label`). Same pairs as the CPU
/// twin and a stable sort by `key % K`, and every run of equal keys
/// contiguous (what the segmented scan needs), across many tiles.
#[test]
fn by_label_leaves_equal_keys_contiguous() {
    let ctx = gpu_or_skip!();
    let stage = RadixSortStage::new(&ctx).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    for clusters in [1usize, 7, 64, 255, 256, 257, 1000, 65_536] {
        let (key_bits, modulus) = vlad::backend::gpu::chunking::sort_by_label(clusters);
        let mut keys = Vec::new();
        for image in 0..40u32 {
            let rows = rng.random_range(0..3 * TILE as usize / 20);
            for _ in 0..rows {
                let label = rng.random_range(0..clusters as u32);
                keys.push(image * clusters as u32 + label);
            }
        }
        let values: Vec<u32> = (0..keys.len() as u32).collect();
        let (gpu_keys, gpu_values) = gpu_sort_by(&ctx, &stage, &keys, &values, key_bits, modulus);

        let (mut cpu_keys, mut cpu_values) = (keys.clone(), values.clone());
        radix_sort_pairs_by_remainder(&mut cpu_keys, &mut cpu_values, key_bits, modulus).unwrap();
        let mut stable: Vec<(u32, u32)> = keys.iter().copied().zip(values).collect();
        stable.sort_by_key(|&(k, _)| k % modulus);
        let (want_keys, want_values): (Vec<u32>, Vec<u32>) = stable.into_iter().unzip();
        assert_eq!(cpu_keys, want_keys, "K={clusters}: twin keys");
        assert_eq!(cpu_values, want_values, "K={clusters}: twin values");
        assert_eq!(gpu_keys, want_keys, "K={clusters}: gpu keys");
        assert_eq!(gpu_values, want_values, "K={clusters}: gpu values");

        let mut seen = std::collections::HashSet::new();
        for (i, &key) in gpu_keys.iter().enumerate() {
            if i == 0 || gpu_keys[i - 1] != key {
                assert!(seen.insert(key), "K={clusters}: key {key} in two runs");
            }
        }
        assert!(keys.len() > TILE as usize, "K={clusters}: several tiles");
    }
}
