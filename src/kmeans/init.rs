//! Initial centroids: greedy k-means++ (as scikit-learn does it) or `K`
//! distinct random training points, both drawn from a seeded ChaCha8 stream.

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::distance::{column_major, distances_to_each, squared_norm};
use super::training_set::{RowKey, TrainingSet};
use crate::element::Element;

/// ChaCha stream of the initialization draws.
const INIT_STREAM: u64 = 1;

/// Rows per parallel block. Fixed (not derived from the thread count), and
/// block results are combined in block order, so sums never depend on how
/// rayon splits the work.
const BLOCK: usize = 1024;

/// Seeds `K` centroids (`K × F` f32, row-major) by greedy k-means++
/// (Arthur & Vassilvitskii 2007, with scikit-learn's local trials): the
/// first centroid is a uniform random point; each next one is the best, by
/// the resulting potential `Σ min_k ‖x − c_k‖²`, of `2 + ⌊ln K⌋` candidates
/// drawn with probability proportional to `D(x)²`.
pub(crate) fn kmeans_plus_plus<E: Element>(
    set: &TrainingSet<'_, E>,
    k: usize,
    seed: u64,
) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(INIT_STREAM);
    let n = set.len();
    let dim = set.dim;
    let trials = 2 + (k as f64).ln().floor() as usize;

    // ‖x‖² and a column-major f32 copy of each block of rows, once; each
    // distance below is ‖x‖² + ‖c‖² − 2 x·c with the dot products from a
    // GEMM (scikit-learn computes them the same way). The copy costs N × F
    // floats while seeding runs, and saves converting and repacking the
    // rows in each of the K − 1 passes.
    let row_norms: Vec<f32> = set
        .rows
        .par_chunks(BLOCK * dim)
        .flat_map_iter(|rows| rows.chunks_exact(dim).map(squared_norm))
        .collect();
    let mut columns = vec![0f32; n * dim];
    columns
        .par_chunks_mut(BLOCK * dim)
        .zip(set.rows.par_chunks(BLOCK * dim))
        .for_each(|(columns, rows)| column_major(rows, dim, columns));
    let distances = |candidates: &[f32], out: &mut [f32]| {
        let count = candidates.len() / dim;
        let candidate_norms: Vec<f32> = candidates.chunks_exact(dim).map(squared_norm).collect();
        out.par_chunks_mut(BLOCK * count)
            .zip(columns.par_chunks(BLOCK * dim))
            .zip(row_norms.par_chunks(BLOCK))
            .for_each(|((out, columns), norms)| {
                distances_to_each(columns, norms, dim, candidates, &candidate_norms, out)
            });
    };

    let mut chosen = Vec::with_capacity(k);
    let mut centroids = Vec::with_capacity(k * dim);
    let first = rng.random_range(0..n);
    chosen.push(first);
    centroids.extend(set.row(first).iter().map(|x| x.to_f32()));

    // closest[i] = D(x_i)², the squared distance to the nearest chosen centroid.
    let mut closest = vec![0f32; n];
    distances(&centroids, &mut closest);
    // A chosen point is at distance 0 exactly, whatever the rounding.
    closest[first] = 0.0;
    let mut block_sums = block_sums_of(&closest);

    let mut candidate_distances = vec![0f32; n * trials];
    while chosen.len() < k {
        let potential: f64 = block_sums.iter().sum();
        let candidates: Vec<usize> = if potential > 0.0 {
            (0..trials)
                .map(|_| {
                    let target = rng.random::<f64>() * potential;
                    weighted_pick(&closest, &block_sums, target)
                })
                .collect()
        } else {
            // Every point coincides (in f32) with a chosen centroid even
            // though the set has ≥ K distinct points: distances underflowed.
            vec![first_unchosen_point(set, &centroids)]
        };
        let trials_here = candidates.len();
        let candidate_rows: Vec<f32> = candidates
            .iter()
            .flat_map(|&c| set.row(c).iter().map(|x| x.to_f32()))
            .collect();

        // Distances of every point to every candidate (per block of rows,
        // candidate-major), then per block the potential each candidate
        // would leave.
        let here = &mut candidate_distances[..n * trials_here];
        distances(&candidate_rows, here);
        let per_block: Vec<Vec<f64>> = here
            .par_chunks(BLOCK * trials_here)
            .zip(closest.par_chunks(BLOCK))
            .map(|(out, closest)| {
                out.chunks_exact(closest.len())
                    .map(|to_candidate| {
                        to_candidate
                            .iter()
                            .zip(closest)
                            .map(|(&d, &current)| d.min(current) as f64)
                            .sum()
                    })
                    .collect()
            })
            .collect();
        let best = (0..trials_here)
            .map(|t| (t, per_block.iter().map(|s| s[t]).sum::<f64>()))
            .fold(
                (0, f64::INFINITY),
                |best, (t, p)| if p < best.1 { (t, p) } else { best },
            )
            .0;

        chosen.push(candidates[best]);
        centroids.extend_from_slice(&candidate_rows[best * dim..(best + 1) * dim]);
        closest
            .par_chunks_mut(BLOCK)
            .zip(here.par_chunks(BLOCK * trials_here))
            .for_each(|(closest, out)| {
                let to_best = &out[best * closest.len()..(best + 1) * closest.len()];
                for (c, &d) in closest.iter_mut().zip(to_best) {
                    *c = c.min(d);
                }
            });
        closest[candidates[best]] = 0.0;
        block_sums = block_sums_of(&closest);
    }
    centroids
}

