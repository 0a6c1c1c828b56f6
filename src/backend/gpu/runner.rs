//! Running a batch through a route's stages ([`crate::backend::gpu::route`]),
//! chunk by chunk: upload, record every stage of a chunk into one command
//! encoder, submit once, read back — the same host machinery for every
//! route.
//!
//! Chunks alternate between two slots (staging and input buffers). Chunk
//! `i` is submitted, then — while the device computes it — the host reads
//! back chunk `i − 1` (one wait, which also maps every staging buffer that
//! chunk used) and fills the staging of chunk `i + 1`, in parallel, straight
//! from the caller's slice; the device copies it in at the start of that
//! chunk's own submission (on a software adapter, which computes on the
//! host's own cores, chunks run one after the other instead:
//! [`crate::backend::gpu::chunk_loop`]). Large batches are cut into chunks
//! of about [`OVERLAP_CHUNK_BYTES`](crate::backend::gpu::chunking::OVERLAP_CHUNK_BYTES)
//! of descriptors so that the three overlap. Every device buffer comes from
//! the session's pool, every bind group from the context's cache, and the
//! results are read straight into the caller's memory.
//!
//! An image too large for one binding is aggregated raw on the device,
//! piece by piece, and its pieces combined on the host
//! ([`SplitImage`]: f64 sums in piece order, rounded and normalized once)
//! — a fixed order, so the output stays bitwise reproducible, the same bits
//! whether chunks overlap or not.

use std::time::Instant;

use crate::backend::combine::SplitImage;
use crate::backend::gpu::chunk_loop::{self, ChunkSteps};
use crate::backend::gpu::chunking::{
    Chunk, ChunkBuffers, ChunkLimits, ChunkShape, plan_chunks, sort_by_label, split_for_overlap,
};
use crate::backend::gpu::context::GpuContext;
use crate::backend::gpu::host_memory;
use crate::backend::gpu::pool::{BufferPool, Role, Slot};
use crate::backend::gpu::route::{Finish, Route, Step};
use crate::backend::gpu::stages::assign::AssignJob;
use crate::backend::gpu::stages::normalize::NormalizeJob;
use crate::backend::gpu::stages::radix_sort::{SortJob, SortedIn};
use crate::backend::gpu::stages::residual::ResidualJob;
use crate::backend::gpu::stages::segmented_scan::ScanJob;
use crate::backend::gpu::stages::soft_aggregate::SoftAggregateJob;
use crate::backend::gpu::stages::soft_logits::SoftLogitsJob;
use crate::backend::gpu::stages::unit_residual::UnitResidualJob;
use crate::backend::gpu::stages::whiten::ProjectionGroups;
use crate::backend::gpu::stages::{
    BlockShape, Blocks, CompiledStages, Descriptors, WeightedStages,
};
use crate::backend::gpu::staging::{
    PIECE, ReadKind, StagingBuffer, StagingSet, fill_upload, read_into,
};
use crate::backend::gpu::timing::{COMPUTE_GROUP, GpuTimer, StageClock};
use crate::error::{Result, VladError};
use crate::model::assignment::SoftParams;
use crate::model::codebook::Codebook;
use crate::model::element::{DType, Element};
use crate::model::normalization::Normalization;
use crate::model::report::StageTimes;
use crate::whitening::Whitening;

/// The stage name of the host time spent recording each chunk's commands.
const SETUP_STAGE: &str = "setup";

/// The codebook as the stages read it.
pub(crate) struct DeviceCodebook {
    /// `K × F` f32 centroids.
    pub(crate) centroids: wgpu::Buffer,
    /// `K` f32 squared norms.
    pub(crate) norms: wgpu::Buffer,
}

/// A batch as the runner reads it: row-major descriptors, CSR offsets,
/// optional given labels.
pub(crate) struct Input<'a, E: Element> {
    /// `N × F` descriptors, row-major.
    pub(crate) rows: &'a [E],
    /// `T + 1` CSR offsets.
    pub(crate) offsets: &'a [usize],
    /// Given labels (skip assignment), `N` of them.
    pub(crate) labels: Option<&'a [u32]>,
}

/// Where a run's sums go.
pub(crate) enum Sink<'o> {
    /// Nowhere: labels only ([`Route::Assign`]).
    Labels,
    /// Each image's finished row into `out` (`T · K · F`, row-major; every
    /// element is written, images without rows with zeros): normalized
    /// with `norm` on the device, or on the host for an image split across
    /// chunks; and, when given, its `K` counts into `counts` (`T · K`).
    Rows {
        /// The caller's memory.
        out: &'o mut [f32],
        /// The steps applied to each finished image.
        norm: &'o Normalization,
        /// The hard counts, when wanted.
        counts: Option<&'o mut [u32]>,
        /// Whiten each finished row on the device (SPEC §14): `out` then
        /// holds `T · D′` values, and only those are read back.
        whitening: Option<&'o DeviceWhitening<'o>>,
    },
    /// The raw sums and counts of every chunk (the rows of one image) added
    /// to `image`, one piece per chunk: a piece of an image split across
    /// passes.
    Piece(&'o mut SplitImage),
}

