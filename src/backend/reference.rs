//! The oracle: SPEC §1–§3 and §10 as plain f64 loops. Clarity over speed.
//!
//! It shares no arithmetic with the backends it judges: no GEMM, no
//! `‖c‖² − 2v·c`, no sorting, no resolved [`crate::SoftParams`] (a
//! temperature is used as `softmax_k(−α‖v − c_k‖²)` directly, learned `W`,
//! `b` as `softmax_k(w_k·v + b_k)`), no f32 accumulation. Its inputs are
//! the validated [`Batch`] and the [`Codebook`]'s centroids, read as f64.
//!
//! One road for every assignment: each descriptor carries a weight per
//! centroid — one-hot on its label for hard assignment — and its residual
//! to each centroid of non-zero weight (unit length under `rn`), times the
//! weight, is added in f64. Under hard assignment that weight is exactly
//! `1.0`, so each sum is the plain `Σ (v − c)` (`1.0 · d` is `d`) and each
//! mass the exact count.

use ndarray::{Array2, Array3, s};

use crate::backend::combine::SplitImage;
use crate::backend::compute::{AddPiece, Assign, Compute, Cuts, EncodeInto, Model, check_out_len};
use crate::error::{Result, VladError};
use crate::model::assignment::Assignment;
use crate::model::batch::Batch;
use crate::model::codebook::Codebook;
use crate::model::element::{DType, Element};
use crate::model::normalization::{Normalization, Step};
use crate::whitening::Whitening;

/// Exact squared distance `‖v − c‖²` in f64.
pub fn squared_distance<E: Element>(v: &[E], c: &[f32]) -> f64 {
    v.iter()
        .zip(c)
        .map(|(&x, &y)| {
            let d = x.to_f64() - y as f64;
            d * d
        })
        .sum()
}

/// All `K` exact squared distances of one descriptor.
pub fn distances<E: Element>(codebook: &Codebook, v: &[E]) -> Vec<f64> {
    codebook
        .as_slice()
        .chunks_exact(codebook.dim())
        .map(|c| squared_distance(v, c))
        .collect()
}

/// `argmin_k ‖v − c_k‖²` in f64; exact ties go to the lowest `k`.
pub fn nearest<E: Element>(codebook: &Codebook, v: &[E]) -> u32 {
    let mut best = 0usize;
    let mut best_d = f64::INFINITY;
    for (k, d) in distances(codebook, v).into_iter().enumerate() {
        if d < best_d {
            best = k;
            best_d = d;
        }
    }
    best as u32
}

/// Labels of every descriptor.
pub fn assign<E: Element>(codebook: &Codebook, batch: &Batch<'_, E>) -> Vec<u32> {
    (0..batch.len())
        .map(|i| nearest(codebook, batch.row(i)))
        .collect()
}

/// The weight of descriptor `v` on each centroid, in f64: one-hot on
/// `label` for hard assignment, the stable softmax otherwise (`label` is
/// then ignored).
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

/// The label reported for a descriptor under soft assignment: the centroid
/// of largest weight (lowest index on ties).
fn strongest(weights: &[f64]) -> u32 {
    let mut best = 0;
    for (c, &w) in weights.iter().enumerate() {
        if w > weights[best] {
            best = c;
        }
    }
    best as u32
}

/// `v − c_k` in f64.
fn residual<E: Element>(codebook: &Codebook, v: &[E], k: usize) -> Vec<f64> {
    let centroids = codebook.centroids();
    v.iter()
        .enumerate()
        .map(|(j, &x)| x.to_f64() - centroids[[k, j]] as f64)
        .collect()
}

/// `‖d‖₂` in f64.
fn length(d: &[f64]) -> f64 {
    d.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// `block += scale · d`, element by element.
fn add_scaled<'a>(block: impl IntoIterator<Item = &'a mut f64>, scale: f64, d: &[f64]) {
    for (s, &x) in block.into_iter().zip(d) {
        *s += scale * x;
    }
}

/// Weighted residual sums `(T, K, F)`, the weights' sums `(T, K)` (the
/// counts of hard assignment, the soft counts otherwise), and the label of
/// every descriptor. Hard labels are the batch's, else the exact argmin;
/// under soft assignment a label is the strongest weight. An empty
/// cluster's block stays zero (the centroid is not subtracted).
pub fn aggregate<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    assignment: &Assignment,
    residual_norm: bool,
) -> (Array3<f64>, Array2<f64>, Vec<u32>) {
    aggregate_from(codebook, batch, assignment, residual_norm, batch.labels())
}

