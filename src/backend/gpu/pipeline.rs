//! Running a batch through the five stages, chunk by chunk: upload, record
//! every stage of a chunk into one command encoder, submit once, read back.
//!
//! Chunks alternate between two slots (staging and input buffers). Chunk
//! `i` is submitted, then — while the device computes it — the host reads
//! back chunk `i − 1` (one wait, which also maps every staging buffer that
//! chunk used) and fills the staging of chunk `i + 1`, in parallel, straight
//! from the caller's slice; the device copies it in at the start of that
//! chunk's own submission (on a software adapter, which computes on the
//! host's own cores, chunks run one after the other instead). Large batches
//! are cut into chunks of about
//! [`OVERLAP_CHUNK_BYTES`](crate::backend::gpu::chunking::OVERLAP_CHUNK_BYTES) of
//! descriptors so that the three overlap. Pieces of an image too large for one binding are
//! aggregated raw on the device and summed on the host in chunk order, in
//! f64, then normalized — a fixed order, so the output stays bitwise
//! reproducible.
//!
//! The order of those steps is [`crate::backend::gpu::chunk_loop`]'s, which the soft
//! route ([`crate::backend::gpu::soft_pipeline`]) shares, with this file's
//! [`upload`], [`submit_chunk`] and [`wait_chunk`].

use std::time::Instant;

use crate::backend::gpu::chunk_loop::{self, ChunkSteps};
use crate::backend::gpu::chunking::{
    Chunk, ChunkBuffers, ChunkLimits, ChunkShape, plan_chunks, sort_by_label, split_for_overlap,
};
use crate::backend::gpu::context::GpuContext;
use crate::backend::gpu::host_memory;
use crate::backend::gpu::pool::{BufferPool, Role, Slot};
use crate::backend::gpu::stages::assign::{AssignJob, AssignStage};
use crate::backend::gpu::stages::assign_coop::{AssignCoopStage, TensorCores};
use crate::backend::gpu::stages::normalize::{NormalizeJob, NormalizeStage};
use crate::backend::gpu::stages::radix_sort::{RadixSortStage, SortJob, SortedIn};
use crate::backend::gpu::stages::residual::{ResidualJob, ResidualStage};
use crate::backend::gpu::stages::segmented_scan::{ScanJob, SegmentedScanStage};
use crate::backend::gpu::staging::{
    PIECE, ReadKind, StagingBuffer, StagingSet, fill_upload, read_into,
};
use crate::backend::gpu::timing::{COMPUTE_GROUP, GpuTimer, StageClock};
use crate::error::{Result, VladError};
use crate::model::element::{DType, Element};
use crate::model::normalization::Normalization;
use crate::model::report::StageTimes;

/// The stage name of the host time spent recording each chunk's commands.
pub const SETUP_STAGE: &str = "setup";

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
            Some(_) => crate::backend::gpu::stages::assign_coop::STAGE_NAME,
            None => "assign",
        }
    }

    /// Record the assignment of `job` (the tensor-core variant when it was
    /// selected, else the plain one) and time it under its stage name.
    pub(crate) fn record_assign(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        clock: &mut StageClock<'_>,
        job: &AssignJob<'_>,
    ) -> Result<()> {
        match &self.assign_coop {
            Some(coop) => coop.record(ctx, encoder, job)?,
            None => self.assign.record(ctx, encoder, job)?,
        }
        clock.lap(encoder, self.assign_stage_name());
        Ok(())
    }

    /// Compile every stage's shaders for `ctx`.
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        let (assign_coop, tensor_cores) = crate::backend::gpu::stages::assign_coop::select(ctx);
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
    keys: Vec<u32>,
    values: Vec<u32>,
    offsets: Vec<u32>,
    piece: Vec<f32>,
    piece_counts: Vec<u32>,
    /// A split image's counts as the f32 mass the host normalize reads.
    piece_mass: Vec<f32>,
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
    /// Reused host-mappable staging buffers.
    pub staging: &'s mut StagingSet,
    /// Overlap upload, compute and read-back of consecutive chunks (off on
    /// software adapters, whose "device" is the host's own cores).
    pub overlap: bool,
}

/// A chunk's inputs: descriptors in the slot's staging buffer (copied to
/// the device by the chunk's own submission), the rest already written.
pub(crate) struct Uploaded {
    /// The slot.
    pub(crate) slot: Slot,
    /// The descriptors, as the device reads them, to be copied in.
    pub(crate) staging: StagingBuffer,
    /// Where they are copied to.
    pub(crate) descriptors: wgpu::Buffer,
    /// The chunk's local CSR offsets.
    pub(crate) offsets: wgpu::Buffer,
    /// Keys and row indices built from given labels.
    pub(crate) given: Option<(wgpu::Buffer, wgpu::Buffer)>,
}

