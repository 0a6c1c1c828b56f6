//! The chunk planner (pure: no device), the buffer pool and the stage
//! timestamps (on whatever adapter there is), and end-to-end encodes under a
//! tiny binding cap that forces many chunks and split images.

use crate::common::cases::random_codebook;
use crate::common::gpu_or_skip;
use ndarray::{Array2, Array3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vlad::backend::gpu::__internal::{BufferPool, GpuTimer, Role, StageClock, pooled_size};
use vlad::backend::gpu::chunking::{ChunkBuffers, device_bytes_per_element};
use vlad::backend::gpu::{Chunk, ChunkLimits, ChunkShape, plan_chunks};
use vlad::verify::verify;
use vlad::{
    Assignment, Backend, Batch, Codebook, DType, Encoder, Normalization, StageTimes, VladError,
};

// ---------------------------------------------------------------------------
// Planner
// ---------------------------------------------------------------------------

fn shape(dim: usize, clusters: usize, dtype: DType) -> ChunkShape {
    ChunkShape {
        dim,
        clusters,
        dtype,
    }
}

fn limits(max_binding_bytes: u64) -> ChunkLimits {
    ChunkLimits {
        max_binding_bytes,
        max_rows: u32::MAX as u64,
    }
}

fn image_fits_alone(offsets: &[usize], t: usize, shape: &ChunkShape, limits: &ChunkLimits) -> bool {
    let rows = (offsets[t + 1] - offsets[t]) as u64;
    ChunkBuffers::new(shape, 1, rows).largest() <= limits.max_binding_bytes
        && rows <= limits.max_rows
}

/// Every property a plan must have; panics with the first one broken.
fn check_plan(offsets: &[usize], shape: &ChunkShape, limits: &ChunkLimits, plan: &[Chunk]) {
    let images = offsets.len() - 1;
    let mut next_image = 0;
    let mut next_row = 0;
    let mut i = 0;
    while i < plan.len() {
        let chunk = &plan[i];
        assert_eq!(
            chunk.images.start, next_image,
            "chunk {i} skips or repeats images"
        );
        assert_eq!(
            chunk.rows.start, next_row,
            "chunk {i} skips or repeats rows"
        );
        let sizes = ChunkBuffers::new(shape, chunk.image_count() as u64, chunk.row_count() as u64);
        assert!(
            sizes.largest() <= limits.max_binding_bytes,
            "chunk {i} {chunk:?} needs a {} byte binding > cap {}",
            sizes.largest(),
            limits.max_binding_bytes
        );
        assert!(chunk.row_count() as u64 <= limits.max_rows);
        match chunk.part {
            None => {
                assert!(!chunk.images.is_empty(), "chunk {i} holds no image");
                assert_eq!(
                    chunk.rows,
                    offsets[chunk.images.start]..offsets[chunk.images.end],
                    "chunk {i} rows are not its images' rows"
                );
                next_image = chunk.images.end;
                next_row = chunk.rows.end;
                // Greedy: the next image did not fit into this chunk.
                if let Some(next) = plan.get(i + 1) {
                    let grown = ChunkBuffers::new(
                        shape,
                        chunk.image_count() as u64 + 1,
                        (offsets[next.images.start + 1] - chunk.rows.start) as u64,
                    );
                    assert!(
                        grown.largest() > limits.max_binding_bytes
                            || (offsets[next.images.start + 1] - chunk.rows.start) as u64
                                > limits.max_rows,
                        "chunk {i} could have taken image {}",
                        next.images.start
                    );
                }
                i += 1;
            }
            Some(part) => {
                let t = chunk.images.start;
                assert_eq!(chunk.images, t..t + 1, "a piece holds exactly one image");
                assert_eq!(part.index, 0, "image {t} starts at a later piece");
                assert!(part.count >= 2, "an image split into {} pieces", part.count);
                assert!(
                    !image_fits_alone(offsets, t, shape, limits),
                    "image {t} was split though it fits a chunk alone"
                );
                let mut row = offsets[t];
                for p in 0..part.count {
                    let piece = &plan[i + p];
                    assert_eq!(piece.images, t..t + 1);
                    assert_eq!(
                        piece.part.map(|q| (q.index, q.count)),
                        Some((p, part.count))
                    );
                    assert_eq!(piece.rows.start, row, "piece {p} of image {t} leaves a gap");
                    assert!(!piece.rows.is_empty(), "empty piece {p} of image {t}");
                    row = piece.rows.end;
                    assert_eq!(piece.completes_image(), p + 1 == part.count);
                }
                assert_eq!(row, offsets[t + 1], "pieces of image {t} miss rows");
                next_image = t + 1;
                next_row = row;
                i += part.count;
            }
        }
    }
    assert_eq!(
        next_image, images,
        "plan covers {next_image} of {images} images"
    );
    assert_eq!(
        next_row, offsets[images],
        "plan covers {next_row} of the rows"
    );
}

fn plan_ok(offsets: &[usize], shape: &ChunkShape, limits: &ChunkLimits) -> Vec<Chunk> {
    let plan = plan_chunks(offsets, shape, limits).unwrap();
    check_plan(offsets, shape, limits, &plan);
    plan
}

#[test]
fn no_images_no_chunks() {
    assert!(plan_ok(&[0], &shape(8, 4, DType::F32), &limits(4096)).is_empty());
}

#[test]
fn empty_images_still_get_a_chunk() {
    let plan = plan_ok(&[0, 0, 0, 0], &shape(8, 4, DType::F32), &limits(4096));
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0].images, 0..3);
    assert!(plan[0].rows.is_empty());
}

