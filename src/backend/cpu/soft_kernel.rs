//! AVX-512 register kernels for NetVLAD pooling's two products, written for
//! its shapes (few centroids `K`, many rows) and its data layouts, so that
//! neither product packs or copies anything:
//!
//! * [`SoftKernel::logits`]: `Z (m × K) ← X·Wᵀ + b`. A tile of 6 rows × 64
//!   centroids lives in 24 registers; each step loads 64 values of `Wᵀ`
//!   (packed once, `F × K`) and broadcasts one value of each of the 6 rows
//!   straight from `X`. The depth is cut into chunks of [`DEPTH_CHUNK`] so
//!   the `Wᵀ` chunk stays in L1 while every row tile of a block passes.
//! * [`SoftKernel::accumulate`]: `R (K × F) += Aᵀ·X`. A tile of 6 centroids
//!   × 64 columns lives in 24 registers; each step loads 64 values of one
//!   row of `X` (contiguous) and broadcasts 6 weights of that row from `A`
//!   (contiguous). Neither `Aᵀ` nor `X` is ever transposed or packed.
//!
//! Every output is a single fused-multiply-add chain in a fixed order
//! (depth ascending), so results depend on the data alone — not on the
//! block, the thread or the run (SPEC §5). The callers bound the depth of
//! the f32 chains (rows per block) and add blocks in f64.
//!
//! Only built for x86-64 with AVX-512F at run time ([`SoftKernel::new`]
//! returns `None` elsewhere, and the callers use the `gemm` crate).

/// Depth (feature) values per pass of the logits kernel: a chunk of `Wᵀ`
/// for 64 centroids is `128 × 64 × 4` B = 32 KiB, in L1.
pub const DEPTH_CHUNK: usize = 128;

/// `Wᵀ` and `b` laid out for the kernels; built once per encoding.
pub struct SoftKernel {
    k: usize,
    f: usize,
    /// Row stride of `wt`: `K` rounded up to 16 (zero padding).
    kp: usize,
    /// `Wᵀ`, `F × kp`, row-major.
    wt: Vec<f32>,
    /// `b`, `kp` long (zero padding).
    bias: Vec<f32>,
}

impl SoftKernel {
    /// The kernels for `W (K × F)` row-major and `b (K)`, or `None` when
    /// the CPU lacks AVX-512F (or is not x86-64).
    ///
    /// # Panics
    ///
    /// If `weights` is not `K·F` long for `K = bias.len()`.
    pub fn new(weights: &[f32], bias: &[f32], f: usize) -> Option<SoftKernel> {
        if !available() {
            return None;
        }
        let k = bias.len();
        assert_eq!(weights.len(), k * f, "W must be K × F");
        let kp = k.div_ceil(16) * 16;
        let mut wt = vec![0f32; f * kp];
        for (c, row) in weights.chunks_exact(f.max(1)).enumerate() {
            for (d, &w) in row.iter().enumerate() {
                wt[d * kp + c] = w;
            }
        }
        let mut padded = vec![0f32; kp];
        padded[..k].copy_from_slice(bias);
        Some(SoftKernel {
            k,
            f,
            kp,
            wt,
            bias: padded,
        })
    }

