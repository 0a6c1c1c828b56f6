//! Codebook training by k-means (Lloyd's algorithm), for users of faiss'
//! `Kmeans` and scikit-learn's `KMeans`.
//!
//! ```
//! use ndarray::Array2;
//! use vlad::kmeans::{Init, KMeans};
//!
//! // Two well-separated groups of points in 2-D.
//! let points = Array2::from_shape_fn((40, 2), |(i, j)| {
//!     (if i < 20 { 0.0 } else { 50.0 }) + ((i * 7 + j * 3) % 5) as f32 * 0.1
//! });
//! let result = KMeans::new(2).init(Init::KMeansPlusPlus).seed(7).fit(points.view())?;
//! assert_eq!(result.codebook.clusters(), 2);
//! let mut first: Vec<f32> = result.codebook.centroids().column(0).to_vec();
//! first.sort_by(f32::total_cmp);
//! assert!((first[0] - 0.2).abs() < 0.1 && (first[1] - 50.2).abs() < 0.1);
//! # Ok::<(), vlad::VladError>(())
//! ```
//!
//! How it runs:
//! 1. the input is checked (SPEC §6) and, unless `max_points_per_centroid`
//!    is `None`, at most `K × max_points_per_centroid` rows are drawn with
//!    the seed (indices first, then only those rows are gathered);
//! 2. centroids are seeded by greedy k-means++ or as `K` distinct random
//!    points;
//! 3. each iteration assigns every training point to its nearest centroid
//!    and moves each centroid to the mean of its points; an empty cluster is
//!    re-seeded by splitting the most populous one (rule in [`KMeans`]);
//! 4. it stops after `iterations`, when the labels stop changing (a fixed
//!    point), or when the inertia changes by less than `tolerance` relative;
//! 5. the reported inertia is `Σ ‖x − c_label(x)‖²` over the training
//!    points, labels from the FINAL centroids, summed exactly in f64.
//!
//! Every reduction sums in a fixed order, so the same input, seed and
//! backend give bitwise identical centroids whatever the thread count.

mod distance;
mod distributed;
mod engine;
mod init;
mod mapped;
mod reseed;
mod source;
mod training_set;
mod update;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use ndarray::{Array2, ArrayView2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::backend::Backend;
use crate::backend::adapters::AdapterKind;
use crate::backend::options::GpuOptions;
use crate::error::{Result, VladError};
use crate::model::codebook::Codebook;
use crate::model::element::Element;
pub use distributed::{Lloyd, LloydStep, LloydWorker};
use engine::{ClusterSums, Engine, Selection};
use source::Source;

/// How the centroids are seeded.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Init {
    /// Greedy k-means++ as in scikit-learn: each new centroid is the best of
    /// `2 + ⌊ln K⌋` candidates drawn with probability `∝ D(x)²`. It reads
    /// the training set once per centroid (`K − 1` passes) and holds an f32
    /// copy of it while seeding.
    #[default]
    KMeansPlusPlus,
    /// `K` training points with distinct values, drawn uniformly (faiss'
    /// default).
    Random,
    /// The centroids given to [`KMeans::initial_centroids`] (say, a
    /// codebook trained elsewhere: one iteration from it on new data is
    /// "All about VLAD"'s vocabulary adaptation).
    Given,
}

impl Init {
    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Init::KMeansPlusPlus => "kmeans++",
            Init::Random => "random",
            Init::Given => "given",
        }
    }
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Init {
    type Err = VladError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "kmeans++" | "k-means++" | "kmeanspp" => Ok(Init::KMeansPlusPlus),
            "random" => Ok(Init::Random),
            other => Err(VladError::InvalidArgument(format!(
                "unknown k-means init {other:?}: expected kmeans++ or random"
            ))),
        }
    }
}

