//! Checking a backend's output against the f64 [`reference`](crate::reference)
//! under SPEC §4, from the same labels the backend used.

use ndarray::{Array2, ArrayView2};

use crate::codebook::Codebook;
use crate::element::Element;
use crate::input::Batch;
use crate::normalization::{Normalization, Step};
use crate::reference;

/// SPEC §4's relative tolerance.
pub const TOLERANCE: f64 = 1e-5;

/// The outcome of [`verify`].
#[derive(Clone, Debug, PartialEq)]
pub struct Verification {
    /// Fraction of labels equal to the exact f64 argmin (1.0 with given labels).
    pub label_agreement: f64,
    /// Labels that differ from the exact argmin by more than a near-tie.
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

/// Compare `output` (`(T, K·F)`, computed with `labels`) with the reference.
pub fn verify<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    norm: &Normalization,
    output: ArrayView2<'_, f32>,
    labels: &[u32],
) -> Verification {
    let (label_agreement, bad_labels) = match batch.labels() {
        Some(_) => (1.0, 0),
        None => {
            let exact = reference::assign(codebook, batch);
            let same = exact.iter().zip(labels).filter(|(a, b)| a == b).count();
            let bad = (0..batch.len())
                .filter(|&i| !is_near_tie(codebook, batch.row(i), labels[i], exact[i]))
                .count();
            let agreement = if exact.is_empty() {
                1.0
            } else {
                same as f64 / exact.len() as f64
            };
            (agreement, bad)
        }
    };
    let (sums, counts) = reference::aggregate(codebook, batch, labels);
    let expected = reference::normalize(&sums, &counts, norm);
    let max_abs_error = max_abs_diff(output, &expected);
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
    } else if norm.steps().iter().all(|s| *s == Step::Mass) {
        // Raw sums, or means: the per-block bound ‖y − r‖∞ ≤ 1e-5 Σ‖v − c‖∞,
        // divided by n for the mean.
        let scale = reference::residual_scale(codebook, batch, labels);
        let mass = norm.needs_counts();
        let (k, f) = (codebook.clusters(), codebook.dim());
        let mut bad = 0;
        for t in 0..batch.images() {
            for c in 0..k {
                let n = counts[[t, c]].max(1) as f64;
                let bound = TOLERANCE * scale[[t, c]] / if mass { n } else { 1.0 };
                let err = (0..f)
                    .map(|j| ((output[[t, c * f + j]] as f64) - expected[[t, c * f + j]]).abs())
                    .fold(0.0, f64::max);
                if err > bound {
                    bad += 1;
                }
            }
        }
        (
            bad,
            "each block within 1e-5 · Σ‖v − c‖∞ (raw sums or means)",
        )
    } else {
        // SPEC §4 states no bound for a list ending in a power step; judge
        // relative to each element's size.
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

fn max_abs_diff(output: ArrayView2<'_, f32>, expected: &Array2<f64>) -> f64 {
    output
        .iter()
        .zip(expected.iter())
        .map(|(&y, &r)| ((y as f64) - r).abs())
        .fold(0.0, f64::max)
}
