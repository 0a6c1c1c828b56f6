//! The soft-assignment and `rn` WGSL stages against their CPU twins, which
//! compute the same terms in the same order:
//!
//! * logits (`W·v + b`) and aggregation sums within `2(n+1)·ε·Σ|terms|`
//!   (n roundings on a term's way into the sum): the twin fuses every multiply-add as WGSL's `fma` asks, but
//!   a driver may evaluate `fma` unfused (lavapipe does: results differ by
//!   an ulp or so), so bit equality is not portable; soft counts (plain
//!   additions) bit for bit;
//! * softmax weights, `mass` and unit residuals within [`ULPS`] ulp (the
//!   device's `exp`, division and square root are not correctly rounded:
//!   Vulkan allows a few ulp each); labels equal.
//!
//! f32 and u8 input, ragged images with empty ones, K and F not multiples
//! of any tile.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vlad::backend::gpu::GpuContext;
use vlad::backend::gpu::stages::soft_aggregate::{SoftAggregateJob, SoftAggregateStage};
use vlad::backend::gpu::stages::soft_logits::{SoftLogitsJob, SoftLogitsStage};
use vlad::backend::gpu::stages::unit_residual::{UnitResidualJob, UnitResidualStage};
use vlad::backend::gpu::stages::{BlockShape, Blocks, Descriptors};
use vlad::twins::{
    soft_aggregate as soft_aggregate_tile, soft_logits as soft_logits_tile, unit_residual,
};

use crate::common::gpu_or_skip;

/// How far (in ulp of the larger magnitude) a result that went through the
/// device's `exp`, division or square root may be from the twin's.
const ULPS: f32 = 64.0;

/// `|a − b| ≤ ULPS · ulp(max(|a|, |b|))`, with a floor at the smallest
/// normal number (weights that underflow).
fn close(a: f32, b: f32) -> bool {
    let scale = a.abs().max(b.abs()).max(f32::MIN_POSITIVE);
    (a - b).abs() <= ULPS * scale * f32::EPSILON
}

/// Rows (as the device holds them: f32, or u8 bytes), CSR offsets with
/// empty images, centroids, W and b.
struct Data {
    rows: Vec<f32>,
    bytes: Vec<u8>,
    offsets: Vec<usize>,
    dim: usize,
    centroids: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
}

fn data(seed: u64, dim: usize, k: usize, u8_input: bool) -> Data {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let sizes = [0usize, 37, 1, 0, 70, 5, 0];
    let mut offsets = vec![0];
    for s in sizes {
        offsets.push(offsets[offsets.len() - 1] + s);
    }
    let n = offsets[offsets.len() - 1];
    let scale = if u8_input { 255.0 } else { 1.0 };
    let bytes: Vec<u8> = (0..n * dim).map(|_| rng.random::<u8>()).collect();
    let rows: Vec<f32> = if u8_input {
        bytes.iter().map(|&x| x as f32).collect()
    } else {
        (0..n * dim)
            .map(|_| rng.random::<f32>() * 2.0 - 1.0)
            .collect()
    };
    let centroids = (0..k * dim).map(|_| rng.random::<f32>() * scale).collect();
    let w = (0..k * dim)
        .map(|_| (rng.random::<f32>() - 0.5) * 4.0 / scale)
        .collect();
    let b = (0..k).map(|_| rng.random::<f32>() - 0.5).collect();
    Data {
        rows,
        bytes,
        offsets,
        dim,
        centroids,
        w,
        b,
    }
}

fn upload_rows(ctx: &GpuContext, d: &Data, u8_input: bool) -> wgpu::Buffer {
    if u8_input {
        ctx.upload("rows", &d.bytes).unwrap()
    } else {
        ctx.upload("rows", &d.rows).unwrap()
    }
}

/// Logits (and, with `softmax`, weights, labels and under `rn` the
/// unscaled weights) on the device.
fn gpu_logits(
    ctx: &GpuContext,
    d: &Data,
    u8_input: bool,
    softmax: bool,
    rn: bool,
) -> (Vec<f32>, Vec<u32>, Vec<f32>) {
    let stage = SoftLogitsStage::new();
    let n = d.rows.len() / d.dim;
    let k = d.b.len();
    let rows = upload_rows(ctx, d, u8_input);
    let w = ctx.upload("W", &d.w).unwrap();
    let b = ctx.upload("b", &d.b).unwrap();
    let c = ctx.upload("C", &d.centroids).unwrap();
    let weights = ctx.upload("weights", &vec![f32::NAN; n * k]).unwrap();
    let labels = ctx.upload("labels", &vec![u32::MAX; n]).unwrap();
    let unscaled = ctx.upload("unscaled", &vec![f32::NAN; n * k]).unwrap();
    let job = SoftLogitsJob {
        input: Descriptors {
            buffer: &rows,
            u8_input,
            rows: n as u32,
            dim: d.dim as u32,
        },
        soft_weights: &w,
        soft_bias: &b,
        centroids: &c,
        residual_norm: rn,
        clusters: k as u32,
        weights: &weights,
        labels: &labels,
        unscaled: &unscaled,
    };
    let mut encoder = ctx.encoder("soft logits test");
    if softmax {
        stage.record(ctx, &mut encoder, &job).unwrap();
    } else {
        stage.record_logits(ctx, &mut encoder, &job).unwrap();
    }
    ctx.submit_and_wait("soft logits test", encoder).unwrap();
    (
        ctx.read_back("weights", &weights, 0, n * k).unwrap(),
        ctx.read_back("labels", &labels, 0, n).unwrap(),
        ctx.read_back("unscaled", &unscaled, 0, n * k).unwrap(),
    )
}

