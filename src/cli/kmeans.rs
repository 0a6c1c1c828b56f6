//! `vlad kmeans`: descriptors → a `(K, F)` float32 codebook trained by
//! k-means (SPEC §8). The training is `vlad::kmeans`; this file reads,
//! checks options, writes and reports.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde_json::{Map, Value, json};
use vlad::io::OutputFile;
use vlad::kmeans::{Init, KMeans, KMeansResult};
use vlad::{Backend, VladError};

use super::failure::{Failure, in_file};
use super::summary::{self, format_seconds};

/// `--backend` for k-means: there is no reference k-means, so `reference`
/// is parsed only to be refused with a message saying so.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum KMeansBackendArg {
    /// The GPU on a hardware adapter, else the CPU (saying why).
    Auto,
    /// The GPU engine; exit status 3 when it is unavailable.
    Gpu,
    /// The multi-threaded CPU engine.
    Cpu,
    /// Refused: the f64 reference is the encoder's oracle, not a trainer.
    #[value(hide = true, alias = "ref")]
    Reference,
}

/// `--init`: how the centroids are seeded, or the `.npy` file of the
/// `(K, F)` centroids to start from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitArg {
    /// A seeding rule: k-means++ or random.
    Rule(Init),
    /// Start from these centroids (float32 or float64, `(K, F)`).
    Given(PathBuf),
}

/// `kmeans++` (or `k-means++`), `random`, or else a path to a `.npy` file.
fn parse_init(text: &str) -> Result<InitArg, String> {
    match text.to_ascii_lowercase().as_str() {
        "kmeans++" | "k-means++" => Ok(InitArg::Rule(Init::KMeansPlusPlus)),
        "random" => Ok(InitArg::Rule(Init::Random)),
        _ if text.to_ascii_lowercase().ends_with(".npy") => Ok(InitArg::Given(PathBuf::from(text))),
        _ => Err(format!(
            "expected kmeans++, random or the path of a (K, F) centroids .npy file, got {text:?}"
        )),
    }
}

impl InitArg {
    fn init(&self) -> Init {
        match self {
            InitArg::Rule(init) => *init,
            InitArg::Given(_) => Init::Given,
        }
    }
}

/// `vlad kmeans` options (SPEC §8). Defaults are the library's.
#[derive(Debug, Args)]
pub struct KMeansArgs {
    /// Descriptors to train on: (N, F) rows or (T, L, F) images (all T·L
    /// rows are used); float32, float64 or uint8.
    #[arg(long, value_name = "D.npy")]
    pub descriptors: PathBuf,
    /// Number of centroids K (at least 1, at most the number of distinct
    /// training points).
    #[arg(short = 'k', long = "clusters", value_name = "K")]
    pub clusters: usize,
    /// Where to write the (K, F) float32 centroids (written atomically:
    /// nothing is written when the run fails).
    #[arg(long, value_name = "C.npy")]
    pub out: PathBuf,
    /// Most Lloyd iterations; training stops earlier at a fixed point or
    /// when the inertia changes by less than --tolerance (0: the seeded
    /// centroids are the result).
    #[arg(long, default_value_t = 25)]
    pub iters: usize,
    /// Seed of every random draw (subsample, init, empty-cluster splits):
    /// the same seed and input give a byte-identical output.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// How the centroids are seeded: kmeans++ (greedy, scikit-learn's
    /// default), random (K distinct training points, faiss' default), or
    /// C.npy: start from these (K, F) centroids (float32 or float64; K must
    /// be -k, F the descriptors' width). With --iters 1 and a codebook
    /// trained elsewhere, this is vocabulary adaptation.
    #[arg(long, value_name = "kmeans++|random|C.npy", default_value = "kmeans++", value_parser = parse_init)]
    pub init: InitArg,
    /// Train on at most K × this many points, drawn with the seed; 0 trains
    /// on every point.
    #[arg(long, value_name = "M", default_value_t = 256)]
    pub max_points_per_centroid: usize,
    /// Stop once an iteration changes the inertia by at most this fraction
    /// of the previous one (0: only at a fixed point or after --iters).
    #[arg(long, default_value_t = 1e-4, allow_negative_numbers = true)]
    pub tolerance: f64,
    /// Where the iterations run.
    #[arg(long, value_enum, default_value_t = KMeansBackendArg::Auto)]
    pub backend: KMeansBackendArg,
    /// Print one JSON object describing the run on stdout.
    #[arg(long)]
    pub json: bool,
    /// Bound on the memory of the streamed passes (the NaN check, the
    /// gathering of the training sample, and with
    /// --max-points-per-centroid 0 every pass of the training over all
    /// points, window by window); SIZE in bytes, KiB, MiB or GiB.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = super::streamed::parse_memory_limit)]
    pub memory_limit: u64,
}

