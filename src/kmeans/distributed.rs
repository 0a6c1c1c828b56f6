//! k-means as a map and a reduce, for engines that spread the training set
//! over many workers (SPEC §13: `vlad.ray.kmeans`). The driver seeds the
//! centroids ([`KMeans::seed_centroids`]); each iteration maps every block
//! of training rows to a [`LloydStep`] ([`LloydWorker::step`]), adds the
//! steps in block order ([`LloydStep::merge`]) and moves the centroids
//! ([`Lloyd::update`]). Every piece is the one [`KMeans::fit`] runs (the
//! same seeding, assignment, f64 sums, mean update, empty-cluster split and
//! stopping rule), so the codebook depends only on the blocks and their
//! order, never on how many workers ran them or when.
//!
//! ```
//! use ndarray::Array2;
//! use vlad::Backend;
//! use vlad::kmeans::{KMeans, LloydWorker};
//!
//! let points = Array2::from_shape_fn((64, 2), |(i, j)| {
//!     (if i < 32 { 0.0 } else { 50.0 }) + ((i * 7 + j * 3) % 5) as f32 * 0.1
//! });
//! let settings = KMeans::new(2).seed(7);
//! let mut lloyd = settings.lloyd(settings.seed_centroids(points.view())?);
//! let worker = LloydWorker::new(Backend::Cpu, &Default::default())?;
//! loop {
//!     // Two blocks, as two workers would see them, reduced in block order.
//!     let mut step = worker.step(points.slice(ndarray::s![..40, ..]), lloyd.centroids())?;
//!     step.merge(&worker.step(points.slice(ndarray::s![40.., ..]), lloyd.centroids())?)?;
//!     if !lloyd.update(&step)? {
//!         break;
//!     }
//! }
//! assert_eq!(lloyd.centroids().clusters(), 2);
//! # Ok::<(), vlad::VladError>(())
//! ```

use ndarray::ArrayView2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use std::sync::Mutex;

use super::engine::Engine;
use super::source::Source;
use super::training_set;
use super::{Init, KMeans, codebook_from, init, reseed, update};
use crate::backend::Backend;
use crate::backend::options::GpuOptions;
use crate::error::{Result, VladError};
use crate::model::codebook::Codebook;
use crate::model::element::Element;

/// One block's share of a Lloyd iteration: what the reduce needs and
/// nothing per row.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LloydStep {
    /// Per-cluster sums of the rows, `K × F` row-major, f64.
    pub sums: Vec<f64>,
    /// Rows per cluster.
    pub counts: Vec<u64>,
    /// Per-cluster `Σ ‖x − c‖²` of the f32 distances, summed in f64 in row
    /// order (the empty-cluster split needs each cluster's spread).
    pub errors: Vec<f64>,
    /// `Σ ‖x − c_label(x)‖²` of the f32 distances, summed in f64 in row
    /// order: this iteration's inertia, as [`KMeans::fit`] reports it.
    pub inertia: f64,
    /// The same from exact f64 differences (the final inertia of
    /// [`super::KMeansResult`]).
    pub exact_inertia: f64,
}

impl LloydStep {
    /// A step from its parts (a reduce done elsewhere, e.g. in numpy):
    /// `sums` is `K × F` row-major, `counts` and `errors` `K` long.
    pub fn new(
        sums: Vec<f64>,
        counts: Vec<u64>,
        errors: Vec<f64>,
        inertia: f64,
        exact_inertia: f64,
    ) -> Result<Self> {
        let k = counts.len();
        if errors.len() != k || k == 0 || !sums.len().is_multiple_of(k) {
            return Err(VladError::DimensionMismatch(format!(
                "a Lloyd step needs K × F sums, K counts and K errors, got {}, {k} and {}",
                sums.len(),
                errors.len()
            )));
        }
        Ok(LloydStep {
            sums,
            counts,
            errors,
            inertia,
            exact_inertia,
        })
    }

