//! The GPU session: one device, the compiled stages, a buffer pool and the
//! codebook on the device, behind the three entry points the rest of the
//! crate calls (`encode`, `assign`, and `cluster_sums` for k-means).
//!
//! Creating one compiles every shader (milliseconds to seconds, depending on
//! the driver), so callers keep one session and reuse it: the
//! [`Encoder`](crate::Encoder) makes it lazily, once.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

use ndarray::Array2;

use crate::backend::gpu::chunking::{Chunk, ChunkLimits, ChunkShape, plan_chunks};
use crate::backend::gpu::context::{GpuContext, GpuOptions};
use crate::backend::gpu::pipeline::{
    self, CompiledStages, DeviceCodebook, HostScratch, Input, Session, Work,
};
use crate::backend::gpu::pool::{BufferPool, Role};
use crate::backend::gpu::staging::StagingSet;
use crate::backend::gpu::timing::GpuTimer;
use crate::error::{Result, VladError};
use crate::model::batch::Batch;
use crate::model::codebook::Codebook;
use crate::model::element::Element;
use crate::model::normalization::Normalization;
use crate::model::report::StageTimes;

/// A ready-to-run GPU backend.
pub struct GpuBackend {
    ctx: GpuContext,
    stages: CompiledStages,
    timer: Option<GpuTimer>,
    state: Mutex<SessionState>,
    /// Test hook: lose the device at the start of the next run.
    lose_on_next_run: AtomicBool,
    /// Chunk overlap: 0 = by adapter (off for software ones), 1 = off, 2 = on.
    overlap: AtomicU8,
    /// The stages of soft assignment and `rn` (`soft_pipeline`), compiled
    /// on first use.
    pub(crate) soft: crate::backend::gpu::soft_pipeline::SoftCache,
}

/// What successive calls share; one call runs at a time.
struct SessionState {
    pool: BufferPool,
    scratch: HostScratch,
    staging: StagingSet,
    /// The centroids now in the pool's centroid buffers, compared by value:
    /// an address is no identity (k-means frees and reallocates codebooks).
    uploaded: Option<(usize, Vec<f32>)>,
}

impl GpuBackend {
    /// Open a device (see [`GpuContext::new`]) and compile every stage.
    /// No adapter → [`VladError::BackendUnavailable`]; a shader the driver
    /// rejects → [`VladError::Gpu`].
    pub fn new(options: &GpuOptions) -> Result<Self> {
        Self::with_context(GpuContext::new(options)?)
    }

    /// Compile every stage on an existing context.
    pub fn with_context(ctx: GpuContext) -> Result<Self> {
        let stages = CompiledStages::new(&ctx)?;
        let timer = GpuTimer::new(&ctx)?;
        let pool = BufferPool::new(&ctx);
        Ok(GpuBackend {
            ctx,
            stages,
            timer,
            state: Mutex::new(SessionState {
                pool,
                scratch: HostScratch::default(),
                staging: StagingSet::default(),
                uploaded: None,
            }),
            lose_on_next_run: AtomicBool::new(false),
            overlap: AtomicU8::new(0),
            soft: Default::default(),
        })
    }

    /// Why tensor cores, asked for with `VLAD_GPU_TENSOR_CORES=1`, are not
    /// used by this session (`None` when they are, or were not asked for).
    pub fn tensor_core_note(&self) -> Option<String> {
        crate::backend::gpu::stages::assign_coop::note(&self.stages.tensor_cores)
    }

    /// The adapter's kind (a software one's timings are not GPU speed).
    pub fn adapter_kind(&self) -> crate::backend::adapters::AdapterKind {
        crate::backend::gpu::adapters::kind_of(self.ctx.info.device_type)
    }

    /// The adapter's name and API, e.g. "NVIDIA H100 80GB HBM3 (Vulkan)".
    pub fn adapter_name(&self) -> String {
        self.ctx.adapter_name()
    }

    /// The device context.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Whether the device was lost: this session can run nothing more, a
    /// new one must be made (the [`GpuSlot`](crate::backend::gpu::GpuSlot) does).
    pub fn is_lost(&self) -> bool {
        self.ctx.is_lost()
    }

    /// Test hook: the next run loses the device once it has started, as a
    /// driver reset in the middle of a call would.
    #[doc(hidden)]
    pub fn simulate_loss_on_next_run(&self) {
        self.lose_on_next_run.store(true, Ordering::SeqCst);
    }

