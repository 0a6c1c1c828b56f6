//! Where the heavy part of each Lloyd iteration runs: assign every training
//! row to its nearest centroid and sum the rows per cluster, one window of
//! rows at a time (`source.rs`). Everything else (seeding, the mean update,
//! empty clusters) is cheap and stays on the host.

use std::sync::Arc;

use crate::backend::gpu::GpuBackend;
use crate::backend::options::GpuOptions;
use crate::backend::select::select;
use crate::backend::slot::GpuSlot;
use crate::backend::{Backend, Engine as BackendEngine};
use crate::error::{Result, VladError};
use crate::model::codebook::Codebook;
use crate::model::element::Element;

use crate::backend::cpu::{assign::assign_rows_with_distances, one_pass::label_and_sum_rows};

/// Per-cluster sums of the rows (`K × F` row-major, f64) and counts, added
/// up window after window.
pub(crate) struct ClusterSums {
    pub sums: Vec<f64>,
    pub counts: Vec<u64>,
    /// Windows added so far (the GPU engine takes one).
    windows: usize,
}

impl ClusterSums {
    /// Zero sums for `k` clusters of width `dim`.
    pub fn new(k: usize, dim: usize) -> Self {
        ClusterSums {
            sums: vec![0f64; k * dim],
            counts: vec![0u64; k],
            windows: 0,
        }
    }
}

enum EngineKind {
    Cpu,
    /// The GPU pipeline's assign → sort → segmented sum, with the centroid
    /// taken as zero: the k-means update is the VLAD scatter-reduction.
    Gpu(Arc<GpuBackend>),
}

/// The backend that processes the training rows, window by window.
pub(crate) struct Engine {
    kind: EngineKind,
}

/// An engine and what its selection reports.
pub(crate) struct Selection {
    pub engine: Engine,
    /// Why `Auto` did not take the GPU.
    pub fallback_reason: Option<String>,
    /// GPU setup (adapter listing, device, shaders), 0 on the CPU.
    pub setup_seconds: f64,
}

impl Engine {
    /// The engine SPEC §7's rule selects for `backend` ([`select`]):
    /// `Cpu`, `Gpu`, or `Auto` (a hardware adapter that works, else the
    /// CPU with the reason). `Reference` is an encoding oracle only.
    pub fn select(backend: Backend, options: &GpuOptions) -> Result<Selection> {
        if backend == Backend::Reference {
            return Err(VladError::InvalidArgument(format!(
                "k-means cannot run on the {backend} backend"
            )));
        }
        let slot = GpuSlot::new();
        let selected = select(backend, options, &slot)?;
        let (kind, setup_seconds) = match selected.engine {
            BackendEngine::Gpu(gpu) => (EngineKind::Gpu(gpu), selected.setup_seconds),
            _ => (EngineKind::Cpu, 0.0),
        };
        Ok(Selection {
            engine: Engine { kind },
            fallback_reason: selected.fallback_reason,
            setup_seconds,
        })
    }

    /// Whether a pass may be cut into windows with the same result. The
    /// CPU's sums are blocked (see `source.rs`); the GPU rounds its sums of
    /// a call to f32, so it takes the rows in one call, as in memory.
    pub fn streams(&self) -> bool {
        match self.kind {
            EngineKind::Cpu => true,
            EngineKind::Gpu(_) => false,
        }
    }

    /// The GPU adapter's name when the GPU runs.
    pub fn adapter(&self) -> Option<String> {
        match self.kind {
            EngineKind::Cpu => None,
            EngineKind::Gpu(ref gpu) => Some(gpu.adapter_name()),
        }
    }

    /// The GPU adapter's kind when the GPU runs.
    pub fn adapter_kind(&self) -> Option<crate::backend::adapters::AdapterKind> {
        match self.kind {
            EngineKind::Cpu => None,
            EngineKind::Gpu(ref gpu) => Some(gpu.adapter_kind()),
        }
    }

    /// The backend that runs.
    pub fn backend(&self) -> Backend {
        match self.kind {
            EngineKind::Cpu => Backend::Cpu,
            EngineKind::Gpu(_) => Backend::Gpu,
        }
    }

    /// Assign the window `rows` (`dim` wide, starting at a multiple of
    /// `WINDOW_ALIGN` rows) to `codebook` and add their sums to `acc`;
    /// returns each row's label and squared f32 distance to it.
    pub fn step<E: Element>(
        &mut self,
        codebook: &Codebook,
        rows: &[E],
        dim: usize,
        acc: &mut ClusterSums,
    ) -> Result<(Vec<u32>, Vec<f32>)> {
        acc.windows += 1;
        match self.kind {
            EngineKind::Cpu => {
                // Labels, distances and sums in one pass over the rows,
                // bitwise the assignment then the sums.
                debug_assert_eq!(dim, codebook.dim());
                Ok(label_and_sum_rows(
                    codebook,
                    rows,
                    &mut acc.sums,
                    &mut acc.counts,
                ))
            }
            EngineKind::Gpu(ref gpu) => {
                if acc.windows > 1 {
                    return Err(VladError::InvalidArgument(
                        "the gpu k-means engine takes its rows in one window (a bug)".into(),
                    ));
                }
                let mut stages = crate::model::report::StageTimes::new();
                let (labels, sums, counts) = gpu.cluster_sums(codebook, rows, dim, &mut stages)?;
                let distances = distances_to_labels(codebook, rows, dim, &labels);
                acc.sums = sums.into_iter().map(f64::from).collect();
                acc.counts = counts.into_iter().map(u64::from).collect();
                Ok((labels, distances))
            }
        }
    }

    /// Nearest centroid of every row of the window `rows` (no sums).
    pub fn assign<E: Element>(
        &mut self,
        codebook: &Codebook,
        rows: &[E],
        dim: usize,
    ) -> Result<Vec<u32>> {
        match self.kind {
            EngineKind::Cpu => Ok(assign_rows_with_distances(codebook, rows, dim).0),
            EngineKind::Gpu(ref gpu) => {
                let mut stages = crate::model::report::StageTimes::new();
                Ok(gpu.cluster_sums(codebook, rows, dim, &mut stages)?.0)
            }
        }
    }
}

/// `‖v − c_label‖²` of every row in f32, each row summed in index order (so
/// the same whatever the thread count). The GPU returns labels and sums, not
/// distances; this one pass over the rows is `N·F` work against the
/// assignment's `N·K·F`.
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
