//! The adapter's own ceilings, measured by `vlad bench` before it times the
//! stages, as vkpeak, clpeak and nvbandwidth measure them: host files of
//! `shaders/ceiling_fma.wgsl` (f32 FMA throughput: unrolled independent
//! chains), `shaders/ceiling_fma_f16.wgsl` (the same in f16, where the
//! adapter has SHADER_F16) and `shaders/ceiling_copy.wgsl` (device memory
//! bandwidth; with nothing to copy, the latency of one empty dispatch),
//! plus the mapped transfers host → device and device → host the
//! pipeline's upload and read-back are made of. CPU twins of the FMA
//! kernels: [`crate::twins::ceiling_fma`]; the CPU's own ceilings (and the
//! calibration both use): [`crate::backend::cpu::ceilings`]. Cooperative
//! matrix throughput is not measured here (examples/coop_probe.rs probes
//! the matrices on a device).
//!
//! Kernels are timed by wall clock around one submission and its wait,
//! calibrated until a run lasts long enough that the submission overhead
//! does not matter, best of a few runs.

use std::time::Instant;

use rayon::prelude::*;

use crate::backend::cpu::ceilings::calibrate;
use crate::backend::gpu::context::{GpuContext, dispatch_2d};
use crate::backend::gpu::stages::host::{uniform_block, wgsl};
use crate::backend::gpu::staging::{StagingBuffer, fill_upload, parallel_copy};
use crate::error::{Result, VladError};

const FMA_SHADER: &str = wgsl!("ceiling_fma");
const FMA_F16_SHADER: &str = wgsl!("ceiling_fma_f16");
const COPY_SHADER: &str = wgsl!("ceiling_copy");
/// The kernels' workgroup size.
const WORKGROUP: u32 = 256;
/// Independent chains per invocation of the FMA kernel.
const CHAINS: u64 = crate::twins::ceiling_fma::FMA_CHAINS as u64;
/// Invocations of the FMA kernel: enough to fill the largest GPUs
/// (an H100 keeps about 270 000 threads resident).
const FMA_INVOCATIONS: u32 = 1 << 20;
/// How long one calibrated run must at least take.
const MIN_SECONDS: f64 = 0.02;
/// Timed rounds of each transfer ceiling (after one untimed); the best is
/// kept.
const TRANSFER_ROUNDS: usize = 5;
/// Empty dispatches timed for the latency; the median is kept.
const LATENCY_RUNS: usize = 31;

/// What the adapter can do at best, each in its own unit.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct GpuCeilings {
    /// f32 FMA throughput, GFLOP/s (2 FLOPs per multiply-add).
    pub fma_gflops: f64,
    /// f16 FMA throughput, GFLOP/s, where the adapter has SHADER_F16.
    pub fma_f16_gflops: Option<f64>,
    /// Seconds from submitting one dispatch of a single empty workgroup to
    /// its completion seen by the host (median).
    pub dispatch_seconds: f64,
    /// Device memory bandwidth, GB/s (bytes read plus bytes written).
    pub memory_gbps: f64,
    /// Host → device through a mapped staging buffer, GB/s.
    pub upload_gbps: f64,
    /// Device → host through a mapped staging buffer, GB/s.
    pub readback_gbps: f64,
}

uniform_block! {
    /// The FMA kernel's uniform block.
    struct FmaParams {
        iters: u32,
        invocations: u32,
        mul: f32,
        add: f32,
    }
}