/// A whitening with its matrices on the device, for one run.
pub(crate) struct DeviceWhitening<'w> {
    /// The whitening (its post normalization runs on the host).
    pub(crate) whitening: &'w Whitening,
    /// Its mean and `Pᵀ`, uploaded.
    pub(crate) projection: ProjectionGroups,
}

impl DeviceWhitening<'_> {
    /// Rows `whitened` (`n × W`, read back) into `out` (`n × D′`), each
    /// post-normalized on the host.
    fn finish_rows(&self, whitened: &[f32], out: &mut [f32]) {
        let (width, dout) = (self.projection.width as usize, self.whitening.dims_out());
        for (o, y) in out.chunks_exact_mut(dout).zip(whitened.chunks_exact(width)) {
            o.copy_from_slice(&y[..dout]);
            self.whitening.post_normalize_row(o);
        }
    }
}

/// Host vectors reused across chunks and calls.
#[derive(Default)]
pub(crate) struct HostScratch {
    keys: Vec<u32>,
    values: Vec<u32>,
    offsets: Vec<u32>,
    /// One piece's `K·F` sums and `K` counts (u32, or f32 bits when soft).
    piece: Vec<f32>,
    piece_counts: Vec<u32>,
    /// Whitened rows read back (`images × W`), before compaction.
    whitened: Vec<f32>,
}

/// Everything one run borrows from the session.
pub(crate) struct Session<'s> {
    /// The device.
    pub(crate) ctx: &'s GpuContext,
    /// The compiled stages.
    pub(crate) stages: &'s CompiledStages,
    /// Stage timestamps, when the adapter has them.
    pub(crate) timer: Option<&'s GpuTimer>,
    /// Reused device buffers.
    pub(crate) pool: &'s mut BufferPool,
    /// Reused host vectors.
    pub(crate) scratch: &'s mut HostScratch,
    /// Reused host-mappable staging buffers.
    pub(crate) staging: &'s mut StagingSet,
    /// Overlap upload, compute and read-back of consecutive chunks (off on
    /// software adapters, whose "device" is the host's own cores).
    pub(crate) overlap: bool,
}

/// What one run computes: the route, over `input`, against `codebook`.
pub(crate) struct Job<'a, E: Element> {
    /// The centroids (on the host: split images are finished against them).
    pub(crate) codebook: &'a Codebook,
    /// The rows.
    pub(crate) input: Input<'a, E>,
    /// The stages every chunk records.
    pub(crate) route: Route,
    /// `W` and `b`, for [`Route::Soft`].
    pub(crate) soft: Option<&'a SoftParams>,
}

