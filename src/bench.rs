//! `vlad bench`: per backend and per stage, the median of several runs on
//! seeded synthetic data, with throughput (descriptors/s, GB/s, GFLOP/s).
//!
//! Bytes and FLOPs per stage come from a simple model of what each stage
//! must at least read and write (stated in [`stage_work`]), so GB/s reads
//! as "effective bandwidth", comparable with a memory-bandwidth roofline.

use crate::backend::Backend;
use crate::encoder::Encoder;
use crate::error::{Result, VladError};
use crate::model::batch::Batch;
use crate::model::codebook::Codebook;
use crate::model::normalization::Normalization;
pub use crate::model::report::Ceilings;

pub mod dtype;
pub mod host;
pub mod suite;

pub use dtype::BenchDtype;

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
    /// Hard (the default) or soft assignment (SPEC §10).
    pub assignment: crate::model::assignment::Assignment,
    /// The GPU's setup (adapter, graphics APIs, tensor cores).
    pub gpu_options: crate::backend::options::GpuOptions,
    /// The element type of the synthetic descriptors (`vlad bench --dtype`).
    pub dtype: BenchDtype,
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
            assignment: crate::model::assignment::Assignment::Hard,
            gpu_options: Default::default(),
            dtype: BenchDtype::F32,
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
    /// Modelled FLOPs per modelled byte: the stage's x on a roofline
    /// (`None` where it does no counted arithmetic or moves no bytes).
    pub arithmetic_intensity: Option<f64>,
    /// The ceiling that bounds this stage (`"fma"`, `"memory"`, `"upload"`,
    /// `"readback"`), where one does.
    pub ceiling: Option<&'static str>,
    /// The stage's throughput as a percentage of that ceiling (GFLOP/s of
    /// FMA for `"fma"`, GB/s otherwise).
    pub percent_of_ceiling: Option<f64>,
}

/// The ceilings measured for one backend.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendCeilings {
    /// The backend that ran.
    pub backend: Backend,
    /// GPU adapter name, when the GPU ran.
    pub adapter: Option<String>,
    /// The adapter's kind (`discrete`, `software`…), when the GPU ran.
    pub adapter_kind: Option<&'static str>,
    /// The adapter's driver and its version, when the GPU ran.
    pub driver: Option<String>,
    /// Whether the numbers are a software adapter's (CPU emulation of a
    /// GPU, never GPU speed).
    pub emulation: bool,
    /// How the CPU's FMA ceiling ran (`avx512`, `avx2`, `portable`), on the
    /// cpu backends.
    pub fma_path: Option<&'static str>,
    /// The values.
    pub ceilings: Ceilings,
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
    /// Ceilings per backend that ran.
    pub ceilings: Vec<BackendCeilings>,
    /// The runs' notes (see [`crate::RunReport::notes`]), each once.
    pub notes: Vec<String>,
}

/// Bytes and FLOPs a stage must at least move and do, for `N` descriptors
/// of width `F`, `K` centroids and `T` images (f32 data, u32 labels/keys).
pub fn stage_work(stage: &str, n: f64, f: f64, k: f64, t: f64) -> (f64, f64) {
    stage_work_in(stage, n, f, k, t, 4.0)
}