#[test]
fn one_small_image_is_one_chunk() {
    let plan = plan_ok(&[0, 10], &shape(8, 4, DType::F32), &limits(1 << 20));
    assert_eq!(
        plan,
        vec![Chunk {
            images: 0..1,
            rows: 0..10,
            part: None
        }]
    );
}

#[test]
fn everything_fits_one_chunk_under_a_large_cap() {
    let offsets = [0, 5, 5, 30, 31];
    let plan = plan_ok(&offsets, &shape(16, 8, DType::F32), &limits(128 << 20));
    assert_eq!(plan.len(), 1);
}

#[test]
fn big_image_is_split_into_balanced_pieces() {
    // F = 8 f32: 32 bytes a row, so a 4096-byte binding holds 128 rows.
    let offsets = [0, 3, 1003, 1010];
    let plan = plan_ok(&offsets, &shape(8, 4, DType::F32), &limits(4096));
    let pieces: Vec<&Chunk> = plan.iter().filter(|c| c.images == (1..2)).collect();
    assert_eq!(pieces.len(), 8, "1000 rows / 128 per piece");
    let lens: Vec<usize> = pieces.iter().map(|c| c.row_count()).collect();
    let (min, max) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
    assert!(max - min <= 1, "pieces are not balanced: {lens:?}");
    // The small images around it stay whole.
    assert_eq!(plan.first().unwrap().part, None);
    assert_eq!(plan.last().unwrap().part, None);
}

#[test]
fn blocks_bound_the_images_per_chunk() {
    // K·F·4 = 1024 bytes of blocks per image: 4 images per 4096-byte chunk,
    // even though they have no descriptors at all.
    let offsets = vec![0usize; 11];
    let plan = plan_ok(&offsets, &shape(16, 16, DType::F32), &limits(4096));
    assert_eq!(
        plan.iter().map(Chunk::image_count).collect::<Vec<_>>(),
        vec![4, 4, 2]
    );
}

