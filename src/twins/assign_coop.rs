//! CPU twin of `shaders/assign_coop.wgsl`: nearest-centroid assignment whose
//! dot products are computed the way f16 tensor cores compute them, with an
//! error bound that says when that arithmetic could have chosen wrong, and an
//! f32 re-check of exactly those rows.
//!
//! # The split
//!
//! Each f32 descriptor row `v` is scaled by a power of two `2^e` so that its
//! largest |element| lies in `[2^14, 2^15)` (f16's largest finite value is
//! 65504 > 2^15, its smallest normal 2^-14), and each scaled element `a` is
//! split into two f16 values: `hi = f16(a)`, `lo = f16(a − hi)` (`a − hi` is
//! exact in f32). Centroids are scaled and split the same way. u8 rows are
//! exact in f16 and are neither scaled nor split (`lo = 0`). The dot product
//! is then `hi·hi + hi·lo + lo·hi` (the `lo·lo` term, `≤ 2^-20 |a||b|`, is
//! dropped; for u8 rows only two products remain), each product of two f16
//! exact in f32, accumulated in f32, and unscaled by `2^-(e_v + e_c)`
//! (exact: a power of two). Distances are `‖c‖² − 2 v·c` as in the plain
//! path.
//!
//! # The bound
//!
//! [`error_bound`] returns `B` such that, for every centroid `k`,
//! `|d̂_k − (‖c_k‖² − 2 v·c_k)| ≤ B`, where `d̂_k` is the computed distance —
//! whatever order the hardware sums in and even if it truncates instead of
//! rounding or flushes f16 subnormals. The derivation is in the shader's
//! header comment; in short, with `F` the dimension, `u = 2^-23`,
//! `‖v‖` and `C = max_k ‖c_k‖` (taken 1 % high to cover their own rounding):
//!
//! * splitting (WGSL lets f32→f16 round either way, so 1 ulp = 2^-10
//!   relative): `≤ 24 u ‖v‖‖c‖` per dot product, `lo·lo` included (plus
//!   `√F/16 u ‖v‖‖c‖` if f16 subnormals are flushed);
//! * accumulating `3F` exact products in f32, any order, 1 ulp per addition,
//!   doubled for safety: `≤ 6.03 F u ‖v‖‖c‖` (tensor cores that align and
//!   truncate per 16-product block stay below `(6.03F + 17.1) u ‖v‖‖c‖`);
//! * the f32 norm `‖c_k‖²` (any order, doubled): `≤ F u C²`;
//! * the subtraction `‖c‖² − 2 v·c`: `≤ u (‖v‖ + C)²`;
//!
//! and since `2‖v‖C ≤ (‖v‖ + C)²` and `C² ≤ (‖v‖ + C)²`, the sum is below
//! `(7.1F + 42) u (‖v‖ + C)²`, hence `B = (8F + 48) u (‖v‖ + C)²`.
//!
//! # Labels
//!
//! Each row keeps its best two computed distances `d̂₁ ≤ d̂₂`. When
//! `d̂₂ − d̂₁ > 2B`, every other centroid is provably farther: the label is the
//! *exact* argmin. Otherwise (near ties, exact ties included, and rows whose
//! scale is out of range) the row is re-checked: `Σ_f (v_f − c_f)²` in f32
//! (blocks of 16 features summed in order, the block sums added in order)
//! over every centroid, ties to the lowest index. So labels satisfy SPEC §4
//! at least as well as the plain path's: exact where the gap is clear, a
//! direct f32 distance (no cancellation in `‖c‖² − 2 v·c`) where it is not.

use rayon::prelude::*;

use crate::model::codebook::Codebook;
use crate::model::element::{DType, Element};

/// Features per cooperative-matrix step (the `K` of a 16×16×16 product),
/// and per block of the re-check's blocked sum.
pub const STEP: usize = 16;

/// Scaled rows and centroids have their largest |element| in
/// `[2^TARGET_EXPONENT, 2^(TARGET_EXPONENT + 1))`.
pub const TARGET_EXPONENT: i32 = 14;

/// Rows (and centroids) whose largest |element| has a binary exponent
/// outside `±EXPONENT_RANGE` are not scaled: rows are always re-checked,
/// centroids make every row re-checked. (Keeps `2^-(e_v + e_c)` and the
/// bound inside f32's normal range.)
pub const EXPONENT_RANGE: i32 = 60;

