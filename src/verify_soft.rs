//! `--verify` for SPEC §10 (soft assignment, or `rn`): the backend's output
//! against [`reference_soft`](crate::reference_soft), with SPEC §4's
//! tolerances read with weights (`Σ_l a_k(v_l)·‖v_l − c_k‖∞` per block for
//! raw sums and means).

use ndarray::ArrayView2;

use crate::assignment::Assignment;
use crate::codebook::Codebook;
use crate::element::Element;
use crate::input::Batch;
use crate::normalization::{Normalization, Step};
use crate::reference;
use crate::reference_soft;
use crate::verify::{TOLERANCE, Verification, is_near_tie};

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
        reference_soft::aggregate_from(codebook, batch, assignment, rn, Some(labels));
    let expected = reference_soft::normalize(&sums, &mass, norm);
    let (label_agreement, bad_labels) = if assignment.is_hard() {
        match batch.labels() {
            Some(_) => (1.0, 0),
            None => {
                let nearest = reference::assign(codebook, batch);
                let same = nearest.iter().zip(labels).filter(|(a, b)| a == b).count();
                let bad = (0..batch.len())
                    .filter(|&i| !is_near_tie(codebook, batch.row(i), labels[i], nearest[i]))
                    .count();
                (fraction(same, nearest.len()), bad)
            }
        }
    } else {
        let same = exact.iter().zip(labels).filter(|(a, b)| a == b).count();
        (fraction(same, exact.len()), 0)
    };
    let max_abs_error = output
        .iter()
        .zip(expected.iter())
        .map(|(&y, &r)| ((y as f64) - r).abs())
        .fold(0.0, f64::max);
    let (violations, rule) = if norm.ends_normalized() {
        let bad = output
            .iter()
            .zip(expected.iter())
            .filter(|(y, r)| ((**y as f64) - **r).abs() > TOLERANCE)
            .count();
        (
            bad,
            "every element within 1e-5 absolute (list ends in l2 or intra)",
        )
    } else if norm
        .steps()
        .iter()
        .all(|s| matches!(s, Step::Mass | Step::ResidualNorm))
    {
        let scale = reference_soft::residual_scale(codebook, batch, assignment, labels, rn);
        let (k, f) = (codebook.clusters(), codebook.dim());
        let mut bad = 0;
        for t in 0..batch.images() {
            for c in 0..k {
                let divide = if norm.needs_counts() && mass[[t, c]] > 0.0 {
                    mass[[t, c]]
                } else {
                    1.0
                };
                let bound = TOLERANCE * scale[[t, c]] / divide;
                let err = (c * f..(c + 1) * f)
                    .map(|j| ((output[[t, j]] as f64) - expected[[t, j]]).abs())
                    .fold(0.0, f64::max);
                if err > bound {
                    bad += 1;
                }
            }
        }
        (
            bad,
            "each block within 1e-5 · Σ a·‖v − c‖∞ (raw sums or means)",
        )
    } else {
        let bad = output
            .iter()
            .zip(expected.iter())
            .filter(|(y, r)| ((**y as f64) - **r).abs() > 1e-4 * r.abs().max(1.0))
            .count();
        (
            bad,
            "every element within 1e-4 relative (list ends in a power step)",
        )
    };
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
