//! The GPU session: one device, the compiled stages, a buffer pool and the
//! codebook on the device, behind [`Compute`] (every route: encodings into
//! caller memory, assignment, the cuts a stream follows, pieces of split
//! images) and `cluster_sums` for k-means. Every call runs through the one
//! chunk runner (`runner.rs`) with the route its work takes (`route.rs`).
//!
//! Creating one compiles every shader of hard assignment (milliseconds to
//! seconds, depending on the driver; those of soft assignment and `rn` on
//! their first use), so callers keep one session and reuse it: the
//! [`Encoder`](crate::Encoder) makes it lazily, once.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::backend::compute::{AddPiece, Assign, Compute, Cuts, EncodeInto, Model, Span};
use crate::backend::gpu::chunking::{ChunkLimits, plan_chunks};
use crate::backend::gpu::context::{GpuContext, GpuOptions};
use crate::backend::gpu::pool::{BufferPool, Role};
use crate::backend::gpu::route::Route;
use crate::backend::gpu::runner::{
    self, DeviceCodebook, DeviceWhitening, HostScratch, Input, Job, Session, Sink,
};
use crate::backend::gpu::stages::CompiledStages;
use crate::backend::gpu::stages::whiten::ProjectionGroups;
use crate::backend::gpu::staging::StagingSet;
use crate::backend::gpu::timing::GpuTimer;
use crate::error::{Result, VladError};
use crate::model::codebook::Codebook;
use crate::model::element::{DType, Element};
use crate::model::normalization::Normalization;
use crate::model::report::{Ceilings, StageTimes};
use crate::whitening::Whitening;

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
    /// Open a device (see [`GpuContext::new`]) and compile the stages.
    /// No adapter → [`VladError::BackendUnavailable`]; a shader the driver
    /// rejects → [`VladError::Gpu`].
    pub fn new(options: &GpuOptions) -> Result<Self> {
        let ctx = GpuContext::new(options)?;
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
        })
    }

    /// Why tensor cores, asked for with `VLAD_GPU_TENSOR_CORES=1`, are not
    /// used by this session (`None` when they are, or were not asked for).
    pub fn tensor_core_note(&self) -> Option<String> {
        crate::backend::gpu::tensor_cores::note(&self.stages.tensor_cores)
    }

    /// The adapter's kind (a software one's timings are not GPU speed).
    pub fn adapter_kind(&self) -> crate::backend::adapters::AdapterKind {
        crate::backend::gpu::adapters::kind_of(self.ctx.info.device_type)
    }

    /// The adapter's name and API, e.g. "NVIDIA H100 80GB HBM3 (Vulkan)".
    pub fn adapter_name(&self) -> String {
        self.ctx.adapter_name()
    }

    /// The adapter's driver and its version, e.g. "NVIDIA 570.124.06"
    /// (`vlad bench` names it beside every run).
    pub fn driver(&self) -> String {
        let info = &self.ctx.info;
        format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string()
    }

    /// The device context.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// What this session's adapter can do at best (`vlad bench`'s
    /// ceilings), with transfers of `upload_bytes` and `readback_bytes`.
    pub fn ceilings(&self, upload_bytes: u64, readback_bytes: u64) -> Result<Ceilings> {
        let g = crate::backend::gpu::stages::ceilings::measure(
            &self.ctx,
            upload_bytes,
            readback_bytes,
        )?;
        Ok(Ceilings {
            fma_gflops: g.fma_gflops,
            fma_f16_gflops: g.fma_f16_gflops,
            dispatch_seconds: Some(g.dispatch_seconds),
            memory_gbps: g.memory_gbps,
            upload_gbps: Some(g.upload_gbps),
            readback_gbps: Some(g.readback_gbps),
        })
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

    /// Device and staging buffers allocated so far (repeated encodes of
    /// similar batches should add none).
    pub fn pool_allocations(&self) -> Result<usize> {
        let state = self.lock()?;
        Ok(state.pool.allocations() + state.staging.allocations())
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
        let offsets = one_image(codebook, rows, dim)?;
        let job = Job {
            codebook,
            input: Input {
                rows,
                offsets: &offsets,
                labels: None,
            },
            route: Route::Hard {
                subtract_centroid: false,
            },
            soft: None,
        };
        let (k, f) = (codebook.clusters(), codebook.dim());
        let mut sums = vec![0f32; k * f];
        let mut counts = vec![0u32; k];
        let sink = Sink::Rows {
            out: &mut sums,
            norm: &Normalization::none(),
            counts: Some(&mut counts),
            whitening: None,
        };
        let labels = self.run(&job, sink, stages)?;
        Ok((labels, sums, counts))
    }

    /// Run `job` into `sink` with this session's reused state (pool,
    /// staging, host scratch, overlap setting) and the job's codebook on the
    /// device, one call at a time.
    fn run<E: Element>(
        &self,
        job: &Job<'_, E>,
        sink: Sink<'_>,
        stages: &mut StageTimes,
    ) -> Result<Vec<u32>> {
        let mut guard = self.lock()?;
        let state = &mut *guard;
        if self.lose_on_next_run.swap(false, Ordering::SeqCst) {
            self.ctx.simulate_loss();
        }
        let device_codebook = self.upload_codebook(state, job.codebook)?;
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
        runner::run(&mut session, &device_codebook, job, sink, stages)
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
        Ok(DeviceCodebook { centroids, norms })
    }

    fn lock(&self) -> Result<MutexGuard<'_, SessionState>> {
        self.state
            .lock()
            .map_err(|_| VladError::Gpu("the GPU session was poisoned by an earlier panic".into()))
    }
}

