//! The CPU's own ceilings, measured by `vlad bench` before it times the
//! stages (the GPU ceiling kernel's twin is [`crate::twins::ceiling_fma`]):
//!
//! * FMA throughput: every rayon thread runs independent `x ← x·m + a`
//!   chains in vector registers (fused multiply-add where the CPU has it);
//! * memory bandwidth: a parallel copy between two buffers already touched,
//!   far larger than the caches.
//!
//! Each is calibrated (doubled until it runs long enough to time) and the
//! best of a few runs is kept: a ceiling is what the machine can do, not
//! what it did once while shared.

use std::time::Instant;

use rayon::prelude::*;

/// Lanes of independent chains one thread keeps in registers.
const LANES: usize = 64;

/// `iters` steps of [`LANES`] chains; returns their sum (kept, so the work
/// is not optimized away).
fn chains_portable(iters: u64, mul: f32, add: f32) -> f32 {
    let mut x = [0f32; LANES];
    for (i, v) in x.iter_mut().enumerate() {
        *v = i as f32;
    }
    for _ in 0..iters {
        for v in x.iter_mut() {
            *v = *v * mul + add;
        }
    }
    x.iter().sum()
}

/// The same with fused multiply-add in 256-bit vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn chains_fma(iters: u64, mul: f32, add: f32) -> f32 {
    let mut x = [0f32; LANES];
    for (i, v) in x.iter_mut().enumerate() {
        *v = i as f32;
    }
    for _ in 0..iters {
        for v in x.iter_mut() {
            *v = v.mul_add(mul, add);
        }
    }
    x.iter().sum()
}

fn chains(iters: u64, mul: f32, add: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { chains_fma(iters, mul, add) };
    }
    chains_portable(iters, mul, add)
}

/// Run `f(size)` with `size` doubling from `start` until one run takes at
/// least `min_seconds` (or `size` reaches `max`), then `runs − 1` more at
/// that size; returns the size and the fastest time.
pub fn calibrate(
    start: u64,
    max: u64,
    min_seconds: f64,
    runs: usize,
    mut f: impl FnMut(u64) -> f64,
) -> (u64, f64) {
    let mut size = start.max(1);
    let mut best = f(size);
    while best < min_seconds && size < max {
        size = (size * 2).min(max);
        best = f(size);
    }
    for _ in 1..runs {
        best = best.min(f(size));
    }
    (size, best)
}

/// FMA throughput of all rayon threads together, in GFLOP/s (2 FLOPs per
/// multiply-add).
pub fn fma_gflops() -> f64 {
    let threads = rayon::current_num_threads().max(1);
    let (iters, seconds) = calibrate(1 << 12, 1 << 30, 0.02, 3, |iters| {
        let started = Instant::now();
        let sum: f32 = (0..threads)
            .into_par_iter()
            .map(|t| chains(iters, 0.5, t as f32))
            .sum();
        std::hint::black_box(sum);
        started.elapsed().as_secs_f64()
    });
    let flops = 2.0 * LANES as f64 * iters as f64 * threads as f64;
    flops / seconds.max(1e-9) / 1e9
}

/// Copy bandwidth between two touched buffers of `bytes` bytes each, all
/// rayon threads together, in GB/s (bytes read plus bytes written).
pub fn memory_gbps(bytes: usize) -> f64 {
    let len = (bytes / 4).max(1 << 16);
    let src: Vec<f32> = (0..len).into_par_iter().map(|i| i as f32).collect();
    let mut dst = vec![0f32; len];
    // Touch the destination first: page faults are not bandwidth.
    dst.par_chunks_mut(1 << 16).for_each(|c| c.fill(1.0));
    let piece = len
        .div_ceil(rayon::current_num_threads().max(1) * 4)
        .max(1 << 12);
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let started = Instant::now();
        dst.par_chunks_mut(piece)
            .zip(src.par_chunks(piece))
            .for_each(|(d, s)| d.copy_from_slice(s));
        best = best.min(started.elapsed().as_secs_f64());
    }
    std::hint::black_box(&dst);
    2.0 * (len * 4) as f64 / best.max(1e-9) / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_are_positive_and_finite() {
        let g = fma_gflops();
        assert!(g.is_finite() && g > 0.0, "{g}");
        let m = memory_gbps(1 << 22);
        assert!(m.is_finite() && m > 0.0, "{m}");
    }

    #[test]
    fn calibration_doubles_until_long_enough() {
        let (size, t) = calibrate(1, 1 << 20, 8.0, 2, |s| s as f64);
        assert_eq!(size, 8);
        assert_eq!(t, 8.0);
        let (size, _) = calibrate(1, 4, 100.0, 1, |s| s as f64);
        assert_eq!(size, 4);
    }
}
