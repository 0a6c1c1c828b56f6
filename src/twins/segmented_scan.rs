//! CPU twin of `shaders/segmented_scan.wgsl`: the per-run sums of sorted
//! rows, by the same algorithm and the same order of f32 additions, so the
//! GPU stage can be checked against it bit for bit.
//!
//! # The scheme
//!
//! The sorted rows are cut into leaves of [`CHUNK_ROWS`] rows. A leaf sums
//! its rows sequentially, one partial per run of equal keys. Above the
//! leaves is a tree: each node joins [`FANIN`] children, pairwise, as a
//! 4-level binary tree. A node keeps two partials: `head` (rows of its first
//! key) and `tail` (rows of its last key). When two siblings meet and the
//! left one's last key is the right one's first key, `left.tail +
//! right.head` is the part of that run inside the joined node. A run is
//! emitted exactly once, by the smallest node that holds it whole (a leaf
//! for a run inside one leaf). The work per leaf is the same whatever the
//! segmentation: one run of a million rows and a million runs of one row
//! cost the same.
//!
//! # Error bound
//!
//! Each term `x_l = fl(v_l − c)` (one rounding; none when the centroid is
//! not subtracted) reaches the emitted sum through at most `CHUNK_ROWS − 1 =
//! 31` sequential additions in its leaf and one addition per binary level
//! above it: 4 per tree level, `⌈log₁₆ leaves⌉` tree levels. For fewer
//! than 2³¹ rows there are at most 2²⁶ leaves, so at most 7 tree levels and
//! 28 additions; each term meets at most `n = 1 + 31 + 28 = 60` roundings.
//! The standard bound for a summation tree of depth `n` gives, per element,
//!
//! ```text
//! |ŝ − s| ≤ γ_n · Σ_l |v_l,f − c_f| ≤ γ_60 · Σ_l ‖v_l − c‖∞,
//! γ_n = n·u / (1 − n·u), u = 2⁻²⁴,  γ_60 ≈ 3.6·10⁻⁶
//! ```
//!
//! below SPEC §4's `1e-5 · Σ_l ‖v_l − c_k‖∞` (for a million rows: 31,250
//! leaves, 4 tree levels, `n = 48`, `γ ≈ 2.9·10⁻⁶`).
//! A sequential sum of all the rows has depth `rows` and does not meet it;
//! nor does a global prefix sum followed by differences (its error scales
//! with the whole prefix, not with the run).

use std::collections::{HashMap, HashSet};

use crate::error::{Result, VladError};
use crate::model::element::Element;

/// Rows a leaf sums sequentially (the shader's `CHUNK`).
pub const CHUNK_ROWS: usize = 32;

/// Children a tree node joins (the shader's `FANIN`); a power of two.
pub const FANIN: usize = 16;

/// The sums of every run of equal sorted keys, in the order of the runs.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentSums {
    /// Descriptor width F.
    pub dim: usize,
    /// The distinct keys, one per run, in run order (`image · clusters +
    /// label`).
    pub keys: Vec<u32>,
    /// Rows in each run.
    pub counts: Vec<u32>,
    /// `keys.len() × dim`: the sum of `v − c_label` (or of `v`) over each run.
    pub sums: Vec<f32>,
}

/// Node counts of the reduction tree for `rows` sorted rows: the leaves
/// (`⌈rows / CHUNK_ROWS⌉`), then each level `⌈previous / FANIN⌉`, down to a
/// single node. Empty for no rows.
pub fn tree_levels(rows: usize) -> Vec<usize> {
    let mut levels = Vec::new();
    if rows == 0 {
        return levels;
    }
    let mut nodes = rows.div_ceil(CHUNK_ROWS);
    levels.push(nodes);
    while nodes > 1 {
        nodes = nodes.div_ceil(FANIN);
        levels.push(nodes);
    }
    levels
}

/// Sum each run of equal keys in `sorted_keys` over the descriptors
/// `descriptors[sorted_rows[i]]` (rows of `dim` elements, widened to f32),
/// subtracting `centroids[key % clusters]` from each when `centroids` is
/// given (VLAD) and not otherwise (the k-means update).
///
/// Errors on mismatched lengths, a row index out of range, equal keys that
/// are not contiguous, or centroids that are not `clusters × dim`.
pub fn segmented_sums<E: Element>(
    sorted_keys: &[u32],
    sorted_rows: &[u32],
    descriptors: &[E],
    dim: usize,
    clusters: usize,
    centroids: Option<&[f32]>,
) -> Result<SegmentSums> {
    let input = Input {
        keys: sorted_keys,
        rows: sorted_rows,
        descriptors,
        dim,
        clusters,
        centroids,
    };
    input.check()?;
    let mut tree = Tree::new(input);
    let levels = tree_levels(sorted_keys.len());
    if let Some(&leaves) = levels.first() {
        let mut level = tree.leaves(leaves);
        let mut span = CHUNK_ROWS;
        for pair in levels.windows(2) {
            level = tree.combine(&level, pair[0], pair[1], span);
            span *= FANIN;
        }
    }
    debug_assert!(
        tree.emitted.iter().all(|&n| n == 1),
        "every run is emitted exactly once"
    );
    Ok(tree.out)
}