    /// `z (m × K, row-major) ← X·Wᵀ + b` for the `m` row-major rows of
    /// width `F` in `x`.
    ///
    /// # Panics
    ///
    /// If `x` does not hold whole rows or `z` is not `m·K` long.
    pub fn logits(&self, x: &[f32], z: &mut [f32]) {
        assert_eq!(x.len() % self.f.max(1), 0, "x must hold whole rows");
        let m = x.len() / self.f.max(1);
        assert_eq!(z.len(), m * self.k, "z must be m × K");
        if m == 0 || self.k == 0 {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `new` returned this kernel only where AVX-512F runs; the
        // lengths were checked above.
        unsafe {
            x86::logits(self, x, m, z)
        }
    }

    /// `r (K × F, row-major) += Aᵀ·X` for `a (m × K)` and `x (m × F)`,
    /// row-major. Each output adds its `m` products in row order onto its
    /// value in `r`.
    ///
    /// # Panics
    ///
    /// If the lengths disagree with `K`, `F` and `m = a.len() / K`.
    pub fn accumulate(&self, a: &[f32], x: &[f32], r: &mut [f32]) {
        let m = a.len() / self.k.max(1);
        assert_eq!(a.len(), m * self.k, "a must be m × K");
        assert_eq!(x.len(), m * self.f, "x must be m × F");
        assert_eq!(r.len(), self.k * self.f, "r must be K × F");
        if m == 0 || r.is_empty() {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `logits`.
        unsafe {
            x86::accumulate(self.k, self.f, a, x, m, r)
        }
    }
}

/// Whether this CPU runs the kernels.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

// AVX-512 intrinsics are stable since Rust 1.89 (see Cargo.toml's
// rust-version note).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{DEPTH_CHUNK, SoftKernel};

    /// Rows (logits) or centroids (accumulate) per register tile.
    const TILE: usize = 6;

    /// The masks of the `nj` 16-lane vectors covering `n ≤ 64` values.
    fn masks(n: usize) -> [__mmask16; 4] {
        let mut out = [0; 4];
        for (j, m) in out.iter_mut().enumerate() {
            let lanes = n.saturating_sub(16 * j).min(16);
            *m = ((1u32 << lanes) - 1) as __mmask16;
        }
        out
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn logits(p: &SoftKernel, x: &[f32], m: usize, z: &mut [f32]) {
        let (k, f) = (p.k, p.f);
        for kt in (0..k).step_by(64) {
            let nk = (k - kt).min(64);
            let mask = masks(nk);
            for dc in (0..f).step_by(DEPTH_CHUNK) {
                let depth = (f - dc).min(DEPTH_CHUNK);
                let args = LogitsArgs {
                    wt: unsafe { p.wt.as_ptr().add(dc * p.kp + kt) },
                    kp: p.kp,
                    bias: (dc == 0).then(|| unsafe { p.bias.as_ptr().add(kt) }),
                    f,
                    k,
                    depth,
                    mask,
                };
                let mut l = 0;
                while l < m {
                    let rows = (m - l).min(TILE);
                    let xs = unsafe { x.as_ptr().add(l * f + dc) };
                    let zs = unsafe { z.as_mut_ptr().add(l * k + kt) };
                    unsafe {
                        match (rows, nk.div_ceil(16)) {
                            (6, 4) => logits_tile::<6, 4>(&args, xs, zs),
                            (6, 3) => logits_tile::<6, 3>(&args, xs, zs),
                            (6, 2) => logits_tile::<6, 2>(&args, xs, zs),
                            (6, _) => logits_tile::<6, 1>(&args, xs, zs),
                            (5, 4) => logits_tile::<5, 4>(&args, xs, zs),
                            (4, 4) => logits_tile::<4, 4>(&args, xs, zs),
                            (3, 4) => logits_tile::<3, 4>(&args, xs, zs),
                            (2, 4) => logits_tile::<2, 4>(&args, xs, zs),
                            (1, 4) => logits_tile::<1, 4>(&args, xs, zs),
                            (r, j) => logits_tile_any(&args, xs, zs, r, j),
                        }
                    }
                    l += rows;
                }
            }
        }
    }

    struct LogitsArgs {
        /// `Wᵀ` at depth `dc`, centroid `kt`.
        wt: *const f32,
        kp: usize,
        /// `b` at centroid `kt` on the first depth chunk, else `None` (the
        /// partial sums are read back from `z`).
        bias: Option<*const f32>,
        f: usize,
        k: usize,
        depth: usize,
        mask: [__mmask16; 4],
    }

    #[inline(always)]
    unsafe fn logits_tile<const NR: usize, const NJ: usize>(
        a: &LogitsArgs,
        x: *const f32,
        z: *mut f32,
    ) {
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); NJ]; NR];
            for (r, acc) in acc.iter_mut().enumerate() {
                for (j, acc) in acc.iter_mut().enumerate() {
                    let from = match a.bias {
                        Some(b) => b.add(16 * j),
                        None => z.add(r * a.k + 16 * j),
                    };
                    *acc = _mm512_maskz_loadu_ps(a.mask[j], from);
                }
            }
            for d in 0..a.depth {
                let w_row = a.wt.add(d * a.kp);
                let mut w = [_mm512_setzero_ps(); NJ];
                for (j, w) in w.iter_mut().enumerate() {
                    *w = _mm512_loadu_ps(w_row.add(16 * j));
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let v = _mm512_set1_ps(*x.add(r * a.f + d));
                    for (acc, &w) in acc.iter_mut().zip(&w) {
                        *acc = _mm512_fmadd_ps(w, v, *acc);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                for (j, &acc) in acc.iter().enumerate() {
                    _mm512_mask_storeu_ps(z.add(r * a.k + 16 * j), a.mask[j], acc);
                }
            }
        }
    }