/// `B = (BOUND_PER_FEATURE · F + BOUND_CONSTANT) · 2^-23 · (‖v‖ + C)²`.
pub const BOUND_PER_FEATURE: f32 = 8.0;
/// See [`BOUND_PER_FEATURE`].
pub const BOUND_CONSTANT: f32 = 48.0;
/// `‖v‖` and `C` enter the bound this much high (their own f32 rounding).
pub const NORM_MARGIN: f32 = 1.01;

/// Round an f32 to the nearest f16 value, ties to even, returned as f32
/// (the conversion the shader's `f16(x)` does on IEEE hardware). Values
/// beyond f16's range become ±∞.
pub fn round_f16(x: f32) -> f32 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    let a = x.abs();
    // f16: 10 fraction bits; normal exponents −14..=15; below, subnormals
    // with a fixed spacing of 2^-24.
    let exponent = ((a.to_bits() >> 23) as i32 - 127).max(-14);
    let ulp = (exponent - 10) as f64;
    let spacing = 2f64.powf(ulp);
    let rounded = ((a as f64) / spacing).round_ties_even() * spacing;
    if rounded >= 65520.0 {
        return f32::INFINITY.copysign(x);
    }
    (rounded as f32).copysign(x)
}

/// The power-of-two exponent `e` that brings `max_abs` (a row's largest
/// |element|) into `[2^14, 2^15)`, or `None` when `max_abs` is subnormal or
/// its exponent is out of `±EXPONENT_RANGE`. A zero row needs no scaling:
/// `Some(0)`.
pub fn scale_exponent(max_abs: f32) -> Option<i32> {
    if max_abs == 0.0 {
        return Some(0);
    }
    let biased = (max_abs.to_bits() >> 23) & 0xff;
    if biased == 0 || biased == 0xff {
        return None;
    }
    let exponent = biased as i32 - 127;
    if exponent.abs() > EXPONENT_RANGE {
        return None;
    }
    Some(TARGET_EXPONENT - exponent)
}

/// `2^e` as f32 (|e| ≤ 126).
fn pow2(e: i32) -> f32 {
    f32::from_bits(((127 + e) as u32) << 23)
}

/// Split an already scaled value into f16 `(hi, lo)` with `hi + lo ≈ a`.
pub fn split(a: f32) -> (f32, f32) {
    let hi = round_f16(a);
    (hi, round_f16(a - hi))
}

/// The bound `B` on `|d̂_k − (‖c_k‖² − 2 v·c_k)|` for every centroid, given
/// the dimension, `‖v‖²` and `max_k ‖c_k‖²` (both as computed in f32).
/// See the module documentation.
pub fn error_bound(dim: usize, v_norm2: f32, c_max2: f32) -> f32 {
    let v = v_norm2.max(0.0).sqrt() * NORM_MARGIN;
    let c = c_max2.max(0.0).sqrt() * NORM_MARGIN;
    let u = pow2(-23);
    (BOUND_PER_FEATURE * dim as f32 + BOUND_CONSTANT) * u * (v + c) * (v + c)
}

/// One operand (a row or a centroid) scaled and split.
struct Split {
    hi: Vec<f32>,
    lo: Vec<f32>,
    /// `2^-e`: multiply a product of scaled values by both operands' to
    /// unscale it.
    unscale: f32,
    /// The scale was out of range (the operand was used unscaled).
    out_of_range: bool,
}

fn split_operand(values: &[f32], exact_in_f16: bool) -> Split {
    if exact_in_f16 {
        return Split {
            hi: values.to_vec(),
            lo: vec![0.0; values.len()],
            unscale: 1.0,
            out_of_range: false,
        };
    }
    let max_abs = values.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let (e, out_of_range) = match scale_exponent(max_abs) {
        Some(e) => (e, false),
        None => (0, true),
    };
    let scale = pow2(e);
    let (hi, lo) = values.iter().map(|&x| split(x * scale)).unzip();
    Split {
        hi,
        lo,
        unscale: pow2(-e),
        out_of_range,
    }
}

