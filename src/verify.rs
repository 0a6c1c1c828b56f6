//! Checking a backend's output against the f64 [`reference`](mod@crate::backend::reference)
//! under SPEC §4 — read with weights for soft assignment and `rn` (SPEC
//! §10) — from the same labels the backend used.

use ndarray::{Array2, ArrayView2};

use crate::backend::reference;
use crate::model::assignment::Assignment;
use crate::model::batch::Batch;
use crate::model::codebook::Codebook;
use crate::model::element::Element;
use crate::model::normalization::{Normalization, Step};

/// SPEC §4's relative tolerance.
pub const TOLERANCE: f64 = 1e-5;

/// The outcome of [`verify`].
#[derive(Clone, Debug, PartialEq)]
pub struct Verification {
    /// Fraction of labels equal to the exact f64 argmin (1.0 with given
    /// labels); under soft assignment, to the reference's strongest weight.
    pub label_agreement: f64,
    /// Labels that differ from the exact argmin by more than a near-tie
    /// (always 0 under soft assignment).
    pub bad_labels: usize,
    /// Largest `|output − reference|` over all elements.
    pub max_abs_error: f64,
    /// Elements or blocks outside the tolerance that applies.
    pub violations: usize,
    /// Which tolerance was applied, in words.
    pub rule: &'static str,
}

impl Verification {
    /// Whether SPEC §4 holds.
    pub fn passed(&self) -> bool {
        self.bad_labels == 0 && self.violations == 0
    }
}

/// Whether label `got` for `v` is within SPEC §4's near-tie tolerance of the
/// exact argmin `want`.
pub fn is_near_tie<E: Element>(codebook: &Codebook, v: &[E], got: u32, want: u32) -> bool {
    if got == want {
        return true;
    }
    let c = |k: u32| &codebook.as_slice()[k as usize * codebook.dim()..][..codebook.dim()];
    let d_got = reference::squared_distance(v, c(got));
    let d_want = reference::squared_distance(v, c(want));
    let v_norm: f64 = v.iter().map(|x| x.to_f64() * x.to_f64()).sum();
    let c_max = codebook
        .squared_norms()
        .iter()
        .fold(0.0f64, |m, &n| m.max(n as f64));
    (d_got - d_want).abs() <= TOLERANCE * (v_norm + c_max)
}

/// The block rule of hard assignment without `rn`.
const HARD_RULE: &str = "each block within 1e-5 · Σ‖v − c‖∞ (raw sums or means)";
/// The block rule of soft assignment, or of `rn` (unit-length residuals).
const WEIGHTED_RULE: &str = "each block within 1e-5 · Σ a·‖v − c‖∞ (raw sums or means)";

/// Compare `output` (`(T, K·F)`) with the reference. Under hard assignment
/// the reference uses the backend's `labels` (each checked to be the exact
/// argmin up to a near-tie); under soft assignment `labels` (the strongest
/// weight) are only reported as `label_agreement`. Raw sums and means are
/// held per block to SPEC §4's bound read with the weights (one-hot for
/// hard assignment), `Σ_l a_k(v_l)·‖v_l − c_k‖∞`, divided by the block's
/// mass for the mean.
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
    let (label_agreement, bad_labels) = judge_labels(codebook, batch, assignment, labels, &exact);
    let max_abs_error = max_abs_diff(output, &expected);
    // Raw sums or means (`rn` comes first and is no output step).
    let raw_or_mean = norm
        .steps()
        .iter()
        .all(|s| matches!(s, Step::Mass | Step::ResidualNorm));
    let scale =
        raw_or_mean.then(|| reference::residual_scale(codebook, batch, assignment, labels, rn));
    let rule = if assignment.is_hard() && !rn {
        HARD_RULE
    } else {
        WEIGHTED_RULE
    };
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
        rule,
    );
    Verification {
        label_agreement,
        bad_labels,
        max_abs_error,
        violations,
        rule,
    }
}

/// Every whitened element within this of the reference, times
/// `max(1, ‖y_ref‖)` (1e-4 absolute for the default post `l2`).
pub const WHITENED_TOLERANCE: f64 = 1e-4;

