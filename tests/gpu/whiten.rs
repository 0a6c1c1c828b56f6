//! The whitening stage (SPEC §14) on the GPU: `shaders/whiten.wgsl`
//! against its CPU twin (within the rounding of its sums: WGSL's `fma` may
//! round once or twice, and lavapipe rounds twice), the same bits in one
//! group of columns and split into several (a small binding cap); and the encoder's whitened output
//! on the GPU against the CPU backend and the f64 reference, with the
//! rows of a split image (finished on the host, whitened on the device).

use crate::common::gpu_or_skip;
use ndarray::{Array2, Array3, s};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vlad::backend::gpu::GpuContext;
use vlad::backend::gpu::stages::whiten::{ProjectionGroups, WhitenStage};
use vlad::{Backend, Encoder, GpuOptions, Whitening, WhiteningParams, twins};

use crate::common::cases::{normal_matrix, random_codebook, random_matrix};

/// A whitening of `d`-wide rows to `dout` (fitted on random rows).
fn whitening(seed: u64, n: usize, d: usize, dout: usize) -> (Whitening, Array2<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = normal_matrix(&mut rng, n, d);
    (WhiteningParams::new(dout).fit(x.view()).unwrap(), x)
}

/// `Pᵀ` padded to `width` columns, as the stage's twin reads it.
fn transposed(w: &Whitening, width: usize) -> Vec<f32> {
    let p = w.projection();
    let mut pt = vec![0.0f32; p.ncols() * width];
    for ((i, k), v) in p.indexed_iter() {
        pt[k * width + i] = *v;
    }
    pt
}

fn project_on_gpu(ctx: &GpuContext, w: &Whitening, x: &Array2<f32>) -> (Vec<f32>, usize) {
    let stage = WhitenStage::new(ctx).unwrap();
    let groups = ProjectionGroups::upload(ctx, w).unwrap();
    let rows = x.nrows();
    let input = ctx.upload("rows", x.as_slice().unwrap()).unwrap();
    let width = groups.width as usize;
    let out = ctx
        .storage_buffer("out", (rows * width * 4) as u64)
        .unwrap();
    let mut encoder = ctx.encoder("whiten test");
    stage
        .record(ctx, &mut encoder, &groups, &input, rows as u32, &out)
        .unwrap();
    ctx.submit_and_wait("whiten test", encoder).unwrap();
    (
        ctx.read_back("out", &out, 0, rows * width).unwrap(),
        groups.groups.len(),
    )
}

#[test]
fn the_stage_is_its_twin() {
    let ctx = gpu_or_skip!();
    // D crosses a KB = 256 block; D′ is not a multiple of 64; 11 rows are
    // not a multiple of the 4 an invocation computes.
    let (w, x) = whitening(1, 300, 300, 70);
    let rows = x.slice(s![0..11, ..]).to_owned();
    let (gpu, groups) = project_on_gpu(&ctx, &w, &rows);
    assert_eq!(groups, 1);
    let width = gpu.len() / 11;
    assert_eq!(width, 128, "D′ = 70 padded to 128");
    let twin = twins::whiten::project(
        rows.as_slice().unwrap(),
        11,
        300,
        w.mean().as_slice().unwrap(),
        &transposed(&w, width),
        width,
    );
    // Each output is a sum of D = 300 products: the two may differ by the
    // rounding of each term and each addition, at most 2·D·2⁻²⁴·Σ|term|.
    let (pt, mean) = (transposed(&w, width), w.mean());
    for t in 0..11 {
        for i in 0..width {
            let bound: f64 = (0..300)
                .map(|k| ((rows[[t, k]] - mean[k]) as f64 * pt[k * width + i] as f64).abs())
                .sum::<f64>()
                * 600.0
                * f64::from(f32::EPSILON);
            let (g, c) = (gpu[t * width + i] as f64, twin[t * width + i] as f64);
            assert!(
                (g - c).abs() <= bound,
                "row {t}, output {i}: gpu {g} vs twin {c}, bound {bound}"
            );
        }
    }
    // The padding columns are exactly zero.
    assert!(gpu.chunks(width).all(|r| r[70..].iter().all(|&v| v == 0.0)));
}

#[test]
fn a_projection_larger_than_a_binding_runs_in_groups_with_the_same_bits() {
    let (w, x) = whitening(2, 200, 96, 80);
    let rows = x.slice(s![0..9, ..]).to_owned();
    let whole = {
        let ctx = gpu_or_skip!();
        project_on_gpu(&ctx, &w, &rows)
    };
    // 96 · 4 bytes a column: a 32 KiB cap holds 64 columns, so 128 padded
    // columns take two groups.
    let options = GpuOptions {
        max_binding_bytes: Some(32 * 1024),
        ..GpuOptions::default()
    };
    let ctx = gpu_or_skip!(&options);
    let split = project_on_gpu(&ctx, &w, &rows);
    assert_eq!(split.1, 2);
    assert_eq!(split.0, whole.0);
}

