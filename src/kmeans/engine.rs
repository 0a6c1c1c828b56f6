//! Where the heavy part of each Lloyd iteration runs: assign every training
//! row to its nearest centroid and sum the rows per cluster. Everything else
//! (seeding, the mean update, empty clusters) is cheap and stays on the
//! host. A GPU implementation is one more [`EngineKind`] variant: it can
//! upload the training rows once in [`Engine::new`] and answer
//! [`Engine::step`] and [`Engine::assign`] from the device.

use crate::backend::Backend;
use crate::codebook::Codebook;
use crate::element::Element;
use crate::error::{Result, VladError};

use crate::cpu::{aggregate::cluster_sums, assign::assign_rows_with_distances};

/// What one Lloyd iteration's assignment produced.
pub(crate) struct LloydStep {
    /// Nearest centroid of each training row.
    pub labels: Vec<u32>,
    /// Squared distance of each row to that centroid (f32).
    pub distances: Vec<f32>,
    /// Per-cluster sums of the rows, `K × F` row-major, f64.
    pub sums: Vec<f64>,
    /// Rows per cluster.
    pub counts: Vec<u64>,
}

enum EngineKind {
    Cpu,
    /// The GPU pipeline's assign → sort → segmented sum, with the centroid
    /// taken as zero: the k-means update is the VLAD scatter-reduction.
    #[cfg(feature = "gpu")]
    Gpu(Box<crate::gpu::GpuBackend>),
}

/// The training rows bound to the backend that processes them.
pub(crate) struct Engine<'a, E: Element> {
    rows: &'a [E],
    dim: usize,
    kind: EngineKind,
}

impl<'a, E: Element> Engine<'a, E> {
    /// Bind `rows` (`dim` wide) to a concrete backend (`Cpu` or `Gpu`).
    pub fn new(backend: Backend, rows: &'a [E], dim: usize) -> Result<Self> {
        let kind = match backend {
            Backend::Cpu => EngineKind::Cpu,
            #[cfg(feature = "gpu")]
            Backend::Gpu => EngineKind::Gpu(Box::new(crate::gpu::GpuBackend::new(
                &crate::gpu::GpuOptions::default(),
            )?)),
            #[cfg(not(feature = "gpu"))]
            Backend::Gpu => {
                return Err(VladError::BackendUnavailable(
                    "built without the gpu feature".to_string(),
                ));
            }
            Backend::Auto | Backend::Reference => {
                return Err(VladError::InvalidArgument(format!(
                    "k-means cannot run on the {backend} backend"
                )));
            }
        };
        Ok(Engine { rows, dim, kind })
    }

    /// The GPU adapter's name when the GPU runs.
    pub fn adapter(&self) -> Option<String> {
        match self.kind {
            EngineKind::Cpu => None,
            #[cfg(feature = "gpu")]
            EngineKind::Gpu(ref gpu) => Some(gpu.adapter_name()),
        }
    }

    /// The GPU adapter's kind when the GPU runs.
    pub fn adapter_kind(&self) -> Option<crate::adapter::AdapterKind> {
        match self.kind {
            EngineKind::Cpu => None,
            #[cfg(feature = "gpu")]
            EngineKind::Gpu(ref gpu) => Some(crate::gpu::adapters::kind_of(
                gpu.context().info.device_type,
            )),
        }
    }

    /// The backend that runs.
    pub fn backend(&self) -> Backend {
        match self.kind {
            EngineKind::Cpu => Backend::Cpu,
            #[cfg(feature = "gpu")]
            EngineKind::Gpu(_) => Backend::Gpu,
        }
    }

    /// Assign every row to `codebook` and sum the rows per cluster.
    pub fn step(&mut self, codebook: &Codebook) -> Result<LloydStep> {
        match self.kind {
            EngineKind::Cpu => {
                let (labels, distances) = assign_rows_with_distances(codebook, self.rows, self.dim);
                let (sums, counts) =
                    cluster_sums(self.rows, self.dim, &labels, codebook.clusters());
                Ok(LloydStep {
                    labels,
                    distances,
                    sums,
                    counts,
                })
            }
            #[cfg(feature = "gpu")]
            EngineKind::Gpu(ref gpu) => {
                let mut stages = crate::report::StageTimes::new();
                let (labels, sums, counts) =
                    gpu.cluster_sums(codebook, self.rows, self.dim, &mut stages)?;
                let distances = distances_to_labels(codebook, self.rows, self.dim, &labels);
                Ok(LloydStep {
                    labels,
                    distances,
                    sums: sums.into_iter().map(f64::from).collect(),
                    counts: counts.into_iter().map(u64::from).collect(),
                })
            }
        }
    }

    /// Nearest centroid of every row (no sums).
    pub fn assign(&mut self, codebook: &Codebook) -> Result<Vec<u32>> {
        match self.kind {
            EngineKind::Cpu => Ok(assign_rows_with_distances(codebook, self.rows, self.dim).0),
            #[cfg(feature = "gpu")]
            EngineKind::Gpu(ref gpu) => {
                let mut stages = crate::report::StageTimes::new();
                Ok(gpu
                    .cluster_sums(codebook, self.rows, self.dim, &mut stages)?
                    .0)
            }
        }
    }
}

/// `‖v − c_label‖²` of every row in f32, each row summed in index order (so
/// the same whatever the thread count). The GPU returns labels and sums, not
/// distances; this one pass over the rows is `N·F` work against the
/// assignment's `N·K·F`.
#[cfg(feature = "gpu")]
pub(crate) fn distances_to_labels<E: Element>(
    codebook: &Codebook,
    rows: &[E],
    dim: usize,
    labels: &[u32],
) -> Vec<f32> {
    use rayon::prelude::*;
    let centroids = codebook.as_slice();
    rows.par_chunks(dim)
        .zip(labels.par_iter())
        .map(|(v, &label)| {
            let c = &centroids[label as usize * dim..][..dim];
            v.iter()
                .zip(c)
                .map(|(&x, &y)| {
                    let d = x.to_f32() - y;
                    d * d
                })
                .sum()
        })
        .collect()
}