#[test]
fn logits_match_the_twin() {
    let ctx = gpu_or_skip!();
    // K across the three tile shapes; F not a multiple of the chunk.
    for (seed, dim, k, u8_input) in [(1, 13, 5, false), (2, 20, 40, true), (3, 9, 70, false)] {
        let d = data(seed, dim, k, u8_input);
        let (got, _, _) = gpu_logits(&ctx, &d, u8_input, false, false);
        let want = soft_logits_tile::logits(&d.rows, dim, &d.w, &d.b);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let (row, c) = (i / k, i % k);
            let terms: f32 = (0..dim)
                .map(|f| (d.rows[row * dim + f] * d.w[c * dim + f]).abs())
                .sum::<f32>()
                + d.b[c].abs();
            let bound = 2.0 * (8 + dim.div_ceil(8) + 1) as f32 * f32::EPSILON * terms;
            assert!(
                (g - w).abs() <= bound,
                "F={dim} K={k} u8={u8_input} [{i}]: {g} vs {w} (bound {bound:e})"
            );
        }
    }
}

#[test]
fn softmax_matches_the_twin() {
    let ctx = gpu_or_skip!();
    for (seed, dim, k, u8_input, rn) in [
        (4, 13, 5, false, false),
        (5, 20, 40, true, true),
        (6, 9, 70, false, true),
        (7, 16, 33, true, false),
    ] {
        let d = data(seed, dim, k, u8_input);
        let (got, labels, got_unscaled) = gpu_logits(&ctx, &d, u8_input, true, rn);
        let mut want = soft_logits_tile::logits(&d.rows, dim, &d.w, &d.b);
        let (want_labels, want_unscaled) = soft_logits_tile::softmax(
            &mut want,
            k,
            rn.then_some((d.rows.as_slice(), dim, d.centroids.as_slice())),
        );
        assert_eq!(labels, want_labels, "F={dim} K={k} labels");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                close(*g, *w),
                "F={dim} K={k} u8={u8_input} rn={rn} [{i}]: {g} vs {w}"
            );
        }
        for (i, (g, w)) in got_unscaled.iter().zip(&want_unscaled).enumerate() {
            assert!(close(*g, *w), "F={dim} K={k} unscaled [{i}]: {g} vs {w}");
        }
        if rn {
            assert_eq!(want_unscaled.len(), got_unscaled.len());
        }
    }
}

/// The twin's weights and the weights the soft counts sum (the unscaled
/// ones under `rn`), for the aggregation tests.
fn twin_weights(d: &Data, rn: bool) -> (Vec<f32>, Vec<f32>) {
    let mut w = soft_logits_tile::logits(&d.rows, d.dim, &d.w, &d.b);
    let k = d.b.len();
    let (_, unscaled) = soft_logits_tile::softmax(
        &mut w,
        k,
        rn.then_some((d.rows.as_slice(), d.dim, d.centroids.as_slice())),
    );
    let mass_weights = if rn { unscaled } else { w.clone() };
    (w, mass_weights)
}

