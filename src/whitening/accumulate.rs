//! Learning a whitening from rows fed in order, batch by batch (the
//! stream, SPEC §11), in bounded memory and with the bits of a fit in
//! memory: what is summed depends only on which rows are used, never on
//! where the batches were cut.
//!
//! Two forms, both in f64 (SPEC §14): when the rows used are at least `D`,
//! the sums `Σx` and `Σxxᵀ` (a `D × D` matrix, added block by block of
//! [`BLOCK`] used rows); when they are fewer, the rows themselves (fewer
//! than `D × D` values), whose `n × n` Gram matrix is the smaller problem.

use ndarray::ArrayView2;
use rayon::prelude::*;

use super::WhiteningParams;
use super::fit::{Moments, Problem, check_covariance_fits, solve};
use super::sample::sample_rows;
use crate::error::{Result, VladError};
use crate::whitening::Whitening;

/// Used rows summed into `Σxxᵀ` at a time: the block's product is one
/// GEMM; the blocks always hold the same rows (counted over used rows).
pub(crate) const BLOCK: usize = 256;

/// A whitening being learned ([`WhiteningParams::accumulator`]): feed every
/// row once, in order, with [`WhiteningAccumulator::add`], then
/// [`WhiteningAccumulator::finish`].
#[derive(Debug)]
pub struct WhiteningAccumulator {
    params: WhiteningParams,
    rows: usize,
    dim: usize,
    /// The sampled rows (sorted), or `None` for all rows.
    picked: Option<Vec<usize>>,
    /// Index into `picked` of the next row to keep.
    cursor: usize,
    /// Rows fed so far.
    seen: usize,
    /// Used rows not yet summed (covariance form) or all used rows (Gram).
    kept: Vec<f32>,
    kept_rows: usize,
    /// The covariance form's running sums; `None` in the Gram form.
    moments: Option<Moments>,
}

impl WhiteningAccumulator {
    pub(crate) fn new(params: WhiteningParams, rows: usize, dim: usize) -> Result<Self> {
        let picked = sample_rows(rows, params.sample_cap(), params.seed);
        let used = picked.as_ref().map_or(rows, Vec::len);
        let moments = (used >= dim).then(|| Moments::new(dim));
        if moments.is_some() {
            check_covariance_fits(dim)?;
        }
        Ok(WhiteningAccumulator {
            params,
            rows,
            dim,
            picked,
            cursor: 0,
            seen: 0,
            kept: Vec::new(),
            kept_rows: 0,
            moments,
        })
    }

    /// Rows used (all, or the sample).
    pub fn used_rows(&self) -> usize {
        self.picked.as_ref().map_or(self.rows, Vec::len)
    }

    /// Whether the `n × n` Gram form is used (fewer used rows than `D`).
    pub fn uses_gram(&self) -> bool {
        self.moments.is_none()
    }

    /// Feed rows `first_row ..` (`(n, D)`); rows must come in order, each
    /// once.
    pub fn add(&mut self, first_row: usize, rows: ArrayView2<'_, f32>) -> Result<()> {
        let (n, dim) = rows.dim();
        if dim != self.dim {
            return Err(VladError::DimensionMismatch(format!(
                "whitening rows have D = {dim}, the first ones had {}",
                self.dim
            )));
        }
        if first_row != self.seen || self.seen + n > self.rows {
            return Err(VladError::InvalidArgument(format!(
                "whitening rows {first_row}..{} fed after {} of {} rows: feed each row once, in order",
                first_row + n,
                self.seen,
                self.rows
            )));
        }
        super::check_finite(rows, first_row)?;
        for (i, row) in rows.outer_iter().enumerate() {
            let global = first_row + i;
            let keep = match &self.picked {
                None => true,
                Some(picked) => {
                    let hit = picked.get(self.cursor) == Some(&global);
                    if hit {
                        self.cursor += 1;
                    }
                    hit
                }
            };
            if keep {
                self.kept.extend(row.iter().copied());
                self.kept_rows += 1;
                if self.moments.is_some() && self.kept_rows == BLOCK {
                    self.flush();
                }
            }
        }
        self.seen += n;
        Ok(())
    }

