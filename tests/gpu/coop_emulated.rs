//! Everything in the tensor-core assign shader except the cooperative-matrix
//! instructions themselves, run on any adapter.
//!
//! `shaders/assign_coop.wgsl` only runs where the adapter has cooperative
//! matrices, which lavapipe has not: its scaling, error bound, best-two
//! fold, re-check and outputs would otherwise first run on a GPU machine.
//! Here the block that loads the tiles and multiplies them is swapped for
//! plain WGSL that computes the same sums (`hi·hi + hi·lo + lo·hi` of the
//! staged f16 tiles, accumulated in f32), so the rest of the shader runs
//! unchanged on lavapipe and its labels are checked against the exact
//! argmin (SPEC §4: only near-ties may differ). The cooperative
//! instructions alone are checked on a device by `examples/coop_probe.rs`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vlad::backend::gpu::GpuContext;
use vlad::backend::gpu::stages::assign_coop::emulated_shader_source;

use crate::common::gpu_or_skip;

/// Invocations per workgroup for the emulated variant: no subgroup
/// operation is left, so any size works; the NVIDIA one.
const SG: u32 = 32;

fn emulated_source(u8_input: bool) -> String {
    emulated_shader_source(SG, u8_input).expect("the cooperative block is found and replaced")
}

#[test]
fn the_emulated_variant_has_no_cooperative_instruction_left() {
    for u8_input in [false, true] {
        let source = emulated_source(u8_input);
        let code: String = source
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for word in [
            "coopLoad",
            "coopMultiplyAdd",
            "coopStore",
            "coop_mat",
            "cooperative",
        ] {
            assert!(!code.contains(word), "{word} is left in:\n{code}");
        }
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{}", e.emit_to_string(&source)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::SHADER_FLOAT16,
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}", e.emit_to_string(&source)));
    }
}

/// Labels from the emulated shader for `rows` (row-major, `dim` wide).
fn run(
    ctx: &GpuContext,
    u8_input: bool,
    descriptors: &[u32],
    rows: usize,
    dim: usize,
    centroids: &[f32],
) -> Vec<u32> {
    let k = centroids.len() / dim;
    let pipeline = ctx
        .pipeline("assign_coop emulated", &emulated_source(u8_input), "assign")
        .expect("the emulated variant compiles");
    let norms: Vec<f32> = (0..k)
        .map(|c| {
            centroids[c * dim..(c + 1) * dim]
                .iter()
                .map(|x| x * x)
                .sum()
        })
        .collect();
    let params: [u32; 8] = [
        rows as u32,
        dim as u32,
        k as u32,
        1,
        rows.div_ceil(32) as u32,
        k.div_ceil(32) as u32,
        dim.div_ceil(16) as u32,
        0,
    ];
    let params = ctx.uniform("params", &params).expect("uniform");
    let buffers = [
        ctx.upload("descriptors", descriptors).expect("upload"),
        ctx.upload("centroids", centroids).expect("upload"),
        ctx.upload("norms", &norms).expect("upload"),
        ctx.upload("offsets", &[0u32, rows as u32]).expect("upload"),
        ctx.upload("labels", &vec![u32::MAX; rows]).expect("upload"),
        ctx.upload("keys", &vec![u32::MAX; rows]).expect("upload"),
        ctx.upload("values", &vec![u32::MAX; rows]).expect("upload"),
    ];
    let mut entries = vec![params.as_entire_binding()];
    entries.extend(buffers.iter().map(|b| b.as_entire_binding()));
    let group = ctx
        .bind_group("assign_coop emulated", &pipeline, &entries)
        .expect("bind group");
    let mut encoder = ctx.encoder("assign_coop emulated");
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(rows.div_ceil(32) as u32, 1, 1);
    }
    ctx.submit_and_wait("assign_coop emulated", encoder)
        .expect("runs");
    let labels: Vec<u32> = ctx
        .read_back("labels", &buffers[4], 0, rows)
        .expect("labels");
    let keys: Vec<u32> = ctx.read_back("keys", &buffers[5], 0, rows).expect("keys");
    let values: Vec<u32> = ctx
        .read_back("values", &buffers[6], 0, rows)
        .expect("values");
    for r in 0..rows {
        assert_eq!(keys[r], labels[r], "row {r}: one image, so key = label");
        assert_eq!(values[r], r as u32, "row {r}: value = row index");
    }
    labels
}

/// Exact squared distances in f64, and whether the label is right or a
/// near-tie (SPEC §4).
fn check(name: &str, rows: &[f64], dim: usize, centroids: &[f32], labels: &[u32]) {
    let k = centroids.len() / dim;
    for (r, &got) in labels.iter().enumerate() {
        let v = &rows[r * dim..(r + 1) * dim];
        let d = |c: usize| -> f64 {
            (0..dim)
                .map(|f| (v[f] - centroids[c * dim + f] as f64).powi(2))
                .sum()
        };
        let best = (0..k)
            .min_by(|&a, &b| d(a).total_cmp(&d(b)))
            .expect("k > 0");
        assert!((got as usize) < k, "{name}: row {r} got label {got} of {k}");
        let scale: f64 = v.iter().map(|x| x * x).sum::<f64>() + d(best);
        assert!(
            got as usize == best || d(got as usize) - d(best) <= 1e-5 * scale,
            "{name}: row {r} got label {got} (d = {}), the exact nearest is {best} (d = {})",
            d(got as usize),
            d(best)
        );
    }
}

#[test]
fn the_shader_around_the_cooperative_block_gives_exact_labels() {
    let ctx = gpu_or_skip!();
    let mut rng = ChaCha8Rng::seed_from_u64(0x7e45);
    // The self-check's shape (not multiples of the tiles; two centroid
    // tiles, three feature steps), then wider ones.
    // The last shape has a centroid too small to scale (largest |element|
    // about 2^-83, out of the scaled range), so every row is re-checked.
    for (rows, dim, k) in [
        (100usize, 37usize, 45usize),
        (70, 128, 64),
        (33, 16, 17),
        (40, 20, 10),
    ] {
        let mut centroids: Vec<f32> = (0..k * dim)
            .map(|i| rng.random_range(-1.0f32..1.0) * (1.0 + (i % dim) as f32 / 8.0))
            .collect();
        if k == 10 {
            for x in &mut centroids[3 * dim..4 * dim] {
                *x *= 1e-25;
            }
        }
        let v: Vec<f32> = (0..rows * dim)
            .map(|i| {
                let near = (i / dim * 7) % k;
                centroids[near * dim + i % dim] + rng.random_range(-0.3f32..0.3)
            })
            .collect();
        let bits: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
        let labels = run(&ctx, false, &bits, rows, dim, &centroids);
        let exact: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        check(
            &format!("f32 {rows}x{dim}, K={k}"),
            &exact,
            dim,
            &centroids,
            &labels,
        );

        // u8 rows, packed four per u32.
        let bytes: Vec<u8> = (0..rows * dim).map(|_| rng.random()).collect();
        let mut packed = vec![0u32; (rows * dim).div_ceil(4)];
        for (i, &b) in bytes.iter().enumerate() {
            packed[i / 4] |= (b as u32) << (8 * (i % 4));
        }
        let u8_centroids: Vec<f32> = (0..k * dim)
            .map(|_| rng.random_range(0.0f32..255.0))
            .collect();
        let labels = run(&ctx, true, &packed, rows, dim, &u8_centroids);
        let exact: Vec<f64> = bytes.iter().map(|&x| x as f64).collect();
        check(
            &format!("u8 {rows}x{dim}, K={k}"),
            &exact,
            dim,
            &u8_centroids,
            &labels,
        );
    }
}