    /// Add `other` (the next block) to this one, element by element in f64.
    /// Merging blocks in the same order always gives the same bits.
    pub fn merge(&mut self, other: &LloydStep) -> Result<()> {
        if (self.sums.len(), self.counts.len()) != (other.sums.len(), other.counts.len()) {
            return Err(VladError::DimensionMismatch(format!(
                "cannot merge Lloyd steps of {} and {} clusters",
                self.counts.len(),
                other.counts.len()
            )));
        }
        for (a, b) in self.sums.iter_mut().zip(&other.sums) {
            *a += b;
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        for (a, b) in self.errors.iter_mut().zip(&other.errors) {
            *a += b;
        }
        self.inertia += other.inertia;
        self.exact_inertia += other.exact_inertia;
        Ok(())
    }
}

/// Computes [`LloydStep`]s on one backend; holds the GPU device (set up
/// once) when it runs there, so a worker answers many blocks cheaply.
pub struct LloydWorker {
    // The engine `KMeans::fit` runs its passes on (it keeps scratch space
    // between calls, hence the lock: a worker may be shared by threads).
    engine: Mutex<Engine>,
    backend: Backend,
}

impl LloydWorker {
    /// A worker on `Cpu` or `Gpu` (any adapter, software ones included), or
    /// `Auto`: a hardware GPU adapter when one works, else the CPU (SPEC
    /// §7's rule, [`crate::backend::select`]); `options` set up the GPU.
    pub fn new(backend: Backend, options: &GpuOptions) -> Result<Self> {
        let engine = Engine::select(backend, options)?.engine;
        let backend = engine.backend();
        Ok(LloydWorker {
            engine: Mutex::new(engine),
            backend,
        })
    }

    /// The backend that runs (`Cpu` or `Gpu`).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Assign each `(n, F)` row to its nearest centroid and sum per cluster,
    /// as one iteration of [`KMeans::fit`] does (`n` may be 0): the same
    /// pass, on the same engine. The result depends only on the rows and
    /// the centroids, never on the thread count. Rows must be finite
    /// (checked: [`VladError::NonFinite`]).
    pub fn step<E: Element>(
        &self,
        rows: ArrayView2<'_, E>,
        centroids: &Codebook,
    ) -> Result<LloydStep> {
        let (n, dim) = rows.dim();
        if dim != centroids.dim() {
            return Err(VladError::DimensionMismatch(format!(
                "the rows have F = {dim} but the centroids F = {}",
                centroids.dim()
            )));
        }
        if n > 0 {
            training_set::check_input(&rows, 1)?;
        }
        let set = training_set::gather(&rows, None);
        let source = Source::memory(&set.rows, dim);
        let mut engine = self
            .engine
            .lock()
            .map_err(|_| VladError::Gpu("k-means worker lock poisoned".to_string()))?;
        let mut labels = Vec::new();
        let pass = super::lloyd_pass(&mut engine, centroids, &source, &mut labels)?;
        let exact_inertia = if n == 0 {
            0.0
        } else {
            super::exact_inertia(&mut engine, centroids, &source)?
        };
        Ok(LloydStep {
            sums: pass.sums.sums,
            counts: pass.sums.counts,
            errors: pass.errors,
            inertia: pass.inertia,
            exact_inertia,
        })
    }
}

impl KMeans {
    /// The centroids [`KMeans::fit`] would start from if `training` were its
    /// whole training set (k-means++ or random, with this seed): the input
    /// is checked as `fit` checks it, and every row is used (no
    /// subsampling: `training` is the sample).
    pub fn seed_centroids<E: Element>(&self, training: ArrayView2<'_, E>) -> Result<Codebook> {
        self.check_settings()?;
        training_set::check_input(&training, self.k)?;
        let dim = training.ncols();
        let set = training_set::gather(&training, None);
        let source = Source::memory(&set.rows, dim);
        training_set::check_distinct(&source, self.k)?;
        let centroids = match self.init {
            Init::KMeansPlusPlus => init::kmeans_plus_plus(&source, self.k, self.seed)?,
            Init::Random => init::random_points(&source, self.k, self.seed)?,
            Init::Given => self.given_centroids(dim)?,
        };
        codebook_from(&centroids, self.k, dim)
    }