    /// The rare shapes (fewer than 64 centroids left and a row tail) one
    /// row and one vector at a time, in the same order as the tiles.
    #[inline(always)]
    unsafe fn logits_tile_any(a: &LogitsArgs, x: *const f32, z: *mut f32, rows: usize, nj: usize) {
        unsafe {
            for r in 0..rows {
                for j in 0..nj {
                    let from = match a.bias {
                        Some(b) => b.add(16 * j),
                        None => z.add(r * a.k + 16 * j),
                    };
                    let mut acc = _mm512_maskz_loadu_ps(a.mask[j], from);
                    for d in 0..a.depth {
                        let w = _mm512_loadu_ps(a.wt.add(d * a.kp + 16 * j));
                        let v = _mm512_set1_ps(*x.add(r * a.f + d));
                        acc = _mm512_fmadd_ps(w, v, acc);
                    }
                    _mm512_mask_storeu_ps(z.add(r * a.k + 16 * j), a.mask[j], acc);
                }
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn accumulate(
        k: usize,
        f: usize,
        a: &[f32],
        x: &[f32],
        m: usize,
        r: &mut [f32],
    ) {
        for dt in (0..f).step_by(64) {
            let nd = (f - dt).min(64);
            let mask = masks(nd);
            let nj = nd.div_ceil(16);
            let mut c = 0;
            while c < k {
                let nc = (k - c).min(TILE);
                let args = AccArgs {
                    a: unsafe { a.as_ptr().add(c) },
                    k,
                    x: unsafe { x.as_ptr().add(dt) },
                    f,
                    m,
                    r: unsafe { r.as_mut_ptr().add(c * f + dt) },
                    mask,
                };
                unsafe {
                    match (nc, nj) {
                        (6, 4) => acc_tile::<6, 4>(&args),
                        (6, 3) => acc_tile::<6, 3>(&args),
                        (6, 2) => acc_tile::<6, 2>(&args),
                        (6, 1) => acc_tile::<6, 1>(&args),
                        (5, 4) => acc_tile::<5, 4>(&args),
                        (4, 4) => acc_tile::<4, 4>(&args),
                        (3, 4) => acc_tile::<3, 4>(&args),
                        (2, 4) => acc_tile::<2, 4>(&args),
                        (1, 4) => acc_tile::<1, 4>(&args),
                        (nc, nj) => acc_tile_any(&args, nc, nj),
                    }
                }
                c += nc;
            }
        }
    }

    struct AccArgs {
        /// `A` at centroid `c` (row stride `k`).
        a: *const f32,
        k: usize,
        /// `X` at column `dt` (row stride `f`).
        x: *const f32,
        f: usize,
        m: usize,
        /// `R` at row `c`, column `dt` (row stride `f`).
        r: *mut f32,
        mask: [__mmask16; 4],
    }

    #[inline(always)]
    unsafe fn acc_tile<const NC: usize, const NJ: usize>(p: &AccArgs) {
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); NJ]; NC];
            for (c, acc) in acc.iter_mut().enumerate() {
                for (j, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_maskz_loadu_ps(p.mask[j], p.r.add(c * p.f + 16 * j));
                }
            }
            for l in 0..p.m {
                let x_row = p.x.add(l * p.f);
                let mut v = [_mm512_setzero_ps(); NJ];
                for (j, v) in v.iter_mut().enumerate() {
                    *v = _mm512_maskz_loadu_ps(p.mask[j], x_row.add(16 * j));
                }
                let a_row = p.a.add(l * p.k);
                for (c, acc) in acc.iter_mut().enumerate() {
                    let w = _mm512_set1_ps(*a_row.add(c));
                    for (acc, &v) in acc.iter_mut().zip(&v) {
                        *acc = _mm512_fmadd_ps(v, w, *acc);
                    }
                }
            }
            for (c, acc) in acc.iter().enumerate() {
                for (j, &acc) in acc.iter().enumerate() {
                    _mm512_mask_storeu_ps(p.r.add(c * p.f + 16 * j), p.mask[j], acc);
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn acc_tile_any(p: &AccArgs, nc: usize, nj: usize) {
        unsafe {
            for c in 0..nc {
                for j in 0..nj {
                    let out = p.r.add(c * p.f + 16 * j);
                    let mut acc = _mm512_maskz_loadu_ps(p.mask[j], out);
                    for l in 0..p.m {
                        let v = _mm512_maskz_loadu_ps(p.mask[j], p.x.add(l * p.f + 16 * j));
                        let w = _mm512_set1_ps(*p.a.add(l * p.k + c));
                        acc = _mm512_fmadd_ps(v, w, acc);
                    }
                    _mm512_mask_storeu_ps(out, p.mask[j], acc);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0)
            .collect()
    }

    /// Every tail: centroids and columns not multiples of 16 or 64, rows
    /// not multiples of the tile, depth beyond one chunk.
    const SHAPES: [(usize, usize, usize); 9] = [
        (1, 1, 1),
        (5, 3, 17),
        (6, 16, 64),
        (7, 24, 40),
        (13, 64, 512),
        (64, 65, 130),
        (11, 70, 129),
        (3, 128, 7),
        (29, 200, 300),
    ];

    #[test]
    fn logits_match_f64() {
        if !available() {
            return;
        }
        for (m, k, f) in SHAPES {
            let (w, b, x) = (values(k * f, 1), values(k, 2), values(m * f, 3));
            let Some(kernel) = SoftKernel::new(&w, &b, f) else {
                unreachable!("available")
            };
            let mut z = vec![f32::NAN; m * k];
            kernel.logits(&x, &mut z);
            for l in 0..m {
                for c in 0..k {
                    let dot: f64 = (0..f)
                        .map(|d| x[l * f + d] as f64 * w[c * f + d] as f64)
                        .sum();
                    let want = dot + b[c] as f64;
                    let scale: f64 = (0..f)
                        .map(|d| (x[l * f + d] * w[c * f + d]).abs() as f64)
                        .sum::<f64>()
                        + b[c].abs() as f64;
                    let got = z[l * k + c] as f64;
                    assert!(
                        (got - want).abs() <= 1e-6 * scale.max(1.0) * (f as f64).sqrt(),
                        "({m}, {k}, {f}) row {l} centroid {c}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn accumulate_adds_the_product_in_row_order() {
        if !available() {
            return;
        }
        for (m, k, f) in SHAPES {
            let (w, b) = (values(k * f, 4), values(k, 5));
            let Some(kernel) = SoftKernel::new(&w, &b, f) else {
                unreachable!("available")
            };
            let (a, x) = (values(m * k, 6), values(m * f, 7));
            let start = values(k * f, 8);
            let mut r = start.clone();
            kernel.accumulate(&a, &x, &mut r);
            for c in 0..k {
                for d in 0..f {
                    // The same single chain of fused multiply-adds.
                    let mut want = start[c * f + d];
                    for l in 0..m {
                        want = x[l * f + d].mul_add(a[l * k + c], want);
                    }
                    assert_eq!(
                        r[c * f + d].to_bits(),
                        want.to_bits(),
                        "({m}, {k}, {f}) centroid {c} column {d}"
                    );
                }
            }
        }
    }

    #[test]
    fn logits_are_the_same_whatever_the_rows_around() {
        if !available() {
            return;
        }
        let (m, k, f) = (23, 70, 300);
        let (w, b, x) = (values(k * f, 9), values(k, 10), values(m * f, 11));
        let Some(kernel) = SoftKernel::new(&w, &b, f) else {
            unreachable!("available")
        };
        let mut all = vec![0f32; m * k];
        kernel.logits(&x, &mut all);
        for l in 0..m {
            let mut one = vec![0f32; k];
            kernel.logits(&x[l * f..(l + 1) * f], &mut one);
            assert_eq!(
                one.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                all[l * k..(l + 1) * k]
                    .iter()
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>(),
                "row {l}"
            );
        }
    }
}
