//! Every call into the `vlad` library's API, in one file: when that API
//! changes (builders, getters, report fields), this is the file to adapt.
//! The rest of the binding deals in numpy arrays and Python objects.
//!
//! Everything here runs without the GIL (see [`crate::detach::compute`]),
//! so it must not touch Python.

use ndarray::{Array1, Array2, ArrayD, ArrayView2, ArrayViewD, CowArray, Ix1, Ix2, Ix3, IxDyn};
use vlad::kmeans::{Init, KMeans, KMeansProgress, KMeansResult, Lloyd, LloydStep, LloydWorker};
use vlad::verify::{self, Verification};
use vlad::{
    Assignment, Backend, Batch, Codebook, Element, Encoder, Normalization, RunReport, VladError,
};

use crate::arrays::{IntegerView, shape_string};

/// The library's version, which is this package's `__version__`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a run did, in plain data for the Python `Report`.
#[derive(Clone, Debug)]
pub struct ReportData {
    pub backend: String,
    pub adapter: Option<String>,
    /// `discrete`, `integrated`, `virtual`, `cpu` or `other` (the adapter's
    /// kind, when a GPU ran).
    pub adapter_kind: Option<&'static str>,
    pub seconds: f64,
    pub setup_seconds: f64,
    pub stages: Vec<(String, f64)>,
    pub fallback_reason: Option<String>,
}

impl ReportData {
    fn from_report(report: &RunReport) -> Self {
        ReportData {
            backend: report.backend.name().to_string(),
            adapter: report.adapter.clone(),
            adapter_kind: report.adapter_kind.map(|k| k.name()),
            seconds: report.seconds,
            setup_seconds: report.setup_seconds,
            stages: report
                .stages
                .iter()
                .map(|(name, s)| (name.to_string(), s))
                .collect(),
            fallback_reason: report.fallback_reason.clone(),
        }
    }
}

/// An encoding, its labels and what ran.
pub struct EncodedData {
    pub vlad: Array2<f32>,
    pub labels: Vec<u32>,
    pub report: ReportData,
}

/// Labels and what ran.
pub struct AssignedData {
    pub labels: Vec<u32>,
    pub report: ReportData,
}

/// The assignment as the Python constructor gives it: its name and the
/// soft parameters, each optional.
pub struct AssignmentArgs {
    pub name: String,
    pub weights: Option<ArrayD<f32>>,
    pub bias: Option<ArrayD<f32>>,
    pub alpha: Option<f64>,
}

/// The library's [`Assignment`] for `assignment=`, `weights=`, `bias=`,
/// `alpha=`: hard takes none of them; soft takes weights and bias, or
/// alpha alone.
fn assignment(args: AssignmentArgs) -> Result<Assignment, VladError> {
    let bad = |m: &str| Err(VladError::InvalidArgument(m.to_string()));
    match (args.name.as_str(), args.weights, args.bias, args.alpha) {
        ("hard", None, None, None) => Ok(Assignment::Hard),
        ("hard", ..) => bad(
            "assignment=\"hard\" takes no weights, bias or alpha: pass assignment=\"soft\" \
             for NetVLAD's soft assignment",
        ),
        ("soft", Some(weights), Some(bias), None) => {
            let weights = weights.into_dimensionality::<Ix2>().map_err(bad_shape)?;
            let bias = bias.into_dimensionality::<Ix1>().map_err(bad_shape)?;
            Assignment::soft(weights.view(), bias.view())
        }
        ("soft", None, None, Some(alpha)) => Assignment::soft_alpha(alpha as f32),
        ("soft", None, None, None) => bad(
            "assignment=\"soft\" needs weights (K, F) and bias (K,), or alpha (a temperature > 0)",
        ),
        ("soft", _, _, Some(_)) => bad(
            "assignment=\"soft\" takes either weights and bias, or alpha, not both: \
             alpha stands for weights 2α·c and bias −α‖c‖²",
        ),
        ("soft", Some(_), None, None) => {
            bad("assignment=\"soft\" with weights needs bias too: a (K,) array")
        }
        ("soft", None, Some(_), None) => {
            bad("assignment=\"soft\" with bias needs weights too: a (K, F) array")
        }
        (other, ..) => Err(VladError::InvalidArgument(format!(
            "assignment must be \"hard\" or \"soft\", got {other:?}"
        ))),
    }
}

