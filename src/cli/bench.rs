//! `vlad bench`: per backend and per stage, the median of several runs on
//! seeded synthetic data and its throughput. The work is `vlad::bench`;
//! this file parses options and prints.

use std::fmt::Write as _;

use clap::Args;
use vlad::bench::host::Host;
use vlad::bench::{self, BenchConfig, BenchDtype, BenchReport};
use vlad::{Backend, Normalization, VladError};

use super::args::{BackendArg, parse_norm};
use super::failure::Failure;
use super::summary::format_seconds;

/// `vlad bench` options. Defaults: the SIFT-like shape of SPEC §8.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Images `T`.
    #[arg(long, default_value_t = 200)]
    pub images: usize,
    /// Descriptors per image `L`.
    #[arg(long, default_value_t = 500)]
    pub per_image: usize,
    /// Descriptor width `F`.
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Centroids `K`.
    #[arg(long, default_value_t = 64)]
    pub clusters: usize,
    /// Backend to measure; repeat for several (default: cpu and gpu).
    /// Asking only for gpu where there is none exits 3.
    #[arg(long, value_enum)]
    pub backend: Vec<BackendArg>,
    /// Timed runs per backend, after one warm-up; the median is reported.
    #[arg(long, default_value_t = 7)]
    pub repeats: usize,
    /// Normalization steps.
    #[arg(long, default_value = "ssr,l2", value_parser = parse_norm)]
    pub norm: Normalization,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Measure NetVLAD soft assignment with temperature α (SPEC §10:
    /// `W = 2α·C`, `b = −α‖c‖²`) instead of hard assignment.
    #[arg(long, value_name = "α")]
    pub soft_alpha: Option<f32>,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Measure on these descriptors instead of synthetic data: (T, L, F)
    /// or (N, F) with --offsets; float32, float64 or uint8 (needs
    /// --centroids; the shape options are then ignored).
    #[arg(long, value_name = "D.npy", requires = "centroids")]
    pub descriptors: Option<std::path::PathBuf>,
    /// Centroids (K, F) for --descriptors.
    #[arg(long, value_name = "C.npy", requires = "descriptors")]
    pub centroids: Option<std::path::PathBuf>,
    /// CSR offsets (T+1,) for (N, F) --descriptors.
    #[arg(long, value_name = "O.npy", requires = "descriptors")]
    pub offsets: Option<std::path::PathBuf>,
    /// Element type of the synthetic descriptors: u8, f16 or f32 (f16 is
    /// widened to f32 on the host until the library takes f16 arrays).
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    pub dtype: BenchDtype,
    /// Run the fixed suite of seeded shapes (seed experiment to N = 10⁷)
    /// instead of one shape; the shape options are ignored.
    #[arg(long, conflicts_with = "descriptors")]
    pub suite: bool,
    /// With --suite: only the shapes of at most this many descriptors.
    #[arg(long, value_name = "N", default_value_t = bench::suite::MAX_N, requires = "suite")]
    pub max_n: usize,
    /// Print two `vlad bench --json` files side by side, with the ratio of
    /// each stage's median (B / A); nothing is measured.
    #[arg(long, num_args = 2, value_names = ["A.json", "B.json"])]
    pub compare: Option<Vec<std::path::PathBuf>>,
    /// Also draw the stages on the device's roofline (arithmetic intensity
    /// against GFLOP/s, the FMA and bandwidth ceilings as lines) into this
    /// SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<std::path::PathBuf>,
}

fn parse_dtype(s: &str) -> Result<BenchDtype, String> {
    BenchDtype::parse(s).ok_or_else(|| format!("unknown dtype {s:?}: expected u8, f16 or f32"))
}