/// A trained codebook and how training went.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct KMeansResult {
    /// The `K × F` centroids.
    pub codebook: Codebook,
    /// `Σ ‖x − c‖²` of the training points to their nearest final centroid
    /// (f64, exact differences).
    pub inertia: f64,
    /// Lloyd iterations run.
    pub iterations: usize,
    /// Inertia of each iteration's assignment, to the centroids that
    /// iteration started from (f32 distances summed in f64); never
    /// increases.
    pub inertia_history: Vec<f64>,
    /// The backend that ran (never `Auto`).
    pub backend: Backend,
    /// The GPU adapter's name when the GPU ran.
    pub adapter: Option<String>,
    /// The GPU adapter's kind when the GPU ran (`Software`: not GPU speed).
    pub adapter_kind: Option<AdapterKind>,
    /// Why `Auto` did not use the GPU, when it did not.
    pub fallback_reason: Option<String>,
    /// Wall seconds of the whole fit (checks, sampling, init, iterations),
    /// GPU setup excluded.
    pub seconds: f64,
    /// GPU setup (adapter, device, shader compilation), 0 on the CPU.
    pub setup_seconds: f64,
}

/// What [`KMeans::fit`] tells the callback given to
/// [`KMeans::on_progress`] while it trains.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum KMeansProgress {
    /// Training starts, on `backend`.
    Started {
        /// `K`.
        clusters: usize,
        /// Rows in the input.
        points: usize,
        /// Rows training uses (all, or the seeded subsample).
        training_points: usize,
        /// `F`.
        dim: usize,
        /// How the centroids are seeded.
        init: Init,
        /// The backend that runs (never `Auto`).
        backend: Backend,
        /// Why `Auto` did not use the GPU, when it did not.
        fallback_reason: Option<String>,
    },
    /// The centroids are seeded.
    Seeded {
        /// Seconds the seeding took.
        seconds: f64,
    },
    /// Lloyd iteration `iteration` (1-based) of at most `max_iterations`
    /// ended with this inertia.
    Iteration {
        /// 1-based.
        iteration: usize,
        /// The most iterations that will run.
        max_iterations: usize,
        /// The inertia of this iteration's assignment.
        inertia: f64,
    },
    /// Training is over.
    Finished {
        /// Iterations run.
        iterations: usize,
        /// Final inertia.
        inertia: f64,
        /// Wall seconds of the fit.
        seconds: f64,
    },
}

/// One plain line per event, as `vlad kmeans` and Python's `verbose=True`
/// print them after `kmeans: ` (a fallback reason is not part of it).
impl fmt::Display for KMeansProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `12.345 ms` under a second, `1.234 s` from there.
        let seconds = |s: f64| {
            if s < 1.0 {
                format!("{:.3} ms", s * 1e3)
            } else {
                format!("{s:.3} s")
            }
        };
        match self {
            KMeansProgress::Started {
                clusters,
                points,
                training_points,
                dim,
                init,
                backend,
                ..
            } => write!(
                f,
                "{clusters} centroids from {training_points} of {points} points \
                 ({dim} dims), init {init}, backend {backend}"
            ),
            KMeansProgress::Seeded { seconds: s } => write!(f, "init took {}", seconds(*s)),
            KMeansProgress::Iteration {
                iteration,
                max_iterations,
                inertia,
            } => write!(
                f,
                "iteration {iteration}/{max_iterations}: inertia {inertia:.6e}"
            ),
            KMeansProgress::Finished {
                iterations,
                inertia,
                seconds: s,
            } => write!(
                f,
                "{iterations} iterations, inertia {inertia:.6e}, {}",
                seconds(*s)
            ),
        }
    }
}

/// The callback given to [`KMeans::on_progress`].
#[derive(Clone)]
struct ProgressFn(Arc<dyn Fn(&KMeansProgress) + Send + Sync>);

impl fmt::Debug for ProgressFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProgressFn")
    }
}

/// k-means settings; [`KMeans::fit`] trains.
///
/// Defaults: 25 iterations, seed 1234, k-means++, at most 256 training points
/// per centroid, relative inertia tolerance `1e-4`, backend `auto`, no
/// progress callback (the library never prints).
///
/// **Empty clusters.** After an update, each cluster that received no point
/// (in index order) is re-seeded by splitting the most populous cluster `j`
/// whose points are not all equal (ties → lowest index): the empty centroid
/// moves to `c_j + δ`, `δ_f = ±σ_j/32` with seeded random signs, `σ_j²` the
/// mean squared deviation per coordinate of cluster `j`. Only the empty
/// centroid moves, so the inertia still never increases; the next
/// assignment hands it about half of cluster `j`. Cluster `j` then counts as
/// two halves, so several empty clusters split several large ones.
#[derive(Clone, Debug)]
pub struct KMeans {
    k: usize,
    iterations: usize,
    seed: u64,
    init: Init,
    max_points_per_centroid: Option<usize>,
    tolerance: f64,
    backend: Backend,
    gpu_options: GpuOptions,
    progress: Option<ProgressFn>,
    /// The `K × F` starting centroids of [`Init::Given`].
    given: Option<Arc<Array2<f32>>>,
}

