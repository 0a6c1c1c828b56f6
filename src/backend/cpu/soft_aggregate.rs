//! NetVLAD pooling on the CPU: per image, `r = Aᵀ·X − (Σ_l A_l)·C`, where
//! `A (L × K)` holds the soft-assignment weights of the image's `L` rows
//! `X (L × F)` ([`super::soft_assign`]).
//!
//! An image is processed in fixed blocks of [`BLOCK_ROWS`] rows. Where the
//! CPU has AVX-512, each block goes through in chunks of [`CHUNK_ROWS`]
//! rows with [`super::soft_kernel`]'s register kernels: logits, softmax,
//! labels and soft counts, then `Aᵀ·X` added into the block's f32 product,
//! all while the chunk is still in cache. Elsewhere the `gemm` crate runs
//! the two products once per block (small enough that the block read by
//! the logits GEMM is still in L2 when `Aᵀ·X` reads it again). Each block's
//! `K × F` product is added into f64 sums in block order, the centroids
//! are subtracted in f64, and the result is rounded once to f32. Images
//! run in parallel, one per task, so neither the thread count nor the run
//! can change a result (SPEC §5); every image's rows go through the same
//! fixed order of operations.

use std::cell::RefCell;

use ndarray::Array2;
use rayon::prelude::*;

use crate::model::assignment::SoftParams;
use crate::model::batch::Batch;
use crate::model::codebook::Codebook;
use crate::model::element::{DType, Element};

use super::soft_kernel::SoftKernel;

/// Rows per block: 512 rows of F = 512 f32 are 1 MiB, half of L2. Also the
/// longest f32 chain of products (then blocks are added in f64).
pub const BLOCK_ROWS: usize = 512;

/// Rows per chunk with the register kernels ([`SoftKernel`]): 64 rows'
/// weights (`64 × K`, 16 KiB at K = 64) stay in L1 and their values
/// (128 KiB at F = 512) in L2 between the logits, the softmax and `Aᵀ·X`.
pub const CHUNK_ROWS: usize = 64;

/// The weights go into `Aᵀ·X` times 2⁶⁴: the products and partial sums of
/// weights near f32's smallest normal (e⁻⁸⁷, where the softmax stops) are
/// then normal numbers, not subnormal ones that cost a microcode assist
/// per instruction on x86 (measured: `Aᵀ·X` ≈ 25 % slower on softmax
/// weights than on the same products of moderate values). Scaling by a
/// power of two is exact and commutes with every rounding in the normal
/// range, so the sums are bitwise 2⁶⁴ times the unscaled ones (more
/// accurate where those were subnormal), and are scaled back exactly in
/// f64. Products overflow only for values beyond ≈ 2⁵⁵; an image whose
/// finite values overflow is recomputed unscaled.
const WEIGHT_SCALE: f32 = 18_446_744_073_709_551_616.0; // 2^64

/// What one pass over an image runs with.
#[derive(Clone, Copy)]
struct Pass<'a> {
    /// The register kernels, where the CPU has AVX-512.
    kernel: Option<&'a SoftKernel>,
    /// `rn`: each residual counts with unit length.
    residual_norm: bool,
    /// Weights scaled by [`WEIGHT_SCALE`] in `Aᵀ·X`.
    scaled: bool,
}

thread_local! {
    /// Per-thread sums and buffers, reused across images.
    static SCRATCH: RefCell<ImageSums> = RefCell::new(ImageSums::default());
}

