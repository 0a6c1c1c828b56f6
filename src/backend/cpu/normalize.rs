//! SPEC §3's normalization steps on one f32 row, in the order given, with
//! real-valued counts: the hard counts (as f32), or the soft counts
//! `Σ_l a_k(v_l)` of NetVLAD pooling (SPEC §10). One road for every
//! assignment, with or without `rn`.
//!
//! `mass` divides a block by its count where the count is > 0. Norms are
//! summed in f64 over eight interleaved partial sums: a fixed order
//! (bitwise reproducible), vectorizable, and exact enough that the f32
//! result is within an ulp or two of the f64 reference. A zero block or
//! row is left exactly zero — never divided, so never NaN — and no step
//! produces `-0.0`.
//!
//! The GPU normalize shader's CPU twin is [`crate::twins::normalize`].

use ndarray::Array2;
use rayon::prelude::*;

use crate::model::normalization::{Normalization, Step};

/// Apply every step of `norm` to `row` (`clusters · dim` values,
/// cluster-major); `mass` (`clusters` counts, hard or soft) is read by
/// `mass` only.
///
/// # Panics
///
/// If `row` is not `clusters · dim` long or `mass` not `clusters` long.
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
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { normalize_row_avx2(row, mass, dim, norm) };
    }
    normalize_row_portable(row, mass, dim, norm)
}

/// [`normalize_row_portable`] compiled for AVX2 (wider `sqrt`, conversions
/// and sums). The same operations in the same order, so the same result.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn normalize_row_avx2(row: &mut [f32], mass: &[f32], dim: usize, norm: &Normalization) {
    normalize_row_portable(row, mass, dim, norm)
}

#[inline(always)]
fn normalize_row_portable(row: &mut [f32], mass: &[f32], dim: usize, norm: &Normalization) {
    for step in norm.steps() {
        match *step {
            Step::Mass => {
                for (block, &n) in row.chunks_exact_mut(dim).zip(mass) {
                    if n > 0.0 {
                        // `+ 0.0`: a `-0.0` (or a tiny negative quotient
                        // that underflows) becomes `+0.0`, as SPEC §3 asks.
                        block.iter_mut().for_each(|x| *x = *x / n + 0.0);
                    }
                }
            }
            Step::Power(alpha) => signed_power(row, alpha),
            Step::Intra => row.chunks_exact_mut(dim).for_each(l2_normalize),
            Step::L2 => l2_normalize(row),
            // Acts on residuals during aggregation, not on the sums.
            Step::ResidualNorm => {}
        }
    }
}

/// [`normalize_row`] on every row of a `(T, K·F)` encoding, in parallel
/// (rows are independent, so the thread count cannot change the result).
/// `mass` is `(T, K)`.
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
    if norm.steps().is_empty() {
        return;
    }
    assert_eq!(vlad.nrows(), mass.nrows(), "one count row per image");
    assert_eq!(
        vlad.ncols(),
        clusters * dim,
        "rows must be clusters · dim long"
    );
    assert_eq!(mass.ncols(), clusters, "one count per cluster");
    let (Some(rows), Some(mass)) = (vlad.as_slice_mut(), mass.as_slice()) else {
        panic!("normalize_rows needs standard-layout arrays");
    };
    normalize_flat_rows(rows, mass, clusters, dim, norm);
}

/// [`normalize_rows`] on row-major slices: `rows` is `T · K · F` values,
/// `mass` `T · K`.
///
/// # Panics
///
/// If the lengths disagree with `clusters` and `dim`.
pub fn normalize_flat_rows(
    rows: &mut [f32],
    mass: &[f32],
    clusters: usize,
    dim: usize,
    norm: &Normalization,
) {
    if norm.steps().is_empty() {
        return;
    }
    assert_eq!(
        rows.len() / (clusters * dim).max(1),
        mass.len() / clusters.max(1),
        "one count row per image"
    );
    if rows.is_empty() {
        return;
    }
    rows.par_chunks_mut(clusters * dim)
        .zip(mass.par_chunks(clusters))
        .for_each(|(row, mass)| normalize_row(row, mass, clusters, dim, norm));
}

/// `x ← sign(x)·|x|^α`; α = 0.5 takes the (exactly rounded) square root.
#[inline(always)]
fn signed_power(row: &mut [f32], alpha: f32) {
    if alpha == 0.5 {
        row.iter_mut()
            .for_each(|x| *x = with_sign_of(x.abs().sqrt(), *x));
    } else if alpha != 1.0 {
        row.iter_mut()
            .for_each(|x| *x = with_sign_of(x.abs().powf(alpha), *x));
    }
}