    /// Force overlapping consecutive chunks on (`Some(true)`) or off, or
    /// leave it to the adapter (`None`: on, except on software adapters,
    /// where the "device" computes on the host's own cores). The output is
    /// the same bits either way; tests use this to run the overlapped path
    /// on lavapipe.
    pub fn set_overlap(&self, on: Option<bool>) {
        let v = match on {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        };
        self.overlap.store(v, Ordering::SeqCst);
    }

    /// Whether per-stage times come from GPU timestamps (else wall time of
    /// each whole submission, as stage `"compute"`).
    pub fn has_stage_timestamps(&self) -> bool {
        self.timer.is_some()
    }

    /// The chunks `batch` would run in against `codebook` on this device.
    pub fn plan<E: Element>(
        &self,
        codebook: &Codebook,
        batch: &Batch<'_, E>,
    ) -> Result<Vec<Chunk>> {
        plan_chunks(
            batch.offsets(),
            &ChunkShape {
                dim: codebook.dim(),
                clusters: codebook.clusters(),
                dtype: E::DTYPE,
            },
            &ChunkLimits::for_context(&self.ctx),
        )
    }

    /// The chunks images with CSR `offsets` of `dtype` would run in
    /// against `codebook` on this device: what a stream follows so that its
    /// batches are the in-memory run's chunks (SPEC §11).
    pub fn plan_offsets(
        &self,
        codebook: &Codebook,
        offsets: &[usize],
        dtype: crate::model::element::DType,
    ) -> Result<Vec<Chunk>> {
        plan_chunks(
            offsets,
            &ChunkShape {
                dim: codebook.dim(),
                clusters: codebook.clusters(),
                dtype,
            },
            &ChunkLimits::for_context(&self.ctx),
        )
    }

    /// One piece of a split image as one chunk: its labels (given or
    /// computed), raw `K·F` residual sums (no normalization) and `K` counts,
    /// exactly as the in-memory run computes a piece before combining.
    pub fn encode_piece<E: Element>(
        &self,
        codebook: &Codebook,
        rows: &[E],
        dim: usize,
        labels: Option<&[u32]>,
        stages: &mut StageTimes,
    ) -> Result<(Vec<u32>, Vec<f32>, Vec<u32>)> {
        self.single_image_sums(codebook, rows, dim, labels, true, stages)
    }

    /// Device and staging buffers allocated so far (repeated encodes of similar batches
    /// should add none).
    pub fn pool_allocations(&self) -> Result<usize> {
        let state = self.lock()?;
        Ok(state.pool.allocations() + state.staging.allocations())
    }

    /// Encode `batch` into `(T, K·F)` with `norm`; returns the encoding and
    /// the labels used (computed, or the batch's own).
    pub fn encode<E: Element>(
        &self,
        codebook: &Codebook,
        batch: &Batch<'_, E>,
        norm: &Normalization,
        stages: &mut StageTimes,
    ) -> Result<(Array2<f32>, Vec<u32>)> {
        let (input, work) = encoding(batch, norm);
        let out = self.run(codebook, &input, work, stages)?;
        let vlad = Array2::from_shape_vec(
            (batch.images(), codebook.clusters() * codebook.dim()),
            out.blocks,
        )
        .map_err(|e| VladError::Gpu(format!("encoding has the wrong shape: {e}")))?;
        Ok((vlad, out.labels))
    }

    /// [`GpuBackend::encode`] into the caller's `out` (`T · K · F` values,
    /// row-major): read-back writes straight into that memory. Returns the
    /// labels used.
    pub fn encode_into<E: Element>(
        &self,
        codebook: &Codebook,
        batch: &Batch<'_, E>,
        norm: &Normalization,
        stages: &mut StageTimes,
        out: &mut [f32],
    ) -> Result<Vec<u32>> {
        let (input, work) = encoding(batch, norm);
        Ok(self
            .run_with(codebook, &input, work, stages, Some(out))?
            .labels)
    }

    /// Nearest-centroid labels of every descriptor of `batch` (its given
    /// labels, if any, are ignored: this computes them).
    pub fn assign<E: Element>(
        &self,
        codebook: &Codebook,
        batch: &Batch<'_, E>,
        stages: &mut StageTimes,
    ) -> Result<Vec<u32>> {
        let input = Input {
            rows: batch.rows(),
            dim: batch.dim(),
            offsets: batch.offsets(),
            labels: None,
        };
        Ok(self.run(codebook, &input, Work::Assign, stages)?.labels)
    }

