//! The encoder's route for SPEC §10 — soft (NetVLAD) assignment, or `rn`
//! with either assignment — to each backend. Kept out of `encoder.rs`,
//! which only asks whether this route applies. The GPU side is
//! [`crate::backend::gpu::GpuBackend::encode_weighted`].

use crate::backend::Backend;
use crate::encoder::BackendOutput;
use crate::error::{Result, VladError};
use crate::model::assignment::{Assignment, SoftParams};
use crate::model::batch::Batch;
use crate::model::codebook::Codebook;
use crate::model::element::Element;
use crate::model::normalization::Normalization;
use crate::model::report::StageTimes;

/// Encode `batch` on `backend` with `assignment` and `norm` (soft, or
/// `rn` first). Soft parameters are checked against the codebook here;
/// given labels make no sense with soft assignment and are refused. `gpu`
/// runs the GPU route (`gpu` and `auto`) with the checked parameters: the
/// encoder owns the GPU session and the rule of when `auto` may use it.
pub(crate) fn run_encode<E: Element>(
    codebook: &Codebook,
    assignment: &Assignment,
    norm: &Normalization,
    backend: Backend,
    batch: &Batch<'_, E>,
    stages: &mut StageTimes,
    gpu: impl FnOnce(Option<&SoftParams>, &mut StageTimes) -> Result<BackendOutput>,
) -> Result<BackendOutput> {
    let params = assignment.soft_params(codebook)?;
    if params.is_some() && batch.labels().is_some() {
        return Err(VladError::InvalidArgument(
            "labels cannot be given with soft assignment (every descriptor weighs on every centroid)"
                .to_string(),
        ));
    }
    match backend {
        Backend::Reference => {
            let (vlad, labels) = stages.time("reference", || {
                crate::backend::reference::encode(codebook, batch, assignment, norm)
            });
            Ok(BackendOutput {
                vlad: vlad.mapv(|x| x as f32),
                labels,
            })
        }
        Backend::Cpu => {
            let (vlad, labels) = crate::backend::cpu::soft::try_encode(
                codebook,
                params.as_ref(),
                batch,
                norm,
                stages,
            )?;
            Ok(BackendOutput { vlad, labels })
        }
        Backend::Gpu | Backend::Auto => gpu(params.as_ref(), stages),
    }
}