/// What the soft aggregation hands back.
pub struct SoftSums {
    /// `(T, K·F)` weighted residual sums, cluster-major.
    pub sums: Array2<f32>,
    /// `(T, K)` soft counts `Σ_l a_k(v_l)` (what `mass` divides by).
    pub mass: Array2<f32>,
    /// Per descriptor, the centroid of largest weight (lowest on ties).
    pub labels: Vec<u32>,
    /// The images, ascending, whose sums or counts are not all finite.
    /// With finite parameters and centroids, every image holding a
    /// non-finite input value is here (its value reaches a whole column of
    /// `Aᵀ·X`: `a·∞` is ±∞ or NaN and NaN propagates), so only these need
    /// searching for one; an image here may also have only overflowed.
    pub suspects: Vec<usize>,
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
    let kernel = SoftKernel::new(params.weights_slice(), params.bias_slice(), f);
    let mut suspects = Vec::new();
    if !sums_flat.is_empty() {
        suspects = sums_flat
            .par_chunks_mut(k * f)
            .zip(mass_flat.par_chunks_mut(k))
            .zip(per_image.into_par_iter())
            .enumerate()
            .filter_map(|(image, ((out, mass), labels))| {
                let range = batch.image_range(image);
                let rows = &batch.rows()[range.start * f..range.end * f];
                let kernel = kernel.as_ref();
                let mut run = |scaled| {
                    let pass = Pass {
                        kernel,
                        residual_norm,
                        scaled,
                    };
                    image_sums(codebook, params, &pass, rows, out, mass, labels)
                };
                let mut finite = run(true);
                if !finite && rows.iter().all(|v| v.is_finite()) {
                    // Finite values beyond ~2^55 overflowed in the scaled
                    // range: the plain order of operations, as without it.
                    finite = run(false);
                }
                (!finite).then_some(image)
            })
            .collect();
    }
    SoftSums {
        sums,
        mass,
        labels,
        suspects,
    }
}

/// One image: `out` (`K·F`) and `mass` (`K`) are zero on entry and stay so
/// for an image without rows. Returns whether every value written is
/// finite (with finite parameters and centroids, a non-finite input value
/// always makes its column of `Aᵀ·X` non-finite, see [`SoftSums::suspects`]).
fn image_sums<E: Element>(
    codebook: &Codebook,
    params: &SoftParams,
    pass: &Pass<'_>,
    rows: &[E],
    out: &mut [f32],
    mass: &mut [f32],
    labels: &mut [u32],
) -> bool {
    if rows.is_empty() {
        return true;
    }
    let f = codebook.dim();
    SCRATCH.with(|scratch| {
        let image = &mut *scratch.borrow_mut();
        image.start(codebook, pass.residual_norm, pass.scaled);
        for (block, labels) in rows
            .chunks(BLOCK_ROWS * f)
            .zip(labels.chunks_mut(BLOCK_ROWS))
        {
            image.add_block(codebook, params, pass.kernel, block, labels);
        }
        image.finish(codebook, out, mass)
    })
}

/// One image's running sums, block by block: what [`aggregate`] runs for
/// each image, and what the stream carries from piece to piece of an image
/// it cuts (`crate::backend::cpu::CpuBackend::add_piece`; pieces start at multiples of
/// [`BLOCK_ROWS`] rows), so that both add the same numbers in the same
/// order and give the same bits.
#[derive(Default)]
pub struct ImageSums {
    k: usize,
    f: usize,
    residual_norm: bool,
    scaled: bool,
    /// `Σ` over blocks of the block's f32 `Aᵀ·X`, in f64.
    sums: Vec<f64>,
    /// Soft counts `Σ a` (what `mass` divides by).
    mass: Vec<f64>,
    /// `rn`: `Σ a/‖v − c‖` (what multiplies the centroid).
    subtract: Vec<f64>,
    product: Vec<f32>,
    weights: Vec<f32>,
    converted: Vec<f32>,
}

impl ImageSums {
    /// Zero sums for an image encoded with `codebook`; `scaled`: the
    /// weights enter `Aᵀ·X` times 2⁶⁴ (see `WEIGHT_SCALE`), as
    /// [`aggregate`] first tries.
    pub fn new(codebook: &Codebook, residual_norm: bool, scaled: bool) -> Self {
        let mut image = ImageSums::default();
        image.start(codebook, residual_norm, scaled);
        image
    }

