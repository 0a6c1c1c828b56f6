//! Host side of `shaders/normalize.wgsl`: mass, power α, intra and l2 in
//! the order given, with fixed-order reductions. CPU twin:
//! [`crate::twins::normalize`] (its `mass` is the shader's bit for bit; the
//! other steps sum in a different order: the two agree within SPEC §4's
//! tolerance, not bit for bit).
//!
//! One dispatch per step, all in one compute pass, except that `power`
//! directly followed by `intra` or `l2` (the default `ssr,l2`) is one
//! dispatch: the segment kernel applies the power as it reads each element
//! and writes each element once. `intra` and `l2` share a kernel that
//! normalizes equal-length segments (blocks of F, or rows of K·F) with a
//! group of invocations per segment, sized so that each invocation handles
//! about [`ELEMENTS_PER_LANE`] elements: one workgroup serves many short
//! blocks, and a long row gets a whole workgroup.
//!
//! # Work
//!
//! A segment is read twice and written once: one pass sums the squares
//! (for the fused `ssr`, Σ|x|, since ‖ssr(x)‖² = Σ|x|) and finds the
//! largest, one pass scales. Only a segment whose largest square lies
//! outside [2⁻⁸⁰, 2⁸⁰] takes one more read, for the scaled form below.
//!
//! # Error
//!
//! In range, each squared term meets at most one rounding (none for Σ|x|),
//! at most 31 sequential additions, `⌈log₂ blocks⌉ + 1` pairwise ones and
//! 8 in the workgroup tree; squares that underflow lose at most
//! 2³²·2⁻¹⁵⁰ in all, below 2⁻³⁸ of a sum whose largest term is ≥ 2⁻⁸⁰.
//! Out of range the norm is `m·sqrt(Σ (x/m)²)`, `m = max |x|` (no overflow
//! or underflow of the squares), one division more per term. For a row of
//! 2²⁰ elements that is at most about 50 roundings, so the sum is within
//! `γ₅₀ ≈ 3·10⁻⁶` relative, the norm within half that, and every normalized
//! element (|y| ≤ 1) within about `2·10⁻⁶` absolute of the exact value,
//! below SPEC §4's `1e-5`.

use crate::backend::gpu::context::{GpuContext, dispatch_2d};
use crate::backend::gpu::contract::ShaderContract;
use crate::backend::gpu::specialize::specialize;
use crate::backend::gpu::stages::host::{uniform_block, wgsl};
use crate::error::{Result, VladError};
use crate::model::normalization::{Normalization, Step};

const SHADER: &str = wgsl!("normalize");
/// The shader's workgroup size.
const WORKGROUP: u32 = 256;
/// Elements one invocation aims to handle in `intra` / `l2`.
pub const ELEMENTS_PER_LANE: u32 = 16;

/// Blocks to normalize in place.
pub struct NormalizeJob<'a> {
    /// In/out: `images × clusters × dim` f32 (one `K·F` row per image).
    pub blocks: &'a wgpu::Buffer,
    /// `images × clusters` u32 counts (read by `mass`).
    pub counts: &'a wgpu::Buffer,
    /// Number of images (rows).
    pub images: u32,
    /// Number of centroids K.
    pub clusters: u32,
    /// Descriptor width F.
    pub dim: u32,
    /// The steps, applied in order.
    pub normalization: &'a Normalization,
}

uniform_block! {
    /// The shader's `Params` (uniform), one per dispatch.
    struct Params {
        len: u32,
        segments: u32,
        lanes: u32,
        dim: u32,
        alpha: f32,
        _pad: [u32; 3],
    }
}

/// The `power` step `scale_segments` applies as it reads (the shader's
/// `FUSED_POWER`): one compiled variant each.
#[derive(Clone, Copy, Debug, PartialEq)]
enum FusedPower {
    None = 0,
    SquareRoot = 1,
    Alpha = 2,
}

impl FusedPower {
    const ALL: [FusedPower; 3] = [FusedPower::None, FusedPower::SquareRoot, FusedPower::Alpha];

    fn of(alpha: Option<f32>) -> FusedPower {
        match alpha {
            None => FusedPower::None,
            Some(0.5) => FusedPower::SquareRoot,
            Some(_) => FusedPower::Alpha,
        }
    }
}

/// The shader with `FUSED_POWER` set.
fn shader_source(fused: FusedPower) -> Result<String> {
    specialize(SHADER, &[("FUSED_POWER", (fused as u32).into())])
}