/// The GPU options the environment sets (SPEC §9), as on the command line:
/// the Python package is an edge where the environment is read; the library
/// takes options.
pub fn gpu_options() -> Result<vlad::GpuOptions, VladError> {
    vlad::GpuOptions::from_vars(|name| std::env::var(name).ok())
}

/// An encoder as the Python constructor describes it, with the
/// environment's GPU options. Soft parameters are checked against
/// the codebook here, so that a wrong shape fails at construction.
pub fn encoder(
    codebook: Codebook,
    norm: &str,
    backend: &str,
    args: AssignmentArgs,
    whitening: Option<std::sync::Arc<vlad::Whitening>>,
) -> Result<Encoder, VladError> {
    let normalization: Normalization = norm.parse()?;
    let backend: Backend = backend.parse()?;
    let assignment = assignment(args)?;
    assignment.soft_params(&codebook)?;
    let mut builder = Encoder::builder(codebook)
        .normalization(normalization)
        .backend(backend)
        .assignment(assignment)
        .gpu_options(gpu_options()?);
    if let Some(w) = whitening {
        builder = builder.whitening(w);
    }
    builder.try_build()
}

/// A whitening learned from `x` (SPEC §14).
pub fn fit_whitening(
    x: ndarray::ArrayView2<'_, f32>,
    n_components: usize,
    power: f64,
    eps: Option<f64>,
    max_points: Option<usize>,
    seed: u64,
    post: &str,
) -> Result<vlad::Whitening, VladError> {
    vlad::WhiteningParams::new(n_components)
        .power(power)
        .eps(eps)
        .max_points(max_points)
        .seed(seed)
        .post(post.parse()?)
        .fit(x)
}

/// The model-file bytes of a whitening alone.
pub fn whitening_bytes(w: &std::sync::Arc<vlad::Whitening>) -> Result<Vec<u8>, VladError> {
    vlad::io::model_file::to_bytes(&vlad::io::model_file::ModelParts {
        codebooks: Vec::new(),
        assignment: vlad::Assignment::Hard,
        normalization: Normalization::none(),
        whitening: Some(w.clone()),
    })
}

/// The whitening of model-file bytes.
pub fn whitening_from_bytes(bytes: &[u8]) -> Result<std::sync::Arc<vlad::Whitening>, VladError> {
    vlad::io::model_file::from_bytes(bytes)?
        .whitening
        .ok_or_else(|| VladError::InvalidArgument("the model bytes hold no whitening".to_string()))
}

/// An encoder's model-file bytes (what pickling and `.save` carry).
pub fn model_bytes(encoder: &Encoder) -> Result<Vec<u8>, VladError> {
    vlad::io::model_file::to_bytes(&encoder.model_parts())
}

/// The encoder of a model (bytes, or a file's parts) on `backend`.
pub fn encoder_from_model(
    parts: vlad::io::model_file::ModelParts,
    backend: &str,
) -> Result<Encoder, VladError> {
    let backend: Backend = backend.parse()?;
    Ok(vlad::EncoderBuilder::from_model(parts)?
        .backend(backend)
        .gpu_options(gpu_options()?)
        .build())
}

/// The width of one encoding: `K·F`, or the whitening's `D′`.
pub fn dims_out(encoder: &Encoder) -> usize {
    encoder.dims_out()
}

/// The normalization's canonical spelling (`ssr,l2`).
pub fn norm_name(encoder: &Encoder) -> String {
    encoder.normalization().to_string()
}

/// The backend asked for (`auto`, `gpu`, `cpu`, `reference`).
pub fn backend_name(encoder: &Encoder) -> &'static str {
    encoder.backend().name()
}

/// The assignment: `hard`, `soft` (weights and bias) or `soft-alpha`.
pub fn assignment_name(encoder: &Encoder) -> &'static str {
    encoder.assignment().name()
}

/// Soft assignment's learned `W (K, F)` and `b (K,)`, when it has them
/// (what a pickled encoder is rebuilt from).
pub fn soft_weights(encoder: &Encoder) -> Option<(Array2<f32>, Array1<f32>)> {
    match encoder.assignment() {
        Assignment::Soft { weights, bias } => Some((weights.clone(), bias.clone())),
        _ => None,
    }
}

