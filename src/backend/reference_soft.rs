//! The oracle for SPEC §10: soft (NetVLAD) assignment and residual
//! normalization (`rn`), as plain f64 loops. Clarity over speed.
//!
//! Like [`crate::backend::reference`], it shares no arithmetic with the backends it
//! judges: no GEMM, no `‖c‖² − 2v·c`, no resolved [`crate::SoftParams`]
//! (a temperature is used as `softmax_k(−α‖v − c_k‖²)` directly, learned
//! `W`, `b` as `softmax_k(w_k·v + b_k)`), no f32 accumulation. Every
//! descriptor carries a weight per centroid — one-hot for hard assignment —
//! and its residual to each centroid of non-zero weight (unit length under
//! `rn`) is added in f64.

use ndarray::{Array2, Array3, s};

use crate::model::assignment::Assignment;
use crate::model::batch::Batch;
use crate::model::codebook::Codebook;
use crate::model::element::Element;
use crate::model::normalization::{Normalization, Step};

/// The weight of descriptor `v` on each centroid, in f64: one-hot on
/// `label` for hard assignment, the stable softmax otherwise.
pub fn weights<E: Element>(
    codebook: &Codebook,
    assignment: &Assignment,
    v: &[E],
    label: u32,
) -> Vec<f64> {
    let k = codebook.clusters();
    let centroids = codebook.centroids();
    let logits: Vec<f64> = match assignment {
        Assignment::Hard => {
            let mut w = vec![0.0; k];
            w[label as usize] = 1.0;
            return w;
        }
        Assignment::Soft { weights, bias } => (0..k)
            .map(|c| {
                let dot: f64 = v
                    .iter()
                    .enumerate()
                    .map(|(j, &x)| x.to_f64() * weights[[c, j]] as f64)
                    .sum();
                dot + bias[c] as f64
            })
            .collect(),
        &Assignment::SoftAlpha(alpha) => (0..k)
            .map(|c| {
                let d2: f64 = v
                    .iter()
                    .enumerate()
                    .map(|(j, &x)| (x.to_f64() - centroids[[c, j]] as f64).powi(2))
                    .sum();
                -(alpha as f64) * d2
            })
            .collect(),
    };
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits.iter().map(|&z| (z - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / total).collect()
}

/// The label reported for a descriptor: the hard label, or under soft
/// assignment the centroid of largest weight (lowest index on ties).
fn strongest(weights: &[f64]) -> u32 {
    let mut best = 0;
    for (c, &w) in weights.iter().enumerate() {
        if w > weights[best] {
            best = c;
        }
    }
    best as u32
}

/// Weighted residual sums `(T, K, F)`, the weights' sums `(T, K)` (the
/// counts of hard assignment, the soft counts otherwise), and the label of
/// every descriptor. Hard labels are the batch's, else the exact argmin.
pub fn aggregate<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    assignment: &Assignment,
    residual_norm: bool,
) -> (Array3<f64>, Array2<f64>, Vec<u32>) {
    aggregate_from(codebook, batch, assignment, residual_norm, batch.labels())
}

/// [`aggregate`] with the hard labels given (the ones a backend used, to
/// judge it from the same labels, SPEC §4); ignored under soft assignment.
pub fn aggregate_from<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    assignment: &Assignment,
    residual_norm: bool,
    hard_labels: Option<&[u32]>,
) -> (Array3<f64>, Array2<f64>, Vec<u32>) {
    let (t, k, f) = (batch.images(), codebook.clusters(), codebook.dim());
    let centroids = codebook.centroids();
    let mut sums = Array3::<f64>::zeros((t, k, f));
    let mut mass = Array2::<f64>::zeros((t, k));
    let mut labels = Vec::with_capacity(batch.len());
    for image in 0..t {
        for i in batch.image_range(image) {
            let v = batch.row(i);
            let hard = match (assignment, hard_labels) {
                (Assignment::Hard, Some(given)) => given[i],
                (Assignment::Hard, None) => crate::backend::reference::nearest(codebook, v),
                _ => 0,
            };
            let w = weights(codebook, assignment, v, hard);
            labels.push(if assignment.is_hard() {
                hard
            } else {
                strongest(&w)
            });
            for (c, &a) in w.iter().enumerate() {
                if a == 0.0 {
                    continue;
                }
                let residual: Vec<f64> = v
                    .iter()
                    .enumerate()
                    .map(|(j, &x)| x.to_f64() - centroids[[c, j]] as f64)
                    .collect();
                let scale = if residual_norm {
                    let norm = residual.iter().map(|d| d * d).sum::<f64>().sqrt();
                    if norm > 0.0 { a / norm } else { 0.0 }
                } else {
                    a
                };
                mass[[image, c]] += a;
                for (j, d) in residual.iter().enumerate() {
                    sums[[image, c, j]] += scale * d;
                }
            }
        }
    }
    (sums, mass, labels)
}

