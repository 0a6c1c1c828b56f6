//! The rows k-means trains on: the input checked (SPEC §6), then either all
//! of it or a seeded subsample of at most `K × max_points_per_centroid` rows.
//! The sample's indices are drawn first and only those rows are gathered, so
//! a large input is never converted or copied as a whole.

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use ndarray::ArrayView2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::source::Source;
use crate::error::{Result, VladError};
use crate::model::element::Element;

/// ChaCha stream of the subsample draw (init and re-seeding use others, so
/// changing one never shifts another).
pub(crate) const SAMPLE_STREAM: u64 = 0;

/// Training rows, row-major, as wide as the input.
pub(crate) struct TrainingSet<'a, E: Element> {
    pub rows: Cow<'a, [E]>,
}

/// Check `descriptors` for k-means with `k` clusters (shape, finiteness,
/// enough points), without looking at the values more than once.
pub(crate) fn check_input<E: Element>(descriptors: &ArrayView2<'_, E>, k: usize) -> Result<()> {
    let (n, dim) = descriptors.dim();
    check_sizes(n, dim, k)?;
    // Rows are independent, so `find_first` reports the first offending row
    // whatever the thread count.
    if let Some(row) = (0..n)
        .into_par_iter()
        .find_first(|&i| descriptors.row(i).iter().any(|x| !x.is_finite()))
    {
        let (col, value) = descriptors
            .row(row)
            .iter()
            .enumerate()
            .find(|(_, x)| !x.is_finite())
            .map(|(c, x)| (c, x.to_f64()))
            .unwrap_or((0, f64::NAN));
        return Err(VladError::NonFinite {
            what: "descriptors",
            row,
            image: None,
            col,
            value,
        });
    }
    check_enough(n, k)
}

/// The checks of [`check_input`] made before the values are read.
pub(crate) fn check_sizes(n: usize, dim: usize, k: usize) -> Result<()> {
    if k == 0 {
        return Err(VladError::InvalidArgument(
            "k-means needs k ≥ 1 clusters, got k = 0".to_string(),
        ));
    }
    if n == 0 {
        return Err(VladError::Empty(
            "no descriptors to train on (N = 0)".to_string(),
        ));
    }
    if dim == 0 {
        return Err(VladError::Empty(
            "the descriptors have F = 0 dimensions".to_string(),
        ));
    }
    Ok(())
}

/// The check of [`check_input`] made after the values are found finite.
pub(crate) fn check_enough(n: usize, k: usize) -> Result<()> {
    if k > n {
        return Err(VladError::InvalidArgument(format!(
            "k = {k} clusters is more than the N = {n} points to train on"
        )));
    }
    Ok(())
}

/// Sorted indices of the rows to train on: all `n` when
/// `max_points_per_centroid` is `None` or the input is small enough, else
/// `k × max_points_per_centroid` distinct rows drawn with `seed`.
pub(crate) fn sample_indices(
    n: usize,
    k: usize,
    max_points_per_centroid: Option<usize>,
    seed: u64,
) -> Option<Vec<usize>> {
    let cap = k.saturating_mul(max_points_per_centroid?);
    if n <= cap {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(SAMPLE_STREAM);
    let mut indices = rand::seq::index::sample(&mut rng, n, cap).into_vec();
    // Reading the sample in input order is kinder to caches and makes the
    // training set equal to `descriptors.select(Axis(0), &indices)`.
    indices.sort_unstable();
    Some(indices)
}

/// The training rows: a borrow of `descriptors` when it is all used and
/// already row-major, else a gathered copy of the chosen rows.
pub(crate) fn gather<'a, E: Element>(
    descriptors: &ArrayView2<'a, E>,
    indices: Option<&[usize]>,
) -> TrainingSet<'a, E> {
    let dim = descriptors.ncols();
    let rows = match indices {
        None => match descriptors.to_slice() {
            Some(slice) => Cow::Borrowed(slice),
            None => Cow::Owned(descriptors.iter().copied().collect()),
        },
        Some(indices) => {
            let mut rows = Vec::with_capacity(indices.len() * dim);
            for &i in indices {
                rows.extend(descriptors.row(i).iter().copied());
            }
            Cow::Owned(rows)
        }
    };
    TrainingSet { rows }
}

/// A row compared by the f32 values training sees (so `-0.0 == 0.0`, and
/// f64 values that round to the same f32 are one point).
pub(crate) struct RowKey<'a, E: Element>(pub &'a [E]);

fn training_bits<E: Element>(x: E) -> u32 {
    // `+ 0.0` turns -0.0 into +0.0; inputs are finite, so no NaN payloads.
    (x.to_f32() + 0.0).to_bits()
}

impl<E: Element> PartialEq for RowKey<'_, E> {
    fn eq(&self, other: &Self) -> bool {
        self.0
            .iter()
            .zip(other.0)
            .all(|(a, b)| training_bits(*a) == training_bits(*b))
    }
}

impl<E: Element> Eq for RowKey<'_, E> {}

impl<E: Element> Hash for RowKey<'_, E> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for x in self.0 {
            state.write_u32(training_bits(*x));
        }
    }
}

/// A row's identity as training sees it: the bits of its f32 values, as
/// [`RowKey`] compares them.
pub(crate) fn row_key<E: Element>(row: &[E]) -> Vec<u32> {
    row.iter().map(|&x| training_bits(x)).collect()
}

/// Refuse a training set with fewer than `k` distinct points: k-means could
/// only return duplicate centroids. Stops counting at `k`, so the usual case
/// costs a few hashed rows (read window by window from `source`).
pub(crate) fn check_distinct<E: Element>(source: &Source<'_, E>, k: usize) -> Result<()> {
    let mut seen: HashSet<Vec<u32>> = HashSet::with_capacity(k.min(source.len()));
    let mut buffer = Vec::new();
    for range in source.windows() {
        let rows = source.read(range.clone(), &mut buffer)?;
        for row in rows.chunks_exact(source.dim()) {
            seen.insert(row_key(row));
            if seen.len() >= k {
                source.release(range);
                return Ok(());
            }
        }
        source.release(range);
    }
    Err(VladError::InvalidArgument(format!(
        "k = {k} clusters is more than the {} distinct points among the {} training points",
        seen.len(),
        source.len()
    )))
}