/// Soft assignment's temperature α, when it was built from one.
pub fn soft_alpha(encoder: &Encoder) -> Option<f32> {
    match encoder.assignment() {
        Assignment::SoftAlpha(alpha) => Some(*alpha),
        _ => None,
    }
}

/// `(K, F)`.
pub fn codebook_shape(encoder: &Encoder) -> (usize, usize) {
    (encoder.codebook().clusters(), encoder.codebook().dim())
}

/// The codebook's f32 centroids.
pub fn centroids(encoder: &Encoder) -> Array2<f32> {
    encoder.codebook().centroids().to_owned()
}

/// A codebook from f32 centroids (any memory order).
pub fn codebook_f32(centroids: ArrayViewD<'_, f32>) -> Result<Codebook, VladError> {
    Codebook::new(two_d(centroids, "centroids")?)
}

/// A codebook from f64 centroids, rounded to f32 (SPEC §2).
pub fn codebook_f64(centroids: ArrayViewD<'_, f64>) -> Result<Codebook, VladError> {
    Codebook::from_f64(two_d(centroids, "centroids")?)
}

fn two_d<'a, T>(view: ArrayViewD<'a, T>, what: &str) -> Result<ArrayView2<'a, T>, VladError> {
    let shape = shape_string(view.shape());
    view.into_dimensionality::<Ix2>().map_err(|_| {
        VladError::InvalidArgument(format!("{what} must be 2-dimensional, got shape {shape}"))
    })
}

/// CSR offsets from any integer dtype: a negative value is refused with
/// its index, as `vlad::io::read_offsets` does for a file.
pub fn offsets(values: &IntegerView<'_>) -> Result<Vec<usize>, VladError> {
    values.convert(|index, value| {
        usize::try_from(value).map_err(|_| {
            VladError::InvalidOffsets(format!(
                "offsets[{index}] = {value} is {}",
                if value < 0 {
                    "negative"
                } else {
                    "too large for this machine"
                }
            ))
        })
    })
}

/// Labels from any integer dtype, each in `[0, clusters)`.
pub fn labels(values: &IntegerView<'_>, clusters: usize) -> Result<Vec<u32>, VladError> {
    values.convert(|index, label| match u32::try_from(label) {
        Ok(l) if (l as usize) < clusters => Ok(l),
        _ => Err(VladError::LabelOutOfRange {
            index,
            label,
            clusters,
        }),
    })
}

/// The batch `encode` reads: `(T, L, F)` fixed-size images, or `(N, F)`
/// rows split by `offsets` (one image without them), with given labels.
/// A C-contiguous view is borrowed, never copied.
pub fn batch<'a, E: Element>(
    descriptors: ArrayViewD<'a, E>,
    offsets: Option<&'a [usize]>,
    labels: Option<&'a [u32]>,
    clusters: usize,
) -> Result<Batch<'a, E>, VladError> {
    let shape = descriptors.shape().to_vec();
    let batch = match shape.len() {
        3 => {
            if offsets.is_some() {
                return Err(VladError::InvalidArgument(format!(
                    "offsets are for (N, F) descriptors, but these are (T, L, F) = {}: \
                     fixed-size images need no offsets",
                    shape_string(&shape)
                )));
            }
            Batch::fixed(
                descriptors
                    .into_dimensionality::<Ix3>()
                    .map_err(bad_shape)?,
            )?
        }
        2 => {
            let rows = descriptors
                .into_dimensionality::<Ix2>()
                .map_err(bad_shape)?;
            match offsets {
                Some(offsets) => Batch::ragged(rows, offsets)?,
                None => Batch::single(rows)?,
            }
        }
        _ => {
            return Err(VladError::InvalidArgument(format!(
                "descriptors must be (T, L, F) or (N, F), got shape {}",
                shape_string(&shape)
            )));
        }
    };
    match labels {
        Some(labels) => batch.with_labels(labels, clusters),
        None => Ok(batch),
    }
}

fn bad_shape(e: ndarray::ShapeError) -> VladError {
    VladError::InvalidArgument(format!("descriptors: unexpected array shape: {e}"))
}

