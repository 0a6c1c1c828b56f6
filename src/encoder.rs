//! The library's front door: an [`Encoder`] holds a codebook, a
//! normalization and a backend choice, validates input once, and dispatches
//! to the backend that runs.

#[cfg(feature = "gpu")]
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use ndarray::{Array1, Array2, ArrayView2, ArrayView3};

use crate::backend::Backend;
use crate::codebook::Codebook;
use crate::element::Element;
use crate::error::{Result, VladError};
use crate::input::Batch;
use crate::normalization::Normalization;
use crate::report::{RunReport, StageTimes};

/// Environment variable capping the storage-binding size the GPU backend
/// plans with (SPEC §9), so small inputs exercise every chunking path.
pub const MAX_BINDING_ENV: &str = "VLAD_GPU_MAX_BINDING_BYTES";

/// The cap `VLAD_GPU_MAX_BINDING_BYTES` sets: `None` when unset or empty,
/// an error unless it is a positive number of bytes.
pub fn gpu_max_binding_bytes_from_env() -> Result<Option<u64>> {
    let bad = |value: &dyn std::fmt::Debug| {
        VladError::InvalidArgument(format!(
            "{MAX_BINDING_ENV}={value:?}: expected a positive number of bytes"
        ))
    };
    match std::env::var(MAX_BINDING_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(s)) => Err(bad(&s)),
        Ok(s) if s.trim().is_empty() => Ok(None),
        Ok(s) => match s.trim().parse::<u64>() {
            Ok(bytes) if bytes > 0 => Ok(Some(bytes)),
            _ => Err(bad(&s)),
        },
    }
}

/// An encoding with the labels it was computed from and what ran.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// `(T, K·F)` f32, cluster-major within each row.
    pub vlad: Array2<f32>,
    /// The label of every descriptor (given or computed).
    pub labels: Vec<u32>,
    /// Backend, adapter, timings.
    pub report: RunReport,
}

/// Labels with what ran.
#[derive(Clone, Debug)]
pub struct Assigned {
    /// Nearest-centroid label of every descriptor.
    pub labels: Vec<u32>,
    /// Backend, adapter, timings.
    pub report: RunReport,
}

/// What a backend hands back to the encoder.
pub(crate) struct BackendOutput {
    pub vlad: Array2<f32>,
    pub labels: Vec<u32>,
    pub adapter: Option<String>,
}

/// Encodes images against one codebook.
///
/// ```
/// use ndarray::{array, Array3};
/// use vlad::{Backend, Codebook, Encoder, Normalization};
///
/// let codebook = Codebook::new(array![[0.0f32, 1.0, 2.0], [9.0, 9.0, 9.0]].view())?;
/// let encoder = Encoder::new(codebook)
///     .normalization(Normalization::none())
///     .backend(Backend::Cpu);
/// // One image with one descriptor [1, 2, 3]: residual [1, 1, 1] in block 0.
/// let images = Array3::from_shape_vec((1, 1, 3), vec![1.0f32, 2.0, 3.0]).unwrap();
/// let vlad = encoder.encode(images.view())?;
/// assert_eq!(vlad.row(0).to_vec(), vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
/// # Ok::<(), vlad::VladError>(())
/// ```
pub struct Encoder {
    codebook: Codebook,
    normalization: Normalization,
    backend: Backend,
    gpu_max_binding_bytes: Option<u64>,
    fallback_said: AtomicBool,
    /// The GPU session, made on first use and kept (shader compilation and
    /// device setup are too slow to repeat per call). A failure to make it
    /// is kept too, so `auto` does not probe for an adapter on every call.
    #[cfg(feature = "gpu")]
    gpu: OnceLock<Result<crate::gpu::GpuBackend, GpuSessionError>>,
}

/// Why the GPU session could not be made, kept so every later call can
/// report the same error kind (`VladError` itself is not `Clone`).
#[cfg(feature = "gpu")]
#[derive(Debug)]
enum GpuSessionError {
    Unavailable(String),
    Failed(String),
    InvalidArgument(String),
}

#[cfg(feature = "gpu")]
impl GpuSessionError {
    fn from_error(e: VladError) -> Self {
        match e {
            VladError::BackendUnavailable(m) => GpuSessionError::Unavailable(m),
            VladError::InvalidArgument(m) => GpuSessionError::InvalidArgument(m),
            VladError::Gpu(m) => GpuSessionError::Failed(m),
            other => GpuSessionError::Failed(other.to_string()),
        }
    }

    fn to_error(&self) -> VladError {
        match self {
            GpuSessionError::Unavailable(m) => VladError::BackendUnavailable(m.clone()),
            GpuSessionError::InvalidArgument(m) => VladError::InvalidArgument(m.clone()),
            GpuSessionError::Failed(m) => VladError::Gpu(m.clone()),
        }
    }
}

