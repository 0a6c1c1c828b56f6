//! GPU nearest-centroid assignment against the f64 oracle (exact argmin,
//! within SPEC §4's near-tie tolerance) and the CPU twin; sort keys and row
//! values; edge sizes, exact ties and u8 input.

use crate::common::cases::random_matrix;
use crate::common::gpu_or_skip;
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vlad::backend::gpu::GpuContext;
use vlad::backend::gpu::stages::Descriptors;
use vlad::backend::gpu::stages::assign::{AssignJob, AssignStage, AssignVariant};
use vlad::verify::is_near_tie;
use vlad::{Batch, Codebook, Element, reference};

/// What the stage wrote.
struct Assigned {
    labels: Vec<u32>,
    keys: Vec<u32>,
    values: Vec<u32>,
}

/// Run the stage on `batch` (f32 or u8 rows).
fn gpu_assign<E: Element + bytemuck::Pod>(
    ctx: &GpuContext,
    stage: &AssignStage,
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    u8_input: bool,
) -> Assigned {
    let rows = batch.len();
    let descriptors = ctx.upload("descriptors", batch.rows()).unwrap();
    let centroids = ctx.upload("centroids", codebook.as_slice()).unwrap();
    let norms = ctx.upload("norms", codebook.squared_norms()).unwrap();
    let offsets: Vec<u32> = batch.offsets().iter().map(|&o| o as u32).collect();
    let offsets = ctx.upload("offsets", &offsets).unwrap();
    // Poisoned outputs: a row the shader forgets shows up as a mismatch.
    let poison = vec![u32::MAX; rows.max(1)];
    let labels = ctx.upload("labels", &poison).unwrap();
    let keys = ctx.upload("keys", &poison).unwrap();
    let values = ctx.upload("values", &poison).unwrap();
    let job = AssignJob {
        input: Descriptors {
            buffer: &descriptors,
            u8_input,
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
    stage.record(ctx, &mut encoder, &job).unwrap();
    ctx.submit_and_wait("assign", encoder).unwrap();
    Assigned {
        labels: ctx.read_back("labels", &labels, 0, rows).unwrap(),
        keys: ctx.read_back("keys", &keys, 0, rows).unwrap(),
        values: ctx.read_back("values", &values, 0, rows).unwrap(),
    }
}

/// Labels within SPEC §4 of the oracle and of the CPU twin; keys and values
/// exactly right. Returns the number of labels that differ from the oracle.
fn check<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    got: &Assigned,
    what: &str,
) -> usize {
    let k = codebook.clusters() as u32;
    let exact = reference::assign(codebook, batch);
    let cpu = vlad::twins::assign::assign(codebook, batch.rows(), batch.dim());
    let mut differ = 0;
    for i in 0..batch.len() {
        let (g, e) = (got.labels[i], exact[i]);
        assert!(g < k, "{what}: row {i}: label {g} out of range (K = {k})");
        assert!(
            is_near_tie(codebook, batch.row(i), g, e),
            "{what}: row {i}: label {g}, exact argmin {e}: not a near-tie"
        );
        // GPU and CPU may each break a near-tie their own way, never more.
        assert!(
            g == cpu[i] || is_near_tie(codebook, batch.row(i), cpu[i], e),
            "{what}: row {i}: GPU {g} vs CPU twin {}",
            cpu[i]
        );
        differ += usize::from(g != e);
    }
    for t in 0..batch.images() {
        for i in batch.image_range(t) {
            assert_eq!(
                got.keys[i],
                t as u32 * k + got.labels[i],
                "{what}: key of row {i} (image {t})"
            );
        }
    }
    let rows: Vec<u32> = (0..batch.len() as u32).collect();
    assert_eq!(got.values, rows, "{what}: values must be the row indices");
    differ
}

/// `images` images of random sizes (some empty) covering `rows` rows.
fn random_offsets(rng: &mut ChaCha8Rng, rows: usize, images: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = (1..images).map(|_| rng.random_range(0..=rows)).collect();
    cuts.sort_unstable();
    let mut offsets = vec![0];
    offsets.extend(cuts);
    offsets.push(rows);
    offsets
}

#[test]
fn random_f32_every_shape() {
    let ctx = gpu_or_skip!();
    let stage = AssignStage::new(&ctx).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut differ = 0;
    let mut total = 0;
    // K covers every tile shape (≤ 32, ≤ 64, > 64 with several K tiles);
    // F covers 1, not a multiple of 4 or of the 8-feature chunk, and wide.
    for &f in &[1usize, 3, 37, 128, 200] {
        for &k in &[1usize, 2, 17, 50, 300] {
            // Not a multiple of any row tile (128, 256).
            let rows = 300;
            let codebook = Codebook::from_owned(random_matrix(&mut rng, k, f)).unwrap();
            let data = random_matrix(&mut rng, rows, f);
            let offsets = random_offsets(&mut rng, rows, 4);
            let batch = Batch::ragged(data.view(), &offsets).unwrap();
            let got = gpu_assign(&ctx, &stage, &codebook, &batch, false);
            differ += check(&codebook, &batch, &got, &format!("F={f} K={k}"));
            total += rows;
        }
    }
    // Near-ties are rare on random data: almost every label is exact.
    assert!(
        differ * 1000 <= total,
        "{differ} of {total} labels not exact"
    );
}

#[test]
fn zero_and_one_rows_and_tile_edges() {
    let ctx = gpu_or_skip!();
    let stage = AssignStage::new(&ctx).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    for &k in &[1usize, 17, 300] {
        let codebook = Codebook::from_owned(random_matrix(&mut rng, k, 37)).unwrap();
        for rows in [0usize, 1, 127, 128, 129, 255, 256, 257] {
            let data = random_matrix(&mut rng, rows, 37);
            let batch = Batch::single(data.view()).unwrap();
            let got = gpu_assign(&ctx, &stage, &codebook, &batch, false);
            check(&codebook, &batch, &got, &format!("rows={rows} K={k}"));
        }
    }
}

/// Integer-valued data: every f32 operation is exact, so ties are exact
/// ties and the lowest label must win, whatever tile the centroids are in.
fn check_exact_ties(ctx: &GpuContext, stage: &AssignStage, k: usize, f: usize, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut centroids = Array2::from_shape_fn((k, f), |_| rng.random_range(-2i32..=2) as f32);
    // Duplicates, including across centroid tiles (32, 64, 128 wide).
    for (dup, of) in [(k - 1, 0), (k / 2, 1), (k / 3, k - 1)] {
        if dup != of {
            let row = centroids.row(of).to_owned();
            centroids.row_mut(dup).assign(&row);
        }
    }
    let codebook = Codebook::from_owned(centroids).unwrap();
    let rows = 400;
    let data = Array2::from_shape_fn((rows, f), |_| rng.random_range(-2i32..=2) as f32);
    let batch = Batch::single(data.view()).unwrap();
    let got = gpu_assign(ctx, stage, &codebook, &batch, false);
    let exact = reference::assign(&codebook, &batch);
    let ties = (0..rows)
        .filter(|&i| {
            let d = reference::distances(&codebook, batch.row(i));
            d.iter().filter(|&&x| x == d[exact[i] as usize]).count() > 1
        })
        .count();
    assert!(
        ties > rows / 10,
        "K={k} F={f}: only {ties} tied rows, test too weak"
    );
    assert_eq!(
        got.labels, exact,
        "K={k} F={f}: exact ties must go to the lowest label"
    );
}

#[test]
fn exact_ties_go_to_the_lowest_label() {
    let ctx = gpu_or_skip!();
    let stage = AssignStage::new(&ctx).unwrap();
    check_exact_ties(&ctx, &stage, 2, 1, 1);
    check_exact_ties(&ctx, &stage, 17, 3, 2);
    check_exact_ties(&ctx, &stage, 50, 3, 3);
    check_exact_ties(&ctx, &stage, 300, 5, 4);
}

#[test]
fn u8_descriptors_are_widened_on_the_device() {
    let ctx = gpu_or_skip!();
    let stage = AssignStage::new(&ctx).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    // F = 37 and odd row counts: rows straddle the packed u32 words.
    for &(f, k, rows) in &[
        (37usize, 17usize, 301usize),
        (128, 300, 130),
        (3, 2, 1),
        (1, 50, 7),
    ] {
        let centroids = Array2::from_shape_fn((k, f), |_| rng.random_range(0.0f32..255.0));
        let codebook = Codebook::from_owned(centroids).unwrap();
        let data = Array2::from_shape_fn((rows, f), |_| rng.random::<u8>());
        let offsets = random_offsets(&mut rng, rows, 3);
        let batch = Batch::ragged(data.view(), &offsets).unwrap();
        let got = gpu_assign(&ctx, &stage, &codebook, &batch, true);
        check(&codebook, &batch, &got, &format!("u8 F={f} K={k}"));
    }
}

#[test]
fn keys_follow_images_including_empty_ones() {
    let ctx = gpu_or_skip!();
    let stage = AssignStage::new(&ctx).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let codebook = Codebook::from_owned(random_matrix(&mut rng, 17, 8)).unwrap();
    let data = random_matrix(&mut rng, 300, 8);
    // Empty images first, in the middle and last; one image per row too.
    for offsets in [
        vec![0, 0, 0, 5, 5, 100, 299, 300, 300],
        (0..=300).collect::<Vec<usize>>(),
        vec![0, 300],
    ] {
        let batch = Batch::ragged(data.view(), &offsets).unwrap();
        let got = gpu_assign(&ctx, &stage, &codebook, &batch, false);
        check(
            &codebook,
            &batch,
            &got,
            &format!("{} images", offsets.len() - 1),
        );
    }
}

#[test]
fn two_dimensional_dispatch() {
    let ctx = gpu_or_skip!();
    // 5 row tiles of 256 with at most 2 workgroups per dimension: a 2 × 3
    // grid whose last workgroup has nothing to do.
    let stage = AssignStage::new(&ctx)
        .unwrap()
        .with_max_workgroups_per_dim(2);
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let codebook = Codebook::from_owned(random_matrix(&mut rng, 17, 5)).unwrap();
    let data = random_matrix(&mut rng, 4 * 256 + 3, 5);
    let offsets = random_offsets(&mut rng, data.nrows(), 5);
    let batch = Batch::ragged(data.view(), &offsets).unwrap();
    let got = gpu_assign(&ctx, &stage, &codebook, &batch, false);
    check(&codebook, &batch, &got, "2-D dispatch");
}

#[test]
fn bad_jobs_are_errors() {
    let ctx = gpu_or_skip!();
    let stage = AssignStage::new(&ctx).unwrap();
    let small = ctx.upload("small", &[0u32; 4]).unwrap();
    let job = |rows, dim, clusters, images| AssignJob {
        input: Descriptors {
            buffer: &small,
            u8_input: false,
            rows,
            dim,
        },
        centroids: &small,
        centroid_norms: &small,
        image_offsets: &small,
        clusters,
        images,
        labels: &small,
        keys: &small,
        values: &small,
    };
    let mut encoder = ctx.encoder("bad");
    assert!(
        stage.record(&ctx, &mut encoder, &job(3, 2, 2, 1)).is_err(),
        "descriptors too small"
    );
    assert!(
        stage.record(&ctx, &mut encoder, &job(2, 0, 2, 1)).is_err(),
        "F = 0"
    );
    assert!(
        stage.record(&ctx, &mut encoder, &job(2, 2, 0, 1)).is_err(),
        "K = 0"
    );
    assert!(
        stage.record(&ctx, &mut encoder, &job(2, 2, 2, 0)).is_err(),
        "no image"
    );
    assert!(
        stage
            .record(&ctx, &mut encoder, &job(1, 1, 1 << 17, 1 << 16))
            .is_err(),
        "keys overflow"
    );
}

/// The tiny tile (K ≤ 16: 16 centroids per tile, 4 features per chunk)
/// against the oracle and the CPU twin at K = 1, 7 and 16, f32 and u8,
/// F not a multiple of the chunk, rows not a multiple of the row tile;
/// and exact ties at K = 7 and 16.
#[test]
fn tiny_tile_at_k_1_7_16() {
    use vlad::backend::gpu::stages::assign::TileShape;
    let ctx = gpu_or_skip!();
    let stage = AssignStage::new(&ctx).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    for k in [1usize, 7, 16] {
        assert_eq!(TileShape::for_clusters(k as u32), TileShape::Tiny);
        for (f, rows) in [(1usize, 257usize), (5, 300), (64, 513)] {
            let codebook = Codebook::from_owned(random_matrix(&mut rng, k, f)).unwrap();
            let data = random_matrix(&mut rng, rows, f);
            let offsets = random_offsets(&mut rng, rows, 5);
            let batch = Batch::ragged(data.view(), &offsets).unwrap();
            let got = gpu_assign(&ctx, &stage, &codebook, &batch, false);
            check(&codebook, &batch, &got, &format!("tiny F={f} K={k}"));

            let centroids = Array2::from_shape_fn((k, f), |_| rng.random_range(0.0f32..255.0));
            let codebook = Codebook::from_owned(centroids).unwrap();
            let data = Array2::from_shape_fn((rows, f), |_| rng.random::<u8>());
            let batch = Batch::ragged(data.view(), &offsets).unwrap();
            let got = gpu_assign(&ctx, &stage, &codebook, &batch, true);
            check(&codebook, &batch, &got, &format!("tiny u8 F={f} K={k}"));
        }
    }
    check_exact_ties(&ctx, &stage, 7, 3, 5);
    check_exact_ties(&ctx, &stage, 16, 6, 6);
}