/// Encode a batch.
pub fn encode<E: Element>(
    encoder: &Encoder,
    batch: &Batch<'_, E>,
) -> Result<EncodedData, VladError> {
    let encoded = encoder.encode_batch(batch)?;
    Ok(EncodedData {
        report: ReportData::from_report(&encoded.report),
        vlad: encoded.vlad,
        labels: encoded.labels,
    })
}

/// Label a batch's descriptors.
pub fn assign<E: Element>(
    encoder: &Encoder,
    batch: &Batch<'_, E>,
) -> Result<AssignedData, VladError> {
    let assigned = encoder.assign_batch(batch)?;
    Ok(AssignedData {
        report: ReportData::from_report(&assigned.report),
        labels: assigned.labels,
    })
}

/// Where the batch's descriptor rows are read from: the first element's
/// address, for the test that a C-contiguous input is read in place.
pub fn rows_address<E: Element>(batch: &Batch<'_, E>) -> usize {
    batch.rows().as_ptr() as usize
}

/// SPEC §4 checked for `output` (computed elsewhere from `output_labels`),
/// or for this encoder's own output when `output` is `None`.
pub struct Checked {
    pub verification: Verification,
    pub descriptors: usize,
}

/// Check an encoding against the f64 reference (SPEC §4): `output`, or
/// this encoder's own encoding of the batch. The labels checked are the
/// batch's given ones, else the encoder's own assignment.
pub fn verify<E: Element>(
    encoder: &Encoder,
    batch: &Batch<'_, E>,
    output: Option<ArrayView2<'_, f32>>,
) -> Result<Checked, VladError> {
    let codebook = encoder.codebook();
    let norm = encoder.normalization();
    let assignment = encoder.assignment();
    let check = |output: ArrayView2<'_, f32>, labels: &[u32]| match encoder.whitening() {
        None => verify::verify(codebook, batch, assignment, norm, output, labels),
        Some(w) => verify::verify_whitened(codebook, batch, assignment, norm, w, output, labels),
    };
    let verification = match output {
        None => {
            let encoded = encoder.encode_batch(batch)?;
            check(encoded.vlad.view(), &encoded.labels)
        }
        Some(output) => {
            let expected = (batch.images(), encoder.dims_out());
            if output.dim() != expected {
                return Err(VladError::DimensionMismatch(format!(
                    "the encoding to verify is {}, expected (T, dims_out) = {}",
                    shape_string(output.shape()),
                    shape_string(&[expected.0, expected.1])
                )));
            }
            let labels = match batch.labels() {
                Some(labels) => labels.to_vec(),
                None => encoder.assign_batch(batch)?.labels,
            };
            check(output, &labels)
        }
    };
    Ok(Checked {
        verification,
        descriptors: batch.len(),
    })
}

/// The command line's message for a failed verification (less the file).
pub fn verification_message(checked: &Checked) -> String {
    let v = &checked.verification;
    VladError::VerificationFailed(format!(
        "{} of {} labels beyond a near-tie, {} values outside tolerance (max abs error {:.3e})",
        v.bad_labels, checked.descriptors, v.violations, v.max_abs_error
    ))
    .to_string()
}

/// One k-means progress event, in plain data for a Python callback:
/// `stage` is `started`, `seeded`, `iteration` or `finished`; `text` the
/// line `vlad kmeans` prints for it.
pub struct ProgressData {
    pub stage: &'static str,
    pub iteration: usize,
    pub max_iterations: usize,
    pub text: String,
}

/// Where progress events go (a Python callable, called with the GIL).
pub type ProgressSink = std::sync::Arc<dyn Fn(ProgressData) + Send + Sync>;

/// `vlad.KMeans`' parameters.
pub struct KMeansParams {
    pub n_clusters: usize,
    pub n_iter: usize,
    pub seed: u64,
    pub init: String,
    /// `None` or 0: every point.
    pub max_points_per_centroid: Option<usize>,
    pub tol: f64,
    pub backend: String,
    pub verbose: bool,
    /// Every progress event, when given (`verbose` then adds nothing).
    pub progress: Option<ProgressSink>,
    /// `init=array`: the checked `(K, F)` starting centroids (then `init`
    /// is not read).
    pub init_centroids: Option<Array2<f32>>,
}

