//! `vlad model`: bundle a codebook, its assignment and normalization, and
//! optionally a whitening into one model file (SPEC §15), which `vlad
//! encode --model`, `vlad.load` and `Encoder::load` read.

use std::path::PathBuf;

use clap::Args;
use vlad::{Encoder, Normalization, Whitening};

use super::args;
use super::failure::{Failure, in_file};

/// `vlad model` options.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Centroids (K, F), float32 or float64.
    #[arg(long, value_name = "C.npy")]
    pub centroids: PathBuf,
    /// Normalization steps (as `vlad encode --norm`).
    #[arg(long, value_name = "STEPS", default_value = "ssr,l2", value_parser = args::parse_norm)]
    pub norm: Normalization,
    /// Soft (NetVLAD) assignment (SPEC §10).
    #[command(flatten)]
    pub soft: super::soft::SoftArgs,
    /// A whitening (`vlad pca --out`) applied after the normalization.
    #[arg(long, value_name = "W.npz")]
    pub whitening: Option<PathBuf>,
    /// Where to write the model (.npz, written atomically).
    #[arg(long, value_name = "M.npz")]
    pub out: PathBuf,
}

/// Run `vlad model`.
pub fn run(args: &ModelArgs) -> Result<(), Failure> {
    let codebook = vlad::io::read_centroids(&args.centroids).map_err(in_file(&args.centroids))?;
    let assignment = args.soft.assignment(&codebook)?;
    let mut builder = Encoder::builder(codebook)
        .normalization(args.norm.clone())
        .assignment(assignment);
    if let Some(path) = &args.whitening {
        builder = builder.whitening(Whitening::load(path).map_err(in_file(path))?);
    }
    let encoder = builder.try_build().map_err(|e| match &args.whitening {
        Some(path) => in_file(path)(e),
        None => e.into(),
    })?;
    encoder.save(&args.out).map_err(in_file(&args.out))?;
    eprintln!(
        "model: K = {}, F = {}, {}, {}{} -> {}",
        encoder.codebook().clusters(),
        encoder.codebook().dim(),
        encoder.assignment().name(),
        encoder.normalization(),
        encoder
            .whitening()
            .map(|w| format!(", whitened to D′ = {}", w.dims_out()))
            .unwrap_or_default(),
        args.out.display()
    );
    Ok(())
}