/// Run `job` chunk by chunk into `sink`; returns every row's label (given,
/// or computed: the nearest centroid, or under soft assignment the centroid
/// of largest weight).
pub(crate) fn run<E: Element>(
    session: &mut Session<'_>,
    device_codebook: &DeviceCodebook,
    job: &Job<'_, E>,
    mut sink: Sink<'_>,
    times: &mut StageTimes,
) -> Result<Vec<u32>> {
    let codebook = job.codebook;
    let (k, f) = (codebook.clusters(), codebook.dim());
    let offsets = job.input.offsets;
    let images = offsets.len().saturating_sub(1);
    let n = offsets.last().copied().unwrap_or(0);
    if job.input.rows.len() != n * f {
        return Err(VladError::DimensionMismatch(format!(
            "{} values are not {n} rows of F = {f}",
            job.input.rows.len()
        )));
    }
    if let Some(labels) = job.input.labels
        && labels.len() != n
    {
        return Err(VladError::DimensionMismatch(format!(
            "{} labels for {n} rows",
            labels.len()
        )));
    }
    check_sink(&sink, job.route, images, k, f)?;
    let soft = match (job.route, job.soft) {
        (Route::Soft { .. }, Some(params)) => Some(upload_params(session, params, k, f)?),
        (Route::Soft { .. }, None) => {
            return Err(VladError::InvalidArgument(
                "soft assignment without its parameters (a bug)".to_string(),
            ));
        }
        _ => None,
    };
    let weighted = match job.route.weighted() {
        true => Some(session.stages.weighted(session.ctx)?),
        false => None,
    };
    let plan_shape = job.route.plan_shape(f, k, E::DTYPE);
    let plan = plan_chunks(offsets, &plan_shape, &ChunkLimits::for_context(session.ctx))?;
    // Cut for overlap into smaller chunks of whole images. The plan, not
    // this cut, is what a stream follows (`Compute::cuts`): each of its
    // batches is a run of planned chunks, which this cuts alike.
    let plan = split_for_overlap(plan, offsets, &plan_shape);

    let given = job.input.labels.filter(|_| job.route.takes_given_labels());
    let mut labels: Vec<u32> = match given {
        Some(given) => given.to_vec(),
        None => host_memory::zeroed(n),
    };
    // Only whole images without rows have no rows: zeros, written here
    // (whitened, the whitening of a zero row, computed once on the device).
    if let Sink::Rows {
        out,
        counts,
        whitening,
        ..
    } = &mut sink
    {
        let empty = plan.iter().filter(|c| c.row_count() == 0);
        let row = match whitening {
            Some(w) if plan.iter().any(|c| c.row_count() == 0) => {
                let mut row = vec![0.0f32; w.whitening.dims_out()];
                let zeros = vec![0.0f32; k * f];
                crate::backend::gpu::whitening::whiten_rows(
                    session.ctx,
                    &session.stages.whiten,
                    w.whitening,
                    &w.projection,
                    &zeros,
                    &mut row,
                )?;
                row
            }
            Some(_) => Vec::new(),
            None => vec![0.0f32; k * f],
        };
        for chunk in empty {
            let images = chunk.images.clone();
            for o in out[images.start * row.len()..images.end * row.len()]
                .chunks_exact_mut(row.len().max(1))
            {
                o.copy_from_slice(&row);
            }
            if let Some(counts) = counts {
                counts[images.start * k..images.end * k].fill(0);
            }
        }
    }
    let finish = match &sink {
        Sink::Rows { norm, .. } => job.route.finish(norm)?,
        _ => Vec::new(),
    };
    let busy: Vec<usize> = (0..plan.len())
        .filter(|&i| plan[i].row_count() > 0)
        .collect();
    let overlap = session.overlap;
    let mut runner = Runner {
        session,
        device_codebook,
        codebook,
        route: job.route,
        weighted: weighted.as_deref(),
        soft,
        shape: ChunkShape {
            dim: f,
            clusters: k,
            dtype: E::DTYPE,
        },
        input: Input {
            rows: job.input.rows,
            offsets,
            labels: given,
        },
        plan: &plan,
        finish: &finish,
        sink,
        labels: &mut labels,
        split: None,
    };
    chunk_loop::drive(&mut runner, &busy, overlap, times)?;
    Ok(labels)
}

/// The sink fits `images` images of a `K × F` codebook on `route`.
fn check_sink(sink: &Sink<'_>, route: Route, images: usize, k: usize, f: usize) -> Result<()> {
    let fits = match sink {
        Sink::Labels => route == Route::Assign,
        Sink::Rows {
            out,
            counts,
            whitening,
            ..
        } => {
            let width = whitening.map_or(k * f, |w| w.whitening.dims_out());
            route.aggregates()
                && whitening.is_none_or(|w| w.whitening.dims_in() == k * f)
                && out.len() == images * width
                && counts.as_ref().is_none_or(|c| c.len() == images * k)
        }
        Sink::Piece(image) => {
            route.aggregates() && images == 1 && image.clusters() == k && image.dim() == f
        }
    };
    if fits {
        return Ok(());
    }
    Err(VladError::DimensionMismatch(format!(
        "the output does not hold the {route:?} results of {images} images × K × F = {k} × {f}"
    )))
}

/// `W` and `b` into their pooled buffers (small: written every call).
fn upload_params(
    session: &mut Session<'_>,
    params: &SoftParams,
    k: usize,
    f: usize,
) -> Result<(wgpu::Buffer, wgpu::Buffer)> {
    if params.weights().dim() != (k, f) || params.bias().len() != k {
        return Err(VladError::DimensionMismatch(format!(
            "soft assignment parameters W {:?}, b ({}) do not match K × F = {k} × {f}",
            params.weights().dim(),
            params.bias().len()
        )));
    }
    let ctx = session.ctx;
    let w: &[f32] = params.weights_slice();
    let b: &[f32] = params.bias_slice();
    let weights = session
        .pool
        .buffer(ctx, Role::SoftW, std::mem::size_of_val(w) as u64)?;
    let bias = session
        .pool
        .buffer(ctx, Role::SoftBias, std::mem::size_of_val(b) as u64)?;
    ctx.checked("uploading the soft assignment parameters", || {
        ctx.queue.write_buffer(&weights, 0, bytemuck::cast_slice(w));
        ctx.queue.write_buffer(&bias, 0, bytemuck::cast_slice(b));
    })?;
    Ok((weights, bias))
}

