//! The GPU route of SPEC §10, chunk by chunk, beside the hard path's
//! (`gpu::pipeline`, internal):
//!
//! * soft (NetVLAD): soft logits and softmax ([`crate::backend::gpu::stages::soft_logits`],
//!   `rn` folded into the weights) → per-image aggregation
//!   ([`crate::backend::gpu::stages::soft_aggregate`]) → the normalization steps, `mass`
//!   dividing by the soft counts;
//! * hard with `rn`: assignment (or the given labels) → unit residuals
//!   ([`crate::backend::gpu::stages::unit_residual`]) → the existing stable sort, segmented
//!   sum (of the unit residuals, no centroid subtracted) and residual
//!   layout → the existing normalization (`mass` by the hard counts).
//!
//! Chunks are planned by [`plan_chunks`] as if the descriptors were f32 and
//! `max(F, K)` wide, so the `rows × K` weights and the `rows × F` unit
//! residuals fit a binding too, then cut for overlap at image boundaries
//! like the hard path's. The host side is the hard path's: a chunk's
//! descriptors are staged by `pipeline::upload` (persistent mapped
//! staging filled in parallel straight from the caller's rows, f64 rounded
//! to f32 on the way), every device buffer comes from the session's
//! buffer pool, results are copied to the slot's read-back staging and
//! read in parallel straight into the output, one wait per chunk, and
//! `chunk_loop::drive` overlaps consecutive chunks where the hard path
//! does. An image split across chunks is aggregated raw piece by piece,
//! its sums and counts added on the host in f64 in piece order and
//! normalized there: a fixed order, so the output stays bitwise
//! reproducible (and the same bits whether chunks overlap or not).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use ndarray::Array2;

use crate::backend::gpu::chunk_loop::{self, ChunkSteps};
use crate::backend::gpu::chunking::{
    Chunk, ChunkBuffers, ChunkLimits, ChunkShape, plan_chunks, sort_by_label, split_for_overlap,
};
use crate::backend::gpu::context::GpuContext;
use crate::backend::gpu::gpu_backend::GpuBackend;
use crate::backend::gpu::host_memory;
use crate::backend::gpu::pipeline::{
    self, DeviceCodebook, InFlight, Input, Pending, Session, Uploaded, record_and_submit,
    wait_chunk,
};
use crate::backend::gpu::pool::{Role, Slot};
use crate::backend::gpu::stages::assign::AssignJob;
use crate::backend::gpu::stages::normalize::NormalizeJob;
use crate::backend::gpu::stages::radix_sort::{SortJob, SortedIn};
use crate::backend::gpu::stages::residual::ResidualJob;
use crate::backend::gpu::stages::segmented_scan::ScanJob;
use crate::backend::gpu::stages::soft_aggregate::{MassJob, SoftAggregateJob, SoftAggregateStage};
use crate::backend::gpu::stages::soft_logits::{SoftLogitsJob, SoftLogitsStage};
use crate::backend::gpu::stages::unit_residual::{UnitResidualJob, UnitResidualStage};
use crate::backend::gpu::staging::{ReadKind, read_into};
use crate::backend::gpu::timing::StageClock;
use crate::error::{Result, VladError};
use crate::model::assignment::SoftParams;
use crate::model::batch::Batch;
use crate::model::codebook::Codebook;
use crate::model::element::{DType, Element};
use crate::model::normalization::{Normalization, Step};
use crate::model::report::StageTimes;

/// The stages only this route uses.
pub struct SoftStages {
    logits: SoftLogitsStage,
    aggregate: SoftAggregateStage,
    unit: UnitResidualStage,
}

impl SoftStages {
    /// Compile them for `ctx`.
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        Ok(SoftStages {
            logits: SoftLogitsStage::new(),
            aggregate: SoftAggregateStage::new(ctx)?,
            unit: UnitResidualStage::new(ctx)?,
        })
    }
}

/// [`SoftStages`], compiled on first use (a session that never runs soft
/// assignment or `rn` does not pay for them).
#[derive(Default)]
pub struct SoftCache(Mutex<Option<Arc<SoftStages>>>);

impl SoftCache {
    fn get(&self, ctx: &GpuContext) -> Result<Arc<SoftStages>> {
        let mut held = self
            .0
            .lock()
            .map_err(|_| VladError::Gpu("the soft stage cache was poisoned".to_string()))?;
        if let Some(stages) = &*held {
            return Ok(stages.clone());
        }
        let stages = Arc::new(SoftStages::new(ctx)?);
        *held = Some(stages.clone());
        Ok(stages)
    }
}

