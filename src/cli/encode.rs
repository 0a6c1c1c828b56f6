//! `vlad encode`: descriptors + centroids → `(T, K·F)` float32 VLAD vectors.

use std::path::PathBuf;

use clap::Args;
use vlad::Normalization;

use super::args::{self, BackendArg};
use super::failure::Failure;

/// `vlad encode` options (SPEC §8).
#[derive(Debug, Args)]
pub struct EncodeArgs {
    /// Descriptors: (T, L, F) fixed-size images, or (N, F) rows split by
    /// --offsets (one image without them); float32, float64 or uint8.
    #[arg(long, value_name = "D.npy")]
    pub descriptors: PathBuf,
    /// Centroids (K, F), float32 or float64.
    #[arg(long, value_name = "C.npy")]
    pub centroids: PathBuf,
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
    #[arg(long, value_name = "STEPS", default_value = "ssr,l2", value_parser = args::parse_norm)]
    pub norm: Normalization,
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
            ("--centroids", Some(args.centroids.as_path())),
            ("--offsets", args.offsets.as_deref()),
            ("--labels", args.labels.as_deref()),
        ],
    )?;
    // Streamed from the memory-mapped input (SPEC §11): soft assignment,
    // rn and --verify included.
    super::streamed::encode(args)
}
