//! The library's front door: an [`Encoder`] holds a codebook, how
//! descriptors are assigned, a normalization and a backend choice,
//! validates input once, and runs it on the engine SPEC §7's rule selects
//! ([`crate::backend::select`]).
//!
//! An encoder is configured once, through [`Encoder::builder`], and is then
//! immutable: the GPU session (device, compiled shaders, buffers) is made on
//! first use and no setter can invalidate it. It is `Send + Sync`: share
//! one between threads (GPU calls run one at a time).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use ndarray::{Array1, Array2, ArrayView2, ArrayView3, ArrayViewMut2};

use crate::backend::combine::SplitImage;
use crate::backend::gpu::GpuBackend;
use crate::backend::options::GpuOptions;
use crate::backend::select::{Selected, fallback_reason, select};
use crate::backend::slot::GpuSlot;
use crate::backend::{
    AddPiece, Assign, Backend, Compute, Cuts, EncodeInto, Engine, Model, on_engine,
};
use crate::error::{Result, VladError};
use crate::io::model_file::{self, ModelParts};
use crate::model::assignment::{Assignment, SoftParams};
use crate::model::batch::Batch;
use crate::model::codebook::Codebook;
use crate::model::element::{DType, Element};
use crate::model::normalization::Normalization;
use crate::model::offset::Offset;
use crate::model::report::{RunReport, StageTimes};
use crate::verify::Verification;
use crate::whitening::Whitening;

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
    /// §4 (§10 for soft assignment and `rn`), from the same labels.
    pub fn verify<E: Element>(&self, encoder: &Encoder, batch: &Batch<'_, E>) -> Verification {
        if let Some(w) = encoder.whitening() {
            return crate::verify::verify_whitened(
                encoder.codebook(),
                batch,
                encoder.assignment(),
                encoder.normalization(),
                w,
                self.vlad.view(),
                &self.labels,
            );
        }
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
    assignment: Assignment,
    gpu_options: GpuOptions,
    /// The step after the normalization (SPEC §14), shared: its matrices
    /// are large and every builder copy holds the same one.
    whitening: Option<Arc<Whitening>>,
    /// The GPU session, made on first use and kept (shader compilation and
    /// device setup are too slow to repeat per call). A failure to make it
    /// — or `auto`'s decision not to (a software adapter) — is kept too, so
    /// `auto` does not probe for an adapter on every call. A session whose
    /// device was lost is made anew on the next call.
    gpu: GpuSlot<VladError>,
}

/// An [`Encoder`] being configured; [`EncoderBuilder::build`] makes it.
#[derive(Clone, Debug)]
#[must_use = "an EncoderBuilder does nothing until .build()"]
pub struct EncoderBuilder {
    codebook: Codebook,
    normalization: Normalization,
    backend: Backend,
    assignment: Assignment,
    gpu_options: GpuOptions,
    whitening: Option<Arc<Whitening>>,
}

impl EncoderBuilder {
    /// A builder holding a model's codebook, assignment, normalization and
    /// whitening ([`crate::io::model_file`]); a model without a codebook
    /// (a whitening alone) or with several (Multivoc) is refused here.
    pub fn from_model(parts: ModelParts) -> Result<Self> {
        let ModelParts {
            mut codebooks,
            assignment,
            normalization,
            whitening,
        } = parts;
        if codebooks.len() != 1 {
            return Err(VladError::InvalidArgument(format!(
                "an encoder takes a model of one codebook; this one has {} (a file of a                  whitening alone has none: give the codebook too)",
                codebooks.len()
            )));
        }
        let codebook = codebooks.remove(0);
        assignment.soft_params(&codebook)?;
        let builder = EncoderBuilder {
            codebook,
            normalization,
            backend: Backend::Auto,
            assignment,
            gpu_options: GpuOptions::default(),
            whitening,
        };
        if let Some(w) = &builder.whitening {
            w.check_dims_in(builder.codebook.clusters() * builder.codebook.dim())?;
        }
        Ok(builder)
    }