/// One step of the device normalization: `mass` by the soft counts, or a
/// run of other steps for [`crate::backend::gpu::stages::normalize`].
enum Segment {
    SoftMass,
    Others(Normalization),
}

/// The steps after aggregation (`rn` dropped: it acted already), cut at
/// each `mass` when the counts are soft.
fn segments(norm: &Normalization, soft: bool) -> Result<Vec<Segment>> {
    let mut out = Vec::new();
    let mut pending = Vec::new();
    for &step in norm.steps() {
        match step {
            Step::ResidualNorm => {}
            Step::Mass if soft => {
                if !pending.is_empty() {
                    out.push(Segment::Others(Normalization::new(std::mem::take(
                        &mut pending,
                    ))?));
                }
                out.push(Segment::SoftMass);
            }
            other => pending.push(other),
        }
    }
    if !pending.is_empty() {
        out.push(Segment::Others(Normalization::new(pending)?));
    }
    Ok(out)
}

fn to_u32(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| VladError::Gpu(format!("{what} ({n}) exceeds u32")))
}

/// What one call runs chunk by chunk, as the chunk loop drives it.
struct SoftSteps<'r, 's, E: Element> {
    session: &'r mut Session<'s>,
    stages: &'r SoftStages,
    codebook: &'r DeviceCodebook,
    /// `W` and `b` on the device (soft assignment), none for hard with `rn`.
    soft: Option<(wgpu::Buffer, wgpu::Buffer)>,
    /// The descriptors' own shape (F, K, dtype): what buffers are sized by.
    shape: ChunkShape,
    input: Input<'r, E>,
    plan: &'r [Chunk],
    norm: &'r Normalization,
    /// The `T × K·F` encoding, written in place.
    out: &'r mut [f32],
    /// Every descriptor's label (given, or read back into place).
    labels: &'r mut [u32],
    /// Raw sums and (soft or hard) counts of a split image's pieces so far.
    piece_sums: Vec<f64>,
    piece_mass: Vec<f64>,
    /// One piece's blocks and counts as read back.
    piece: Vec<f32>,
    piece_soft: Vec<f32>,
    piece_hard: Vec<u32>,
}

impl GpuBackend {
    /// Encode `batch` on the GPU with soft assignment (`params`) or hard
    /// assignment (`None`: the batch's labels or computed ones) and `rn`
    /// when `norm` starts with it. Returns the `(T, K·F)` encoding and each
    /// descriptor's label (hard, or the centroid of largest weight).
    pub fn encode_weighted<E: Element>(
        &self,
        codebook: &Codebook,
        params: Option<&SoftParams>,
        batch: &Batch<'_, E>,
        norm: &Normalization,
        times: &mut StageTimes,
    ) -> Result<(Array2<f32>, Vec<u32>)> {
        let ctx = self.context();
        let (k, f) = (codebook.clusters(), codebook.dim());
        if batch.dim() != f {
            return Err(VladError::DimensionMismatch(format!(
                "descriptors have F = {} but centroids have F = {f}",
                batch.dim()
            )));
        }
        if let Some(p) = params
            && (p.weights().dim() != (k, f) || p.bias().len() != k)
        {
            return Err(VladError::DimensionMismatch(format!(
                "soft assignment parameters W {:?}, b ({}) do not match K × F = {k} × {f}",
                p.weights().dim(),
                p.bias().len()
            )));
        }
        // Compiled on the first call (setup, like the session's own stages).
        let soft_stages = self.soft.get(ctx)?;
        let plan_shape = ChunkShape {
            dim: f.max(k),
            clusters: k,
            dtype: DType::F32,
        };
        let plan = plan_chunks(batch.offsets(), &plan_shape, &ChunkLimits::for_context(ctx))?;
        // Soft assignment: large chunks are cut into smaller ones of whole
        // images, for overlap, without changing a bit (an image's logits and
        // sums do not depend on its neighbours in a chunk). The hard route's
        // segmented sums do depend on where a chunk starts, so its chunks
        // stay as planned: the same bits as before overlap existed.
        let plan = match params {
            Some(_) => split_for_overlap(plan, batch.offsets(), &plan_shape),
            None => plan,
        };
        let block = k * f;
        let images = batch.images();
        // Images without rows are the only chunks without rows: zeros.
        let mut vlad: Vec<f32> = host_memory::zeroed(images * block);
        let mut labels: Vec<u32> = match batch.labels() {
            Some(given) => given.to_vec(),
            None => host_memory::zeroed(batch.len()),
        };
        let busy: Vec<usize> = (0..plan.len())
            .filter(|&i| plan[i].row_count() > 0)
            .collect();
        self.with_session(codebook, |session, device_codebook| {
            let soft = match params {
                Some(p) => Some(upload_params(session, p)?),
                None => None,
            };
            let overlap = session.overlap;
            let mut steps = SoftSteps {
                session,
                stages: &soft_stages,
                codebook: device_codebook,
                soft,
                shape: ChunkShape {
                    dim: f,
                    clusters: k,
                    dtype: E::DTYPE,
                },
                input: Input {
                    rows: batch.rows(),
                    dim: f,
                    offsets: batch.offsets(),
                    labels: batch.labels(),
                },
                plan: &plan,
                norm,
                out: &mut vlad,
                labels: &mut labels,
                piece_sums: Vec::new(),
                piece_mass: Vec::new(),
                piece: Vec::new(),
                piece_soft: Vec::new(),
                piece_hard: Vec::new(),
            };
            chunk_loop::drive(&mut steps, &busy, overlap, times)
        })?;
        let vlad = Array2::from_shape_vec((images, block), vlad)
            .map_err(|e| VladError::Gpu(format!("encoding has the wrong shape: {e}")))?;
        Ok((vlad, labels))
    }
}

