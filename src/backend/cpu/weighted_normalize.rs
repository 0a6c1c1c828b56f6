//! SPEC §3's steps on sums whose counts are real numbers: the soft counts
//! `Σ_l a_k(v_l)` of NetVLAD pooling (SPEC §10), or the hard counts under
//! `rn`. `mass` divides by the count where it is > 0; every other step is
//! [`super::normalize`]'s own, so the two paths round alike.

use ndarray::Array2;
use rayon::prelude::*;

use crate::model::normalization::{Normalization, Step};

/// A step list cut at each `mass`, so the other steps run through
/// [`super::normalize::normalize_row`] unchanged.
enum Segment {
    Mass,
    Others(Normalization),
}

fn segments(norm: &Normalization) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut pending = Vec::new();
    let flush = |pending: &mut Vec<Step>, out: &mut Vec<Segment>| {
        if !pending.is_empty() {
            // Steps of a valid list without `rn`, so always a valid list.
            let steps = std::mem::take(pending);
            out.push(Segment::Others(
                Normalization::new(steps).unwrap_or_else(|_| Normalization::none()),
            ));
        }
    };
    for &step in norm.steps() {
        match step {
            Step::ResidualNorm => {}
            Step::Mass => {
                flush(&mut pending, &mut out);
                out.push(Segment::Mass);
            }
            other => pending.push(other),
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Normalize every `(K·F)` row of `vlad` with the real-valued `(T, K)`
/// `mass`, in parallel (rows are independent: the thread count cannot
/// change the result).
///
/// # Panics
///
/// If the shapes disagree with `clusters` and `dim`.
pub fn normalize_rows(
    vlad: &mut Array2<f32>,
    mass: &Array2<f32>,
    clusters: usize,
    dim: usize,
    norm: &Normalization,
) {
    assert_eq!(vlad.dim(), (mass.nrows(), clusters * dim), "(T, K·F) rows");
    assert_eq!(mass.ncols(), clusters, "one count per cluster");
    let plan = segments(norm);
    if plan.is_empty() || dim == 0 {
        return;
    }
    let (Some(rows), Some(mass)) = (vlad.as_slice_mut(), mass.as_slice()) else {
        panic!("normalize_rows needs standard-layout arrays");
    };
    if rows.is_empty() {
        return;
    }
    rows.par_chunks_mut(clusters * dim)
        .zip(mass.par_chunks(clusters))
        .for_each(|(row, mass)| apply(&plan, row, mass, clusters, dim));
}

/// Normalize one `K·F` row with its real-valued `K` counts `mass`.
///
/// # Panics
///
/// If the lengths disagree with `clusters` and `dim`.
pub fn normalize_row(
    row: &mut [f32],
    mass: &[f32],
    clusters: usize,
    dim: usize,
    norm: &Normalization,
) {
    assert_eq!(row.len(), clusters * dim, "row must be clusters · dim long");
    assert_eq!(mass.len(), clusters, "one count per cluster");
    if dim == 0 {
        return;
    }
    apply(&segments(norm), row, mass, clusters, dim);
}

fn apply(plan: &[Segment], row: &mut [f32], mass: &[f32], clusters: usize, dim: usize) {
    let ones = vec![1u32; clusters];
    for segment in plan {
        match segment {
            Segment::Mass => {
                for (block, &n) in row.chunks_exact_mut(dim).zip(mass) {
                    if n > 0.0 {
                        block.iter_mut().for_each(|x| *x = *x / n + 0.0);
                    }
                }
            }
            Segment::Others(steps) => {
                super::normalize::normalize_row(row, &ones, clusters, dim, steps)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mass_divides_by_real_counts_between_other_steps() {
        let mut vlad = Array2::from_shape_vec((1, 4), vec![4.0f32, -1.0, 0.0, 0.0]).unwrap();
        let mass = Array2::from_shape_vec((1, 2), vec![0.5f32, 0.0]).unwrap();
        let norm: Normalization = "rn,ssr,mass".parse().unwrap();
        normalize_rows(&mut vlad, &mass, 2, 2, &norm);
        assert_eq!(vlad.as_slice().unwrap(), &[4.0, -2.0, 0.0, 0.0]);
    }
}
