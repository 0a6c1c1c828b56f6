//! Running a batch through the five stages, chunk by chunk: upload, record
//! every stage of a chunk into one command encoder, submit once, read back.
//!
//! While the device works on chunk `i`, the host converts and uploads chunk
//! `i + 1` into the other of two pooled input slots, so host preparation
//! overlaps device compute. Pieces of an image too large for one binding are
//! aggregated raw on the device and summed on the host in chunk order, in
//! f64, then normalized — a fixed order, so the output stays bitwise
//! reproducible.

use std::sync::mpsc;
use std::time::Instant;

use crate::element::{DType, Element};
use crate::error::{Result, VladError};
use crate::gpu::assign::{AssignJob, AssignStage};
use crate::gpu::assign_coop::{AssignCoopStage, TensorCores};
use crate::gpu::chunking::{Chunk, ChunkBuffers, ChunkLimits, ChunkShape, key_bits, plan_chunks};
use crate::gpu::context::GpuContext;
use crate::gpu::normalize::{NormalizeJob, NormalizeStage};
use crate::gpu::pool::{BufferPool, Role, Slot};
use crate::gpu::radix_sort::{RadixSortStage, SortJob, SortedIn};
use crate::gpu::residual::{ResidualJob, ResidualStage};
use crate::gpu::segmented_scan::{ScanJob, SegmentedScanStage};
use crate::gpu::timing::{COMPUTE_GROUP, GpuTimer, StageClock};
use crate::normalization::Normalization;
use crate::report::StageTimes;

/// The five compiled stages.
pub struct CompiledStages {
    /// Nearest-centroid labels and sort keys.
    pub assign: AssignStage,
    /// The tensor-core variant of `assign`, when asked for, available and
    /// checked on this device; it then runs instead of `assign`.
    pub assign_coop: Option<AssignCoopStage>,
    /// Whether tensor cores are used, and if asked for but not, why.
    pub tensor_cores: TensorCores,
    /// Stable key–value radix sort.
    pub sort: RadixSortStage,
    /// Segmented sums over runs of equal keys.
    pub scan: SegmentedScanStage,
    /// Sums into the `(t, k, f)` layout, with counts.
    pub residual: ResidualStage,
    /// Normalization steps.
    pub normalize: NormalizeStage,
}

impl CompiledStages {
    /// The name timings give the assignment stage: `"assign"`, or
    /// `"assign (tensor cores)"` when the tensor-core variant runs.
    pub fn assign_stage_name(&self) -> &'static str {
        match self.assign_coop {
            Some(_) => crate::gpu::assign_coop::STAGE_NAME,
            None => "assign",
        }
    }

    /// Compile every stage's shaders for `ctx`.
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        let (assign_coop, tensor_cores) = crate::gpu::assign_coop::select(ctx);
        Ok(CompiledStages {
            assign: AssignStage::new(ctx)?,
            assign_coop,
            tensor_cores,
            sort: RadixSortStage::new(ctx)?,
            scan: SegmentedScanStage::new(ctx)?,
            residual: ResidualStage::new(ctx)?,
            normalize: NormalizeStage::new(ctx)?,
        })
    }
}

/// The codebook as the stages read it.
pub struct DeviceCodebook {
    /// `K × F` f32 centroids.
    pub centroids: wgpu::Buffer,
    /// `K` f32 squared norms.
    pub norms: wgpu::Buffer,
    /// K.
    pub clusters: usize,
    /// F.
    pub dim: usize,
}

/// What to compute for every chunk.
#[derive(Copy, Clone, Debug)]
pub enum Work<'a> {
    /// Labels only (assignment).
    Assign,
    /// Per-image blocks, and the labels they came from.
    Aggregate {
        /// Steps applied to each finished image.
        normalization: &'a Normalization,
        /// Sum `v − c` (VLAD) or plain `v` (k-means update).
        subtract_centroid: bool,
        /// Also return the per-block counts.
        want_counts: bool,
    },
}

/// A batch as the pipeline reads it: row-major descriptors, CSR offsets,
/// optional given labels.
pub struct Input<'a, E: Element> {
    /// `N × F` descriptors, row-major.
    pub rows: &'a [E],
    /// F.
    pub dim: usize,
    /// `T + 1` CSR offsets.
    pub offsets: &'a [usize],
    /// Given labels (skip assignment), `N` of them.
    pub labels: Option<&'a [u32]>,
}