impl Encoder {
    /// An encoder with the default normalization (`ssr,l2`) and backend (`auto`).
    pub fn new(codebook: Codebook) -> Self {
        Encoder {
            codebook,
            normalization: Normalization::default(),
            backend: Backend::Auto,
            gpu_max_binding_bytes: None,
            fallback_said: AtomicBool::new(false),
            #[cfg(feature = "gpu")]
            gpu: OnceLock::new(),
        }
    }

    /// Set the normalization steps.
    pub fn normalization(mut self, normalization: Normalization) -> Self {
        self.normalization = normalization;
        self
    }

    /// Set the backend.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Cap the storage-binding size the GPU backend plans with (the API twin
    /// of `VLAD_GPU_MAX_BINDING_BYTES`), so small inputs exercise chunking.
    pub fn gpu_max_binding_bytes(mut self, bytes: Option<u64>) -> Self {
        self.gpu_max_binding_bytes = bytes;
        // A session made with the old cap plans with it: make a new one.
        #[cfg(feature = "gpu")]
        {
            self.gpu = OnceLock::new();
        }
        self
    }

    /// The codebook.
    pub fn codebook(&self) -> &Codebook {
        &self.codebook
    }

    /// The normalization.
    pub fn get_normalization(&self) -> &Normalization {
        &self.normalization
    }

    /// The backend asked for.
    pub fn get_backend(&self) -> Backend {
        self.backend
    }

    /// Encode fixed-size images `(T, L, F)` into `(T, K·F)`.
    pub fn encode<E: Element>(&self, descriptors: ArrayView3<'_, E>) -> Result<Array2<f32>> {
        let batch = Batch::fixed(descriptors)?;
        Ok(self.encode_batch(&batch)?.vlad)
    }

    /// Encode ragged images: `(N, F)` rows plus CSR offsets `(T+1,)`.
    pub fn encode_ragged<E: Element>(
        &self,
        descriptors: ArrayView2<'_, E>,
        offsets: &[usize],
    ) -> Result<Array2<f32>> {
        let batch = Batch::ragged(descriptors, offsets)?;
        Ok(self.encode_batch(&batch)?.vlad)
    }

    /// Encode ragged images whose labels are already known (skips assignment).
    pub fn encode_ragged_with_labels<E: Element>(
        &self,
        descriptors: ArrayView2<'_, E>,
        offsets: &[usize],
        labels: &[u32],
    ) -> Result<Array2<f32>> {
        let batch =
            Batch::ragged(descriptors, offsets)?.with_labels(labels, self.codebook.clusters())?;
        Ok(self.encode_batch(&batch)?.vlad)
    }

    /// Encode a validated [`Batch`], returning labels and a [`RunReport`].
    pub fn encode_batch<E: Element>(&self, batch: &Batch<'_, E>) -> Result<Encoded> {
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
        let start = Instant::now();
        let mut stages = StageTimes::new();
        let (ran, out, fallback_reason) = self.dispatch(&mut stages, |backend, stages| {
            self.run_encode(backend, batch, stages)
        })?;
        Ok(Encoded {
            vlad: out.vlad,
            labels: out.labels,
            report: RunReport {
                backend: ran,
                adapter: out.adapter,
                seconds: start.elapsed().as_secs_f64(),
                stages,
                fallback_reason,
            },
        })
    }

    /// Nearest-centroid labels of `(N, F)` descriptors.
    pub fn assign<E: Element>(&self, descriptors: ArrayView2<'_, E>) -> Result<Array1<u32>> {
        let batch = Batch::single(descriptors)?;
        Ok(Array1::from(self.assign_batch(&batch)?.labels))
    }

    /// Nearest-centroid labels of a validated [`Batch`], with a report.
    pub fn assign_batch<E: Element>(&self, batch: &Batch<'_, E>) -> Result<Assigned> {
        batch.check_dim(self.codebook.dim())?;
        let start = Instant::now();
        let mut stages = StageTimes::new();
        let (ran, (labels, adapter), fallback_reason) = self
            .dispatch(&mut stages, |backend, stages| {
                self.run_assign(backend, batch, stages)
            })?;
        Ok(Assigned {
            labels,
            report: RunReport {
                backend: ran,
                adapter,
                seconds: start.elapsed().as_secs_f64(),
                stages,
                fallback_reason,
            },
        })
    }