    /// For one k-means step over `rows` (`N × dim`, row-major, already
    /// validated as finite): each row's label, and per cluster the plain sum
    /// of its rows (`K·F`, no centroid subtracted) and its count (`K`).
    pub fn cluster_sums<E: Element>(
        &self,
        codebook: &Codebook,
        rows: &[E],
        dim: usize,
        stages: &mut StageTimes,
    ) -> Result<(Vec<u32>, Vec<f32>, Vec<u32>)> {
        self.single_image_sums(codebook, rows, dim, None, false, stages)
    }

    /// `rows` (whole rows of `dim`) as one image, aggregated without
    /// normalization: labels, raw `K·F` sums (of residuals when
    /// `subtract_centroid`, else of rows) and `K` counts.
    fn single_image_sums<E: Element>(
        &self,
        codebook: &Codebook,
        rows: &[E],
        dim: usize,
        labels: Option<&[u32]>,
        subtract_centroid: bool,
        stages: &mut StageTimes,
    ) -> Result<(Vec<u32>, Vec<f32>, Vec<u32>)> {
        if dim == 0 || !rows.len().is_multiple_of(dim) {
            return Err(VladError::DimensionMismatch(format!(
                "{} values are not whole rows of F = {dim}",
                rows.len()
            )));
        }
        let offsets = [0, rows.len() / dim];
        let input = Input {
            rows,
            dim,
            offsets: &offsets,
            labels,
        };
        let none = Normalization::none();
        let work = Work::Aggregate {
            normalization: &none,
            subtract_centroid,
            want_counts: true,
        };
        let out = self.run(codebook, &input, work, stages)?;
        Ok((out.labels, out.blocks, out.counts))
    }

    fn run<E: Element>(
        &self,
        codebook: &Codebook,
        input: &Input<'_, E>,
        work: Work<'_>,
        stages: &mut StageTimes,
    ) -> Result<pipeline::Output> {
        self.run_with(codebook, input, work, stages, None)
    }

    fn run_with<E: Element>(
        &self,
        codebook: &Codebook,
        input: &Input<'_, E>,
        work: Work<'_>,
        stages: &mut StageTimes,
        dest: Option<&mut [f32]>,
    ) -> Result<pipeline::Output> {
        self.with_session(codebook, |session, device_codebook| {
            pipeline::run_into(session, device_codebook, input, work, stages, dest)
        })
    }