/// What the scan reads: the sorted keys and rows, the descriptors they
/// point at, and (for VLAD) the centroids.
#[derive(Clone, Copy)]
struct Input<'a, E: Element> {
    keys: &'a [u32],
    rows: &'a [u32],
    descriptors: &'a [E],
    dim: usize,
    clusters: usize,
    centroids: Option<&'a [f32]>,
}

impl<E: Element> Input<'_, E> {
    /// The errors [`segmented_sums`] promises, before any sum.
    fn check(&self) -> Result<()> {
        let Input {
            keys,
            rows,
            descriptors,
            dim,
            clusters,
            centroids,
        } = *self;
        if dim == 0 {
            return Err(VladError::Empty(
                "segmented sums of F = 0 descriptors".into(),
            ));
        }
        if keys.len() != rows.len() {
            return Err(VladError::DimensionMismatch(format!(
                "{} sorted keys but {} sorted rows",
                keys.len(),
                rows.len()
            )));
        }
        if !descriptors.len().is_multiple_of(dim) {
            return Err(VladError::DimensionMismatch(format!(
                "{} descriptor elements are not whole rows of {dim}",
                descriptors.len()
            )));
        }
        let available = descriptors.len() / dim;
        if let Some((i, &row)) = rows
            .iter()
            .enumerate()
            .find(|(_, r)| **r as usize >= available)
        {
            return Err(VladError::InvalidArgument(format!(
                "sorted row {i} points at descriptor {row} of {available}"
            )));
        }
        // Equal keys must be contiguous (one run each); the order of the runs
        // is free (the pipeline leaves them in (label, image) order).
        let mut run_keys = HashSet::new();
        for (i, &key) in keys.iter().enumerate() {
            if (i == 0 || keys[i - 1] != key) && !run_keys.insert(key) {
                return Err(VladError::InvalidArgument(format!(
                    "sorted keys: key {key} starts a second run at position {i} (equal keys \
                 must be contiguous)"
                )));
            }
        }
        if let Some(c) = centroids
            && (clusters == 0 || c.len() != clusters * dim)
        {
            return Err(VladError::DimensionMismatch(format!(
                "{} centroid values for K = {clusters}, F = {dim}",
                c.len()
            )));
        }
        Ok(())
    }
}

/// The inputs, the output being filled, and the walk over the tree.
struct Tree<'a, E: Element> {
    input: Input<'a, E>,
    out: SegmentSums,
    /// The run of each key (runs come in any key order).
    run_of: HashMap<u32, usize>,
    emitted: Vec<u8>,
}

impl<'a, E: Element> Tree<'a, E> {
    /// The walk over checked inputs.
    fn new(input: Input<'a, E>) -> Self {
        let mut distinct = Vec::new();
        let mut counts = Vec::new();
        for &key in input.keys {
            match distinct.last() {
                Some(&last) if last == key => {
                    if let Some(n) = counts.last_mut() {
                        *n += 1;
                    }
                }
                _ => {
                    distinct.push(key);
                    counts.push(1u32);
                }
            }
        }
        let runs = distinct.len();
        let run_of = distinct
            .iter()
            .enumerate()
            .map(|(run, &key)| (key, run))
            .collect();
        Tree {
            input,
            out: SegmentSums {
                dim: input.dim,
                keys: distinct,
                counts,
                sums: vec![0.0; runs * input.dim],
            },
            run_of,
            emitted: vec![0; runs],
        }
    }

    /// Add element-wise `v[row(i)] − c[label]` (or `v`) into `acc`, in the
    /// shader's arithmetic: one f32 subtraction, one f32 addition.
    fn accumulate(&self, i: usize, acc: &mut [f32]) {
        let dim = self.input.dim;
        let row = self.input.rows[i] as usize;
        let v = &self.input.descriptors[row * dim..(row + 1) * dim];
        match self.input.centroids {
            Some(centroids) => {
                let label = self.input.keys[i] as usize % self.input.clusters;
                let c = &centroids[label * dim..(label + 1) * dim];
                for ((a, x), y) in acc.iter_mut().zip(v).zip(c) {
                    *a += x.to_f32() - y;
                }
            }
            None => {
                for (a, x) in acc.iter_mut().zip(v) {
                    *a += x.to_f32();
                }
            }
        }
    }

