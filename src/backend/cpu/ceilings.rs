//! The CPU's own ceilings, measured by `vlad bench` before it times the
//! stages, the way vkpeak and clpeak measure a GPU's (the GPU ceiling
//! kernel's twin is [`crate::twins::ceiling_fma`]):
//!
//! * FMA throughput: every rayon thread runs [`ACCUMULATORS`] independent
//!   chains `x ← x·m + a` in the widest vector registers the CPU has
//!   (AVX-512, else AVX2 + FMA, chosen at run time), the loop unrolled so
//!   that nothing but the FMAs issues. A core needs latency × FMA ports
//!   independent vector FMAs in flight (Zen 4/5 and recent Intel: 4 cycles ×
//!   2 ports = 8); 12 leave a margin. An FMA loop whose chains are fewer, or
//!   narrower (the AVX2 path on an AVX-512 CPU), measures less than the
//!   GEMM in the assign stage does, and a ceiling a stage beats is wrong.
//! * memory bandwidth: the faster of a parallel read (a vector sum) and a
//!   parallel copy between two touched buffers, over a working set of the
//!   size the stages touch, so the ceiling is that of the cache level or
//!   the DRAM the stages actually run from.
//!
//! Each is calibrated (doubled until one run lasts long enough to time) and
//! the best of several runs is kept: a ceiling is what the machine can do,
//! not what it did once while shared with other work. The FMA rate is
//! timed by each thread's CPU time (see [`fma_gflops_on`]), so it holds
//! still on a loaded machine.

use std::time::Instant;

use rayon::prelude::*;

/// Independent vector accumulators per thread.
pub const ACCUMULATORS: usize = 12;
/// How long one calibrated FMA run must at least take: long enough that a
/// scheduler tick or a rayon wake-up is noise.
const FMA_MIN_SECONDS: f64 = 0.05;
/// Timed FMA runs at the calibrated size; the best is kept.
const FMA_RUNS: usize = 5;
/// Chains of the portable fallback per thread (scalar f32 lanes).
const PORTABLE_LANES: usize = 64;

/// `iters` steps of [`PORTABLE_LANES`] scalar chains; returns their sum
/// (kept, so the work is not optimized away).
fn chains_portable(iters: u64, mul: f32, add: f32) -> (f32, u64) {
    let mut x = [0f32; PORTABLE_LANES];
    for (i, v) in x.iter_mut().enumerate() {
        *v = i as f32;
    }
    for _ in 0..iters {
        for v in x.iter_mut() {
            *v = v.mul_add(mul, add);
        }
    }
    (x.iter().sum(), PORTABLE_LANES as u64)
}

/// [`ACCUMULATORS`] chains of 16 f32 lanes (zmm registers), 4 steps per
/// loop trip; returns their sum and the lanes stepped per iteration.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn chains_avx512(iters: u64, mul: f32, add: f32) -> (f32, u64) {
    use std::arch::x86_64::*;
    let m = _mm512_set1_ps(mul);
    let a = _mm512_set1_ps(add);
    let mut x = [_mm512_setzero_ps(); ACCUMULATORS];
    for (i, v) in x.iter_mut().enumerate() {
        *v = _mm512_set1_ps(i as f32);
    }
    let step = |x: &mut [__m512; ACCUMULATORS]| {
        for v in x.iter_mut() {
            *v = _mm512_fmadd_ps(*v, m, a);
        }
    };
    // Four steps of every chain per trip: 4·ACCUMULATORS FMAs, the array
    // held in registers (fixed size, fully unrolled).
    for _ in 0..iters / 4 {
        step(&mut x);
        step(&mut x);
        step(&mut x);
        step(&mut x);
    }
    for _ in 0..iters % 4 {
        step(&mut x);
    }
    let mut sum = _mm512_setzero_ps();
    for v in x {
        sum = _mm512_add_ps(sum, v);
    }
    (_mm512_reduce_add_ps(sum), 16 * ACCUMULATORS as u64)
}

/// The same in 256-bit registers with FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn chains_avx2(iters: u64, mul: f32, add: f32) -> (f32, u64) {
    use std::arch::x86_64::*;
    let m = _mm256_set1_ps(mul);
    let a = _mm256_set1_ps(add);
    let mut x = [_mm256_setzero_ps(); ACCUMULATORS];
    for (i, v) in x.iter_mut().enumerate() {
        *v = _mm256_set1_ps(i as f32);
    }
    let step = |x: &mut [__m256; ACCUMULATORS]| {
        for v in x.iter_mut() {
            *v = _mm256_fmadd_ps(*v, m, a);
        }
    };
    for _ in 0..iters / 4 {
        step(&mut x);
        step(&mut x);
        step(&mut x);
        step(&mut x);
    }
    for _ in 0..iters % 4 {
        step(&mut x);
    }
    let mut lanes = [0f32; 8];
    let mut sum = _mm256_setzero_ps();
    for v in x {
        sum = _mm256_add_ps(sum, v);
    }
    // SAFETY: `lanes` holds exactly 8 f32; storeu has no alignment need.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
    (lanes.iter().sum(), 8 * ACCUMULATORS as u64)
}

/// Which FMA loop this CPU runs, widest first.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FmaPath {
    /// 16-lane AVX-512 FMA.
    Avx512,
    /// 8-lane AVX2 FMA.
    Avx2,
    /// Scalar `mul_add` the compiler vectorizes as it can.
    Portable,
}