/// A chunk's inputs: descriptors in the slot's staging buffer (copied to
/// the device by the chunk's own submission), the rest already written.
struct Uploaded {
    slot: Slot,
    /// The descriptors, as the device reads them, to be copied in.
    staging: StagingBuffer,
    /// Where they are copied to.
    descriptors: wgpu::Buffer,
    /// The chunk's local CSR offsets.
    offsets: wgpu::Buffer,
    /// Keys and row indices built from given labels.
    given: Option<(wgpu::Buffer, wgpu::Buffer)>,
}

/// Staging buffers a recorded chunk copies its results into, and how many
/// bytes of each.
#[derive(Default)]
struct Pending {
    /// `images × K × F` f32 blocks.
    blocks: Option<(StagingBuffer, u64)>,
    /// `images × K` counts (u32, or f32 soft counts).
    counts: Option<(StagingBuffer, u64)>,
    /// `rows` u32 labels.
    labels: Option<(StagingBuffer, u64)>,
}

/// A submitted chunk not yet read back.
struct InFlight<'t> {
    index: usize,
    submission: wgpu::SubmissionIndex,
    submitted: Instant,
    pending: Pending,
    clock: StageClock<'t>,
}

/// One run, as the chunk loop drives it.
struct Runner<'r, 's, E: Element> {
    session: &'r mut Session<'s>,
    device_codebook: &'r DeviceCodebook,
    codebook: &'r Codebook,
    route: Route,
    weighted: Option<&'r WeightedStages>,
    /// `W` and `b` on the device ([`Route::Soft`]).
    soft: Option<(wgpu::Buffer, wgpu::Buffer)>,
    /// The descriptors' own shape (F, K, dtype): what buffers are sized by.
    shape: ChunkShape,
    /// The rows, with the given labels only where the route takes them.
    input: Input<'r, E>,
    plan: &'r [Chunk],
    /// The normalization a chunk of whole images records.
    finish: &'r [Finish],
    sink: Sink<'r>,
    /// Every row's label (given, or read back into place).
    labels: &'r mut [u32],
    /// The running sums of the image split across chunks now in progress
    /// (for [`Sink::Rows`]).
    split: Option<SplitImage>,
}

impl<'s, E: Element> ChunkSteps for Runner<'_, 's, E> {
    type Staged = Uploaded;
    type InFlight = InFlight<'s>;

    fn stage(&mut self, index: usize, slot: Slot) -> Result<Uploaded> {
        upload(
            self.session,
            &self.shape,
            &self.input,
            &self.plan[index],
            slot,
        )
    }

    /// Record chunk `index`'s commands (host time counted as
    /// [`SETUP_STAGE`], the per-call setup small shapes feel most), submit
    /// them, and ask for every staging buffer the chunk uses to be mapped
    /// once it completes (its results, its timestamps, and its upload
    /// staging for the next chunk of its slot): one wait then maps them all.
    fn submit(
        &mut self,
        index: usize,
        slot: Slot,
        uploaded: Uploaded,
        times: &mut StageTimes,
    ) -> Result<InFlight<'s>> {
        let (ctx, timer, plan) = (self.session.ctx, self.session.timer, self.plan);
        let mut clock = StageClock::new(timer, slot);
        let started = Instant::now();
        let (encoder, pending) = self.record(&plan[index], &uploaded, &mut clock)?;
        times.add(SETUP_STAGE, started.elapsed().as_secs_f64());
        let submitted = Instant::now();
        let submission = ctx.checked("submitting a chunk", || {
            ctx.queue.submit([encoder.finish()])
        })?;
        for (staging, bytes) in [&pending.blocks, &pending.counts, &pending.labels]
            .into_iter()
            .flatten()
        {
            staging.request_map(*bytes);
        }
        uploaded.staging.request_map(0);
        clock.request_map();
        Ok(InFlight {
            index,
            submission,
            submitted,
            pending,
            clock,
        })
    }

    /// Wait for a submitted chunk (one wait: its results, its timestamps
    /// and its upload staging are all mapped by it; its wall time is the
    /// compute time when the adapter has no timestamps), read its results
    /// back, and combine a piece of a split image.
    fn complete(&mut self, flight: InFlight<'s>, times: &mut StageTimes) -> Result<()> {
        let ctx = self.session.ctx;
        ctx.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(flight.submission),
                timeout: None,
            })
            .map_err(|e| VladError::Gpu(format!("waiting for a chunk: {e}")))?;
        ctx.check_health()?;
        if !flight.clock.is_timing() {
            times.add(COMPUTE_GROUP, flight.submitted.elapsed().as_secs_f64());
        }
        let plan = self.plan;
        let chunk = &plan[flight.index];
        let started = Instant::now();
        self.collect(chunk, &flight.pending)?;
        times.add("readback", started.elapsed().as_secs_f64());
        flight.clock.collect(ctx, times)?;
        if self.route.aggregates() && self.combined(chunk) {
            let started = Instant::now();
            self.combine(chunk)?;
            times.add("combine", started.elapsed().as_secs_f64());
        }
        Ok(())
    }
}

