//! NetVLAD soft assignment of a block of rows: the logits `X·Wᵀ + b` as one
//! single-threaded GEMM (the assignment's kernel, [`mod@super::assign`]), then a
//! stable softmax per row (subtract the row's max, exponentiate, divide by
//! the sum).
//!
//! The exponential is a branch-free polynomial (Cephes' `expf`, within
//! 2 ulp over the range used) so the compiler vectorizes it; sums are taken
//! over eight lanes added in a fixed order, so a row's weights depend on the
//! row alone, never on the block it sits in or the thread count (SPEC §5).

use crate::model::assignment::SoftParams;

/// `out` (row-major `m × K`) ← the soft-assignment weights of the `m`
/// row-major rows of width `F` in `rows`.
///
/// # Panics
///
/// If `rows` is not `m·F` long or `out` not `m·K` long.
pub fn soft_weights(params: &SoftParams, rows: &[f32], out: &mut [f32]) {
    let (k, f) = params.weights().dim();
    assert_eq!(rows.len() % f, 0, "rows must hold whole rows");
    let m = rows.len() / f;
    assert_eq!(out.len(), m * k, "out must be m × K");
    if m == 0 {
        return;
    }
    logits(params, rows, m, out);
    softmax_rows(out, k);
}

/// `out ← X·Wᵀ + b` (`m × K`, row-major).
pub fn logits(params: &SoftParams, rows: &[f32], m: usize, out: &mut [f32]) {
    let (k, f) = params.weights().dim();
    for row in out.chunks_exact_mut(k) {
        row.copy_from_slice(params.bias_slice());
    }
    // SAFETY: dst is m×k row-major (column stride 1, row stride k) in a
    // buffer of m·k; lhs is the m×f row-major block of rows; rhs is W read
    // as f×k (element (d, j) = W[j·f + d]). Each slice holds exactly the
    // elements these strides reach. dst is read (it holds the bias):
    // dst ← 1·dst + 1·lhs·rhs.
    unsafe {
        gemm::gemm(
            m,
            k,
            f,
            out.as_mut_ptr(),
            1,
            k as isize,
            true,
            rows.as_ptr(),
            1,
            f as isize,
            params.weights_slice().as_ptr(),
            f as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Stable softmax of each `k`-wide row of `values`, in place.
pub fn softmax_rows(values: &mut [f32], k: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F (checked just above).
        return unsafe { softmax_rows_avx512(values, k) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        return unsafe { softmax_rows_avx2(values, k) };
    }
    softmax_rows_portable(values, k)
}

/// [`softmax_rows_portable`] compiled for AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_rows_avx2(values: &mut [f32], k: usize) {
    softmax_rows_portable(values, k)
}

/// [`softmax_rows_portable`] compiled for AVX-512F: 16 lanes for the
/// exponentials. The same operations in the same order per value (no
/// contraction, sums over the same eight fixed lanes), so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_rows_avx512(values: &mut [f32], k: usize) {
    softmax_rows_portable(values, k)
}

#[inline(always)]
fn softmax_rows_portable(values: &mut [f32], k: usize) {
    for row in values.chunks_exact_mut(k) {
        let max = lane_max(row);
        for x in row.iter_mut() {
            *x = exp(*x - max);
        }
        // The max's own term is exp(0) = 1, so the sum is ≥ 1: no division
        // by zero, and no overflow since every exponent is ≤ 0.
        let inv = 1.0 / lane_sum(row);
        for x in row.iter_mut() {
            *x *= inv;
        }
    }
}

/// The largest value, over eight lanes (vectorizable).
#[inline(always)]
fn lane_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let mut chunks = x.chunks_exact(8);
    for chunk in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = if v > *a { v } else { *a };
        }
    }
    let mut max = chunks.remainder().iter().copied().fold(acc[0], f32::max);
    for &a in &acc[1..] {
        max = max.max(a);
    }
    max
}

/// The sum over eight interleaved lanes, added in a fixed order.
#[inline(always)]
fn lane_sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for chunk in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    let tail: f32 = chunks.remainder().iter().sum();
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// `e^x` for `x ≤ 0` (Cephes `expf`): `x = n·ln2 + r`, `|r| ≤ ln2/2`,
/// `e^r` by a degree-6 polynomial, `2^n` built in the exponent bits.
/// Below −87.3 (where `e^x` is under f32's normal range) it returns 0.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest by the 1.5·2²³ trick (no libm call, vectorizes).
    const ROUND: f32 = 12_582_912.0;
    let clamped = x.max(-87.3);
    let n = (clamped * LOG2E + ROUND) - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let p = p * r2 + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    let y = p * scale;
    if x < -87.3 { 0.0 } else { y }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_close_to_std() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let got = exp(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn every_softmax_variant_gives_the_same_bits() {
        let k = 37;
        let values: Vec<f32> = (0..k * 11)
            .map(|i| ((i * 7919 % 1013) as f32 - 500.0) * 0.173)
            .collect();
        let mut want = values.clone();
        softmax_rows_portable(&mut want, k);
        let mut got = values.clone();
        softmax_rows(&mut got, k);
        assert_eq!(
            got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn softmax_is_stable_and_sums_to_one() {
        let mut row = vec![1000.0, 999.0, -1e30, 1000.0, 0.0];
        softmax_rows(&mut row, 5);
        assert!(row.iter().all(|x| x.is_finite()));
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(row[0], row[3]);
        assert_eq!(row[2], 0.0);
        let e = (-1.0f64).exp();
        let want = 1.0 / (2.0 + e);
        assert!((row[0] as f64 - want).abs() < 1e-7);
    }
}
