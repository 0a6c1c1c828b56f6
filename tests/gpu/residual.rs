//! The GPU residual layout (after the GPU segmented scan) against its CPU
//! twin (bit for bit: pure copies) and the f64 reference: blocks, counts,
//! empty blocks exactly zero whatever the buffers held before.

use crate::common::gpu_or_skip;
use crate::scan_case::{Case, Uploaded, record_scan, reference_sums, twin_sums};
use vlad::backend::gpu::GpuContext;
use vlad::backend::gpu::stages::residual::{ResidualJob, ResidualStage};
use vlad::backend::gpu::stages::segmented_scan::SegmentedScanStage;
use vlad::backend::gpu::stages::{BlockShape, Blocks};
use vlad::twins::residual as twin;

struct Stages {
    ctx: GpuContext,
    scan: SegmentedScanStage,
    residual: ResidualStage,
}

fn stages(ctx: GpuContext) -> Stages {
    let scan = SegmentedScanStage::new(&ctx).unwrap();
    let residual = ResidualStage::new(&ctx).unwrap();
    Stages {
        ctx,
        scan,
        residual,
    }
}

/// Scan then lay out on the GPU, into output buffers first filled with
/// NaN and junk counts (so every element must be written); read back.
fn gpu_blocks(s: &Stages, case: &Case, u8_input: bool, subtract: bool) -> (Vec<f32>, Vec<u32>) {
    let ctx = &s.ctx;
    let blocks = case.images * case.clusters;
    let uploaded = Uploaded::new(ctx, case, u8_input);
    let out = ctx
        .upload("blocks", &vec![f32::NAN; blocks * case.dim])
        .unwrap();
    let counts = ctx
        .upload("counts", &vec![0xdead_beef_u32; blocks])
        .unwrap();
    let mut encoder = ctx.encoder("residual test");
    let segments = record_scan(
        ctx,
        &s.scan,
        &mut encoder,
        case,
        &uploaded,
        u8_input,
        subtract,
    );
    s.residual
        .record(
            ctx,
            &mut encoder,
            &ResidualJob {
                segments: &segments,
                out: Blocks {
                    shape: BlockShape {
                        images: case.images as u32,
                        clusters: case.clusters as u32,
                        dim: case.dim as u32,
                    },
                    values: &out,
                    counts: &counts,
                },
            },
        )
        .unwrap();
    ctx.submit_and_wait("residual test", encoder).unwrap();
    (
        ctx.read_back("blocks", &out, 0, blocks * case.dim).unwrap(),
        ctx.read_back("counts", &counts, 0, blocks).unwrap(),
    )
}

fn check(s: &Stages, case: &Case, u8_input: bool, subtract: bool) {
    let what = format!(
        "T={} K={} F={} rows={} u8={u8_input} subtract={subtract}",
        case.images,
        case.clusters,
        case.dim,
        case.rows()
    );
    let (blocks, counts) = gpu_blocks(s, case, u8_input, subtract);
    let segments = twin_sums(case, u8_input, subtract);
    let (twin_blocks, twin_counts) = twin::layout(&segments, case.images, case.clusters).unwrap();
    let (want, scale, want_counts) = reference_sums(case, u8_input, subtract);

    assert_eq!(counts, twin_counts, "{what}: counts vs twin");
    let want_counts: Vec<u32> = want_counts.iter().map(|&n| n as u32).collect();
    assert_eq!(counts, want_counts, "{what}: counts vs reference");
    let dim = case.dim;
    for (i, (&g, &c)) in blocks.iter().zip(&twin_blocks).enumerate() {
        let block = i / dim;
        assert_eq!(
            g.to_bits(),
            c.to_bits(),
            "{what}: element {i}: gpu {g} twin {c}"
        );
        if counts[block] == 0 {
            assert_eq!(g.to_bits(), 0, "{what}: empty block {block} not exactly +0");
        }
        let err = (g as f64 - want[i]).abs();
        assert!(
            err <= 1e-5 * scale[block],
            "{what}: element {i}: error {err}"
        );
    }
}

