//! The library's front door: an [`Encoder`] holds a codebook, a
//! normalization and a backend choice, validates input once, and dispatches
//! to the backend that runs.
//!
//! An encoder is configured once, through [`Encoder::builder`], and is then
//! immutable: the GPU session (device, compiled shaders, buffers) is made on
//! first use and no setter can invalidate it. It is `Send + Sync`: share
//! one between threads (GPU calls run one at a time).

use std::fmt;
use std::time::Instant;

use ndarray::{Array1, Array2, ArrayView2, ArrayView3, ArrayViewMut2};

use crate::backend::Backend;
use crate::error::{Result, VladError};
use crate::model::batch::Batch;
use crate::model::codebook::Codebook;
use crate::model::element::Element;
use crate::model::normalization::Normalization;
use crate::model::offset::Offset;
use crate::model::report::{RunReport, StageTimes};
use crate::verify::Verification;

#[cfg(feature = "gpu")]
use crate::backend::adapters::AdapterKind;

/// An encoding with the labels it was computed from and what ran.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Encoded {
    /// `(T, K·F)` f32, cluster-major within each row.
    pub vlad: Array2<f32>,
    /// The label of every descriptor (given or computed), in `[0, K)`.
    /// Labels are `u32` throughout the library (the command line writes
    /// them as int64 `.npy`).
    pub labels: Vec<u32>,
    /// Backend, adapter, timings.
    pub report: RunReport,
}

impl Encoded {
    /// Check this encoding of `batch` against the f64 reference under SPEC
    /// §4, from the same labels (see [`crate::verify::verify`]).
    pub fn verify<E: Element>(&self, encoder: &Encoder, batch: &Batch<'_, E>) -> Verification {
        crate::verify::verify(
            encoder.codebook(),
            batch,
            encoder.assignment(),
            encoder.normalization(),
            self.vlad.view(),
            &self.labels,
        )
    }
}

/// Labels with what ran.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Assigned {
    /// Nearest-centroid label (`u32` in `[0, K)`) of every descriptor.
    pub labels: Vec<u32>,
    /// Backend, adapter, timings.
    pub report: RunReport,
}

/// What a backend hands back to the encoder.
pub(crate) struct BackendOutput {
    pub vlad: Array2<f32>,
    pub labels: Vec<u32>,
}

/// The GPU adapter a call ran on and how long opening the session took in
/// that call.
#[derive(Default)]
pub(crate) struct GpuRan {
    pub(crate) adapter: Option<String>,
    #[cfg(feature = "gpu")]
    pub(crate) kind: Option<AdapterKind>,
    pub(crate) setup_seconds: f64,
    pub(crate) notes: Vec<String>,
}

/// Encodes images against one codebook. Build one with [`Encoder::new`]
/// (defaults: `ssr,l2`, backend `auto`) or [`Encoder::builder`].
///
/// ```
/// use ndarray::{array, Array3};
/// use vlad::{Backend, Codebook, Encoder, Normalization};
///
/// let codebook = Codebook::new(array![[0.0f32, 1.0, 2.0], [9.0, 9.0, 9.0]].view())?;
/// let encoder = Encoder::builder(codebook)
///     .normalization(Normalization::none())
///     .backend(Backend::Cpu)
///     .build();
/// // One image with one descriptor [1, 2, 3]: residual [1, 1, 1] in block 0.
/// let images = Array3::from_shape_vec((1, 1, 3), vec![1.0f32, 2.0, 3.0]).unwrap();
/// let vlad = encoder.encode(images.view())?;
/// assert_eq!(vlad.row(0).to_vec(), vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
/// assert_eq!(encoder.backend(), Backend::Cpu);
/// # Ok::<(), vlad::VladError>(())
/// ```
pub struct Encoder {
    codebook: Codebook,
    normalization: Normalization,
    backend: Backend,
    assignment: crate::model::assignment::Assignment,
    gpu_options: crate::backend::options::GpuOptions,
    /// The GPU session, made on first use and kept (shader compilation and
    /// device setup are too slow to repeat per call). A failure to make it
    /// — or `auto`'s decision not to (a software adapter) — is kept too, so
    /// `auto` does not probe for an adapter on every call. A session whose
    /// device was lost is made anew on the next call.
    #[cfg(feature = "gpu")]
    gpu: crate::backend::gpu::GpuSlot<VladError>,
}

