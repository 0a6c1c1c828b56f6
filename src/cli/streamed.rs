//! `vlad encode` and `vlad assign` on inputs of any size (SPEC §11): the
//! descriptors are memory-mapped and streamed through [`vlad::stream`] in
//! batches bounded by `--memory-limit`, with a progress bar on stderr when
//! it is a terminal.

use std::time::Instant;

use serde_json::json;
use vlad::io::mapped::MappedNpy;
use vlad::io::{self, OutputFile};
use vlad::stream::{self, StreamOptions, StreamProgress, Streamed};
use vlad::{Normalization, VladError};

use super::args;
use super::assign::AssignArgs;
use super::encode::EncodeArgs;
use super::failure::{Failure, in_file, within};
use super::peak_rss::peak_rss_bytes;
use super::progress::StreamBar as Bar;
use super::summary::{self, Sizes};

/// `--memory-limit`: parsed by clap so a bad size is a usage error.
pub fn parse_memory_limit(s: &str) -> Result<u64, String> {
    stream::parse_memory_size(s).map_err(|e| e.to_string())
}

/// Stream `vlad encode`: hard or soft assignment, `rn`, and `--verify`
/// (checked batch by batch against the reference; exit status 4 and
/// nothing written when SPEC §4 does not hold). The caller has refused an
/// `--out` that names an input.
pub fn encode(args: &EncodeArgs) -> Result<(), Failure> {
    let wall = Instant::now();
    let out = OutputFile::create(&args.out)?;
    let codebook = io::read_centroids(&args.centroids).map_err(in_file(&args.centroids))?;
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
    let assignment = args.soft.assignment(&codebook)?;
    let encoder = args::encoder(codebook, args.backend.into(), args.norm.clone())?
        .assignment(assignment)
        .build();
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
    json.insert("normalization".into(), args.norm.to_string().into());
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

/// Stream `vlad assign`. The caller has refused an `--out` that names an
/// input.
pub fn assign(args: &AssignArgs) -> Result<(), Failure> {
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

/// Name the file an error is about.
fn locate(e: VladError, args: &EncodeArgs, has_offsets: bool) -> Failure {
    match e {
        VladError::DimensionMismatch(_) => within(format!(
            "{} and {}",
            args.descriptors.display(),
            args.centroids.display()
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

fn sizes(streamed: &Streamed, encoder: &vlad::Encoder) -> Sizes {
    Sizes {
        images: streamed.images,
        descriptors: streamed.descriptors,
        clusters: encoder.codebook().clusters(),
        dim: encoder.codebook().dim(),
    }
}

/// `wall_seconds`, `peak_rss_bytes` and how the input was cut.
pub fn add_stream_fields(
    json: &mut serde_json::Map<String, serde_json::Value>,
    streamed: &Streamed,
    memory_limit: u64,
    wall: Instant,
) {
    json.insert("wall_seconds".into(), json!(wall.elapsed().as_secs_f64()));
    json.insert("peak_rss_bytes".into(), json!(peak_rss_bytes()));
    json.insert("memory_limit_bytes".into(), json!(memory_limit));
    json.insert("batches".into(), json!(streamed.batches));
    json.insert("split_images".into(), json!(streamed.split_images));
}