    fn opens_left(&self, start: usize) -> bool {
        start > 0 && self.input.keys[start - 1] == self.input.keys[start]
    }

    fn opens_right(&self, end: usize) -> bool {
        end < self.input.keys.len() && self.input.keys[end] == self.input.keys[end - 1]
    }

    fn emit(&mut self, key: u32, sum: &[f32]) {
        if let Some(&run) = self.run_of.get(&key) {
            self.out.sums[run * self.input.dim..(run + 1) * self.input.dim].copy_from_slice(sum);
            self.emitted[run] += 1;
        }
    }

    /// Leaf level: `[head | tail]` partials of each leaf, `2 · dim` floats.
    fn leaves(&mut self, leaves: usize) -> Vec<f32> {
        let (dim, n) = (self.input.dim, self.input.keys.len());
        let mut level = vec![0.0f32; leaves * 2 * dim];
        let mut acc = vec![0.0f32; dim];
        let mut head = vec![0.0f32; dim];
        for leaf in 0..leaves {
            let start = leaf * CHUNK_ROWS;
            let end = (start + CHUNK_ROWS).min(n);
            let open_left = self.opens_left(start);
            let mut run_start = start;
            let mut run_key = self.input.keys[start];
            acc.fill(0.0);
            for i in start..end {
                let key = self.input.keys[i];
                if key != run_key {
                    if run_start == start {
                        head.copy_from_slice(&acc);
                    }
                    // The run ends inside the leaf; whole if it began here.
                    if run_start > start || !open_left {
                        self.emit(run_key, &acc);
                    }
                    run_start = i;
                    run_key = key;
                    acc.fill(0.0);
                }
                self.accumulate(i, &mut acc);
            }
            if run_start == start {
                head.copy_from_slice(&acc);
            }
            let starts_inside = run_start > start || !open_left;
            if starts_inside && !self.opens_right(end) {
                self.emit(run_key, &acc);
            }
            let node = &mut level[leaf * 2 * dim..(leaf + 1) * 2 * dim];
            node[..dim].copy_from_slice(&head);
            node[dim..].copy_from_slice(&acc);
        }
        level
    }