/// `Σ_l a_k(v_l)·‖v_l − c_k‖∞` per block (unit-length residuals under
/// `rn`): the scale of SPEC §4's pre-normalization tolerance, with weights.
pub fn residual_scale<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    assignment: &Assignment,
    labels: &[u32],
    residual_norm: bool,
) -> Array2<f64> {
    let centroids = codebook.centroids();
    let mut scale = Array2::<f64>::zeros((batch.images(), codebook.clusters()));
    for image in 0..batch.images() {
        for i in batch.image_range(image) {
            let v = batch.row(i);
            let w = weights(codebook, assignment, v, labels[i]);
            for (c, &a) in w.iter().enumerate() {
                let residual: Vec<f64> = v
                    .iter()
                    .enumerate()
                    .map(|(j, &x)| x.to_f64() - centroids[[c, j]] as f64)
                    .collect();
                let max = residual.iter().fold(0.0f64, |m, d| m.max(d.abs()));
                let norm = residual.iter().map(|d| d * d).sum::<f64>().sqrt();
                scale[[image, c]] += if residual_norm && norm > 0.0 {
                    a * max / norm
                } else {
                    a * max
                };
            }
        }
    }
    scale
}

/// SPEC §3's steps on weighted sums: `mass` divides by the weights' sum
/// where it is > 0; `rn` was applied during aggregation. Zero blocks and
/// rows stay zero.
pub fn normalize(sums: &Array3<f64>, mass: &Array2<f64>, norm: &Normalization) -> Array2<f64> {
    let (t, k, f) = sums.dim();
    let mut out = sums.clone();
    for step in norm.steps() {
        for image in 0..t {
            match *step {
                Step::ResidualNorm => {}
                Step::Mass => {
                    for c in 0..k {
                        let n = mass[[image, c]];
                        if n > 0.0 {
                            out.slice_mut(s![image, c, ..]).mapv_inplace(|x| x / n);
                        }
                    }
                }
                Step::Power(alpha) => {
                    out.slice_mut(s![image, .., ..])
                        .mapv_inplace(|x| x.signum() * x.abs().powf(alpha as f64) + 0.0);
                }
                Step::Intra => {
                    for c in 0..k {
                        let mut block = out.slice_mut(s![image, c, ..]);
                        let norm2: f64 = block.iter().map(|x| x * x).sum();
                        if norm2 > 0.0 {
                            let inv = 1.0 / norm2.sqrt();
                            block.mapv_inplace(|x| x * inv);
                        }
                    }
                }
                Step::L2 => {
                    let mut row = out.slice_mut(s![image, .., ..]);
                    let norm2: f64 = row.iter().map(|x| x * x).sum();
                    if norm2 > 0.0 {
                        let inv = 1.0 / norm2.sqrt();
                        row.mapv_inplace(|x| x * inv);
                    }
                }
            }
        }
    }
    let mut flat = Array2::<f64>::zeros((t, k * f));
    for image in 0..t {
        for (o, &x) in flat
            .row_mut(image)
            .iter_mut()
            .zip(out.slice(s![image, .., ..]))
        {
            *o = x;
        }
    }
    flat
}

/// The whole encoding of SPEC §10 in f64, `(T, K·F)`, with the label of
/// every descriptor (hard, or the strongest soft weight).
pub fn encode<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    assignment: &Assignment,
    norm: &Normalization,
) -> (Array2<f64>, Vec<u32>) {
    let (sums, mass, labels) = aggregate(codebook, batch, assignment, norm.residual_normalized());
    (normalize(&sums, &mass, norm), labels)
}