/// The split dot product `v·c` (unscaled), as the shader computes it up to
/// the order of the f32 additions (here: feature by feature, `hi·hi`, then
/// `hi·lo`, then `lo·hi`).
fn split_dot(v: &Split, c: &Split) -> f32 {
    let mut acc = 0.0f32;
    for f in 0..v.hi.len() {
        acc += v.hi[f] * c.hi[f];
        acc += v.hi[f] * c.lo[f];
        acc += v.lo[f] * c.hi[f];
    }
    acc * v.unscale * c.unscale
}

/// `v·c` computed with the split arithmetic: f32 `v` scaled and split
/// (or used as is when `v_exact_in_f16`, as for u8 input), `c` scaled and
/// split. Exposed so the bound can be tested.
pub fn split_dot_product(v: &[f32], c: &[f32], v_exact_in_f16: bool) -> f32 {
    split_dot(&split_operand(v, v_exact_in_f16), &split_operand(c, false))
}

/// `Σ_f (v_f − c_f)²` in f32: blocks of [`STEP`] features summed in order
/// with fused multiply-adds, block sums added in order (the shader's order).
pub fn recheck_distance(v: &[f32], c: &[f32]) -> f32 {
    let mut total = 0.0f32;
    for (vb, cb) in v.chunks(STEP).zip(c.chunks(STEP)) {
        let mut block = 0.0f32;
        for (&x, &y) in vb.iter().zip(cb) {
            let d = x - y;
            block = d.mul_add(d, block);
        }
        total += block;
    }
    total
}

/// Labels of the split path, with what it had to re-check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoopAssignment {
    /// Nearest-centroid label of each row.
    pub labels: Vec<u32>,
    /// Rows re-checked in plain f32 (near ties and out-of-range scales).
    pub rechecked: Vec<usize>,
}

/// One row's decision from the split distances alone.
#[derive(Copy, Clone, Debug)]
struct SplitBest {
    label: u32,
    needs_recheck: bool,
}

fn best_two(
    v_split: &Split,
    centroids: &[Split],
    norms: &[f32],
    bound: f32,
    force: bool,
) -> SplitBest {
    let (mut d1, mut k1, mut d2) = (f32::INFINITY, 0u32, f32::INFINITY);
    for (k, (c, &n)) in centroids.iter().zip(norms).enumerate() {
        let d = n - 2.0 * split_dot(v_split, c);
        if d < d1 {
            d2 = d1;
            d1 = d;
            k1 = k as u32;
        } else if d < d2 {
            d2 = d;
        }
    }
    // Decided only when the gap provably exceeds 2B; a NaN gap (from an
    // out-of-range scale) is not decided either.
    let decided = (d2 - d1).partial_cmp(&(2.0 * bound)) == Some(std::cmp::Ordering::Greater);
    SplitBest {
        label: k1,
        needs_recheck: force || v_split.out_of_range || !decided,
    }
}

/// Argmin of [`recheck_distance`] over every centroid, ties to the lowest.
fn recheck(v: &[f32], codebook: &Codebook) -> u32 {
    let f = codebook.dim();
    let mut best = (f32::INFINITY, 0u32);
    for (k, c) in codebook.as_slice().chunks_exact(f).enumerate() {
        let d = recheck_distance(v, c);
        if d < best.0 {
            best = (d, k as u32);
        }
    }
    best.1
}

fn prepare<E: Element>(
    codebook: &Codebook,
    rows: &[E],
    dim: usize,
) -> (Vec<Split>, bool, f32, usize) {
    assert_eq!(
        dim,
        codebook.dim(),
        "descriptor width must match the codebook's"
    );
    assert_eq!(rows.len() % dim, 0, "rows must hold a whole number of rows");
    let centroids: Vec<Split> = codebook
        .as_slice()
        .chunks_exact(dim)
        .map(|c| split_operand(c, false))
        .collect();
    let force_all = centroids.iter().any(|c| c.out_of_range);
    let c_max2 = codebook
        .squared_norms()
        .iter()
        .fold(0.0f32, |m, &n| m.max(n));
    (centroids, force_all, c_max2, rows.len() / dim)
}

fn decide<E: Element>(
    codebook: &Codebook,
    row: &[E],
    centroids: &[Split],
    force_all: bool,
    c_max2: f32,
) -> (Vec<f32>, SplitBest) {
    let v: Vec<f32> = row.iter().map(|x| x.to_f32()).collect();
    let v_split = split_operand(&v, E::DTYPE == DType::U8);
    let v_norm2: f32 = v.iter().map(|x| x * x).sum();
    let bound = error_bound(v.len(), v_norm2, c_max2);
    let best = best_two(
        &v_split,
        centroids,
        codebook.squared_norms(),
        bound,
        force_all,
    );
    (v, best)
}