/// [`stage_work`] for descriptors of `element_bytes` bytes each (1 for u8:
/// the descriptors are read, and uploaded, in their own width; modelled
/// as f32 a u8 upload ran at 202 % of the transfer ceiling).
pub fn stage_work_in(
    stage: &str,
    n: f64,
    f: f64,
    k: f64,
    t: f64,
    element_bytes: f64,
) -> (f64, f64) {
    let input = n * f * element_bytes;
    let output = t * k * f * 4.0;
    match stage {
        // Read descriptors and centroids; write label, key and value.
        "assign" | "assign (tensor cores)" => (input + k * f * 4.0 + n * 12.0, 2.0 * n * k * f),
        // Each pass reads and writes keys and values once (a lower bound);
        // the keys are sorted by label alone (rows come in image order).
        "sort" => {
            let bits = k.max(2.0).log2().ceil();
            let passes = (bits / 4.0).ceil().max(1.0);
            (passes * n * 16.0, 0.0)
        }
        // Gather every descriptor once plus its key and row index.
        "scan" | "aggregate" => (input + n * 8.0 + output, n * f),
        // Per-block counts; the scan already wrote the sums in place, so at
        // most every block is zeroed (only the empty ones are).
        "residual" => (t * k * 4.0 + output, 0.0),
        "normalize" => (2.0 * output, 3.0 * t * k * f),
        "upload" => (input, 0.0),
        // Host time recording commands: no modelled bytes or FLOPs.
        "setup" => (0.0, 0.0),
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
    let data = config
        .dtype
        .represent(crate::synthetic::clustered_images(t, l, f, k, config.seed));
    let flat = data
        .view()
        .into_shape_with_order((t * l, f))
        .map_err(|e| VladError::InvalidArgument(format!("bench data shape: {e}")))?;
    // The first K descriptors of distinct images: a fixed, untrained codebook
    // (training is not what is measured here), in the data's own values.
    let centroids = flat.select(
        ndarray::Axis(0),
        &(0..k).map(|i| (i * l) % (t * l)).collect::<Vec<_>>(),
    );
    let codebook = Codebook::new(centroids.view())?;
    match config.dtype {
        BenchDtype::U8 => {
            // Exact: `represent` left integers in 0..=255.
            let bytes = data.mapv(|x| x as u8);
            run_on(config, &codebook, &Batch::fixed(bytes.view())?)
        }
        // f16 values, widened to f32 on the host: the library takes no f16
        // array yet (dtype::BenchDtype::F16 says what is measured).
        BenchDtype::F32 | BenchDtype::F16 => run_on(config, &codebook, &Batch::fixed(data.view())?),
    }
}

/// The benchmark on given data (`vlad bench --descriptors …`): for each
/// backend of `config`, one warm-up then `config.repeats` timed encodes of
/// `batch` against `codebook`; per stage and in total, the median. The
/// shape fields of `config` are reported as given, not used.
pub fn run_on<E: crate::model::element::Element>(
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
    let mut notes: Vec<String> = Vec::new();
    let mut all_ceilings = Vec::new();
    // Transfer sizes for the ceilings: what this batch uploads (its
    // elements) and reads back (f32 encodings and u32 labels).
    let element_bytes = std::mem::size_of::<E>() as u64;
    let input_bytes = (batch.len() * codebook.dim()) as u64 * element_bytes;
    let output_bytes =
        (batch.images() * codebook.clusters() * codebook.dim() * 4 + batch.len() * 4) as u64;
    // Every encode writes into this one array (`encode_batch_into`): after
    // the warm-up its pages are touched, so read-back is timed into warm
    // memory, as a caller reusing an output buffer sees it, not first-touch
    // page faults on a fresh allocation.
    let mut output = ndarray::Array2::<f32>::from_elem(
        (batch.images(), codebook.clusters() * codebook.dim()),
        1.0,
    );
    for &backend in &config.backends {
        let encoder = Encoder::builder(codebook.clone())
            .assignment(config.assignment.clone())
            .normalization(config.normalization.clone())
            .backend(backend)
            .gpu_options(config.gpu_options.clone())
            .build();
        let warm = match encoder.encode_batch_into(batch, output.view_mut()) {
            Ok(report) => report,
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
        for note in &warm.notes {
            if !notes.contains(note) {
                notes.push(note.clone());
            }
        }
        let ceilings = measure_ceilings(&encoder, warm.backend, input_bytes, output_bytes)?;
        let mut reports = Vec::with_capacity(config.repeats);
        for _ in 0..config.repeats {
            reports.push(encoder.encode_batch_into(batch, output.view_mut())?);
        }
        let ran = warm.backend;
        let adapter = warm.adapter.clone();
        let software = warm.adapter_kind == Some(crate::backend::adapters::AdapterKind::Software)
            || adapter.as_deref().is_some_and(is_software_adapter);
        let mut stage_names: Vec<String> = warm
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
            let (bytes, flops) = stage_work_in(&stage, n, ff, kk, tt, element_bytes as f64);
            let per_s = |x: f64| if med > 0.0 { x / med } else { 0.0 };
            let (gbps, gflops) = (per_s(bytes) / 1e9, per_s(flops) / 1e9);
            let bound = ceilings.for_stage(&stage);
            let percent = bound.and_then(|(name, c)| {
                let achieved = if name == "fma" { gflops } else { gbps };
                (c > 0.0 && achieved > 0.0).then_some(100.0 * achieved / c)
            });
            rows.push(BenchRow {
                backend: ran,
                adapter: adapter.clone(),
                software_adapter: software,
                stage,
                median_seconds: med,
                min_seconds: times.iter().copied().fold(f64::INFINITY, f64::min),
                max_seconds: times.iter().copied().fold(0.0, f64::max),
                descriptors_per_second: per_s(n),
                gigabytes_per_second: gbps,
                gigaflops_per_second: gflops,
                arithmetic_intensity: (bytes > 0.0 && flops > 0.0).then(|| flops / bytes),
                ceiling: bound.map(|(name, _)| name),
                percent_of_ceiling: percent,
            });
        }
        let session = (ran == Backend::Gpu)
            .then(|| encoder.gpu_backend())
            .flatten();
        all_ceilings.push(BackendCeilings {
            backend: ran,
            adapter,
            adapter_kind: warm.adapter_kind.map(|k| k.name()),
            driver: session.map(|s| s.driver()),
            emulation: software,
            fma_path: (ran != Backend::Gpu)
                .then(|| crate::backend::cpu::ceilings::FmaPath::detect().name()),
            ceilings,
        });
    }
    Ok(BenchReport {
        config: config.clone(),
        rows,
        skipped,
        ceilings: all_ceilings,
        notes,
    })
}

/// The ceilings of the backend `encoder` ran on (`ran`): the CPU's, or the
/// adapter's, on the encoder's own device, with transfers of the sizes the
/// benchmark's upload and read-back move.
fn measure_ceilings(
    encoder: &Encoder,
    ran: Backend,
    input_bytes: u64,
    output_bytes: u64,
) -> Result<Ceilings> {
    if ran == Backend::Gpu {
        let session = encoder.gpu_backend().ok_or_else(|| {
            VladError::Gpu("the GPU session is gone: cannot measure its ceilings".to_string())
        })?;
        return session.ceilings(input_bytes, output_bytes);
    }
    // The working set of the stages: the descriptors and the encodings, so
    // a shape that fits in cache is bounded by the cache's bandwidth, not
    // the DRAM's (which a cache-resident stage beats).
    let memory_bytes = (input_bytes + output_bytes).clamp(1 << 16, 1 << 29);
    Ok(Ceilings {
        fma_gflops: crate::backend::cpu::ceilings::fma_gflops(),
        fma_f16_gflops: None,
        dispatch_seconds: None,
        memory_gbps: crate::backend::cpu::ceilings::memory_gbps(memory_bytes as usize),
        upload_gbps: None,
        readback_gbps: None,
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
        assert_eq!(report.ceilings.len(), 1);
        let c = report.ceilings[0].ceilings;
        assert!(c.fma_gflops > 0.0 && c.memory_gbps > 0.0, "{c:?}");
        for row in &report.rows {
            assert_eq!(row.backend, Backend::Cpu);
            if row.stage == "assign" || row.stage == "aggregate" {
                let p = row
                    .percent_of_ceiling
                    .expect("a bounded stage has a percentage");
                assert!(p.is_finite() && p > 0.0, "{row:?}");
            }
            assert!(row.min_seconds <= row.median_seconds && row.median_seconds <= row.max_seconds);
        }
    }
}
