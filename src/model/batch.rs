//! Turning user arrays into the one shape every backend consumes — a
//! row-major `(N, F)` slice plus CSR offsets and optional labels — and
//! checking them against SPEC §6 once, before any backend runs.

use std::borrow::Cow;

use ndarray::{ArrayView2, ArrayView3};
use rayon::prelude::*;

use crate::error::{Result, VladError};
use crate::model::element::Element;
use crate::model::offset::{Offset, to_usize_offsets};

/// A validated batch of images: descriptors `(N, F)` row-major, offsets
/// `(T+1,)` CSR, optional labels `(N,)` in `[0, K)`.
#[derive(Debug)]
pub struct Batch<'a, E: Element> {
    rows: Cow<'a, [E]>,
    dim: usize,
    offsets: Cow<'a, [usize]>,
    labels: Option<Cow<'a, [u32]>>,
    /// Whether every value was checked finite (SPEC §6) when the batch was
    /// built; `false` only for the `*_deferred` constructors.
    finite_checked: bool,
}

impl<'a, E: Element> Batch<'a, E> {
    /// Fixed-size images `(T, L, F)`: image `t` is rows `t·L .. (t+1)·L`.
    pub fn fixed(descriptors: ArrayView3<'a, E>) -> Result<Self> {
        Self::fixed_with(descriptors, true)
    }

    /// [`Batch::fixed`] with every check but finiteness, which is left to
    /// the encoder (see [`Batch::finite_checked`]).
    pub fn fixed_deferred(descriptors: ArrayView3<'a, E>) -> Result<Self> {
        Self::fixed_with(descriptors, false)
    }

    fn fixed_with(descriptors: ArrayView3<'a, E>, check_finite: bool) -> Result<Self> {
        let (t, l, f) = descriptors.dim();
        // T + 1 offsets: allocated fallibly, since T is the caller's (an
        // empty (T, 0, F) array can claim any T).
        let mut offsets: Vec<usize> = Vec::new();
        let count = t.checked_add(1);
        if count.is_none_or(|count| offsets.try_reserve_exact(count).is_err()) {
            return Err(VladError::TooLarge {
                what: format!("the offsets of T = {t} images"),
                bytes: count.and_then(|c| (c as u64).checked_mul(8)),
                hint: "split the images into smaller batches".to_string(),
            });
        }
        offsets.extend((0..=t).map(|i| i * l));
        let rows = contiguous3(descriptors);
        Self::build(rows, t * l, f, Cow::Owned(offsets), check_finite)
    }

    /// Ragged images: `(N, F)` rows plus CSR offsets `(T+1,)` in any
    /// [`Offset`] type (`usize` is read in place; `u64`, `i64`, `u32`, `i32`
    /// are converted once).
    pub fn ragged<O: Offset>(descriptors: ArrayView2<'a, E>, offsets: &'a [O]) -> Result<Self> {
        Self::ragged_with(descriptors, offsets, true)
    }

    /// [`Batch::ragged`] with every check but finiteness, which is left to
    /// the encoder (see [`Batch::finite_checked`]).
    pub fn ragged_deferred<O: Offset>(
        descriptors: ArrayView2<'a, E>,
        offsets: &'a [O],
    ) -> Result<Self> {
        Self::ragged_with(descriptors, offsets, false)
    }

    fn ragged_with<O: Offset>(
        descriptors: ArrayView2<'a, E>,
        offsets: &'a [O],
        check_finite: bool,
    ) -> Result<Self> {
        let (n, f) = descriptors.dim();
        let offsets = to_usize_offsets(offsets)?;
        check_offsets(&offsets, n)?;
        Self::build(contiguous2(descriptors), n, f, offsets, check_finite)
    }

