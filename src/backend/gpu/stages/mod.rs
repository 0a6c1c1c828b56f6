//! One host file per WGSL stage in `shaders/`: its uniforms, bindings and
//! the dispatch that records it. Each is tested against its CPU twin
//! ([`crate::twins`]) on the same inputs.
//!
//! Here too: the stages a session compiles ([`CompiledStages`]), and the
//! list of every shader variant the host compiles with what it assumes of
//! each ([`contracts`], checked against naga by
//! `tests/gpu/shader_contract.rs`).

pub mod assign;
pub mod assign_coop;
pub mod ceilings;
mod host;
pub mod normalize;
pub mod radix_sort;
pub mod residual;
pub mod segmented_scan;
pub mod soft_aggregate;
pub mod soft_logits;
pub mod unit_residual;
pub mod whiten;

use std::sync::{Arc, Mutex};

use crate::backend::gpu::context::{GpuContext, check_buffer_sizes, descriptor_bytes};
use crate::backend::gpu::contract::ShaderContract;
use crate::backend::gpu::tensor_cores::TensorCores;
use crate::backend::gpu::timing::StageClock;
use crate::error::{Result, VladError};

use assign::{AssignJob, AssignStage, AssignVariant};
use assign_coop::AssignCoopStage;
use normalize::NormalizeStage;
use radix_sort::RadixSortStage;
use residual::ResidualStage;
use segmented_scan::SegmentedScanStage;
use soft_aggregate::SoftAggregateStage;
use soft_logits::SoftLogitsStage;
use unit_residual::UnitResidualStage;

/// A chunk's descriptors as the stages read them (assignment, segmented
/// scan, soft logits, soft aggregation, unit residuals): one noun for what
/// each job would otherwise repeat, with the checks they share.
#[derive(Clone, Copy)]
pub struct Descriptors<'a> {
    /// `rows × dim` values: f32 row-major, or (when `u8_input`) bytes
    /// packed four per `u32` word.
    pub buffer: &'a wgpu::Buffer,
    /// Whether `buffer` holds packed u8 (widened on the device).
    pub u8_input: bool,
    /// Rows in the chunk.
    pub rows: u32,
    /// Descriptor width F.
    pub dim: u32,
}

impl Descriptors<'_> {
    /// `rows · dim`: the values, widened so that it cannot overflow.
    pub fn values(&self) -> u64 {
        self.rows as u64 * self.dim as u64
    }

    /// The bytes `buffer` must hold at least.
    pub fn bytes(&self) -> u64 {
        descriptor_bytes(self.values(), self.u8_input)
    }

    /// `(rows, F, K)` widened for size arithmetic, or `stage`'s error
    /// unless `F ≥ 1`, `K ≥ 1`, `rows · max(F, K)` fits the shaders'
    /// 32-bit index and `buffer` holds the rows.
    pub fn checked_sizes(&self, stage: &str, clusters: u32) -> Result<(u64, u64, u64)> {
        let (rows, dim, k) = (self.rows as u64, self.dim as u64, clusters as u64);
        if dim == 0 || k == 0 || rows * dim.max(k) > u32::MAX as u64 {
            return Err(VladError::InvalidArgument(format!(
                "{stage}: {rows} rows, F = {dim}, K = {k} (F and K must be ≥ 1, and \
                 rows × max(F, K) within the shader's 32-bit index)"
            )));
        }
        check_buffer_sizes(stage, &[("descriptors", self.buffer, self.bytes())])?;
        Ok((rows, dim, k))
    }
}

/// The extent of a chunk's blocks: `images × clusters` blocks of `dim`
/// values each, laid out `(t, k, f)`. What the segmented scan leaves, what
/// the residual layout writes and what `mass` divides, so one noun.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockShape {
    /// Images T.
    pub images: u32,
    /// Centroids K.
    pub clusters: u32,
    /// Descriptor width F.
    pub dim: u32,
}

impl BlockShape {
    /// `images · clusters`: the blocks, and the counts (one per block).
    pub fn blocks(&self) -> u64 {
        self.images as u64 * self.clusters as u64
    }

    /// `images · clusters · dim`: the values of all blocks.
    pub fn values(&self) -> u64 {
        self.blocks() * self.dim as u64
    }
}

/// Where a chunk's blocks go: their extent, the `images × clusters × dim`
/// f32 blocks and one count per block (the descriptor counts `n_{t,k}` as
/// u32 under hard assignment, the soft counts as f32 under soft). The
/// residual layout writes both; `mass` divides the one by the other.
#[derive(Clone, Copy)]
pub struct Blocks<'a> {
    /// Their extent.
    pub shape: BlockShape,
    /// `images × clusters × dim` f32, block `(t, k)` at `(t · K + k) · F`.
    pub values: &'a wgpu::Buffer,
    /// `images × clusters` counts, one per block.
    pub counts: &'a wgpu::Buffer,
}