    /// Continue the sums of an image split into pieces (SPEC §11): its f64
    /// `sums` (`K·F`), soft counts `mass` and, under `rn`, centroid weights
    /// `subtract` (`K` each) as [`ImageSums::into_parts`] left them.
    pub fn resume(
        codebook: &Codebook,
        residual_norm: bool,
        scaled: bool,
        (sums, mass, subtract): (Vec<f64>, Vec<f64>, Vec<f64>),
    ) -> Self {
        let (k, f) = (codebook.clusters(), codebook.dim());
        ImageSums {
            k,
            f,
            residual_norm,
            scaled,
            sums,
            mass,
            subtract,
            product: vec![0.0; k * f],
            ..ImageSums::default()
        }
    }

    /// The running f64 sums, soft counts and centroid weights (see
    /// [`ImageSums::resume`]).
    pub fn into_parts(self) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        (self.sums, self.mass, self.subtract)
    }

    /// What the sums are multiplied by when finished: `2⁻⁶⁴` for scaled
    /// weights (see `WEIGHT_SCALE`), else 1.
    pub fn unscale(scaled: bool) -> f64 {
        if scaled {
            1.0 / WEIGHT_SCALE as f64
        } else {
            1.0
        }
    }

    fn start(&mut self, codebook: &Codebook, residual_norm: bool, scaled: bool) {
        let (k, f) = (codebook.clusters(), codebook.dim());
        (self.k, self.f, self.residual_norm, self.scaled) = (k, f, residual_norm, scaled);
        self.sums.clear();
        self.sums.resize(k * f, 0.0);
        for v in [&mut self.mass, &mut self.subtract] {
            v.clear();
            v.resize(k, 0.0);
        }
        self.product.resize(k * f, 0.0);
    }

    /// Add the image's next block of rows (at most [`BLOCK_ROWS`]; only an
    /// image's last block may be shorter) with `params`, writing each
    /// row's label (the centroid of largest weight) into `labels`.
    /// `kernel`: the register kernels ([`SoftKernel::new`]) where the CPU
    /// has AVX-512, else `None`.
    pub fn add_block<E: Element>(
        &mut self,
        codebook: &Codebook,
        params: &SoftParams,
        kernel: Option<&SoftKernel>,
        block: &[E],
        labels: &mut [u32],
    ) {
        let (k, f) = (self.k, self.f);
        // With the register kernels, a block is processed in chunks small
        // enough that a chunk's weights stay in L1 and its rows in L2 from
        // the logits to the aggregation; the gemm crate is called once per
        // block.
        let chunk_rows = if kernel.is_some() {
            CHUNK_ROWS
        } else {
            BLOCK_ROWS
        };
        // f32 products over at most one block of rows, then f64.
        self.product.fill(0.0);
        for (chunk, labels) in block
            .chunks(chunk_rows * f)
            .zip(labels.chunks_mut(chunk_rows))
        {
            let m = labels.len();
            let x: &[f32] = match as_f32(chunk) {
                Some(x) => x,
                None => {
                    self.converted.clear();
                    self.converted.extend(chunk.iter().map(|v| v.to_f32()));
                    &self.converted
                }
            };
            let weights = &mut self.weights;
            weights.resize(m * k, 0.0);
            match kernel {
                Some(kernel) => {
                    kernel.logits(x, weights);
                    super::soft_assign::softmax_rows(weights, k);
                }
                None => super::soft_assign::soft_weights(params, x, weights),
            }
            row_stats(weights, k, labels, &mut self.mass);
            if self.scaled {
                for w in weights.iter_mut() {
                    *w *= WEIGHT_SCALE;
                }
            }
            if self.residual_norm {
                super::residual_norm::scale_by_inverse_norms(codebook, x, weights);
                add_columns(weights, k, &mut self.subtract);
            }
            match kernel {
                Some(kernel) => kernel.accumulate(weights, x, &mut self.product),
                None => weighted_rows(weights, x, m, k, f, &mut self.product),
            }
        }
        add_f64(&self.product, &mut self.sums);
    }

    /// The image's `K·F` sums minus the weighted centroids, rounded once to
    /// f32, into `out`, and its soft counts into `mass`. Returns whether
    /// every value written is finite.
    pub fn finish(&mut self, codebook: &Codebook, out: &mut [f32], mass: &mut [f32]) -> bool {
        let f = self.f;
        // Undo the weights' scale (exact: a power of two, in f64).
        let unscale = ImageSums::unscale(self.scaled);
        // Without `rn` the weights subtracted are the soft counts.
        if self.residual_norm {
            for s in self.subtract.iter_mut() {
                *s *= unscale;
            }
        } else {
            self.subtract.copy_from_slice(&self.mass);
        }
        let centroids = codebook.as_slice();
        let mut finite = true;
        let blocks = out.chunks_exact_mut(f).zip(centroids.chunks_exact(f));
        for (c, (out, centroid)) in blocks.enumerate() {
            let (s, n) = (self.subtract[c], self.mass[c]);
            let sums = &self.sums[c * f..(c + 1) * f];
            for ((o, &sum), &y) in out.iter_mut().zip(sums).zip(centroid) {
                *o = (sum * unscale - s * y as f64) as f32 + 0.0;
            }
            mass[c] = n as f32;
            finite &= out
                .iter()
                .fold(mass[c].is_finite(), |ok, v| ok & v.is_finite());
        }
        finite
    }
}