    /// Run `body` with this session's reused state (pool, staging, host
    /// scratch, overlap setting) and `codebook` on the device, one call at a
    /// time: what the hard and the soft route both run in.
    pub(crate) fn with_session<R>(
        &self,
        codebook: &Codebook,
        body: impl FnOnce(&mut Session<'_>, &DeviceCodebook) -> Result<R>,
    ) -> Result<R> {
        let mut guard = self.lock()?;
        let state = &mut *guard;
        if self.lose_on_next_run.swap(false, Ordering::SeqCst) {
            self.ctx.simulate_loss();
        }
        let device_codebook = self.upload_codebook(state, codebook)?;
        let mut session = Session {
            ctx: &self.ctx,
            stages: &self.stages,
            timer: self.timer.as_ref(),
            pool: &mut state.pool,
            scratch: &mut state.scratch,
            staging: &mut state.staging,
            overlap: match self.overlap.load(Ordering::SeqCst) {
                1 => false,
                2 => true,
                _ => !self.ctx.is_software(),
            },
        };
        body(&mut session, &device_codebook)
    }

    /// The codebook's buffers, written only when the centroids changed.
    fn upload_codebook(
        &self,
        state: &mut SessionState,
        codebook: &Codebook,
    ) -> Result<DeviceCodebook> {
        let (k, f) = (codebook.clusters(), codebook.dim());
        let centroid_bytes = (k * f * 4) as u64;
        // Checked by the planner too; here so the pool is never asked for a
        // buffer larger than a binding.
        if centroid_bytes > self.ctx.max_binding_bytes() {
            return Err(VladError::BackendUnavailable(format!(
                "the K × F = {k} × {f} codebook ({centroid_bytes} bytes) does not fit \
                 a GPU storage binding of {} bytes; use the cpu backend",
                self.ctx.max_binding_bytes()
            )));
        }
        let centroids = state
            .pool
            .buffer(&self.ctx, Role::Centroids, centroid_bytes)?;
        let norms = state
            .pool
            .buffer(&self.ctx, Role::CentroidNorms, (k * 4) as u64)?;
        let current = codebook.as_slice();
        // Same shape and values → same buffer sizes, so the pool cannot
        // have regrown (and emptied) them since the last write.
        let fresh = match &state.uploaded {
            Some((dim, values)) => *dim != f || values.as_slice() != current,
            None => true,
        };
        if fresh {
            // Forget the old copy first: if the write fails, nothing claims
            // the device holds it.
            state.uploaded = None;
            self.ctx.checked("uploading the codebook", || {
                self.ctx
                    .queue
                    .write_buffer(&centroids, 0, bytemuck::cast_slice(current));
                self.ctx.queue.write_buffer(
                    &norms,
                    0,
                    bytemuck::cast_slice(codebook.squared_norms()),
                );
            })?;
            state.uploaded = Some((f, current.to_vec()));
        }
        Ok(DeviceCodebook {
            centroids,
            norms,
            clusters: k,
            dim: f,
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, SessionState>> {
        self.state
            .lock()
            .map_err(|_| VladError::Gpu("the GPU session was poisoned by an earlier panic".into()))
    }
}

/// The input and work of a VLAD encoding of `batch` ([`GpuBackend::encode`]
/// and [`GpuBackend::encode_into`]).
fn encoding<'a, E: Element>(
    batch: &'a Batch<'_, E>,
    norm: &'a Normalization,
) -> (Input<'a, E>, Work<'a>) {
    let input = Input {
        rows: batch.rows(),
        dim: batch.dim(),
        offsets: batch.offsets(),
        labels: batch.labels(),
    };
    let work = Work::Aggregate {
        normalization: norm,
        subtract_centroid: true,
        want_counts: false,
    };
    (input, work)
}

impl crate::backend::compute::Compute for GpuBackend {
    fn encode_into<E: Element>(
        &self,
        model: &crate::backend::compute::Model<'_>,
        batch: &Batch<'_, E>,
        out: &mut [f32],
        stages: &mut StageTimes,
    ) -> Result<Vec<u32>> {
        if !batch.finite_checked() {
            batch.check_finite()?;
        }
        if !model.is_weighted() {
            return GpuBackend::encode_into(self, model.codebook, batch, model.norm, stages, out);
        }
        let (vlad, labels) =
            self.encode_weighted(model.codebook, model.soft, batch, model.norm, stages)?;
        match vlad.as_slice() {
            Some(values) if values.len() == out.len() => out.copy_from_slice(values),
            _ => {
                return Err(VladError::DimensionMismatch(format!(
                    "the output holds {} values, the encoding has {}",
                    out.len(),
                    vlad.len()
                )));
            }
        }
        Ok(labels)
    }

    fn assign<E: Element>(
        &self,
        codebook: &Codebook,
        batch: &Batch<'_, E>,
        stages: &mut StageTimes,
    ) -> Result<Vec<u32>> {
        GpuBackend::assign(self, codebook, batch, stages)
    }

    fn cuts(
        &self,
        model: &crate::backend::compute::Model<'_>,
        offsets: &[usize],
        dtype: crate::model::element::DType,
    ) -> Result<crate::backend::compute::Cuts> {
        if model.is_weighted() {
            return Ok(crate::backend::compute::Cuts::Whole);
        }
        let spans = self
            .plan_offsets(model.codebook, offsets, dtype)?
            .into_iter()
            .map(|chunk| crate::backend::compute::Span {
                images: chunk.images,
                rows: chunk.rows,
                part: chunk.part.map(|p| (p.index, p.count)),
            })
            .collect();
        Ok(crate::backend::compute::Cuts::Planned(spans))
    }

    fn split_image(
        &self,
        model: &crate::backend::compute::Model<'_>,
    ) -> Result<crate::backend::combine::SplitImage> {
        Ok(crate::backend::combine::SplitImage::new(model.codebook))
    }

    fn add_piece<E: Element>(
        &self,
        model: &crate::backend::compute::Model<'_>,
        rows: &[E],
        labels: Option<&[u32]>,
        image: &mut crate::backend::combine::SplitImage,
        stages: &mut StageTimes,
    ) -> Result<Vec<u32>> {
        if model.is_weighted() {
            return Err(VladError::InvalidArgument(
                "soft or rn pieces on the GPU are not cut by the stream (a bug)".into(),
            ));
        }
        let (labels, sums, counts) =
            self.encode_piece(model.codebook, rows, model.codebook.dim(), labels, stages)?;
        let started = std::time::Instant::now();
        image.add_f32(&sums, counts.iter().map(|&n| n as f64))?;
        stages.add("combine", started.elapsed().as_secs_f64());
        Ok(labels)
    }
}
