//! Initial centroids: greedy k-means++ (as scikit-learn does it) or `K`
//! distinct random training points, both drawn from a seeded ChaCha8 stream.

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use std::ops::Range;

use super::distance::{column_major, distances_to_each, squared_norm};
use super::source::Source;
use super::training_set::{RowKey, row_key};
use crate::error::Result;
use crate::model::element::Element;

/// ChaCha stream of the initialization draws.
const INIT_STREAM: u64 = 1;

/// Rows per parallel block. Fixed (not derived from the thread count), and
/// block results are combined in block order, so sums never depend on how
/// rayon splits the work.
const BLOCK: usize = 1024;

/// `‖x‖²` of each row and its rows widened to f32, column-major per
/// `BLOCK` rows: what each distance below is computed from.
#[derive(Default)]
struct Prepared {
    norms: Vec<f32>,
    columns: Vec<f32>,
}

impl Prepared {
    fn fill<E: Element>(&mut self, rows: &[E], dim: usize) {
        self.norms.clear();
        self.norms.par_extend(
            rows.par_chunks(BLOCK * dim)
                .flat_map_iter(|rows| rows.chunks_exact(dim).map(squared_norm)),
        );
        self.columns.clear();
        self.columns.resize(rows.len(), 0.0);
        self.columns
            .par_chunks_mut(BLOCK * dim)
            .zip(rows.par_chunks(BLOCK * dim))
            .for_each(|(columns, rows)| column_major(rows, dim, columns));
    }

    /// `out` (per block of rows, candidate-major) = the squared distance
    /// of every prepared row to every candidate.
    fn distances(&self, dim: usize, candidates: &[f32], out: &mut [f32]) {
        let count = candidates.len() / dim;
        let candidate_norms: Vec<f32> = candidates.chunks_exact(dim).map(squared_norm).collect();
        out.par_chunks_mut(BLOCK * count)
            .zip(self.columns.par_chunks(BLOCK * dim))
            .zip(self.norms.par_chunks(BLOCK))
            .for_each(|((out, columns), norms)| {
                distances_to_each(columns, norms, dim, candidates, &candidate_norms, out)
            });
    }
}

/// The passes of the seeding over the source's windows, each window's
/// rows prepared once per pass (or once for all when one window holds
/// every row, as in memory).
struct Passes<'s, 'a, E: Element> {
    source: &'s Source<'a, E>,
    whole: Option<Prepared>,
    window: Prepared,
}

impl<E: Element> Passes<'_, '_, E> {
    fn each(&mut self, mut f: impl FnMut(Range<usize>, &Prepared)) -> Result<()> {
        let dim = self.source.dim();
        if self.source.single_window() {
            let whole = match &mut self.whole {
                Some(whole) => whole,
                None => {
                    let mut prepared = Prepared::default();
                    let mut buffer = Vec::new();
                    let n = self.source.len();
                    prepared.fill(self.source.read(0..n, &mut buffer)?, dim);
                    self.whole.insert(prepared)
                }
            };
            f(0..self.source.len(), whole);
            return Ok(());
        }
        let window = &mut self.window;
        self.source.for_each_window(|range, rows| {
            window.fill(rows, dim);
            f(range, window);
            Ok(())
        })
    }
}

/// The random stream every seeding draws from.
fn init_rng(seed: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(INIT_STREAM);
    rng
}