/// `W` and `b` into their pooled buffers (small: written every call).
fn upload_params(
    session: &mut Session<'_>,
    params: &SoftParams,
) -> Result<(wgpu::Buffer, wgpu::Buffer)> {
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

impl<'s, E: Element> ChunkSteps for SoftSteps<'_, 's, E> {
    type Staged = Uploaded;
    type InFlight = InFlight<'s>;

    fn stage(&mut self, index: usize, slot: Slot) -> Result<Uploaded> {
        // Sort keys from given labels only for hard assignment.
        let given = self.soft.is_none();
        pipeline::upload(
            self.session,
            &self.shape,
            &self.input,
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
            self.record(&self.plan[index], &uploaded, clock)
        })
    }

    fn complete(&mut self, flight: InFlight<'s>, times: &mut StageTimes) -> Result<()> {
        let ctx = self.session.ctx;
        wait_chunk(
            ctx,
            flight.submission,
            flight.submitted,
            &flight.clock,
            times,
        )?;
        let started = Instant::now();
        let chunk = &self.plan[flight.index];
        self.collect(chunk, &flight.pending)?;
        times.add("readback", started.elapsed().as_secs_f64());
        flight.clock.collect(ctx, times)?;
        if let Some(part) = chunk.part {
            let started = Instant::now();
            self.add_piece(chunk, part.index == 0)?;
            times.add("combine", started.elapsed().as_secs_f64());
        }
        Ok(())
    }
}

