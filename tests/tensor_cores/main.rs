//! The tensor-core assign (`VLAD_GPU_TENSOR_CORES=1`) on whatever adapter
//! wgpu finds.
//!
//! * With cooperative matrices (e.g. an NVIDIA H100 on Vulkan): the stage is
//!   built (its self-check passes), and on near-tie data — paired centroids,
//!   rows sitting on a large common offset, u8 rows, sizes off the tiles,
//!   several images — its labels obey SPEC §4 against the f64 oracle and
//!   agree with the plain assign's except between near-tied centroids; keys
//!   and values are exact.
//! * Without (lavapipe): asking for them falls back to the plain assign and
//!   says so — `tensor_cores` is `Unavailable(reason)`, the stage name stays
//!   "assign", the command line prints the reason on stderr — and the
//!   labels are still right.
//!
//! A binary of its own with one test function, so that its GPU work does
//! not overlap the other GPU tests'.

#![cfg(all(feature = "gpu", feature = "cli"))]

#[path = "../cli/util.rs"]
mod cli_common;
#[path = "../common/mod.rs"]
mod common;

use cli_common::{BenchShape, Cmd};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vlad::backend::gpu::__internal::CompiledStages;
use vlad::backend::gpu::GpuContext;
use vlad::backend::gpu::stages::Descriptors;
use vlad::backend::gpu::stages::assign::{AssignJob, AssignStage, AssignVariant};
use vlad::backend::gpu::stages::assign_coop::{AssignCoopStage, STAGE_NAME};
use vlad::backend::gpu::tensor_cores::TensorCores;
use vlad::verify::is_near_tie;
use vlad::{Batch, Codebook, Element, reference};
use vlad::{GpuOptions, TENSOR_CORES_VAR as TENSOR_CORES_ENV};

struct Assigned {
    labels: Vec<u32>,
    keys: Vec<u32>,
    values: Vec<u32>,
}