/// The CSR offsets of `rows` (whole rows of `dim`, the codebook's) as one
/// image.
fn one_image<E: Element>(codebook: &Codebook, rows: &[E], dim: usize) -> Result<[usize; 2]> {
    if dim != codebook.dim() || !rows.len().is_multiple_of(dim) {
        return Err(VladError::DimensionMismatch(format!(
            "{} values are not whole rows of F = {}",
            rows.len(),
            codebook.dim()
        )));
    }
    Ok([0, rows.len() / dim])
}

impl Compute for GpuBackend {
    fn encode_into<E: Element>(&self, call: EncodeInto<'_, E>) -> Result<Vec<u32>> {
        let (model, batch, out, stages) = (call.model, call.batch, call.out, call.stages);
        if !batch.finite_checked() {
            batch.check_finite()?;
        }
        check_dim(model.codebook, batch.dim())?;
        let job = Job {
            codebook: model.codebook,
            input: Input {
                rows: batch.rows(),
                offsets: batch.offsets(),
                labels: batch.labels(),
            },
            route: Route::encoding(model),
            soft: model.soft,
        };
        let device_whitening = match call.whitening {
            Some(w) => Some(DeviceWhitening {
                whitening: w,
                projection: ProjectionGroups::upload(&self.ctx, w)?,
            }),
            None => None,
        };
        let sink = Sink::Rows {
            out,
            norm: model.norm,
            counts: None,
            whitening: device_whitening.as_ref(),
        };
        self.run(&job, sink, stages)
    }

    fn assign<E: Element>(&self, call: Assign<'_, E>) -> Result<Vec<u32>> {
        let (codebook, batch, stages) = (call.codebook, call.batch, call.stages);
        check_dim(codebook, batch.dim())?;
        let job = Job {
            codebook,
            input: Input {
                rows: batch.rows(),
                offsets: batch.offsets(),
                labels: None,
            },
            route: Route::Assign,
            soft: None,
        };
        self.run(&job, Sink::Labels, stages)
    }

    /// The route's own chunk plan of the whole input (before chunks of
    /// whole images are cut smaller for overlap, which cuts each batch of
    /// planned chunks alike).
    fn cuts(&self, model: &Model<'_>, offsets: &[usize], dtype: DType) -> Result<Cuts> {
        let codebook = model.codebook;
        let shape = Route::encoding(model).plan_shape(codebook.dim(), codebook.clusters(), dtype);
        let spans = plan_chunks(offsets, &shape, &ChunkLimits::for_context(&self.ctx))?
            .into_iter()
            .map(|chunk| Span {
                images: chunk.images,
                rows: chunk.rows,
                part: chunk.part.map(|p| (p.index, p.count)),
            })
            .collect();
        Ok(Cuts::Planned(spans))
    }

    /// One piece of a split image, run as one image: each chunk's raw sums
    /// and counts (hard or soft) are added to `image` as a piece of its
    /// own, in order (a piece cut where [`Compute::cuts`] plans is one
    /// chunk).
    fn add_piece<E: Element>(&self, call: AddPiece<'_, E>) -> Result<Vec<u32>> {
        let (model, rows, labels) = (call.model, call.rows, call.labels);
        let (image, stages) = (call.image, call.stages);
        let codebook = model.codebook;
        let offsets = one_image(codebook, rows, codebook.dim())?;
        if offsets[1] == 0 {
            image.piece_added();
            return Ok(Vec::new());
        }
        let job = Job {
            codebook,
            input: Input {
                rows,
                offsets: &offsets,
                labels,
            },
            route: Route::encoding(model),
            soft: model.soft,
        };
        self.run(&job, Sink::Piece(image), stages)
    }

    /// The runner whitens whole images on the device before read-back.
    fn fuses_whitening(&self) -> bool {
        true
    }

    fn whiten(&self, whitening: &Whitening, rows: &[f32], out: &mut [f32]) -> Result<()> {
        let projection = ProjectionGroups::upload(&self.ctx, whitening)?;
        crate::backend::gpu::whitening::whiten_rows(
            &self.ctx,
            &self.stages.whiten,
            whitening,
            &projection,
            rows,
            out,
        )
    }
}

/// Descriptors of width `dim` fit `codebook`.
fn check_dim(codebook: &Codebook, dim: usize) -> Result<()> {
    if dim != codebook.dim() {
        return Err(VladError::DimensionMismatch(format!(
            "descriptors have F = {dim} but centroids have F = {}",
            codebook.dim()
        )));
    }
    Ok(())
}
