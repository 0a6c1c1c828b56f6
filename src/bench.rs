//! `vlad bench`: per backend and per stage, the median of several runs on
//! seeded synthetic data, with throughput (descriptors/s, GB/s, GFLOP/s).
//!
//! Bytes and FLOPs per stage come from a simple model of what each stage
//! must at least read and write (stated in [`stage_work`]), so GB/s reads
//! as "effective bandwidth", comparable with a memory-bandwidth roofline.

use crate::backend::Backend;
use crate::codebook::Codebook;
use crate::encoder::Encoder;
use crate::error::{Result, VladError};
use crate::input::Batch;
use crate::normalization::Normalization;

/// The shape and protocol of a benchmark.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchConfig {
    /// Images `T`.
    pub images: usize,
    /// Descriptors per image `L`.
    pub per_image: usize,
    /// Descriptor width `F`.
    pub dim: usize,
    /// Centroids `K`.
    pub clusters: usize,
    /// Backends to measure (`Auto` is resolved to what runs).
    pub backends: Vec<Backend>,
    /// Timed runs per backend (after one untimed warm-up).
    pub repeats: usize,
    /// Normalization applied.
    pub normalization: Normalization,
    /// Data seed.
    pub seed: u64,
}

impl Default for BenchConfig {
    /// The SIFT-like shape of SPEC §8: T=200, L=500, F=128, K=64.
    fn default() -> Self {
        BenchConfig {
            images: 200,
            per_image: 500,
            dim: 128,
            clusters: 64,
            backends: vec![Backend::Cpu, Backend::Gpu],
            repeats: 7,
            normalization: Normalization::default(),
            seed: 1234,
        }
    }
}

/// One line of the result: a backend's stage (or `"total"`).
#[derive(Clone, Debug, PartialEq)]
pub struct BenchRow {
    /// The backend that ran.
    pub backend: Backend,
    /// GPU adapter name, when the GPU ran.
    pub adapter: Option<String>,
    /// Whether that adapter is a software rasterizer (lavapipe…): its
    /// numbers are CPU emulation, not GPU speed.
    pub software_adapter: bool,
    /// Stage name, or `"total"` for compute end to end.
    pub stage: String,
    /// Median seconds over the repeats.
    pub median_seconds: f64,
    /// Fastest and slowest repeat.
    pub min_seconds: f64,
    /// Slowest repeat.
    pub max_seconds: f64,
    /// Descriptors per second through this stage.
    pub descriptors_per_second: f64,
    /// Modelled bytes moved ÷ median time.
    pub gigabytes_per_second: f64,
    /// Modelled FLOPs ÷ median time (0 where the stage does no arithmetic
    /// worth counting).
    pub gigaflops_per_second: f64,
}

/// A backend that could not run, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    /// The backend asked for.
    pub backend: Backend,
    /// Why it did not run.
    pub reason: String,
}

/// Everything `vlad bench` prints.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchReport {
    /// The configuration measured.
    pub config: BenchConfig,
    /// Rows per backend and stage.
    pub rows: Vec<BenchRow>,
    /// Backends that were asked for and could not run.
    pub skipped: Vec<Skipped>,
}

/// Bytes and FLOPs a stage must at least move and do, for `N` descriptors
/// of width `F`, `K` centroids and `T` images (f32 data, u32 labels/keys).
pub fn stage_work(stage: &str, n: f64, f: f64, k: f64, t: f64) -> (f64, f64) {
    let input = n * f * 4.0;
    let output = t * k * f * 4.0;
    match stage {
        // Read descriptors and centroids; write label, key and value.
        "assign" => (input + k * f * 4.0 + n * 12.0, 2.0 * n * k * f),
        // Each pass reads and writes keys and values once (a lower bound).
        "sort" => {
            let bits = (t * k).max(2.0).log2().ceil();
            let passes = (bits / 4.0).ceil().max(1.0);
            (passes * n * 16.0, 0.0)
        }
        // Gather every descriptor once plus its key and row index.
        "scan" | "aggregate" => (input + n * 8.0 + output, n * f),
        "residual" => (output, 0.0),
        "normalize" => (2.0 * output, 3.0 * t * k * f),
        "upload" => (input, 0.0),
        "readback" => (output + n * 4.0, 0.0),
        // Compute end to end: the descriptors in, the encodings out.
        _ => (input + output, 2.0 * n * k * f),
    }
}

/// Names of software adapters whose timings must never be sold as GPU speed.
pub fn is_software_adapter(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        "llvmpipe",
        "lavapipe",
        "swiftshader",
        "warp",
        "basic render",
        "softpipe",
    ]
    .iter()
    .any(|s| lower.contains(s))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        xs[n / 2]
    } else {
        0.5 * (xs[n / 2 - 1] + xs[n / 2])
    }
}

