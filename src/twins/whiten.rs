//! CPU twin of `shaders/whiten.wgsl`: the projection of whitening (SPEC
//! §14) before its post normalization, `y[t, i] = Σ_k (x[t, k] − μ[k]) ·
//! Pᵀ[k, i]`, summed in the shader's order — over `k` in blocks of
//! [`KB`], each block from zero with a fused multiply-add, then added to
//! the running total — so the GPU stage matches it bit for bit where its
//! `fma` is fused (it is on lavapipe and NVIDIA).

/// Columns summed per block (the shader's `KB`).
pub const KB: usize = 256;

/// `rows` rows of width `dim` (`x`, row-major) times `pt` (`dim × width`,
/// row-major) after subtracting `mean`: `rows × width` values.
pub fn project(
    x: &[f32],
    rows: usize,
    dim: usize,
    mean: &[f32],
    pt: &[f32],
    width: usize,
) -> Vec<f32> {
    let mut y = vec![0.0f32; rows * width];
    for t in 0..rows {
        let row = &x[t * dim..(t + 1) * dim];
        for i in 0..width {
            let mut total = 0.0f32;
            for k0 in (0..dim).step_by(KB) {
                let mut acc = 0.0f32;
                for k in k0..(k0 + KB).min(dim) {
                    acc = (row[k] - mean[k]).mul_add(pt[k * width + i], acc);
                }
                total += acc;
            }
            y[t * width + i] = total;
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects_centered_rows() {
        // x = [[1, 2], [3, 5]], μ = [1, 1], Pᵀ = [[1, 0], [1, 2]].
        let y = project(
            &[1.0, 2.0, 3.0, 5.0],
            2,
            2,
            &[1.0, 1.0],
            &[1.0, 0.0, 1.0, 2.0],
            2,
        );
        // Row 0 centered [0, 1] → [1, 2]; row 1 centered [2, 4] → [6, 8].
        assert_eq!(y, vec![1.0, 2.0, 6.0, 8.0]);
    }
}
