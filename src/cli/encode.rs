//! `vlad encode`: descriptors + centroids → `(T, K·F)` float32 VLAD vectors.

use std::path::PathBuf;

use clap::Args;
use vlad::Normalization;

use super::args::{self, BackendArg};
use super::failure::Failure;
use std::time::Instant;

use vlad::VladError;
use vlad::io::mapped::MappedNpy;
use vlad::io::{self, OutputFile};
use vlad::stream::{self, StreamOptions, StreamProgress};

use super::failure::{in_file, within};
use super::progress::StreamBar as Bar;
use super::streamed::{add_stream_fields, sizes};
use super::summary;

/// `vlad encode` options (SPEC §8).
#[derive(Debug, Args)]
pub struct EncodeArgs {
    /// Descriptors: (T, L, F) fixed-size images, or (N, F) rows split by
    /// --offsets (one image without them); float32, float64 or uint8.
    #[arg(long, value_name = "D.npy")]
    pub descriptors: PathBuf,
    /// Centroids (K, F), float32 or float64 (or give --model).
    #[arg(long, value_name = "C.npy", required_unless_present = "model")]
    pub centroids: Option<PathBuf>,
    /// A model file (SPEC §15, `vlad model` or Python's `.save`): its
    /// codebook, assignment, normalization and whitening, instead of
    /// --centroids, --norm and the soft options.
    #[arg(long, value_name = "M.npz", conflicts_with_all = ["centroids", "norm", "soft_weights", "soft_alpha"])]
    pub model: Option<PathBuf>,
    /// Whiten every encoding after its normalization with this whitening
    /// (`vlad pca --out`, or a model file holding one): writes (T, D′).
    #[arg(long, value_name = "W.npz")]
    pub whitening: Option<PathBuf>,
    /// Where to write the (T, K·F) float32 encodings (written atomically:
    /// nothing is written when the run fails).
    #[arg(long, value_name = "V.npy")]
    pub out: PathBuf,
    /// CSR offsets (T+1,) for (N, F) descriptors: image t is rows
    /// o[t]..o[t+1]; int32, int64, uint32 or uint64.
    #[arg(long, value_name = "O.npy")]
    pub offsets: Option<PathBuf>,
    /// Labels (N,) in [0, K) to use instead of nearest-centroid assignment.
    #[arg(long, value_name = "A.npy")]
    pub labels: Option<PathBuf>,
    /// Normalization steps, applied in order: rn (residual normalization,
    /// first only), mass, ssr, power=α, intra, l2, or none.
    /// [default: ssr,l2]
    #[arg(long, value_name = "STEPS", value_parser = args::parse_norm)]
    pub norm: Option<Normalization>,
    /// Which backend computes.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// Also run the f64 reference from the same labels and check SPEC §4
    /// (exit status 4, and no output written, when it does not hold).
    #[arg(long)]
    pub verify: bool,
    /// Print one JSON object describing the run on stdout.
    #[arg(long)]
    pub json: bool,
    /// Soft (NetVLAD) assignment (SPEC §10).
    #[command(flatten)]
    pub soft: super::soft::SoftArgs,
    /// Bound on the memory the run uses, whatever the input size: the
    /// descriptors are memory-mapped and streamed in batches (SIZE in
    /// bytes, KiB, MiB or GiB).
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = super::streamed::parse_memory_limit)]
    pub memory_limit: u64,
}

/// Run `vlad encode`.
pub fn run(args: &EncodeArgs) -> Result<(), Failure> {
    super::same_file::refuse_input_as_output(
        &args.out,
        &[
            ("--descriptors", Some(args.descriptors.as_path())),
            ("--centroids", args.centroids.as_deref()),
            ("--model", args.model.as_deref()),
            ("--whitening", args.whitening.as_deref()),
            ("--offsets", args.offsets.as_deref()),
            ("--labels", args.labels.as_deref()),
        ],
    )?;
    // Streamed from the memory-mapped input (SPEC §11): soft assignment,
    // rn and --verify included.
    stream_encode(args)
}

