//! `--verify` for SPEC §10 (soft assignment, or `rn`): the backend's output
//! against [`crate::backend::reference`], with SPEC §4's
//! tolerances read with weights (`Σ_l a_k(v_l)·‖v_l − c_k‖∞` per block for
//! raw sums and means).

use ndarray::ArrayView2;

use crate::backend::reference;
use crate::model::assignment::Assignment;
use crate::model::batch::Batch;
use crate::model::codebook::Codebook;
use crate::model::element::Element;
use crate::model::normalization::{Normalization, Step};
use crate::verify::{TOLERANCE, Verification, hard_labels, judge, max_abs_diff};

/// Compare `output` (`(T, K·F)`) with the reference. Under hard assignment
/// the reference uses the backend's `labels` (each checked to be the exact
/// argmin up to a near-tie); under soft assignment `labels` (the strongest
/// weight) are only reported as `label_agreement`.
pub fn verify<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    assignment: &Assignment,
    norm: &Normalization,
    output: ArrayView2<'_, f32>,
    labels: &[u32],
) -> Verification {
    let rn = norm.residual_normalized();
    let (sums, mass, exact) =
        reference::aggregate_from(codebook, batch, assignment, rn, Some(labels));
    let expected = reference::normalize(&sums, &mass, norm);
    let (label_agreement, bad_labels) = if assignment.is_hard() {
        hard_labels(codebook, batch, labels)
    } else {
        let same = exact.iter().zip(labels).filter(|(a, b)| a == b).count();
        (fraction(same, exact.len()), 0)
    };
    let max_abs_error = max_abs_diff(output, &expected);
    // Raw sums or means (`rn` comes first and is no output step): the
    // per-block bound with the weights, divided by the soft count for
    // the mean.
    let raw_or_mean = norm
        .steps()
        .iter()
        .all(|s| matches!(s, Step::Mass | Step::ResidualNorm));
    let scale =
        raw_or_mean.then(|| reference::residual_scale(codebook, batch, assignment, labels, rn));
    let (violations, rule) = judge(
        output,
        &expected,
        norm,
        scale.is_some(),
        codebook.dim(),
        |t, c| {
            let divide = if norm.needs_counts() && mass[[t, c]] > 0.0 {
                mass[[t, c]]
            } else {
                1.0
            };
            TOLERANCE * scale.as_ref().map_or(0.0, |s| s[[t, c]]) / divide
        },
        "each block within 1e-5 · Σ a·‖v − c‖∞ (raw sums or means)",
    );
    Verification {
        label_agreement,
        bad_labels,
        max_abs_error,
        violations,
        rule,
    }
}

fn fraction(same: usize, total: usize) -> f64 {
    if total == 0 {
        1.0
    } else {
        same as f64 / total as f64
    }
}