/// Seeds `K` centroids (`K × F` f32, row-major) by greedy k-means++
/// (Arthur & Vassilvitskii 2007, with scikit-learn's local trials): the
/// first centroid is a uniform random point; each next one is the best, by
/// the resulting potential `Σ min_k ‖x − c_k‖²`, of `2 + ⌊ln K⌋` candidates
/// drawn with probability proportional to `D(x)²`.
///
/// Memory: `D(x)²` of every point (4 bytes a point) and, per window, the
/// rows' f32 column-major copy and their distances to the candidates. A
/// source of several windows is read twice per centroid (the candidates'
/// potentials, then the update by the best one, whose distances are
/// recomputed by the same call, so the same bits).
pub(crate) fn kmeans_plus_plus<E: Element>(
    source: &Source<'_, E>,
    k: usize,
    seed: u64,
) -> Result<Vec<f32>> {
    let mut rng = init_rng(seed);
    let (n, dim) = (source.len(), source.dim());
    let trials = 2 + (k as f64).ln().floor() as usize;
    let single = source.single_window();

    // ‖x‖² and a column-major f32 copy of each block of rows; each
    // distance below is ‖x‖² + ‖c‖² − 2 x·c with the dot products from a
    // GEMM (scikit-learn computes them the same way). In memory the copy
    // is made once for the K − 1 passes.
    let mut passes = Passes {
        source,
        whole: None,
        window: Prepared::default(),
    };

    let mut chosen = Vec::with_capacity(k);
    let mut centroids = Vec::with_capacity(k * dim);
    let first = rng.random_range(0..n);
    chosen.push(first);
    centroids.extend(source.row(first)?.iter().map(|x| x.to_f32()));

    // closest[i] = D(x_i)², the squared distance to the nearest chosen centroid.
    let mut closest = vec![0f32; n];
    passes.each(|range, prepared| prepared.distances(dim, &centroids, &mut closest[range]))?;
    // A chosen point is at distance 0 exactly, whatever the rounding.
    closest[first] = 0.0;
    let mut block_sums = block_sums_of(&closest);

    let window_rows = source.windows().map(|r| r.len()).max().unwrap_or(0);
    let mut candidate_distances = vec![0f32; window_rows * trials];
    // The sum a fold of no f64 starts from (`Sum for f64`'s own), so that
    // a sum carried across windows is the in-memory `.sum()` exactly.
    let empty_sum: f64 = std::iter::empty::<f64>().sum();
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
            vec![first_unchosen_point(source, &centroids)?]
        };
        let trials_here = candidates.len();
        let mut candidate_rows: Vec<f32> = Vec::with_capacity(trials_here * dim);
        for &c in &candidates {
            candidate_rows.extend(source.row(c)?.iter().map(|x| x.to_f32()));
        }

        // Distances of every point to every candidate (per block of rows,
        // candidate-major), then per block the potential each candidate
        // would leave, added up in block order.
        let mut totals = vec![empty_sum; trials_here];
        passes.each(|range, prepared| {
            let here = &mut candidate_distances[..range.len() * trials_here];
            prepared.distances(dim, &candidate_rows, here);
            let per_block: Vec<Vec<f64>> = here
                .par_chunks(BLOCK * trials_here)
                .zip(closest[range].par_chunks(BLOCK))
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
            for (t, total) in totals.iter_mut().enumerate() {
                *total = per_block.iter().fold(*total, |a, s| a + s[t]);
            }
        })?;
        let best = totals
            .iter()
            .enumerate()
            .fold(
                (0, f64::INFINITY),
                |best, (t, &p)| if p < best.1 { (t, p) } else { best },
            )
            .0;

        chosen.push(candidates[best]);
        centroids.extend_from_slice(&candidate_rows[best * dim..(best + 1) * dim]);
        let update = |closest: &mut [f32], here: &[f32]| {
            closest
                .par_chunks_mut(BLOCK)
                .zip(here.par_chunks(BLOCK * trials_here))
                .for_each(|(closest, out)| {
                    let to_best = &out[best * closest.len()..(best + 1) * closest.len()];
                    for (c, &d) in closest.iter_mut().zip(to_best) {
                        *c = c.min(d);
                    }
                });
        };
        if single {
            update(&mut closest, &candidate_distances[..n * trials_here]);
        } else {
            passes.each(|range, prepared| {
                let here = &mut candidate_distances[..range.len() * trials_here];
                prepared.distances(dim, &candidate_rows, here);
                update(&mut closest[range], here);
            })?;
        }
        closest[candidates[best]] = 0.0;
        block_sums = block_sums_of(&closest);
    }
    Ok(centroids)
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
fn first_unchosen_point<E: Element>(source: &Source<'_, E>, centroids: &[f32]) -> Result<usize> {
    let chosen: HashSet<RowKey<'_, f32>> =
        centroids.chunks_exact(source.dim()).map(RowKey).collect();
    let mut buffer = Vec::new();
    for range in source.windows() {
        let rows = source.read(range.clone(), &mut buffer)?;
        let found = rows.chunks_exact(source.dim()).position(|row| {
            let row: Vec<f32> = row.iter().map(|x| x.to_f32()).collect();
            !chosen.contains(&RowKey(&row))
        });
        source.release(range.clone());
        if let Some(i) = found {
            return Ok(range.start + i);
        }
    }
    Ok(0)
}

/// `K` random training points with distinct values (`K × F` f32).
/// The caller has checked that the set holds at least `K` distinct points.
pub(crate) fn random_points<E: Element>(
    source: &Source<'_, E>,
    k: usize,
    seed: u64,
) -> Result<Vec<f32>> {
    let mut rng = init_rng(seed);
    let n = source.len();
    let mut seen = HashSet::with_capacity(k);
    let mut centroids = Vec::with_capacity(k * source.dim());
    // Usually 2K random indices hold K distinct values; if duplicates are
    // common, walk a full random permutation.
    let first_try = rand::seq::index::sample(&mut rng, n, (2 * k).min(n));
    take_distinct(source, first_try, k, &mut seen, &mut centroids)?;
    if seen.len() < k {
        let permutation = rand::seq::index::sample(&mut rng, n, n);
        take_distinct(source, permutation, k, &mut seen, &mut centroids)?;
    }
    Ok(centroids)
}

/// Append the rows at `indices` whose values are not yet in `seen`, up to
/// `k` in all.
fn take_distinct<E: Element>(
    source: &Source<'_, E>,
    indices: rand::seq::index::IndexVec,
    k: usize,
    seen: &mut HashSet<Vec<u32>>,
    centroids: &mut Vec<f32>,
) -> Result<()> {
    for i in indices {
        if seen.len() == k {
            break;
        }
        let row = source.row(i)?;
        if seen.insert(row_key(&row)) {
            centroids.extend(row.iter().map(|x| x.to_f32()));
        }
    }
    Ok(())
}