/// Staging buffers a recorded chunk copies its results into, and how many
/// bytes of each.
#[derive(Default)]
pub(crate) struct Pending {
    /// `images × K × F` f32 blocks.
    pub(crate) blocks: Option<(StagingBuffer, u64)>,
    /// `images × K` counts (u32, or f32 soft counts).
    pub(crate) counts: Option<(StagingBuffer, u64)>,
    /// `rows` u32 labels.
    pub(crate) labels: Option<(StagingBuffer, u64)>,
}

impl Pending {
    /// Ask for every staging buffer to be mapped once the chunk completes.
    pub(crate) fn request_maps(&self) {
        for (staging, bytes) in [&self.blocks, &self.counts, &self.labels]
            .into_iter()
            .flatten()
        {
            staging.request_map(*bytes);
        }
    }
}

/// A submitted chunk not yet read back (either route's).
pub(crate) struct InFlight<'t> {
    pub(crate) index: usize,
    pub(crate) submission: wgpu::SubmissionIndex,
    pub(crate) submitted: Instant,
    pub(crate) pending: Pending,
    pub(crate) clock: StageClock<'t>,
}

/// The submit step of both routes: record chunk `index`'s commands with
/// `record` (host time counted as [`SETUP_STAGE`], the per-call setup
/// small shapes feel most), then submit them.
pub(crate) fn record_and_submit<'t>(
    ctx: &GpuContext,
    timer: Option<&'t GpuTimer>,
    index: usize,
    slot: Slot,
    uploaded: &Uploaded,
    times: &mut StageTimes,
    record: impl FnOnce(&mut StageClock<'t>) -> Result<(wgpu::CommandEncoder, Pending)>,
) -> Result<InFlight<'t>> {
    let mut clock = StageClock::new(timer, slot);
    let started = Instant::now();
    let (encoder, pending) = record(&mut clock)?;
    times.add(SETUP_STAGE, started.elapsed().as_secs_f64());
    let submitted = Instant::now();
    let submission = submit_chunk(ctx, encoder, &pending, uploaded, &clock)?;
    Ok(InFlight {
        index,
        submission,
        submitted,
        pending,
        clock,
    })
}

/// Run `input` through the stages chunk by chunk. The `T × K × F` blocks
/// go into `dest` when given (the caller's memory, already touched: no page
/// is first faulted in during read-back; every element is written, images
/// without rows with zeros, and the returned blocks are empty), else into a
/// fresh vector.
pub fn run_into<E: Element>(
    session: &mut Session<'_>,
    codebook: &DeviceCodebook,
    input: &Input<'_, E>,
    work: Work<'_>,
    times: &mut StageTimes,
    dest: Option<&mut [f32]>,
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
    let plan = split_for_overlap(plan, input.offsets, &shape);
    let block = codebook.clusters * codebook.dim;
    let aggregate = matches!(work, Work::Aggregate { .. });
    if let Some(dest) = &dest
        && (!aggregate || dest.len() != images * block)
    {
        return Err(VladError::DimensionMismatch(format!(
            "the output holds {} values, the encoding of {images} images × {block} \
                 has {}",
            dest.len(),
            images * block
        )));
    }
    let mut owned_blocks = match (aggregate, &dest) {
        (true, None) => host_memory::zeroed(images * block),
        _ => Vec::new(),
    };
    let caller_memory = dest.is_some();
    let blocks: &mut [f32] = match dest {
        Some(dest) => dest,
        None => &mut owned_blocks,
    };
    let mut output = Output {
        blocks: Vec::new(),
        counts: match work {
            Work::Aggregate {
                want_counts: true, ..
            } => vec![0; images * codebook.clusters],
            _ => Vec::new(),
        },
        labels: match input.labels {
            Some(given) => given.to_vec(),
            None => host_memory::zeroed(rows),
        },
    };
    // Only empty whole images have no rows: a fresh output is already zero
    // there, the caller's is zeroed.
    let busy: Vec<usize> = (0..plan.len())
        .filter(|&i| plan[i].row_count() > 0)
        .collect();
    if caller_memory {
        for chunk in plan.iter().filter(|c| c.row_count() == 0) {
            blocks[chunk.images.start * block..chunk.images.end * block].fill(0.0);
        }
    }
    let overlap = session.overlap;
    let mut steps = HardSteps {
        session,
        codebook,
        shape: &shape,
        input,
        plan: &plan,
        work,
        blocks,
        output: &mut output,
        piece_sums: Vec::new(),
        piece_counts: Vec::new(),
    };
    chunk_loop::drive(&mut steps, &busy, overlap, times)?;
    output.blocks = owned_blocks;
    Ok(output)
}