uniform_block! {
    /// The copy kernel's uniform block.
    struct CopyParams {
        len: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

/// What this file assumes of the two ceiling kernels (checked against naga
/// by `tests/gpu/shader_contract.rs`).
pub(crate) fn contracts() -> Vec<crate::backend::gpu::contract::ShaderContract> {
    use crate::backend::gpu::contract::ShaderContract;
    vec![
        ShaderContract {
            name: "ceiling_fma".into(),
            file: "ceiling_fma",
            source: FMA_SHADER.into(),
            constants: vec![("WG", WORKGROUP.into()), ("CHAINS", (CHAINS as u32).into())],
            entry_points: vec![("fma_chains", Some([WORKGROUP, 1, 1]))],
            uniform: FmaParams::layout(),
        },
        ShaderContract {
            name: "ceiling_fma_f16".into(),
            file: "ceiling_fma_f16",
            source: FMA_F16_SHADER.into(),
            constants: vec![("WG", WORKGROUP.into()), ("CHAINS", (CHAINS as u32).into())],
            entry_points: vec![("fma_chains_f16", Some([WORKGROUP, 1, 1]))],
            uniform: FmaParams::layout(),
        },
        ShaderContract {
            name: "ceiling_copy".into(),
            file: "ceiling_copy",
            source: COPY_SHADER.into(),
            constants: vec![("WG", WORKGROUP.into())],
            entry_points: vec![("copy", Some([WORKGROUP, 1, 1]))],
            uniform: CopyParams::layout(),
        },
    ]
}

/// Run the FMA kernel once on `invocations` invocations and return what it
/// stored (tested against [`crate::twins::ceiling_fma::fma_chains`]).
pub fn fma_chains(
    ctx: &GpuContext,
    invocations: u32,
    iters: u32,
    mul: f32,
    add: f32,
) -> Result<Vec<f32>> {
    let kernel = FmaKernel::new(ctx, Precision::F32, invocations)?;
    kernel.run(ctx, iters, mul, add)?;
    ctx.read_back("ceiling fma output", &kernel.out, 0, invocations as usize)
}

/// The f16 kernel once (tested against
/// [`crate::twins::ceiling_fma::fma_chains_f16`]); an error where the
/// adapter has no SHADER_F16.
pub fn fma_chains_f16(
    ctx: &GpuContext,
    invocations: u32,
    iters: u32,
    mul: f32,
    add: f32,
) -> Result<Vec<f32>> {
    let kernel = FmaKernel::new(ctx, Precision::F16, invocations)?;
    kernel.run(ctx, iters, mul, add)?;
    ctx.read_back("ceiling fma output", &kernel.out, 0, invocations as usize)
}

/// The precisions the FMA ceiling is measured in.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Precision {
    F32,
    F16,
}

struct FmaKernel {
    pipeline: wgpu::ComputePipeline,
    out: wgpu::Buffer,
    invocations: u32,
}

impl FmaKernel {
    fn new(ctx: &GpuContext, precision: Precision, invocations: u32) -> Result<Self> {
        let pipeline = match precision {
            Precision::F32 => ctx.pipeline("ceiling fma", FMA_SHADER, "fma_chains")?,
            Precision::F16 => {
                if !ctx.features.contains(wgpu::Features::SHADER_F16) {
                    return Err(VladError::Gpu(
                        "the f16 FMA ceiling needs SHADER_F16, which this adapter lacks".into(),
                    ));
                }
                ctx.pipeline("ceiling fma f16", FMA_F16_SHADER, "fma_chains_f16")?
            }
        };
        let out = ctx.storage_buffer("ceiling fma output", invocations as u64 * 4)?;
        Ok(FmaKernel {
            pipeline,
            out,
            invocations,
        })
    }

    /// One submission of `iters` steps, waited for; its wall seconds.
    fn run(&self, ctx: &GpuContext, iters: u32, mul: f32, add: f32) -> Result<f64> {
        let params = ctx.uniform(
            "ceiling fma params",
            &FmaParams {
                iters,
                invocations: self.invocations,
                mul,
                add,
            },
        )?;
        let group = ctx.bind_group(
            "ceiling fma",
            &self.pipeline,
            &[params.as_entire_binding(), self.out.as_entire_binding()],
        )?;
        let (x, y) = dispatch_2d(
            self.invocations.div_ceil(WORKGROUP),
            ctx.max_workgroups_per_dim(),
        );
        let mut encoder = ctx.encoder("ceiling fma");
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("ceiling fma"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(x, y, 1);
        }
        let started = Instant::now();
        ctx.submit_and_wait("ceiling fma", encoder)?;
        Ok(started.elapsed().as_secs_f64())
    }
}

/// f32 FMA throughput of the adapter, GFLOP/s.
pub fn fma_gflops(ctx: &GpuContext) -> Result<f64> {
    fma_gflops_in(ctx, Precision::F32)
}

/// f16 FMA throughput of the adapter, GFLOP/s; `None` without SHADER_F16.
pub fn fma_f16_gflops(ctx: &GpuContext) -> Result<Option<f64>> {
    if !ctx.features.contains(wgpu::Features::SHADER_F16) {
        return Ok(None);
    }
    fma_gflops_in(ctx, Precision::F16).map(Some)
}

fn fma_gflops_in(ctx: &GpuContext, precision: Precision) -> Result<f64> {
    let kernel = FmaKernel::new(ctx, precision, FMA_INVOCATIONS)?;
    let mut failure = None;
    let (iters, seconds) = calibrate(4, 1 << 20, MIN_SECONDS, 3, |iters| {
        match kernel.run(ctx, iters as u32, 0.5, 1.0) {
            Ok(s) => s,
            Err(e) => {
                failure.get_or_insert(e);
                f64::INFINITY
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let flops = 2.0 * (CHAINS * iters) as f64 * FMA_INVOCATIONS as f64;
    Ok(flops / seconds.max(1e-9) / 1e9)
}

/// Device memory bandwidth (copy kernel over `bytes` bytes), GB/s.
pub fn memory_gbps(ctx: &GpuContext, bytes: u64) -> Result<f64> {
    let bytes = fit(ctx, bytes).max(1 << 16) & !15;
    let len = u32::try_from(bytes / 16)
        .map_err(|_| VladError::Gpu(format!("copy ceiling of {bytes} bytes")))?;
    let pipeline = ctx.pipeline("ceiling copy", COPY_SHADER, "copy")?;
    let src = ctx.storage_buffer("ceiling copy src", bytes)?;
    let dst = ctx.storage_buffer("ceiling copy dst", bytes)?;
    let params = ctx.uniform(
        "ceiling copy params",
        &CopyParams {
            len,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        },
    )?;
    let group = ctx.bind_group(
        "ceiling copy",
        &pipeline,
        &[
            params.as_entire_binding(),
            src.as_entire_binding(),
            dst.as_entire_binding(),
        ],
    )?;
    let (x, y) = dispatch_2d(len.div_ceil(WORKGROUP), ctx.max_workgroups_per_dim());
    // Calibrate by repeating the dispatch within one submission.
    let mut failure = None;
    let (reps, seconds) = calibrate(1, 1 << 12, MIN_SECONDS, 3, |reps| {
        let mut encoder = ctx.encoder("ceiling copy");
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("ceiling copy"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &group, &[]);
            for _ in 0..reps {
                pass.dispatch_workgroups(x, y, 1);
            }
        }
        let started = Instant::now();
        match ctx.submit_and_wait("ceiling copy", encoder) {
            Ok(()) => started.elapsed().as_secs_f64(),
            Err(e) => {
                failure.get_or_insert(e);
                f64::INFINITY
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(2.0 * bytes as f64 * reps as f64 / seconds.max(1e-9) / 1e9)
}

/// The latency of one dispatch: a single workgroup of the copy kernel with
/// nothing to copy, recorded, submitted and waited for; the median of
/// `LATENCY_RUNS` (after one untimed), in seconds. It bounds how small a
/// chunk is worth submitting on its own.
pub fn dispatch_seconds(ctx: &GpuContext) -> Result<f64> {
    let pipeline = ctx.pipeline("ceiling dispatch", COPY_SHADER, "copy")?;
    let src = ctx.storage_buffer("ceiling dispatch src", 16)?;
    let dst = ctx.storage_buffer("ceiling dispatch dst", 16)?;
    let params = ctx.uniform(
        "ceiling dispatch params",
        &CopyParams {
            len: 0,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        },
    )?;
    let group = ctx.bind_group(
        "ceiling dispatch",
        &pipeline,
        &[
            params.as_entire_binding(),
            src.as_entire_binding(),
            dst.as_entire_binding(),
        ],
    )?;
    let mut times = Vec::with_capacity(LATENCY_RUNS);
    for round in 0..=LATENCY_RUNS {
        let started = Instant::now();
        let mut encoder = ctx.encoder("ceiling dispatch");
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("ceiling dispatch"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
        ctx.submit_and_wait("ceiling dispatch", encoder)?;
        if round > 0 {
            times.push(started.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// `bytes` capped at what one buffer and one binding may hold.
fn fit(ctx: &GpuContext, bytes: u64) -> u64 {
    bytes
        .min(ctx.max_binding_bytes())
        .min(ctx.limits.max_buffer_size)
}

/// Host → device: copy `bytes` from touched host memory into a mapped
/// staging buffer (in parallel), then the device copies it into a storage
/// buffer; seconds from the first byte written to the copy's completion.
/// Best of `TRANSFER_ROUNDS`, GB/s.
pub fn upload_gbps(ctx: &GpuContext, bytes: u64) -> Result<f64> {
    let bytes = fit(ctx, bytes).max(1 << 16) & !3;
    let host: Vec<u8> = (0..bytes as usize)
        .into_par_iter()
        .map(|i| i as u8)
        .collect();
    let staging = StagingBuffer::upload(ctx, "ceiling upload staging", bytes)?;
    let target = ctx.storage_buffer("ceiling upload target", bytes)?;
    let mut best = f64::INFINITY;
    // The first round touches the staging memory; it is not counted. The
    // staging buffer is mapped again between rounds, untimed: the pipeline
    // maps its staging ahead of the next upload too, and a ceiling that
    // counts work the stage does not is one the stage beats (it did, at
    // 108 % on lavapipe).
    for round in 0..=TRANSFER_ROUNDS {
        let started = Instant::now();
        fill_upload(
            ctx,
            &staging,
            bytes,
            "the upload ceiling",
            |offset, mut piece| {
                let len = piece.len();
                piece.copy_from_slice(&host[offset..offset + len]);
            },
        )?;
        let mut encoder = ctx.encoder("ceiling upload");
        encoder.copy_buffer_to_buffer(&staging.buffer, 0, &target, 0, bytes);
        ctx.submit_and_wait("ceiling upload", encoder)?;
        if round > 0 {
            best = best.min(started.elapsed().as_secs_f64());
        }
        staging.request_map(bytes);
        staging.wait_mapped(ctx, "the upload ceiling")?;
    }
    Ok(bytes as f64 / best.max(1e-9) / 1e9)
}

/// Device → host: the device copies `bytes` into a mapped staging buffer,
/// which is mapped and copied (in parallel) into touched host memory.
/// Best of `TRANSFER_ROUNDS`, GB/s.
pub fn readback_gbps(ctx: &GpuContext, bytes: u64) -> Result<f64> {
    let bytes = fit(ctx, bytes).max(1 << 16) & !3;
    let source = ctx.storage_buffer("ceiling readback source", bytes)?;
    let staging = ctx.checked("allocating the readback ceiling's staging", || {
        ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ceiling readback staging"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    })?;
    let mut host = vec![1u8; bytes as usize];
    let mut best = f64::INFINITY;
    for round in 0..=TRANSFER_ROUNDS {
        let started = Instant::now();
        let mut encoder = ctx.encoder("ceiling readback");
        encoder.copy_buffer_to_buffer(&source, 0, &staging, 0, bytes);
        ctx.submit_and_wait("ceiling readback", encoder)?;
        map(ctx, &staging, wgpu::MapMode::Read, bytes)?;
        {
            let view = staging
                .get_mapped_range(0..bytes)
                .map_err(|e| VladError::Gpu(format!("mapping the readback ceiling: {e}")))?;
            parallel_copy(&mut host, &view);
        }
        staging.unmap();
        if round > 0 {
            best = best.min(started.elapsed().as_secs_f64());
        }
    }
    std::hint::black_box(&host);
    Ok(bytes as f64 / best.max(1e-9) / 1e9)
}

/// Map `buffer` and wait for it.
fn map(ctx: &GpuContext, buffer: &wgpu::Buffer, mode: wgpu::MapMode, bytes: u64) -> Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    buffer.map_async(mode, 0..bytes, move |r| {
        let _ = tx.send(r);
    });
    ctx.device
        .poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: None,
        })
        .map_err(|e| VladError::Gpu(format!("mapping a ceiling buffer: {e}")))?;
    rx.recv()
        .map_err(|_| VladError::Gpu("mapping a ceiling buffer: no answer".into()))?
        .map_err(|e| VladError::Gpu(format!("mapping a ceiling buffer: {e}")))?;
    ctx.check_health()
}

/// A large transfer, as nvbandwidth times one: per-transfer latency is
/// then noise.
const LARGE_TRANSFER: u64 = 64 << 20;

/// The faster of `measure` at `bytes` and at [`LARGE_TRANSFER`]: a large
/// transfer shows the link's rate, the stage's own size what a transfer
/// that fits in the caches does (on a software adapter the "device" is
/// host memory, and a small upload from cache beats a large one).
fn best_of_sizes(
    ctx: &GpuContext,
    bytes: u64,
    measure: fn(&GpuContext, u64) -> Result<f64>,
) -> Result<f64> {
    let at_size = measure(ctx, bytes)?;
    if bytes >= LARGE_TRANSFER {
        return Ok(at_size);
    }
    Ok(at_size.max(measure(ctx, LARGE_TRANSFER)?))
}

/// Every ceiling of `ctx`, the transfers at the sizes the benchmark's
/// upload and read-back move and at a large one (the faster of the two).
pub fn measure(ctx: &GpuContext, upload_bytes: u64, readback_bytes: u64) -> Result<GpuCeilings> {
    Ok(GpuCeilings {
        fma_gflops: fma_gflops(ctx)?,
        fma_f16_gflops: fma_f16_gflops(ctx)?,
        dispatch_seconds: dispatch_seconds(ctx)?,
        memory_gbps: memory_gbps(ctx, upload_bytes.clamp(1 << 24, 1 << 28))?,
        upload_gbps: best_of_sizes(ctx, upload_bytes, upload_gbps)?,
        readback_gbps: best_of_sizes(ctx, readback_bytes, readback_gbps)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shader_constants_match_the_host() {
        assert!(FMA_SHADER.contains(&format!("const WG: u32 = {WORKGROUP}u;")));
        assert!(FMA_SHADER.contains(&format!("const CHAINS: u32 = {CHAINS}u;")));
        assert!(FMA_F16_SHADER.contains(&format!("const WG: u32 = {WORKGROUP}u;")));
        assert!(FMA_F16_SHADER.contains(&format!("const CHAINS: u32 = {CHAINS}u;")));
        assert!(COPY_SHADER.contains(&format!("const WG: u32 = {WORKGROUP}u;")));
    }
}