/// Run the benchmark: for each backend, one warm-up then `repeats` timed
/// encodes of the same seeded data; per stage and in total, the median.
pub fn run(config: &BenchConfig) -> Result<BenchReport> {
    let (t, l, f, k) = (config.images, config.per_image, config.dim, config.clusters);
    if t == 0 || l == 0 || f == 0 || k == 0 {
        return Err(VladError::InvalidArgument(
            "bench needs images, per-image, dim and clusters all > 0".to_string(),
        ));
    }
    if config.repeats == 0 {
        return Err(VladError::InvalidArgument(
            "bench needs at least one repeat".to_string(),
        ));
    }
    let data = crate::synthetic::clustered_images(t, l, f, k, config.seed);
    let flat = data
        .view()
        .into_shape_with_order((t * l, f))
        .map_err(|e| VladError::InvalidArgument(format!("bench data shape: {e}")))?;
    // The first K descriptors of distinct images: a fixed, untrained codebook
    // (training is not what is measured here).
    let centroids = flat.select(
        ndarray::Axis(0),
        &(0..k).map(|i| (i * l) % (t * l)).collect::<Vec<_>>(),
    );
    let codebook = Codebook::new(centroids.view())?;
    let batch = Batch::fixed(data.view())?;
    run_on(config, &codebook, &batch)
}

/// The benchmark on given data (`vlad bench --descriptors …`): for each
/// backend of `config`, one warm-up then `config.repeats` timed encodes of
/// `batch` against `codebook`; per stage and in total, the median. The
/// shape fields of `config` are reported as given, not used.
pub fn run_on<E: crate::element::Element>(
    config: &BenchConfig,
    codebook: &Codebook,
    batch: &Batch<'_, E>,
) -> Result<BenchReport> {
    if config.repeats == 0 {
        return Err(VladError::InvalidArgument(
            "bench needs at least one repeat".to_string(),
        ));
    }
    batch.check_dim(codebook.dim())?;
    let (n, ff, kk, tt) = (
        batch.len() as f64,
        codebook.dim() as f64,
        codebook.clusters() as f64,
        batch.images() as f64,
    );

    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for &backend in &config.backends {
        let encoder = Encoder::new(codebook.clone())
            .normalization(config.normalization.clone())
            .backend(backend);
        let warm = match encoder.encode_batch(batch) {
            Ok(out) => out,
            Err(VladError::BackendUnavailable(reason)) => {
                skipped.push(Skipped { backend, reason });
                continue;
            }
            Err(e @ VladError::Gpu(_)) => {
                skipped.push(Skipped {
                    backend,
                    reason: e.to_string(),
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut reports = Vec::with_capacity(config.repeats);
        for _ in 0..config.repeats {
            reports.push(encoder.encode_batch(batch)?.report);
        }
        let ran = warm.report.backend;
        let adapter = warm.report.adapter.clone();
        let software = adapter.as_deref().is_some_and(is_software_adapter);
        let mut stage_names: Vec<String> = warm
            .report
            .stages
            .iter()
            .map(|(name, _)| name.to_string())
            .collect();
        stage_names.push("total".to_string());
        for stage in stage_names {
            let times: Vec<f64> = reports
                .iter()
                .map(|r| {
                    if stage == "total" {
                        r.seconds
                    } else {
                        r.stages.get(&stage).unwrap_or(0.0)
                    }
                })
                .collect();
            let med = median(times.clone());
            let (bytes, flops) = stage_work(&stage, n, ff, kk, tt);
            let per_s = |x: f64| if med > 0.0 { x / med } else { 0.0 };
            rows.push(BenchRow {
                backend: ran,
                adapter: adapter.clone(),
                software_adapter: software,
                stage,
                median_seconds: med,
                min_seconds: times.iter().copied().fold(f64::INFINITY, f64::min),
                max_seconds: times.iter().copied().fold(0.0, f64::max),
                descriptors_per_second: per_s(n),
                gigabytes_per_second: per_s(bytes) / 1e9,
                gigaflops_per_second: per_s(flops) / 1e9,
            });
        }
    }
    Ok(BenchReport {
        config: config.clone(),
        rows,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_software_names() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(is_software_adapter(
            "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)"
        ));
        assert!(!is_software_adapter("NVIDIA H100 80GB HBM3 (Vulkan)"));
    }

    #[test]
    fn cpu_bench_reports_every_stage_and_total() {
        let config = BenchConfig {
            images: 4,
            per_image: 16,
            dim: 8,
            clusters: 4,
            backends: vec![Backend::Cpu],
            repeats: 3,
            ..BenchConfig::default()
        };
        let report = run(&config).unwrap();
        let stages: Vec<&str> = report.rows.iter().map(|r| r.stage.as_str()).collect();
        assert!(stages.contains(&"assign"), "{stages:?}");
        assert_eq!(stages.last(), Some(&"total"));
        for row in &report.rows {
            assert_eq!(row.backend, Backend::Cpu);
            assert!(row.min_seconds <= row.median_seconds && row.median_seconds <= row.max_seconds);
        }
    }
}