/// Submit a recorded chunk, then ask for every staging buffer it uses to be
/// mapped once it completes (its results, its timestamps, and its upload
/// staging for the next chunk of its slot): one wait then maps them all.
pub(crate) fn submit_chunk(
    ctx: &GpuContext,
    encoder: wgpu::CommandEncoder,
    pending: &Pending,
    staged: &Uploaded,
    clock: &StageClock<'_>,
) -> Result<wgpu::SubmissionIndex> {
    let submission = ctx.checked("submitting a chunk", || {
        ctx.queue.submit([encoder.finish()])
    })?;
    pending.request_maps();
    staged.staging.request_map(0);
    clock.request_map();
    Ok(submission)
}

/// Wait for a submitted chunk (one wait: its results, its timestamps and
/// its upload staging are all mapped by it); its wall time since
/// `submitted` is the compute time when the adapter has no timestamps.
pub(crate) fn wait_chunk(
    ctx: &GpuContext,
    submission: wgpu::SubmissionIndex,
    submitted: Instant,
    clock: &StageClock<'_>,
    times: &mut StageTimes,
) -> Result<()> {
    ctx.device
        .poll(wgpu::PollType::Wait {
            submission_index: Some(submission),
            timeout: None,
        })
        .map_err(|e| VladError::Gpu(format!("waiting for a chunk: {e}")))?;
    ctx.check_health()?;
    if !clock.is_timing() {
        times.add(COMPUTE_GROUP, submitted.elapsed().as_secs_f64());
    }
    Ok(())
}

/// One run of the hard route, as the chunk loop drives it.
struct HardSteps<'r, 's, E: Element> {
    session: &'r mut Session<'s>,
    codebook: &'r DeviceCodebook,
    shape: &'r ChunkShape,
    input: &'r Input<'r, E>,
    plan: &'r [Chunk],
    work: Work<'r>,
    blocks: &'r mut [f32],
    output: &'r mut Output,
    /// Raw sums and counts of the pieces of a split image so far.
    piece_sums: Vec<f64>,
    piece_counts: Vec<u64>,
}

impl<'s, E: Element> ChunkSteps for HardSteps<'_, 's, E> {
    type Staged = Uploaded;
    type InFlight = InFlight<'s>;

    fn stage(&mut self, index: usize, slot: Slot) -> Result<Uploaded> {
        let given = matches!(self.work, Work::Aggregate { .. });
        upload(
            self.session,
            self.shape,
            self.input,
            &self.plan[index],
            slot,
            given,
        )
    }

    fn submit(
        &mut self,
        index: usize,
        slot: Slot,
        uploaded: Uploaded,
        times: &mut StageTimes,
    ) -> Result<InFlight<'s>> {
        let (ctx, timer) = (self.session.ctx, self.session.timer);
        record_and_submit(ctx, timer, index, slot, &uploaded, times, |clock| {
            record::<E>(
                self.session,
                self.codebook,
                self.shape,
                &self.plan[index],
                &uploaded,
                self.work,
                clock,
            )
        })
    }

    /// Wait for a submitted chunk, read its results back, and finish a split
    /// image whose last piece it was.
    fn complete(&mut self, flight: InFlight<'s>, times: &mut StageTimes) -> Result<()> {
        let chunk = &self.plan[flight.index];
        let session = &mut *self.session;
        wait_chunk(
            session.ctx,
            flight.submission,
            flight.submitted,
            &flight.clock,
            times,
        )?;

        let started = Instant::now();
        collect(
            session,
            self.codebook,
            chunk,
            self.work,
            flight.pending,
            self.blocks,
            self.output,
            &mut self.piece_sums,
            &mut self.piece_counts,
        )?;
        times.add("readback", started.elapsed().as_secs_f64());
        flight.clock.collect(session.ctx, times)?;

        if let (Some(_), Work::Aggregate { normalization, .. }) = (chunk.part, self.work)
            && chunk.completes_image()
        {
            let started = Instant::now();
            finish_split_image(
                session.scratch,
                self.codebook,
                chunk.images.start,
                normalization,
                &self.piece_sums,
                &self.piece_counts,
                self.blocks,
                self.output,
            );
            times.add("combine", started.elapsed().as_secs_f64());
        }
        Ok(())
    }
}