impl<E: Element> Runner<'_, '_, E> {
    /// Whether `chunk`'s sums are combined on the host rather than written
    /// as finished rows: a piece of a split image, or any chunk of a piece.
    fn combined(&self, chunk: &Chunk) -> bool {
        chunk.part.is_some() || matches!(self.sink, Sink::Piece(_))
    }

    /// Whether a chunk's counts are read back.
    fn reads_counts(&self, chunk: &Chunk) -> bool {
        self.combined(chunk)
            || matches!(
                self.sink,
                Sink::Rows {
                    counts: Some(_),
                    ..
                }
            )
    }

    /// Record one chunk: the copy of its staged descriptors, its route's
    /// stages, the normalization of whole images, and the copies of its
    /// results to the slot's read-back staging.
    fn record(
        &mut self,
        chunk: &Chunk,
        uploaded: &Uploaded,
        clock: &mut StageClock<'_>,
    ) -> Result<(wgpu::CommandEncoder, Pending)> {
        let ctx = self.session.ctx;
        let stages = self.session.stages;
        let codebook = self.device_codebook;
        let (combined, reads_counts) = (self.combined(chunk), self.reads_counts(chunk));
        let pool = &mut *self.session.pool;
        let (k, f) = (self.shape.clusters, self.shape.dim);
        let rows = to_u32(chunk.row_count(), "rows in a chunk")?;
        let images = to_u32(chunk.image_count(), "images in a chunk")?;
        let (clusters, dim) = (to_u32(k, "K")?, to_u32(f, "F")?);
        let sizes = ChunkBuffers::new(&self.shape, images as u64, rows as u64);
        let u8_input = E::DTYPE == DType::U8;
        let descriptors = &uploaded.descriptors;
        let weighted = || {
            self.weighted
                .ok_or_else(|| VladError::Gpu("the weighted stages are missing (a bug)".into()))
        };

        let mut encoder = ctx.encoder("vlad chunk");
        clock.start(&mut encoder);
        if sizes.descriptors > 0 {
            encoder.copy_buffer_to_buffer(
                &uploaded.staging.buffer,
                0,
                descriptors,
                0,
                sizes.descriptors,
            );
        }
        clock.lap(&mut encoder, "upload");

        // What the steps hand on to each other.
        let mut keys_values = uploaded.given.clone();
        let mut labels: Option<wgpu::Buffer> = None;
        let mut units: Option<wgpu::Buffer> = None;
        let mut weights: Option<(wgpu::Buffer, wgpu::Buffer)> = None;
        let mut sorted: Option<(wgpu::Buffer, wgpu::Buffer)> = None;
        let mut segments = None;
        let blocks = match self.route.aggregates() {
            true => Some(pool.buffer(ctx, Role::Blocks, sizes.blocks)?),
            false => None,
        };
        let counts = match self.route.aggregates() {
            true => Some(pool.buffer(ctx, Role::Counts, sizes.counts)?),
            false => None,
        };
        let missing = |what: &str| VladError::Gpu(format!("a chunk's {what} is missing (a bug)"));
        let rn = matches!(self.route, Route::Soft { rn: true });
        let block_shape = BlockShape {
            images,
            clusters,
            dim,
        };
        let chunk_input = Descriptors {
            buffer: descriptors,
            u8_input,
            rows,
            dim,
        };

        for &step in self.route.steps() {
            match step {
                Step::Assign => {
                    if keys_values.is_some() {
                        continue;
                    }
                    let out = pool.buffer(ctx, Role::Labels, sizes.per_row)?;
                    let keys = pool.buffer(ctx, Role::Keys, sizes.per_row)?;
                    let values = pool.buffer(ctx, Role::Values, sizes.per_row)?;
                    let job = AssignJob {
                        input: chunk_input,
                        centroids: &codebook.centroids,
                        centroid_norms: &codebook.norms,
                        image_offsets: &uploaded.offsets,
                        clusters,
                        images,
                        labels: &out,
                        keys: &keys,
                        values: &values,
                    };
                    stages.record_assign(ctx, &mut encoder, clock, &job)?;
                    labels = Some(out);
                    keys_values = Some((keys, values));
                }
                Step::UnitResidual => {
                    let row_labels = match &labels {
                        Some(computed) => computed.clone(),
                        // Given: the unit residuals read each row's label.
                        None => {
                            let given = self
                                .input
                                .labels
                                .and_then(|l| l.get(chunk.rows.clone()))
                                .ok_or_else(|| missing("given labels"))?;
                            let buffer = pool.buffer(ctx, Role::Labels, sizes.per_row)?;
                            ctx.checked("uploading labels", || {
                                ctx.queue
                                    .write_buffer(&buffer, 0, bytemuck::cast_slice(given))
                            })?;
                            buffer
                        }
                    };
                    let out = pool.buffer(ctx, Role::UnitResiduals, rows as u64 * f as u64 * 4)?;
                    weighted()?.unit.record(
                        ctx,
                        &mut encoder,
                        &UnitResidualJob {
                            input: chunk_input,
                            centroids: &codebook.centroids,
                            labels: &row_labels,
                            clusters,
                            units: &out,
                        },
                    )?;
                    clock.lap(&mut encoder, "unit residual");
                    units = Some(out);
                }
                Step::SoftLogits => {
                    let (w, b) = self.soft.as_ref().ok_or_else(|| missing("W and b"))?;
                    let weight_bytes = rows as u64 * k as u64 * 4;
                    let out = pool.buffer(ctx, Role::SoftWeights, weight_bytes)?;
                    let unscaled = pool.buffer(
                        ctx,
                        Role::UnscaledWeights,
                        if rn { weight_bytes } else { 4 },
                    )?;
                    let out_labels = pool.buffer(ctx, Role::Labels, sizes.per_row)?;
                    weighted()?.logits.record(
                        ctx,
                        &mut encoder,
                        &SoftLogitsJob {
                            input: chunk_input,
                            soft_weights: w,
                            soft_bias: b,
                            centroids: &codebook.centroids,
                            residual_norm: rn,
                            clusters,
                            weights: &out,
                            labels: &out_labels,
                            unscaled: &unscaled,
                        },
                    )?;
                    clock.lap(&mut encoder, "soft logits");
                    labels = Some(out_labels);
                    weights = Some((out, unscaled));
                }
                Step::SoftAggregate => {
                    let (w, unscaled) = weights.as_ref().ok_or_else(|| missing("soft weights"))?;
                    weighted()?.aggregate.record(
                        ctx,
                        &mut encoder,
                        &SoftAggregateJob {
                            input: chunk_input,
                            weights: w,
                            mass_weights: if rn { unscaled } else { w },
                            centroids: &codebook.centroids,
                            image_offsets: &uploaded.offsets,
                            clusters,
                            images,
                            blocks: blocks.as_ref().ok_or_else(|| missing("blocks"))?,
                            mass: counts.as_ref().ok_or_else(|| missing("counts"))?,
                        },
                    )?;
                    clock.lap(&mut encoder, "soft aggregate");
                }
                Step::Sort => {
                    let (keys, values) = keys_values.as_ref().ok_or_else(|| missing("keys"))?;
                    let alt_keys = pool.buffer(ctx, Role::AltKeys, sizes.per_row)?;
                    let alt_values = pool.buffer(ctx, Role::AltValues, sizes.per_row)?;
                    // By label alone: the rows are in image order already.
                    let (label_bits, label_modulus) = sort_by_label(k);
                    let sorted_in = stages.sort.record(
                        ctx,
                        &mut encoder,
                        &SortJob {
                            keys,
                            values,
                            alt_keys: &alt_keys,
                            alt_values: &alt_values,
                            len: rows,
                            key_bits: label_bits,
                            modulus: label_modulus,
                        },
                    )?;
                    clock.lap(&mut encoder, "sort");
                    sorted = Some(match sorted_in {
                        SortedIn::Primary => (keys.clone(), values.clone()),
                        SortedIn::Alternate => (alt_keys, alt_values),
                    });
                }
                Step::Scan => {
                    let (sorted_keys, sorted_rows) =
                        sorted.as_ref().ok_or_else(|| missing("sorted keys"))?;
                    // Under `rn` the rows summed are the unit residuals (f32).
                    let input = match &units {
                        Some(units) => Descriptors {
                            buffer: units,
                            u8_input: false,
                            ..chunk_input
                        },
                        None => chunk_input,
                    };
                    // The scan writes its sums straight into the blocks
                    // buffer (its layout), so the residual stage only zeroes
                    // the empty blocks.
                    segments = Some(stages.scan.record_into(
                        ctx,
                        &mut encoder,
                        &ScanJob {
                            sorted_keys,
                            sorted_rows,
                            input,
                            centroids: &codebook.centroids,
                            subtract_centroid: matches!(
                                self.route,
                                Route::Hard {
                                    subtract_centroid: true
                                }
                            ),
                            clusters,
                            images,
                        },
                        blocks.as_ref(),
                    )?);
                    clock.lap(&mut encoder, "scan");
                }
                Step::Residual => {
                    stages.residual.record(
                        ctx,
                        &mut encoder,
                        &ResidualJob {
                            segments: segments.as_ref().ok_or_else(|| missing("segment sums"))?,
                            out: Blocks {
                                shape: block_shape,
                                values: blocks.as_ref().ok_or_else(|| missing("blocks"))?,
                                counts: counts.as_ref().ok_or_else(|| missing("counts"))?,
                            },
                        },
                    )?;
                    clock.lap(&mut encoder, "residual");
                }
            }
        }

        // A piece of a split image stays raw: it is normalized on the host
        // once all its pieces are summed.
        if let (Some(blocks), Some(counts), false) = (&blocks, &counts, combined)
            && !self.finish.is_empty()
        {
            for finish in self.finish {
                match finish {
                    Finish::SoftMass => weighted()?.aggregate.record_mass(
                        ctx,
                        &mut encoder,
                        &Blocks {
                            shape: block_shape,
                            values: blocks,
                            counts,
                        },
                    )?,
                    Finish::Steps(steps) => stages.normalize.record(
                        ctx,
                        &mut encoder,
                        &NormalizeJob {
                            blocks,
                            counts,
                            images,
                            clusters,
                            dim,
                            normalization: steps,
                        },
                    )?,
                }
            }
            clock.lap(&mut encoder, "normalize");
        }
        // Whole images whitened on the device: only `images × W` values
        // are read back instead of `images × K·F`.
        let whitened = match (&self.sink, &blocks, combined) {
            (
                Sink::Rows {
                    whitening: Some(w), ..
                },
                Some(blocks),
                false,
            ) => {
                let bytes = images as u64 * w.projection.width as u64 * 4;
                let out = pool.buffer(ctx, Role::Whitened, bytes)?;
                stages
                    .whiten
                    .record(ctx, &mut encoder, &w.projection, blocks, images, &out)?;
                clock.lap(&mut encoder, "whiten");
                Some((out, bytes))
            }
            _ => None,
        };

        let staging = &mut *self.session.staging;
        let slot = uploaded.slot;
        let mut copy = |from: &wgpu::Buffer, kind: ReadKind, bytes: u64| -> Result<_> {
            let to = staging.readback(ctx, kind, slot, bytes)?;
            encoder.copy_buffer_to_buffer(from, 0, &to.buffer, 0, bytes);
            Ok(Some((to, bytes)))
        };
        let mut pending = Pending::default();
        match (&whitened, &blocks) {
            (Some((rows, bytes)), _) => pending.blocks = copy(rows, ReadKind::Blocks, *bytes)?,
            (None, Some(blocks)) => pending.blocks = copy(blocks, ReadKind::Blocks, sizes.blocks)?,
            (None, None) => {}
        }
        if let (Some(counts), true) = (&counts, reads_counts) {
            pending.counts = copy(counts, ReadKind::Counts, sizes.counts)?;
        }
        if let Some(labels) = &labels {
            pending.labels = copy(labels, ReadKind::Labels, sizes.per_row)?;
        }
        clock.lap(&mut encoder, "readback");
        clock.finish(&mut encoder);
        Ok((encoder, pending))
    }