    /// Run `job` on the chosen backend; under `Auto`, fall back from the GPU
    /// to the CPU on any GPU failure, saying why once on stderr.
    fn dispatch<T>(
        &self,
        stages: &mut StageTimes,
        job: impl Fn(Backend, &mut StageTimes) -> Result<T>,
    ) -> Result<(Backend, T, Option<String>)> {
        match self.backend {
            Backend::Auto => match job(Backend::Gpu, stages) {
                Ok(out) => Ok((Backend::Gpu, out, None)),
                Err(err @ (VladError::BackendUnavailable(_) | VladError::Gpu(_))) => {
                    let reason = err.to_string();
                    if !self.fallback_said.swap(true, Ordering::Relaxed) {
                        eprintln!("vlad: using the cpu backend ({reason})");
                    }
                    *stages = StageTimes::new();
                    Ok((Backend::Cpu, job(Backend::Cpu, stages)?, Some(reason)))
                }
                Err(other) => Err(other),
            },
            backend => Ok((backend, job(backend, stages)?, None)),
        }
    }

    fn run_encode<E: Element>(
        &self,
        backend: Backend,
        batch: &Batch<'_, E>,
        stages: &mut StageTimes,
    ) -> Result<BackendOutput> {
        match backend {
            Backend::Reference => {
                let (vlad, labels) = stages.time("reference", || {
                    crate::reference::encode(&self.codebook, batch, &self.normalization)
                });
                Ok(BackendOutput {
                    vlad: vlad.mapv(|x| x as f32),
                    labels,
                    adapter: None,
                })
            }
            Backend::Cpu => {
                let (vlad, labels) =
                    crate::cpu::encode(&self.codebook, batch, &self.normalization, stages);
                Ok(BackendOutput {
                    vlad,
                    labels,
                    adapter: None,
                })
            }
            Backend::Gpu | Backend::Auto => self.run_gpu_encode(batch, stages),
        }
    }

    fn run_assign<E: Element>(
        &self,
        backend: Backend,
        batch: &Batch<'_, E>,
        stages: &mut StageTimes,
    ) -> Result<(Vec<u32>, Option<String>)> {
        match backend {
            Backend::Reference => Ok((
                stages.time("assign", || crate::reference::assign(&self.codebook, batch)),
                None,
            )),
            Backend::Cpu => Ok((crate::cpu::assign(&self.codebook, batch, stages), None)),
            Backend::Gpu | Backend::Auto => self.run_gpu_assign(batch, stages),
        }
    }

    /// The GPU session, made on first use with this encoder's binding cap.
    #[cfg(feature = "gpu")]
    fn gpu_session(&self) -> Result<&crate::gpu::GpuBackend> {
        let session = self.gpu.get_or_init(|| {
            let options = crate::gpu::GpuOptions {
                max_binding_bytes: self.gpu_max_binding_bytes,
            };
            crate::gpu::GpuBackend::new(&options).map_err(GpuSessionError::from_error)
        });
        session.as_ref().map_err(GpuSessionError::to_error)
    }

    /// The GPU session, for the streaming pipeline (`crate::stream`),
    /// which drives the backend chunk by chunk itself.
    #[cfg(feature = "gpu")]
    pub(crate) fn gpu_for_stream(&self) -> Result<&crate::gpu::GpuBackend> {
        self.gpu_session()
    }

    #[cfg(feature = "gpu")]
    fn run_gpu_encode<E: Element>(
        &self,
        batch: &Batch<'_, E>,
        stages: &mut StageTimes,
    ) -> Result<BackendOutput> {
        let gpu = self.gpu_session()?;
        let (vlad, labels) = gpu.encode(&self.codebook, batch, &self.normalization, stages)?;
        Ok(BackendOutput {
            vlad,
            labels,
            adapter: Some(gpu.adapter_name()),
        })
    }

    #[cfg(feature = "gpu")]
    fn run_gpu_assign<E: Element>(
        &self,
        batch: &Batch<'_, E>,
        stages: &mut StageTimes,
    ) -> Result<(Vec<u32>, Option<String>)> {
        let gpu = self.gpu_session()?;
        let labels = gpu.assign(&self.codebook, batch, stages)?;
        Ok((labels, Some(gpu.adapter_name())))
    }

    #[cfg(not(feature = "gpu"))]
    fn run_gpu_encode<E: Element>(
        &self,
        _batch: &Batch<'_, E>,
        _stages: &mut StageTimes,
    ) -> Result<BackendOutput> {
        let _ = self.gpu_max_binding_bytes;
        Err(VladError::BackendUnavailable(
            "built without the gpu feature".to_string(),
        ))
    }

    #[cfg(not(feature = "gpu"))]
    fn run_gpu_assign<E: Element>(
        &self,
        _batch: &Batch<'_, E>,
        _stages: &mut StageTimes,
    ) -> Result<(Vec<u32>, Option<String>)> {
        Err(VladError::BackendUnavailable(
            "built without the gpu feature".to_string(),
        ))
    }
}