#[test]
fn random_images_every_width_and_input_kind() {
    let s = stages(gpu_or_skip!());
    let mut seed = 100;
    for dim in [1, 3, 37, 128, 200] {
        // Empty images, and 7 of 12 clusters used: many empty blocks.
        let per_image = [60, 0, 250, 1, 33];
        for (u8_input, subtract) in [(false, true), (true, true), (false, false), (true, false)] {
            seed += 1;
            check(
                &s,
                &Case::random(seed, &per_image, 12, 7, dim),
                u8_input,
                subtract,
            );
        }
    }
}

#[test]
fn no_rows_one_row_and_empty_images() {
    let s = stages(gpu_or_skip!());
    // Leave other values in the scan's scratch first: empty blocks must not
    // pick them up.
    check(&s, &Case::random(2, &[200, 200, 200], 5, 5, 7), false, true);
    for per_image in [&[0usize][..], &[0, 0, 0], &[1], &[0, 0, 1, 0]] {
        let case = Case::random(3, per_image, 5, 5, 7);
        check(&s, &case, false, true);
        check(&s, &case, true, false);
    }
    // No images at all: nothing to write, nothing recorded.
    let case = Case::random(4, &[], 5, 5, 7);
    let (blocks, counts) = gpu_blocks(&s, &case, false, true);
    assert!(blocks.is_empty() && counts.is_empty());
}

#[test]
fn big_runs_and_many_small_runs() {
    let s = stages(gpu_or_skip!());
    // One 50,000-row block, then 2,000 clusters of about one row each.
    check(&s, &Case::random(8, &[50_000], 4, 1, 3), false, true);
    check(
        &s,
        &Case::random(9, &[700, 1300], 2000, 2000, 5),
        true,
        true,
    );
}

#[test]
fn same_input_same_bits() {
    let s = stages(gpu_or_skip!());
    let case = Case::random(31, &[500, 0, 1200], 16, 11, 37);
    let first = gpu_blocks(&s, &case, false, true);
    gpu_blocks(&s, &Case::random(32, &[4000], 3, 3, 64), true, false);
    let second = gpu_blocks(&s, &case, false, true);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&first.0), bits(&second.0));
    assert_eq!(first.1, second.1);
}

#[test]
fn mismatched_shapes_are_errors() {
    let s = stages(gpu_or_skip!());
    let ctx = &s.ctx;
    let case = Case::random(41, &[10, 10], 4, 4, 3);
    let uploaded = Uploaded::new(ctx, &case, false);
    let mut encoder = ctx.encoder("mismatch");
    let segments = record_scan(ctx, &s.scan, &mut encoder, &case, &uploaded, false, true);
    let out = ctx.storage_buffer("blocks", 2 * 4 * 3 * 4).unwrap();
    let counts = ctx.storage_buffer("counts", 2 * 4 * 4).unwrap();
    let job = |images, dim| ResidualJob {
        segments: &segments,
        out: Blocks {
            shape: BlockShape {
                images,
                clusters: 4,
                dim,
            },
            values: &out,
            counts: &counts,
        },
    };
    assert!(s.residual.record(ctx, &mut encoder, &job(3, 3)).is_err());
    assert!(s.residual.record(ctx, &mut encoder, &job(2, 4)).is_err());
    let small = ctx.storage_buffer("small", 16).unwrap();
    let fits = job(2, 3);
    let too_small = ResidualJob {
        out: Blocks {
            values: &small,
            ..fits.out
        },
        ..fits
    };
    assert!(s.residual.record(ctx, &mut encoder, &too_small).is_err());
    s.residual.record(ctx, &mut encoder, &job(2, 3)).unwrap();
    ctx.submit_and_wait("mismatch", encoder).unwrap();
}
