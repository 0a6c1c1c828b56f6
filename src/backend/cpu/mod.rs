//! The fast CPU backend (and the fallback when no GPU works).
//!
//! Three stages, each parallel with rayon and bitwise deterministic whatever
//! the thread count (SPEC §5):
//!
//! 1. [`assign`](mod@assign): nearest centroid by a blocked GEMM with the argmin fused in;
//! 2. [`aggregate`]: per-image residual sums in f64, rounded once to f32;
//! 3. [`normalize`]: SPEC §3's steps per row with fixed-order f64 norms.
//!
//! Under hard assignment without given labels the first two run as one
//! pass ([`one_pass`]): each block's rows are summed while still in cache,
//! with the two passes' bits.
//!
//! The shaders' CPU twins live apart, in [`crate::twins`]: the backend
//! itself needs no sort.

pub mod aggregate;
pub mod assign;
pub mod ceilings;
pub mod normalize;
pub mod one_pass;
pub mod residual_norm;
pub mod soft;
pub mod soft_aggregate;
pub mod soft_assign;
pub mod soft_kernel;
pub mod whiten;

use ndarray::Array2;

use crate::backend::combine::{CentroidTerm, SplitImage};
use crate::backend::compute::{AddPiece, Assign, Cuts, EncodeInto, Model, check_out_len};
use crate::error::Result;
use crate::model::assignment::SoftParams;
use crate::model::batch::Batch;
use crate::model::codebook::Codebook;
use crate::model::element::{DType, Element};
use crate::model::normalization::Normalization;
use crate::model::report::StageTimes;
use crate::whitening::Whitening;

/// Nearest-centroid labels of every descriptor in `batch` (stage "assign").
pub fn assign<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    stages: &mut StageTimes,
) -> Vec<u32> {
    stages.time("assign", || {
        assign::assign_rows(codebook, batch.rows(), batch.dim())
    })
}

/// [`encode`] into the caller's `out` (`T · K · F` values, row-major, any
/// contents: every element is written); returns the labels used when
/// `want_labels` (else none: the one pass keeps only each block's).
///
/// # Panics
///
/// If `out` is not `T · K · F` long.
pub fn encode_into<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    norm: &Normalization,
    stages: &mut StageTimes,
    out: &mut [f32],
    want_labels: bool,
) -> Vec<u32> {
    let (mass, labels) = match batch.labels() {
        Some(given) => {
            let mass = stages.time("aggregate", || {
                aggregate::aggregate_into(codebook, batch, given, out)
            });
            (
                mass,
                if want_labels {
                    given.to_vec()
                } else {
                    Vec::new()
                },
            )
        }
        None => {
            let mut labels = if want_labels {
                vec![0u32; batch.len()]
            } else {
                Vec::new()
            };
            let wanted = want_labels.then_some(labels.as_mut_slice());
            let start = std::time::Instant::now();
            let (mass, split) = one_pass::encode_sums_into(codebook, batch, out, wanted);
            split.record(start.elapsed().as_secs_f64(), stages);
            (mass, labels)
        }
    };
    stages.time("normalize", || {
        let mass = mass.as_slice().unwrap_or_default();
        normalize::normalize_flat_rows(out, mass, codebook.clusters(), codebook.dim(), norm)
    });
    labels
}

/// Encode `batch` into `(T, K·F)`; returns the encoding and the labels used
/// (the batch's own when it carries labels, else computed). Stages
/// "assign", "aggregate" and "normalize" are timed into `stages`.
pub fn encode<E: Element>(
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    norm: &Normalization,
    stages: &mut StageTimes,
) -> (Array2<f32>, Vec<u32>) {
    let labels = match batch.labels() {
        Some(given) => given.to_vec(),
        None => assign(codebook, batch, stages),
    };
    let (mut vlad, mass) = stages.time("aggregate", || {
        aggregate::aggregate(codebook, batch, &labels)
    });
    stages.time("normalize", || {
        normalize::normalize_rows(&mut vlad, &mass, codebook.clusters(), codebook.dim(), norm)
    });
    (vlad, labels)
}

/// The CPU backend, as every route drives it.
pub struct CpuBackend;

impl crate::backend::compute::Compute for CpuBackend {
    fn encode_into<E: Element>(&self, call: EncodeInto<'_, E>) -> Result<Vec<u32>> {
        let (model, batch, out, stages) = (call.model, call.batch, call.out, call.stages);
        let codebook = model.codebook;
        if !model.is_weighted() {
            if !batch.finite_checked() {
                batch.check_finite()?;
            }
            let want_labels = call.want_labels;
            return Ok(encode_into(
                codebook,
                batch,
                model.norm,
                stages,
                out,
                want_labels,
            ));
        }
        // Soft pooling checks a deferred finiteness check through its
        // outputs (one pass over the input saved); see `soft::try_encode`.
        let (vlad, labels) = soft::try_encode(codebook, model.soft, batch, model.norm, stages)?;
        check_out_len(out, vlad.len())?;
        for (o, &x) in out.iter_mut().zip(vlad.iter()) {
            *o = x;
        }
        Ok(labels)
    }