/// `magnitude` with the sign of `x`, and `+0.0` whenever it is zero.
#[inline(always)]
fn with_sign_of(magnitude: f32, x: f32) -> f32 {
    if x < 0.0 { -magnitude + 0.0 } else { magnitude }
}

/// Scale `x` to unit L2 norm; an all-zero `x` is left as it is.
#[inline(always)]
fn l2_normalize(x: &mut [f32]) {
    let sum = squared_norm_f64(x);
    if sum > 0.0 {
        let inv = 1.0 / sum.sqrt();
        // `+ 0.0`: a tiny negative value that underflows stays `+0.0`.
        x.iter_mut()
            .for_each(|v| *v = (*v as f64 * inv) as f32 + 0.0);
    }
}

/// `Σ x²` in f64 over eight interleaved partial sums, added in a fixed order.
#[inline(always)]
pub fn squared_norm_f64(x: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let mut chunks = x.chunks_exact(8);
    for chunk in &mut chunks {
        let chunk: &[f32; 8] = chunk.try_into().unwrap_or(&[0.0; 8]);
        for lane in 0..8 {
            let v = chunk[lane] as f64;
            acc[lane] += v * v;
        }
    }
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|&v| (v as f64) * (v as f64))
        .sum();
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(row: &[f32], mass: &[f32], k: usize, f: usize, norm: &str) -> Vec<f32> {
        let mut row = row.to_vec();
        normalize_row(&mut row, mass, k, f, &norm.parse().unwrap());
        row
    }

    #[test]
    fn each_step_by_hand() {
        let row = [3.0, -4.0, 0.0, 0.0, 6.0, 8.0];
        let counts = [2.0, 0.0, 4.0];
        assert_eq!(apply(&row, &counts, 3, 2, "none"), row);
        assert_eq!(
            apply(&row, &counts, 3, 2, "mass"),
            [1.5, -2.0, 0.0, 0.0, 1.5, 2.0]
        );
        assert_eq!(
            apply(&row, &counts, 3, 2, "intra"),
            [0.6, -0.8, 0.0, 0.0, 0.6, 0.8]
        );
        assert_eq!(
            apply(&[9.0, -4.0, 0.0, -0.0], &[1.0, 1.0], 2, 2, "ssr"),
            [3.0, -2.0, 0.0, 0.0]
        );
        let l2 = apply(&row, &counts, 3, 2, "l2");
        let want = [3.0, -4.0, 0.0, 0.0, 6.0, 8.0].map(|x: f64| (x / 125f64.sqrt()) as f32);
        assert_eq!(l2, want);
    }

    #[test]
    fn zeros_stay_positive_zeros() {
        for norm in ["mass,ssr,intra,l2", "power=0.3,l2", "ssr,intra", "ssr"] {
            let out = apply(&[-0.0; 4], &[0.0, 0.0], 2, 2, norm);
            assert!(out.iter().all(|x| x.to_bits() == 0), "{norm}: {out:?}");
        }
        // A tiny negative element that underflows when scaled becomes +0.0.
        for norm in ["l2", "intra"] {
            let out = apply(&[-1e-45, 1e30], &[1.0], 1, 2, norm);
            let bits: Vec<u32> = out.iter().map(|x| x.to_bits()).collect();
            assert_eq!(bits, [0, 1f32.to_bits()], "{norm}");
        }
    }

    #[test]
    fn mass_divides_by_real_counts_between_other_steps() {
        let mut vlad = Array2::from_shape_vec((1, 4), vec![4.0f32, -1.0, 0.0, 0.0]).unwrap();
        let mass = Array2::from_shape_vec((1, 2), vec![0.5f32, 0.0]).unwrap();
        let norm: Normalization = "rn,ssr,mass".parse().unwrap();
        normalize_rows(&mut vlad, &mass, 2, 2, &norm);
        assert_eq!(vlad.as_slice().unwrap(), &[4.0, -2.0, 0.0, 0.0]);
    }

    #[test]
    fn mass_turns_negative_zeros_positive() {
        // A count of 1 divides too: `-0.0 / 1 + 0.0` is `+0.0`.
        for n in [1.0, 3.0] {
            let out = apply(&[-0.0, -1e-45, 2.0, -3.0], &[n], 1, 4, "mass");
            assert_eq!(out[0].to_bits(), 0, "count {n}: {out:?}");
            assert_eq!(out[2], 2.0 / n);
            assert_eq!(out[3], -3.0 / n);
        }
        let out = apply(&[-1e-45], &[3.0], 1, 1, "mass");
        assert_eq!(out[0].to_bits(), 0, "an underflowed quotient: {out:?}");
    }
}