/// Run `vlad bench`.
pub fn run(args: &BenchArgs) -> Result<(), Failure> {
    if let Some(files) = &args.compare {
        return match files.as_slice() {
            [a, b] => super::bench_compare::run(a, b),
            _ => Err(VladError::InvalidArgument("--compare takes two files".into()).into()),
        };
    }
    let explicit = !args.backend.is_empty();
    let backends: Vec<Backend> = if explicit {
        args.backend.iter().map(|&b| b.into()).collect()
    } else {
        vec![Backend::Cpu, Backend::Gpu]
    };
    let config = BenchConfig {
        images: args.images,
        per_image: args.per_image,
        dim: args.dim,
        clusters: args.clusters,
        backends,
        repeats: args.repeats,
        normalization: args.norm.clone(),
        seed: args.seed,
        assignment: match args.soft_alpha {
            Some(alpha) => vlad::Assignment::soft_alpha(alpha)?,
            None => vlad::Assignment::Hard,
        },
        gpu_options: super::args::gpu_options()?,
        dtype: args.dtype,
    };
    let host = Host::this();
    if args.suite {
        return run_suite(args, &config, &host, explicit);
    }
    let report = match (&args.descriptors, &args.centroids) {
        (Some(d), Some(c)) => super::bench_files::run(&config, d, c, args.offsets.as_deref())?,
        _ => {
            eprintln!(
                "vlad bench: T = {}, L = {}, F = {}, K = {}, {}, {} timed runs per backend (median), seeded synthetic data, host CPU {}",
                config.images,
                config.per_image,
                config.dim,
                config.clusters,
                dtype_note(config.dtype),
                config.repeats,
                host.cpu
            );
            bench::run(&config)?
        }
    };
    check_ran(&report, explicit)?;
    let doc = super::bench_json::single(&report, "", &host);
    if let Some(path) = &args.plot {
        super::bench_plot::write(&doc, path)?;
    }
    if args.json {
        println!("{doc}");
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

/// The dtype as the stderr header says it.
fn dtype_note(dtype: BenchDtype) -> String {
    if dtype.widened_on_host() {
        format!("{dtype} (widened to f32 on the host)")
    } else {
        dtype.to_string()
    }
}

/// `--suite`: every shape up to `--max-n`, each as one run.
fn run_suite(
    args: &BenchArgs,
    config: &BenchConfig,
    host: &Host,
    explicit: bool,
) -> Result<(), Failure> {
    let shapes = bench::suite::shapes(args.max_n);
    if shapes.is_empty() {
        return Err(VladError::InvalidArgument(format!(
            "--max-n {} leaves no shape of the suite (the smallest has {} descriptors)",
            args.max_n,
            bench::suite::SUITE[0].descriptors()
        ))
        .into());
    }
    let mut runs = Vec::new();
    for shape in shapes {
        let config = BenchConfig {
            images: shape.images,
            per_image: shape.per_image,
            dim: shape.dim,
            clusters: shape.clusters,
            repeats: shape.repeats,
            ..config.clone()
        };
        eprintln!(
            "vlad bench --suite: {} (T = {}, L = {}, F = {}, K = {}, {}), {} timed runs per backend (median), host CPU {}",
            shape.label,
            shape.images,
            shape.per_image,
            shape.dim,
            shape.clusters,
            dtype_note(config.dtype),
            shape.repeats,
            host.cpu
        );
        let report = bench::run(&config)?;
        check_ran(&report, explicit)?;
        if !args.json {
            println!("\n== {} ==", shape.label);
            print!("{}", table(&report));
        }
        runs.push((shape.label.to_string(), report));
    }
    let doc = super::bench_json::suite(&runs, host);
    if let Some(path) = &args.plot {
        super::bench_plot::write(&doc, path)?;
    }
    if args.json {
        println!("{doc}");
    }
    Ok(())
}

/// Say what was skipped; exit 3 when nothing ran, or when a backend asked
/// for by name did not.
fn check_ran(report: &BenchReport, explicit: bool) -> Result<(), Failure> {
    for skipped in &report.skipped {
        eprintln!(
            "vlad bench: {} skipped: {}",
            skipped.backend, skipped.reason
        );
    }
    for note in &report.notes {
        eprintln!("vlad bench: {note}");
    }
    if report.rows.is_empty() {
        // Nothing ran: every backend asked for is unavailable (exit 3).
        let reasons: Vec<String> = report.skipped.iter().map(|s| s.reason.clone()).collect();
        return Err(VladError::BackendUnavailable(reasons.join("; ")).into());
    }
    if explicit && let Some(skipped) = report.skipped.first() {
        return Err(VladError::BackendUnavailable(skipped.reason.clone()).into());
    }
    Ok(())
}

fn table(report: &BenchReport) -> String {
    let mut out = String::new();
    let mut last_backend = None;
    for r in &report.rows {
        if last_backend != Some((r.backend, r.adapter.clone())) {
            last_backend = Some((r.backend, r.adapter.clone()));
            let found = report
                .ceilings
                .iter()
                .find(|b| (b.backend, &b.adapter) == (r.backend, &r.adapter));
            let adapter = match (&r.adapter, r.software_adapter) {
                (Some(a), true) => format!(
                    " on {a} — SOFTWARE adapter (CPU emulation): these numbers are not GPU speed"
                ),
                (Some(a), false) => format!(" on {a}"),
                (None, _) => String::new(),
            };
            let about = match found {
                Some(b) => match (b.adapter_kind, &b.driver, b.fma_path) {
                    (Some(kind), Some(driver), _) => format!(" ({kind}, driver {driver})"),
                    (_, _, Some(path)) => format!(" (FMA ceiling on {path})"),
                    _ => String::new(),
                },
                None => String::new(),
            };
            let _ = writeln!(out, "\n{}{adapter}{about}", r.backend);
            if let Some(b) = found {
                let c = &b.ceilings;
                let _ = write!(
                    out,
                    "  ceilings: FMA {:.1} GFLOP/s, memory {:.2} GB/s",
                    c.fma_gflops, c.memory_gbps
                );
                if let Some(f16) = c.fma_f16_gflops {
                    let _ = write!(out, ", FMA f16 {f16:.1} GFLOP/s");
                }
                if let (Some(up), Some(down)) = (c.upload_gbps, c.readback_gbps) {
                    let _ = write!(out, ", upload {up:.2} GB/s, read-back {down:.2} GB/s");
                }
                if let Some(latency) = c.dispatch_seconds {
                    let _ = write!(out, ", empty dispatch {}", format_seconds(latency));
                }
                let _ = writeln!(out);
            }
            let _ = writeln!(
                out,
                "  {:<10} {:>11} {:>11} {:>11} {:>14} {:>9} {:>10} {:>16}",
                "stage", "median", "min", "max", "descriptors/s", "GB/s", "GFLOP/s", "% of ceiling"
            );
        }
        let ceiling = match (r.ceiling, r.percent_of_ceiling) {
            (Some(name), Some(p)) => format!("{p:.1}% {name}"),
            _ => "-".to_string(),
        };
        let _ = writeln!(
            out,
            "  {:<10} {:>11} {:>11} {:>11} {:>14.3e} {:>9.2} {:>10.1} {:>16}",
            r.stage,
            format_seconds(r.median_seconds),
            format_seconds(r.min_seconds),
            format_seconds(r.max_seconds),
            r.descriptors_per_second,
            r.gigabytes_per_second,
            r.gigaflops_per_second,
            ceiling
        );
    }
    out
}
