//! CPU twin of `shaders/normalize.wgsl`: SPEC §3's steps, in place, on
//! `(images, clusters, dim)` f32 blocks with the shader's u32 counts.
//!
//! `mass` is the shader's own: `x ← x / f32(n)` where `n > 0`, and nothing
//! more. So a count of 1 divides too (`x / 1` is `x`, bit for bit), and a
//! `-0.0` quotient — a `-0.0` element, or a tiny negative one that
//! underflows — stays `-0.0`: there the shader differs from the CPU
//! backend's `x / n + 0.0` ([`crate::backend::cpu::normalize`]), and the
//! twin follows the shader. `f32(n)` is `n as f32`: exact up to 2²⁴, the
//! counts of any real image (beyond, Rust rounds to nearest and WGSL allows
//! either neighbour).
//!
//! The other steps (`power`, `intra`, `l2`) are the production
//! [`normalize_flat_rows`]'s, run one step at a time as the shader runs
//! one dispatch per step. The shader sums squares in f32 by lanes, blocks
//! and a fixed tree (and `ssr` fused with `intra`/`l2` as `Σ|x|`), the CPU
//! in f64 over eight interleaved partial sums; and a negative element whose
//! power underflows is `-0.0` in the shader, `+0.0` on the CPU. For those
//! steps the two agree within SPEC §4's tolerance, not bit for bit.

use crate::backend::cpu::normalize::normalize_flat_rows;
use crate::model::normalization::{Normalization, Step};

/// Apply every step of `norm` to `blocks` (`T · K · F` values, one `K·F`
/// row per image) with `counts` (`T · K`, read by `mass`), as the shader's
/// dispatches do.
///
/// # Panics
///
/// If `blocks` is not `counts.len() · dim` long.
pub fn normalize(
    blocks: &mut [f32],
    counts: &[u32],
    clusters: usize,
    dim: usize,
    norm: &Normalization,
) {
    assert_eq!(blocks.len(), counts.len() * dim, "one count per block");
    if dim == 0 || clusters == 0 {
        return;
    }
    // Read by no step below but `mass`, which the twin does itself.
    let unused_mass = vec![0f32; counts.len()];
    for &step in norm.steps() {
        match step {
            Step::Mass => mass(blocks, counts, dim),
            // Acts on residuals during aggregation, not on the sums.
            Step::ResidualNorm => {}
            other => {
                // Always Ok: one step of a valid list is a valid list.
                if let Ok(one) = Normalization::new(vec![other]) {
                    normalize_flat_rows(blocks, &unused_mass, clusters, dim, &one);
                }
            }
        }
    }
}

/// The shader's `mass` entry point: each element divided by its block's
/// count where the count is > 0.
fn mass(blocks: &mut [f32], counts: &[u32], dim: usize) {
    for (block, &n) in blocks.chunks_exact_mut(dim).zip(counts) {
        if n > 0 {
            let n = n as f32;
            block.iter_mut().for_each(|x| *x /= n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn mass_is_the_shaders_division() {
        // Counts 1, 0 and 4: a count of 1 divides and keeps -0.0, an empty
        // block is left alone, -1e-45 / 4 underflows to -0.0.
        let mut blocks = [-0.0, 3.0, -0.0, 5.0, -1e-45, 8.0];
        normalize(&mut blocks, &[1, 0, 4], 3, 2, &"mass".parse().unwrap());
        assert_eq!(bits(&blocks), bits(&[-0.0, 3.0, -0.0, 5.0, -0.0, 2.0]));
    }

    #[test]
    fn other_steps_are_the_cpu_backends() {
        let values = [3.0f32, -4.0, 0.0, 0.0, 6.0, 8.0, 1.0, -2.0];
        let counts = [2u32, 0, 4, 1];
        for list in ["ssr,l2", "intra", "power=0.3,intra,l2", "rn,ssr,l2"] {
            let norm: Normalization = list.parse().unwrap();
            let mut twin = values;
            normalize(&mut twin, &counts, 2, 2, &norm);
            let mut cpu = values;
            normalize_flat_rows(&mut cpu, &[0.0; 4], 2, 2, &norm);
            assert_eq!(bits(&twin), bits(&cpu), "{list}");
        }
    }
}
