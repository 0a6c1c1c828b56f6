//! `vlad pca`: learn a whitening (SPEC §14) from encodings, or from
//! descriptors and a codebook (encoded on the way, streamed), and write it
//! as a model file (SPEC §15). Rows are read batch by batch from the
//! memory-mapped input, so memory stays bounded whatever the input size:
//! the `D × D` f64 covariance (or the used rows when fewer than `D`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use serde_json::{Map, Value};
use vlad::io::mapped::MappedNpy;
use vlad::io::{self, OutputFile};
use vlad::stream::{self, StreamOptions};
use vlad::{Normalization, VladError, Whitening, WhiteningParams};

use super::args::{self, BackendArg};
use super::failure::{Failure, in_file};
use super::summary;

/// `vlad pca` options.
#[derive(Debug, Args)]
pub struct PcaArgs {
    /// Encodings (T, D) float32 to learn from (`vlad encode --out`).
    #[arg(
        long,
        value_name = "V.npy",
        required_unless_present = "descriptors",
        conflicts_with = "descriptors"
    )]
    pub vlad: Option<PathBuf>,
    /// Or descriptors, encoded with --centroids (and --offsets, --norm)
    /// first, streamed through a temporary file beside --out.
    #[arg(long, value_name = "D.npy", requires = "centroids")]
    pub descriptors: Option<PathBuf>,
    /// Centroids (K, F) for --descriptors.
    #[arg(long, value_name = "C.npy")]
    pub centroids: Option<PathBuf>,
    /// CSR offsets (T+1,) for (N, F) --descriptors.
    #[arg(long, value_name = "O.npy")]
    pub offsets: Option<PathBuf>,
    /// Normalization of the encodings made from --descriptors.
    #[arg(long, value_name = "STEPS", default_value = "ssr,l2", value_parser = args::parse_norm)]
    pub norm: Normalization,
    /// Which backend encodes --descriptors.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// D′: the number of components kept.
    #[arg(long, value_name = "D′")]
    pub dims: usize,
    /// Eigenvalue power p: −0.5 whitens, 0 is plain PCA.
    #[arg(long, default_value_t = -0.5, allow_negative_numbers = true)]
    pub power: f64,
    /// ε added to every eigenvalue [default: 1e-6 · λ₀].
    #[arg(long)]
    pub eps: Option<f64>,
    /// Learn from at most this many encodings, drawn with --seed
    /// [default: 1000 · D′].
    #[arg(long, value_name = "N")]
    pub max_points: Option<usize>,
    /// Seed of the sample draw.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Normalization of each whitened row: none, l2, or ssr,l2.
    #[arg(long, value_name = "STEPS", default_value = "l2", value_parser = args::parse_norm)]
    pub post: Normalization,
    /// Where to write the whitening (.npz, written atomically).
    #[arg(long, value_name = "W.npz")]
    pub out: PathBuf,
    /// Bound on the memory the encoding pass uses (SIZE in bytes, KiB,
    /// MiB or GiB).
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = super::streamed::parse_memory_limit)]
    pub memory_limit: u64,
    /// Print one JSON object describing the run on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Rows read per batch from the encodings.
const BATCH_ROWS: usize = 1024;

