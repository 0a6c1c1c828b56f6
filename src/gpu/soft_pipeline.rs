//! The GPU route of SPEC §10, chunk by chunk, beside the hard path's
//! [`crate::gpu::pipeline`] (which it does not change):
//!
//! * soft (NetVLAD): soft logits and softmax ([`crate::gpu::soft_logits`],
//!   `rn` folded into the weights) → per-image aggregation
//!   ([`crate::gpu::soft_aggregate`]) → the normalization steps, `mass`
//!   dividing by the soft counts;
//! * hard with `rn`: assignment (or the given labels) → unit residuals
//!   ([`crate::gpu::unit_residual`]) → the existing stable sort, segmented
//!   sum (of the unit residuals, no centroid subtracted) and residual
//!   layout → the existing normalization (`mass` by the hard counts).
//!
//! Chunks are planned by [`plan_chunks`] as if the descriptors were f32 and
//! `max(F, K)` wide, so the `rows × K` weights and the `rows × F` unit
//! residuals fit a binding too. Chunks run one after the other (no
//! overlap: this path favours simplicity). An image split across chunks is
//! aggregated raw piece by piece, its sums and counts added on the host in
//! f64 in piece order and normalized there: a fixed order, so the output
//! stays bitwise reproducible.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use ndarray::Array2;

use crate::assignment::SoftParams;
use crate::codebook::Codebook;
use crate::element::{DType, Element};
use crate::error::{Result, VladError};
use crate::gpu::assign::AssignJob;
use crate::gpu::backend::GpuBackend;
use crate::gpu::chunking::{Chunk, ChunkLimits, ChunkShape, key_bits, plan_chunks};
use crate::gpu::context::GpuContext;
use crate::gpu::normalize::NormalizeJob;
use crate::gpu::radix_sort::{SortJob, SortedIn};
use crate::gpu::residual::ResidualJob;
use crate::gpu::segmented_scan::ScanJob;
use crate::gpu::soft_aggregate::{MassJob, SoftAggregateJob, SoftAggregateStage};
use crate::gpu::soft_logits::{SoftLogitsJob, SoftLogitsStage};
use crate::gpu::unit_residual::{UnitResidualJob, UnitResidualStage};
use crate::input::Batch;
use crate::normalization::{Normalization, Step};
use crate::report::StageTimes;

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
/// run of other steps for [`crate::gpu::normalize`].
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

/// The bytes of `rows` as the device reads them: f32 and u8 as they are
/// (u8 packed four per word by the upload's padding), f64 rounded to f32.
fn device_bytes<E: Element>(rows: &[E]) -> Vec<u8> {
    match E::DTYPE {
        DType::F32 | DType::U8 => bytemuck::cast_slice(rows).to_vec(),
        DType::F64 => rows.iter().flat_map(|x| x.to_f32().to_le_bytes()).collect(),
    }
}

fn to_u32(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| VladError::Gpu(format!("{what} ({n}) exceeds u32")))
}

/// The device copies of the codebook and soft parameters for one call.
struct DeviceParams {
    centroids: wgpu::Buffer,
    norms: wgpu::Buffer,
    soft: Option<(wgpu::Buffer, wgpu::Buffer)>,
}