/// A fit's outcome, in plain data.
pub struct KMeansData {
    pub centroids: Array2<f32>,
    pub inertia: f64,
    pub iterations: usize,
    pub inertia_history: Vec<f64>,
    pub backend: String,
    pub adapter: Option<String>,
    pub adapter_kind: Option<&'static str>,
    pub fallback_reason: Option<String>,
    pub seconds: f64,
    pub setup_seconds: f64,
    pub training_points: usize,
}

/// Train a codebook on `(N, F)` rows or `(T, L, F)` images (all `T·L` rows,
/// image-major), as `vlad kmeans` does with the same options.
pub fn kmeans<E: Element>(
    params: &KMeansParams,
    descriptors: ArrayViewD<'_, E>,
) -> Result<KMeansData, VladError> {
    if params.n_clusters == 0 {
        return Err(VladError::InvalidArgument(
            "n_clusters = 0: k-means needs at least one cluster".to_string(),
        ));
    }
    if !(params.tol.is_finite() && params.tol >= 0.0) {
        return Err(VladError::InvalidArgument(format!(
            "tol = {}: expected a finite number ≥ 0",
            params.tol
        )));
    }
    let backend: Backend = params.backend.parse()?;
    if backend == Backend::Reference {
        return Err(VladError::InvalidArgument(
            "backend=\"reference\": k-means has no reference backend (the f64 reference \
             checks encodings); use auto, gpu or cpu"
                .to_string(),
        ));
    }
    let init: Init = match &params.init_centroids {
        Some(_) => Init::Given,
        None => params.init.parse()?,
    };
    let shape = descriptors.shape().to_vec();
    let (points, dim, per_image) = match shape[..] {
        [n, f] => (n, f, None),
        [t, l, f] => (t * l, f, Some(l)),
        _ => {
            return Err(VladError::InvalidArgument(format!(
                "descriptors must be (T, L, F) or (N, F), got shape {}",
                shape_string(&shape)
            )));
        }
    };
    // In place for C order; a copy only for another memory order.
    let rows: CowArray<'_, E, IxDyn> = descriptors
        .to_shape(IxDyn(&[points, dim]))
        .map_err(bad_shape)?;
    let rows = rows.into_dimensionality::<Ix2>().map_err(bad_shape)?;
    let mut kmeans = KMeans::new(params.n_clusters)
        .iterations(params.n_iter)
        .seed(params.seed)
        .init(init)
        .max_points_per_centroid(params.max_points_per_centroid.filter(|&m| m > 0))
        .tolerance(params.tol)
        .backend(backend)
        .gpu_options(gpu_options()?);
    if let Some(centroids) = &params.init_centroids {
        // scikit-learn's rule: an init array must have n_clusters rows.
        if centroids.nrows() != params.n_clusters {
            return Err(VladError::InvalidArgument(format!(
                "init: the initial centroids have shape {}, which does not match \
                 n_clusters = {}",
                shape_string(centroids.shape()),
                params.n_clusters
            )));
        }
        kmeans = kmeans.initial_centroids(centroids.clone());
    }
    if let Some(sink) = params.progress.clone() {
        kmeans = kmeans.on_progress(move |event| sink(progress_data(event)));
    } else if params.verbose {
        kmeans = kmeans.on_progress(progress_line);
    }
    let result: KMeansResult = kmeans
        .fit(rows.view())
        .map_err(|e| e.with_image(per_image))?;
    Ok(KMeansData {
        training_points: kmeans.training_indices(points).len(),
        centroids: result.codebook.into_centroids(),
        inertia: result.inertia,
        iterations: result.iterations,
        inertia_history: result.inertia_history,
        backend: result.backend.name().to_string(),
        adapter: result.adapter,
        adapter_kind: result.adapter_kind.map(|k| k.name()),
        fallback_reason: result.fallback_reason,
        seconds: result.seconds,
        setup_seconds: result.setup_seconds,
    })
}

fn progress_data(event: &KMeansProgress) -> ProgressData {
    let (stage, iteration, max_iterations) = match event {
        KMeansProgress::Started { .. } => ("started", 0, 0),
        KMeansProgress::Seeded { .. } => ("seeded", 0, 0),
        KMeansProgress::Iteration {
            iteration,
            max_iterations,
            ..
        } => ("iteration", *iteration, *max_iterations),
        KMeansProgress::Finished { iterations, .. } => ("finished", *iterations, 0),
        _ => ("other", 0, 0), // KMeansProgress is non_exhaustive
    };
    let mut text = event.to_string();
    if let KMeansProgress::Started {
        fallback_reason: Some(reason),
        ..
    } = event
    {
        text = format!("{text} ({reason})");
    }
    ProgressData {
        stage,
        iteration,
        max_iterations,
        text,
    }
}

