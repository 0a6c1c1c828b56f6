//! The fast CPU backend (and the fallback when no GPU works).
//!
//! PLACEHOLDER: simple loops, to be replaced by the fused GEMM-argmin
//! assignment, f64-accumulated aggregation and f32 normalization.

pub mod aggregate;
pub mod assign;
pub mod normalize;
pub mod radix_sort;
pub mod residual;
pub mod segmented_scan;

use ndarray::Array2;

use crate::codebook::Codebook;
use crate::element::Element;
use crate::input::Batch;
use crate::normalization::{Normalization, Step};
use crate::report::StageTimes;

/// Nearest-centroid labels of every descriptor in `batch`.
pub fn assign<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    stages: &mut StageTimes,
) -> Vec<u32> {
    stages.time("assign", || {
        (0..batch.len())
            .map(|i| {
                let v = batch.row(i);
                let mut best = (f32::INFINITY, 0u32);
                for (k, c) in codebook.as_slice().chunks_exact(codebook.dim()).enumerate() {
                    let d: f32 = v.iter().zip(c).map(|(x, y)| (x.to_f32() - y).powi(2)).sum();
                    if d < best.0 {
                        best = (d, k as u32);
                    }
                }
                best.1
            })
            .collect()
    })
}

/// Encode `batch` into `(T, K·F)`; returns the encoding and the labels used.
pub fn encode<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    norm: &Normalization,
    stages: &mut StageTimes,
) -> (Array2<f32>, Vec<u32>) {
    let labels = match batch.labels() {
        Some(l) => l.to_vec(),
        None => assign(codebook, batch, stages),
    };
    let (k, f) = (codebook.clusters(), codebook.dim());
    let mut out = Array2::<f32>::zeros((batch.images(), k * f));
    for t in 0..batch.images() {
        let mut acc = vec![0f64; k * f];
        let mut counts = vec![0u32; k];
        for i in batch.image_range(t) {
            let l = labels[i] as usize;
            counts[l] += 1;
            for (j, x) in batch.row(i).iter().enumerate() {
                acc[l * f + j] += x.to_f64() - codebook.as_slice()[l * f + j] as f64;
            }
        }
        let mut row: Vec<f32> = acc.iter().map(|&x| x as f32).collect();
        for step in norm.steps() {
            match *step {
                Step::Mass => {
                    for (c, &n) in counts.iter().enumerate() {
                        if n > 0 {
                            row[c * f..(c + 1) * f]
                                .iter_mut()
                                .for_each(|x| *x /= n as f32);
                        }
                    }
                }
                Step::Power(a) => row
                    .iter_mut()
                    .for_each(|x| *x = x.signum() * x.abs().powf(a) + 0.0),
                Step::Intra => {
                    for b in row.chunks_mut(f) {
                        let n: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
                        if n > 0.0 {
                            b.iter_mut().for_each(|x| *x /= n);
                        }
                    }
                }
                Step::L2 => {
                    let n: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
                    if n > 0.0 {
                        row.iter_mut().for_each(|x| *x /= n);
                    }
                }
            }
        }
        out.row_mut(t).assign(&ndarray::ArrayView1::from(&row));
    }
    (out, labels)
}