/// Run `vlad kmeans`.
pub fn run(args: &KMeansArgs) -> Result<(), Failure> {
    let backend = match args.backend {
        KMeansBackendArg::Auto => Backend::Auto,
        KMeansBackendArg::Gpu => Backend::Gpu,
        KMeansBackendArg::Cpu => Backend::Cpu,
        KMeansBackendArg::Reference => {
            return Err(VladError::InvalidArgument(
                "--backend reference: k-means has no reference backend (the f64 reference \
                 checks encodings); use auto, gpu or cpu"
                    .to_string(),
            )
            .into());
        }
    };
    check_options(args)?;
    let given = match &args.init {
        InitArg::Given(path) => Some(path.as_path()),
        InitArg::Rule(_) => None,
    };
    super::same_file::refuse_input_as_output(
        &args.out,
        &[
            ("--descriptors", Some(args.descriptors.as_path())),
            ("--init", given),
        ],
    )?;
    let initial = given
        .map(|path| vlad::io::read_centroids(path).map_err(in_file(path)))
        .transpose()?;
    // Reserve the output first: an unwritable destination fails before any work.
    let out = OutputFile::create(&args.out)?;
    let input = vlad::io::mapped::MappedNpy::open(&args.descriptors)?;
    let kmeans = KMeans::new(args.clusters)
        .iterations(args.iters)
        .seed(args.seed)
        .init(args.init.init());
    let kmeans = match &initial {
        Some(codebook) => {
            if codebook.clusters() != args.clusters {
                return Err(VladError::DimensionMismatch(format!(
                    "--init {} holds {} centroids but -k is {}",
                    given.map(|p| p.display().to_string()).unwrap_or_default(),
                    codebook.clusters(),
                    args.clusters
                ))
                .into());
            }
            kmeans.initial_centroids(codebook.centroids().to_owned())
        }
        None => kmeans,
    };
    let kmeans = kmeans
        .max_points_per_centroid(match args.max_points_per_centroid {
            0 => None,
            m => Some(m),
        })
        .tolerance(args.tolerance)
        .backend(backend)
        .gpu_options(super::args::gpu_options()?)
        .on_progress({
            let progress = super::progress::Progress::new();
            move |event| progress.show(event)
        });
    let trained = kmeans
        .fit_mapped(&input, args.memory_limit)
        .map_err(|e| match e {
            // Not about the file: the backend cannot run here.
            VladError::BackendUnavailable(_) | VladError::Gpu(_) => Failure::from(e),
            other => {
                in_file(&args.descriptors)(other.with_image(input.fixed_images().map(|(_, l)| l)))
            }
        })?;
    let trained = Trained {
        result: trained.0,
        training_points: trained.1,
        points: input.rows_total(),
        dim: input.dim(),
    };
    out.write_npy(&trained.result.codebook.centroids())?;

    let result = &trained.result;
    eprintln!(
        "vlad: kmeans: K = {}, F = {}, trained on {} of {} points on {}{}: {} iterations, \
         inertia {:.6e}, {} -> {}",
        args.clusters,
        trained.dim,
        trained.training_points,
        trained.points,
        result.backend,
        summary::adapter_note(result.adapter.as_deref(), result.adapter_kind),
        result.iterations,
        result.inertia,
        format_seconds(result.seconds),
        args.out.display()
    );
    if args.json {
        summary::print_json(to_json(args, &trained));
    }
    Ok(())
}

/// A trained codebook and the sizes it was trained on.
struct Trained {
    result: KMeansResult,
    /// Rows in the input (`N`, or `T·L`).
    points: usize,
    /// Rows training used (all, or the seeded subsample).
    training_points: usize,
    dim: usize,
}

/// Options the library would also refuse, refused here before any file is
/// read or created, with the option's name.
fn check_options(args: &KMeansArgs) -> Result<(), Failure> {
    if args.clusters == 0 {
        return Err(VladError::InvalidArgument(
            "-k 0: k-means needs at least one cluster".to_string(),
        )
        .into());
    }
    if !(args.tolerance.is_finite() && args.tolerance >= 0.0) {
        return Err(VladError::InvalidArgument(format!(
            "--tolerance {}: expected a finite number ≥ 0",
            args.tolerance
        ))
        .into());
    }
    Ok(())
}

fn to_json(args: &KMeansArgs, trained: &Trained) -> Map<String, Value> {
    let result = &trained.result;
    let mut map = Map::new();
    map.insert("backend".into(), json!(result.backend.name()));
    map.insert("adapter".into(), json!(result.adapter));
    map.insert(
        "adapter_kind".into(),
        json!(result.adapter_kind.map(|k| k.name())),
    );
    map.insert("fallback_reason".into(), json!(result.fallback_reason));
    map.insert("setup_seconds".into(), json!(result.setup_seconds));
    map.insert("clusters".into(), json!(args.clusters));
    map.insert("dim".into(), json!(trained.dim));
    map.insert("points".into(), json!(trained.points));
    map.insert("training_points".into(), json!(trained.training_points));
    map.insert("init".into(), json!(args.init.init().name()));
    map.insert("seed".into(), json!(args.seed));
    map.insert("max_iterations".into(), json!(args.iters));
    map.insert("iterations".into(), json!(result.iterations));
    map.insert("inertia".into(), json!(result.inertia));
    map.insert("inertia_history".into(), json!(result.inertia_history));
    map.insert("seconds".into(), json!(result.seconds));
    map.insert(
        "peak_rss_bytes".into(),
        json!(super::peak_rss::peak_rss_bytes()),
    );
    map.insert("memory_limit_bytes".into(), json!(args.memory_limit));
    map.insert("output".into(), json!(args.out.display().to_string()));
    map
}
