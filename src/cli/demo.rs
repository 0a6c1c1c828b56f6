//! `vlad demo`: the seed experiment end to end on built-in synthetic data —
//! build a codebook, encode with every backend, check each against the f64
//! reference, print a table.

use std::fmt::Write as _;

use clap::Args;
use ndarray::{Array2, Array3, Axis};
use rand::SeedableRng;
use rand::seq::index;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use vlad::verify;
use vlad::{Backend, Batch, Codebook, Encoder, Normalization, VladError};

use super::failure::Failure;
use super::summary::format_seconds;

/// Images in the demo.
const IMAGES: usize = 256;
/// Descriptors per image.
const PER_IMAGE: usize = 128;
/// Descriptor width.
const DIM: usize = 64;
/// Codebook size (and number of generating clusters).
const CLUSTERS: usize = 16;
/// Spread of the generating cluster centres around the origin.
const CENTRE_SIGMA: f32 = 1.0;
/// Spread of the descriptors around their centre: small enough that the
/// clusters are well separated (centres are ~√(2·64) ≈ 11 apart, a
/// descriptor strays ~0.4·√64 ≈ 3 from its own).
const NOISE_SIGMA: f32 = 0.4;

/// `vlad demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seed of the synthetic data and of the codebook's sampling.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
}

/// Run `vlad demo`: exit 0 when every backend that ran passes verification,
/// 4 when one does not.
pub fn run(args: &DemoArgs) -> Result<(), Failure> {
    let descriptors = synthetic_descriptors(args.seed);
    let batch = Batch::fixed(descriptors.view())?;
    let (codebook, how) = build_codebook(&descriptors, args.seed)?;
    let norm = Normalization::default();

    let mut out = String::new();
    let _ = writeln!(
        out,
        "vlad demo: {IMAGES} images × {PER_IMAGE} descriptors × F = {DIM}, K = {CLUSTERS} \
         (seeded synthetic data, seed {}, descriptors around {CLUSTERS} random centres)",
        args.seed
    );
    let _ = writeln!(out, "codebook: {how}");
    let _ = writeln!(out, "normalization: {norm}");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<10} {:>12} {:>16} {:>14}  verdict",
        "backend", "time", "label agreement", "max abs error"
    );

    let mut failed = Vec::new();
    for backend in [Backend::Reference, Backend::Cpu, Backend::Gpu] {
        let encoder = Encoder::new(codebook.clone())
            .normalization(norm.clone())
            .backend(backend);
        let encoded = match encoder.encode_batch(&batch) {
            Ok(encoded) => encoded,
            Err(VladError::BackendUnavailable(reason)) => {
                let _ = writeln!(out, "{backend}: unavailable ({reason})");
                continue;
            }
            Err(other) => return Err(other.into()),
        };
        let v = verify::verify(
            &codebook,
            &batch,
            &norm,
            encoded.vlad.view(),
            &encoded.labels,
        );
        let adapter = encoded
            .report
            .adapter
            .as_deref()
            .map(|a| format!("  on {a}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<10} {:>12} {:>16.6} {:>14.3e}  {}{adapter}",
            backend.name(),
            format_seconds(encoded.report.seconds),
            v.label_agreement,
            v.max_abs_error,
            if v.passed() { "pass" } else { "FAIL" }
        );
        if !v.passed() {
            failed.push(backend.to_string());
        }
    }
    print!("{out}");
    if failed.is_empty() {
        Ok(())
    } else {
        Err(VladError::VerificationFailed(format!(
            "demo: {} disagreed with the reference beyond SPEC §4",
            failed.join(", ")
        ))
        .into())
    }
}

/// `(IMAGES, PER_IMAGE, DIM)` descriptors, each drawn around one of
/// `CLUSTERS` random centres, so nearest-centroid assignment is meaningful.
fn synthetic_descriptors(seed: u64) -> Array3<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centre = Normal::new(0.0f32, CENTRE_SIGMA).unwrap_or_else(|_| unreachable!());
    let noise = Normal::new(0.0f32, NOISE_SIGMA).unwrap_or_else(|_| unreachable!());
    let centres = Array2::from_shape_simple_fn((CLUSTERS, DIM), || centre.sample(&mut rng) * 4.0);
    let mut descriptors = Array3::zeros((IMAGES, PER_IMAGE, DIM));
    for mut image in descriptors.outer_iter_mut() {
        for mut v in image.outer_iter_mut() {
            let k = index::sample(&mut rng, CLUSTERS, 1).index(0);
            for (x, c) in v.iter_mut().zip(centres.row(k)) {
                *x = c + noise.sample(&mut rng);
            }
        }
    }
    descriptors
}

/// The demo's codebook and a sentence saying how it was made.
///
/// There is no k-means yet (`vlad kmeans` is not implemented), so the
/// centroids are `CLUSTERS` distinct descriptors sampled at random — a
/// k-means initialisation, not a trained codebook. This is the one place to
/// slot training in.
fn build_codebook(descriptors: &Array3<f32>, seed: u64) -> Result<(Codebook, String), Failure> {
    let rows = descriptors
        .view()
        .into_shape_with_order((IMAGES * PER_IMAGE, DIM))
        .map_err(|e| VladError::InvalidArgument(format!("demo data shape: {e}")))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_c0de);
    let mut picked: Vec<usize> = Vec::with_capacity(CLUSTERS);
    for i in index::sample(&mut rng, rows.nrows(), rows.nrows()) {
        if picked.iter().all(|&p| rows.row(p) != rows.row(i)) {
            picked.push(i);
            if picked.len() == CLUSTERS {
                break;
            }
        }
    }
    let centroids = rows.select(Axis(0), &picked);
    let codebook = Codebook::from_owned(centroids)?;
    Ok((
        codebook,
        format!(
            "{CLUSTERS} distinct descriptors picked at random — NOT trained \
             (k-means is not implemented yet)"
        ),
    ))
}