    /// Copy a finished chunk's results out of the staging buffers: labels
    /// into place, whole images straight into the output, the sums and
    /// counts of a chunk to be combined into the scratch piece.
    fn collect(&mut self, chunk: &Chunk, pending: &Pending) -> Result<()> {
        let ctx = self.session.ctx;
        let (k, f) = (self.shape.clusters, self.shape.dim);
        if let Some((staging, _)) = &pending.labels {
            let dst = bytemuck::cast_slice_mut(&mut self.labels[chunk.rows.clone()]);
            read_into(ctx, staging, dst, "labels")?;
        }
        let Some((blocks, _)) = &pending.blocks else {
            return Ok(());
        };
        if self.combined(chunk) {
            let scratch = &mut *self.session.scratch;
            scratch.piece.resize(k * f, 0.0);
            scratch.piece_counts.resize(k, 0);
            read_into(
                ctx,
                blocks,
                bytemuck::cast_slice_mut(&mut scratch.piece),
                "blocks",
            )?;
            let (counts, _) = pending.counts.as_ref().ok_or_else(|| {
                VladError::Gpu("a piece's counts were not read back (a bug)".to_string())
            })?;
            let dst = bytemuck::cast_slice_mut(&mut scratch.piece_counts);
            return read_into(ctx, counts, dst, "counts");
        }
        let Sink::Rows {
            out,
            counts,
            whitening,
            ..
        } = &mut self.sink
        else {
            return Err(VladError::Gpu(
                "whole images read back without rows to write (a bug)".to_string(),
            ));
        };
        let images = chunk.images.clone();
        match whitening {
            None => {
                let dst =
                    bytemuck::cast_slice_mut(&mut out[images.start * k * f..images.end * k * f]);
                read_into(ctx, blocks, dst, "blocks")?;
            }
            Some(w) => {
                let scratch = &mut self.session.scratch.whitened;
                scratch.resize(images.len() * w.projection.width as usize, 0.0);
                read_into(
                    ctx,
                    blocks,
                    bytemuck::cast_slice_mut(scratch),
                    "whitened rows",
                )?;
                let dout = w.whitening.dims_out();
                w.finish_rows(scratch, &mut out[images.start * dout..images.end * dout]);
            }
        }
        if let (Some(counts), Some((staging, _))) = (counts, &pending.counts) {
            let dst = bytemuck::cast_slice_mut(&mut counts[images.start * k..images.end * k]);
            read_into(ctx, staging, dst, "counts")?;
        }
        Ok(())
    }

