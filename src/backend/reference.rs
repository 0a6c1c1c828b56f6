//! The oracle: SPEC §1–§3 as plain f64 loops. Clarity over speed.
//!
//! It shares no arithmetic with the backends it judges: no GEMM, no
//! `‖c‖² − 2v·c`, no sorting, no f32 accumulation. Its inputs are the
//! validated [`Batch`] and the [`Codebook`]'s centroids, read as f64.

use ndarray::{Array2, Array3};

use crate::model::batch::Batch;
use crate::model::codebook::Codebook;
use crate::model::element::Element;
use crate::model::normalization::{Normalization, Step};

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

/// Raw residual sums `(T, K, F)` and counts `(T, K)` from the given labels.
/// An empty cluster's block stays zero (the centroid is not subtracted).
pub fn aggregate<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    labels: &[u32],
) -> (Array3<f64>, Array2<u64>) {
    let (t, k, f) = (batch.images(), codebook.clusters(), codebook.dim());
    let centroids = codebook.centroids();
    let mut sums = Array3::<f64>::zeros((t, k, f));
    let mut counts = Array2::<u64>::zeros((t, k));
    for image in 0..t {
        for i in batch.image_range(image) {
            let label = labels[i] as usize;
            counts[[image, label]] += 1;
            for (j, &x) in batch.row(i).iter().enumerate() {
                sums[[image, label, j]] += x.to_f64() - centroids[[label, j]] as f64;
            }
        }
    }
    (sums, counts)
}

/// Continue one image's raw sums `(K·F)` and counts `(K)` over more of its
/// rows (`rows` row-major, one label each), in row order: the same sums
/// [`aggregate`] forms, for an image read a piece at a time.
pub fn aggregate_rows_into<E: Element>(
    codebook: &Codebook,
    rows: &[E],
    labels: &[u32],
    sums: &mut [f64],
    counts: &mut [u64],
) {
    let f = codebook.dim();
    let centroids = codebook.centroids();
    for (v, &label) in rows.chunks_exact(f).zip(labels) {
        let label = label as usize;
        counts[label] += 1;
        for (j, &x) in v.iter().enumerate() {
            sums[label * f + j] += x.to_f64() - centroids[[label, j]] as f64;
        }
    }
}

/// `Σ_l ‖v_l − c_k‖∞` per block: the scale of SPEC §4's pre-normalization
/// tolerance.
pub fn residual_scale<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    labels: &[u32],
) -> Array2<f64> {
    let centroids = codebook.centroids();
    let mut scale = Array2::<f64>::zeros((batch.images(), codebook.clusters()));
    for image in 0..batch.images() {
        for i in batch.image_range(image) {
            let label = labels[i] as usize;
            let max = batch
                .row(i)
                .iter()
                .enumerate()
                .map(|(j, &x)| (x.to_f64() - centroids[[label, j]] as f64).abs())
                .fold(0.0, f64::max);
            scale[[image, label]] += max;
        }
    }
    scale
}

/// Apply the steps of SPEC §3 in order to raw sums, giving `(T, K·F)`.
/// Zero blocks and zero rows stay exactly zero.
pub fn normalize(sums: &Array3<f64>, counts: &Array2<u64>, norm: &Normalization) -> Array2<f64> {
    let (t, k, f) = sums.dim();
    let mut out = sums.clone();
    for step in norm.steps() {
        for image in 0..t {
            match *step {
                Step::Mass => {
                    for c in 0..k {
                        let n = counts[[image, c]];
                        if n > 0 {
                            for j in 0..f {
                                out[[image, c, j]] /= n as f64;
                            }
                        }
                    }
                }
                Step::Power(alpha) => {
                    for x in out.slice_mut(ndarray::s![image, .., ..]).iter_mut() {
                        *x = x.signum() * x.abs().powf(alpha as f64);
                        if *x == 0.0 {
                            *x = 0.0; // no -0.0 surprises
                        }
                    }
                }
                Step::Intra => {
                    for c in 0..k {
                        let norm2: f64 = (0..f).map(|j| out[[image, c, j]].powi(2)).sum();
                        if norm2 > 0.0 {
                            let inv = 1.0 / norm2.sqrt();
                            for j in 0..f {
                                out[[image, c, j]] *= inv;
                            }
                        }
                    }
                }
                // Acts on residuals before they are summed (reference_soft).
                Step::ResidualNorm => {}
                Step::L2 => {
                    let mut row = out.slice_mut(ndarray::s![image, .., ..]);
                    let norm2: f64 = row.iter().map(|x| x * x).sum();
                    if norm2 > 0.0 {
                        let inv = 1.0 / norm2.sqrt();
                        row.mapv_inplace(|x| x * inv);
                    }
                }
            }
        }
    }
    out.into_shape_with_order((t, k * f))
        .expect("a fresh (T, K, F) array reshapes to (T, K·F)")
}

