//! `vlad assign`: descriptors + centroids → `(N,)` int64 nearest-centroid labels.

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
    stream_assign(args)
}

/// Stream `vlad assign`. The caller has refused an `--out` that names an
/// input.
fn stream_assign(args: &AssignArgs) -> Result<(), Failure> {
    let wall = Instant::now();
    let out = OutputFile::create(&args.out)?;
    let codebook = io::read_centroids(&args.centroids).map_err(in_file(&args.centroids))?;
    let input = MappedNpy::open(&args.descriptors)?;
    let encoder = args::encoder(codebook, args.backend.into(), Normalization::none())?.build();
    let bar = Bar::new("assign");
    let progress = |p: StreamProgress| bar.update(p);
    let options = StreamOptions {
        memory_limit: args.memory_limit,
        progress: Some(&progress),
        ..StreamOptions::default()
    };
    let streamed = stream::assign_file(&encoder, &input, out, &options).map_err(|e| match e {
        VladError::DimensionMismatch(_) => within(format!(
            "{} and {}",
            args.descriptors.display(),
            args.centroids.display()
        ))(e),
        other => in_file(&args.descriptors)(other),
    })?;
    bar.finish();
    let sizes = sizes(&streamed, &encoder);
    eprintln!(
        "{} -> {}",
        summary::human("assigned", &streamed.report, sizes),
        args.out.display()
    );
    if args.json {
        let mut json = summary::run_json(&streamed.report, sizes);
        json.insert("output".into(), args.out.display().to_string().into());
        add_stream_fields(&mut json, &streamed, args.memory_limit, wall);
        summary::print_json(json);
    }
    Ok(())
}
