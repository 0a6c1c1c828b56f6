//! Soft assignment and `rn` (SPEC §10) for an image the stream cuts into
//! row pieces (SPEC §11), on the CPU: the image's running f64 sums, carried
//! from piece to piece, then rounded, normalized and emitted once.
//!
//! Whole images in a batch go through [`crate::backend::weighted::run_encode`], the
//! encoder's own route. A split image's soft sums are carried by the CPU
//! route's own per-image accumulator ([`ImageSums`]: pieces start at
//! multiples of its block of [`BLOCK_ROWS`] rows, so it adds the same
//! numbers in the same order as in memory); hard `rn` is summed row by row
//! as `crate::backend::cpu::residual_norm` does. So the streamed row is the
//! in-memory one, bit for bit (tests/cli/stream_soft.rs checks it).

use ndarray::Array2;

use crate::backend::cpu::soft_aggregate::{BLOCK_ROWS, ImageSums};
use crate::backend::cpu::soft_kernel::SoftKernel;
use crate::model::assignment::SoftParams;
use crate::model::codebook::Codebook;
use crate::model::element::Element;
use crate::model::normalization::Normalization;

/// The sums of one split image so far.
pub(crate) struct WeightedPieces {
    /// Soft: the sums with the weights scaled (what memory tries first)…
    scaled: ImageSums,
    /// …and unscaled (what memory falls back to when finite values
    /// overflow the scaled sums): both are carried, the choice is made at
    /// the end as `crate::backend::cpu::soft_aggregate::aggregate` makes it.
    plain: ImageSums,
    kernel: Option<Option<SoftKernel>>,
    labels: Vec<u32>,
    /// Hard `rn`: `Σ (v − c)/‖v − c‖`.
    sums: Vec<f64>,
    /// Hard `rn`: descriptors per cluster.
    counts: Vec<u64>,
    residual: Vec<f64>,
}

impl WeightedPieces {
    /// Zero sums for `codebook`, with `rn` or not.
    pub fn new(codebook: &Codebook, rn: bool) -> Self {
        let (k, f) = (codebook.clusters(), codebook.dim());
        WeightedPieces {
            scaled: ImageSums::new(codebook, rn, true),
            plain: ImageSums::new(codebook, rn, false),
            kernel: None,
            labels: Vec::new(),
            sums: vec![0.0; k * f],
            counts: vec![0; k],
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
        rows: &[E],
        labels: &[u32],
    ) {
        let f = codebook.dim();
        let Some(params) = params else {
            self.add_hard_rn(codebook, rows, labels);
            return;
        };
        let kernel = self
            .kernel
            .get_or_insert_with(|| SoftKernel::new(params.weights_slice(), params.bias_slice(), f))
            .as_ref();
        for block in rows.chunks(BLOCK_ROWS * f) {
            self.labels.resize(block.len() / f, 0);
            self.scaled
                .add_block(codebook, params, kernel, block, &mut self.labels);
            self.plain
                .add_block(codebook, params, kernel, block, &mut self.labels);
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
    pub fn finish(&mut self, codebook: &Codebook, soft: bool, norm: &Normalization) -> Vec<f32> {
        let (k, f) = (codebook.clusters(), codebook.dim());
        let mut row = Array2::<f32>::zeros((1, k * f));
        let mut mass = Array2::<f32>::zeros((1, k));
        if soft {
            let (Some(out), Some(counts)) = (row.as_slice_mut(), mass.as_slice_mut()) else {
                unreachable!("fresh arrays are contiguous");
            };
            // The stream's input is checked finite: a non-finite sum is an
            // overflow of the scaled weights, as in memory.
            if !self.scaled.finish(codebook, out, counts) {
                self.plain.finish(codebook, out, counts);
            }
        } else {
            for (o, a) in row.iter_mut().zip(&self.sums) {
                *o = *a as f32 + 0.0;
            }
            for (o, &n) in mass.iter_mut().zip(&self.counts) {
                *o = n as f32;
            }
        }
        crate::backend::cpu::normalize::normalize_rows(&mut row, &mass, k, f, norm);
        row.into_iter().collect()
    }
}