#[test]
fn u8_descriptors_take_a_quarter_of_the_bytes() {
    let offsets = [0, 2000];
    let f32_plan = plan_ok(&offsets, &shape(32, 2, DType::F32), &limits(8192));
    let u8_plan = plan_ok(&offsets, &shape(32, 2, DType::U8), &limits(8192));
    let f64_plan = plan_ok(&offsets, &shape(32, 2, DType::F64), &limits(8192));
    assert_eq!(f32_plan.len(), 2000usize.div_ceil(8192 / 128));
    assert_eq!(u8_plan.len(), 2000usize.div_ceil(8192 / 32));
    // f64 is converted to f32 before upload: planned like f32.
    assert_eq!(f64_plan, f32_plan);
    assert_eq!(device_bytes_per_element(DType::F64), 4);
}

#[test]
fn row_limit_splits_too() {
    let offsets = [0, 10, 25];
    let lim = ChunkLimits {
        max_binding_bytes: 1 << 20,
        max_rows: 4,
    };
    let plan = plan_ok(&offsets, &shape(4, 2, DType::F32), &lim);
    assert_eq!(plan.len(), 3 + 4);
}

#[test]
fn tiny_caps_give_many_chunks_random_batches() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for case in 0..200 {
        let images = rng.random_range(0..40);
        let mut offsets = vec![0usize];
        for _ in 0..images {
            let len = match rng.random_range(0..4) {
                0 => 0,
                1 => rng.random_range(0..5),
                2 => rng.random_range(0..100),
                _ => rng.random_range(0..3000),
            };
            offsets.push(offsets.last().unwrap() + len);
        }
        let dtype = [DType::F32, DType::U8, DType::F64][case % 3];
        let dim = rng.random_range(1..40);
        let clusters = rng.random_range(1..20);
        let cap = (rng.random_range(4096..20_000u64)) & !3;
        let s = shape(dim, clusters, dtype);
        let l = limits(cap);
        match plan_chunks(&offsets, &s, &l) {
            Ok(plan) => {
                check_plan(&offsets, &s, &l, &plan);
                let total_bytes =
                    ChunkBuffers::new(&s, images as u64, *offsets.last().unwrap() as u64);
                if total_bytes.largest() > cap {
                    assert!(plan.len() > 1, "case {case}: over the cap in one chunk");
                }
            }
            Err(e) => panic!("case {case}: {e}"),
        }
    }
}

#[test]
fn a_codebook_larger_than_a_binding_is_refused() {
    // 64 × 32 × 4 = 8192 bytes of centroids > 4096.
    let err = plan_chunks(&[0, 1], &shape(32, 64, DType::F32), &limits(4096)).unwrap_err();
    assert!(matches!(err, VladError::BackendUnavailable(_)), "{err}");
}

// ---------------------------------------------------------------------------
// Buffer pool and timestamps (need a device, not the stages)
// ---------------------------------------------------------------------------

#[test]
fn pool_reuses_and_grows_by_powers_of_two() {
    let ctx = gpu_or_skip!();
    let mut pool = BufferPool::new(&ctx);
    let a = pool.buffer(&ctx, Role::Blocks, 1000).unwrap();
    assert_eq!(a.size(), 1024);
    assert_eq!(pool.allocations(), 1);
    let b = pool.buffer(&ctx, Role::Blocks, 1024).unwrap();
    let c = pool.buffer(&ctx, Role::Blocks, 10).unwrap();
    assert_eq!((b.size(), c.size()), (1024, 1024));
    assert_eq!(pool.allocations(), 1, "a fitting request must not allocate");
    let d = pool.buffer(&ctx, Role::Blocks, 1025).unwrap();
    assert_eq!(d.size(), 2048);
    assert_eq!(pool.allocations(), 2);
    // Roles and slots are separate buffers.
    pool.buffer(&ctx, Role::Descriptors(0), 100).unwrap();
    pool.buffer(&ctx, Role::Descriptors(1), 100).unwrap();
    assert_eq!(pool.allocations(), 4);
    assert_eq!(pool.held_bytes(), 2048 + 128 + 128);
    // Staging buffers can be mapped for reading; storage ones bound.
    let staging = pool.buffer(&ctx, Role::ReadBlocks, 64).unwrap();
    assert!(staging.usage().contains(wgpu::BufferUsages::MAP_READ));
    assert!(d.usage().contains(wgpu::BufferUsages::STORAGE));
    // Capped at one binding.
    let cap = ctx.max_binding_bytes();
    assert_eq!(pooled_size(cap - 4, cap), cap);
}