    /// Add the piece just read back to its image's running sums; after the
    /// last piece of an image of the output, finish it (rounded once, then
    /// normalized on the host) into its row.
    fn combine(&mut self, chunk: &Chunk) -> Result<()> {
        let scratch = &*self.session.scratch;
        let soft = self.route.soft_counts();
        let mass = scratch.piece_counts.iter().map(|&n| match soft {
            true => f32::from_bits(n) as f64,
            false => n as f64,
        });
        let (k, f) = (self.shape.clusters, self.shape.dim);
        match &mut self.sink {
            Sink::Piece(image) => image.add_f32(&scratch.piece, mass),
            Sink::Rows {
                out,
                norm,
                counts,
                whitening,
            } => {
                if chunk.part.is_none_or(|p| p.index == 0) {
                    self.split = Some(SplitImage::new(self.codebook));
                }
                let image = self.split.as_mut().ok_or_else(|| {
                    VladError::Gpu("a piece came before its image's first (a bug)".to_string())
                })?;
                image.add_f32(&scratch.piece, mass)?;
                if !chunk.completes_image() {
                    return Ok(());
                }
                let t = chunk.images.start;
                match whitening {
                    None => {
                        image.finish(self.codebook, norm, &mut out[t * k * f..(t + 1) * k * f])?
                    }
                    // Finished on the host, whitened on the device, as a
                    // split image of a stream is (the same stage's bits).
                    Some(w) => {
                        let mut raw = vec![0.0f32; k * f];
                        image.finish(self.codebook, norm, &mut raw)?;
                        let dout = w.whitening.dims_out();
                        crate::backend::gpu::whitening::whiten_rows(
                            self.session.ctx,
                            &self.session.stages.whiten,
                            w.whitening,
                            &w.projection,
                            &raw,
                            &mut out[t * dout..(t + 1) * dout],
                        )?;
                    }
                }
                if let Some(counts) = counts {
                    for (c, &m) in counts[t * k..(t + 1) * k].iter_mut().zip(&image.mass) {
                        *c = m as u32;
                    }
                }
                Ok(())
            }
            Sink::Labels => Ok(()),
        }
    }
}

