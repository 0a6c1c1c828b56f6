//! `vlad encode`: descriptors + centroids → `(T, K·F)` float32 VLAD vectors.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use ndarray::{Array2, ArrayD};
use vlad::io::{self, DescriptorArray, OutputFile};
use vlad::verify::{self, Verification};
use vlad::{Assignment, Element, Encoder, Normalization, RunReport, VladError};

use super::args::{self, BackendArg};
use super::failure::{Failure, in_file};
use super::inputs::{self, Sources};
use super::summary::{self, Sizes};

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

/// The result of encoding one array.
struct Outcome {
    vlad: Array2<f32>,
    report: RunReport,
    sizes: Sizes,
    verification: Option<(Verification, f64)>,
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
    // Streamed from the memory-mapped input (SPEC §11) unless the run needs
    // the whole input in memory: --verify (the reference side by side), and
    // soft assignment or rn (cpu/reference only, run on the whole batch by
    // `vlad::weighted`; the stream does not cut them into pieces).
    if !args.verify && !args.soft.is_soft() && !args.norm.residual_normalized() {
        return super::streamed::encode(args);
    }
    // Reserve the output first: an unwritable destination fails before any work.
    let out = OutputFile::create(&args.out)?;
    let codebook = io::read_centroids(&args.centroids).map_err(in_file(&args.centroids))?;
    let offsets = args.offsets.as_deref().map(io::read_offsets).transpose()?;
    let labels = match &args.labels {
        Some(path) => Some(io::read_labels(path, codebook.clusters()).map_err(in_file(path))?),
        None => None,
    };
    let descriptors = io::read_descriptors(&args.descriptors)?;
    let assignment = args.soft.assignment(&codebook)?;
    let encoder = args::encoder(codebook, args.backend.into(), args.norm.clone())?
        .assignment(assignment.clone())
        .build();
    let job = Job {
        encoder: &encoder,
        assignment: &assignment,
        offsets: offsets.as_deref(),
        labels: labels.as_deref(),
        verify: args.verify,
        sources: Sources {
            descriptors: &args.descriptors,
            centroids: &args.centroids,
            offsets: args.offsets.as_deref(),
            labels: args.labels.as_deref(),
        },
    };
    let outcome = match &descriptors {
        DescriptorArray::F32(a) => job.run(a),
        DescriptorArray::F64(a) => job.run(a),
        DescriptorArray::U8(a) => job.run(a),
    }?;

    let mut json = summary::run_json(&outcome.report, outcome.sizes);
    json.insert("normalization".into(), args.norm.to_string().into());
    json.insert("assignment".into(), assignment.name().into());
    json.insert("output".into(), args.out.display().to_string().into());
    if let Some((v, seconds)) = &outcome.verification {
        summary::add_verification(&mut json, v, *seconds);
        eprintln!("{}", summary::human_verification(v));
        if !v.passed() {
            if args.json {
                summary::print_json(json);
            }
            return Err(VladError::VerificationFailed(format!(
                "{} of {} labels beyond a near-tie, {} values outside tolerance \
                 (max abs error {:.3e}); {} not written",
                v.bad_labels,
                outcome.sizes.descriptors,
                v.violations,
                v.max_abs_error,
                args.out.display()
            ))
            .into());
        }
    }
    out.write_npy(&outcome.vlad)?;
    eprintln!(
        "{} -> {}",
        summary::human("encoded", &outcome.report, outcome.sizes),
        args.out.display()
    );
    if args.json {
        summary::print_json(json);
    }
    Ok(())
}

/// Everything but the descriptors, which come in three element types.
struct Job<'a> {
    encoder: &'a Encoder,
    assignment: &'a Assignment,
    offsets: Option<&'a [usize]>,
    labels: Option<&'a [u32]>,
    verify: bool,
    sources: Sources<'a>,
}

impl Job<'_> {
    fn run<E: Element>(&self, array: &ArrayD<E>) -> Result<Outcome, Failure> {
        let codebook = self.encoder.codebook();
        // The output's size is known from the shapes alone: refuse one that
        // cannot be allocated before anything else is.
        let images = match (array.ndim(), self.offsets) {
            (3, _) => array.shape()[0],
            (_, Some(offsets)) => offsets.len().saturating_sub(1),
            _ => 1,
        };
        self.encoder
            .check_output_fits(images)
            .map_err(inputs::encoder_error(self.sources))?;
        let batch = inputs::batch(
            array,
            self.offsets,
            self.labels,
            codebook.clusters(),
            self.sources,
        )?;
        let encoded = self
            .encoder
            .encode_batch(&batch)
            .map_err(inputs::encoder_error(self.sources))?;
        let verification = self.verify.then(|| {
            let start = Instant::now();
            let norm = self.encoder.normalization();
            let v = if self.assignment.is_hard() && !norm.residual_normalized() {
                verify::verify(codebook, &batch, norm, encoded.vlad.view(), &encoded.labels)
            } else {
                vlad::verify_soft::verify(
                    codebook,
                    &batch,
                    self.assignment,
                    norm,
                    encoded.vlad.view(),
                    &encoded.labels,
                )
            };
            (v, start.elapsed().as_secs_f64())
        });
        Ok(Outcome {
            sizes: Sizes {
                images: batch.images(),
                descriptors: batch.len(),
                clusters: codebook.clusters(),
                dim: codebook.dim(),
            },
            vlad: encoded.vlad,
            report: encoded.report,
            verification,
        })
    }
}