/// What comes back.
#[derive(Clone, Debug, Default)]
pub struct Output {
    /// `T × K × F` f32 blocks (empty for [`Work::Assign`]).
    pub blocks: Vec<f32>,
    /// `T × K` counts (only when asked for).
    pub counts: Vec<u32>,
    /// `N` labels, computed or given.
    pub labels: Vec<u32>,
}

/// Host vectors reused across chunks and calls.
#[derive(Default)]
pub struct HostScratch {
    converted: Vec<f32>,
    keys: Vec<u32>,
    values: Vec<u32>,
    offsets: Vec<u32>,
    piece: Vec<f32>,
    piece_counts: Vec<u32>,
}

/// Everything one run borrows from the session.
pub struct Session<'s> {
    /// The device.
    pub ctx: &'s GpuContext,
    /// The compiled stages.
    pub stages: &'s CompiledStages,
    /// Stage timestamps, when the adapter has them.
    pub timer: Option<&'s GpuTimer>,
    /// Reused device buffers.
    pub pool: &'s mut BufferPool,
    /// Reused host vectors.
    pub scratch: &'s mut HostScratch,
}

/// A chunk's inputs, on the device.
struct Uploaded {
    chunk_index: usize,
    slot: Slot,
    descriptors: wgpu::Buffer,
    offsets: wgpu::Buffer,
    /// Keys and row indices built from given labels.
    given: Option<(wgpu::Buffer, wgpu::Buffer)>,
}

/// Staging buffers a recorded chunk copies its results into.
struct Pending {
    blocks: Option<wgpu::Buffer>,
    counts: Option<wgpu::Buffer>,
    labels: Option<wgpu::Buffer>,
}

/// Run `input` through the stages chunk by chunk.
pub fn run<E: Element>(
    session: &mut Session<'_>,
    codebook: &DeviceCodebook,
    input: &Input<'_, E>,
    work: Work<'_>,
    times: &mut StageTimes,
) -> Result<Output> {
    let shape = ChunkShape {
        dim: codebook.dim,
        clusters: codebook.clusters,
        dtype: E::DTYPE,
    };
    if input.dim != codebook.dim {
        return Err(VladError::DimensionMismatch(format!(
            "descriptors have F = {} but centroids have F = {}",
            input.dim, codebook.dim
        )));
    }
    let images = input.offsets.len().saturating_sub(1);
    let rows = input.offsets.last().copied().unwrap_or(0);
    if input.rows.len() != rows * input.dim {
        return Err(VladError::DimensionMismatch(format!(
            "{} values are not {rows} rows of F = {}",
            input.rows.len(),
            input.dim
        )));
    }
    let plan = plan_chunks(
        input.offsets,
        &shape,
        &ChunkLimits::for_context(session.ctx),
    )?;
    let block = codebook.clusters * codebook.dim;
    let mut output = Output {
        blocks: match work {
            Work::Assign => Vec::new(),
            Work::Aggregate { .. } => vec![0.0; images * block],
        },
        counts: match work {
            Work::Aggregate {
                want_counts: true, ..
            } => vec![0; images * codebook.clusters],
            _ => Vec::new(),
        },
        labels: match input.labels {
            Some(given) => given.to_vec(),
            None => vec![0; rows],
        },
    };
    // Raw sums and counts of the pieces of a split image so far.
    let mut piece_sums: Vec<f64> = Vec::new();
    let mut piece_counts: Vec<u64> = Vec::new();

    let mut prefetched: Option<Uploaded> = None;
    let mut next_slot: Slot = 0;
    for (index, chunk) in plan.iter().enumerate() {
        if chunk.row_count() == 0 {
            // Only empty whole images: their rows are already zero.
            continue;
        }
        let uploaded = match prefetched.take() {
            Some(u) if u.chunk_index == index => u,
            _ => {
                let started = Instant::now();
                let u = upload(session, &shape, input, &plan, index, next_slot, work)?;
                times.add("upload", started.elapsed().as_secs_f64());
                u
            }
        };
        next_slot = 1 - uploaded.slot;

        let mut clock = StageClock::new(session.timer);
        let (encoder, pending) = record::<E>(
            session, codebook, &shape, chunk, &uploaded, work, &mut clock,
        )?;
        let started = Instant::now();
        let submission = session.ctx.checked("submitting a chunk", || {
            session.ctx.queue.submit([encoder.finish()])
        })?;

        // Overlap: prepare the next non-empty chunk while this one runs.
        if let Some(next) = (index + 1..plan.len()).find(|&j| plan[j].row_count() > 0) {
            let upload_started = Instant::now();
            prefetched = Some(upload(
                session, &shape, input, &plan, next, next_slot, work,
            )?);
            times.add("upload", upload_started.elapsed().as_secs_f64());
        }

        session
            .ctx
            .device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(submission),
                timeout: None,
            })
            .map_err(|e| VladError::Gpu(format!("waiting for a chunk: {e}")))?;
        session.ctx.check_health()?;
        if !clock.is_timing() {
            times.add(COMPUTE_GROUP, started.elapsed().as_secs_f64());
        }

        let started = Instant::now();
        collect(
            session,
            codebook,
            chunk,
            work,
            pending,
            &mut output,
            &mut piece_sums,
            &mut piece_counts,
        )?;
        times.add("readback", started.elapsed().as_secs_f64());
        clock.collect(session.ctx, times)?;

        if let (Some(_), Work::Aggregate { normalization, .. }) = (chunk.part, work) {
            if chunk.completes_image() {
                let started = Instant::now();
                finish_split_image(
                    session.scratch,
                    codebook,
                    chunk.images.start,
                    normalization,
                    &piece_sums,
                    &piece_counts,
                    &mut output,
                );
                times.add("combine", started.elapsed().as_secs_f64());
            }
        }
    }
    Ok(output)
}