impl<E: Element> SoftSteps<'_, '_, E> {
    /// Record one chunk: the copy of its staged descriptors, its stages,
    /// and the copies of its results to the slot's read-back staging.
    fn record(
        &mut self,
        chunk: &Chunk,
        uploaded: &Uploaded,
        clock: &mut StageClock<'_>,
    ) -> Result<(wgpu::CommandEncoder, Pending)> {
        let ctx = self.session.ctx;
        let hard = self.session.stages;
        let soft_stages = self.stages;
        let codebook = self.codebook;
        let pool = &mut *self.session.pool;
        let (k, f) = (self.shape.clusters, self.shape.dim);
        let rows = to_u32(chunk.row_count(), "rows in a chunk")?;
        let images = to_u32(chunk.image_count(), "images in a chunk")?;
        let (clusters, dim) = (to_u32(k, "K")?, to_u32(f, "F")?);
        let sizes = ChunkBuffers::new(&self.shape, images as u64, rows as u64);
        let u8_input = E::DTYPE == DType::U8;
        let whole = chunk.part.is_none();
        let descriptors = &uploaded.descriptors;
        let offsets = &uploaded.offsets;

        let mut encoder = ctx.encoder("vlad weighted chunk");
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
        let blocks = pool.buffer(ctx, Role::Blocks, sizes.blocks)?;
        let counts = pool.buffer(ctx, Role::Counts, sizes.counts)?;
        let labels = pool.buffer(ctx, Role::Labels, sizes.per_row)?;
        let mut computed_labels = true;
        match &self.soft {
            Some((w, b)) => {
                let weight_bytes = rows as u64 * k as u64 * 4;
                let weights = pool.buffer(ctx, Role::SoftWeights, weight_bytes)?;
                let rn = self.norm.residual_normalized();
                let unscaled = pool.buffer(
                    ctx,
                    Role::UnscaledWeights,
                    if rn { weight_bytes } else { 4 },
                )?;
                soft_stages.logits.record(
                    ctx,
                    &mut encoder,
                    &SoftLogitsJob {
                        descriptors,
                        u8_input,
                        soft_weights: w,
                        soft_bias: b,
                        centroids: &codebook.centroids,
                        residual_norm: rn,
                        rows,
                        dim,
                        clusters,
                        weights: &weights,
                        labels: &labels,
                        unscaled: &unscaled,
                    },
                )?;
                clock.lap(&mut encoder, "soft logits");
                soft_stages.aggregate.record(
                    ctx,
                    &mut encoder,
                    &SoftAggregateJob {
                        descriptors,
                        u8_input,
                        weights: &weights,
                        mass_weights: if rn { &unscaled } else { &weights },
                        centroids: &codebook.centroids,
                        image_offsets: offsets,
                        rows,
                        dim,
                        clusters,
                        images,
                        blocks: &blocks,
                        mass: &counts,
                    },
                )?;
                clock.lap(&mut encoder, "soft aggregate");
            }
            None => {
                let (keys, values) = match &uploaded.given {
                    Some((keys, values)) => {
                        computed_labels = false;
                        // The unit residuals read each row's label.
                        let given = self.input.labels.unwrap_or_default();
                        let mine = given.get(chunk.rows.clone()).ok_or_else(|| {
                            VladError::Gpu("given labels do not cover the chunk".to_string())
                        })?;
                        ctx.checked("uploading labels", || {
                            ctx.queue
                                .write_buffer(&labels, 0, bytemuck::cast_slice(mine))
                        })?;
                        (keys.clone(), values.clone())
                    }
                    None => {
                        let keys = pool.buffer(ctx, Role::Keys, sizes.per_row)?;
                        let values = pool.buffer(ctx, Role::Values, sizes.per_row)?;
                        let job = AssignJob {
                            descriptors,
                            u8_input,
                            centroids: &codebook.centroids,
                            centroid_norms: &codebook.norms,
                            image_offsets: offsets,
                            rows,
                            dim,
                            clusters,
                            images,
                            labels: &labels,
                            keys: &keys,
                            values: &values,
                        };
                        hard.record_assign(ctx, &mut encoder, clock, &job)?;
                        (keys, values)
                    }
                };
                let units = pool.buffer(ctx, Role::UnitResiduals, rows as u64 * f as u64 * 4)?;
                soft_stages.unit.record(
                    ctx,
                    &mut encoder,
                    &UnitResidualJob {
                        descriptors,
                        u8_input,
                        centroids: &codebook.centroids,
                        labels: &labels,
                        rows,
                        dim,
                        clusters,
                        units: &units,
                    },
                )?;
                clock.lap(&mut encoder, "unit residual");
                let alt_keys = pool.buffer(ctx, Role::AltKeys, sizes.per_row)?;
                let alt_values = pool.buffer(ctx, Role::AltValues, sizes.per_row)?;
                // By label alone: the rows are in image order already.
                let (label_bits, label_modulus) = sort_by_label(k);
                let sorted_in = hard.sort.record(
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
                let segments = hard.scan.record_into(
                    ctx,
                    &mut encoder,
                    &ScanJob {
                        sorted_keys,
                        sorted_rows,
                        descriptors: &units,
                        u8_input: false,
                        centroids: &codebook.centroids,
                        subtract_centroid: false,
                        rows,
                        dim,
                        clusters,
                        images,
                    },
                    Some(&blocks),
                )?;
                clock.lap(&mut encoder, "scan");
                hard.residual.record(
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
            }
        }
        // A piece of a split image stays raw: it is normalized on the host
        // once all its pieces are summed.
        if whole {
            for segment in segments(self.norm, self.soft.is_some())? {
                match segment {
                    Segment::SoftMass => soft_stages.aggregate.record_mass(
                        ctx,
                        &mut encoder,
                        &MassJob {
                            blocks: &blocks,
                            mass: &counts,
                            images,
                            clusters,
                            dim,
                        },
                    )?,
                    Segment::Others(steps) => hard.normalize.record(
                        ctx,
                        &mut encoder,
                        &NormalizeJob {
                            blocks: &blocks,
                            counts: &counts,
                            images,
                            clusters,
                            dim,
                            normalization: &steps,
                        },
                    )?,
                }
            }
            clock.lap(&mut encoder, "normalize");
        }

        let staging = &mut *self.session.staging;
        let slot = uploaded.slot;
        let mut pending = Pending::default();
        let copy = |encoder: &mut wgpu::CommandEncoder,
                    staging: &mut crate::backend::gpu::staging::StagingSet,
                    kind: ReadKind,
                    from: &wgpu::Buffer,
                    bytes: u64|
         -> Result<Option<_>> {
            if bytes == 0 {
                return Ok(None);
            }
            let to = staging.readback(ctx, kind, slot, bytes)?;
            encoder.copy_buffer_to_buffer(from, 0, &to.buffer, 0, bytes);
            Ok(Some((to, bytes)))
        };
        pending.blocks = copy(
            &mut encoder,
            staging,
            ReadKind::Blocks,
            &blocks,
            sizes.blocks,
        )?;
        if !whole {
            pending.counts = copy(
                &mut encoder,
                staging,
                ReadKind::Counts,
                &counts,
                sizes.counts,
            )?;
        }
        if computed_labels {
            pending.labels = copy(
                &mut encoder,
                staging,
                ReadKind::Labels,
                &labels,
                sizes.per_row,
            )?;
        }
        clock.lap(&mut encoder, "readback");
        clock.finish(&mut encoder);
        Ok((encoder, pending))
    }

    /// Copy a finished chunk's results out of the staging buffers: labels
    /// into place, whole images straight into the output, a piece into the
    /// piece buffers.
    fn collect(&mut self, chunk: &Chunk, pending: &Pending) -> Result<()> {
        let ctx = self.session.ctx;
        let block = self.shape.clusters * self.shape.dim;
        let k = self.shape.clusters;
        if let Some((staging, _)) = &pending.labels {
            let dst = bytemuck::cast_slice_mut(&mut self.labels[chunk.rows.clone()]);
            read_into(ctx, staging, dst, "labels")?;
        }
        let Some((blocks, _)) = &pending.blocks else {
            return Ok(());
        };
        match chunk.part {
            None => {
                let images = chunk.images.clone();
                let dst = bytemuck::cast_slice_mut(
                    &mut self.out[images.start * block..images.end * block],
                );
                read_into(ctx, blocks, dst, "blocks")
            }
            Some(_) => {
                self.piece.resize(block, 0.0);
                read_into(
                    ctx,
                    blocks,
                    bytemuck::cast_slice_mut(&mut self.piece[..]),
                    "blocks",
                )?;
                if let Some((counts, _)) = &pending.counts {
                    let dst: &mut [u8] = if self.soft.is_some() {
                        self.piece_soft.resize(k, 0.0);
                        bytemuck::cast_slice_mut(&mut self.piece_soft[..])
                    } else {
                        self.piece_hard.resize(k, 0);
                        bytemuck::cast_slice_mut(&mut self.piece_hard[..])
                    };
                    read_into(ctx, counts, dst, "counts")?;
                }
                Ok(())
            }
        }
    }

    /// Add a piece just read back to its image's running f64 sums (`first`:
    /// the image's first piece); after its last piece, round, normalize on
    /// the host and write the image's row.
    fn add_piece(&mut self, chunk: &Chunk, first: bool) -> Result<()> {
        let (k, f) = (self.shape.clusters, self.shape.dim);
        let block = k * f;
        if first {
            self.piece_sums.clear();
            self.piece_sums.resize(block, 0.0);
            self.piece_mass.clear();
            self.piece_mass.resize(k, 0.0);
        }
        for (s, &x) in self.piece_sums.iter_mut().zip(&self.piece) {
            *s += x as f64;
        }
        if self.soft.is_some() {
            for (s, &x) in self.piece_mass.iter_mut().zip(&self.piece_soft) {
                *s += x as f64;
            }
        } else {
            // Through f32, as the counts always went.
            for (s, &n) in self.piece_mass.iter_mut().zip(&self.piece_hard) {
                *s += n as f32 as f64;
            }
        }
        if chunk.completes_image() {
            let t = chunk.images.start;
            let mut row = Array2::from_shape_vec(
                (1, block),
                self.piece_sums.iter().map(|&s| s as f32).collect(),
            )
            .map_err(|e| VladError::Gpu(format!("combining pieces: {e}")))?;
            let mass =
                Array2::from_shape_vec((1, k), self.piece_mass.iter().map(|&s| s as f32).collect())
                    .map_err(|e| VladError::Gpu(format!("combining pieces: {e}")))?;
            crate::backend::cpu::normalize::normalize_rows(&mut row, &mass, k, f, self.norm);
            if let Some(r) = row.as_slice() {
                self.out[t * block..(t + 1) * block].copy_from_slice(r);
            }
        }
        Ok(())
    }
}