#[test]
fn pooled_buffers_carry_data_through_a_round_trip() {
    let ctx = gpu_or_skip!();
    let mut pool = BufferPool::new(&ctx);
    let data: Vec<u32> = (0..300).map(|i| i * 7 + 1).collect();
    let buf = pool.buffer(&ctx, Role::Keys, 1200).unwrap();
    ctx.queue.write_buffer(&buf, 0, bytemuck::cast_slice(&data));
    let back: Vec<u32> = ctx
        .read_back("pool round trip", &buf, 0, data.len())
        .unwrap();
    assert_eq!(back, data);
}

#[test]
fn timestamps_name_each_stage_or_are_absent() {
    let ctx = gpu_or_skip!();
    let timer = GpuTimer::new(&ctx).unwrap();
    let inside = ctx.features.contains(
        wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS,
    );
    assert_eq!(timer.is_some(), inside);
    let src = ctx.upload("timing src", &vec![1u32; 1 << 16]).unwrap();
    let dst = ctx.storage_buffer("timing dst", 4 << 16).unwrap();
    // Both pipeline slots, the second with its map asked for in advance.
    for slot in [0, 1] {
        let mut encoder = ctx.encoder("timing");
        let mut clock = StageClock::new(timer.as_ref(), slot);
        clock.start(&mut encoder);
        encoder.copy_buffer_to_buffer(&src, 0, &dst, 0, 4 << 16);
        clock.lap(&mut encoder, "upload");
        encoder.copy_buffer_to_buffer(&dst, 0, &src, 0, 4 << 16);
        clock.lap(&mut encoder, "readback");
        clock.finish(&mut encoder);
        ctx.submit_and_wait("timing", encoder).unwrap();
        if slot == 1 {
            clock.request_map();
        }
        let mut times = StageTimes::new();
        clock.collect(&ctx, &mut times).unwrap();
        if inside {
            let names: Vec<&str> = times.iter().map(|(n, _)| n).collect();
            assert_eq!(names, vec!["upload", "readback"]);
            for (name, s) in times.iter() {
                assert!(s.is_finite() && (0.0..10.0).contains(&s), "{name}: {s}");
            }
        } else {
            assert_eq!(times.iter().count(), 0);
        }
    }
}

// ---------------------------------------------------------------------------
// End to end under a tiny cap (needs the stages)
// ---------------------------------------------------------------------------

const CAP: u64 = 4096;

