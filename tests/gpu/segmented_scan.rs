//! The GPU segmented scan against its CPU twin (bit for bit: same
//! additions, same order) and against the f64 reference (SPEC §4's bound).

use crate::common::gpu_or_skip;
use crate::scan_case::{Case, gpu_sums, reference_sums, twin_sums};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vlad::backend::gpu::GpuContext;
use vlad::backend::gpu::stages::Descriptors;
use vlad::backend::gpu::stages::segmented_scan::{ScanJob, SegmentedScanStage};
use vlad::twins::segmented_scan::{self as twin, CHUNK_ROWS};

/// The GPU's sums equal the twin's bit for bit on every present key, and
/// meet SPEC §4 against the f64 reference.
fn check(
    ctx: &GpuContext,
    stage: &SegmentedScanStage,
    case: &Case,
    u8_input: bool,
    subtract: bool,
) {
    let what = format!(
        "T={} K={} F={} rows={} u8={u8_input} subtract={subtract}",
        case.images,
        case.clusters,
        case.dim,
        case.rows()
    );
    let dim = case.dim;
    let gpu = gpu_sums(ctx, stage, case, u8_input, subtract);
    let cpu = twin_sums(case, u8_input, subtract);
    let (want, scale, counts) = reference_sums(case, u8_input, subtract);

    let present = counts.iter().filter(|&&n| n > 0).count();
    assert_eq!(cpu.keys.len(), present, "{what}: runs");
    for (run, &key) in cpu.keys.iter().enumerate() {
        let key = key as usize;
        assert_eq!(
            cpu.counts[run] as u64, counts[key],
            "{what}: count of key {key}"
        );
        for f in 0..dim {
            let (g, c) = (gpu[key * dim + f], cpu.sums[run * dim + f]);
            assert_eq!(
                g.to_bits(),
                c.to_bits(),
                "{what}: key {key} f {f}: gpu {g} twin {c}"
            );
            let err = (g as f64 - want[key * dim + f]).abs();
            let bound = 1e-5 * scale[key];
            assert!(
                err <= bound,
                "{what}: key {key} f {f}: error {err} > {bound}"
            );
        }
    }
}

fn with_stage(ctx: GpuContext) -> (GpuContext, SegmentedScanStage) {
    let stage = SegmentedScanStage::new(&ctx).unwrap();
    (ctx, stage)
}

#[test]
fn random_images_every_width_and_input_kind() {
    let (ctx, stage) = with_stage(gpu_or_skip!());
    let mut seed = 0;
    for dim in [1, 3, 37, 128, 200] {
        // Ragged images, some empty; 6 of 9 clusters used.
        let per_image = [45, 0, 300, 1, 77, 0, 129];
        for (u8_input, subtract) in [(false, true), (true, true), (false, false), (true, false)] {
            seed += 1;
            let case = Case::random(seed, &per_image, 9, 6, dim);
            check(&ctx, &stage, &case, u8_input, subtract);
        }
    }
}

#[test]
fn no_rows_and_one_row() {
    let (ctx, stage) = with_stage(gpu_or_skip!());
    for per_image in [&[0usize, 0][..], &[1], &[0, 1, 0]] {
        let case = Case::random(7, per_image, 4, 4, 5);
        check(&ctx, &stage, &case, false, true);
        check(&ctx, &stage, &case, true, false);
    }
}

#[test]
fn run_lengths_around_the_leaf_size() {
    let (ctx, stage) = with_stage(gpu_or_skip!());
    // Single runs of every length near multiples of the leaf, and mixes.
    for rows in [
        CHUNK_ROWS - 1,
        CHUNK_ROWS,
        CHUNK_ROWS + 1,
        2 * CHUNK_ROWS + 5,
        16 * CHUNK_ROWS,
        16 * CHUNK_ROWS + 1,
        1000,
    ] {
        let one_run = Case::random(rows as u64, &[rows], 3, 1, 3);
        check(&ctx, &stage, &one_run, false, true);
        let three_runs = Case::random(rows as u64 + 1, &[rows], 3, 3, 3);
        check(&ctx, &stage, &three_runs, false, true);
    }
}

#[test]
fn one_run_across_a_multi_level_tree() {
    let (ctx, stage) = with_stage(gpu_or_skip!());
    // 100,003 rows of one key: 3,126 leaves and three tree levels above.
    let rows = 100_003;
    assert_eq!(twin::tree_levels(rows).len(), 4);
    let case = Case::random(11, &[rows], 1, 1, 2);
    check(&ctx, &stage, &case, false, true);
    check(&ctx, &stage, &case, true, false);
    // The same rows split between a few keys, the cuts falling anywhere.
    let case = Case::random(12, &[40_000, 60_003], 3, 3, 2);
    check(&ctx, &stage, &case, false, true);
}

