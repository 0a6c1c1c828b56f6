//! CPU twin of `shaders/ceiling_fma.wgsl` and `shaders/ceiling_fma_f16.wgsl`,
//! the GPU's FMA-throughput ceiling kernels: [`FMA_CHAINS`] independent
//! chains `x ← fma(x, mul, add)` per invocation, summed in chain order. With
//! `mul = 0.5` and a small integer `add` every product is exact, so fused
//! and unfused FMA agree and the GPU matches this bit for bit
//! (`tests/gpu/ceilings.rs`).

/// Independent chains per invocation of `ceiling_fma.wgsl` (its `CHAINS`).
pub const FMA_CHAINS: usize = 16;

/// What `shaders/ceiling_fma.wgsl` stores for invocation `i`: the sum of its
/// [`FMA_CHAINS`] chains, each started at `(i + c) mod 64` and stepped
/// `iters` times by `x ← fma(x, mul, add)`.
pub fn fma_chains(invocations: usize, iters: u32, mul: f32, add: f32) -> Vec<f32> {
    (0..invocations)
        .map(|i| {
            let mut x = [0f32; FMA_CHAINS];
            for (c, v) in x.iter_mut().enumerate() {
                *v = ((i as u32).wrapping_add(c as u32) % 64) as f32;
            }
            for _ in 0..iters {
                for v in x.iter_mut() {
                    *v = v.mul_add(mul, add);
                }
            }
            let mut sum = 0.0f32;
            for v in x {
                sum += v;
            }
            sum
        })
        .collect()
}

/// What `shaders/ceiling_fma_f16.wgsl` stores: the same chains in f16,
/// each widened to f32 and summed in chain order. Computed here in f32,
/// which is the f16 result wherever every value is exact in f16: with
/// `mul = 0.5`, an integer `add` ≤ 8 and `iters` ≤ [`F16_EXACT_ITERS`], a
/// chain holds an integer below 64 plus at most 5 halvings' fraction, 11
/// significant bits, f16's precision.
pub fn fma_chains_f16(invocations: usize, iters: u32, mul: f32, add: f32) -> Vec<f32> {
    fma_chains(invocations, iters, mul, add)
}

/// Steps below which the f16 chains are exact (see [`fma_chains_f16`]).
pub const F16_EXACT_ITERS: u32 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twin_chains_converge_exactly() {
        // x ← x/2 + 2 from small integers: exact at every step, tending to 4.
        let out = fma_chains(3, 200, 0.5, 2.0);
        assert_eq!(out, vec![4.0 * FMA_CHAINS as f32; 3]);
        let once = fma_chains(2, 1, 0.5, 1.0);
        // Invocation 1: chains start at 1..=16; each becomes x/2 + 1.
        let expected: f32 = (1..=16).map(|x| x as f32 / 2.0 + 1.0).sum();
        assert_eq!(once[1], expected);
    }
}