/// Run one of the two stages on `batch`.
fn run<E: Element + bytemuck::Pod>(
    ctx: &GpuContext,
    record: &dyn Fn(&mut wgpu::CommandEncoder, &AssignJob<'_>),
    codebook: &Codebook,
    batch: &Batch<'_, E>,
) -> Assigned {
    let rows = batch.len();
    let descriptors = ctx.upload("descriptors", batch.rows()).unwrap();
    let centroids = ctx.upload("centroids", codebook.as_slice()).unwrap();
    let norms = ctx.upload("norms", codebook.squared_norms()).unwrap();
    let offsets: Vec<u32> = batch.offsets().iter().map(|&o| o as u32).collect();
    let offsets = ctx.upload("offsets", &offsets).unwrap();
    let poison = vec![u32::MAX; rows.max(1)];
    let labels = ctx.upload("labels", &poison).unwrap();
    let keys = ctx.upload("keys", &poison).unwrap();
    let values = ctx.upload("values", &poison).unwrap();
    let job = AssignJob {
        input: Descriptors {
            buffer: &descriptors,
            u8_input: E::DTYPE == vlad::DType::U8,
            rows: rows as u32,
            dim: codebook.dim() as u32,
        },
        centroids: &centroids,
        centroid_norms: &norms,
        image_offsets: &offsets,
        clusters: codebook.clusters() as u32,
        images: batch.images() as u32,
        labels: &labels,
        keys: &keys,
        values: &values,
    };
    let mut encoder = ctx.encoder("assign");
    record(&mut encoder, &job);
    ctx.submit_and_wait("assign", encoder).unwrap();
    Assigned {
        labels: ctx.read_back("labels", &labels, 0, rows).unwrap(),
        keys: ctx.read_back("keys", &keys, 0, rows).unwrap(),
        values: ctx.read_back("values", &values, 0, rows).unwrap(),
    }
}

/// Near-tie cases: (name, codebook, f32 rows, CSR offsets).
fn near_tie_cases() -> Vec<(String, Codebook, Vec<f32>, Vec<usize>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut cases = Vec::new();
    // Paired centroids (c, c + tiny): frequent near ties; sizes off the
    // 32-row, 32-centroid and 16-feature tiles; several images, one empty.
    for &(n, f, k, scale) in &[
        (1000usize, 128usize, 256usize, 1.0f32),
        (333, 37, 45, 100.0),
        (70, 16, 2, 1e-3),
        (257, 200, 33, 1.0),
    ] {
        let mut c = Vec::with_capacity(k * f);
        for _ in 0..k / 2 {
            let a: Vec<f32> = (0..f).map(|_| rng.random_range(0.0f32..scale)).collect();
            c.extend(&a);
            c.extend(
                a.iter()
                    .map(|x| x + rng.random_range(-1e-5f32..1e-5) * scale),
            );
        }
        while c.len() < k * f {
            c.push(rng.random_range(0.0f32..scale));
        }
        let codebook = Codebook::new(Array2::from_shape_vec((k, f), c).unwrap().view()).unwrap();
        let rows: Vec<f32> = (0..n * f)
            .map(|_| rng.random_range(0.0f32..scale))
            .collect();
        let offsets = vec![0, n / 3, n / 3, n];
        cases.push((
            format!("paired N={n} F={f} K={k} ×{scale}"),
            codebook,
            rows,
            offsets,
        ));
    }
    // Rows on a large common offset between two centroids: ‖c‖² − 2v·c
    // cancels badly, the gaps are tiny — every row goes to the re-check.
    let (n, f) = (300usize, 48usize);
    let base: Vec<f32> = (0..f).map(|_| rng.random_range(500.0f32..1000.0)).collect();
    let u: Vec<f32> = (0..f).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let mut c: Vec<f32> = base.iter().zip(&u).map(|(b, x)| b + x).collect();
    c.extend(base.iter().zip(&u).map(|(b, x)| b - x));
    let codebook = Codebook::new(Array2::from_shape_vec((2, f), c).unwrap().view()).unwrap();
    let mut rows = Vec::with_capacity(n * f);
    for _ in 0..n {
        rows.extend(base.iter().map(|b| b + rng.random_range(-0.01f32..0.01)));
    }
    cases.push(("offset near ties".to_string(), codebook, rows, vec![0, n]));
    cases
}

/// SPEC §4 against the oracle, agreement with the plain stage except at
/// near ties, exact keys and values. Returns labels differing from the oracle.
fn check<E: Element>(
    what: &str,
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    coop: &Assigned,
    plain: &Assigned,
) -> usize {
    let k = codebook.clusters() as u32;
    let exact = reference::assign(codebook, batch);
    let mut differ = 0;
    for (i, &e) in exact.iter().enumerate() {
        let (g, p) = (coop.labels[i], plain.labels[i]);
        assert!(g < k, "{what}: row {i}: label {g} out of range (K = {k})");
        assert!(
            is_near_tie(codebook, batch.row(i), g, e),
            "{what}: row {i}: tensor-core label {g}, exact argmin {e}: not a near tie"
        );
        assert!(
            g == p || is_near_tie(codebook, batch.row(i), p, e),
            "{what}: row {i}: tensor cores {g} vs plain {p}"
        );
        differ += usize::from(g != e);
    }
    for t in 0..batch.images() {
        for i in batch.image_range(t) {
            assert_eq!(
                coop.keys[i],
                t as u32 * k + coop.labels[i],
                "{what}: key of row {i}"
            );
        }
    }
    let rows: Vec<u32> = (0..batch.len() as u32).collect();
    assert_eq!(coop.values, rows, "{what}: values must be the row indices");
    differ
}

fn compare_on_device(ctx: &GpuContext) {
    let coop = AssignCoopStage::new(ctx)
        .unwrap_or_else(|e| panic!("tensor cores enabled but the stage failed: {e}"));
    let plain = AssignStage::new(ctx).unwrap();
    let coop_record =
        |enc: &mut wgpu::CommandEncoder, job: &AssignJob<'_>| coop.record(ctx, enc, job).unwrap();
    let plain_record =
        |enc: &mut wgpu::CommandEncoder, job: &AssignJob<'_>| plain.record(ctx, enc, job).unwrap();
    for (what, codebook, rows, offsets) in near_tie_cases() {
        let f = codebook.dim();
        let view = ndarray::ArrayView2::from_shape((rows.len() / f, f), &rows[..]).unwrap();
        let batch = Batch::ragged(view, &offsets).unwrap();
        let got = run(ctx, &coop_record, &codebook, &batch);
        let want = run(ctx, &plain_record, &codebook, &batch);
        let differ = check(&what, &codebook, &batch, &got, &want);
        eprintln!(
            "{what}: {differ} of {} labels differ from the exact argmin",
            batch.len()
        );
        // Repeatable on the same device (SPEC §5).
        let again = run(ctx, &coop_record, &codebook, &batch);
        assert_eq!(again.labels, got.labels, "{what}: not repeatable");
    }
    // u8 rows (exact in f16: two products), u8-range centroids.
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let (n, f, k) = (777usize, 128usize, 64usize);
    let mut c = Vec::with_capacity(k * f);
    for _ in 0..k / 2 {
        let a: Vec<f32> = (0..f).map(|_| rng.random_range(0.0f32..255.0)).collect();
        c.extend(&a);
        c.extend(a.iter().map(|x| x + 1e-3));
    }
    let codebook = Codebook::new(Array2::from_shape_vec((k, f), c).unwrap().view()).unwrap();
    let rows: Vec<u8> = (0..n * f).map(|_| rng.random()).collect();
    let view = ndarray::ArrayView2::from_shape((n, f), &rows[..]).unwrap();
    let batch = Batch::single(view).unwrap();
    let got = run(ctx, &coop_record, &codebook, &batch);
    let want = run(ctx, &plain_record, &codebook, &batch);
    check("u8 paired", &codebook, &batch, &got, &want);
}

#[test]
fn tensor_cores_on_request_run_right_or_fall_back_loudly() {
    let asked = GpuOptions {
        tensor_cores: true,
        ..GpuOptions::default()
    };
    let ctx = common::gpu_or_skip!(&asked);
    eprintln!("adapter: {} → {:?}", ctx.info.name, ctx.tensor_cores);
    let stages = CompiledStages::new(&ctx).unwrap();
    match &ctx.tensor_cores {
        TensorCores::Enabled { .. } => {
            assert!(stages.assign_coop.is_some(), "{:?}", stages.tensor_cores);
            assert_eq!(stages.assign_stage_name(), STAGE_NAME);
            compare_on_device(&ctx);
        }
        TensorCores::Unavailable(reason) => {
            assert!(!reason.is_empty());
            assert!(stages.assign_coop.is_none());
            assert_eq!(stages.tensor_cores, ctx.tensor_cores);
            assert_eq!(stages.assign_stage_name(), "assign");
            // The command line says so, and still computes.
            let shape = BenchShape {
                images: 4,
                per_image: 64,
                dim: 16,
                clusters: 8,
            };
            let out = Cmd::bench(shape)
                .backend("gpu")
                .repeats(1)
                .json()
                .run_with_env(&[(TENSOR_CORES_ENV, "1")]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{stderr}");
            assert!(
                stderr.contains("tensor cores are unavailable"),
                "the fallback must be reported: {stderr}"
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
            let stages: Vec<&str> = v["rows"]
                .as_array()
                .expect("rows")
                .iter()
                .filter_map(|r| r["stage"].as_str())
                .collect();
            assert!(!stages.contains(&STAGE_NAME), "{stages:?}");
        }
        TensorCores::Off => panic!("{TENSOR_CORES_ENV}=1 was set, yet tensor cores are Off"),
    }
    drop(stages);
    drop(ctx);

    // Not asked for: off, plain stage.
    let ctx = GpuContext::new(&GpuOptions::default()).unwrap();
    assert_eq!(ctx.tensor_cores, TensorCores::Off);
    assert_eq!(
        CompiledStages::new(&ctx).unwrap().assign_stage_name(),
        "assign"
    );
    drop(ctx);

    // A value that is neither on nor off is an error naming the variable
    // (the command line reads it: the library takes options).
    let shape = BenchShape {
        images: 2,
        per_image: 8,
        dim: 8,
        clusters: 2,
    };
    let out = Cmd::bench(shape)
        .backend("gpu")
        .repeats(1)
        .run_with_env(&[(TENSOR_CORES_ENV, "maybe")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{TENSOR_CORES_ENV}=maybe was accepted: {err}"
    );
    assert!(err.contains(TENSOR_CORES_ENV), "{err}");
}