/// What one chunk hands back.
struct ChunkOut {
    blocks: Vec<f32>,
    /// Per (image, cluster): soft counts, or hard counts as f32. Only for a
    /// piece of a split image (whole images are normalized on the device).
    mass: Vec<f32>,
    /// Computed labels (none when they were given).
    labels: Option<Vec<u32>>,
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
        let plan = plan_chunks(
            batch.offsets(),
            &ChunkShape {
                dim: f.max(k),
                clusters: k,
                dtype: DType::F32,
            },
            &ChunkLimits::for_context(ctx),
        )?;
        let device = DeviceParams {
            centroids: ctx.upload("centroids", codebook.as_slice())?,
            norms: ctx.upload("centroid norms", codebook.squared_norms())?,
            soft: match params {
                Some(p) => Some((
                    ctx.upload("soft W", p.weights_slice())?,
                    ctx.upload("soft b", p.bias_slice())?,
                )),
                None => None,
            },
        };
        let block = k * f;
        let images = batch.images();
        let mut vlad = Array2::<f32>::zeros((images, block));
        let Some(out) = vlad.as_slice_mut() else {
            unreachable!("a fresh array is contiguous");
        };
        let mut labels = match batch.labels() {
            Some(given) => given.to_vec(),
            None => vec![0u32; batch.len()],
        };
        let mut piece_sums: Vec<f64> = Vec::new();
        let mut piece_mass: Vec<f64> = Vec::new();
        for chunk in plan.iter().filter(|c| c.row_count() > 0) {
            let result =
                self.run_chunk(&soft_stages, &device, codebook, batch, chunk, norm, times)?;
            if let Some(computed) = result.labels {
                labels[chunk.rows.clone()].copy_from_slice(&computed);
            }
            match chunk.part {
                None => out[chunk.images.start * block..chunk.images.end * block]
                    .copy_from_slice(&result.blocks),
                Some(part) => {
                    let started = Instant::now();
                    if part.index == 0 {
                        piece_sums.clear();
                        piece_sums.resize(block, 0.0);
                        piece_mass.clear();
                        piece_mass.resize(k, 0.0);
                    }
                    for (s, &x) in piece_sums.iter_mut().zip(&result.blocks) {
                        *s += x as f64;
                    }
                    for (s, &x) in piece_mass.iter_mut().zip(&result.mass) {
                        *s += x as f64;
                    }
                    if chunk.completes_image() {
                        let t = chunk.images.start;
                        let mut row = Array2::from_shape_vec(
                            (1, block),
                            piece_sums.iter().map(|&s| s as f32).collect(),
                        )
                        .map_err(|e| VladError::Gpu(format!("combining pieces: {e}")))?;
                        let mass = Array2::from_shape_vec(
                            (1, k),
                            piece_mass.iter().map(|&s| s as f32).collect(),
                        )
                        .map_err(|e| VladError::Gpu(format!("combining pieces: {e}")))?;
                        crate::cpu::weighted_normalize::normalize_rows(&mut row, &mass, k, f, norm);
                        if let Some(r) = row.as_slice() {
                            out[t * block..(t + 1) * block].copy_from_slice(r);
                        }
                    }
                    times.add("combine", started.elapsed().as_secs_f64());
                }
            }
        }
        Ok((vlad, labels))
    }

    /// Upload, record, run and read back one chunk.
    #[allow(clippy::too_many_arguments)]
    fn run_chunk<E: Element>(
        &self,
        soft_stages: &SoftStages,
        device: &DeviceParams,
        codebook: &Codebook,
        batch: &Batch<'_, E>,
        chunk: &Chunk,
        norm: &Normalization,
        times: &mut StageTimes,
    ) -> Result<ChunkOut> {
        let ctx = self.context();
        let hard = self.compiled_stages();
        let (k, f) = (codebook.clusters(), codebook.dim());
        let rows = to_u32(chunk.row_count(), "rows in a chunk")?;
        let images = to_u32(chunk.image_count(), "images in a chunk")?;
        let (clusters, dim) = (to_u32(k, "K")?, to_u32(f, "F")?);
        let u8_input = E::DTYPE == DType::U8;
        let whole = chunk.part.is_none();

        let started = Instant::now();
        let local: Vec<u32> = match chunk.part {
            Some(_) => vec![0, rows],
            None => batch.offsets()[chunk.images.start..=chunk.images.end]
                .iter()
                .map(|&o| to_u32(o - chunk.rows.start, "rows in a chunk"))
                .collect::<Result<_>>()?,
        };
        let all_rows = batch.rows();
        let descriptors = ctx.upload(
            "descriptors",
            &device_bytes(&all_rows[chunk.rows.start * f..chunk.rows.end * f]),
        )?;
        let offsets = ctx.upload("image offsets", &local)?;
        let block_bytes = images as u64 * k as u64 * f as u64 * 4;
        let count_bytes = images as u64 * k as u64 * 4;
        let blocks = ctx.storage_buffer("blocks", block_bytes)?;
        let counts = ctx.storage_buffer("counts", count_bytes)?;
        let labels = ctx.storage_buffer("labels", rows as u64 * 4)?;
        times.add("upload", started.elapsed().as_secs_f64());

        let started = Instant::now();
        let mut encoder = ctx.encoder("vlad weighted chunk");
        let mut computed_labels = true;
        match &device.soft {
            Some((w, b)) => {
                let weight_bytes = rows as u64 * k as u64 * 4;
                let weights = ctx.storage_buffer("soft weights", weight_bytes)?;
                let rn = norm.residual_normalized();
                let unscaled =
                    ctx.storage_buffer("unscaled weights", if rn { weight_bytes } else { 4 })?;
                soft_stages.logits.record(
                    ctx,
                    &mut encoder,
                    &SoftLogitsJob {
                        descriptors: &descriptors,
                        u8_input,
                        soft_weights: w,
                        soft_bias: b,
                        centroids: &device.centroids,
                        residual_norm: rn,
                        rows,
                        dim,
                        clusters,
                        weights: &weights,
                        labels: &labels,
                        unscaled: &unscaled,
                    },
                )?;
                soft_stages.aggregate.record(
                    ctx,
                    &mut encoder,
                    &SoftAggregateJob {
                        descriptors: &descriptors,
                        u8_input,
                        weights: &weights,
                        mass_weights: if rn { &unscaled } else { &weights },
                        centroids: &device.centroids,
                        image_offsets: &offsets,
                        rows,
                        dim,
                        clusters,
                        images,
                        blocks: &blocks,
                        mass: &counts,
                    },
                )?;
            }
            None => {
                let per_row = rows as u64 * 4;
                let (keys, values) = match batch.labels() {
                    Some(given) => {
                        computed_labels = false;
                        let mine = &given[chunk.rows.clone()];
                        let mut keys = Vec::with_capacity(mine.len());
                        for t in chunk.images.clone() {
                            let local_image = (t - chunk.images.start) as u64;
                            let first = batch.offsets()[t].max(chunk.rows.start);
                            let end = batch.offsets()[t + 1].min(chunk.rows.end);
                            for &label in &given[first..end] {
                                keys.push(
                                    u32::try_from(local_image * k as u64 + label as u64).map_err(
                                        |_| VladError::Gpu("a sort key exceeds u32".to_string()),
                                    )?,
                                );
                            }
                        }
                        let values: Vec<u32> = (0..rows).collect();
                        ctx.checked("uploading labels", || {
                            ctx.queue
                                .write_buffer(&labels, 0, bytemuck::cast_slice(mine))
                        })?;
                        (ctx.upload("keys", &keys)?, ctx.upload("values", &values)?)
                    }
                    None => {
                        let keys = ctx.storage_buffer("keys", per_row)?;
                        let values = ctx.storage_buffer("values", per_row)?;
                        let job = AssignJob {
                            descriptors: &descriptors,
                            u8_input,
                            centroids: &device.centroids,
                            centroid_norms: &device.norms,
                            image_offsets: &offsets,
                            rows,
                            dim,
                            clusters,
                            images,
                            labels: &labels,
                            keys: &keys,
                            values: &values,
                        };
                        match &hard.assign_coop {
                            Some(coop) => coop.record(ctx, &mut encoder, &job)?,
                            None => hard.assign.record(ctx, &mut encoder, &job)?,
                        }
                        (keys, values)
                    }
                };
                let units = ctx.storage_buffer("unit residuals", rows as u64 * f as u64 * 4)?;
                soft_stages.unit.record(
                    ctx,
                    &mut encoder,
                    &UnitResidualJob {
                        descriptors: &descriptors,
                        u8_input,
                        centroids: &device.centroids,
                        labels: &labels,
                        rows,
                        dim,
                        clusters,
                        units: &units,
                    },
                )?;
                let alt_keys = ctx.storage_buffer("alt keys", per_row)?;
                let alt_values = ctx.storage_buffer("alt values", per_row)?;
                let sorted_in = hard.sort.record(
                    ctx,
                    &mut encoder,
                    &SortJob {
                        keys: &keys,
                        values: &values,
                        alt_keys: &alt_keys,
                        alt_values: &alt_values,
                        len: rows,
                        key_bits: key_bits(chunk.image_count(), k),
                    },
                )?;
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
                        centroids: &device.centroids,
                        subtract_centroid: false,
                        rows,
                        dim,
                        clusters,
                        images,
                    },
                    Some(&blocks),
                )?;
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
            }
        }
        let soft = device.soft.is_some();
        if whole {
            for segment in segments(norm, soft)? {
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
        }
        ctx.submit_and_wait("a weighted chunk", encoder)?;
        times.add("compute", started.elapsed().as_secs_f64());

        let started = Instant::now();
        let element_count = images as usize * k * f;
        let out_blocks = ctx.read_back("blocks", &blocks, 0, element_count)?;
        let mass = match (whole, soft) {
            (true, _) => Vec::new(),
            (false, true) => ctx.read_back("soft counts", &counts, 0, images as usize * k)?,
            (false, false) => ctx
                .read_back::<u32>("counts", &counts, 0, images as usize * k)?
                .into_iter()
                .map(|n| n as f32)
                .collect(),
        };
        let out_labels = if computed_labels {
            Some(ctx.read_back("labels", &labels, 0, rows as usize)?)
        } else {
            None
        };
        times.add("readback", started.elapsed().as_secs_f64());
        Ok(ChunkOut {
            blocks: out_blocks,
            mass,
            labels: out_labels,
        })
    }
}
