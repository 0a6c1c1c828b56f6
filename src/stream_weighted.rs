//! Soft assignment and `rn` (SPEC §10) for an image the stream cuts into
//! row pieces (SPEC §11), on the CPU: the image's running f64 sums, carried
//! from piece to piece, then rounded, normalized and emitted once.
//!
//! Whole images in a batch go through [`crate::weighted::run_encode`], the
//! encoder's own route. A split image is summed here with the CPU route's
//! own kernels ([`crate::cpu::soft_assign::soft_weights`],
//! [`crate::cpu::residual_norm::scale_by_inverse_norms`],
//! [`crate::cpu::soft_aggregate::weighted_rows`]) in the order
//! `crate::cpu::soft_aggregate` and `crate::cpu::residual_norm` sum an image
//! in memory: soft in blocks of [`BLOCK_ROWS`] rows from the image's start
//! (pieces start at multiples of it), hard `rn` row by row. So the streamed
//! row is the in-memory one, bit for bit (tests/cli/stream_soft.rs checks
//! it: a change to that order must be made here too).

use ndarray::Array2;

use crate::assignment::SoftParams;
use crate::codebook::Codebook;
use crate::cpu::soft_aggregate::BLOCK_ROWS;
use crate::element::{DType, Element};
use crate::normalization::Normalization;

/// The sums of one split image so far.
pub(crate) struct WeightedPieces {
    /// Soft: `Σ a·v` per block product; hard `rn`: `Σ (v − c)/‖v − c‖`.
    sums: Vec<f64>,
    /// Soft: `Σ a` (what `mass` divides by).
    mass: Vec<f64>,
    /// Soft: `Σ a` after `rn`'s scaling (what multiplies the centroid).
    subtract: Vec<f64>,
    /// Hard `rn`: descriptors per cluster.
    counts: Vec<u64>,
    converted: Vec<f32>,
    weights: Vec<f32>,
    product: Vec<f32>,
    residual: Vec<f64>,
}

impl WeightedPieces {
    /// Zero sums for a codebook of `k` centroids of width `f`.
    pub fn new(k: usize, f: usize) -> Self {
        WeightedPieces {
            sums: vec![0.0; k * f],
            mass: vec![0.0; k],
            subtract: vec![0.0; k],
            counts: vec![0; k],
            converted: Vec::new(),
            weights: Vec::new(),
            product: vec![0.0; k * f],
            residual: vec![0.0; f],
        }
    }

    /// Add the piece `rows` (a whole number of [`BLOCK_ROWS`] rows after
    /// the image's start): soft when `params` is given, else hard `rn` with
    /// `labels`.
    pub fn add<E: Element>(
        &mut self,
        codebook: &Codebook,
        params: Option<&SoftParams>,
        rn: bool,
        rows: &[E],
        labels: &[u32],
    ) {
        let (k, f) = (codebook.clusters(), codebook.dim());
        let Some(params) = params else {
            self.add_hard_rn(codebook, rows, labels);
            return;
        };
        for block in rows.chunks(BLOCK_ROWS * f) {
            let m = block.len() / f;
            let x: &[f32] = match as_f32(block) {
                Some(x) => x,
                None => {
                    self.converted.clear();
                    self.converted.extend(block.iter().map(|v| v.to_f32()));
                    &self.converted
                }
            };
            self.weights.resize(m * k, 0.0);
            crate::cpu::soft_assign::soft_weights(params, x, &mut self.weights);
            for a in self.weights.chunks_exact(k) {
                for (s, &w) in self.mass.iter_mut().zip(a) {
                    *s += w as f64;
                }
            }
            if rn {
                crate::cpu::residual_norm::scale_by_inverse_norms(codebook, x, &mut self.weights);
            }
            for a in self.weights.chunks_exact(k) {
                for (s, &w) in self.subtract.iter_mut().zip(a) {
                    *s += w as f64;
                }
            }
            crate::cpu::soft_aggregate::weighted_rows(&self.weights, x, m, k, f, &mut self.product);
            for (s, &p) in self.sums.iter_mut().zip(&self.product) {
                *s += p as f64;
            }
        }
    }

    fn add_hard_rn<E: Element>(&mut self, codebook: &Codebook, rows: &[E], labels: &[u32]) {
        let f = codebook.dim();
        let centroids = codebook.as_slice();
        for (v, &label) in rows.chunks_exact(f).zip(labels) {
            let label = label as usize;
            let c = &centroids[label * f..(label + 1) * f];
            for ((d, &x), &y) in self.residual.iter_mut().zip(v).zip(c) {
                *d = x.to_f64() - y as f64;
            }
            self.counts[label] += 1;
            let norm2: f64 = self.residual.iter().map(|d| d * d).sum();
            if norm2 > 0.0 {
                let inv = 1.0 / norm2.sqrt();
                let acc = &mut self.sums[label * f..(label + 1) * f];
                for (a, d) in acc.iter_mut().zip(&self.residual) {
                    *a += d * inv;
                }
            }
        }
    }

    /// The image's `K·F` row: rounded once to f32 as in memory, then
    /// normalized with `norm` by the CPU's weighted normalizer.
    pub fn finish(&self, codebook: &Codebook, soft: bool, norm: &Normalization) -> Vec<f32> {
        let (k, f) = (codebook.clusters(), codebook.dim());
        let mut row = Array2::<f32>::zeros((1, k * f));
        let mut mass = Array2::<f32>::zeros((1, k));
        if soft {
            let centroids = codebook.as_slice();
            for (c, centroid) in centroids.chunks_exact(f).enumerate() {
                let s = self.subtract[c];
                for (j, &y) in centroid.iter().enumerate() {
                    row[[0, c * f + j]] = (self.sums[c * f + j] - s * y as f64) as f32 + 0.0;
                }
                mass[[0, c]] = self.mass[c] as f32;
            }
        } else {
            for (o, a) in row.iter_mut().zip(&self.sums) {
                *o = *a as f32 + 0.0;
            }
            for (o, &n) in mass.iter_mut().zip(&self.counts) {
                *o = n as f32;
            }
        }
        crate::cpu::weighted_normalize::normalize_rows(&mut row, &mass, k, f, norm);
        row.into_iter().collect()
    }
}

/// The rows as f32 without a copy when they already are.
fn as_f32<E: Element>(rows: &[E]) -> Option<&[f32]> {
    if E::DTYPE == DType::F32 {
        bytemuck::try_cast_slice(rows).ok()
    } else {
        None
    }
}