/// Nearest-centroid labels by the split arithmetic, re-checking in plain f32
/// every row the error bound cannot decide (see the module documentation).
///
/// # Panics
///
/// If `dim` differs from the codebook's width or does not divide
/// `rows.len()` (callers validate shapes before calling).
pub fn assign_rows_coop<E: Element>(codebook: &Codebook, rows: &[E], dim: usize) -> CoopAssignment {
    let (centroids, force_all, c_max2, _) = prepare(codebook, rows, dim);
    let decided: Vec<(u32, bool)> = rows
        .par_chunks(dim)
        .map(|row| {
            let (v, best) = decide(codebook, row, &centroids, force_all, c_max2);
            if best.needs_recheck {
                (recheck(&v, codebook), true)
            } else {
                (best.label, false)
            }
        })
        .collect();
    CoopAssignment {
        labels: decided.iter().map(|&(k, _)| k).collect(),
        rechecked: decided
            .iter()
            .enumerate()
            .filter_map(|(i, &(_, r))| r.then_some(i))
            .collect(),
    }
}

/// The labels the split distances alone would give (no re-check): what the
/// re-check exists to correct. For tests and diagnostics.
pub fn split_only_labels<E: Element>(codebook: &Codebook, rows: &[E], dim: usize) -> Vec<u32> {
    let (centroids, force_all, c_max2, _) = prepare(codebook, rows, dim);
    rows.par_chunks(dim)
        .map(|row| decide(codebook, row, &centroids, force_all, c_max2).1.label)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::reference;
    use crate::verify::is_near_tie;
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn codebook(k: usize, f: usize, data: Vec<f32>) -> Codebook {
        Codebook::new(Array2::from_shape_vec((k, f), data).unwrap().view()).unwrap()
    }

    fn exact_argmin(codebook: &Codebook, v: &[f64]) -> (u32, f64, f64) {
        // (label, best, second best) of the exact squared distances, in f64
        // from f32 inputs (exact to within 2^-50 relative: enough here).
        let f = codebook.dim();
        let mut d: Vec<(f64, u32)> = codebook
            .as_slice()
            .chunks_exact(f)
            .enumerate()
            .map(|(k, c)| {
                let s: f64 = v.iter().zip(c).map(|(a, &b)| (a - b as f64).powi(2)).sum();
                (s, k as u32)
            })
            .collect();
        d.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (d[0].1, d[0].0, d.get(1).map_or(f64::INFINITY, |x| x.0))
    }

    /// SPEC §4 for every row, against the independent f64 oracle.
    fn assert_spec4<E: Element>(codebook: &Codebook, rows: &[E], labels: &[u32], what: &str) {
        let f = codebook.dim();
        let view = ndarray::ArrayView2::from_shape((rows.len() / f, f), rows).unwrap();
        let batch = crate::model::batch::Batch::single(view).unwrap();
        let exact = reference::assign(codebook, &batch);
        for (i, (&got, &want)) in labels.iter().zip(&exact).enumerate() {
            assert!(
                is_near_tie(codebook, &rows[i * f..][..f], got, want),
                "{what}: row {i}: label {got}, exact argmin {want}"
            );
        }
    }

    #[test]
    fn round_f16_matches_known_values() {
        assert_eq!(round_f16(1.0), 1.0);
        // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even → 1.
        assert_eq!(round_f16(1.0 + 2f32.powi(-11)), 1.0);
        // 1 + 3·2^-11 is halfway between 1 + 2^-10 and 1 + 2^-9 → even is 1 + 2^-9.
        assert_eq!(round_f16(1.0 + 3.0 * 2f32.powi(-11)), 1.0 + 2f32.powi(-9));
        assert_eq!(round_f16(65504.0), 65504.0);
        assert_eq!(round_f16(65519.0), 65504.0);
        assert_eq!(round_f16(65520.0), f32::INFINITY);
        // Subnormals: spacing 2^-24.
        assert_eq!(round_f16(2f32.powi(-24)), 2f32.powi(-24));
        assert_eq!(round_f16(1.4 * 2f32.powi(-24)), 2f32.powi(-24));
        assert_eq!(round_f16(-3.0 * 2f32.powi(-25)), -2.0 * 2f32.powi(-24));
        assert_eq!(round_f16(0.3 * 2f32.powi(-24)), 0.0);
    }

    #[test]
    fn split_is_accurate_to_2_pow_minus_21() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..10_000 {
            // Scaled values live in [-2^15, 2^15).
            let a: f32 = rng.random_range(-32768.0f32..32768.0);
            let (hi, lo) = split(a);
            assert_eq!(hi, round_f16(hi));
            assert_eq!(lo, round_f16(lo));
            let err = (a as f64 - hi as f64 - lo as f64).abs();
            assert!(
                err <= 2f64.powi(-21) * a.abs() as f64 + 2f64.powi(-25),
                "{a}: {err}"
            );
        }
    }

    #[test]
    fn scale_exponent_brings_the_largest_element_into_range() {
        for &m in &[
            1.0f32,
            0.75,
            3.0,
            255.0,
            1e-10,
            1e10,
            65504.0,
            2f32.powi(-60),
        ] {
            let e = scale_exponent(m).unwrap();
            let s = m * pow2(e);
            assert!((16384.0..32768.0).contains(&s), "{m}: {s}");
        }
        assert_eq!(scale_exponent(0.0), Some(0));
        assert_eq!(scale_exponent(2f32.powi(-61)), None);
        assert_eq!(scale_exponent(2f32.powi(61)), None);
        assert_eq!(scale_exponent(f32::from_bits(1)), None);
    }

    /// The bound holds: `|d̂ − exact| ≤ B` for `d = ‖c‖² − 2v·c`, on random
    /// data of several magnitudes and dimensions, f32 and u8 rows. The
    /// f32-summed norm is part of `d̂` (as in the shader).
    #[test]
    fn error_bound_holds_on_random_data() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut worst = 0.0f64;
        for &f in &[1usize, 3, 16, 17, 64, 128, 300] {
            for &(lo, hi) in &[(-1.0f32, 1.0f32), (0.0, 1e4), (-1e-6, 1e-6), (0.0, 255.0)] {
                let u8_rows = lo == 0.0 && hi == 255.0;
                for _ in 0..40 {
                    let v: Vec<f32> = (0..f)
                        .map(|_| {
                            let x = rng.random_range(lo..hi);
                            if u8_rows { x.round() } else { x }
                        })
                        .collect();
                    // Centroids of their own magnitude, some much smaller.
                    let scale = if rng.random_bool(0.5) { 1.0 } else { 1e-3 };
                    let c: Vec<f32> = (0..f).map(|_| rng.random_range(lo..hi) * scale).collect();
                    let c_norm2: f32 = c.iter().map(|x| x * x).sum();
                    let v_norm2: f32 = v.iter().map(|x| x * x).sum();
                    let got = c_norm2 - 2.0 * split_dot_product(&v, &c, u8_rows);
                    let exact: f64 = c.iter().map(|&x| x as f64 * x as f64).sum::<f64>()
                        - 2.0
                            * v.iter()
                                .zip(&c)
                                .map(|(&a, &b)| a as f64 * b as f64)
                                .sum::<f64>();
                    let bound = error_bound(f, v_norm2, c_norm2) as f64;
                    let err = (got as f64 - exact).abs();
                    assert!(
                        err <= bound,
                        "F = {f}, range {lo}..{hi}: error {err} > bound {bound}"
                    );
                    // The split dot alone is far better than the bound: its
                    // representation error is ~2^-20 relative.
                    if bound > 0.0 {
                        worst = worst.max(err / bound);
                    }
                }
            }
        }
        assert!(worst < 0.5, "bound is suspiciously tight: {worst}");
    }

    /// u8 rows are exact in f16: the split product of a u8 row with an
    /// f16-exact centroid is the exact dot product.
    #[test]
    fn u8_rows_need_no_split() {
        let v: Vec<f32> = (0..32).map(|i| (i * 8) as f32).collect();
        let c: Vec<f32> = (0..32).map(|i| 1.0 + i as f32 / 8.0).collect();
        let exact: f32 = v.iter().zip(&c).map(|(a, b)| a * b).sum();
        assert_eq!(split_dot_product(&v, &c, true), exact);
    }

    /// Near ties built from a large common offset (so `‖c‖² − 2v·c` cancels
    /// badly) and a tiny gap: the split distances alone pick the wrong
    /// centroid in some rows; the re-check picks the exact argmin in all.
    #[test]
    fn recheck_fixes_what_the_split_alone_gets_wrong() {
        let (f, k, n) = (16usize, 2usize, 400usize);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let base: Vec<f32> = (0..f).map(|_| rng.random_range(500.0f32..1000.0)).collect();
        // c0 = base + u, c1 = base − u: rows at base + w are nearer c0 iff
        // w·u > 0. Exact distances differ by 4 w·u, tiny against ‖v‖² ≈ 1e7.
        let u: Vec<f32> = (0..f).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let mut centroids = Vec::new();
        centroids.extend(base.iter().zip(&u).map(|(b, x)| b + x));
        centroids.extend(base.iter().zip(&u).map(|(b, x)| b - x));
        let cb = codebook(k, f, centroids);
        let mut rows = Vec::new();
        let mut gaps = Vec::new();
        for _ in 0..n {
            let w: Vec<f32> = (0..f).map(|_| rng.random_range(-0.01f32..0.01)).collect();
            let v: Vec<f32> = base.iter().zip(&w).map(|(b, x)| b + x).collect();
            let v64: Vec<f64> = v.iter().map(|&x| x as f64).collect();
            let (_, d1, d2) = exact_argmin(&cb, &v64);
            gaps.push(d2 - d1);
            rows.extend(v);
        }
        let split = split_only_labels(&cb, &rows, f);
        let full = assign_rows_coop(&cb, &rows, f);
        let mut wrong_split = 0;
        for i in 0..n {
            let v64: Vec<f64> = rows[i * f..][..f].iter().map(|&x| x as f64).collect();
            let (want, _, _) = exact_argmin(&cb, &v64);
            wrong_split += usize::from(split[i] != want);
            // The direct f32 distance of these rows (‖v − c‖² ≈ 16, error
            // ~1e-6) resolves every gap above 1e-4 exactly.
            if gaps[i] > 1e-4 {
                assert_eq!(full.labels[i], want, "row {i}: gap {}", gaps[i]);
            }
        }
        assert!(wrong_split > 0, "the data must defeat the split alone");
        assert_eq!(full.rechecked.len(), n, "every row is a near tie here");
        assert_spec4(&cb, &rows, &full.labels, "offset near ties");
    }

    /// Exact ties (rows equidistant to several centroids) go to the lowest
    /// index, through the re-check.
    #[test]
    fn exact_ties_go_to_the_lowest_index() {
        // Centroids ±e_j around the origin; rows at the origin are
        // equidistant to all of them; rows on an axis are not.
        let f = 8;
        let mut c = vec![0.0f32; 2 * f * f];
        for j in 0..f {
            c[2 * j * f + j] = 1.0;
            c[(2 * j + 1) * f + j] = -1.0;
        }
        let cb = codebook(2 * f, f, c);
        let mut rows = vec![0.0f32; f];
        let mut axis = vec![0.0f32; f];
        axis[3] = -0.5;
        rows.extend(&axis);
        // Equidistant to centroids 2 (+e1) and 4 (+e2).
        let mut diag = vec![0.0f32; f];
        diag[1] = 0.25;
        diag[2] = 0.25;
        rows.extend(&diag);
        let got = assign_rows_coop(&cb, &rows, f);
        assert_eq!(got.labels, vec![0, 7, 2]);
        assert_eq!(
            got.rechecked,
            vec![0, 2],
            "ties are re-checked, the clear row is not"
        );
    }

    /// Random data with many near ties (more centroids than clusters) over a
    /// large dynamic range, f32, f64 and u8: SPEC §4 against the oracle, and
    /// rows not re-checked carry the exact argmin.
    #[test]
    fn near_tie_data_obeys_spec4() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for &(f, k, scale) in &[
            (16usize, 64usize, 1.0f32),
            (128, 256, 1e3),
            (24, 40, 1e-4),
            (33, 70, 10.0),
        ] {
            let n = 600;
            // Centroids in pairs: c and c + tiny, so ties are frequent.
            let mut c = Vec::with_capacity(k * f);
            for _ in 0..k / 2 {
                let a: Vec<f32> = (0..f).map(|_| rng.random_range(0.0f32..scale)).collect();
                c.extend(&a);
                c.extend(
                    a.iter()
                        .map(|x| x + rng.random_range(-1e-6f32..1e-6) * scale),
                );
            }
            let cb = codebook(k, f, c);
            let rows: Vec<f32> = (0..n * f)
                .map(|_| rng.random_range(0.0f32..scale))
                .collect();
            let got = assign_rows_coop(&cb, &rows, f);
            assert_spec4(
                &cb,
                &rows,
                &got.labels,
                &format!("f32 F={f} K={k} ×{scale}"),
            );
            let rows64: Vec<f64> = rows.iter().map(|&x| x as f64).collect();
            let got64 = assign_rows_coop(&cb, &rows64, f);
            assert_eq!(got64, got, "f64 input converts to the same f32 rows");
            let rechecked: std::collections::HashSet<usize> =
                got.rechecked.iter().copied().collect();
            for i in 0..n {
                if !rechecked.contains(&i) {
                    let (want, _, _) = exact_argmin(&cb, &rows64[i * f..][..f]);
                    assert_eq!(
                        got.labels[i], want,
                        "row {i} was not re-checked, so must be exact"
                    );
                }
            }
            assert!(
                !got.rechecked.is_empty(),
                "paired centroids must produce near ties"
            );
        }
        // u8 rows against u8-range centroids (the SIFT case), paired centroids.
        let (f, k, n) = (128usize, 64usize, 500usize);
        let mut c = Vec::with_capacity(k * f);
        for _ in 0..k / 2 {
            let a: Vec<f32> = (0..f).map(|_| rng.random_range(0.0f32..255.0)).collect();
            c.extend(&a);
            c.extend(a.iter().map(|x| x + 1e-3));
        }
        let cb = codebook(k, f, c);
        let rows: Vec<u8> = (0..n * f).map(|_| rng.random()).collect();
        let got = assign_rows_coop(&cb, &rows, f);
        assert_spec4(&cb, &rows, &got.labels, "u8");
    }

    /// Out-of-range scales (tiny rows, huge centroids) force re-checks, and
    /// labels still obey SPEC §4.
    #[test]
    fn out_of_range_scales_are_rechecked() {
        let f = 4;
        let cb = codebook(2, f, vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
        let rows = vec![1e-30f32, 0.0, 0.0, 0.0, 0.9, 0.1, 0.0, 0.0];
        let got = assign_rows_coop(&cb, &rows, f);
        assert_eq!(got.labels, vec![0, 0]);
        assert_eq!(got.rechecked, vec![0]);
        let huge = codebook(2, f, vec![1e30, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
        let got = assign_rows_coop(&huge, &rows, f);
        assert_eq!(
            got.rechecked,
            vec![0, 1],
            "an out-of-range centroid re-checks all"
        );
        assert_spec4(&huge, &rows, &got.labels, "huge centroid");
    }

    /// Clustered data like the benchmarks' (and, scaled, SIFT's): the share
    /// of rows the bound sends to the re-check (printed; it decides how much
    /// scalar work the shader's second phase does).
    #[test]
    #[allow(clippy::print_stderr)] // the share is for whoever reads the test log
    fn recheck_share_on_clustered_data() {
        let (t, l, f, k) = (4usize, 500usize, 128usize, 256usize);
        let data = crate::synthetic::clustered_images(t, l, f, 64, 5);
        let rows = data.as_slice().unwrap();
        let cents = crate::synthetic::clustered_images(1, k, f, 64, 6);
        let cb = codebook(k, f, cents.as_slice().unwrap().to_vec());
        let got = assign_rows_coop(&cb, rows, f);
        let share = got.rechecked.len() as f64 / (t * l) as f64;
        eprintln!(
            "clustered F={f} K={k}: {:.2} % of rows re-checked",
            100.0 * share
        );
        assert_spec4(&cb, rows, &got.labels, "clustered");
        let plain = crate::backend::cpu::assign::assign_rows(&cb, rows, f);
        let same = plain
            .iter()
            .zip(&got.labels)
            .filter(|(a, b)| a == b)
            .count();
        assert!(
            same as f64 >= 0.99 * (t * l) as f64,
            "{same} of {} agree with the plain path",
            t * l
        );
    }
}