    /// The codebook the encoder will hold.
    pub fn codebook(&self) -> &Codebook {
        &self.codebook
    }

    /// Whiten (or project) every encoding after its normalization (SPEC
    /// §14): the encoder then gives `(T, D′)` rows instead of `(T, K·F)`.
    /// Its `D` must be the encoding's `K·F` (checked by
    /// [`EncoderBuilder::try_build`] and on every call).
    pub fn whitening(mut self, whitening: impl Into<Arc<Whitening>>) -> Self {
        self.whitening = Some(whitening.into());
        self
    }

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
    pub fn assignment(mut self, assignment: Assignment) -> Self {
        self.assignment = assignment;
        self
    }

    /// Cap the storage-binding size the GPU backend plans with (the API
    /// twin of `VLAD_GPU_MAX_BINDING_BYTES`), so small inputs exercise
    /// chunking: sets [`GpuOptions::max_binding_bytes`].
    pub fn gpu_max_binding_bytes(mut self, bytes: Option<u64>) -> Self {
        self.gpu_options.max_binding_bytes = bytes;
        self
    }

    /// How the GPU backend is set up (adapter, graphics APIs, binding cap,
    /// tensor cores). The library never reads the environment; the command
    /// line and the Python package read it with [`GpuOptions::from_vars`].
    pub fn gpu_options(mut self, options: GpuOptions) -> Self {
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
            whitening: self.whitening,
            gpu: GpuSlot::new(),
        }
    }

    /// The encoder, with the whitening's width checked against the
    /// codebook's `K·F` (SPEC §6).
    pub fn try_build(self) -> Result<Encoder> {
        if let Some(w) = &self.whitening {
            w.check_dims_in(self.codebook.clusters() * self.codebook.dim())?;
        }
        Ok(self.build())
    }
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder")
            .field("clusters", &self.codebook.clusters())
            .field("dim", &self.codebook.dim())
            .field("normalization", &self.normalization.to_string())
            .field("backend", &self.backend)
            .field("assignment", &self.assignment.name())
            .field("gpu_options", &self.gpu_options)
            .field("dims_out", &self.dims_out())
            .field(
                "gpu",
                &match self.gpu.current() {
                    None => "not open".to_string(),
                    Some(gpu) => format!("open on {}", gpu.adapter_name()),
                },
            )
            .finish()
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
            assignment: Assignment::Hard,
            gpu_options: GpuOptions::default(),
            whitening: None,
        }
    }

    /// A builder holding this encoder's settings (not its GPU session): to
    /// make a variant, e.g. the same encoding on another backend.
    pub fn to_builder(&self) -> EncoderBuilder {
        EncoderBuilder {
            codebook: self.codebook.clone(),
            normalization: self.normalization.clone(),
            backend: self.backend,
            assignment: self.assignment.clone(),
            gpu_options: self.gpu_options.clone(),
            whitening: self.whitening.clone(),
        }
    }

    /// What this encoder computes, as a model file stores it (SPEC §15).
    pub fn model_parts(&self) -> ModelParts {
        ModelParts {
            codebooks: vec![self.codebook.clone()],
            assignment: self.assignment.clone(),
            normalization: self.normalization.clone(),
            whitening: self.whitening.clone(),
        }
    }

    /// Write this encoder's model (codebook, assignment, normalization,
    /// whitening) to one `.npz` file, atomically (SPEC §15).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        model_file::write(path.as_ref(), &self.model_parts())
    }

    /// An encoder of the model file at `path` (backend `auto`; use
    /// [`EncoderBuilder::from_model`] to choose).
    pub fn load(path: impl AsRef<Path>) -> Result<Encoder> {
        Ok(EncoderBuilder::from_model(model_file::read(path.as_ref())?)?.build())
    }

    /// The whitening applied after the normalization, if any.
    pub fn whitening(&self) -> Option<&Whitening> {
        self.whitening.as_deref()
    }

    /// The same whitening, shared (its matrices are not copied).
    pub fn shared_whitening(&self) -> Option<Arc<Whitening>> {
        self.whitening.clone()
    }

    /// The width of one encoding: `K·F`, or the whitening's `D′`.
    pub fn dims_out(&self) -> usize {
        match &self.whitening {
            Some(w) => w.dims_out(),
            None => self.raw_width(),
        }
    }

    /// `K·F`: the width of the encoding before any whitening.
    pub fn raw_width(&self) -> usize {
        self.codebook.clusters() * self.codebook.dim()
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
    pub fn assignment(&self) -> &Assignment {
        &self.assignment
    }

    /// The backend asked for (`Auto` stays `Auto`: see
    /// [`RunReport::backend`] for what ran).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The GPU options given to the builder.
    pub fn gpu_options(&self) -> &GpuOptions {
        &self.gpu_options
    }

    /// The storage-binding cap given to the builder.
    pub fn gpu_max_binding_bytes(&self) -> Option<u64> {
        self.gpu_options.max_binding_bytes
    }

    /// Fail with [`VladError::TooLarge`] when encoding `images` images with
    /// this codebook needs an output larger than can be allocated.
    pub fn check_output_fits(&self, images: usize) -> Result<()> {
        match &self.whitening {
            Some(w) => check_output_fits(images, 1, w.dims_out()),
            None => check_output_fits(images, self.codebook.clusters(), self.codebook.dim()),
        }
    }

    /// Encode fixed-size images `(T, L, F)` into `(T, K·F)`.
    pub fn encode<E: Element>(&self, descriptors: ArrayView3<'_, E>) -> Result<Array2<f32>> {
        self.check_output_fits(descriptors.dim().0)?;
        let batch = Batch::fixed_deferred(descriptors)?;
        self.encode_batch_vlad(&batch)
    }

    /// Encode a list of images, one `(n_t, F)` array each.
    pub fn encode_images<E: Element>(&self, images: &[ArrayView2<'_, E>]) -> Result<Array2<f32>> {
        self.check_output_fits(images.len())?;
        let batch = Batch::from_images(images)?;
        self.encode_batch_vlad(&batch)
    }

    /// Encode ragged images: `(N, F)` rows plus CSR offsets `(T+1,)`
    /// (`usize`, `u64`, `i64`, `u32` or `i32`).
    pub fn encode_ragged<E: Element, O: Offset>(
        &self,
        descriptors: ArrayView2<'_, E>,
        offsets: &[O],
    ) -> Result<Array2<f32>> {
        let batch = Batch::ragged_deferred(descriptors, offsets)?;
        self.encode_batch_vlad(&batch)
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
        self.encode_batch_vlad(&batch)
    }

    /// Encode a validated [`Batch`], returning labels and a [`RunReport`]
    /// (a batch built with finiteness deferred is checked here, see
    /// [`Batch::finite_checked`]).
    pub fn encode_batch<E: Element>(&self, batch: &Batch<'_, E>) -> Result<Encoded> {
        let (vlad, labels, report) = self.encode_owned(batch, true)?;
        Ok(Encoded {
            vlad,
            labels,
            report,
        })
    }

    /// [`Encoder::encode_batch`]'s encoding alone: no labels are built
    /// (the CPU's one pass then never stores them).
    pub fn encode_batch_vlad<E: Element>(&self, batch: &Batch<'_, E>) -> Result<Array2<f32>> {
        Ok(self.encode_owned(batch, false)?.0)
    }

    /// Encode into a fresh `(T, K·F)` array, with the labels when asked.
    fn encode_owned<E: Element>(
        &self,
        batch: &Batch<'_, E>,
        want_labels: bool,
    ) -> Result<(Array2<f32>, Vec<u32>, RunReport)> {
        self.check_batch(batch)?;
        self.check_output_fits(batch.images())?;
        // The CPU's soft pooling reads every value anyway and finds a
        // non-finite one through its outputs (src/backend/cpu/soft.rs); every
        // other route checks a deferred batch here, before anything runs.
        let fused_check = self.backend == Backend::Cpu && !self.assignment.is_hard();
        if !batch.finite_checked() && !fused_check {
            batch.check_finite()?;
        }
        let mut vlad = Array2::<f32>::zeros(self.output_shape(batch));
        let out = vlad
            .as_slice_mut()
            .unwrap_or_else(|| unreachable!("a fresh array is contiguous"));
        let (labels, report) = self.encode_on_engine(batch, out, want_labels)?;
        Ok((vlad, labels, report))
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
        out: ArrayViewMut2<'_, f32>,
    ) -> Result<RunReport> {
        self.check_batch_into(batch, &out)?;
        self.encode_checked_into(batch, out)
    }

    /// [`Encoder::encode_batch_into`] that tells how far it has got:
    /// `progress(done, total)` is called with `(0, T)` before anything
    /// runs and then after each group of whole images (about twenty
    /// groups for a large batch, none smaller than 2¹⁸ rows). The batch is
    /// cut only where the backend that runs lets a pass be cut without
    /// changing a bit — the cuts the stream plans its batches by — so the
    /// result is bitwise [`Encoder::encode_batch_into`]'s; where the
    /// backend plans the input as one (an image split on the GPU), that
    /// part is one group. The report sums the groups' seconds and stages.
    pub fn encode_batch_into_with_progress<E: Element>(
        &self,
        batch: &Batch<'_, E>,
        mut out: ArrayViewMut2<'_, f32>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<RunReport> {
        self.check_batch_into(batch, &out)?;
        let images = batch.images();
        progress(0, images);
        let (cuts, _) = self.cuts(batch.offsets(), E::DTYPE)?;
        let groups = progress_groups(batch.offsets(), &cuts);
        let mut total: Option<RunReport> = None;
        for group in groups {
            let part = batch.images_part(group.clone(), true);
            let report =
                self.encode_checked_into(&part, out.slice_mut(ndarray::s![group.clone(), ..]))?;
            total = Some(match total {
                None => report,
                Some(sum) => sum_reports(sum, report),
            });
            progress(group.end, images);
        }
        match total {
            Some(report) => Ok(report),
            // No images at all: the plain call says what that gives.
            None => self.encode_checked_into(batch, out),
        }
    }

    /// The checks of [`Encoder::encode_batch_into`]: the batch against
    /// this codebook, finiteness, and `out`'s shape.
    fn check_batch_into<E: Element>(
        &self,
        batch: &Batch<'_, E>,
        out: &ArrayViewMut2<'_, f32>,
    ) -> Result<()> {
        self.check_batch(batch)?;
        if !batch.finite_checked() {
            batch.check_finite()?;
        }
        let want = self.output_shape(batch);
        if out.dim() != want {
            return Err(VladError::DimensionMismatch(format!(
                "the output array is {:?}, the encoding of this batch is (T, K·F) = {want:?}",
                out.dim()
            )));
        }
        Ok(())
    }

    /// [`Encoder::encode_batch_into`] once its checks have passed.
    fn encode_checked_into<E: Element>(
        &self,
        batch: &Batch<'_, E>,
        mut out: ArrayViewMut2<'_, f32>,
    ) -> Result<RunReport> {
        let want = self.output_shape(batch);
        let (_, report) = match out.as_slice_mut() {
            Some(flat) => self.encode_on_engine(batch, flat, false)?,
            // A strided view: computed contiguous, then copied in.
            None => {
                let mut vlad = Array2::<f32>::zeros(want);
                let flat = vlad
                    .as_slice_mut()
                    .unwrap_or_else(|| unreachable!("a fresh array is contiguous"));
                let ran = self.encode_on_engine(batch, flat, false)?;
                out.assign(&vlad);
                ran
            }
        };
        Ok(report)
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
        let (labels, report) = self.run(|engine, model, stages| {
            let call = Assign {
                codebook: model.codebook,
                batch,
                stages,
            };
            on_engine!(engine, b => Compute::assign(b, call))
        })?;
        Ok(Assigned { labels, report })
    }

    /// Encode one image too large for one call piece by piece: add its
    /// rows in order with [`ImagePieces::add`], then
    /// [`ImagePieces::finish`]. The same pieces always give the same bits;
    /// pieces cut where the backend cuts an image itself (as the stream,
    /// [`crate::stream`], cuts them) give the bits of the whole image
    /// encoded at once (SPEC §11).
    pub fn split_image(&self) -> Result<ImagePieces<'_>> {
        let start = Instant::now();
        let soft = self.assignment.soft_params(&self.codebook)?;
        let selected = select(self.backend, &self.gpu_options, &self.gpu)?;
        let image = {
            let model = self.model(soft.as_ref());
            on_engine!(&selected.engine, b => Compute::split_image(b, &model))?
        };
        Ok(ImagePieces {
            encoder: self,
            soft,
            selected,
            image,
            stages: StageTimes::new(),
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// Where passes over the images of `offsets` (CSR) in `dtype` may be
    /// cut so that the result is the in-memory one, on the backend this
    /// encoder would run (what the stream plans its batches by), with the
    /// report of that selection (no stages yet).
    pub(crate) fn cuts(&self, offsets: &[usize], dtype: DType) -> Result<(Cuts, RunReport)> {
        let start = Instant::now();
        let soft = self.assignment.soft_params(&self.codebook)?;
        let selected = select(self.backend, &self.gpu_options, &self.gpu)?;
        let model = self.model(soft.as_ref());
        let cuts = on_engine!(&selected.engine, b => Compute::cuts(b, &model, offsets, dtype))?;
        let mut report = report(selected, start.elapsed().as_secs_f64(), StageTimes::new());
        report.seconds = 0.0;
        Ok((cuts, report))
    }

    /// Encode `batch` into `out` (`T · dims_out` values) on the selected
    /// engine; the labels come back when `want_labels` (else maybe none).
    /// With a whitening, a backend that fuses it (the GPU: only `T × D′`
    /// values come back) is given it; any other encodes `(T, K·F)` into
    /// scratch memory and whitens that, on the same backend.
    fn encode_on_engine<E: Element>(
        &self,
        batch: &Batch<'_, E>,
        out: &mut [f32],
        want_labels: bool,
    ) -> Result<(Vec<u32>, RunReport)> {
        let whitening = self.whitening.as_deref();
        if let Some(w) = whitening {
            w.check_dims_in(self.raw_width())?;
        }
        self.run(|engine, model, stages| {
            on_engine!(engine, b => match whitening {
                Some(w) if !b.fuses_whitening() => {
                    let mut raw = raw_scratch(batch.images(), self.raw_width())?;
                    let call = EncodeInto { model, batch, out: &mut raw, stages, whitening: None, want_labels };
                    let labels = Compute::encode_into(b, call)?;
                    stages.time("whiten", || b.whiten(w, &raw, out))?;
                    Ok(labels)
                }
                _ => {
                    let call = EncodeInto { model, batch, out: &mut *out, stages, whitening, want_labels };
                    Compute::encode_into(b, call)
                }
            })
        })
    }

    /// The `(T, dims_out)` shape of `batch`'s encoding.
    fn output_shape<E: Element>(&self, batch: &Batch<'_, E>) -> (usize, usize) {
        (batch.images(), self.dims_out())
    }

    /// The batch's width and given labels against this codebook.
    fn check_batch<E: Element>(&self, batch: &Batch<'_, E>) -> Result<()> {
        batch.check_dim(self.codebook.dim())?;
        if let Some(labels) = batch.labels() {
            if !self.assignment.is_hard() {
                return Err(VladError::InvalidArgument(
                    "labels cannot be given with soft assignment (every descriptor weighs on \
                     every centroid)"
                        .to_string(),
                ));
            }
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

    fn model<'a>(&'a self, soft: Option<&'a SoftParams>) -> Model<'a> {
        Model {
            codebook: &self.codebook,
            assignment: &self.assignment,
            soft,
            norm: &self.normalization,
        }
    }

    /// Run `job` on the engine SPEC §7 selects. Under `auto`, a GPU failure
    /// while it runs moves this call to the CPU, and the report says why
    /// (the library prints nothing).
    fn run<T>(
        &self,
        mut job: impl FnMut(&Engine, &Model<'_>, &mut StageTimes) -> Result<T>,
    ) -> Result<(T, RunReport)> {
        let start = Instant::now();
        let soft = self.assignment.soft_params(&self.codebook)?;
        let model = self.model(soft.as_ref());
        let mut stages = StageTimes::new();
        let mut selected = select(self.backend, &self.gpu_options, &self.gpu)?;
        let out = match job(&selected.engine, &model, &mut stages) {
            Ok(out) => out,
            Err(err) => {
                let on_gpu = matches!(selected.engine, Engine::Gpu(_));
                let reason = (self.backend == Backend::Auto && on_gpu)
                    .then(|| fallback_reason(&err))
                    .flatten();
                let Some(reason) = reason else {
                    return Err(err);
                };
                stages = StageTimes::new();
                // The failed GPU attempt's setup is setup, not compute.
                selected = Selected::cpu_instead(reason, selected.setup_seconds);
                job(&selected.engine, &model, &mut stages)?
            }
        };
        let total = start.elapsed().as_secs_f64();
        Ok((out, report(selected, total, stages)))
    }

    /// The GPU session, if one was made and its device is not lost (the
    /// benchmark measures the adapter's ceilings on it).
    #[doc(hidden)]
    pub fn gpu_backend(&self) -> Option<std::sync::Arc<GpuBackend>> {
        self.gpu.current()
    }

    /// Test hook: the GPU session's next run loses its device mid-call (no
    /// effect before the session exists).
    #[doc(hidden)]
    pub fn simulate_gpu_device_loss(&self) {
        if let Some(session) = self.gpu.current() {
            session.simulate_loss_on_next_run();
        }
    }
}

/// Zeroed scratch for `images` raw `width`-wide encodings (whitened
/// afterwards), or [`VladError::TooLarge`] up front.
fn raw_scratch(images: usize, width: usize) -> Result<Vec<f32>> {
    let (len, _) = output_size(images, 1, width)?;
    let mut raw = Vec::new();
    if raw.try_reserve_exact(len).is_err() {
        return Err(too_large(images, 1, width, Some(len as u64 * 4)));
    }
    raw.resize(len, 0.0);
    Ok(raw)
}

/// The report of a call that ran on `selected` for `total` seconds.
fn report(selected: Selected, total: f64, stages: StageTimes) -> RunReport {
    let backend = selected.backend();
    RunReport {
        backend,
        adapter: selected.adapter,
        adapter_kind: selected.adapter_kind,
        seconds: (total - selected.setup_seconds).max(0.0),
        setup_seconds: selected.setup_seconds,
        stages,
        fallback_reason: selected.fallback_reason,
        notes: selected.notes,
    }
}

/// One image being encoded piece by piece ([`Encoder::split_image`]): its
/// running f64 sums, on the engine selected when it was started.
pub struct ImagePieces<'e> {
    encoder: &'e Encoder,
    soft: Option<SoftParams>,
    selected: Selected,
    image: SplitImage,
    stages: StageTimes,
    seconds: f64,
}

impl ImagePieces<'_> {
    /// Add the image's next rows `(n, F)` (given `labels` skip the
    /// assignment; they cannot be given with soft assignment); returns
    /// their labels. Rows are trusted to be finite: check them first
    /// ([`Batch::check_finite`]) when they may not be.
    pub fn add<E: Element>(
        &mut self,
        rows: ArrayView2<'_, E>,
        labels: Option<&[u32]>,
    ) -> Result<Vec<u32>> {
        let start = Instant::now();
        let encoder = self.encoder;
        let (n, f) = rows.dim();
        if f != encoder.codebook.dim() {
            return Err(VladError::DimensionMismatch(format!(
                "descriptors have F = {f} but centroids have F = {}",
                encoder.codebook.dim()
            )));
        }
        if let Some(given) = labels {
            if !encoder.assignment.is_hard() {
                return Err(VladError::InvalidArgument(
                    "labels cannot be given with soft assignment".to_string(),
                ));
            }
            if given.len() != n {
                return Err(VladError::DimensionMismatch(format!(
                    "{} labels for {n} rows",
                    given.len()
                )));
            }
            if let Some((index, &label)) = given
                .iter()
                .enumerate()
                .find(|(_, l)| **l as usize >= encoder.codebook.clusters())
            {
                return Err(VladError::LabelOutOfRange {
                    index,
                    label: label as i128,
                    clusters: encoder.codebook.clusters(),
                });
            }
        }
        let rows = rows.as_standard_layout();
        let values = rows
            .as_slice()
            .unwrap_or_else(|| unreachable!("standard layout is contiguous"));
        let model = encoder.model(self.soft.as_ref());
        let call = AddPiece {
            model: &model,
            rows: values,
            labels,
            image: &mut self.image,
            stages: &mut self.stages,
        };
        let labels = on_engine!(&self.selected.engine, b => Compute::add_piece(b, call))?;
        self.seconds += start.elapsed().as_secs_f64();
        Ok(labels)
    }

    /// Pieces added so far.
    pub fn pieces(&self) -> usize {
        self.image.pieces()
    }

    /// The image's normalized `K·F` row (or whitened `D′` row) into `out`,
    /// and what ran.
    pub fn finish(mut self, out: &mut [f32]) -> Result<RunReport> {
        let start = Instant::now();
        let model = self.encoder.model(self.soft.as_ref());
        let stages = &mut self.stages;
        let (engine, image) = (&self.selected.engine, &self.image);
        match self.encoder.whitening() {
            None => stages.time(
                "normalize",
                || on_engine!(engine, b => Compute::finish_image(b, &model, image, out)),
            )?,
            Some(w) => {
                let mut raw = raw_scratch(1, self.encoder.raw_width())?;
                stages.time(
                    "normalize",
                    || on_engine!(engine, b => Compute::finish_image(b, &model, image, &mut raw)),
                )?;
                stages.time("whiten", || on_engine!(engine, b => b.whiten(w, &raw, out)))?;
            }
        }
        let total = self.seconds + start.elapsed().as_secs_f64();
        Ok(report(self.selected, total, self.stages))
    }
}

/// The groups of whole images [`Encoder::encode_batch_into_with_progress`]
/// encodes one after another: cut only at an image boundary that `cuts`
/// allows (for a backend's own plan, between two spans of whole images),
/// each at least `max(N/20, 2¹⁸)` rows where the cuts allow.
fn progress_groups(offsets: &[usize], cuts: &Cuts) -> Vec<std::ops::Range<usize>> {
    let images = offsets.len().saturating_sub(1);
    let rows = offsets.last().copied().unwrap_or(0);
    let allowed: Vec<usize> = match cuts {
        Cuts::Aligned(_) | Cuts::Whole => (1..images).collect(),
        Cuts::Planned(spans) => spans
            .windows(2)
            .filter(|pair| pair[0].part.is_none() && pair[1].part.is_none())
            .map(|pair| pair[0].images.end)
            .collect(),
    };
    let least = rows.div_ceil(20).max(1 << 18);
    let mut groups = Vec::new();
    let mut start = 0;
    for cut in allowed {
        if cut > start && offsets[cut] - offsets[start] >= least {
            groups.push(start..cut);
            start = cut;
        }
    }
    if start < images {
        groups.push(start..images);
    }
    groups
}

/// Two consecutive calls' reports as one: seconds and stages summed, the
/// later call's backend (a fallback part-way shows), every note once.
fn sum_reports(earlier: RunReport, mut later: RunReport) -> RunReport {
    later.seconds += earlier.seconds;
    later.setup_seconds += earlier.setup_seconds;
    let mut stages = earlier.stages;
    for (name, seconds) in later.stages.iter() {
        stages.add(name, seconds);
    }
    later.stages = stages;
    if later.fallback_reason.is_none() {
        later.fallback_reason = earlier.fallback_reason;
    }
    let mut notes = earlier.notes;
    for note in later.notes.drain(..) {
        if !notes.contains(&note) {
            notes.push(note);
        }
    }
    later.notes = notes;
    later
}