#[test]
fn aggregate_matches_the_twin() {
    let ctx = gpu_or_skip!();
    let stage = SoftAggregateStage::new(&ctx).unwrap();
    for (seed, dim, k, u8_input, rn) in [
        (8, 13, 5, false, false),
        (9, 70, 9, true, true),
        (10, 64, 16, false, true),
        // F > 4·64: several feature tiles per image.
        (13, 300, 3, true, false),
    ] {
        let d = data(seed, dim, k, u8_input);
        let (weights, mass_weights) = twin_weights(&d, rn);
        let images = d.offsets.len() - 1;
        let n = d.rows.len() / dim;
        let local: Vec<u32> = d.offsets.iter().map(|&o| o as u32).collect();
        let rows = upload_rows(&ctx, &d, u8_input);
        let wbuf = ctx.upload("weights", &weights).unwrap();
        let mbuf = ctx.upload("mass weights", &mass_weights).unwrap();
        let c = ctx.upload("C", &d.centroids).unwrap();
        let offsets = ctx.upload("offsets", &local).unwrap();
        let blocks = ctx
            .upload("blocks", &vec![f32::NAN; images * k * dim])
            .unwrap();
        let mass = ctx.upload("mass", &vec![f32::NAN; images * k]).unwrap();
        let mut encoder = ctx.encoder("soft aggregate test");
        let job = SoftAggregateJob {
            input: Descriptors {
                buffer: &rows,
                u8_input,
                rows: n as u32,
                dim: dim as u32,
            },
            weights: &wbuf,
            mass_weights: &mbuf,
            centroids: &c,
            image_offsets: &offsets,
            clusters: k as u32,
            images: images as u32,
            blocks: &blocks,
            mass: &mass,
        };
        stage.record(&ctx, &mut encoder, &job).unwrap();
        ctx.submit_and_wait("soft aggregate test", encoder).unwrap();
        let got = ctx
            .read_back::<f32>("blocks", &blocks, 0, images * k * dim)
            .unwrap();
        let got_mass = ctx.read_back::<f32>("mass", &mass, 0, images * k).unwrap();
        let (want, want_mass) = soft_aggregate_tile::aggregate(
            &d.rows,
            dim,
            &weights,
            &mass_weights,
            &d.centroids,
            &d.offsets,
        );
        let what = format!("F={dim} K={k} u8={u8_input} rn={rn}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let (t, c, f) = (i / (k * dim), (i / dim) % k, i % dim);
            let image = d.offsets[t]..d.offsets[t + 1];
            let terms: f32 = image
                .clone()
                .map(|l| (weights[l * k + c] * d.rows[l * dim + f]).abs())
                .sum::<f32>()
                + image.clone().map(|l| weights[l * k + c]).sum::<f32>()
                    * d.centroids[c * dim + f].abs();
            let bound = 2.0 * (image.len() + 1) as f32 * f32::EPSILON * terms;
            assert!(
                (g - w).abs() <= bound,
                "{what} blocks[{i}]: {g} vs {w} (bound {bound:e})"
            );
        }
        for (i, (g, w)) in got_mass.iter().zip(&want_mass).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{what} mass[{i}]: {g} vs {w}");
        }
        // Empty images: exact zeros.
        for t in (0..images).filter(|&t| d.offsets[t] == d.offsets[t + 1]) {
            assert!(
                got[t * k * dim..(t + 1) * k * dim]
                    .iter()
                    .all(|x| x.to_bits() == 0)
            );
        }

        // `mass` by the soft counts, in place.
        let mut encoder = ctx.encoder("soft mass test");
        stage
            .record_mass(
                &ctx,
                &mut encoder,
                &Blocks {
                    shape: BlockShape {
                        images: images as u32,
                        clusters: k as u32,
                        dim: dim as u32,
                    },
                    values: &blocks,
                    counts: &mass,
                },
            )
            .unwrap();
        ctx.submit_and_wait("soft mass test", encoder).unwrap();
        let divided = ctx
            .read_back::<f32>("blocks", &blocks, 0, images * k * dim)
            .unwrap();
        let mut want = got;
        soft_aggregate_tile::divide_by_mass(&mut want, &want_mass, dim);
        for (i, (g, w)) in divided.iter().zip(&want).enumerate() {
            assert!(close(*g, *w), "{what} mass-divided [{i}]: {g} vs {w}");
        }
    }
}

#[test]
fn unit_residuals_match_the_twin() {
    let ctx = gpu_or_skip!();
    let stage = UnitResidualStage::new(&ctx).unwrap();
    for (seed, dim, k, u8_input) in [(11, 13, 5, false), (12, 40, 7, true)] {
        let mut d = data(seed, dim, k, u8_input);
        let n = d.rows.len() / dim;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..k as u32)).collect();
        // One row equal to its centroid: its unit residual is exactly zero.
        let l = labels[3] as usize;
        let centroid: Vec<f32> = d.rows[3 * dim..4 * dim].to_vec();
        d.centroids[l * dim..(l + 1) * dim].copy_from_slice(&centroid);
        let rows = upload_rows(&ctx, &d, u8_input);
        let c = ctx.upload("C", &d.centroids).unwrap();
        let lbuf = ctx.upload("labels", &labels).unwrap();
        let units = ctx.upload("units", &vec![f32::NAN; n * dim]).unwrap();
        let mut encoder = ctx.encoder("unit residual test");
        stage
            .record(
                &ctx,
                &mut encoder,
                &UnitResidualJob {
                    input: Descriptors {
                        buffer: &rows,
                        u8_input,
                        rows: n as u32,
                        dim: dim as u32,
                    },
                    centroids: &c,
                    labels: &lbuf,
                    clusters: k as u32,
                    units: &units,
                },
            )
            .unwrap();
        ctx.submit_and_wait("unit residual test", encoder).unwrap();
        let got = ctx.read_back::<f32>("units", &units, 0, n * dim).unwrap();
        let want = unit_residual::unit_residuals(&d.rows, dim, &d.centroids, &labels);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(close(*g, *w), "F={dim} u8={u8_input} [{i}]: {g} vs {w}");
        }
        assert!(got[3 * dim..4 * dim].iter().all(|x| x.to_bits() == 0));
    }
}