#[test]
fn thousands_of_one_row_runs() {
    let (ctx, stage) = with_stage(gpu_or_skip!());
    // One image, 5,000 clusters, each label once: 5,000 runs of one row.
    let (clusters, dim) = (5000, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let bytes: Vec<u8> = (0..clusters * dim).map(|_| rng.random()).collect();
    let centroids = (0..clusters * dim)
        .map(|i| (i % 251) as f32 * 0.5)
        .collect();
    let labels: Vec<u32> = (0..clusters as u32).rev().collect();
    let case = Case::build(
        1,
        clusters,
        dim,
        bytes,
        centroids,
        vec![0, clusters],
        labels,
    );
    check(&ctx, &stage, &case, false, true);
    check(&ctx, &stage, &case, true, true);
    // And two rows per run, every run split across the leaves' edges.
    let case = Case::random(6, &[3001, 2999], 1500, 1500, 3);
    check(&ctx, &stage, &case, false, true);
}

#[test]
fn a_million_rows_meet_the_accuracy_bound() {
    let (ctx, stage) = with_stage(gpu_or_skip!());
    // 1.0 plus a small positive part: a sequential f32 sum drops most of
    // the small parts once the total is large (the ulp exceeds them).
    let rows = 1_000_000;
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let values: Vec<f32> = (0..rows)
        .map(|_| 1.0 + rng.random_range(0.0..1e-3f32))
        .collect();
    let exact: f64 = values.iter().map(|&v| v as f64).sum();
    let scale: f64 = values.iter().map(|&v| (v as f64).abs()).sum();
    let bound = 1e-5 * scale;
    let sequential: f32 = values.iter().sum();
    assert!(
        (sequential as f64 - exact).abs() > bound,
        "the data should defeat a sequential sum: error {} vs bound {bound}",
        (sequential as f64 - exact).abs()
    );

    let descriptors = ctx.upload("descriptors", &values).unwrap();
    let keys = ctx.upload("keys", &vec![0u32; rows]).unwrap();
    let order: Vec<u32> = (0..rows as u32).collect();
    let rows_buffer = ctx.upload("rows", &order).unwrap();
    let centroids = ctx.upload("centroids", &[0.0f32]).unwrap();
    let mut encoder = ctx.encoder("million");
    let started = std::time::Instant::now();
    let sums = stage
        .record(
            &ctx,
            &mut encoder,
            &ScanJob {
                sorted_keys: &keys,
                sorted_rows: &rows_buffer,
                input: Descriptors {
                    buffer: &descriptors,
                    u8_input: false,
                    rows: rows as u32,
                    dim: 1,
                },
                centroids: &centroids,
                subtract_centroid: true,
                clusters: 1,
                images: 1,
            },
        )
        .unwrap();
    ctx.submit_and_wait("million", encoder).unwrap();
    eprintln!(
        "a million rows, F = 1 on {}: {:?} (not GPU speed when software)",
        ctx.adapter_name(),
        started.elapsed()
    );
    let got: Vec<f32> = ctx.read_back("sum", &sums.sums, 0, 1).unwrap();
    let err = (got[0] as f64 - exact).abs();
    assert!(err <= bound, "error {err} > bound {bound}");
    // The documented bound, γ₆₀ · Σ|x|, holds too.
    assert!(err <= 3.6e-6 * scale, "error {err} above γ₆₀ · Σ|x|");
    let zeros = vec![0u32; rows];
    let twin = twin::segmented_sums(&zeros, &order, &values, 1, 1, None).unwrap();
    assert_eq!(got[0].to_bits(), twin.sums[0].to_bits());
}

#[test]
fn same_input_same_bits() {
    let (ctx, stage) = with_stage(gpu_or_skip!());
    let case = Case::random(21, &[2000, 17, 900], 8, 8, 37);
    let first = gpu_sums(&ctx, &stage, &case, false, true);
    // Something else in between, so the scratch holds other values.
    gpu_sums(
        &ctx,
        &stage,
        &Case::random(22, &[3000], 2, 2, 64),
        true,
        false,
    );
    let second = gpu_sums(&ctx, &stage, &case, false, true);
    let cpu = twin_sums(&case, false, true);
    for &key in &cpu.keys {
        let at = key as usize * case.dim;
        for f in 0..case.dim {
            assert_eq!(first[at + f].to_bits(), second[at + f].to_bits());
        }
    }
}