    /// The driver's side of a distributed fit, starting from `seeded`
    /// centroids: feed it each iteration's merged [`LloydStep`].
    pub fn lloyd(&self, seeded: Codebook) -> Lloyd {
        let mut split_rng = ChaCha8Rng::seed_from_u64(self.seed);
        split_rng.set_stream(reseed::RESEED_STREAM);
        Lloyd {
            dim: seeded.dim(),
            centroids: seeded,
            split_rng,
            max_iterations: self.iterations,
            tolerance: self.tolerance,
            inertia_history: Vec::new(),
            previous_plain: false,
            done: self.iterations == 0,
        }
    }
}

/// The centroids between iterations of a distributed fit, and the rules
/// of [`KMeans::fit`] that move them: mean update, empty-cluster split
/// (the same seeded stream), and the stop after `iterations`, at a fixed
/// point, or when the inertia changes by at most the tolerance.
#[derive(Clone, Debug)]
pub struct Lloyd {
    centroids: Codebook,
    dim: usize,
    split_rng: ChaCha8Rng,
    max_iterations: usize,
    tolerance: f64,
    inertia_history: Vec<f64>,
    /// Whether the current centroids are the plain means of the last
    /// assignment (no centroid re-seeded).
    previous_plain: bool,
    done: bool,
}

impl Lloyd {
    /// The current centroids: broadcast them for the next step.
    pub fn centroids(&self) -> &Codebook {
        &self.centroids
    }

    /// Inertia of each iteration so far.
    pub fn inertia_history(&self) -> &[f64] {
        &self.inertia_history
    }

    /// Iterations run.
    pub fn iterations(&self) -> usize {
        self.inertia_history.len()
    }

    /// Whether training is over (no more steps needed).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Apply one iteration's merged step (computed from [`Lloyd::centroids`]);
    /// returns whether another iteration should run.
    ///
    /// The fixed point is detected from the centroids: the new means equal
    /// the current ones bitwise, and neither update re-seeded a centroid.
    /// [`KMeans::fit`] compares the labels instead; equal labels give equal
    /// means, so both stop at the same iteration unless two different
    /// assignments have bitwise equal means.
    pub fn update(&mut self, step: &LloydStep) -> Result<bool> {
        let k = self.centroids.clusters();
        let dim = self.dim;
        if step.counts.len() != k || step.sums.len() != k * dim || step.errors.len() != k {
            return Err(VladError::DimensionMismatch(format!(
                "a Lloyd step of {} clusters for {k} centroids",
                step.counts.len()
            )));
        }
        if self.done {
            return Ok(false);
        }
        let inertia = step.inertia;
        self.inertia_history.push(inertia);
        let before = self.centroids.as_slice().to_vec();
        let mut centroids = before.clone();
        let empty = update::move_to_means(&mut centroids, &step.sums, &step.counts, dim);
        let moved = reseed::split_largest(
            &mut centroids,
            dim,
            &empty,
            &step.counts,
            &step.errors,
            &mut self.split_rng,
        );
        let fixed_point = self.previous_plain && moved == 0 && centroids == before;
        let small_change = match self.inertia_history.len() {
            len if len >= 2 && self.tolerance > 0.0 => {
                let previous = self.inertia_history[len - 2];
                (previous - inertia).abs() <= self.tolerance * previous
            }
            _ => false,
        };
        self.centroids = codebook_from(&centroids, k, dim)?;
        self.previous_plain = moved == 0;
        self.done =
            fixed_point || small_change || self.inertia_history.len() >= self.max_iterations;
        Ok(!self.done)
    }
}
