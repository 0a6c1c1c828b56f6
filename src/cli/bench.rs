//! `vlad bench`: per backend and per stage, the median of several runs on
//! seeded synthetic data and its throughput. The work is `vlad::bench`;
//! this file parses options and prints.

use std::fmt::Write as _;

use clap::Args;
use serde_json::{Value, json};
use vlad::bench::{self, BenchConfig, BenchReport};
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
}

/// Run `vlad bench`.
pub fn run(args: &BenchArgs) -> Result<(), Failure> {
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
    };
    let report = match (&args.descriptors, &args.centroids) {
        (Some(d), Some(c)) => super::bench_files::run(&config, d, c, args.offsets.as_deref())?,
        _ => {
            eprintln!(
                "vlad bench: T = {}, L = {}, F = {}, K = {}, {} timed runs per backend (median), seeded synthetic data",
                config.images, config.per_image, config.dim, config.clusters, config.repeats
            );
            bench::run(&config)?
        }
    };
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
    if args.json {
        println!("{}", to_json(&report));
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

fn to_json(report: &BenchReport) -> Value {
    let c = &report.config;
    let rows: Vec<Value> = report
        .rows
        .iter()
        .map(|r| {
            json!({
                "backend": r.backend.name(),
                "adapter": r.adapter,
                "software_adapter": r.software_adapter,
                "stage": r.stage,
                "median_seconds": r.median_seconds,
                "min_seconds": r.min_seconds,
                "max_seconds": r.max_seconds,
                "descriptors_per_second": r.descriptors_per_second,
                "gigabytes_per_second": r.gigabytes_per_second,
                "gigaflops_per_second": r.gigaflops_per_second,
                "ceiling": r.ceiling,
                "percent_of_ceiling": r.percent_of_ceiling,
            })
        })
        .collect();
    let skipped: Vec<Value> = report
        .skipped
        .iter()
        .map(|s| json!({"backend": s.backend.name(), "reason": s.reason}))
        .collect();
    let ceilings: Vec<Value> = report
        .ceilings
        .iter()
        .map(|b| {
            json!({
                "backend": b.backend.name(),
                "adapter": b.adapter,
                "fma_gflops": b.ceilings.fma_gflops,
                "memory_gbps": b.ceilings.memory_gbps,
                "upload_gbps": b.ceilings.upload_gbps,
                "readback_gbps": b.ceilings.readback_gbps,
            })
        })
        .collect();
    json!({
        "images": c.images,
        "per_image": c.per_image,
        "descriptors": c.images * c.per_image,
        "dim": c.dim,
        "clusters": c.clusters,
        "repeats": c.repeats,
        "normalization": c.normalization.to_string(),
        "assignment": c.assignment.name(),
        "rows": rows,
        "skipped": skipped,
        "notes": report.notes,
        "ceilings": ceilings,
    })
}

fn table(report: &BenchReport) -> String {
    let mut out = String::new();
    let mut last_backend = None;
    for r in &report.rows {
        if last_backend != Some((r.backend, r.adapter.clone())) {
            last_backend = Some((r.backend, r.adapter.clone()));
            let adapter = match (&r.adapter, r.software_adapter) {
                (Some(a), true) => format!(
                    " on {a} — SOFTWARE adapter (CPU emulation): these numbers are not GPU speed"
                ),
                (Some(a), false) => format!(" on {a}"),
                (None, _) => String::new(),
            };
            let _ = writeln!(out, "\n{}{adapter}", r.backend);
            if let Some(b) = report
                .ceilings
                .iter()
                .find(|b| (b.backend, &b.adapter) == (r.backend, &r.adapter))
            {
                let c = &b.ceilings;
                let _ = write!(
                    out,
                    "  ceilings: FMA {:.1} GFLOP/s, memory {:.2} GB/s",
                    c.fma_gflops, c.memory_gbps
                );
                if let (Some(up), Some(down)) = (c.upload_gbps, c.readback_gbps) {
                    let _ = write!(out, ", upload {up:.2} GB/s, read-back {down:.2} GB/s");
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