/// Compare a whitened `output` (`(T, D′)`, SPEC §14) with the reference:
/// the f64 encoding from the same labels, normalized, then whitened in f64
/// from the whitening's stored parts ([`reference::whiten_row`]). Labels
/// are judged as in [`verify`]; every element must lie within
/// [`WHITENED_TOLERANCE`] · max(1, ‖y_ref‖) of the reference. (The raw
/// encoding's rounding is amplified by up to `(λ_min + ε)^p`: a whitening
/// whose ε is tiny against its smallest eigenvalue can fail this honestly.)
pub fn verify_whitened<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    assignment: &Assignment,
    norm: &Normalization,
    whitening: &crate::whitening::Whitening,
    output: ArrayView2<'_, f32>,
    labels: &[u32],
) -> Verification {
    let rn = norm.residual_normalized();
    let (sums, mass, exact) =
        reference::aggregate_from(codebook, batch, assignment, rn, Some(labels));
    let raw = reference::normalize(&sums, &mass, norm);
    let (label_agreement, bad_labels) = judge_labels(codebook, batch, assignment, labels, &exact);
    let mut max_abs_error = 0.0f64;
    let mut violations = 0;
    for (row, got) in raw.outer_iter().zip(output.outer_iter()) {
        let want = reference::whiten_row(whitening, &row.to_vec());
        let scale = want.iter().map(|v| v * v).sum::<f64>().sqrt().max(1.0);
        for (g, w) in got.iter().zip(&want) {
            let err = (*g as f64 - w).abs();
            max_abs_error = max_abs_error.max(err);
            if err > WHITENED_TOLERANCE * scale || err.is_nan() {
                violations += 1;
            }
        }
    }
    Verification {
        label_agreement,
        bad_labels,
        max_abs_error,
        violations,
        rule: "every whitened element within 1e-4 · max(1, ‖y‖) of the f64 reference",
    }
}

/// The labels' part of a verification: under hard assignment how they
/// compare with the exact argmin ([`hard_labels`]); under soft assignment
/// the fraction equal to the reference's strongest weight (`exact`), with
/// no label counted bad.
fn judge_labels<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    assignment: &Assignment,
    labels: &[u32],
    exact: &[u32],
) -> (f64, usize) {
    if assignment.is_hard() {
        hard_labels(codebook, batch, labels)
    } else {
        let same = exact.iter().zip(labels).filter(|(a, b)| a == b).count();
        (fraction(same, exact.len()), 0)
    }
}

/// How the backend's hard `labels` compare with the exact argmin: the
/// fraction equal, and how many differ by more than a near-tie (given
/// labels are the batch's own: 1.0 and 0).
fn hard_labels<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    labels: &[u32],
) -> (f64, usize) {
    if batch.labels().is_some() {
        return (1.0, 0);
    }
    let exact = reference::assign(codebook, batch);
    let same = exact.iter().zip(labels).filter(|(a, b)| a == b).count();
    let bad = (0..batch.len())
        .filter(|&i| !is_near_tie(codebook, batch.row(i), labels[i], exact[i]))
        .count();
    (fraction(same, exact.len()), bad)
}

/// `same / total`, 1.0 for no labels at all.
fn fraction(same: usize, total: usize) -> f64 {
    if total == 0 {
        1.0
    } else {
        same as f64 / total as f64
    }
}

/// SPEC §4's rule for `norm`, applied to `output` against `expected`: the
/// number of violations and the rule's wording. A list ending in `l2` or
/// `intra` is held to 1e-5 absolute per element; raw sums or means
/// (`raw_or_mean`) to `block_bound(t, c)` per `F`-wide block, described
/// by `block_rule`; anything else (a list ending in a power step, for
/// which SPEC §4 states no bound) to 1e-4 relative per element.
fn judge<B: Fn(usize, usize) -> f64>(
    output: ArrayView2<'_, f32>,
    expected: &Array2<f64>,
    norm: &Normalization,
    raw_or_mean: bool,
    dim: usize,
    block_bound: B,
    block_rule: &'static str,
) -> (usize, &'static str) {
    let error = |y: f32, r: f64| ((y as f64) - r).abs();
    if norm.ends_normalized() {
        let bad = output
            .iter()
            .zip(expected.iter())
            .filter(|(y, r)| error(**y, **r) > TOLERANCE)
            .count();
        (
            bad,
            "every element within 1e-5 absolute (list ends in l2 or intra)",
        )
    } else if raw_or_mean {
        let (images, width) = expected.dim();
        let clusters = width / dim.max(1);
        let mut bad = 0;
        for t in 0..images {
            for c in 0..clusters {
                let bound = block_bound(t, c);
                let err = (c * dim..(c + 1) * dim)
                    .map(|j| error(output[[t, j]], expected[[t, j]]))
                    .fold(0.0, f64::max);
                if err > bound {
                    bad += 1;
                }
            }
        }
        (bad, block_rule)
    } else {
        let bad = output
            .iter()
            .zip(expected.iter())
            .filter(|(y, r)| error(**y, **r) > 1e-4 * r.abs().max(1.0))
            .count();
        (
            bad,
            "every element within 1e-4 relative (list ends in a power step)",
        )
    }
}

fn max_abs_diff(output: ArrayView2<'_, f32>, expected: &Array2<f64>) -> f64 {
    output
        .iter()
        .zip(expected.iter())
        .map(|(&y, &r)| ((y as f64) - r).abs())
        .fold(0.0, f64::max)
}