impl KMeans {
    /// `k` clusters, default settings.
    pub fn new(k: usize) -> Self {
        KMeans {
            k,
            iterations: 25,
            seed: 1234,
            init: Init::KMeansPlusPlus,
            max_points_per_centroid: Some(256),
            tolerance: 1e-4,
            backend: Backend::Auto,
            gpu_options: GpuOptions::default(),
            progress: None,
            given: None,
        }
    }

    /// Most Lloyd iterations (0: the seeded centroids are the result).
    pub fn iterations(mut self, iterations: usize) -> Self {
        self.iterations = iterations;
        self
    }

    /// Seed of every random draw (subsample, init, empty-cluster splits).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How the centroids are seeded ([`Init::Given`] needs
    /// [`KMeans::initial_centroids`], which sets it).
    pub fn init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }

    /// Start from these `(K, F)` centroids instead of seeding ([`Init::Given`]):
    /// `K` must be this k-means' cluster count and `F` the data's width,
    /// every value finite (checked by [`KMeans::fit`], SPEC §6). No random
    /// draw seeds them; the seed still draws the subsample and the
    /// empty-cluster splits.
    pub fn initial_centroids(mut self, centroids: Array2<f32>) -> Self {
        self.init = Init::Given;
        self.given = Some(Arc::new(centroids));
        self
    }

    /// The given starting centroids, checked against `k` and `dim`.
    fn given_centroids(&self, dim: usize) -> Result<Vec<f32>> {
        let Some(given) = &self.given else {
            return Err(VladError::InvalidArgument(
                "k-means init \"given\" needs the starting centroids \
                 (KMeans::initial_centroids)"
                    .to_string(),
            ));
        };
        let (k, f) = given.dim();
        if k != self.k || f != dim {
            return Err(VladError::DimensionMismatch(format!(
                "the initial centroids are ({k}, {f}); k-means of {} clusters on \
                 {dim}-wide descriptors needs ({}, {dim})",
                self.k, self.k
            )));
        }
        if let Some((index, &value)) = given.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(VladError::NonFinite {
                what: "initial centroids",
                row: index / f.max(1),
                image: None,
                col: index % f.max(1),
                value: f64::from(value),
            });
        }
        Ok(given.iter().copied().collect())
    }

    /// Train on at most `k × m` points drawn with the seed (`None`: all).
    pub fn max_points_per_centroid(mut self, m: Option<usize>) -> Self {
        self.max_points_per_centroid = m;
        self
    }

    /// Stop once an iteration changes the inertia by at most this fraction
    /// of the previous one (`0`: run every iteration unless the labels stop
    /// changing).
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Where the iterations run: `Cpu`; `Gpu` (the GPU pipeline's assign →
    /// sort → segmented sum; [`VladError::BackendUnavailable`] without an
    /// adapter; runs on a software adapter too); or `Auto` (the GPU on a
    /// hardware adapter, else the CPU, with the reason in
    /// [`KMeansResult::fallback_reason`]). `Reference` is an encoding oracle
    /// only and is refused.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// How the GPU backend is set up (adapter, graphics APIs, binding cap):
    /// the command line and the Python package read them from the
    /// environment.
    pub fn gpu_options(mut self, options: GpuOptions) -> Self {
        self.gpu_options = options;
        self
    }

    /// Call `callback` as training goes (start, seeding, every iteration,
    /// end): the command line draws its progress bar from it.
    pub fn on_progress(
        mut self,
        callback: impl Fn(&KMeansProgress) + Send + Sync + 'static,
    ) -> Self {
        self.progress = Some(ProgressFn(Arc::new(callback)));
        self
    }

    fn report(&self, event: KMeansProgress) {
        if let Some(ProgressFn(callback)) = &self.progress {
            callback(&event);
        }
    }

    /// Sorted indices of the rows that training on `points` rows would use:
    /// all of them, or the seeded subsample.
    pub fn training_indices(&self, points: usize) -> Vec<usize> {
        training_set::sample_indices(points, self.k, self.max_points_per_centroid, self.seed)
            .unwrap_or_else(|| (0..points).collect())
    }

    /// Train a codebook on `(N, F)` descriptors (f32, f64 or u8).
    pub fn fit<E: Element>(&self, descriptors: ArrayView2<'_, E>) -> Result<KMeansResult> {
        let start = Instant::now();
        self.check_settings()?;
        training_set::check_input(&descriptors, self.k)?;
        let (n, dim) = descriptors.dim();
        let indices =
            training_set::sample_indices(n, self.k, self.max_points_per_centroid, self.seed);
        let set = training_set::gather(&descriptors, indices.as_deref());
        self.train(Source::memory(&set.rows, dim), n, start)
    }

    /// Train on the checked rows of `source` (`points`: rows in the input,
    /// for the report), every full-data pass window by window.
    fn train<E: Element>(
        &self,
        source: Source<'_, E>,
        points: usize,
        start: Instant,
    ) -> Result<KMeansResult> {
        let k = self.k;
        let dim = source.dim();
        training_set::check_distinct(&source, k)?;

        let Selection {
            mut engine,
            fallback_reason,
            setup_seconds,
        } = Engine::select(self.backend, &self.gpu_options)?;
        let source = if engine.streams() {
            source
        } else {
            source.as_one_window()
        };
        self.report(KMeansProgress::Started {
            clusters: k,
            points,
            training_points: source.len(),
            dim,
            init: self.init,
            backend: engine.backend(),
            fallback_reason: fallback_reason.clone(),
        });

        let init_start = Instant::now();
        let mut centroids = match self.init {
            Init::KMeansPlusPlus => init::kmeans_plus_plus(&source, k, self.seed)?,
            Init::Random => init::random_points(&source, k, self.seed)?,
            Init::Given => self.given_centroids(dim)?,
        };
        self.report(KMeansProgress::Seeded {
            seconds: init_start.elapsed().as_secs_f64(),
        });

        let mut split_rng = ChaCha8Rng::seed_from_u64(self.seed);
        split_rng.set_stream(reseed::RESEED_STREAM);
        let mut inertia_history = Vec::with_capacity(self.iterations);
        // Labels of the last iteration (4 bytes a point), and whether its
        // update was a plain mean (no re-seeded centroid): equal labels now
        // mean a fixed point.
        let mut labels: Vec<u32> = Vec::new();
        let mut previous_is_plain = false;
        for iteration in 0..self.iterations {
            let step = lloyd_pass(
                &mut engine,
                &codebook_from(&centroids, k, dim)?,
                &source,
                &mut labels,
            )?;
            let inertia = step.inertia;
            inertia_history.push(inertia);
            self.report(KMeansProgress::Iteration {
                iteration: iteration + 1,
                max_iterations: self.iterations,
                inertia,
            });

            let empty =
                update::move_to_means(&mut centroids, &step.sums.sums, &step.sums.counts, dim);
            let moved = reseed::split_largest(
                &mut centroids,
                dim,
                &empty,
                &step.sums.counts,
                &step.errors,
                &mut split_rng,
            );
            let fixed_point = previous_is_plain && !step.changed;
            let small_change = match inertia_history.len() {
                len if len >= 2 && self.tolerance > 0.0 => {
                    let before = inertia_history[len - 2];
                    (before - inertia).abs() <= self.tolerance * before
                }
                _ => false,
            };
            if fixed_point || small_change {
                break;
            }
            previous_is_plain = moved == 0;
        }
        drop(labels);

        let codebook = codebook_from(&centroids, k, dim)?;
        let inertia = exact_inertia(&mut engine, &codebook, &source)?;
        let seconds = (start.elapsed().as_secs_f64() - setup_seconds).max(0.0);
        self.report(KMeansProgress::Finished {
            iterations: inertia_history.len(),
            inertia,
            seconds,
        });
        Ok(KMeansResult {
            codebook,
            inertia,
            iterations: inertia_history.len(),
            inertia_history,
            backend: engine.backend(),
            adapter: engine.adapter(),
            adapter_kind: engine.adapter_kind(),
            fallback_reason,
            seconds,
            setup_seconds,
        })
    }

    fn check_settings(&self) -> Result<()> {
        if self.init == Init::Given && self.given.is_none() {
            return Err(VladError::InvalidArgument(
                "k-means init \"given\" needs the starting centroids \
                 (KMeans::initial_centroids)"
                    .to_string(),
            ));
        }
        if self.max_points_per_centroid == Some(0) {
            return Err(VladError::InvalidArgument(
                "max_points_per_centroid must be at least 1 (or None for all points)".to_string(),
            ));
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err(VladError::InvalidArgument(format!(
                "k-means tolerance must be a finite number ≥ 0, got {}",
                self.tolerance
            )));
        }
        Ok(())
    }
}

