//! CPU twin of `shaders/soft_logits.wgsl`: the same arithmetic in the same
//! order, so the GPU stage can be checked against it.
//!
//! * [`logits`]: `w_k·v + b_k`, the dot product in blocks of
//!   [`CHUNK_FEATURES`] features, each an fma chain from zero, block sums
//!   added in feature order (the GEMM tiling of the shader changes which
//!   invocation computes a dot product, never its order), the bias added
//!   after. Equal to the GPU's where the driver fuses `fma` as WGSL asks;
//!   lavapipe evaluates it unfused, so there the two differ by about an
//!   ulp (the tests bound the difference by `2(F+1)·ε·Σ|v·w|`).
//! * [`softmax`]: per row, max, `exp(l − m)` summed in blocks of
//!   [`SUM_BLOCK`], `a = e / s`, the label of the largest weight (lowest k on
//!   ties), and under `rn` `a / sqrt(‖v − c‖²)`. The GPU's `exp`, division
//!   and square root are not correctly rounded (Vulkan allows a few ulp), so
//!   the two agree to within a few ulp relative, not bit for bit.
//!
//! Descriptors come in as f32 (u8 widened, f64 rounded: what the device
//! holds).

/// The shader's `BF`: features per block sum of a dot product.
pub const CHUNK_FEATURES: usize = 8;

/// The shader's `SUM_BLOCK`: terms summed sequentially before a block sum
/// joins the running total.
pub const SUM_BLOCK: usize = 16;

/// `rows (N × F) · Wᵀ + b`: the `N × K` logits, row-major.
///
/// # Panics
///
/// If `weights` is not `K × F` for `K = bias.len()`, or `rows` not whole
/// rows of `dim`.
pub fn logits(rows: &[f32], dim: usize, weights: &[f32], bias: &[f32]) -> Vec<f32> {
    let k = bias.len();
    assert_eq!(weights.len(), k * dim, "W must be K × F");
    assert!(dim > 0 && rows.len().is_multiple_of(dim), "whole rows");
    let mut out = Vec::with_capacity(rows.len() / dim * k);
    for v in rows.chunks_exact(dim) {
        for (w, &b) in weights.chunks_exact(dim).zip(bias) {
            let mut total = 0.0f32;
            for (vb, wb) in v.chunks(CHUNK_FEATURES).zip(w.chunks(CHUNK_FEATURES)) {
                let mut acc = 0.0f32;
                for (&x, &y) in vb.iter().zip(wb) {
                    acc = x.mul_add(y, acc);
                }
                total += acc;
            }
            out.push(total + b);
        }
    }
    out
}

/// `‖v − c‖²`: f32 differences, squares added by fma, [`SUM_BLOCK`] at a
/// time.
pub fn residual_norm2(v: &[f32], c: &[f32]) -> f32 {
    let mut total = 0.0f32;
    for (vb, cb) in v.chunks(SUM_BLOCK).zip(c.chunks(SUM_BLOCK)) {
        let mut s = 0.0f32;
        for (&x, &y) in vb.iter().zip(cb) {
            let d = x - y;
            s = d.mul_add(d, s);
        }
        total += s;
    }
    total
}

/// Turn the `N × K` logits into soft-assignment weights in place and
/// return each row's label, and under `rn` the weights before scaling. With
/// `residual_norm = Some((rows, dim, centroids))` each weight is divided by
/// `‖v − c_k‖` (0 for a zero residual), as `rn` asks; the unscaled ones
/// are what `mass` sums. Without it the second vector is empty.
///
/// # Panics
///
/// If `k == 0` or the lengths disagree.
pub fn softmax(
    weights: &mut [f32],
    k: usize,
    residual_norm: Option<(&[f32], usize, &[f32])>,
) -> (Vec<u32>, Vec<f32>) {
    assert!(k > 0 && weights.len().is_multiple_of(k), "whole rows of K");
    let mut labels = Vec::with_capacity(weights.len() / k);
    let mut unscaled = Vec::new();
    for (row, w) in weights.chunks_exact_mut(k).enumerate() {
        let m = w[1..].iter().fold(w[0], |m, &x| m.max(x));
        let mut total = 0.0f32;
        for block in w.chunks_mut(SUM_BLOCK) {
            let mut s = 0.0f32;
            for x in block {
                *x = (*x - m).exp();
                s += *x;
            }
            total += s;
        }
        let (mut best, mut best_weight) = (0u32, -1.0f32);
        for (j, x) in w.iter_mut().enumerate() {
            let mut a = *x / total;
            if a > best_weight {
                best_weight = a;
                best = j as u32;
            }
            if let Some((rows, dim, centroids)) = residual_norm {
                unscaled.push(a);
                let n2 = residual_norm2(
                    &rows[row * dim..(row + 1) * dim],
                    &centroids[j * dim..(j + 1) * dim],
                );
                a = if n2 > 0.0 { a / n2.sqrt() } else { 0.0 };
            }
            *x = a;
        }
        labels.push(best);
    }
    (labels, unscaled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable_and_labels_the_largest() {
        let mut w = logits(
            &[1.0, 2.0],
            2,
            &[1.0, 0.0, 0.0, 1.0, 0.0, 0.0],
            &[0.0, 0.0, 1000.0],
        );
        assert_eq!(w, vec![1.0, 2.0, 1000.0]);
        let (labels, unscaled) = softmax(&mut w, 3, None);
        assert_eq!(labels, vec![2]);
        assert!(unscaled.is_empty());
        assert_eq!(w[2], 1.0);
        assert!(w.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn rn_divides_by_the_residual_norm_and_zero_stays_zero() {
        // Two clusters with equal logits; the row equals centroid 0.
        let rows = [3.0f32, 4.0];
        let centroids = [3.0f32, 4.0, 0.0, 0.0];
        let mut w = vec![0.0f32, 0.0];
        let (_, unscaled) = softmax(&mut w, 2, Some((&rows, 2, &centroids)));
        assert_eq!(w, vec![0.0, 0.5 / 5.0]);
        assert_eq!(unscaled, vec![0.5, 0.5]);
    }
}