/// Write `chunk`'s descriptors (into slot `slot`'s upload staging, which
/// the chunk's own submission copies to the device), offsets and, when
/// `given` and the input has labels, the sort keys built from them into
/// slot `slot`'s pooled buffers. The hard and the soft route both stage
/// their chunks this way.
pub(crate) fn upload<E: Element>(
    session: &mut Session<'_>,
    shape: &ChunkShape,
    input: &Input<'_, E>,
    chunk: &Chunk,
    slot: Slot,
    given: bool,
) -> Result<Uploaded> {
    let ctx = session.ctx;
    let sizes = ChunkBuffers::new(shape, chunk.image_count() as u64, chunk.row_count() as u64);
    let descriptors = session
        .pool
        .buffer(ctx, Role::Descriptors(slot), sizes.descriptors)?;
    let offsets = session
        .pool
        .buffer(ctx, Role::ImageOffsets(slot), sizes.offsets)?;
    let given = match (input.labels, given) {
        (Some(_), true) => Some((
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

    let staging = session.staging.upload(ctx, slot, sizes.descriptors)?;
    fill_upload(
        ctx,
        &staging,
        sizes.descriptors,
        "the descriptor staging",
        |offset, piece| write_descriptors(rows, offset, piece),
    )?;
    ctx.checked("uploading a chunk", || {
        let queue = &ctx.queue;
        queue.write_buffer(&offsets, 0, bytemuck::cast_slice(&scratch.offsets));
        if let Some((keys, values)) = &given {
            queue.write_buffer(keys, 0, bytemuck::cast_slice(&scratch.keys));
            queue.write_buffer(values, 0, bytemuck::cast_slice(&scratch.values));
        }
    })?;
    Ok(Uploaded {
        slot,
        staging,
        descriptors,
        offsets,
        given,
    })
}

/// Bytes `offset .. offset + piece.len()` of the device form of `rows`:
/// f32 as they are, u8 packed four per word (the last word padded with
/// zeros), f64 rounded to f32 on the way.
fn write_descriptors<E: Element>(rows: &[E], offset: usize, mut piece: wgpu::WriteOnly<'_, [u8]>) {
    let len = piece.len();
    match E::DTYPE {
        DType::F32 | DType::U8 => {
            let bytes: &[u8] = bytemuck::cast_slice(rows);
            let have = bytes.len().saturating_sub(offset).min(len);
            let (head, mut padding) = piece.split_at(have);
            let mut head = head;
            head.copy_from_slice(&bytes[offset..offset + have]);
            padding.fill(0);
        }
        DType::F64 => {
            // Offsets and lengths are whole f32s (pieces are multiples of 4).
            const BLOCK: usize = 1024;
            let mut converted = [0f32; BLOCK];
            let first = offset / 4;
            let count = len / 4;
            let mut done = 0;
            while done < count {
                let n = (count - done).min(BLOCK);
                for (c, v) in converted[..n]
                    .iter_mut()
                    .zip(&rows[first + done..first + done + n])
                {
                    *c = v.to_f32();
                }
                piece
                    .slice(done * 4..(done + n) * 4)
                    .copy_from_slice(bytemuck::cast_slice(&converted[..n]));
                done += n;
            }
        }
    }
}

const _: () = assert!(
    PIECE.is_multiple_of(4),
    "f64 conversion needs whole f32 pieces"
);

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
    if sizes.descriptors > 0 {
        encoder.copy_buffer_to_buffer(
            &uploaded.staging.buffer,
            0,
            &uploaded.descriptors,
            0,
            sizes.descriptors,
        );
    }
    clock.lap(&mut encoder, "upload");
    let slot = uploaded.slot;
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
            stages.record_assign(ctx, &mut encoder, clock, &job)?;
            let staging = session
                .staging
                .readback(ctx, ReadKind::Labels, slot, sizes.per_row)?;
            encoder.copy_buffer_to_buffer(&labels, 0, &staging.buffer, 0, sizes.per_row);
            pending.labels = Some((staging, sizes.per_row));
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
    // By label alone: the rows are in image order already.
    let (label_bits, label_modulus) = sort_by_label(codebook.clusters);
    let sorted_in = stages.sort.record(
        ctx,
        &mut encoder,
        &SortJob {
            keys: &keys,
            values: &values,
            alt_keys: &alt_keys,
            alt_values: &alt_values,
            len: rows,
            key_bits: label_bits,
            modulus: label_modulus,
        },
    )?;
    clock.lap(&mut encoder, "sort");
    let (sorted_keys, sorted_rows) = match sorted_in {
        SortedIn::Primary => (&keys, &values),
        SortedIn::Alternate => (&alt_keys, &alt_values),
    };

    // The scan writes its sums straight into the blocks buffer (its
    // layout), so the residual stage only zeroes the empty blocks.
    let blocks = pool.buffer(ctx, Role::Blocks, sizes.blocks)?;
    let counts = pool.buffer(ctx, Role::Counts, sizes.counts)?;
    let segments = stages.scan.record_into(
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
        Some(&blocks),
    )?;
    clock.lap(&mut encoder, "scan");

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

    let staging = session
        .staging
        .readback(ctx, ReadKind::Blocks, slot, sizes.blocks)?;
    encoder.copy_buffer_to_buffer(&blocks, 0, &staging.buffer, 0, sizes.blocks);
    pending.blocks = Some((staging, sizes.blocks));
    if want_counts || chunk.part.is_some() {
        let staging = session
            .staging
            .readback(ctx, ReadKind::Counts, slot, sizes.counts)?;
        encoder.copy_buffer_to_buffer(&counts, 0, &staging.buffer, 0, sizes.counts);
        pending.counts = Some((staging, sizes.counts));
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
    blocks: &mut [f32],
    output: &mut Output,
    piece_sums: &mut Vec<f64>,
    piece_counts: &mut Vec<u64>,
) -> Result<()> {
    let ctx = session.ctx;
    let block = codebook.clusters * codebook.dim;
    let k = codebook.clusters;
    let scratch = &mut *session.scratch;
    if let Some((staging, _)) = &pending.labels {
        let dst = bytemuck::cast_slice_mut(&mut output.labels[chunk.rows.clone()]);
        read_into(ctx, staging, dst, "labels")?;
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
            if let Some((staging, _)) = &pending.blocks {
                let dst =
                    bytemuck::cast_slice_mut(&mut blocks[images.start * block..images.end * block]);
                read_into(ctx, staging, dst, "blocks")?;
            }
            if let (Some((staging, _)), true) = (&pending.counts, want_counts) {
                let dst =
                    bytemuck::cast_slice_mut(&mut output.counts[images.start * k..images.end * k]);
                read_into(ctx, staging, dst, "counts")?;
            }
            Ok(())
        }
        Some(part) => {
            scratch.piece.resize(block, 0.0);
            scratch.piece_counts.resize(k, 0);
            if let Some((staging, _)) = &pending.blocks {
                read_into(
                    ctx,
                    staging,
                    bytemuck::cast_slice_mut(&mut scratch.piece[..]),
                    "blocks",
                )?;
            }
            if let Some((staging, _)) = &pending.counts {
                read_into(
                    ctx,
                    staging,
                    bytemuck::cast_slice_mut(&mut scratch.piece_counts[..]),
                    "counts",
                )?;
            }
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
#[allow(clippy::too_many_arguments)]
fn finish_split_image(
    scratch: &mut HostScratch,
    codebook: &DeviceCodebook,
    image: usize,
    normalization: &Normalization,
    piece_sums: &[f64],
    piece_counts: &[u64],
    blocks: &mut [f32],
    output: &mut Output,
) {
    let (k, f) = (codebook.clusters, codebook.dim);
    let block = k * f;
    scratch.piece_counts.clear();
    scratch
        .piece_counts
        .extend(piece_counts.iter().map(|&n| n.min(u32::MAX as u64) as u32));
    scratch.piece_mass.clear();
    scratch
        .piece_mass
        .extend(scratch.piece_counts.iter().map(|&n| n as f32));
    let row = &mut blocks[image * block..(image + 1) * block];
    for (y, &s) in row.iter_mut().zip(piece_sums) {
        *y = s as f32;
    }
    crate::backend::cpu::normalize::normalize_row(row, &scratch.piece_mass, k, f, normalization);
    if !output.counts.is_empty() {
        output.counts[image * k..(image + 1) * k].copy_from_slice(&scratch.piece_counts);
    }
}

fn to_u32(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| VladError::Gpu(format!("{what} ({n}) exceeds u32")))
}

fn to_u32_u64(n: u64, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| VladError::Gpu(format!("{what} ({n}) exceeds u32")))
}
