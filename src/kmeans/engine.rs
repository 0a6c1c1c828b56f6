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

// MERGE: swap this line for
// `use crate::cpu::{aggregate::cluster_sums, assign::assign_rows_with_distances};`
use super::placeholder_kernels::{assign_rows_with_distances, cluster_sums};

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
            Backend::Gpu => {
                return Err(VladError::BackendUnavailable(
                    "k-means on the gpu backend is not implemented yet".to_string(),
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

    /// The backend that runs.
    pub fn backend(&self) -> Backend {
        match self.kind {
            EngineKind::Cpu => Backend::Cpu,
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
        }
    }

    /// Nearest centroid of every row (no sums).
    pub fn assign(&mut self, codebook: &Codebook) -> Result<Vec<u32>> {
        match self.kind {
            EngineKind::Cpu => Ok(assign_rows_with_distances(codebook, self.rows, self.dim).0),
        }
    }
}