/// An [`Encoder`] being configured; [`EncoderBuilder::build`] makes it.
#[derive(Clone, Debug)]
#[must_use = "an EncoderBuilder does nothing until .build()"]
pub struct EncoderBuilder {
    codebook: Codebook,
    normalization: Normalization,
    backend: Backend,
    assignment: crate::model::assignment::Assignment,
    gpu_options: crate::backend::options::GpuOptions,
}

impl EncoderBuilder {
    /// The normalization steps (default `ssr,l2`).
    pub fn normalization(mut self, normalization: Normalization) -> Self {
        self.normalization = normalization;
        self
    }

    /// The backend (default `auto`).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Set how descriptors are weighed onto centroids (SPEC §10): hard
    /// (the default) or soft (NetVLAD).
    pub fn assignment(mut self, assignment: crate::model::assignment::Assignment) -> Self {
        self.assignment = assignment;
        self
    }

    /// Cap the storage-binding size the GPU backend plans with (the API twin
    /// of `VLAD_GPU_MAX_BINDING_BYTES`; the smaller wins), so small inputs
    /// exercise chunking.
    pub fn gpu_max_binding_bytes(mut self, bytes: Option<u64>) -> Self {
        self.gpu_options.max_binding_bytes = bytes;
        self
    }

    /// How the GPU backend is set up (adapter, graphics APIs, binding cap,
    /// tensor cores): the command line and the Python package read them
    /// from the environment ([`GpuOptions::from_vars`](crate::backend::options::GpuOptions::from_vars)).
    pub fn gpu_options(mut self, options: crate::backend::options::GpuOptions) -> Self {
        self.gpu_options = options;
        self
    }

    /// The encoder. Nothing is opened yet: the GPU session is made on the
    /// first call that needs it.
    pub fn build(self) -> Encoder {
        Encoder {
            codebook: self.codebook,
            normalization: self.normalization,
            backend: self.backend,
            assignment: self.assignment,
            gpu_options: self.gpu_options,
            #[cfg(feature = "gpu")]
            gpu: crate::backend::gpu::GpuSlot::new(),
        }
    }
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Encoder");
        d.field("clusters", &self.codebook.clusters())
            .field("dim", &self.codebook.dim())
            .field("normalization", &self.normalization.to_string())
            .field("backend", &self.backend)
            .field("assignment", &self.assignment.name())
            .field("gpu_options", &self.gpu_options);
        #[cfg(feature = "gpu")]
        d.field(
            "gpu",
            &match self.gpu.current() {
                None => "not open".to_string(),
                Some(gpu) => format!("open on {}", gpu.adapter_name()),
            },
        );
        d.finish()
    }
}

/// An encoder is shared between threads: checked at compile time.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Encoder>();
};

/// The element count and byte size of a `(T, K·F)` f32 encoding, checked;
/// then a trial reservation of that much memory, so a request that cannot
/// fit is an error up front instead of an abort half-way.
pub(crate) fn check_output_fits(images: usize, clusters: usize, dim: usize) -> Result<()> {
    let (len, bytes) = output_size(images, clusters, dim)?;
    let mut probe: Vec<f32> = Vec::new();
    // Reserving does not touch the memory: this asks the allocator whether
    // the size is possible now (address space, allocator limits) without
    // using it. The backends then allocate the real output.
    if probe.try_reserve_exact(len).is_err() {
        return Err(too_large(images, clusters, dim, Some(bytes)));
    }
    Ok(())
}

/// The `(T, K·F)` f32 encoding of `images` images is too large.
fn too_large(images: usize, clusters: usize, dim: usize, bytes: Option<u64>) -> VladError {
    VladError::TooLarge {
        what: format!("the (T, K·F) = ({images}, {clusters}·{dim}) float32 encoding"),
        bytes,
        hint: format!(
            "encode fewer images per call (split the input) or use a smaller codebook \
             (K × F = {clusters} × {dim} is {} bytes per image)",
            (clusters as u128) * (dim as u128) * 4
        ),
    }
}