pub fn aggregate_from<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    assignment: &Assignment,
    residual_norm: bool,
    hard_labels: Option<&[u32]>,
) -> (Array3<f64>, Array2<f64>, Vec<u32>) {
    let (t, k, f) = (batch.images(), codebook.clusters(), codebook.dim());
    let mut sums = Array3::<f64>::zeros((t, k, f));
    let mut mass = Array2::<f64>::zeros((t, k));
    let mut labels = Vec::with_capacity(batch.len());
    for image in 0..t {
        let range = batch.image_range(image);
        let rows = &batch.rows()[range.start * f..range.end * f];
        let given = match assignment {
            Assignment::Hard => hard_labels.map(|l| &l[range]),
            _ => None,
        };
        let (Some(image_sums), Some(image_mass)) = (
            sums.slice_mut(s![image, .., ..]).into_slice(),
            mass.slice_mut(s![image, ..]).into_slice(),
        ) else {
            unreachable!("rows of fresh arrays are contiguous")
        };
        labels.extend(add_rows(
            codebook,
            assignment,
            residual_norm,
            rows,
            given,
            image_sums,
            image_mass,
        ));
    }
    (sums, mass, labels)
}

/// Add one image's `rows` (row-major, in order) to its `K·F` f64 `sums`
/// and `K` weight sums `mass`: under hard assignment with the given
/// `labels` (else the exact argmin), under soft assignment with the
/// softmax weights; each residual unit length under `rn`. Returns each
/// row's label (hard, or the strongest weight). The sums [`aggregate`]
/// forms, for an image read a piece at a time.
pub fn add_rows<E: Element>(
    codebook: &Codebook,
    assignment: &Assignment,
    residual_norm: bool,
    rows: &[E],
    labels: Option<&[u32]>,
    sums: &mut [f64],
    mass: &mut [f64],
) -> Vec<u32> {
    let f = codebook.dim();
    let mut out = Vec::with_capacity(rows.len() / f.max(1));
    for (i, v) in rows.chunks_exact(f).enumerate() {
        let hard = match (assignment, labels) {
            (Assignment::Hard, Some(given)) => given[i],
            (Assignment::Hard, None) => nearest(codebook, v),
            _ => 0,
        };
        let w = weights(codebook, assignment, v, hard);
        out.push(if assignment.is_hard() {
            hard
        } else {
            strongest(&w)
        });
        for (c, &a) in w.iter().enumerate() {
            if a == 0.0 {
                continue;
            }
            let d = residual(codebook, v, c);
            let scale = if residual_norm {
                let norm = length(&d);
                if norm > 0.0 { a / norm } else { 0.0 }
            } else {
                a
            };
            mass[c] += a;
            add_scaled(&mut sums[c * f..(c + 1) * f], scale, &d);
        }
    }
    out
}