    /// One image per array of a list of `(n_t, F)` arrays (copied into one
    /// row-major buffer). Every array must have the same `F`; an empty list
    /// is [`VladError::Empty`].
    pub fn from_images(images: &[ArrayView2<'_, E>]) -> Result<Batch<'static, E>> {
        let Some(first) = images.first() else {
            return Err(VladError::Empty("the list of images is empty".to_string()));
        };
        let f = first.ncols();
        let mut offsets = Vec::with_capacity(images.len() + 1);
        offsets.push(0usize);
        for (t, image) in images.iter().enumerate() {
            if image.ncols() != f {
                return Err(VladError::DimensionMismatch(format!(
                    "image {t} has F = {} but image 0 has F = {f}",
                    image.ncols()
                )));
            }
            let end = offsets[t] + image.nrows();
            offsets.push(end);
        }
        let n = offsets[images.len()];
        let mut rows: Vec<E> = Vec::new();
        if n.checked_mul(f)
            .is_none_or(|len| rows.try_reserve_exact(len).is_err())
        {
            return Err(VladError::TooLarge {
                what: format!("{n} descriptors of F = {f}"),
                bytes: n
                    .checked_mul(f)
                    .and_then(|len| (len as u64).checked_mul(std::mem::size_of::<E>() as u64)),
                hint: "split the images into smaller batches".to_string(),
            });
        }
        for image in images {
            rows.extend(image.iter().copied());
        }
        Batch::build(Cow::Owned(rows), n, f, Cow::Owned(offsets), true)
    }

    /// All `(N, F)` rows as one image.
    pub fn single(descriptors: ArrayView2<'a, E>) -> Result<Self> {
        let (n, f) = descriptors.dim();
        Self::build(contiguous2(descriptors), n, f, Cow::Owned(vec![0, n]), true)
    }

    fn build(
        rows: Cow<'a, [E]>,
        n: usize,
        dim: usize,
        offsets: Cow<'a, [usize]>,
        check: bool,
    ) -> Result<Self> {
        if dim == 0 {
            return Err(VladError::Empty(
                "the descriptors have F = 0 dimensions".to_string(),
            ));
        }
        debug_assert_eq!(rows.len(), n * dim);
        if check {
            check_finite(&rows, dim, &offsets)?;
        }
        Ok(Batch {
            rows,
            dim,
            offsets,
            labels: None,
            finite_checked: check,
        })
    }

    /// Whether every value was checked finite when the batch was built:
    /// `false` only for [`Batch::fixed_deferred`] and
    /// [`Batch::ragged_deferred`]. [`Encoder::encode_batch`] checks such a
    /// batch itself before running — except where the backend reads every
    /// value anyway and detects a non-finite one through its outputs (the
    /// CPU's soft assignment, SPEC §10) — and either way fails with the
    /// same [`VladError::NonFinite`] as the checked constructors (the first
    /// such value, by row). Deferring saves a pass over the input.
    ///
    /// [`Encoder::encode_batch`]: crate::Encoder::encode_batch
    pub fn finite_checked(&self) -> bool {
        self.finite_checked
    }

    /// SPEC §6's finiteness check, as the checked constructors run it (for
    /// a batch built with finiteness deferred).
    pub fn check_finite(&self) -> Result<()> {
        check_finite(&self.rows, self.dim, &self.offsets)
    }

    /// The error for the first non-finite value of image `t`, if it has
    /// one: the same as [`Batch::check_finite`] gives when that value is
    /// the batch's first.
    pub(crate) fn non_finite_in_image(&self, t: usize) -> Option<VladError> {
        let range = self.image_range(t);
        let values = &self.rows[range.start * self.dim..range.end * self.dim];
        let i = values.iter().position(|v| !v.is_finite())?;
        Some(non_finite_error(
            range.start * self.dim + i,
            values[i].to_f64(),
            self.dim,
            &self.offsets,
        ))
    }

    /// Attach given labels (skip assignment); each must be in `[0, clusters)`.
    pub fn with_labels(mut self, labels: &'a [u32], clusters: usize) -> Result<Self> {
        if labels.len() != self.len() {
            return Err(VladError::DimensionMismatch(format!(
                "{} labels for {} descriptors",
                labels.len(),
                self.len()
            )));
        }
        if let Some((index, &label)) = labels
            .iter()
            .enumerate()
            .find(|(_, l)| **l as usize >= clusters)
        {
            return Err(VladError::LabelOutOfRange {
                index,
                label: label as i128,
                clusters,
            });
        }
        self.labels = Some(Cow::Borrowed(labels));
        Ok(self)
    }

    /// Check that the descriptor width matches the codebook's.
    pub fn check_dim(&self, codebook_dim: usize) -> Result<()> {
        if self.dim != codebook_dim {
            return Err(VladError::DimensionMismatch(format!(
                "descriptors have F = {} but centroids have F = {}",
                self.dim, codebook_dim
            )));
        }
        Ok(())
    }

    /// Row-major descriptor values, `N·F` of them.
    pub fn rows(&self) -> &[E] {
        &self.rows
    }

    /// Descriptor row `i`.
    pub fn row(&self, i: usize) -> &[E] {
        &self.rows[i * self.dim..(i + 1) * self.dim]
    }

    /// Number of descriptors `N`.
    pub fn len(&self) -> usize {
        self.offsets.last().copied().unwrap_or(0)
    }

    /// Whether there are no descriptors at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Descriptor width `F`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of images `T`.
    pub fn images(&self) -> usize {
        self.offsets.len() - 1
    }

    /// CSR offsets, `T+1` of them.
    pub fn offsets(&self) -> &[usize] {
        &self.offsets
    }

    /// The rows of image `t`.
    pub fn image_range(&self, t: usize) -> std::ops::Range<usize> {
        self.offsets[t]..self.offsets[t + 1]
    }

    /// Given labels, if any.
    pub fn labels(&self) -> Option<&[u32]> {
        self.labels.as_deref()
    }

    /// Images `range` as a batch of their own, borrowing this batch's rows
    /// and labels (offsets rebased to 0). `finite_checked` is what the
    /// caller knows of the rows: true only once the whole batch was
    /// checked finite, so that the part is not checked again.
    pub(crate) fn images_part(
        &self,
        range: std::ops::Range<usize>,
        finite_checked: bool,
    ) -> Batch<'_, E> {
        let (first, last) = (self.offsets[range.start], self.offsets[range.end]);
        Batch {
            rows: Cow::Borrowed(&self.rows[first * self.dim..last * self.dim]),
            dim: self.dim,
            offsets: Cow::Owned(
                self.offsets[range.start..=range.end]
                    .iter()
                    .map(|o| o - first)
                    .collect(),
            ),
            labels: self
                .labels
                .as_deref()
                .map(|labels| Cow::Borrowed(&labels[first..last])),
            finite_checked,
        }
    }
}

fn contiguous2<E: Element>(a: ArrayView2<'_, E>) -> Cow<'_, [E]> {
    match a.to_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    }
}

fn contiguous3<E: Element>(a: ArrayView3<'_, E>) -> Cow<'_, [E]> {
    match a.to_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    }
}

/// Offsets must be CSR: `o[0] = 0`, non-decreasing, `o[T] = N`.
pub fn check_offsets(offsets: &[usize], n: usize) -> Result<()> {
    match offsets.first() {
        None => {
            return Err(VladError::InvalidOffsets(
                "offsets are empty: need T+1 values starting at 0".to_string(),
            ));
        }
        Some(&first) if first != 0 => {
            return Err(VladError::InvalidOffsets(format!(
                "offsets[0] = {first}, must be 0"
            )));
        }
        _ => {}
    }
    if let Some(i) = offsets.windows(2).position(|w| w[1] < w[0]) {
        return Err(VladError::InvalidOffsets(format!(
            "offsets decrease at index {}: {} then {}",
            i + 1,
            offsets[i],
            offsets[i + 1]
        )));
    }
    let last = offsets[offsets.len() - 1];
    if last != n {
        return Err(VladError::InvalidOffsets(format!(
            "offsets end at {last} (index {}) but there are {n} descriptors",
            offsets.len() - 1
        )));
    }
    Ok(())
}

/// Whether every value is finite. A fold without early exit, unlike
/// `Iterator::all`, so the compiler vectorizes it (2–3× faster measured),
/// and blocks are small enough that a NaN is still found early.
fn all_finite<E: Element>(values: &[E]) -> bool {
    values.iter().fold(true, |ok, v| ok & v.is_finite())
}

/// First non-finite value, reported by row and image. Parallel, because it
/// reads every input byte once and must not dominate the fast paths.
fn check_finite<E: Element>(rows: &[E], dim: usize, offsets: &[usize]) -> Result<()> {
    if E::DTYPE == crate::model::element::DType::U8 {
        return Ok(());
    }
    const BLOCK_ROWS: usize = 4096;
    let bad_block = rows
        .par_chunks(BLOCK_ROWS * dim)
        .position_first(|chunk| !all_finite(chunk));
    let Some(block) = bad_block else {
        return Ok(());
    };
    let start = block * BLOCK_ROWS * dim;
    let (i, value) = rows[start..]
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite())
        .map(|(i, v)| (start + i, v.to_f64()))
        .unwrap_or((start, f64::NAN));
    Err(non_finite_error(i, value, dim, offsets))
}

/// SPEC §6's error for the non-finite `value` at flat index `i`.
fn non_finite_error(i: usize, value: f64, dim: usize, offsets: &[usize]) -> VladError {
    let row = i / dim;
    let image = offsets.partition_point(|&o| o <= row).saturating_sub(1);
    VladError::NonFinite {
        what: "descriptors",
        row,
        image: Some(image),
        col: i % dim,
        value,
    }
}