/// The element count and byte size of a `(T, K·F)` f32 encoding, or
/// [`VladError::TooLarge`] when either overflows. Alone (without the trial
/// reservation of [`check_output_fits`]) this is the up-front check of the
/// streamed path, which writes the output to disk batch by batch and never
/// holds it whole.
pub(crate) fn output_size(images: usize, clusters: usize, dim: usize) -> Result<(usize, u64)> {
    let len = images
        .checked_mul(clusters)
        .and_then(|x| x.checked_mul(dim));
    let bytes = len.and_then(|l| u64::try_from(l).ok()?.checked_mul(4));
    match (len, bytes) {
        (Some(len), Some(bytes)) => Ok((len, bytes)),
        _ => Err(too_large(images, clusters, dim, None)),
    }
}

impl Encoder {
    /// An encoder with the default normalization (`ssr,l2`) and backend
    /// (`auto`).
    pub fn new(codebook: Codebook) -> Self {
        Self::builder(codebook).build()
    }

    /// Configure an encoder: `Encoder::builder(codebook).normalization(n)
    /// .backend(b).build()`.
    pub fn builder(codebook: Codebook) -> EncoderBuilder {
        EncoderBuilder {
            codebook,
            normalization: Normalization::default(),
            backend: Backend::Auto,
            assignment: crate::model::assignment::Assignment::Hard,
            gpu_options: Default::default(),
        }
    }

    /// The codebook.
    pub fn codebook(&self) -> &Codebook {
        &self.codebook
    }

    /// The normalization.
    pub fn normalization(&self) -> &Normalization {
        &self.normalization
    }

    /// How descriptors are weighed onto centroids (SPEC §10).
    pub fn assignment(&self) -> &crate::model::assignment::Assignment {
        &self.assignment
    }

    /// The backend asked for (`Auto` stays `Auto`: see
    /// [`RunReport::backend`] for what ran).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The GPU options given to the builder.
    pub fn gpu_options(&self) -> crate::backend::options::GpuOptions {
        self.gpu_options.clone()
    }

    /// The storage-binding cap given to the builder.
    pub fn gpu_max_binding_bytes(&self) -> Option<u64> {
        self.gpu_options.max_binding_bytes
    }

    /// Fail with [`VladError::TooLarge`] when encoding `images` images with
    /// this codebook needs an output larger than can be allocated.
    pub fn check_output_fits(&self, images: usize) -> Result<()> {
        check_output_fits(images, self.codebook.clusters(), self.codebook.dim())
    }

    /// Encode fixed-size images `(T, L, F)` into `(T, K·F)`.
    pub fn encode<E: Element>(&self, descriptors: ArrayView3<'_, E>) -> Result<Array2<f32>> {
        self.check_output_fits(descriptors.dim().0)?;
        let batch = Batch::fixed_deferred(descriptors)?;
        Ok(self.encode_batch(&batch)?.vlad)
    }