/// Sum of each `BLOCK` of `values` in f64, in order.
fn block_sums_of(values: &[f32]) -> Vec<f64> {
    values
        .par_chunks(BLOCK)
        .map(|b| b.iter().map(|&x| x as f64).sum())
        .collect()
}

/// The first index whose running sum of `weights` exceeds `target`
/// (`0 ≤ target < Σ weights`), found block by block. Points of weight 0
/// (already centroids) are never returned.
fn weighted_pick(weights: &[f32], block_sums: &[f64], target: f64) -> usize {
    let mut before = 0f64;
    for (b, &sum) in block_sums.iter().enumerate() {
        if before + sum > target {
            let block = &weights[b * BLOCK..((b + 1) * BLOCK).min(weights.len())];
            let mut running = before;
            for (i, &w) in block.iter().enumerate() {
                running += w as f64;
                if running > target && w > 0.0 {
                    return b * BLOCK + i;
                }
            }
            // Rounding left the target past this block's last point.
            if let Some(i) = block.iter().rposition(|&w| w > 0.0) {
                return b * BLOCK + i;
            }
        }
        before += sum;
    }
    // Rounding left the target past the total: the last weighted point.
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}

/// The lowest-index point that differs from every chosen centroid.
fn first_unchosen_point<E: Element>(set: &TrainingSet<'_, E>, centroids: &[f32]) -> usize {
    let chosen: HashSet<RowKey<'_, f32>> = centroids.chunks_exact(set.dim).map(RowKey).collect();
    (0..set.len())
        .find(|&i| {
            let row: Vec<f32> = set.row(i).iter().map(|x| x.to_f32()).collect();
            !chosen.contains(&RowKey(&row))
        })
        .unwrap_or(0)
}

/// `K` random training points with distinct values (`K × F` f32).
/// The caller has checked that the set holds at least `K` distinct points.
pub(crate) fn random_points<E: Element>(set: &TrainingSet<'_, E>, k: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(INIT_STREAM);
    let n = set.len();
    let mut seen = HashSet::with_capacity(k);
    let mut centroids = Vec::with_capacity(k * set.dim);
    // Usually 2K random indices hold K distinct values; if duplicates are
    // common, walk a full random permutation.
    let first_try = rand::seq::index::sample(&mut rng, n, (2 * k).min(n));
    take_distinct(set, first_try, k, &mut seen, &mut centroids);
    if seen.len() < k {
        let permutation = rand::seq::index::sample(&mut rng, n, n);
        take_distinct(set, permutation, k, &mut seen, &mut centroids);
    }
    centroids
}

/// Append the rows at `indices` whose values are not yet in `seen`, up to
/// `k` in all.
fn take_distinct<'a, E: Element>(
    set: &'a TrainingSet<'_, E>,
    indices: rand::seq::index::IndexVec,
    k: usize,
    seen: &mut HashSet<RowKey<'a, E>>,
    centroids: &mut Vec<f32>,
) {
    for i in indices {
        if seen.len() == k {
            break;
        }
        if seen.insert(RowKey(set.row(i))) {
            centroids.extend(set.row(i).iter().map(|x| x.to_f32()));
        }
    }
}