/// `Σ_l a_k(v_l)·‖v_l − c_k‖∞` per block (unit-length residuals under
/// `rn`; `a` one-hot on `labels` under hard assignment): the scale of SPEC
/// §4's pre-normalization tolerance.
pub fn residual_scale<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    assignment: &Assignment,
    labels: &[u32],
    residual_norm: bool,
) -> Array2<f64> {
    let mut scale = Array2::<f64>::zeros((batch.images(), codebook.clusters()));
    for image in 0..batch.images() {
        for i in batch.image_range(image) {
            let v = batch.row(i);
            let w = weights(codebook, assignment, v, labels[i]);
            for (c, &a) in w.iter().enumerate() {
                // A zero weight adds nothing (and no residual is formed
                // for the K − 1 other centroids of a hard label).
                if a == 0.0 {
                    continue;
                }
                let d = residual(codebook, v, c);
                let max = d.iter().fold(0.0f64, |m, x| m.max(x.abs()));
                let norm = length(&d);
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

/// Apply the steps of SPEC §3 in order to (weighted) sums, giving
/// `(T, K·F)`: `mass` divides by the weights' sum where it is > 0; `rn`
/// was applied during aggregation. Zero blocks and zero rows stay exactly
/// zero.
pub fn normalize(sums: &Array3<f64>, mass: &Array2<f64>, norm: &Normalization) -> Array2<f64> {
    let (t, k, f) = sums.dim();
    let mut out = sums.clone();
    for step in norm.steps() {
        for image in 0..t {
            match *step {
                // Acts on residuals before they are summed (aggregate).
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

/// The whole encoding in f64, `(T, K·F)`, with the label of every
/// descriptor (hard — given or the exact argmin — or the strongest soft
/// weight): aggregation with `assignment` (and `rn` when `norm` starts
/// with it), then normalization.
pub fn encode<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    assignment: &Assignment,
    norm: &Normalization,
) -> (Array2<f64>, Vec<u32>) {
    let (sums, mass, labels) = aggregate(codebook, batch, assignment, norm.residual_normalized());
    (normalize(&sums, &mass, norm), labels)
}

/// The oracle as a backend every route can drive: whole images through
/// [`encode`], split images summed on row by row in f64 ([`add_rows`]) and
/// normalized in f64 ([`normalize`]), never through the f32 combine it
/// judges.
pub struct ReferenceBackend;

impl Compute for ReferenceBackend {
    fn encode_into<E: Element>(&self, call: EncodeInto<'_, E>) -> Result<Vec<u32>> {
        let (model, batch, out, stages) = (call.model, call.batch, call.out, call.stages);
        let (vlad, labels) = stages.time("reference", || {
            encode(model.codebook, batch, model.assignment, model.norm)
        });
        check_out_len(out, vlad.len())?;
        for (o, &x) in out.iter_mut().zip(vlad.iter()) {
            *o = x as f32;
        }
        Ok(labels)
    }

    fn assign<E: Element>(&self, call: Assign<'_, E>) -> Result<Vec<u32>> {
        let (codebook, batch, stages) = (call.codebook, call.batch, call.stages);
        Ok(stages.time("assign", || assign(codebook, batch)))
    }

    /// The sums go on row by row: a piece may end anywhere.
    fn cuts(&self, _model: &Model<'_>, _offsets: &[usize], _dtype: DType) -> Result<Cuts> {
        Ok(Cuts::Aligned(1))
    }

    fn add_piece<E: Element>(&self, call: AddPiece<'_, E>) -> Result<Vec<u32>> {
        let (model, rows, labels) = (call.model, call.rows, call.labels);
        let (image, stages) = (call.image, call.stages);
        let rn = model.norm.residual_normalized();
        let labels = stages.time("reference", || {
            add_rows(
                model.codebook,
                model.assignment,
                rn,
                rows,
                labels,
                &mut image.sums,
                &mut image.mass,
            )
        });
        image.piece_added();
        Ok(labels)
    }

    fn finish_image(&self, model: &Model<'_>, image: &SplitImage, out: &mut [f32]) -> Result<()> {
        let (k, f) = (model.codebook.clusters(), model.codebook.dim());
        let bad = |e: ndarray::ShapeError| VladError::DimensionMismatch(e.to_string());
        let sums = Array3::from_shape_vec((1, k, f), image.sums.clone()).map_err(bad)?;
        let mass = Array2::from_shape_vec((1, k), image.mass.clone()).map_err(bad)?;
        let normalized = normalize(&sums, &mass, model.norm);
        for (o, &x) in out.iter_mut().zip(normalized.iter()) {
            *o = x as f32;
        }
        Ok(())
    }

    fn whiten(&self, whitening: &Whitening, rows: &[f32], out: &mut [f32]) -> Result<()> {
        let (d, dout) = (whitening.dims_in(), whitening.dims_out());
        crate::backend::compute::check_out_len(out, rows.len() / d * dout)?;
        for (x, o) in rows.chunks_exact(d).zip(out.chunks_exact_mut(dout)) {
            let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            let y = whiten_row(whitening, &x);
            for (o, y) in o.iter_mut().zip(y) {
                *o = y as f32;
            }
        }
        Ok(())
    }
}

/// SPEC §14's whitening of one row, in f64 from the stored parts (the
/// eigenvectors, `(λ + ε)^p`, the mean), not from the f32 projection the
/// fast backends multiply by: `y_i = (λ_i + ε)^p · u_i·(x − μ)`, then the
/// post normalization's powers and L2.
pub fn whiten_row(whitening: &Whitening, x: &[f64]) -> Vec<f64> {
    let mean = whitening.mean();
    let centered: Vec<f64> = x
        .iter()
        .zip(mean.iter())
        .map(|(&v, &m)| v - m as f64)
        .collect();
    let mut y: Vec<f64> = whitening
        .components()
        .outer_iter()
        .zip(whitening.scales().iter())
        .map(|(u, &s)| {
            s * u
                .iter()
                .zip(&centered)
                .map(|(&u, c)| u as f64 * c)
                .sum::<f64>()
        })
        .collect();
    for step in whitening.post().steps() {
        match *step {
            Step::Power(alpha) => {
                for v in &mut y {
                    *v = v.signum() * v.abs().powf(alpha as f64);
                }
            }
            Step::L2 => {
                let norm = y.iter().map(|v| v * v).sum::<f64>().sqrt();
                if norm > 0.0 {
                    for v in &mut y {
                        *v /= norm;
                    }
                }
            }
            _ => {}
        }
    }
    y
}
