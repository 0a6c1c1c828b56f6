//! What ran and how long each stage took: the data behind `--json` and
//! `vlad bench`.

use std::time::Instant;

use crate::backend::adapters::AdapterKind;
use crate::model::choice::Backend;

/// Seconds per named stage, in the order the stages ran.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StageTimes {
    stages: Vec<(String, f64)>,
}

impl StageTimes {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Run `f`, add its wall time to stage `name`, return its result.
    pub fn time<T>(&mut self, name: &str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.add(name, start.elapsed().as_secs_f64());
        out
    }

    /// Add `seconds` to stage `name` (stages run per chunk accumulate).
    pub fn add(&mut self, name: &str, seconds: f64) {
        match self.stages.iter_mut().find(|(n, _)| n == name) {
            Some((_, s)) => *s += seconds,
            None => self.stages.push((name.to_string(), seconds)),
        }
    }

    /// `(name, seconds)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.stages.iter().map(|(n, s)| (n.as_str(), *s))
    }

    /// Seconds of one stage, if it ran.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.stages.iter().find(|(n, _)| n == name).map(|(_, s)| *s)
    }
}

/// What an encode or assign call did. Fields may be added: read them,
/// do not build one.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RunReport {
    /// The backend that ran (never `Auto`).
    pub backend: Backend,
    /// The GPU adapter's name when the GPU ran.
    pub adapter: Option<String>,
    /// The GPU adapter's kind when the GPU ran: `Software` means the shaders
    /// ran on a CPU rasterizer (lavapipe…), not GPU speed.
    pub adapter_kind: Option<AdapterKind>,
    /// Compute seconds, input validation included, no file I/O and no GPU
    /// setup.
    pub seconds: f64,
    /// GPU setup in this call (adapter, device, shader compilation): 0 when
    /// the session was already open, or for the CPU backends.
    pub setup_seconds: f64,
    /// Per-stage seconds (GPU timestamps where the adapter has them).
    pub stages: StageTimes,
    /// Why `Auto` did not use the GPU, when it did not.
    pub fallback_reason: Option<String>,
    /// What else the caller should know about how it ran, one sentence
    /// each (e.g. tensor cores asked for but not usable here, and why).
    pub notes: Vec<String>,
}

/// What a backend can do at best, measured by small calibrated kernels
/// before the stages are timed (see `crate::backend::cpu::ceilings` and
/// `crate::backend::gpu::stages::ceilings`).
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Ceilings {
    /// f32 FMA throughput, GFLOP/s: the CPU's widest vector FMA on every
    /// core, or the GPU's unrolled FMA chains.
    pub fma_gflops: f64,
    /// f16 FMA throughput, GFLOP/s (GPU with SHADER_F16 only).
    pub fma_f16_gflops: Option<f64>,
    /// Latency of one empty dispatch, seconds (GPU only).
    pub dispatch_seconds: Option<f64>,
    /// Memory bandwidth, GB/s: on the GPU a device copy (bytes read plus
    /// written), on the CPU the faster of a read and a copy over the
    /// stages' working set.
    pub memory_gbps: f64,
    /// Host → device through mapped staging, GB/s (GPU only).
    pub upload_gbps: Option<f64>,
    /// Device → host through mapped staging, GB/s (GPU only).
    pub readback_gbps: Option<f64>,
}

impl Ceilings {
    /// The ceiling bounding `stage`, its name and value (GFLOP/s for
    /// `"fma"`, GB/s for the others); `None` for stages no single ceiling
    /// bounds (`"total"`, a whole-submission `"compute"`).
    pub fn for_stage(&self, stage: &str) -> Option<(&'static str, f64)> {
        match stage {
            "assign" => Some(("fma", self.fma_gflops)),
            "sort" | "scan" | "residual" | "normalize" | "aggregate" | "combine" => {
                Some(("memory", self.memory_gbps))
            }
            "upload" => self.upload_gbps.map(|c| ("upload", c)),
            "readback" => self.readback_gbps.map(|c| ("readback", c)),
            _ => None,
        }
    }
}