/// `scale_segments` compiled with `fused` (`intra` / `l2`, after it).
fn scale_pipeline(ctx: &GpuContext, fused: FusedPower) -> Result<wgpu::ComputePipeline> {
    let label = format!("normalize {fused:?} power + intra/l2");
    ctx.pipeline(&label, &shader_source(fused)?, "scale_segments")
}

/// What this file assumes of the shader, per compiled variant.
pub(crate) fn contracts() -> Result<Vec<ShaderContract>> {
    let mut contracts = Vec::new();
    for fused in FusedPower::ALL {
        contracts.push(ShaderContract {
            name: format!("normalize fused={fused:?}"),
            file: "normalize",
            source: shader_source(fused)?,
            constants: vec![
                ("WG", WORKGROUP.into()),
                ("FUSED_POWER", (fused as u32).into()),
            ],
            entry_points: vec![
                ("mass", Some([WORKGROUP, 1, 1])),
                ("power", Some([WORKGROUP, 1, 1])),
                ("scale_segments", Some([WORKGROUP, 1, 1])),
            ],
            uniform: Params::layout(),
        });
    }
    Ok(contracts)
}

/// The compiled normalization pipelines.
pub struct NormalizeStage {
    mass: wgpu::ComputePipeline,
    power: wgpu::ComputePipeline,
    /// `scale_segments`, indexed by [`FusedPower`].
    scale: [wgpu::ComputePipeline; 3],
}

impl NormalizeStage {
    /// Compile the shader for this device.
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        Ok(NormalizeStage {
            mass: ctx.pipeline("normalize mass", SHADER, "mass")?,
            power: ctx.pipeline("normalize power", SHADER, "power")?,
            scale: [
                scale_pipeline(ctx, FusedPower::None)?,
                scale_pipeline(ctx, FusedPower::SquareRoot)?,
                scale_pipeline(ctx, FusedPower::Alpha)?,
            ],
        })
    }

    /// Record the steps into `encoder` (nothing for an empty list).
    pub fn record(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        job: &NormalizeJob<'_>,
    ) -> Result<()> {
        let blocks = job.images as u64 * job.clusters as u64;
        let elements = blocks * job.dim as u64;
        if elements == 0 || job.normalization.steps().is_empty() {
            return Ok(());
        }
        if elements > u32::MAX as u64 {
            return Err(VladError::Gpu(format!(
                "normalization of {elements} elements: at most {} per dispatch",
                u32::MAX
            )));
        }
        if job.blocks.size() < elements * 4 {
            return Err(VladError::Gpu(format!(
                "normalization blocks buffer holds {} bytes, needs {}",
                job.blocks.size(),
                elements * 4
            )));
        }
        if job.normalization.needs_counts() && job.counts.size() < blocks * 4 {
            return Err(VladError::Gpu(format!(
                "normalization counts buffer holds {} bytes, needs {}",
                job.counts.size(),
                blocks * 4
            )));
        }
        let elements = elements as u32;
        let row = job.clusters * job.dim;

        let mut dispatches = Vec::with_capacity(job.normalization.steps().len());
        for dispatch in plan(job.normalization.steps()) {
            let base = Params {
                len: elements,
                segments: 0,
                lanes: 1,
                dim: job.dim,
                alpha: 1.0,
                _pad: [0; 3],
            };
            let fused = |alpha: Option<f32>| Params {
                alpha: alpha.unwrap_or(1.0),
                ..base
            };
            let scale = |alpha: Option<f32>| &self.scale[FusedPower::of(alpha) as usize];
            let (pipeline, params, workgroups) = match dispatch {
                Dispatch::Mass => (&self.mass, base, elements.div_ceil(WORKGROUP)),
                Dispatch::Power(alpha) => (
                    &self.power,
                    Params { alpha, ..base },
                    elements.div_ceil(WORKGROUP),
                ),
                Dispatch::Intra(alpha) => {
                    segment_dispatch(scale(alpha), fused(alpha), job.dim, blocks as u32)
                }
                Dispatch::L2(alpha) => {
                    segment_dispatch(scale(alpha), fused(alpha), row, job.images)
                }
            };
            let uniform = ctx.uniform("normalize params", &params)?;
            let mut buffers = vec![uniform.as_entire_binding(), job.blocks.as_entire_binding()];
            if matches!(dispatch, Dispatch::Mass) {
                buffers.push(job.counts.as_entire_binding());
            }
            let group = ctx.bind_group("normalize", pipeline, &buffers)?;
            dispatches.push((pipeline, group, workgroups));
        }

        let max_per_dim = ctx.max_workgroups_per_dim();
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("normalize"),
            timestamp_writes: None,
        });
        for (pipeline, group, workgroups) in &dispatches {
            let (x, y) = dispatch_2d(*workgroups, max_per_dim);
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, group, &[]);
            pass.dispatch_workgroups(x, y, 1);
        }
        Ok(())
    }
}

