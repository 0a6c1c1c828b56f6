//! NetVLAD pooling on the CPU: per image, `r = Aᵀ·X − (Σ_l A_l)·C`, where
//! `A (L × K)` holds the soft-assignment weights of the image's `L` rows
//! `X (L × F)` ([`super::soft_assign`]).
//!
//! An image is processed in fixed blocks of [`BLOCK_ROWS`] rows, small
//! enough that the block read by the logits GEMM is still in L2 when the
//! aggregation GEMM (`Aᵀ·X`, `K × F`, single-threaded) reads it again. Each
//! block's `K × F` product is added into f64 sums in block order, the
//! centroids are subtracted in f64, and the result is rounded once to f32.
//! Images run in parallel, one per task, so neither the block split nor the
//! thread count can change a result (SPEC §5).

use std::cell::RefCell;

use ndarray::Array2;
use rayon::prelude::*;

use crate::assignment::SoftParams;
use crate::codebook::Codebook;
use crate::element::{DType, Element};
use crate::input::Batch;

/// Rows per block: 512 rows of F = 512 f32 are 1 MiB, half of L2.
pub const BLOCK_ROWS: usize = 512;

/// Per-thread buffers reused across blocks and images.
#[derive(Default)]
struct Scratch {
    converted: Vec<f32>,
    weights: Vec<f32>,
    product: Vec<f32>,
    sums: Vec<f64>,
    mass: Vec<f64>,
    subtract: Vec<f64>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// What the soft aggregation hands back.
pub struct SoftSums {
    /// `(T, K·F)` weighted residual sums, cluster-major.
    pub sums: Array2<f32>,
    /// `(T, K)` soft counts `Σ_l a_k(v_l)` (what `mass` divides by).
    pub mass: Array2<f32>,
    /// Per descriptor, the centroid of largest weight (lowest on ties).
    pub labels: Vec<u32>,
}

/// NetVLAD pooling of every image of `batch` with `params`; with
/// `residual_norm`, each residual counts with unit length (`rn`).
///
/// # Panics
///
/// If the batch's width or the parameters' shape differ from the codebook's
/// (the encoder checks both).
pub fn aggregate<E: Element>(
    codebook: &Codebook,
    params: &SoftParams,
    batch: &Batch<'_, E>,
    residual_norm: bool,
) -> SoftSums {
    let (t, k, f) = (batch.images(), codebook.clusters(), codebook.dim());
    assert_eq!(batch.dim(), f, "descriptor width must match the codebook's");
    assert_eq!(params.weights().dim(), (k, f), "W must be (K, F)");
    let mut sums = Array2::<f32>::zeros((t, k * f));
    let mut mass = Array2::<f32>::zeros((t, k));
    let mut labels = vec![0u32; batch.len()];
    // One mutable label slice per image.
    let mut per_image: Vec<&mut [u32]> = Vec::with_capacity(t);
    let mut rest = labels.as_mut_slice();
    for image in 0..t {
        let (head, tail) = rest.split_at_mut(batch.image_range(image).len());
        per_image.push(head);
        rest = tail;
    }
    let (Some(sums_flat), Some(mass_flat)) = (sums.as_slice_mut(), mass.as_slice_mut()) else {
        unreachable!("fresh arrays are contiguous");
    };
    if !sums_flat.is_empty() {
        sums_flat
            .par_chunks_mut(k * f)
            .zip(mass_flat.par_chunks_mut(k))
            .zip(per_image.into_par_iter())
            .enumerate()
            .for_each(|(image, ((out, mass), labels))| {
                let range = batch.image_range(image);
                let rows = &batch.rows()[range.start * f..range.end * f];
                image_sums(codebook, params, rows, residual_norm, out, mass, labels);
            });
    }
    SoftSums { sums, mass, labels }
}

/// One image: `out` (`K·F`) and `mass` (`K`) are zero on entry and stay so
/// for an image without rows.
fn image_sums<E: Element>(
    codebook: &Codebook,
    params: &SoftParams,
    rows: &[E],
    residual_norm: bool,
    out: &mut [f32],
    mass: &mut [f32],
    labels: &mut [u32],
) {
    let (k, f) = (codebook.clusters(), codebook.dim());
    if rows.is_empty() {
        return;
    }
    SCRATCH.with(|scratch| {
        let scratch = &mut *scratch.borrow_mut();
        scratch.sums.clear();
        scratch.sums.resize(k * f, 0.0);
        scratch.mass.clear();
        scratch.mass.resize(k, 0.0);
        scratch.subtract.clear();
        scratch.subtract.resize(k, 0.0);
        scratch.product.resize(k * f, 0.0);
        for (block, labels) in rows
            .chunks(BLOCK_ROWS * f)
            .zip(labels.chunks_mut(BLOCK_ROWS))
        {
            let m = labels.len();
            let x: &[f32] = match as_f32(block) {
                Some(x) => x,
                None => {
                    scratch.converted.clear();
                    scratch.converted.extend(block.iter().map(|v| v.to_f32()));
                    &scratch.converted
                }
            };
            scratch.weights.resize(m * k, 0.0);
            super::soft_assign::soft_weights(params, x, &mut scratch.weights);
            for (label, a) in labels.iter_mut().zip(scratch.weights.chunks_exact(k)) {
                *label = strongest(a);
                for (s, &w) in scratch.mass.iter_mut().zip(a) {
                    *s += w as f64;
                }
            }
            if residual_norm {
                super::residual_norm::scale_by_inverse_norms(codebook, x, &mut scratch.weights);
            }
            for a in scratch.weights.chunks_exact(k) {
                for (s, &w) in scratch.subtract.iter_mut().zip(a) {
                    *s += w as f64;
                }
            }
            weighted_rows(&scratch.weights, x, m, k, f, &mut scratch.product);
            for (s, &p) in scratch.sums.iter_mut().zip(&scratch.product) {
                *s += p as f64;
            }
        }
        let centroids = codebook.as_slice();
        let blocks = out.chunks_exact_mut(f).zip(centroids.chunks_exact(f));
        for (c, (out, centroid)) in blocks.enumerate() {
            let (s, n) = (scratch.subtract[c], scratch.mass[c]);
            let sums = &scratch.sums[c * f..(c + 1) * f];
            for ((o, &sum), &y) in out.iter_mut().zip(sums).zip(centroid) {
                *o = (sum - s * y as f64) as f32 + 0.0;
            }
            mass[c] = n as f32;
        }
    });
}

/// `product (K × F) ← Aᵀ·X` for `A (m × K)` and `X (m × F)`, row-major.
pub fn weighted_rows(a: &[f32], x: &[f32], m: usize, k: usize, f: usize, product: &mut [f32]) {
    assert_eq!(a.len(), m * k, "A must be m × K");
    assert_eq!(x.len(), m * f, "X must be m × F");
    assert_eq!(product.len(), k * f, "the product must be K × F");
    // SAFETY: dst is k×f row-major (column stride 1, row stride f); lhs is
    // Aᵀ, k×m, element (i, l) = a[l·k + i] (column stride k, row stride 1);
    // rhs is X, m×f row-major (column stride 1, row stride f). Each slice
    // holds exactly the elements these strides reach (lengths checked).
    unsafe {
        gemm::gemm(
            k,
            f,
            m,
            product.as_mut_ptr(),
            1,
            f as isize,
            false,
            a.as_ptr(),
            k as isize,
            1,
            x.as_ptr(),
            1,
            f as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The index of the largest weight, lowest on ties.
fn strongest(a: &[f32]) -> u32 {
    let mut best = 0;
    for (c, &w) in a.iter().enumerate() {
        if w > a[best] {
            best = c;
        }
    }
    best as u32
}

/// The rows as f32 without a copy when they already are.
fn as_f32<E: Element>(rows: &[E]) -> Option<&[f32]> {
    if E::DTYPE == DType::F32 {
        bytemuck::try_cast_slice(rows).ok()
    } else {
        None
    }
}
