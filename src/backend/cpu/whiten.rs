//! The whitening stage on the CPU (SPEC §14): `y = P · (x − μ)` for every
//! row, `P = diag((λ + ε)^p) · Uᵀ` (`D′ × D`), then the post
//! normalization.
//!
//! A blocked product with its own small kernel rather than a GEMM crate
//! call, because a row's bits must not depend on which rows it is computed
//! with: a stream cuts its batches anywhere and must give the in-memory
//! bits (SPEC §11). Here every output is summed over `x`'s columns in the
//! same order whatever the batch — in `KB`-wide blocks, each summed from
//! zero in registers then added to the row's running sum — and rows only
//! share the loads of `P`, never arithmetic.

use rayon::prelude::*;

use crate::whitening::Whitening;

/// Columns of `x` summed in registers before they are added to the running
/// sums (SPEC §4's blocked summation); a `KB × D′` panel of `Pᵀ` stays in
/// L2 while the rows of a group pass over it.
const KB: usize = 256;
/// Outputs per kernel call: two AVX-512 or four AVX2 registers per row.
/// (The padded width of `Pᵀ` is a multiple of it: `TRANSPOSED_ALIGN` = 2·OB.)
const OB: usize = 32;
/// Rows that share each load of `Pᵀ`.
const RB: usize = 4;
/// Rows per parallel task.
const GROUP: usize = 64;

/// `Pᵀ` as the kernel reads it: `D × width` values, the outputs of one
/// input column contiguous (see [`Whitening::transposed`]).
struct Transposed<'a> {
    values: &'a [f32],
    width: usize,
}

/// Whiten `rows` (`T × D`, row-major) into `out` (`T × D′`).
pub(crate) fn whiten_rows(w: &Whitening, rows: &[f32], out: &mut [f32]) {
    let (values, width) = w.transposed();
    let pt = &Transposed { values, width };
    let dim = w.dims_in();
    let dout = w.dims_out();
    let mean = w
        .mean()
        .as_slice()
        .unwrap_or_else(|| unreachable!("owned, standard layout"));
    out.par_chunks_mut(GROUP * dout)
        .zip(rows.par_chunks(GROUP * dim))
        .for_each(|(out, x)| {
            let n = x.len() / dim;
            let mut sums = vec![0.0f32; n * pt.width];
            project_group(x, n, dim, mean, pt, &mut sums);
            for (o, s) in out.chunks_exact_mut(dout).zip(sums.chunks_exact(pt.width)) {
                o.copy_from_slice(&s[..dout]);
                w.post_normalize_row(o);
            }
        });
}

/// The product for one group of `n` rows into `sums` (`n × width`).
fn project_group(x: &[f32], n: usize, dim: usize, mean: &[f32], pt: &Transposed, sums: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (which implies FMA), checked above.
            return unsafe { project_group_avx512(x, n, dim, mean, pt, sums) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA, checked above.
            return unsafe { project_group_fma(x, n, dim, mean, pt, sums) };
        }
    }
    project_group_generic::<false>(x, n, dim, mean, pt, sums);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn project_group_avx512(
    x: &[f32],
    n: usize,
    dim: usize,
    mean: &[f32],
    pt: &Transposed,
    sums: &mut [f32],
) {
    project_group_generic::<true>(x, n, dim, mean, pt, sums);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn project_group_fma(
    x: &[f32],
    n: usize,
    dim: usize,
    mean: &[f32],
    pt: &Transposed,
    sums: &mut [f32],
) {
    project_group_generic::<true>(x, n, dim, mean, pt, sums);
}

/// The blocked loops; `FUSED` says whether `a·b + c` is one rounding (an
/// FMA, where the CPU has one) or two. Inlined into each target-feature
/// twin above, so the compiler vectorizes it for that instruction set.
#[inline(always)]
fn project_group_generic<const FUSED: bool>(
    x: &[f32],
    n: usize,
    dim: usize,
    mean: &[f32],
    pt: &Transposed,
    sums: &mut [f32],
) {
    let width = pt.width;
    for k0 in (0..dim).step_by(KB) {
        let k1 = (k0 + KB).min(dim);
        for i0 in (0..width).step_by(OB) {
            let mut r0 = 0;
            while r0 + RB <= n {
                kernel::<RB, FUSED>(x, r0, dim, mean, pt, k0..k1, i0, sums);
                r0 += RB;
            }
            while r0 < n {
                kernel::<1, FUSED>(x, r0, dim, mean, pt, k0..k1, i0, sums);
                r0 += 1;
            }
        }
    }
}

/// `R` rows × [`OB`] outputs over columns `ks`: summed from zero in
/// registers, then added to the rows' running sums. Each row's arithmetic
/// is the same whatever `R` is.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn kernel<const R: usize, const FUSED: bool>(
    x: &[f32],
    r0: usize,
    dim: usize,
    mean: &[f32],
    pt: &Transposed,
    ks: std::ops::Range<usize>,
    i0: usize,
    sums: &mut [f32],
) {
    let width = pt.width;
    let mut acc = [[0.0f32; OB]; R];
    for k in ks {
        let p: &[f32; OB] = pt.values[k * width + i0..k * width + i0 + OB]
            .try_into()
            .unwrap_or_else(|_| unreachable!("OB values"));
        for (r, acc) in acc.iter_mut().enumerate() {
            let xc = x[(r0 + r) * dim + k] - mean[k];
            for (a, pv) in acc.iter_mut().zip(p) {
                *a = if FUSED {
                    xc.mul_add(*pv, *a)
                } else {
                    xc * pv + *a
                };
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let s = &mut sums[(r0 + r) * width + i0..(r0 + r) * width + i0 + OB];
        for (s, a) in s.iter_mut().zip(acc) {
            *s += a;
        }
    }
}