/// Run `vlad pca`.
pub fn run(args: &PcaArgs) -> Result<(), Failure> {
    let wall = Instant::now();
    super::same_file::refuse_input_as_output(
        &args.out,
        &[
            ("--vlad", args.vlad.as_deref()),
            ("--descriptors", args.descriptors.as_deref()),
            ("--centroids", args.centroids.as_deref()),
            ("--offsets", args.offsets.as_deref()),
        ],
    )?;
    let params = WhiteningParams::new(args.dims)
        .power(args.power)
        .eps(args.eps)
        .max_points(args.max_points)
        .seed(args.seed)
        .post(args.post.clone());
    let (whitening, rows) = match (&args.vlad, &args.descriptors) {
        (Some(path), _) => fit_file(&params, path)?,
        (None, Some(descriptors)) => {
            let encoded = encode_first(args, descriptors)?;
            let fitted = fit_file(&params, &encoded);
            drop(encoded);
            fitted?
        }
        (None, None) => {
            return Err(VladError::InvalidArgument(
                "give --vlad V.npy or --descriptors D.npy".into(),
            )
            .into());
        }
    };
    whitening.save(&args.out).map_err(in_file(&args.out))?;
    let explained: f64 = whitening.eigenvalues().iter().sum();
    eprintln!(
        "learned a {} × {} whitening (power {}, eps {:.3e}) from {} encodings in {} -> {}",
        whitening.dims_out(),
        whitening.dims_in(),
        whitening.power(),
        whitening.eps(),
        rows,
        summary::format_seconds(wall.elapsed().as_secs_f64()),
        args.out.display()
    );
    if args.json {
        let mut json = Map::new();
        json.insert("dims_in".into(), whitening.dims_in().into());
        json.insert("dims_out".into(), whitening.dims_out().into());
        json.insert("power".into(), whitening.power().into());
        json.insert("eps".into(), whitening.eps().into());
        json.insert("post".into(), whitening.post().to_string().into());
        json.insert("rows".into(), rows.into());
        json.insert("explained_variance_sum".into(), explained.into());
        json.insert(
            "eigenvalues".into(),
            Value::from(whitening.eigenvalues().to_vec()),
        );
        json.insert("seconds".into(), wall.elapsed().as_secs_f64().into());
        json.insert("output".into(), args.out.display().to_string().into());
        summary::print_json(json);
    }
    Ok(())
}

/// Learn from the (T, D) float32 encodings at `path`, read in batches.
fn fit_file(params: &WhiteningParams, path: &Path) -> Result<(Whitening, usize), Failure> {
    let input = MappedNpy::open(path)?;
    if input.fixed_images().is_some() || input.dtype() != vlad::DType::F32 {
        return Err(in_file(path)(VladError::InvalidArgument(format!(
            "encodings must be a (T, D) float32 array, got {} of {}",
            if input.fixed_images().is_some() {
                "a 3-D array"
            } else {
                "a 2-D array"
            },
            input.dtype()
        ))));
    }
    let (rows, dim) = (input.rows_total(), input.dim());
    let mut acc = params.accumulator(rows, dim).map_err(in_file(path))?;
    let mut buffer = Vec::new();
    for start in (0..rows).step_by(BATCH_ROWS) {
        let end = (start + BATCH_ROWS).min(rows);
        let values = input.rows::<f32>(start..end, &mut buffer)?;
        let view = ndarray::ArrayView2::from_shape((end - start, dim), values)
            .map_err(|e| VladError::DimensionMismatch(e.to_string()))?;
        acc.add(start, view).map_err(in_file(path))?;
        input.release(start..end);
    }
    let used = acc.used_rows();
    Ok((acc.finish().map_err(in_file(path))?, used))
}

/// Encode `descriptors` with the codebook into a temporary `.npy` beside
/// `--out` (removed when dropped).
fn encode_first(args: &PcaArgs, descriptors: &Path) -> Result<tempfile::TempPath, Failure> {
    let Some(centroids) = &args.centroids else {
        return Err(VladError::InvalidArgument("--descriptors needs --centroids".into()).into());
    };
    let codebook = io::read_centroids(centroids).map_err(in_file(centroids))?;
    let encoder = args::encoder(codebook, args.backend.into(), args.norm.clone())?.build();
    let offsets = args.offsets.as_deref().map(io::read_offsets).transpose()?;
    let folder = match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".vlad-pca-")
        .suffix(".npy")
        .tempfile_in(&folder)
        .map_err(|e| VladError::Io {
            action: "cannot make a temporary file in",
            path: folder.clone(),
            source: std::sync::Arc::new(e),
        })?
        .into_temp_path();
    let input = MappedNpy::open(descriptors)?;
    let out = OutputFile::create(&tmp)?;
    let options = StreamOptions {
        memory_limit: args.memory_limit,
        ..StreamOptions::default()
    };
    stream::encode_file(&encoder, &input, offsets.as_deref(), None, out, &options)
        .map_err(in_file(descriptors))?;
    Ok(tmp)
}