    /// Sum the kept rows into the moments (covariance form).
    fn flush(&mut self) {
        if let Some(moments) = &mut self.moments
            && self.kept_rows > 0
        {
            moments.add_block(&self.kept, self.kept_rows);
            self.kept.clear();
            self.kept_rows = 0;
        }
    }

    /// The whitening, once every row was fed.
    pub fn finish(mut self) -> Result<Whitening> {
        if self.seen != self.rows {
            return Err(VladError::InvalidArgument(format!(
                "whitening fed {} of its {} rows",
                self.seen, self.rows
            )));
        }
        self.flush();
        let problem = match self.moments.take() {
            Some(moments) => Problem::Covariance(moments),
            None => Problem::Gram {
                rows: std::mem::take(&mut self.kept),
                n: self.kept_rows,
                dim: self.dim,
            },
        };
        solve(&self.params, problem)
    }
}

/// Row panels of a square `n × n` output, `PANEL` rows each: the unit of
/// parallel work, the same whatever the thread count.
pub(crate) const PANEL: usize = 64;

/// `out[i·n + j] (+)= Σ_r a[r·n + i] · a[r·n + j]` for `j ≥ i − i % PANEL`
/// (the upper block triangle), `a` being `b × n` row-major f64: `AᵀA`
/// without the half a symmetric product does not need.
pub(crate) fn add_gram_of_columns(out: &mut [f64], a: &[f64], b: usize, n: usize) {
    // The n vectors are a's columns: element (i, r) at a[i·1 + r·n].
    upper_gram(out, a, n, b, 1, n, true);
}

/// `out[i·n + j] = Σ_d a[i·w + d] · a[j·w + d]` for the upper block
/// triangle: `AAᵀ` of an `n × w` row-major f64 matrix.
pub(crate) fn gram_of_rows(a: &[f64], n: usize, w: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; n * n];
    // The n vectors are a's rows: element (i, d) at a[i·w + d·1].
    upper_gram(&mut out, a, n, w, w, 1, false);
    out
}

/// The dot products of `n` vectors of `len` components, element `(i, r)`
/// at `a[i·vector_stride + r·component_stride]`, into the upper block
/// triangle of `out` (`n × n` row-major; added to it when `accumulate`),
/// one single-threaded GEMM per row panel of [`PANEL`] rows.
fn upper_gram(
    out: &mut [f64],
    a: &[f64],
    n: usize,
    len: usize,
    vector_stride: usize,
    component_stride: usize,
    accumulate: bool,
) {
    let (sv, sc) = (vector_stride as isize, component_stride as isize);
    out.par_chunks_mut(PANEL * n)
        .enumerate()
        .for_each(|(p, panel)| {
            let i0 = p * PANEL;
            let m = panel.len() / n;
            // SAFETY: dst is rows i0..i0+m, columns i0..n of `out` (inside
            // `panel`, row stride n); lhs is vectors i0..i0+m as rows
            // (element (i, r) = a[(i0 + i)·sv + r·sc]); rhs is vectors i0..n
            // as columns (element (r, j) = a[(i0 + j)·sv + r·sc]); every
            // element they reach lies within `a`.
            unsafe {
                gemm::gemm(
                    m,
                    n - i0,
                    len,
                    panel.as_mut_ptr().add(i0),
                    1,
                    n as isize,
                    accumulate,
                    a.as_ptr().add(i0 * vector_stride),
                    sc,
                    sv,
                    a.as_ptr().add(i0 * vector_stride),
                    sv,
                    sc,
                    if accumulate { 1.0 } else { 0.0 },
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        });
}

/// Copy the upper triangle of a square `n × n` matrix onto its lower one.
pub(crate) fn mirror_upper(m: &mut [f64], n: usize) {
    for i in 0..n {
        for j in 0..i {
            m[i * n + j] = m[j * n + i];
        }
    }
}