/// The whole encoding in f64: labels (given or exact), aggregation,
/// normalization. Returns the `(T, K·F)` encoding and the labels used.
pub fn encode<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    norm: &Normalization,
) -> (Array2<f64>, Vec<u32>) {
    let labels = match batch.labels() {
        Some(l) => l.to_vec(),
        None => assign(codebook, batch),
    };
    let (sums, counts) = aggregate(codebook, batch, &labels);
    (normalize(&sums, &counts, norm), labels)
}

/// The oracle as a backend every route can drive: whole images through
/// [`encode`] (or `reference_soft::encode` under SPEC §10), split images
/// summed on in f64 and normalized in f64 ([`normalize`]), never through
/// the f32 combine it judges.
pub struct ReferenceBackend;

impl crate::backend::Compute for ReferenceBackend {
    fn encode_into<E: Element>(
        &self,
        model: &crate::backend::Model<'_>,
        batch: &Batch<'_, E>,
        out: &mut [f32],
        stages: &mut crate::model::report::StageTimes,
    ) -> crate::error::Result<Vec<u32>> {
        if !batch.finite_checked() {
            batch.check_finite()?;
        }
        let (vlad, labels) = stages.time("reference", || {
            if model.is_weighted() {
                crate::backend::reference_soft::encode(
                    model.codebook,
                    batch,
                    model.assignment,
                    model.norm,
                )
            } else {
                encode(model.codebook, batch, model.norm)
            }
        });
        if vlad.len() != out.len() {
            return Err(crate::error::VladError::DimensionMismatch(format!(
                "the output holds {} values, the encoding has {}",
                out.len(),
                vlad.len()
            )));
        }
        for (o, &x) in out.iter_mut().zip(vlad.iter()) {
            *o = x as f32;
        }
        Ok(labels)
    }

    fn assign<E: Element>(
        &self,
        codebook: &Codebook,
        batch: &Batch<'_, E>,
        stages: &mut crate::model::report::StageTimes,
    ) -> crate::error::Result<Vec<u32>> {
        Ok(stages.time("assign", || assign(codebook, batch)))
    }

    /// Hard sums go on row by row across pieces; SPEC §10's weighted sums
    /// are not cut (an image larger than a batch is a batch of its own).
    fn cuts(
        &self,
        model: &crate::backend::Model<'_>,
        _offsets: &[usize],
        _dtype: crate::model::element::DType,
    ) -> crate::error::Result<crate::backend::Cuts> {
        Ok(if model.is_weighted() {
            crate::backend::Cuts::Whole
        } else {
            crate::backend::Cuts::Aligned(1)
        })
    }

    fn split_image(
        &self,
        model: &crate::backend::Model<'_>,
    ) -> crate::error::Result<crate::backend::combine::SplitImage> {
        Ok(crate::backend::combine::SplitImage::new(model.codebook))
    }

    fn add_piece<E: Element>(
        &self,
        model: &crate::backend::Model<'_>,
        rows: &[E],
        labels: Option<&[u32]>,
        image: &mut crate::backend::combine::SplitImage,
        stages: &mut crate::model::report::StageTimes,
    ) -> crate::error::Result<Vec<u32>> {
        if model.is_weighted() {
            return Err(crate::error::VladError::InvalidArgument(
                "the reference does not cut soft or rn images into pieces (a bug)".into(),
            ));
        }
        let codebook = model.codebook;
        let f = codebook.dim();
        let labels = stages.time("reference", || {
            let labels: Vec<u32> = match labels {
                Some(given) => given.to_vec(),
                None => rows.chunks_exact(f).map(|v| nearest(codebook, v)).collect(),
            };
            let mut counts = vec![0u64; codebook.clusters()];
            aggregate_rows_into(codebook, rows, &labels, &mut image.sums, &mut counts);
            for (m, n) in image.mass.iter_mut().zip(counts) {
                *m += n as f64;
            }
            labels
        });
        image.piece_added();
        Ok(labels)
    }

    fn finish_image(
        &self,
        model: &crate::backend::Model<'_>,
        image: &crate::backend::combine::SplitImage,
        out: &mut [f32],
    ) -> crate::error::Result<()> {
        let (k, f) = (model.codebook.clusters(), model.codebook.dim());
        let bad =
            |e: ndarray::ShapeError| crate::error::VladError::DimensionMismatch(e.to_string());
        let sums = Array3::from_shape_vec((1, k, f), image.sums.clone()).map_err(bad)?;
        let counts = Array2::from_shape_vec((1, k), image.mass.iter().map(|&n| n as u64).collect())
            .map_err(bad)?;
        let normalized = normalize(&sums, &counts, model.norm);
        for (o, &x) in out.iter_mut().zip(normalized.iter()) {
            *o = x as f32;
        }
        Ok(())
    }
}