/// Per row of `weights` (`m × K`): its label (the centroid of largest
/// weight, lowest on ties, 0 for a row without a largest weight) and its
/// weights added to `mass` in f64.
fn row_stats(weights: &[f32], k: usize, labels: &mut [u32], mass: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F (checked just above).
        return unsafe { row_stats_avx512(weights, k, labels, mass) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { row_stats_avx2(weights, k, labels, mass) };
    }
    row_stats_portable(weights, k, labels, mass)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_stats_avx2(weights: &[f32], k: usize, labels: &mut [u32], mass: &mut [f64]) {
    row_stats_portable(weights, k, labels, mass)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn row_stats_avx512(weights: &[f32], k: usize, labels: &mut [u32], mass: &mut [f64]) {
    row_stats_portable(weights, k, labels, mass)
}

#[inline(always)]
fn row_stats_portable(weights: &[f32], k: usize, labels: &mut [u32], mass: &mut [f64]) {
    for (label, a) in labels.iter_mut().zip(weights.chunks_exact(k)) {
        *label = strongest(a);
        for (s, &w) in mass.iter_mut().zip(a) {
            *s += w as f64;
        }
    }
}

/// `sums[c] += Σ_l weights[l·K + c]` in f64, row by row.
fn add_columns(weights: &[f32], k: usize, sums: &mut [f64]) {
    for a in weights.chunks_exact(k) {
        for (s, &w) in sums.iter_mut().zip(a) {
            *s += w as f64;
        }
    }
}

/// `sums += product`, in f64.
fn add_f64(product: &[f32], sums: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { add_f64_avx2(product, sums) };
    }
    add_f64_portable(product, sums)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_f64_avx2(product: &[f32], sums: &mut [f64]) {
    add_f64_portable(product, sums)
}

#[inline(always)]
fn add_f64_portable(product: &[f32], sums: &mut [f64]) {
    for (s, &p) in sums.iter_mut().zip(product) {
        *s += p as f64;
    }
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

/// The index of the largest weight, lowest on ties (0 when no weight is
/// larger than −∞, e.g. a row of NaN). Two passes (the maximum, then its
/// first position) that the compiler vectorizes, unlike a running argmax.
#[inline(always)]
fn strongest(a: &[f32]) -> u32 {
    let max = a
        .iter()
        .fold(f32::NEG_INFINITY, |m, &w| if w > m { w } else { m });
    a.iter().position(|&w| w == max).unwrap_or(0) as u32
}

/// The rows as f32 without a copy when they already are.
fn as_f32<E: Element>(rows: &[E]) -> Option<&[f32]> {
    if E::DTYPE == DType::F32 {
        bytemuck::try_cast_slice(rows).ok()
    } else {
        None
    }
}