    fn assign<E: Element>(&self, call: Assign<'_, E>) -> Result<Vec<u32>> {
        Ok(assign(call.codebook, call.batch, call.stages))
    }

    /// Pieces of whole [`aggregate::PARTIAL_ROWS`]-row blocks: the blocks
    /// the in-memory sums are formed in (a multiple of the soft route's
    /// [`soft_aggregate::BLOCK_ROWS`] too).
    fn cuts(&self, _model: &Model<'_>, _offsets: &[usize], _dtype: DType) -> Result<Cuts> {
        Ok(Cuts::Aligned(aggregate::PARTIAL_ROWS))
    }

    fn split_image(&self, model: &Model<'_>) -> Result<SplitImage> {
        let mut image = SplitImage::new(model.codebook);
        if model.soft.is_some() {
            // `Σ a·v` with the weights scaled, the centroids subtracted at
            // the end; the unscaled sums carried beside them for an image
            // whose finite values overflow the scaled ones, as in memory.
            let k = model.codebook.clusters();
            image.centroids = if model.norm.residual_normalized() {
                CentroidTerm::Weights(vec![0.0; k])
            } else {
                CentroidTerm::Mass
            };
            let mut plain = image.clone();
            plain.scale = soft_aggregate::ImageSums::unscale(false);
            image.scale = soft_aggregate::ImageSums::unscale(true);
            image.fallback = Some(Box::new(plain));
        }
        Ok(image)
    }

    fn whiten(&self, whitening: &Whitening, rows: &[f32], out: &mut [f32]) -> Result<()> {
        let (d, dout) = (whitening.dims_in(), whitening.dims_out());
        crate::backend::compute::check_out_len(out, rows.len() / d * dout)?;
        whiten::whiten_rows(whitening, rows, out);
        Ok(())
    }

    fn add_piece<E: Element>(&self, call: AddPiece<'_, E>) -> Result<Vec<u32>> {
        let (model, rows, labels) = (call.model, call.rows, call.labels);
        let (image, stages) = (call.image, call.stages);
        let codebook = model.codebook;
        let f = codebook.dim();
        if let Some(params) = model.soft {
            let rn = model.norm.residual_normalized();
            let mut labels = vec![0u32; rows.len() / f.max(1)];
            stages.time("aggregate", || {
                add_soft_piece(codebook, params, rn, rows, image, &mut labels)
            });
            return Ok(labels);
        }
        let labels = match labels {
            Some(given) => given.to_vec(),
            None => {
                let view = ndarray::ArrayView2::from_shape((rows.len() / f.max(1), f), rows)
                    .map_err(|e| crate::error::VladError::DimensionMismatch(e.to_string()))?;
                assign(codebook, &Batch::single(view)?, stages)
            }
        };
        stages.time("aggregate", || {
            if model.norm.residual_normalized() {
                residual_norm::add_rows(codebook, rows, &labels, &mut image.sums, &mut image.mass);
            } else {
                let mut counts = vec![0u64; codebook.clusters()];
                aggregate::add_image_rows(codebook, rows, &labels, &mut image.sums, &mut counts);
                for (m, n) in image.mass.iter_mut().zip(counts) {
                    *m += n as f64;
                }
            }
        });
        image.piece_added();
        Ok(labels)
    }
}

/// Add a piece of a split image under soft assignment to its scaled sums
/// and to the unscaled ones carried beside them, block by block from the
/// image's start (a piece starts at a multiple of
/// [`soft_aggregate::BLOCK_ROWS`] rows), writing each row's label.
fn add_soft_piece<E: Element>(
    codebook: &Codebook,
    params: &SoftParams,
    rn: bool,
    rows: &[E],
    image: &mut SplitImage,
    labels: &mut [u32],
) {
    let f = codebook.dim();
    let kernel = soft_kernel::SoftKernel::new(params.weights_slice(), params.bias_slice(), f);
    let mut add = |image: &mut SplitImage, scaled: bool| {
        let subtract = match &mut image.centroids {
            CentroidTerm::Weights(w) => std::mem::take(w),
            _ => vec![0.0; codebook.clusters()],
        };
        let parts = (
            std::mem::take(&mut image.sums),
            std::mem::take(&mut image.mass),
            subtract,
        );
        let mut sums = soft_aggregate::ImageSums::resume(codebook, rn, scaled, parts);
        for (block, labels) in rows
            .chunks(soft_aggregate::BLOCK_ROWS * f)
            .zip(labels.chunks_mut(soft_aggregate::BLOCK_ROWS))
        {
            sums.add_block(codebook, params, kernel.as_ref(), block, labels);
        }
        let (s, m, w) = sums.into_parts();
        (image.sums, image.mass) = (s, m);
        if let CentroidTerm::Weights(weights) = &mut image.centroids {
            *weights = w;
        }
        image.piece_added();
    };
    add(image, true);
    if let Some(plain) = image.fallback.as_deref_mut() {
        add(plain, false);
    }
}
