//! `vlad demo`: the seed experiment end to end on built-in synthetic data —
//! train a codebook by k-means, encode with every backend, check each against the f64
//! reference, print a table.

use std::fmt::Write as _;

use clap::Args;
use ndarray::Array3;
use vlad::ADAPTER_VAR;
use vlad::kmeans::{Init, KMeans};
use vlad::synthetic::clustered_images;
use vlad::verify;
use vlad::{Adapters, Backend, Batch, Codebook, Encoder, Normalization, VladError};

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
/// Most Lloyd iterations (the library's default, spelled out for the
/// message); training on well-separated data usually stops sooner.
const MAX_ITERATIONS: usize = 25;

/// `vlad demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seed of the synthetic data and of the codebook's training.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Also run the gpu backend when the only adapter is a software one
    /// (llvmpipe, lavapipe): slow, the first time minutes (shader
    /// compilation), and not GPU speed.
    #[arg(long)]
    pub software_gpu: bool,
}

/// Run `vlad demo`: exit 0 when every backend that ran passes verification,
/// 4 when one does not.
pub fn run(args: &DemoArgs) -> Result<(), Failure> {
    let descriptors = clustered_images(IMAGES, PER_IMAGE, DIM, CLUSTERS, args.seed);
    let batch = Batch::fixed(descriptors.view())?;
    let (codebook, how) = build_codebook(&descriptors, args.seed)?;
    let norm = Normalization::default();

    let mut out = String::new();
    let _ = writeln!(
        out,
        "vlad demo: {IMAGES} images × {PER_IMAGE} descriptors × F = {DIM}, K = {CLUSTERS} \
         (seeded synthetic data, seed {}: descriptors spread σ = 0.1 around {CLUSTERS} random \
         centres in [0, 1)^{DIM})",
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
    let mut backends = vec![Backend::Reference, Backend::Cpu];
    // The GPU runs only where `auto` would take it (a hardware adapter),
    // unless asked: a software adapter compiles the shaders for minutes the
    // first time and then runs slower than the cpu backend. Listing the
    // adapters opens no device and takes milliseconds.
    let mut skipped = None;
    let options = super::args::gpu_options()?;
    let adapters = vlad::adapters(&options);
    match adapters.auto_adapter() {
        Ok(Ok(_)) => backends.push(Backend::Gpu),
        _ if args.software_gpu => backends.push(Backend::Gpu),
        Ok(Err(_)) => skipped = Some(skip_reason(&adapters, options.adapter.is_some())),
        Err(e) => skipped = Some(e.to_string()),
    }
    for backend in backends {
        let encoder = Encoder::builder(codebook.clone())
            .normalization(norm.clone())
            .backend(backend)
            .gpu_options(options.clone())
            .build();
        // One untimed warm-up (GPU device setup and shader compilation, thread
        // pool start), then the run that is timed and verified.
        match encoder.encode_batch(&batch) {
            Ok(_) => {}
            Err(VladError::BackendUnavailable(reason)) => {
                let _ = writeln!(out, "{backend}: unavailable ({reason})");
                continue;
            }
            Err(other) => return Err(other.into()),
        }
        let encoded = encoder.encode_batch(&batch)?;
        let v = verify::verify(
            &codebook,
            &batch,
            encoder.assignment(),
            &norm,
            encoded.vlad.view(),
            &encoded.labels,
        );
        let adapter = encoded
            .report
            .adapter
            .as_deref()
            .map(|a| {
                let software = if encoded.report.adapter_kind == Some(vlad::AdapterKind::Software) {
                    " (software emulation on the CPU: not GPU speed)"
                } else {
                    ""
                };
                format!("  on {a}{software}")
            })
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
    if let Some(reason) = skipped {
        let _ = writeln!(out, "gpu: skipped ({reason})");
    }
    let _ = writeln!(
        out,
        "(time: compute only, in process, the second of two runs; `vlad bench` gives medians)"
    );
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

/// Why the demo skips the gpu where `auto` would not take it, and how to
/// run it anyway, as one clause. `named`: `VLAD_ADAPTER` picked the adapter.
fn skip_reason(adapters: &Adapters, named: bool) -> String {
    match adapters.gpu_adapter() {
        // `gpu` would run on it and `auto` would not: not a hardware GPU.
        Ok(adapter) => {
            let which = match (named, adapter.is_software()) {
                (true, true) => format!("{ADAPTER_VAR} picks a software adapter,"),
                (true, false) => format!("{ADAPTER_VAR} picks an adapter of unknown kind,"),
                (false, true) => "only a software adapter,".to_string(),
                (false, false) => "only an adapter of unknown kind,".to_string(),
            };
            format!(
                "{which} {}; `vlad demo --software-gpu` runs the shaders on it, slowly",
                adapter.name
            )
        }
        Err(_) if !cfg!(feature = "gpu") => "vlad was built without the gpu feature".to_string(),
        Err(_) => "no GPU adapter; with a Vulkan driver installed (Mesa's: `apt-get install \
                   mesa-vulkan-drivers`), `vlad demo --software-gpu` runs the shaders on its \
                   software adapter, slowly"
            .to_string(),
    }
}

/// The demo's codebook, trained by k-means on the demo's descriptors (cpu,
/// the library's default settings, the demo's seed), and a sentence saying
/// how it was trained.
fn build_codebook(descriptors: &Array3<f32>, seed: u64) -> Result<(Codebook, String), Failure> {
    let rows = descriptors
        .view()
        .into_shape_with_order((IMAGES * PER_IMAGE, DIM))
        .map_err(|e| VladError::InvalidArgument(format!("demo data shape: {e}")))?;
    let kmeans = KMeans::new(CLUSTERS)
        .init(Init::KMeansPlusPlus)
        .iterations(MAX_ITERATIONS)
        .seed(seed)
        .backend(Backend::Cpu);
    let trained = kmeans.fit(rows)?;
    let how = format!(
        "k-means++ / Lloyd on {}, {} iterations (at most {MAX_ITERATIONS}), inertia {:.4e}, \
         trained on {} of {} descriptors (seeded sample) in {}",
        trained.backend,
        trained.iterations,
        trained.inertia,
        kmeans.training_indices(rows.nrows()).len(),
        rows.nrows(),
        format_seconds(trained.seconds)
    );
    Ok((trained.codebook, how))
}