/// Train `k` centroids on `(N, F)` descriptors with the default settings.
pub fn train<E: Element>(descriptors: ArrayView2<'_, E>, k: usize) -> Result<Codebook> {
    Ok(KMeans::new(k).fit(descriptors)?.codebook)
}

fn codebook_from(centroids: &[f32], k: usize, dim: usize) -> Result<Codebook> {
    let array = Array2::from_shape_vec((k, dim), centroids.to_vec())
        .map_err(|e| VladError::InvalidArgument(format!("centroid shape: {e}")))?;
    Codebook::from_owned(array)
}

/// What one Lloyd iteration's assignment produced.
struct LloydPass {
    /// Per-cluster sums of the rows and counts.
    sums: ClusterSums,
    /// `Σ d` of the f32 distances, in row order.
    inertia: f64,
    /// Per-cluster `Σ d`, in row order (for re-seeding).
    errors: Vec<f64>,
    /// Whether any label differs from `labels` on entry.
    changed: bool,
}

/// One assignment of every row to `codebook`, window by window: the sums,
/// inertia and errors carried from window to window in row order, and
/// `labels` (every row's, from the last pass) updated in place.
fn lloyd_pass<E: Element>(
    engine: &mut Engine,
    codebook: &Codebook,
    source: &Source<'_, E>,
    labels: &mut Vec<u32>,
) -> Result<LloydPass> {
    let (k, dim) = (codebook.clusters(), codebook.dim());
    let first = labels.is_empty();
    if first {
        labels.resize(source.len(), 0);
    }
    let mut sums = ClusterSums::new(k, dim);
    // `Sum for f64`'s own start, so the carried sum is the in-memory `.sum()`.
    let mut inertia: f64 = std::iter::empty::<f64>().sum();
    let mut errors = vec![0f64; k];
    let mut changed = first;
    source.for_each_window(|range, rows| {
        let (window_labels, distances) = engine.step(codebook, rows, dim, &mut sums)?;
        inertia = distances.iter().fold(inertia, |a, &d| a + d as f64);
        reseed::add_cluster_errors(&mut errors, &window_labels, &distances);
        let previous = &mut labels[range];
        if previous != window_labels.as_slice() {
            changed = true;
            previous.copy_from_slice(&window_labels);
        }
        Ok(())
    })?;
    Ok(LloydPass {
        sums,
        inertia,
        errors,
        changed,
    })
}