/// One dispatch of the shader. `Intra`/`L2` carry the α of a `power` step
/// fused into them (applied as the segment is read).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Dispatch {
    Mass,
    Power(f32),
    Intra(Option<f32>),
    L2(Option<f32>),
}

/// The dispatches for `steps`, in order: `power` directly followed by
/// `intra` or `l2` becomes one dispatch; `rn` acts on residuals during
/// aggregation, not here.
fn plan(steps: &[Step]) -> Vec<Dispatch> {
    let mut out: Vec<Dispatch> = Vec::with_capacity(steps.len());
    for step in steps {
        let pending_power = match out.last() {
            Some(Dispatch::Power(alpha)) => Some(*alpha),
            _ => None,
        };
        let segment = match step {
            Step::Mass => {
                out.push(Dispatch::Mass);
                continue;
            }
            Step::Power(alpha) => {
                out.push(Dispatch::Power(*alpha));
                continue;
            }
            Step::ResidualNorm => continue,
            Step::Intra => Dispatch::Intra as fn(Option<f32>) -> Dispatch,
            Step::L2 => Dispatch::L2,
        };
        if pending_power.is_some() {
            out.pop();
        }
        out.push(segment(pending_power));
    }
    out
}

/// Params and workgroup count of `scale_segments` over `segments`
/// segments of `len` elements: a power-of-two group of lanes per segment,
/// about `ELEMENTS_PER_LANE` elements per lane, at most a workgroup.
fn segment_dispatch(
    pipeline: &wgpu::ComputePipeline,
    base: Params,
    len: u32,
    segments: u32,
) -> (&wgpu::ComputePipeline, Params, u32) {
    let lanes = lanes_per_segment(len);
    let params = Params {
        len,
        segments,
        lanes,
        ..base
    };
    (pipeline, params, segments.div_ceil(WORKGROUP / lanes))
}

/// Invocations sharing one segment of `len` elements.
fn lanes_per_segment(len: u32) -> u32 {
    len.div_ceil(ELEMENTS_PER_LANE)
        .next_power_of_two()
        .clamp(1, WORKGROUP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_is_fused_into_the_segment_step_right_after_it() {
        use Dispatch::*;
        assert_eq!(plan(&[Step::Power(0.5), Step::L2]), vec![L2(Some(0.5))]);
        assert_eq!(
            plan(&[Step::Power(0.5), Step::Intra, Step::L2]),
            vec![Intra(Some(0.5)), L2(None)]
        );
        assert_eq!(
            plan(&[Step::Mass, Step::Power(2.0)]),
            vec![Mass, Power(2.0)]
        );
        assert_eq!(
            plan(&[Step::Power(0.5), Step::Mass, Step::L2]),
            vec![Power(0.5), Mass, L2(None)]
        );
        assert_eq!(
            plan(&[
                Step::ResidualNorm,
                Step::Power(0.3),
                Step::Power(0.5),
                Step::L2
            ]),
            vec![Power(0.3), L2(Some(0.5))]
        );
        assert_eq!(plan(&[Step::Intra]), vec![Intra(None)]);
    }

    #[test]
    fn each_fused_power_has_its_variant() {
        assert_eq!(FusedPower::of(None), FusedPower::None);
        assert_eq!(FusedPower::of(Some(0.5)), FusedPower::SquareRoot);
        assert_eq!(FusedPower::of(Some(0.3)), FusedPower::Alpha);
        for (i, fused) in FusedPower::ALL.into_iter().enumerate() {
            assert_eq!(fused as usize, i, "the pipelines are indexed by it");
        }
    }

    #[test]
    fn lanes_cover_short_blocks_and_long_rows() {
        assert_eq!(lanes_per_segment(1), 1);
        assert_eq!(lanes_per_segment(16), 1);
        assert_eq!(lanes_per_segment(17), 2);
        assert_eq!(lanes_per_segment(128), 8);
        assert_eq!(lanes_per_segment(256 * 128), WORKGROUP);
    }
}
