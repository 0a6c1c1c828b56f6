//! `vlad assign`: descriptors + centroids → `(N,)` int64 nearest-centroid labels.

use std::path::PathBuf;

use clap::Args;

use super::args::BackendArg;
use super::failure::Failure;

/// `vlad assign` options (SPEC §8).
#[derive(Debug, Args)]
pub struct AssignArgs {
    /// Descriptors: (T, L, F) or (N, F); float32, float64 or uint8. For
    /// (T, L, F) the labels are image-major, N = T·L.
    #[arg(long, value_name = "D.npy")]
    pub descriptors: PathBuf,
    /// Centroids (K, F), float32 or float64.
    #[arg(long, value_name = "C.npy")]
    pub centroids: PathBuf,
    /// Where to write the (N,) int64 labels (written atomically).
    #[arg(long, value_name = "A.npy")]
    pub out: PathBuf,
    /// Which backend computes.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// Print one JSON object describing the run on stdout.
    #[arg(long)]
    pub json: bool,
    /// Bound on the memory the run uses, whatever the input size: the
    /// descriptors are memory-mapped and streamed in batches (SIZE in
    /// bytes, KiB, MiB or GiB).
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = super::streamed::parse_memory_limit)]
    pub memory_limit: u64,
}

/// Run `vlad assign`: always streamed from the memory-mapped input
/// (SPEC §11; `super::streamed`), whatever its size.
pub fn run(args: &AssignArgs) -> Result<(), Failure> {
    super::same_file::refuse_input_as_output(
        &args.out,
        &[
            ("--descriptors", Some(args.descriptors.as_path())),
            ("--centroids", Some(args.centroids.as_path())),
        ],
    )?;
    super::streamed::assign(args)
}
