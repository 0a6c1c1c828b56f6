//! The CPU backend's route for SPEC §10: soft (NetVLAD) assignment and
//! residual normalization (`rn`), with hard or soft assignment.
//!
//! * soft: [`super::soft_aggregate`] (logits GEMM, stable softmax,
//!   `Aᵀ·X − (ΣA)·C` per image), `rn` folded into the weights;
//! * hard with `rn`: [`mod@super::assign`]'s labels, then
//!   [`super::residual_norm::aggregate_hard`];
//!
//! then [`super::normalize`] with the real-valued counts.

use ndarray::Array2;

use crate::error::Result;
use crate::model::assignment::SoftParams;
use crate::model::batch::Batch;
use crate::model::codebook::Codebook;
use crate::model::element::Element;
use crate::model::normalization::Normalization;
use crate::model::report::StageTimes;

/// Encode `batch` into `(T, K·F)` with soft assignment when `params` is
/// given (else hard, the batch's labels or computed ones), honouring `rn`.
/// Returns the encoding and each descriptor's label (hard, or the centroid
/// of largest soft weight). Stages "assign" (hard only), "aggregate" and
/// "normalize" are timed into `stages`. The batch's values are trusted to
/// be finite (see [`try_encode`] for a batch built with the check deferred).
pub fn encode<E: Element>(
    codebook: &Codebook,
    params: Option<&SoftParams>,
    batch: &Batch<'_, E>,
    norm: &Normalization,
    stages: &mut StageTimes,
) -> (Array2<f32>, Vec<u32>) {
    match run(codebook, params, batch, norm, stages, false) {
        Ok(out) => out,
        Err(_) => unreachable!("only the finiteness check fails"),
    }
}

/// [`encode`], checking the finiteness of a batch built without that check
/// ([`Batch::finite_checked`]): under soft assignment through the outputs
/// (an image holding a non-finite value has non-finite sums, and only such
/// images are searched), saving a pass over the input; under hard
/// assignment before running. The error is the one the checked
/// constructors give.
pub fn try_encode<E: Element>(
    codebook: &Codebook,
    params: Option<&SoftParams>,
    batch: &Batch<'_, E>,
    norm: &Normalization,
    stages: &mut StageTimes,
) -> Result<(Array2<f32>, Vec<u32>)> {
    run(
        codebook,
        params,
        batch,
        norm,
        stages,
        !batch.finite_checked(),
    )
}

fn run<E: Element>(
    codebook: &Codebook,
    params: Option<&SoftParams>,
    batch: &Batch<'_, E>,
    norm: &Normalization,
    stages: &mut StageTimes,
    check_finite: bool,
) -> Result<(Array2<f32>, Vec<u32>)> {
    let rn = norm.residual_normalized();
    let (mut vlad, mass, labels) = match params {
        Some(params) => {
            let out = stages.time("aggregate", || {
                super::soft_aggregate::aggregate(codebook, params, batch, rn)
            });
            if check_finite {
                // The first image (in order) holding a non-finite value
                // holds the batch's first one.
                for &image in &out.suspects {
                    if let Some(err) = batch.non_finite_in_image(image) {
                        return Err(err);
                    }
                }
            }
            (out.sums, out.mass, out.labels)
        }
        None => {
            if check_finite {
                batch.check_finite()?;
            }
            let labels = match batch.labels() {
                Some(given) => given.to_vec(),
                None => stages.time("assign", || {
                    super::assign::assign_rows(codebook, batch.rows(), batch.dim())
                }),
            };
            let (sums, counts) = stages.time("aggregate", || {
                if rn {
                    super::residual_norm::aggregate_hard(codebook, batch, &labels)
                } else {
                    super::aggregate::aggregate(codebook, batch, &labels)
                }
            });
            (sums, counts, labels)
        }
    };
    stages.time("normalize", || {
        super::normalize::normalize_rows(
            &mut vlad,
            &mass,
            codebook.clusters(),
            codebook.dim(),
            norm,
        )
    });
    Ok((vlad, labels))
}
