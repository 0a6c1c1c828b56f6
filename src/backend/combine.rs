//! One image too large for one pass — a GPU chunk, a stream batch — is
//! processed in row pieces. Each piece's raw (pre-normalization) sums are
//! added here, in f64, in piece order; the image is then finished once:
//! its sums rounded to f32, its counts with them, and the normalization
//! applied (SPEC §3) as for a whole image. A fixed order of fixed
//! operations, so the result never depends on how the pieces were
//! scheduled (SPEC §5).
//!
//! The GPU pipeline combines the pieces of an image split across chunks
//! with it, and the stream the pieces of an image split across batches, on
//! either backend. The backends add their pieces in their own terms: the
//! GPU and the CPU's hard route add residual sums (the centroid already
//! subtracted); the CPU's soft route adds `Σ a·v` and subtracts the
//! weighted centroids at the end ([`CentroidTerm`]), exactly as it does for
//! a whole image, so a split image gives the in-memory bits.

use crate::error::{Result, VladError};
use crate::model::codebook::Codebook;
use crate::model::normalization::Normalization;

/// What multiplies each centroid when the image is finished.
#[derive(Clone, Debug, PartialEq)]
pub enum CentroidTerm {
    /// Nothing: the pieces' sums are residual sums already.
    Subtracted,
    /// The counts (`mass`): soft assignment without `rn`, whose sums are
    /// `Σ a·v`.
    Mass,
    /// Per-cluster weights of their own, `K` of them, scaled like the sums:
    /// soft assignment with `rn` (`Σ a/‖v − c‖`).
    Weights(Vec<f64>),
}

/// The running sums of one image split into row pieces.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitImage {
    clusters: usize,
    dim: usize,
    /// `K·F` sums, cluster-major.
    pub sums: Vec<f64>,
    /// `K` counts (hard) or soft counts `Σ a`: what `mass` divides by.
    pub mass: Vec<f64>,
    /// What is subtracted at the end.
    pub centroids: CentroidTerm,
    /// What the sums are multiplied by at the end (an exact power of two:
    /// the CPU's soft route scales its weights to stay out of subnormals).
    pub scale: f64,
    /// The same image summed another way, finished instead when this one's
    /// result is not finite (the CPU's soft route carries its unscaled
    /// sums for an image whose finite values overflow the scaled ones).
    pub fallback: Option<Box<SplitImage>>,
    /// Pieces added so far.
    pieces: usize,
}

impl SplitImage {
    /// Zero sums for an image of `codebook`, whose pieces add residual sums.
    pub fn new(codebook: &Codebook) -> Self {
        let (k, f) = (codebook.clusters(), codebook.dim());
        SplitImage {
            clusters: k,
            dim: f,
            sums: vec![0.0; k * f],
            mass: vec![0.0; k],
            centroids: CentroidTerm::Subtracted,
            scale: 1.0,
            fallback: None,
            pieces: 0,
        }
    }

    /// `K`.
    pub fn clusters(&self) -> usize {
        self.clusters
    }

    /// `F`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Pieces added so far (counted by [`SplitImage::piece_added`]).
    pub fn pieces(&self) -> usize {
        self.pieces
    }

    /// Count one more piece (the backends call it once per piece they add).
    pub fn piece_added(&mut self) {
        self.pieces += 1;
    }

    /// Add a piece given as f32 residual sums (`K·F`) and f32 counts
    /// (`K`), each widened to f64: what the GPU reads back.
    pub fn add_f32(&mut self, sums: &[f32], mass: impl IntoIterator<Item = f64>) -> Result<()> {
        if sums.len() != self.sums.len() {
            return Err(VladError::DimensionMismatch(format!(
                "a piece of {} sums added to an image of K·F = {}",
                sums.len(),
                self.sums.len()
            )));
        }
        for (s, &x) in self.sums.iter_mut().zip(sums) {
            *s += x as f64;
        }
        let mut n = 0;
        for (m, x) in self.mass.iter_mut().zip(mass) {
            *m += x;
            n += 1;
        }
        if n != self.clusters {
            return Err(VladError::DimensionMismatch(format!(
                "a piece of {n} counts added to an image of K = {}",
                self.clusters
            )));
        }
        self.piece_added();
        Ok(())
    }

    /// The image's `K·F` row into `out`, and its `K` counts as f32 into
    /// `mass`, before normalization: each sum times the scale, minus the
    /// centroid term, rounded once to f32 (`-0.0` becomes `+0.0`). Returns
    /// whether every value is finite.
    pub fn raw_row(&self, codebook: &Codebook, out: &mut [f32], mass: &mut [f32]) -> bool {
        let f = self.dim;
        let centroids = codebook.as_slice();
        let mut finite = true;
        for c in 0..self.clusters {
            let weight = match &self.centroids {
                CentroidTerm::Subtracted => 0.0,
                CentroidTerm::Mass => self.mass[c],
                // Summed with the weights, so scaled like the sums.
                CentroidTerm::Weights(w) => w[c] * self.scale,
            };
            let block = &mut out[c * f..(c + 1) * f];
            let sums = &self.sums[c * f..(c + 1) * f];
            let centroid = &centroids[c * f..(c + 1) * f];
            for ((o, &s), &y) in block.iter_mut().zip(sums).zip(centroid) {
                *o = (s * self.scale - weight * y as f64) as f32 + 0.0;
            }
            mass[c] = self.mass[c] as f32;
            finite &= block
                .iter()
                .fold(mass[c].is_finite(), |ok, v| ok & v.is_finite());
        }
        finite
    }

    /// Finish the image: its raw row (the fallback's when this one is not
    /// finite), normalized with `norm`, into `out` (`K·F`).
    pub fn finish(&self, codebook: &Codebook, norm: &Normalization, out: &mut [f32]) -> Result<()> {
        let (k, f) = (self.clusters, self.dim);
        if out.len() != k * f || codebook.clusters() != k || codebook.dim() != f {
            return Err(VladError::DimensionMismatch(format!(
                "finishing a split image of K × F = {k} × {f} into {} values",
                out.len()
            )));
        }
        let mut mass = vec![0f32; k];
        if !self.raw_row(codebook, out, &mut mass)
            && let Some(fallback) = &self.fallback
        {
            fallback.raw_row(codebook, out, &mut mass);
        }
        crate::backend::cpu::normalize::normalize_row(out, &mass, k, f, norm);
        Ok(())
    }
}