    /// One tree level: `parents` nodes, each joining `FANIN` children of
    /// `span` rows pairwise, in the shader's order.
    fn combine(&mut self, children: &[f32], count: usize, parents: usize, span: usize) -> Vec<f32> {
        let (dim, n) = (self.input.dim, self.input.keys.len());
        let mut level = vec![0.0f32; parents * 2 * dim];
        let mut head = vec![0.0f32; FANIN * dim];
        let mut tail = vec![0.0f32; FANIN * dim];
        let mut joined = vec![0.0f32; dim];
        for parent in 0..parents {
            let first = parent * FANIN;
            head.fill(0.0);
            tail.fill(0.0);
            for c in 0..FANIN.min(count - first) {
                let node = &children[(first + c) * 2 * dim..(first + c + 1) * 2 * dim];
                head[c * dim..(c + 1) * dim].copy_from_slice(&node[..dim]);
                tail[c * dim..(c + 1) * dim].copy_from_slice(&node[dim..]);
            }
            let mut w = 1;
            while w < FANIN {
                for c in (0..FANIN).step_by(2 * w) {
                    let mid = (first + c + w).min(count) * span;
                    if mid >= n {
                        break;
                    }
                    let a = (first + c).min(count) * span;
                    let b = ((first + c + 2 * w).min(count) * span).min(n);
                    let key = self.input.keys[mid - 1];
                    let (left, right) = (c * dim, (c + w) * dim);
                    if key == self.input.keys[mid] {
                        let left_whole = self.input.keys[a] == key;
                        let right_whole = self.input.keys[b - 1] == key;
                        for f in 0..dim {
                            joined[f] = tail[left + f] + head[right + f];
                        }
                        // The run is whole here unless it goes on past the
                        // joined node on either side.
                        let starts_inside = !left_whole || !self.opens_left(a);
                        let ends_inside = !right_whole || !self.opens_right(b);
                        if starts_inside && ends_inside {
                            self.emit(key, &joined);
                        }
                        if left_whole {
                            head[left..left + dim].copy_from_slice(&joined);
                        }
                        if right_whole {
                            tail[left..left + dim].copy_from_slice(&joined);
                        } else {
                            tail.copy_within(right..right + dim, left);
                        }
                    } else {
                        tail.copy_within(right..right + dim, left);
                    }
                }
                w *= 2;
            }
            let node = &mut level[parent * 2 * dim..(parent + 1) * 2 * dim];
            node[..dim].copy_from_slice(&head[..dim]);
            node[dim..].copy_from_slice(&tail[..dim]);
        }
        level
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per-run sums in f64, the obvious way.
    fn runs_f64(keys: &[u32], rows: &[u32], v: &[f32], dim: usize) -> Vec<(u32, Vec<f64>)> {
        let mut out: Vec<(u32, Vec<f64>)> = Vec::new();
        for (&key, &row) in keys.iter().zip(rows) {
            if out.last().map(|r| r.0) != Some(key) {
                out.push((key, vec![0.0; dim]));
            }
            if let Some((_, sum)) = out.last_mut() {
                for f in 0..dim {
                    sum[f] += v[row as usize * dim + f] as f64;
                }
            }
        }
        out
    }

    #[test]
    fn tree_levels_shrink_to_one() {
        assert!(tree_levels(0).is_empty());
        assert_eq!(tree_levels(1), vec![1]);
        assert_eq!(tree_levels(32), vec![1]);
        assert_eq!(tree_levels(33), vec![2, 1]);
        assert_eq!(tree_levels(32 * 16 * 16 + 1), vec![257, 17, 2, 1]);
    }

    #[test]
    fn every_segmentation_sums_each_run_once() {
        // Integer-valued rows: every partial is exact, so any scheme that
        // adds each row once into the right run gives exactly the f64 sum.
        let dim = 3;
        for (rows, runs) in [
            (1, 1),
            (31, 5),
            (32, 1),
            (33, 2),
            (1000, 1),
            (1000, 1000),
            (5000, 7),
            (9000, 300),
        ] {
            let v: Vec<f32> = (0..rows * dim).map(|i| (i % 17) as f32 - 8.0).collect();
            let mut keys: Vec<u32> = (0..rows).map(|i| ((i * 7919) % runs) as u32 * 3).collect();
            keys.sort_unstable();
            let order: Vec<u32> = (0..rows as u32).rev().collect();
            let got = segmented_sums(&keys, &order, &v, dim, 1, None).unwrap();
            let want = runs_f64(&keys, &order, &v, dim);
            assert_eq!(got.keys.len(), want.len(), "rows {rows}, runs {runs}");
            for (s, (key, sum)) in want.iter().enumerate() {
                assert_eq!(got.keys[s], *key);
                let n = keys.iter().filter(|&&k| k == *key).count() as u32;
                assert_eq!(got.counts[s], n);
                let got_sum = &got.sums[s * dim..(s + 1) * dim];
                for (&g, &w) in got_sum.iter().zip(sum) {
                    assert_eq!(g as f64, w, "rows {rows} run {s}");
                }
            }
        }
    }

    #[test]
    fn subtracts_the_centroid_of_the_label() {
        // Keys 0..4 with K = 2: labels 0, 1, 0, 1 (images 0 and 1).
        let v = [10.0f32, 20.0, 30.0, 40.0];
        let keys = [0u32, 1, 2, 3];
        let rows = [0u32, 1, 2, 3];
        let c = [1.0f32, 2.0];
        let got = segmented_sums(&keys, &rows, &v, 1, 2, Some(&c)).unwrap();
        assert_eq!(got.sums, vec![9.0, 18.0, 29.0, 38.0]);
        let plain = segmented_sums(&keys, &rows, &v, 1, 2, None).unwrap();
        assert_eq!(plain.sums, v.to_vec());
    }

    #[test]
    fn bad_inputs_are_errors() {
        let v = [0.0f32; 4];
        assert!(segmented_sums(&[0, 1], &[0], &v, 2, 1, None).is_err());
        // Runs in any order are fine; a key with two runs is not.
        assert!(segmented_sums(&[1, 0], &[0, 1], &v, 2, 1, None).is_ok());
        assert!(segmented_sums(&[1, 0, 1], &[0, 1, 2], &v, 1, 1, None).is_err());
        assert!(segmented_sums(&[0, 0], &[0, 2], &v, 2, 1, None).is_err());
        assert!(segmented_sums(&[0, 0], &[0, 1], &v, 2, 2, Some(&[0.0; 2])).is_err());
        assert!(segmented_sums(&[0u32; 0], &[], &v, 0, 1, None).is_err());
        let empty = segmented_sums(&[], &[], &v, 2, 1, None).unwrap();
        assert!(empty.keys.is_empty() && empty.sums.is_empty());
    }
}
