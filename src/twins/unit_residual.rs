//! CPU twin of `shaders/unit_residual.wgsl`: under hard assignment with
//! `rn`, each row's residual to its centroid scaled to unit length (a zero
//! residual stays zero), as f32 rows; the norm's squares added by fma
//! [`SUM_BLOCK`] at a time, block sums in order, then `d / sqrt(‖d‖²)`.
//! Vulkan's division and square root are not correctly rounded, so the GPU
//! agrees with this to a few ulp, not bit for bit.

use super::soft_logits::residual_norm2;

/// The shader's `SUM_BLOCK` (shared with the softmax's residual norms).
pub const SUM_BLOCK: usize = super::soft_logits::SUM_BLOCK;

/// `(v_l − c_{label_l}) / ‖v_l − c_{label_l}‖` for every row of `rows`
/// (`N × F`, f32 as on the device).
///
/// # Panics
///
/// If a label is not below `K` or the lengths disagree.
pub fn unit_residuals(rows: &[f32], dim: usize, centroids: &[f32], labels: &[u32]) -> Vec<f32> {
    assert_eq!(rows.len(), labels.len() * dim, "one label per row");
    let mut out = Vec::with_capacity(rows.len());
    for (v, &label) in rows.chunks_exact(dim).zip(labels) {
        let c = &centroids[label as usize * dim..(label as usize + 1) * dim];
        let n2 = residual_norm2(v, c);
        let norm = n2.sqrt();
        out.extend(
            v.iter()
                .zip(c)
                .map(|(&x, &y)| if n2 > 0.0 { (x - y) / norm } else { 0.0 }),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_length_and_zero_stays_zero() {
        let rows = [3.0f32, 4.0, 1.0, 1.0];
        let centroids = [0.0f32, 0.0, 1.0, 1.0];
        let u = unit_residuals(&rows, 2, &centroids, &[0, 1]);
        assert_eq!(u, vec![0.6, 0.8, 0.0, 0.0]);
    }
}
