//! CPU twin of `shaders/soft_aggregate.wgsl`: per image and element
//! `(k, f)`, `Σ_l a_lk·v_lf − (Σ_l a_lk)·c_kf`, and the soft counts
//! `Σ_l n_lk` (`n` the unscaled weights under `rn`, else `a`), with the
//! shader's order —
//! rows in [`SUM_BLOCK`]s summed by fma into block sums, block sums added
//! in order, the centroid subtracted by one fma. The GPU's sums equal these
//! where the driver fuses `fma` (lavapipe does not: there they differ by
//! about an ulp per term, bounded in the tests), its soft counts (plain
//! additions) bit for bit; `divide_by_mass` divides, which Vulkan does not
//! round correctly, so there the two agree to a few ulp.

/// The shader's `SUM_BLOCK`: rows summed sequentially into a block sum.
pub const SUM_BLOCK: usize = 32;

/// The `(T, K, F)` weighted residual sums and `(T, K)` soft counts of the
/// images `offsets` (CSR over the rows) cuts `rows (N × F)` into, with the
/// `N × K` weights and the `N × K` weights the counts sum.
///
/// # Panics
///
/// If the lengths disagree.
pub fn aggregate(
    rows: &[f32],
    dim: usize,
    weights: &[f32],
    mass_weights: &[f32],
    centroids: &[f32],
    offsets: &[usize],
) -> (Vec<f32>, Vec<f32>) {
    let k = centroids.len() / dim;
    let n = rows.len() / dim;
    assert_eq!(weights.len(), n * k, "one weight per row and cluster");
    assert_eq!(mass_weights.len(), n * k, "one weight per row and cluster");
    let images = offsets.len().saturating_sub(1);
    let mut blocks = vec![0.0f32; images * k * dim];
    let mut mass = vec![0.0f32; images * k];
    let mut total = vec![0.0f32; k * dim];
    let mut part = vec![0.0f32; k * dim];
    let mut total_weight = vec![0.0f32; k];
    let mut part_weight = vec![0.0f32; k];
    let mut total_mass = vec![0.0f32; k];
    let mut part_mass = vec![0.0f32; k];
    for t in 0..images {
        total.fill(0.0);
        total_weight.fill(0.0);
        total_mass.fill(0.0);
        let mut l = offsets[t];
        let end = offsets[t + 1];
        while l < end {
            let stop = (l + SUM_BLOCK).min(end);
            part.fill(0.0);
            part_weight.fill(0.0);
            part_mass.fill(0.0);
            for row in l..stop {
                let v = &rows[row * dim..(row + 1) * dim];
                let a = &weights[row * k..(row + 1) * k];
                let m = &mass_weights[row * k..(row + 1) * k];
                for (j, (&a, &m)) in a.iter().zip(m).enumerate() {
                    for (p, &x) in part[j * dim..(j + 1) * dim].iter_mut().zip(v) {
                        *p = a.mul_add(x, *p);
                    }
                    part_weight[j] += a;
                    part_mass[j] += m;
                }
            }
            for (s, p) in total.iter_mut().zip(&part) {
                *s += p;
            }
            for (s, p) in total_weight.iter_mut().zip(&part_weight) {
                *s += p;
            }
            for (s, p) in total_mass.iter_mut().zip(&part_mass) {
                *s += p;
            }
            l = stop;
        }
        let out = &mut blocks[t * k * dim..(t + 1) * k * dim];
        for j in 0..k {
            for f in 0..dim {
                let c = centroids[j * dim + f];
                out[j * dim + f] = (-total_weight[j]).mul_add(c, total[j * dim + f]) + 0.0;
            }
        }
        mass[t * k..(t + 1) * k].copy_from_slice(&total_mass);
    }
    (blocks, mass)
}

/// SPEC §3's `mass` with soft counts: each block of `dim` divided by its
/// count where the count is > 0.
pub fn divide_by_mass(blocks: &mut [f32], mass: &[f32], dim: usize) {
    for (block, &n) in blocks.chunks_exact_mut(dim).zip(mass) {
        if n > 0.0 {
            block.iter_mut().for_each(|x| *x /= n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_residuals_and_empty_images() {
        // Two images, the first empty; K = 2, F = 1.
        let rows = [1.0f32, 3.0];
        let weights = [0.25f32, 0.75, 1.0, 0.0];
        let centroids = [0.0f32, 2.0];
        let (blocks, mass) = aggregate(&rows, 1, &weights, &weights, &centroids, &[0, 0, 2]);
        assert_eq!(mass, vec![0.0, 0.0, 1.25, 0.75]);
        // k=0: 0.25·1 + 1·3 − 1.25·0; k=1: 0.75·1 − 0.75·2.
        assert_eq!(blocks, vec![0.0, 0.0, 3.25, -0.75]);
    }
}