#[test]
fn the_encoder_whitens_on_the_gpu_as_on_the_cpu_and_the_reference() {
    let _ctx = gpu_or_skip!();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (t, l, f, k) = (40, 10, 8, 6);
    let codebook = random_codebook(&mut rng, k, f);
    let images: Array3<f32> = random_matrix(&mut rng, t * l, f)
        .into_shape_with_order((t, l, f))
        .unwrap();
    let raw = Encoder::builder(codebook.clone())
        .backend(Backend::Cpu)
        .build();
    let w = WhiteningParams::new(12)
        .fit(raw.encode(images.view()).unwrap().view())
        .unwrap();
    let run = |backend| {
        let enc = Encoder::builder(codebook.clone())
            .backend(backend)
            .whitening(w.clone())
            .try_build()
            .unwrap();
        let encoded = enc
            .encode_batch(&vlad::Batch::fixed(images.view()).unwrap())
            .unwrap();
        assert_eq!(encoded.report.backend, backend);
        let check = encoded.verify(&enc, &vlad::Batch::fixed(images.view()).unwrap());
        assert!(check.passed(), "{backend:?}: {check:?}");
        encoded.vlad
    };
    let gpu = run(Backend::Gpu);
    let cpu = run(Backend::Cpu);
    assert_eq!(gpu.dim(), (t, 12));
    let worst = (&gpu - &cpu).mapv(f32::abs).fold(0.0f32, |m, v| m.max(*v));
    assert!(worst < 1e-4, "gpu vs cpu whitened: {worst}");
    // Same bits run after run.
    assert_eq!(gpu, run(Backend::Gpu));
}

#[test]
fn streamed_with_split_images_is_the_in_memory_whitened_encoding_and_reads_back_dprime() {
    use vlad::io::OutputFile;
    use vlad::io::mapped::MappedNpy;
    use vlad::stream::{StreamOptions, encode_file};
    let _ctx = gpu_or_skip!();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let (f, k) = (16, 16);
    // Image 2 is much larger than a batch (split into pieces); image 4 is
    // empty (the whitening of a zero row).
    let sizes = [30usize, 5, 3000, 40, 0, 25];
    let n: usize = sizes.iter().sum();
    let rows = normal_matrix(&mut rng, n, f);
    let mut offsets = vec![0usize];
    for s in sizes {
        offsets.push(offsets.last().unwrap() + s);
    }
    let codebook = random_codebook(&mut rng, k, f);
    let raw = Encoder::builder(codebook.clone())
        .backend(Backend::Cpu)
        .build();
    let v = raw.encode_ragged(rows.view(), &offsets).unwrap();
    let more = normal_matrix(&mut rng, 200, k * f);
    let train = ndarray::concatenate![ndarray::Axis(0), v, more];
    let w = WhiteningParams::new(16).fit(train.view()).unwrap();
    let encoder = Encoder::builder(codebook)
        .backend(Backend::Gpu)
        .gpu_max_binding_bytes(Some(64 << 10))
        .whitening(w)
        .try_build()
        .unwrap();
    let batch = vlad::Batch::ragged(rows.view(), &offsets).unwrap();
    let in_memory = encoder.encode_batch(&batch).unwrap();
    assert!(
        encoder
            .encode_batch(&batch)
            .unwrap()
            .verify(&encoder, &batch)
            .passed()
    );
    let dir = tempfile::tempdir().unwrap();
    ndarray_npy::write_npy(dir.path().join("d.npy"), &rows).unwrap();
    let input = MappedNpy::open(dir.path().join("d.npy")).unwrap();
    let out = OutputFile::create(dir.path().join("v.npy")).unwrap();
    let options = StreamOptions {
        memory_limit: 64 << 10,
        ..StreamOptions::default()
    };
    let streamed = encode_file(&encoder, &input, Some(&offsets), None, out, &options).unwrap();
    assert!(streamed.batches > 2, "{} batches", streamed.batches);
    let file = std::fs::File::open(dir.path().join("v.npy")).unwrap();
    let got: Array2<f32> = ndarray_npy::ReadNpyExt::read_npy(file).unwrap();
    assert_eq!(got.dim(), (6, 16));
    assert_eq!(got, in_memory.vlad);
    // Whole images read back D′ = 16 values, not K·F = 256.
    let readback = in_memory.report.stages.get("whiten");
    assert!(
        readback.is_some(),
        "a whiten stage ran on the device: {:?}",
        in_memory.report.stages
    );
}
