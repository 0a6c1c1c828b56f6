//! `vlad assign`: descriptors + centroids → `(N,)` int64 nearest-centroid labels.

use std::path::PathBuf;

use clap::Args;
use ndarray::{Array1, ArrayD};
use vlad::io::{self, DescriptorArray, OutputFile};
use vlad::{Element, Encoder, Normalization};

use super::args::{self, BackendArg};
use super::failure::{Failure, in_file};
use super::inputs::{self, Sources};
use super::summary::{self, Sizes};

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

/// Run `vlad assign`.
pub fn run(args: &AssignArgs) -> Result<(), Failure> {
    if args.memory_limit > 0 {
        return super::streamed::assign(args);
    }
    let out = OutputFile::create(&args.out)?;
    let codebook = io::read_centroids(&args.centroids).map_err(in_file(&args.centroids))?;
    let descriptors = io::read_descriptors(&args.descriptors)?;
    // Assignment does not normalize; the encoder's default is irrelevant here.
    let encoder = args::encoder(codebook, args.backend.into(), Normalization::none())?;
    let sources = Sources {
        descriptors: &args.descriptors,
        centroids: &args.centroids,
        offsets: None,
        labels: None,
    };
    let (labels, report, sizes) = match &descriptors {
        DescriptorArray::F32(a) => assign(&encoder, a, sources),
        DescriptorArray::F64(a) => assign(&encoder, a, sources),
        DescriptorArray::U8(a) => assign(&encoder, a, sources),
    }?;
    out.write_npy(&labels)?;
    eprintln!(
        "{} -> {}",
        summary::human("assigned", &report, sizes),
        args.out.display()
    );
    if args.json {
        let mut json = summary::run_json(&report, sizes);
        json.insert("output".into(), args.out.display().to_string().into());
        summary::print_json(json);
    }
    Ok(())
}

fn assign<E: Element>(
    encoder: &Encoder,
    array: &ArrayD<E>,
    sources: Sources<'_>,
) -> Result<(Array1<i64>, vlad::RunReport, Sizes), Failure> {
    let codebook = encoder.codebook();
    let batch = inputs::batch(array, None, None, codebook.clusters(), sources)?;
    let assigned = encoder
        .assign_batch(&batch)
        .map_err(inputs::encoder_error(sources))?;
    let sizes = Sizes {
        images: batch.images(),
        descriptors: batch.len(),
        clusters: codebook.clusters(),
        dim: codebook.dim(),
    };
    let labels = assigned.labels.iter().map(|&l| i64::from(l)).collect();
    Ok((labels, assigned.report, sizes))
}