/// Write `chunk`'s descriptors (into slot `slot`'s upload staging, which
/// the chunk's own submission copies to the device), offsets and, when the
/// input has labels, the sort keys built from them into slot `slot`'s
/// pooled buffers.
fn upload<E: Element>(
    session: &mut Session<'_>,
    shape: &ChunkShape,
    input: &Input<'_, E>,
    chunk: &Chunk,
    slot: Slot,
) -> Result<Uploaded> {
    let ctx = session.ctx;
    let sizes = ChunkBuffers::new(shape, chunk.image_count() as u64, chunk.row_count() as u64);
    let descriptors = session
        .pool
        .buffer(ctx, Role::Descriptors(slot), sizes.descriptors)?;
    let offsets = session
        .pool
        .buffer(ctx, Role::ImageOffsets(slot), sizes.offsets)?;
    let given = match input.labels {
        Some(_) => Some((
            session
                .pool
                .buffer(ctx, Role::GivenKeys(slot), sizes.per_row)?,
            session
                .pool
                .buffer(ctx, Role::GivenValues(slot), sizes.per_row)?,
        )),
        None => None,
    };
    let scratch = &mut *session.scratch;
    let dim = shape.dim;
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

    if let Some(labels) = input.labels {
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
                let key = local_image * clusters + label as u64;
                scratch.keys.push(
                    u32::try_from(key)
                        .map_err(|_| VladError::Gpu(format!("a sort key ({key}) exceeds u32")))?,
                );
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

fn to_u32(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| VladError::Gpu(format!("{what} ({n}) exceeds u32")))
}