/// Write chunk `index`'s descriptors, offsets and (given labels) keys into
/// slot `slot`'s pooled buffers.
fn upload<E: Element>(
    session: &mut Session<'_>,
    shape: &ChunkShape,
    input: &Input<'_, E>,
    plan: &[Chunk],
    index: usize,
    slot: Slot,
    work: Work<'_>,
) -> Result<Uploaded> {
    let chunk = &plan[index];
    let ctx = session.ctx;
    let sizes = ChunkBuffers::new(shape, chunk.image_count() as u64, chunk.row_count() as u64);
    let descriptors = session
        .pool
        .buffer(ctx, Role::Descriptors(slot), sizes.descriptors)?;
    let offsets = session
        .pool
        .buffer(ctx, Role::ImageOffsets(slot), sizes.offsets)?;
    let given = match (input.labels, work) {
        (Some(_), Work::Aggregate { .. }) => Some((
            session
                .pool
                .buffer(ctx, Role::GivenKeys(slot), sizes.per_row)?,
            session
                .pool
                .buffer(ctx, Role::GivenValues(slot), sizes.per_row)?,
        )),
        _ => None,
    };
    let scratch = &mut *session.scratch;
    let dim = input.dim;
    let rows = &input.rows[chunk.rows.start * dim..chunk.rows.end * dim];

    // Local CSR offsets of the chunk's images.
    scratch.offsets.clear();
    match chunk.part {
        Some(_) => scratch
            .offsets
            .extend([0, to_u32(chunk.row_count(), "rows in a chunk")?]),
        None => {
            for &o in &input.offsets[chunk.images.start..=chunk.images.end] {
                scratch
                    .offsets
                    .push(to_u32(o - chunk.rows.start, "rows in a chunk")?);
            }
        }
    }

    if let (Some(labels), Some(_)) = (input.labels, &given) {
        // Keys `local image · K + label`, values the local row: what the
        // assignment would have written.
        scratch.keys.clear();
        scratch.values.clear();
        let clusters = shape.clusters as u64;
        for t in chunk.images.clone() {
            let local_image = (t - chunk.images.start) as u64;
            let first = input.offsets[t].max(chunk.rows.start);
            let end = input.offsets[t + 1].min(chunk.rows.end);
            for (row, &label) in (first..end).zip(&labels[first..end]) {
                scratch.keys.push(to_u32_u64(
                    local_image * clusters + label as u64,
                    "a sort key",
                )?);
                scratch
                    .values
                    .push(to_u32(row - chunk.rows.start, "rows in a chunk")?);
            }
        }
    }

    ctx.checked("uploading a chunk", || {
        let queue = &ctx.queue;
        match E::DTYPE {
            DType::F32 => queue.write_buffer(&descriptors, 0, bytemuck::cast_slice(rows)),
            DType::U8 => {
                // Packed four per word: the bytes as they are, the last
                // partial word padded with zeros.
                let bytes: &[u8] = bytemuck::cast_slice(rows);
                let whole = bytes.len() & !3;
                if whole > 0 {
                    queue.write_buffer(&descriptors, 0, &bytes[..whole]);
                }
                if whole < bytes.len() {
                    let mut tail = [0u8; 4];
                    tail[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
                    queue.write_buffer(&descriptors, whole as u64, &tail);
                }
            }
            DType::F64 => {
                scratch.converted.clear();
                scratch.converted.extend(rows.iter().map(|v| v.to_f32()));
                queue.write_buffer(&descriptors, 0, bytemuck::cast_slice(&scratch.converted));
            }
        }
        queue.write_buffer(&offsets, 0, bytemuck::cast_slice(&scratch.offsets));
        if let Some((keys, values)) = &given {
            queue.write_buffer(keys, 0, bytemuck::cast_slice(&scratch.keys));
            queue.write_buffer(values, 0, bytemuck::cast_slice(&scratch.values));
        }
    })?;
    Ok(Uploaded {
        chunk_index: index,
        slot,
        descriptors,
        offsets,
        given,
    })
}

/// Record every stage of one chunk, and the copies of its results to
/// staging buffers, into one command encoder.
#[allow(clippy::too_many_arguments)]
fn record<E: Element>(
    session: &mut Session<'_>,
    codebook: &DeviceCodebook,
    shape: &ChunkShape,
    chunk: &Chunk,
    uploaded: &Uploaded,
    work: Work<'_>,
    clock: &mut StageClock<'_>,
) -> Result<(wgpu::CommandEncoder, Pending)> {
    let ctx = session.ctx;
    let stages = session.stages;
    let pool = &mut *session.pool;
    let rows = to_u32(chunk.row_count(), "rows in a chunk")?;
    let images = to_u32(chunk.image_count(), "images in a chunk")?;
    let clusters = to_u32(codebook.clusters, "K")?;
    let dim = to_u32(codebook.dim, "F")?;
    let sizes = ChunkBuffers::new(shape, images as u64, rows as u64);
    let u8_input = E::DTYPE == DType::U8;

    let mut encoder = ctx.encoder("vlad chunk");
    clock.start(&mut encoder);
    let mut pending = Pending {
        blocks: None,
        counts: None,
        labels: None,
    };

    let (keys, values) = match &uploaded.given {
        Some((keys, values)) => (keys.clone(), values.clone()),
        None => {
            let labels = pool.buffer(ctx, Role::Labels, sizes.per_row)?;
            let keys = pool.buffer(ctx, Role::Keys, sizes.per_row)?;
            let values = pool.buffer(ctx, Role::Values, sizes.per_row)?;
            let job = AssignJob {
                descriptors: &uploaded.descriptors,
                u8_input,
                centroids: &codebook.centroids,
                centroid_norms: &codebook.norms,
                image_offsets: &uploaded.offsets,
                rows,
                dim,
                clusters,
                images,
                labels: &labels,
                keys: &keys,
                values: &values,
            };
            match &stages.assign_coop {
                Some(coop) => coop.record(ctx, &mut encoder, &job)?,
                None => stages.assign.record(ctx, &mut encoder, &job)?,
            }
            clock.lap(&mut encoder, stages.assign_stage_name());
            let staging = pool.buffer(ctx, Role::ReadLabels, sizes.per_row)?;
            encoder.copy_buffer_to_buffer(&labels, 0, &staging, 0, sizes.per_row);
            pending.labels = Some(staging);
            (keys, values)
        }
    };

    let Work::Aggregate {
        normalization,
        subtract_centroid,
        want_counts,
    } = work
    else {
        clock.lap(&mut encoder, "readback");
        clock.finish(&mut encoder);
        return Ok((encoder, pending));
    };

    let alt_keys = pool.buffer(ctx, Role::AltKeys, sizes.per_row)?;
    let alt_values = pool.buffer(ctx, Role::AltValues, sizes.per_row)?;
    let sorted_in = stages.sort.record(
        ctx,
        &mut encoder,
        &SortJob {
            keys: &keys,
            values: &values,
            alt_keys: &alt_keys,
            alt_values: &alt_values,
            len: rows,
            key_bits: key_bits(chunk.image_count(), codebook.clusters),
        },
    )?;
    clock.lap(&mut encoder, "sort");
    let (sorted_keys, sorted_rows) = match sorted_in {
        SortedIn::Primary => (&keys, &values),
        SortedIn::Alternate => (&alt_keys, &alt_values),
    };

    let segments = stages.scan.record(
        ctx,
        &mut encoder,
        &ScanJob {
            sorted_keys,
            sorted_rows,
            descriptors: &uploaded.descriptors,
            u8_input,
            centroids: &codebook.centroids,
            subtract_centroid,
            rows,
            dim,
            clusters,
            images,
        },
    )?;
    clock.lap(&mut encoder, "scan");

    let blocks = pool.buffer(ctx, Role::Blocks, sizes.blocks)?;
    let counts = pool.buffer(ctx, Role::Counts, sizes.counts)?;
    stages.residual.record(
        ctx,
        &mut encoder,
        &ResidualJob {
            segments: &segments,
            blocks: &blocks,
            counts: &counts,
            images,
            clusters,
            dim,
        },
    )?;
    clock.lap(&mut encoder, "residual");

    // A piece of a split image stays raw: it is normalized on the host once
    // all its pieces are summed.
    if chunk.part.is_none() && !normalization.steps().is_empty() {
        stages.normalize.record(
            ctx,
            &mut encoder,
            &NormalizeJob {
                blocks: &blocks,
                counts: &counts,
                images,
                clusters,
                dim,
                normalization,
            },
        )?;
        clock.lap(&mut encoder, "normalize");
    }

    let staging = pool.buffer(ctx, Role::ReadBlocks, sizes.blocks)?;
    encoder.copy_buffer_to_buffer(&blocks, 0, &staging, 0, sizes.blocks);
    pending.blocks = Some(staging);
    if want_counts || chunk.part.is_some() {
        let staging = pool.buffer(ctx, Role::ReadCounts, sizes.counts)?;
        encoder.copy_buffer_to_buffer(&counts, 0, &staging, 0, sizes.counts);
        pending.counts = Some(staging);
    }
    clock.lap(&mut encoder, "readback");
    clock.finish(&mut encoder);
    Ok((encoder, pending))
}

/// Copy a finished chunk's results out of the staging buffers: straight
/// into the output for whole images, into the running f64 sums for a piece.
#[allow(clippy::too_many_arguments)]
fn collect(
    session: &mut Session<'_>,
    codebook: &DeviceCodebook,
    chunk: &Chunk,
    work: Work<'_>,
    pending: Pending,
    output: &mut Output,
    piece_sums: &mut Vec<f64>,
    piece_counts: &mut Vec<u64>,
) -> Result<()> {
    let block = codebook.clusters * codebook.dim;
    let k = codebook.clusters;
    let scratch = &mut *session.scratch;
    let mut targets: Vec<(&wgpu::Buffer, &mut [u8])> = Vec::new();
    if let Some(staging) = &pending.labels {
        targets.push((
            staging,
            bytemuck::cast_slice_mut(&mut output.labels[chunk.rows.clone()]),
        ));
    }
    let want_counts = matches!(
        work,
        Work::Aggregate {
            want_counts: true,
            ..
        }
    );
    match chunk.part {
        None => {
            let images = chunk.images.clone();
            if let Some(staging) = &pending.blocks {
                targets.push((
                    staging,
                    bytemuck::cast_slice_mut(
                        &mut output.blocks[images.start * block..images.end * block],
                    ),
                ));
            }
            if let (Some(staging), true) = (&pending.counts, want_counts) {
                targets.push((
                    staging,
                    bytemuck::cast_slice_mut(&mut output.counts[images.start * k..images.end * k]),
                ));
            }
            read_staging(session.ctx, targets)
        }
        Some(part) => {
            scratch.piece.resize(block, 0.0);
            scratch.piece_counts.resize(k, 0);
            if let Some(staging) = &pending.blocks {
                targets.push((staging, bytemuck::cast_slice_mut(&mut scratch.piece[..])));
            }
            if let Some(staging) = &pending.counts {
                targets.push((
                    staging,
                    bytemuck::cast_slice_mut(&mut scratch.piece_counts[..]),
                ));
            }
            read_staging(session.ctx, targets)?;
            if part.index == 0 {
                piece_sums.clear();
                piece_sums.resize(block, 0.0);
                piece_counts.clear();
                piece_counts.resize(k, 0);
            }
            if pending.blocks.is_some() {
                for (sum, &x) in piece_sums.iter_mut().zip(&scratch.piece) {
                    *sum += x as f64;
                }
                for (sum, &n) in piece_counts.iter_mut().zip(&scratch.piece_counts) {
                    *sum += n as u64;
                }
            }
            Ok(())
        }
    }
}

/// The last piece of a split image is in: round the f64 sums to f32,
/// normalize on the host, write the image's row (and counts).
fn finish_split_image(
    scratch: &mut HostScratch,
    codebook: &DeviceCodebook,
    image: usize,
    normalization: &Normalization,
    piece_sums: &[f64],
    piece_counts: &[u64],
    output: &mut Output,
) {
    let (k, f) = (codebook.clusters, codebook.dim);
    let block = k * f;
    scratch.piece_counts.clear();
    scratch
        .piece_counts
        .extend(piece_counts.iter().map(|&n| n.min(u32::MAX as u64) as u32));
    let row = &mut output.blocks[image * block..(image + 1) * block];
    for (y, &s) in row.iter_mut().zip(piece_sums) {
        *y = s as f32;
    }
    crate::cpu::normalize::normalize_row(row, &scratch.piece_counts, k, f, normalization);
    if !output.counts.is_empty() {
        output.counts[image * k..(image + 1) * k].copy_from_slice(&scratch.piece_counts);
    }
}

/// Map every staging buffer of `targets`, wait once, copy each into its
/// destination (whose length is the number of bytes to read), unmap.
fn read_staging(ctx: &GpuContext, targets: Vec<(&wgpu::Buffer, &mut [u8])>) -> Result<()> {
    let targets: Vec<_> = targets.into_iter().filter(|(_, d)| !d.is_empty()).collect();
    if targets.is_empty() {
        return Ok(());
    }
    let (tx, rx) = mpsc::channel();
    for (i, (staging, dst)) in targets.iter().enumerate() {
        let tx = tx.clone();
        staging.map_async(wgpu::MapMode::Read, 0..dst.len() as u64, move |r| {
            let _ = tx.send((i, r));
        });
    }
    drop(tx);
    let waited = ctx
        .device
        .poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: None,
        })
        .map_err(|e| VladError::Gpu(format!("mapping results: {e}")));
    let mut mapped = vec![false; targets.len()];
    let mut failure = waited.err();
    for _ in 0..targets.len() {
        match rx.recv() {
            Ok((i, Ok(()))) => mapped[i] = true,
            Ok((_, Err(e))) => {
                failure.get_or_insert(VladError::Gpu(format!("mapping results: {e}")));
            }
            Err(_) => {
                failure.get_or_insert(VladError::Gpu("mapping results: no answer".into()));
                break;
            }
        }
    }
    for ((staging, dst), ok) in targets.into_iter().zip(mapped) {
        if !ok {
            continue;
        }
        if failure.is_none() {
            match staging.get_mapped_range(0..dst.len() as u64) {
                Ok(view) => dst.copy_from_slice(&view),
                Err(e) => failure = Some(VladError::Gpu(format!("reading results: {e}"))),
            }
        }
        staging.unmap();
    }
    match failure {
        Some(e) => Err(e),
        None => ctx.check_health(),
    }
}

fn to_u32(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| VladError::Gpu(format!("{what} ({n}) exceeds u32")))
}

fn to_u32_u64(n: u64, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| VladError::Gpu(format!("{what} ({n}) exceeds u32")))
}