    /// Encode a list of images, one `(n_t, F)` array each.
    pub fn encode_images<E: Element>(&self, images: &[ArrayView2<'_, E>]) -> Result<Array2<f32>> {
        self.check_output_fits(images.len())?;
        let batch = Batch::from_images(images)?;
        Ok(self.encode_batch(&batch)?.vlad)
    }

    /// Encode ragged images: `(N, F)` rows plus CSR offsets `(T+1,)`
    /// (`usize`, `u64`, `i64`, `u32` or `i32`).
    pub fn encode_ragged<E: Element, O: Offset>(
        &self,
        descriptors: ArrayView2<'_, E>,
        offsets: &[O],
    ) -> Result<Array2<f32>> {
        let batch = Batch::ragged_deferred(descriptors, offsets)?;
        Ok(self.encode_batch(&batch)?.vlad)
    }

    /// Encode ragged images whose labels (`u32` in `[0, K)`) are already
    /// known (skips assignment).
    pub fn encode_ragged_with_labels<E: Element, O: Offset>(
        &self,
        descriptors: ArrayView2<'_, E>,
        offsets: &[O],
        labels: &[u32],
    ) -> Result<Array2<f32>> {
        let batch =
            Batch::ragged(descriptors, offsets)?.with_labels(labels, self.codebook.clusters())?;
        Ok(self.encode_batch(&batch)?.vlad)
    }

    /// Encode a validated [`Batch`], returning labels and a [`RunReport`]
    /// (a batch built with finiteness deferred is checked here, see
    /// [`Batch::finite_checked`]).
    pub fn encode_batch<E: Element>(&self, batch: &Batch<'_, E>) -> Result<Encoded> {
        self.check_batch(batch)?;
        self.check_output_fits(batch.images())?;
        // A batch built with finiteness deferred is checked here, unless
        // the CPU's soft pooling runs: it reads every value anyway and
        // finds a non-finite one through its outputs (src/cpu/soft.rs).
        let fused_check = self.backend == Backend::Cpu && !self.assignment.is_hard();
        if !batch.finite_checked() && !fused_check {
            batch.check_finite()?;
        }
        let mut stages = StageTimes::new();
        let run = self.dispatch(&mut stages, |backend, stages, gpu| {
            self.run_encode(backend, batch, stages, gpu)
        })?;
        let report = run.report(stages);
        Ok(Encoded {
            vlad: run.out.vlad,
            labels: run.out.labels,
            report,
        })
    }

    /// The batch's width and given labels against this codebook.
    fn check_batch<E: Element>(&self, batch: &Batch<'_, E>) -> Result<()> {
        batch.check_dim(self.codebook.dim())?;
        if let Some(labels) = batch.labels() {
            // Batches built elsewhere may carry labels for another codebook.
            if let Some((index, &label)) = labels
                .iter()
                .enumerate()
                .find(|(_, l)| **l as usize >= self.codebook.clusters())
            {
                return Err(VladError::LabelOutOfRange {
                    index,
                    label: label as i128,
                    clusters: self.codebook.clusters(),
                });
            }
        }
        Ok(())
    }

    /// Encode a validated [`Batch`] into `out`, the caller's `(T, K·F)`
    /// array: the GPU's read-back and the CPU's sums write straight into it,
    /// so memory the caller reuses (already touched) costs no page faults.
    /// Every element of `out` is written. The labels are not returned (use
    /// [`Encoder::encode_batch`] for them).
    ///
    /// `out` of another shape is [`VladError::DimensionMismatch`], before
    /// anything runs; if a backend fails part-way (an error is returned),
    /// `out` may hold part of the result.
    pub fn encode_batch_into<E: Element>(
        &self,
        batch: &Batch<'_, E>,
        mut out: ArrayViewMut2<'_, f32>,
    ) -> Result<RunReport> {
        self.check_batch(batch)?;
        if !batch.finite_checked() {
            batch.check_finite()?;
        }
        let want = (
            batch.images(),
            self.codebook.clusters() * self.codebook.dim(),
        );
        if out.dim() != want {
            return Err(VladError::DimensionMismatch(format!(
                "the output array is {:?}, the encoding of this batch is (T, K·F) = {want:?}",
                out.dim()
            )));
        }
        let mut stages = StageTimes::new();
        let run = self.dispatch(&mut stages, |backend, stages, gpu| {
            self.run_encode_into(backend, batch, stages, gpu, &mut out)
        })?;
        Ok(run.report(stages))
    }

    /// Nearest-centroid labels (`u32` in `[0, K)`) of `(N, F)` descriptors.
    pub fn assign<E: Element>(&self, descriptors: ArrayView2<'_, E>) -> Result<Array1<u32>> {
        let batch = Batch::single(descriptors)?;
        Ok(Array1::from(self.assign_batch(&batch)?.labels))
    }

    /// Nearest-centroid labels of a validated [`Batch`], with a report.
    pub fn assign_batch<E: Element>(&self, batch: &Batch<'_, E>) -> Result<Assigned> {
        batch.check_dim(self.codebook.dim())?;
        if !batch.finite_checked() {
            batch.check_finite()?;
        }
        let mut stages = StageTimes::new();
        let run = self.dispatch(&mut stages, |backend, stages, gpu| {
            self.run_assign(backend, batch, stages, gpu)
        })?;
        let report = run.report(stages);
        Ok(Assigned {
            labels: run.out,
            report,
        })
    }

    /// Run `job` on the chosen backend. Under `Auto` the GPU runs only on a
    /// hardware adapter; otherwise, or on any GPU failure, the CPU runs and
    /// the report says why (the library prints nothing).
    fn dispatch<T>(
        &self,
        stages: &mut StageTimes,
        mut job: impl FnMut(Backend, &mut StageTimes, &mut GpuRan) -> Result<T>,
    ) -> Result<Ran<T>> {
        let start = Instant::now();
        let mut gpu = GpuRan::default();
        let finish = |backend, out, gpu: GpuRan, fallback_reason| {
            let total = start.elapsed().as_secs_f64();
            Ran {
                backend,
                out,
                seconds: (total - gpu.setup_seconds).max(0.0),
                gpu,
                fallback_reason,
            }
        };
        match self.backend {
            Backend::Auto => match job(Backend::Gpu, stages, &mut gpu) {
                Ok(out) => Ok(finish(Backend::Gpu, out, gpu, None)),
                // A VLAD_ADAPTER that matches nothing is a typo to fix, not
                // a reason to fall back quietly.
                Err(VladError::BackendUnavailable(reason))
                    if crate::backend::adapters::is_no_match(&reason) =>
                {
                    Err(VladError::BackendUnavailable(reason))
                }
                Err(err @ (VladError::BackendUnavailable(_) | VladError::Gpu(_))) => {
                    let reason = match err {
                        VladError::BackendUnavailable(reason) => reason,
                        other => format!("{other}: using cpu"),
                    };
                    *stages = StageTimes::new();
                    let setup = gpu.setup_seconds;
                    let mut none = GpuRan::default();
                    let out = job(Backend::Cpu, stages, &mut none)?;
                    // The failed GPU attempt is setup, not compute.
                    none.setup_seconds = setup;
                    Ok(finish(Backend::Cpu, out, none, Some(reason)))
                }
                Err(other) => Err(other),
            },
            backend => {
                let out = job(backend, stages, &mut gpu)?;
                Ok(finish(backend, out, gpu, None))
            }
        }
    }

    fn run_encode<E: Element>(
        &self,
        backend: Backend,
        batch: &Batch<'_, E>,
        stages: &mut StageTimes,
        gpu: &mut GpuRan,
    ) -> Result<BackendOutput> {
        if !self.assignment.is_hard() || self.normalization.residual_normalized() {
            return crate::backend::weighted::run_encode(
                &self.codebook,
                &self.assignment,
                &self.normalization,
                backend,
                batch,
                stages,
                |params, stages| self.run_gpu_weighted(batch, params, stages, gpu),
            );
        }
        match backend {
            Backend::Reference => {
                let (vlad, labels) = stages.time("reference", || {
                    crate::backend::reference::encode(
                        &self.codebook,
                        batch,
                        &self.assignment,
                        &self.normalization,
                    )
                });
                Ok(BackendOutput {
                    vlad: vlad.mapv(|x| x as f32),
                    labels,
                })
            }
            Backend::Cpu => {
                let (vlad, labels) =
                    crate::backend::cpu::encode(&self.codebook, batch, &self.normalization, stages);
                Ok(BackendOutput { vlad, labels })
            }
            Backend::Gpu | Backend::Auto => self.run_gpu_encode(batch, stages, gpu),
        }
    }

    /// [`Encoder::run_encode`] into `out`: straight into it where the
    /// backend can (the GPU and CPU hard-assignment paths, on a
    /// standard-layout `out`), else computed and copied.
    fn run_encode_into<E: Element>(
        &self,
        backend: Backend,
        batch: &Batch<'_, E>,
        stages: &mut StageTimes,
        gpu: &mut GpuRan,
        out: &mut ArrayViewMut2<'_, f32>,
    ) -> Result<Vec<u32>> {
        let direct = self.assignment.is_hard() && !self.normalization.residual_normalized();
        if let (true, Some(flat)) = (direct, out.as_slice_mut()) {
            match backend {
                Backend::Cpu => {
                    return Ok(crate::backend::cpu::encode_into(
                        &self.codebook,
                        batch,
                        &self.normalization,
                        stages,
                        flat,
                    ));
                }
                Backend::Gpu | Backend::Auto => {
                    return self.run_gpu_encode_into(batch, stages, gpu, flat);
                }
                Backend::Reference => {}
            }
        }
        let encoded = self.run_encode(backend, batch, stages, gpu)?;
        out.assign(&encoded.vlad);
        Ok(encoded.labels)
    }

    fn run_assign<E: Element>(
        &self,
        backend: Backend,
        batch: &Batch<'_, E>,
        stages: &mut StageTimes,
        gpu: &mut GpuRan,
    ) -> Result<Vec<u32>> {
        match backend {
            Backend::Reference => Ok(stages.time("assign", || {
                crate::backend::reference::assign(&self.codebook, batch)
            })),
            Backend::Cpu => Ok(crate::backend::cpu::assign(&self.codebook, batch, stages)),
            Backend::Gpu | Backend::Auto => self.run_gpu_assign(batch, stages, gpu),
        }
    }

    /// The GPU session, made on first use with this encoder's binding cap.
    /// Under `Auto` the adapters are listed first (no device, no shader)
    /// and a software-only machine is answered with the reason, in
    /// milliseconds.
    #[cfg(feature = "gpu")]
    fn gpu_session(
        &self,
        ran: &mut GpuRan,
    ) -> Result<std::sync::Arc<crate::backend::gpu::GpuBackend>> {
        let start = Instant::now();
        let mut made = false;
        let session = self.gpu.get_or_make(|| {
            made = true;
            if self.backend == Backend::Auto {
                let adapters = crate::backend::adapters::adapters(&self.gpu_options());
                if let Err(reason) = adapters.auto_adapter()? {
                    return Err(VladError::BackendUnavailable(reason.to_string()));
                }
            }
            crate::backend::gpu::GpuBackend::new(&self.gpu_options())
        });
        if made {
            ran.setup_seconds = start.elapsed().as_secs_f64();
        }
        let gpu = session?;
        ran.notes.extend(gpu.tensor_core_note());
        ran.adapter = Some(gpu.adapter_name());
        ran.kind = Some(crate::backend::gpu::adapters::kind_of(
            gpu.context().info.device_type,
        ));
        Ok(gpu)
    }

    /// The GPU session, if one was made and its device is not lost (the
    /// benchmark measures the adapter's ceilings on it).
    #[cfg(feature = "gpu")]
    #[doc(hidden)]
    pub fn gpu_backend(&self) -> Option<std::sync::Arc<crate::backend::gpu::GpuBackend>> {
        self.gpu.current()
    }

    /// Test hook: the GPU session's next run loses its device mid-call (no
    /// effect before the session exists).
    #[cfg(feature = "gpu")]
    #[doc(hidden)]
    pub fn simulate_gpu_device_loss(&self) {
        if let Some(session) = self.gpu.current() {
            session.simulate_loss_on_next_run();
        }
    }

    /// The GPU session, for the streaming pipeline (`crate::stream`),
    /// which drives the backend chunk by chunk itself: the same session
    /// [`Encoder::dispatch`] uses, made by the same rule (under `Auto`, only
    /// on a hardware adapter: never a software one), with the adapter and
    /// the setup time recorded in `ran`.
    #[cfg(feature = "gpu")]
    pub(crate) fn gpu_for_stream(
        &self,
        ran: &mut GpuRan,
    ) -> Result<std::sync::Arc<crate::backend::gpu::GpuBackend>> {
        self.gpu_session(ran)
    }

    #[cfg(feature = "gpu")]
    fn run_gpu_encode<E: Element>(
        &self,
        batch: &Batch<'_, E>,
        stages: &mut StageTimes,
        ran: &mut GpuRan,
    ) -> Result<BackendOutput> {
        let gpu = self.gpu_session(ran)?;
        let (vlad, labels) = gpu.encode(&self.codebook, batch, &self.normalization, stages)?;
        Ok(BackendOutput { vlad, labels })
    }

    /// Soft assignment or `rn` on the GPU (`crate::backend::gpu::soft_pipeline`).
    #[cfg(feature = "gpu")]
    fn run_gpu_weighted<E: Element>(
        &self,
        batch: &Batch<'_, E>,
        params: Option<&crate::model::assignment::SoftParams>,
        stages: &mut StageTimes,
        ran: &mut GpuRan,
    ) -> Result<BackendOutput> {
        let gpu = self.gpu_session(ran)?;
        let (vlad, labels) =
            gpu.encode_weighted(&self.codebook, params, batch, &self.normalization, stages)?;
        Ok(BackendOutput { vlad, labels })
    }

    #[cfg(not(feature = "gpu"))]
    fn run_gpu_weighted<E: Element>(
        &self,
        _batch: &Batch<'_, E>,
        _params: Option<&crate::model::assignment::SoftParams>,
        _stages: &mut StageTimes,
        _ran: &mut GpuRan,
    ) -> Result<BackendOutput> {
        Err(VladError::BackendUnavailable(
            "built without the gpu feature".to_string(),
        ))
    }

    #[cfg(feature = "gpu")]
    fn run_gpu_encode_into<E: Element>(
        &self,
        batch: &Batch<'_, E>,
        stages: &mut StageTimes,
        ran: &mut GpuRan,
        out: &mut [f32],
    ) -> Result<Vec<u32>> {
        let gpu = self.gpu_session(ran)?;
        gpu.encode_into(&self.codebook, batch, &self.normalization, stages, out)
    }

    #[cfg(not(feature = "gpu"))]
    fn run_gpu_encode_into<E: Element>(
        &self,
        _batch: &Batch<'_, E>,
        _stages: &mut StageTimes,
        _ran: &mut GpuRan,
        _out: &mut [f32],
    ) -> Result<Vec<u32>> {
        Err(VladError::BackendUnavailable(
            "built without the gpu feature".to_string(),
        ))
    }

    #[cfg(feature = "gpu")]
    fn run_gpu_assign<E: Element>(
        &self,
        batch: &Batch<'_, E>,
        stages: &mut StageTimes,
        ran: &mut GpuRan,
    ) -> Result<Vec<u32>> {
        let gpu = self.gpu_session(ran)?;
        gpu.assign(&self.codebook, batch, stages)
    }

    #[cfg(not(feature = "gpu"))]
    fn run_gpu_encode<E: Element>(
        &self,
        _batch: &Batch<'_, E>,
        _stages: &mut StageTimes,
        _ran: &mut GpuRan,
    ) -> Result<BackendOutput> {
        Err(VladError::BackendUnavailable(
            "built without the gpu feature".to_string(),
        ))
    }

    #[cfg(not(feature = "gpu"))]
    fn run_gpu_assign<E: Element>(
        &self,
        _batch: &Batch<'_, E>,
        _stages: &mut StageTimes,
        _ran: &mut GpuRan,
    ) -> Result<Vec<u32>> {
        Err(VladError::BackendUnavailable(
            "built without the gpu feature".to_string(),
        ))
    }
}

/// What [`Encoder::dispatch`] ran.
struct Ran<T> {
    backend: Backend,
    out: T,
    seconds: f64,
    gpu: GpuRan,
    fallback_reason: Option<String>,
}

impl<T> Ran<T> {
    fn report(&self, stages: StageTimes) -> RunReport {
        RunReport {
            backend: self.backend,
            adapter: self.gpu.adapter.clone(),
            #[cfg(feature = "gpu")]
            adapter_kind: self.gpu.kind,
            #[cfg(not(feature = "gpu"))]
            adapter_kind: None,
            seconds: self.seconds,
            setup_seconds: self.gpu.setup_seconds,
            stages,
            fallback_reason: self.fallback_reason.clone(),
            notes: self.gpu.notes.clone(),
        }
    }
}