/// Rows per block of the inertia sum; fixed so the sum never depends on
/// the thread count (and divides the windows of `source.rs`).
const INERTIA_BLOCK: usize = 1024;

/// `Σ ‖x − c_label(x)‖²` in f64 from exact differences, labels from
/// `codebook`; block sums added in block order, window after window.
fn exact_inertia<E: Element>(
    engine: &mut Engine,
    codebook: &Codebook,
    source: &Source<'_, E>,
) -> Result<f64> {
    let dim = source.dim();
    let centroids = codebook.as_slice();
    let mut total: f64 = std::iter::empty::<f64>().sum();
    source.for_each_window(|_, rows| {
        let labels = engine.assign(codebook, rows, dim)?;
        let blocks: Vec<f64> = rows
            .par_chunks(INERTIA_BLOCK * dim)
            .zip(labels.par_chunks(INERTIA_BLOCK))
            .map(|(rows, labels)| {
                rows.chunks_exact(dim)
                    .zip(labels)
                    .map(|(row, &l)| {
                        let l = l as usize;
                        distance::squared_distance_f64(row, &centroids[l * dim..(l + 1) * dim])
                    })
                    .sum()
            })
            .collect();
        total = blocks.iter().fold(total, |a, &b| a + b);
        Ok(())
    })?;
    Ok(total)
}