impl FmaPath {
    /// The widest path this CPU has.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return FmaPath::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return FmaPath::Avx2;
            }
        }
        FmaPath::Portable
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            FmaPath::Avx512 => "avx512",
            FmaPath::Avx2 => "avx2",
            FmaPath::Portable => "portable",
        }
    }

    /// `iters` steps of this path's chains: their sum and the f32 lanes
    /// stepped per iteration (each a 2-FLOP FMA).
    fn chains(self, iters: u64, mul: f32, add: f32) -> (f32, u64) {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `detect` found AVX-512F on this CPU.
            FmaPath::Avx512 => unsafe { chains_avx512(iters, mul, add) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `detect` found AVX2 and FMA on this CPU.
            FmaPath::Avx2 => unsafe { chains_avx2(iters, mul, add) },
            _ => chains_portable(iters, mul, add),
        }
    }
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

/// FMA throughput of all rayon threads together on `path`, in GFLOP/s (2
/// FLOPs per multiply-add).
///
/// Each thread times its own chains by the CPU time it was given (where the
/// OS has a per-thread clock: Linux), and the threads' rates are summed:
/// on a machine shared with other work a thread descheduled half the time
/// still measures what a core does, so the ceiling does not move with the
/// load (wall clock, it read 112–187 GFLOP/s on one loaded machine). On an
/// idle machine the two agree. Elsewhere the wall clock of the whole run.
pub fn fma_gflops_on(path: FmaPath) -> f64 {
    let threads = rayon::current_num_threads().max(1);
    let mut best = 0.0f64;
    calibrate(1 << 12, 1 << 32, FMA_MIN_SECONDS, FMA_RUNS, |iters| {
        let started = Instant::now();
        let per_thread: Vec<(f32, f64)> = (0..threads)
            .into_par_iter()
            .map(|t| {
                let cpu = thread_cpu_seconds();
                let (sum, lanes) = path.chains(iters, 0.5, t as f32);
                let flops = 2.0 * lanes as f64 * iters as f64;
                let rate = match (cpu, thread_cpu_seconds()) {
                    (Some(a), Some(b)) if b > a => flops / (b - a),
                    _ => 0.0,
                };
                (sum, rate)
            })
            .collect();
        let wall = started.elapsed().as_secs_f64();
        std::hint::black_box(per_thread.iter().map(|p| p.0).sum::<f32>());
        let lanes = path.chains(0, 0.5, 0.0).1;
        let wall_rate = 2.0 * lanes as f64 * iters as f64 * threads as f64 / wall.max(1e-9);
        let rate = if per_thread.iter().all(|p| p.1 > 0.0) {
            per_thread.iter().map(|p| p.1).sum()
        } else {
            wall_rate
        };
        best = best.max(rate);
        wall
    });
    best / 1e9
}

/// CPU seconds this thread has run, where the OS has a per-thread clock.
fn thread_cpu_seconds() -> Option<f64> {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the call.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        (rc == 0).then_some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// FMA throughput of all rayon threads together on the widest path this
/// CPU has, in GFLOP/s.
pub fn fma_gflops() -> f64 {
    fma_gflops_on(FmaPath::detect())
}

/// Memory bandwidth over a working set of `bytes` bytes, all rayon threads
/// together, in GB/s: the faster of a read (bytes read) and a copy between
/// two touched buffers of `bytes / 2` each (bytes read plus bytes written).
pub fn memory_gbps(bytes: usize) -> f64 {
    let len = (bytes / 8).max(1 << 12);
    let src: Vec<f32> = (0..2 * len).into_par_iter().map(|i| i as f32).collect();
    let mut dst = vec![0f32; len];
    // Touch the destination first: page faults are not bandwidth.
    dst.par_chunks_mut(1 << 16).for_each(|c| c.fill(1.0));
    let piece = len
        .div_ceil(rayon::current_num_threads().max(1) * 4)
        .max(1 << 10);
    let (copies, copy_seconds) = calibrate(1, 1 << 16, 0.02, 7, |reps| {
        let started = Instant::now();
        for _ in 0..reps {
            dst.par_chunks_mut(piece)
                .zip(src[..len].par_chunks(piece))
                .for_each(|(d, s)| d.copy_from_slice(s));
        }
        started.elapsed().as_secs_f64()
    });
    std::hint::black_box(&dst);
    let (reads, read_seconds) = calibrate(1, 1 << 16, 0.02, 7, |reps| {
        let started = Instant::now();
        for _ in 0..reps {
            let s: f32 = src.par_chunks(2 * piece).map(sum_lanes).sum();
            std::hint::black_box(s);
        }
        started.elapsed().as_secs_f64()
    });
    let copy = 2.0 * (len * 4) as f64 * copies as f64 / copy_seconds.max(1e-9);
    let read = (2 * len * 4) as f64 * reads as f64 / read_seconds.max(1e-9);
    copy.max(read) / 1e9
}

/// The sum of `xs` in 16 independent lanes (vectorized, never
/// latency-bound), so a read is timed, not an add chain.
fn sum_lanes(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut chunks = xs.chunks_exact(16);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
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
    fn every_path_steps_its_chains_exactly() {
        // x ← x/2 + add from small integers is exact at every step and tends
        // to 2·add; after 64 steps each chain is 2·add to f32 precision, so
        // the sum is (chains · lanes) · 2·add, whatever the path.
        let path = FmaPath::detect();
        for p in [path, FmaPath::Portable] {
            let (sum, lanes) = p.chains(64, 0.5, 1.0);
            assert!(lanes >= 16, "{p:?}: {lanes} lanes");
            let chains = match p {
                FmaPath::Avx512 => 16 * ACCUMULATORS,
                FmaPath::Avx2 => 8 * ACCUMULATORS,
                FmaPath::Portable => PORTABLE_LANES,
            };
            assert_eq!(sum, 2.0 * chains as f32, "{p:?}");
            assert_eq!(lanes as usize, chains, "{p:?}");
        }
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