/// `verbose=True`: one line on stderr per event, as `vlad kmeans` prints
/// them when stderr is not a terminal (the event's own text).
fn progress_line(event: &KMeansProgress) {
    if let KMeansProgress::Started {
        fallback_reason: Some(reason),
        ..
    } = event
    {
        eprintln!("vlad: {reason}");
    }
    eprintln!("kmeans: {event}");
}

/// The settings of a distributed fit (`vlad.ray.kmeans`): those of
/// `vlad.KMeans` that the driver applies; the sample is drawn by the caller.
pub struct DistributedParams {
    pub n_clusters: usize,
    pub n_iter: usize,
    pub seed: u64,
    pub init: String,
    pub tol: f64,
}

fn distributed_settings(params: &DistributedParams) -> Result<KMeans, VladError> {
    if params.n_clusters == 0 {
        return Err(VladError::InvalidArgument(
            "n_clusters = 0: k-means needs at least one cluster".to_string(),
        ));
    }
    let init: Init = params.init.parse()?;
    Ok(KMeans::new(params.n_clusters)
        .iterations(params.n_iter)
        .seed(params.seed)
        .init(init)
        .max_points_per_centroid(None)
        .tolerance(params.tol))
}

/// The seeded centroids of a fit on `sample` (all of its `(N, F)` rows),
/// as `vlad.KMeans` seeds them.
pub fn seed_centroids<E: Element>(
    params: &DistributedParams,
    sample: ArrayViewD<'_, E>,
) -> Result<Array2<f32>, VladError> {
    let sample = two_d(sample, "the k-means sample")?;
    Ok(distributed_settings(params)?
        .seed_centroids(sample)?
        .into_centroids())
}

/// The driver's state of a distributed fit, from the seeded centroids.
pub fn lloyd(params: &DistributedParams, seeded: Codebook) -> Result<Lloyd, VladError> {
    Ok(distributed_settings(params)?.lloyd(seeded))
}

/// A merged iteration, as the driver reduced it.
pub struct StepData {
    pub sums: Vec<f64>,
    pub counts: Vec<u64>,
    pub errors: Vec<f64>,
    pub inertia: f64,
    pub exact_inertia: f64,
}

/// Move the centroids by one merged step; whether to go on.
pub fn lloyd_update(lloyd: &mut Lloyd, step: StepData) -> Result<bool, VladError> {
    let merged = LloydStep::new(
        step.sums,
        step.counts,
        step.errors,
        step.inertia,
        step.exact_inertia,
    )?;
    lloyd.update(&merged)
}

/// The current centroids of a distributed fit.
pub fn lloyd_centroids(lloyd: &Lloyd) -> Array2<f32> {
    lloyd.centroids().centroids().to_owned()
}

/// Iterations run, and their inertia.
pub fn lloyd_history(lloyd: &Lloyd) -> Vec<f64> {
    lloyd.inertia_history().to_vec()
}

/// A worker computing Lloyd steps on `backend` (`auto`, `cpu`, `gpu`).
pub fn lloyd_worker(backend: &str) -> Result<LloydWorker, VladError> {
    LloydWorker::new(backend.parse()?, &gpu_options()?)
}

/// The backend a worker runs on.
pub fn lloyd_worker_backend(worker: &LloydWorker) -> &'static str {
    worker.backend().name()
}

/// One block's Lloyd step: `(n, F)` rows against `centroids`.
pub fn lloyd_step<E: Element>(
    worker: &LloydWorker,
    rows: ArrayViewD<'_, E>,
    centroids: &Codebook,
) -> Result<StepData, VladError> {
    let rows = two_d(rows, "the rows of a Lloyd step")?;
    let step: LloydStep = worker.step(rows, centroids)?;
    Ok(StepData {
        sums: step.sums,
        counts: step.counts,
        errors: step.errors,
        inertia: step.inertia,
        exact_inertia: step.exact_inertia,
    })
}