/// Stream `vlad encode`: hard or soft assignment, `rn`, and `--verify`
/// (checked batch by batch against the reference; exit status 4 and
/// nothing written when SPEC §4 does not hold). The caller has refused an
/// `--out` that names an input.
fn stream_encode(args: &EncodeArgs) -> Result<(), Failure> {
    let wall = Instant::now();
    let out = OutputFile::create(&args.out)?;
    let builder = encoder_builder(args)?;
    let codebook = builder.codebook().clone();
    let offsets = args.offsets.as_deref().map(io::read_offsets).transpose()?;
    let labels = match &args.labels {
        Some(path) => Some(io::read_labels(path, codebook.clusters()).map_err(in_file(path))?),
        None => None,
    };
    let input = MappedNpy::open(&args.descriptors)?;
    if let (Some((t, l)), Some(_)) = (input.fixed_images(), &offsets) {
        return Err(in_file(&args.descriptors)(VladError::InvalidArgument(
            format!(
                "--offsets is for (N, F) descriptors, but these are (T, L, F) = [{t}, {l}, {}]: \
             fixed-size images need no offsets",
                input.dim()
            ),
        )));
    }
    if let (Some(labels), Some(path)) = (&labels, &args.labels)
        && labels.len() != input.rows_total()
    {
        return Err(in_file(path)(VladError::DimensionMismatch(format!(
            "{} labels for {} descriptors",
            labels.len(),
            input.rows_total()
        ))));
    }
    let encoder = builder.try_build().map_err(|e| match &args.whitening {
        Some(path) => in_file(path)(e),
        None => e.into(),
    })?;
    let bar = Bar::new("encode");
    let progress = |p: StreamProgress| bar.update(p);
    let options = StreamOptions {
        memory_limit: args.memory_limit,
        progress: Some(&progress),
        verify: args.verify,
        ..StreamOptions::default()
    };
    let streamed = stream::encode_file(
        &encoder,
        &input,
        offsets.as_deref(),
        labels.as_deref(),
        out,
        &options,
    )
    .map_err(|e| locate(e, args, offsets.is_some()))?;
    bar.finish();
    let sizes = sizes(&streamed, &encoder);
    let mut json = summary::run_json(&streamed.report, sizes);
    json.insert(
        "normalization".into(),
        encoder.normalization().to_string().into(),
    );
    json.insert("dims_out".into(), encoder.dims_out().into());
    json.insert("whitened".into(), encoder.whitening().is_some().into());
    json.insert("assignment".into(), encoder.assignment().name().into());
    json.insert("output".into(), args.out.display().to_string().into());
    add_stream_fields(&mut json, &streamed, args.memory_limit, wall);
    if let Some((v, seconds)) = &streamed.verification {
        summary::add_verification(&mut json, v, *seconds);
        eprintln!("{}", summary::human_verification(v));
        if !v.passed() {
            // Nothing was written (the stream was not committed).
            if args.json {
                summary::print_json(json);
            }
            return Err(VladError::VerificationFailed(format!(
                "{} of {} labels beyond a near-tie, {} values outside tolerance \
                 (max abs error {:.3e}); {} not written",
                v.bad_labels,
                sizes.descriptors,
                v.violations,
                v.max_abs_error,
                args.out.display()
            ))
            .into());
        }
    }
    eprintln!(
        "{} -> {}",
        summary::human("encoded", &streamed.report, sizes),
        args.out.display()
    );
    if args.json {
        summary::print_json(json);
    }
    Ok(())
}

/// The encoder the options describe: a model file's, or --centroids with
/// --norm and the soft options; then --whitening, if given.
fn encoder_builder(args: &EncodeArgs) -> Result<vlad::EncoderBuilder, Failure> {
    let gpu = args::gpu_options()?;
    let mut builder = match (&args.model, &args.centroids) {
        (Some(path), _) => {
            let parts = vlad::io::model_file::read(path)?;
            vlad::EncoderBuilder::from_model(parts).map_err(in_file(path))?
        }
        (None, Some(path)) => {
            let codebook = io::read_centroids(path).map_err(in_file(path))?;
            let assignment = args.soft.assignment(&codebook)?;
            let norm = args.norm.clone().unwrap_or_default();
            args::encoder(codebook, args.backend.into(), norm)?.assignment(assignment)
        }
        (None, None) => {
            return Err(VladError::InvalidArgument(
                "give --centroids C.npy or --model M.npz".to_string(),
            )
            .into());
        }
    };
    builder = builder.backend(args.backend.into()).gpu_options(gpu);
    if let Some(path) = &args.whitening {
        let w = vlad::Whitening::load(path).map_err(in_file(path))?;
        builder = builder.whitening(w);
    }
    Ok(builder)
}

/// Name the file an error is about.
fn locate(e: VladError, args: &EncodeArgs, has_offsets: bool) -> Failure {
    match e {
        VladError::DimensionMismatch(_) => within(format!(
            "{} and {}",
            args.descriptors.display(),
            args.centroids
                .as_deref()
                .or(args.model.as_deref())
                .unwrap_or(args.descriptors.as_path())
                .display()
        ))(e),
        VladError::InvalidOffsets(_) if has_offsets => {
            in_file(args.offsets.as_deref().unwrap_or(&args.descriptors))(e)
        }
        VladError::LabelOutOfRange { .. } => {
            in_file(args.labels.as_deref().unwrap_or(&args.descriptors))(e)
        }
        VladError::Io { .. }
        | VladError::BackendUnavailable(_)
        | VladError::Gpu(_)
        | VladError::TooLarge { .. }
        | VladError::NoSpace { .. } => e.into(),
        other => in_file(&args.descriptors)(other),
    }
}