/// Every variant of every stage the host compiles.
pub fn contracts() -> Result<Vec<ShaderContract>> {
    let mut contracts = Vec::new();
    contracts.extend(assign::contracts()?);
    contracts.extend(assign_coop::contracts()?);
    contracts.extend(radix_sort::contracts()?);
    contracts.extend(segmented_scan::contracts());
    contracts.extend(residual::contracts());
    contracts.extend(normalize::contracts()?);
    contracts.extend(ceilings::contracts());
    contracts.extend(soft_logits::contracts()?);
    contracts.extend(soft_aggregate::contracts()?);
    contracts.extend(unit_residual::contracts()?);
    contracts.extend(whiten::contracts()?);
    Ok(contracts)
}

/// The stages a session runs: those of hard assignment compiled up front,
/// those only soft assignment and `rn` use (`WeightedStages`) on first
/// use, so a session that never runs them does not pay for them.
pub struct CompiledStages {
    /// Nearest-centroid labels and sort keys.
    pub assign: AssignStage,
    /// The tensor-core variant of `assign`, when asked for, available and
    /// checked on this device; it then runs instead of `assign`.
    pub assign_coop: Option<AssignCoopStage>,
    /// Whether tensor cores are used, and if asked for but not, why.
    pub tensor_cores: TensorCores,
    /// Stable key–value radix sort.
    pub sort: RadixSortStage,
    /// Segmented sums over runs of equal keys.
    pub scan: SegmentedScanStage,
    /// Sums into the `(t, k, f)` layout, with counts.
    pub residual: ResidualStage,
    /// Normalization steps.
    pub normalize: NormalizeStage,
    /// Whitening's projection (SPEC §14), after the normalization.
    pub whiten: whiten::WhitenStage,
    weighted: Mutex<Option<Arc<WeightedStages>>>,
}

/// The stages of soft assignment and of hard assignment with `rn`.
pub(crate) struct WeightedStages {
    /// Soft logits, softmax and labels.
    pub(crate) logits: SoftLogitsStage,
    /// Per-image weighted sums and soft counts, and `mass` by them.
    pub(crate) aggregate: SoftAggregateStage,
    /// Unit residuals (hard assignment with `rn`).
    pub(crate) unit: UnitResidualStage,
}

impl CompiledStages {
    /// Compile the hard route's shaders for `ctx` (and check the
    /// tensor-core assign, when asked for).
    pub fn new(ctx: &GpuContext) -> Result<Self> {
        let (assign_coop, tensor_cores) = assign_coop::select(ctx);
        Ok(CompiledStages {
            assign: AssignStage::new(ctx)?,
            assign_coop,
            tensor_cores,
            sort: RadixSortStage::new(ctx)?,
            scan: SegmentedScanStage::new(ctx)?,
            residual: ResidualStage::new(ctx)?,
            normalize: NormalizeStage::new(ctx)?,
            whiten: whiten::WhitenStage::new(ctx)?,
            weighted: Mutex::new(None),
        })
    }

    /// The stages of soft assignment and `rn`, compiled on the first call
    /// (setup, like the rest). A compilation that fails is tried again by
    /// the next call.
    pub(crate) fn weighted(&self, ctx: &GpuContext) -> Result<Arc<WeightedStages>> {
        let mut held = self
            .weighted
            .lock()
            .map_err(|_| VladError::Gpu("the weighted stage cache was poisoned".to_string()))?;
        if let Some(stages) = &*held {
            return Ok(stages.clone());
        }
        let stages = Arc::new(WeightedStages {
            logits: SoftLogitsStage::new(),
            aggregate: SoftAggregateStage::new(ctx)?,
            unit: UnitResidualStage::new(ctx)?,
        });
        *held = Some(stages.clone());
        Ok(stages)
    }

    /// The name timings give the assignment stage: `"assign"`, or
    /// `"assign (tensor cores)"` when the tensor-core variant runs.
    pub fn assign_stage_name(&self) -> &'static str {
        match self.assign_coop {
            Some(_) => assign_coop::STAGE_NAME,
            None => "assign",
        }
    }

    /// Record the assignment of `job` (the tensor-core variant when it was
    /// selected, else the plain one) and time it under its stage name.
    pub(crate) fn record_assign(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        clock: &mut StageClock<'_>,
        job: &AssignJob<'_>,
    ) -> Result<()> {
        match &self.assign_coop {
            Some(coop) => coop.record(ctx, encoder, job)?,
            None => self.assign.record(ctx, encoder, job)?,
        }
        clock.lap(encoder, self.assign_stage_name());
        Ok(())
    }
}
