//! k-means on a memory-mapped input (SPEC §11): the input is checked for
//! NaN/Inf in one streaming pass and the seeded training sample is gathered
//! row by row from the map, dropping pages as it goes, so training on a
//! subsample never holds the whole file. The result is bitwise that of
//! [`KMeans::fit`] on the whole array in memory: the same rows are drawn
//! with the same seed, in the same order.
//!
//! Training on every point (`max_points_per_centroid = None`, or an input
//! no larger than the sample) streams every full-data pass — k-means++,
//! each Lloyd iteration, the final inertia — over windows of the map (see
//! `source.rs`), with the same bits as in memory. Memory: the windows, plus
//! 4 bytes a point (the labels, or `D(x)²` while seeding) that the limit
//! is charged for first. The GPU engine takes the rows in one call, as in
//! memory: on the GPU the input is mapped whole.

use std::time::Instant;

use ndarray::Array2;

use super::source::{Source, WINDOW_ALIGN};
use super::training_set;
use super::{KMeans, KMeansResult};
use crate::error::{Result, VladError};
use crate::io::mapped::MappedNpy;
use crate::model::element::Element;

impl KMeans {
    /// Train on the `(N, F)` rows of `input` (`T·L` rows for `(T, L, F)`),
    /// using at most `memory_limit` bytes for each streamed window. Returns
    /// the result and the number of rows trained on.
    pub fn fit_mapped(
        &self,
        input: &MappedNpy,
        memory_limit: u64,
    ) -> Result<(KMeansResult, usize)> {
        match input.dtype() {
            crate::model::element::DType::F32 => self.fit_mapped_as::<f32>(input, memory_limit),
            crate::model::element::DType::F64 => self.fit_mapped_as::<f64>(input, memory_limit),
            crate::model::element::DType::U8 => self.fit_mapped_as::<u8>(input, memory_limit),
        }
    }

    fn fit_mapped_as<E: Element>(
        &self,
        input: &MappedNpy,
        memory_limit: u64,
    ) -> Result<(KMeansResult, usize)> {
        let start = Instant::now();
        self.check_settings()?;
        let (n, dim) = (input.rows_total(), input.dim());
        let Some(indices) =
            super::training_set::sample_indices(n, self.k, self.max_points_per_centroid, self.seed)
        else {
            // Every row, streamed pass by pass.
            training_set::check_sizes(n, dim, self.k)?;
            let window = window_rows(memory_limit, dim * std::mem::size_of::<E>());
            check_finite::<E>(input, window)?;
            training_set::check_enough(n, self.k)?;
            let window = self.pass_window::<E>(n, dim, memory_limit);
            let result = self.train(Source::<E>::mapped(input, window), n, start)?;
            return Ok((result, n));
        };
        let window = window_rows(memory_limit, dim * std::mem::size_of::<E>());
        check_finite::<E>(input, window)?;
        // The sample, in index order, a window of the file at a time.
        let mut sample = Vec::with_capacity(indices.len() * dim);
        let mut buffer = Vec::new();
        let mut start = 0;
        while start < indices.len() {
            let first = indices[start];
            let end = start + indices[start..].partition_point(|&i| i < first + window);
            let last = indices[end - 1];
            let rows = input.rows::<E>(first..last + 1, &mut buffer)?;
            for &i in &indices[start..end] {
                sample.extend_from_slice(&rows[(i - first) * dim..(i - first + 1) * dim]);
            }
            input.release(first..last + 1);
            start = end;
        }
        let sample = Array2::from_shape_vec((indices.len(), dim), sample)
            .map_err(|e| VladError::DimensionMismatch(e.to_string()))?;
        // The sample is the training set: train on all of it.
        let on_sample = KMeans {
            max_points_per_centroid: None,
            ..self.clone()
        };
        let result = on_sample.fit(sample.view())?;
        Ok((result, indices.len()))
    }
}

impl KMeans {
    /// Rows per window of a full-data pass on `n` rows of width `dim`
    /// under `memory_limit`: the per-point state (4 bytes a point) and the
    /// centroid sums are charged first; half of what is left goes to a
    /// window, whose rows cost their input bytes plus, while seeding, an
    /// f32 copy, a norm and the distances to each candidate. At least one
    /// aligned block, whatever the limit.
    fn pass_window<E: Element>(&self, n: usize, dim: usize, memory_limit: u64) -> usize {
        let trials = 2 + (self.k.max(1) as f64).ln().floor() as u64;
        let (n, dim, k) = (n as u64, dim as u64, self.k as u64);
        let fixed = n.saturating_mul(4) + k.saturating_mul(dim).saturating_mul(16);
        let row = dim * std::mem::size_of::<E>() as u64 + dim * 4 + 4 + 4 * trials + 8;
        let rows = memory_limit.saturating_sub(fixed) / 2 / row.max(1);
        usize::try_from(rows)
            .unwrap_or(usize::MAX)
            .max(WINDOW_ALIGN)
    }
}

/// Rows per streamed window: a quarter of the limit, at least one row.
fn window_rows(memory_limit: u64, row_bytes: usize) -> usize {
    usize::try_from(memory_limit / 4 / row_bytes.max(1) as u64)
        .unwrap_or(usize::MAX)
        .max(1)
}

/// The first NaN/Inf of the whole input, as [`KMeans::fit`] reports it.
fn check_finite<E: Element>(input: &MappedNpy, window: usize) -> Result<()> {
    let (n, dim) = (input.rows_total(), input.dim());
    let mut buffer = Vec::new();
    let mut start = 0;
    while start < n {
        let end = (start + window).min(n);
        let rows = input.rows::<E>(start..end, &mut buffer)?;
        if let Some(i) = rows.iter().position(|x| !x.is_finite()) {
            return Err(VladError::NonFinite {
                what: "descriptors",
                row: start + i / dim,
                image: None,
                col: i % dim,
                value: rows[i].to_f64(),
            });
        }
        input.release(start..end);
        start = end;
    }
    Ok(())
}