#[test]
fn tiny_cap_many_chunks_and_a_split_image_match_unchunked_and_reference() {
    let _ctx = gpu_or_skip!();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (k, f) = (4, 8);
    let codebook = random_codebook(&mut rng, k, f);
    // Small images, an empty one, and one of 1000 rows (> 128 rows per
    // 4096-byte binding).
    let lens = [3usize, 0, 40, 1000, 7, 60, 0, 90];
    let mut offsets = vec![0usize];
    for len in lens {
        offsets.push(offsets.last().unwrap() + len);
    }
    let n = *offsets.last().unwrap();
    let rows = Array2::from_shape_fn((n, f), |_| rng.random_range(-1.0f32..1.0));

    let plan = plan_chunks(&offsets, &shape(f, k, DType::F32), &limits(CAP)).unwrap();
    assert!(
        plan.len() >= 10,
        "the cap must force many chunks: {}",
        plan.len()
    );
    assert!(plan.iter().any(|c| c.part.is_some()), "and a split image");

    for norm in ["ssr,l2", "none", "mass,intra,l2"] {
        let norm: Normalization = norm.parse().unwrap();
        let chunked = Encoder::builder(codebook.clone())
            .normalization(norm.clone())
            .backend(Backend::Gpu)
            .gpu_max_binding_bytes(Some(CAP))
            .build();
        let whole = Encoder::builder(codebook.clone())
            .normalization(norm.clone())
            .backend(Backend::Gpu)
            .build();
        let batch = Batch::ragged(rows.view(), &offsets).unwrap();
        let a = chunked.encode_batch(&batch).unwrap();
        let b = whole.encode_batch(&batch).unwrap();
        assert_eq!(a.report.backend, Backend::Gpu);
        let check = verify(
            &codebook,
            &batch,
            &Assignment::Hard,
            &norm,
            a.vlad.view(),
            &a.labels,
        );
        assert!(check.passed(), "{norm}: chunked vs reference: {check:?}");
        let check = verify(
            &codebook,
            &batch,
            &Assignment::Hard,
            &norm,
            b.vlad.view(),
            &b.labels,
        );
        assert!(check.passed(), "{norm}: unchunked vs reference: {check:?}");
        assert_eq!(a.labels, b.labels, "{norm}: chunking changed labels");
        let diff = a
            .vlad
            .iter()
            .zip(b.vlad.iter())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        let bound = if norm.ends_normalized() { 2e-5 } else { 1e-3 };
        assert!(
            diff <= bound,
            "{norm}: chunked vs unchunked differ by {diff}"
        );
        // Empty images stay exactly zero.
        assert!(a.vlad.row(1).iter().all(|&x| x == 0.0));
        assert!(a.vlad.row(6).iter().all(|&x| x == 0.0));
        // Chunked runs are reproducible too.
        let again = chunked.encode_batch(&batch).unwrap();
        assert_eq!(
            again.vlad, a.vlad,
            "{norm}: chunked run not bitwise reproducible"
        );
    }
}

#[test]
fn tiny_cap_u8_split_image_and_given_labels() {
    let _ctx = gpu_or_skip!();
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let (k, f) = (3, 13); // odd F: packed u8 rows straddle words
    let c = Array2::from_shape_fn((k, f), |_| rng.random_range(0.0f32..255.0));
    let codebook = Codebook::new(c.view()).unwrap();
    let images = Array3::from_shape_fn((2, 700, f), |_| rng.random_range(0u8..=255));
    let norm = Normalization::default();
    let flat = images.view().into_shape_with_order((1400, f)).unwrap();
    let offsets = [0, 700, 1400];
    let plan = plan_chunks(&offsets, &shape(f, k, DType::U8), &limits(CAP)).unwrap();
    assert!(plan.iter().any(|c| c.part.is_some()));

    let encoder = Encoder::builder(codebook.clone())
        .backend(Backend::Gpu)
        .gpu_max_binding_bytes(Some(CAP))
        .build();
    let batch = Batch::ragged(flat, &offsets).unwrap();
    let out = encoder.encode_batch(&batch).unwrap();
    let check = verify(
        &codebook,
        &batch,
        &Assignment::Hard,
        &norm,
        out.vlad.view(),
        &out.labels,
    );
    assert!(check.passed(), "u8 chunked: {check:?}");

    let labels: Vec<u32> = (0..1400).map(|i| (i * 7 % k) as u32).collect();
    let given = Batch::ragged(flat, &offsets)
        .unwrap()
        .with_labels(&labels, k)
        .unwrap();
    let out = encoder.encode_batch(&given).unwrap();
    assert_eq!(out.labels, labels);
    let check = verify(
        &codebook,
        &given,
        &Assignment::Hard,
        &norm,
        out.vlad.view(),
        &out.labels,
    );
    assert!(check.passed(), "u8 chunked with given labels: {check:?}");
}
