//! The interface every backend implements: what an encoding needs
//! ([`Model`]) and what every route asks of a backend ([`Compute`]):
//! encode a batch into caller memory, assign, say where passes may be cut,
//! and add the pieces of an image split across passes.

use std::ops::Range;

use crate::backend::combine::SplitImage;
use crate::error::Result;
use crate::model::assignment::{Assignment, SoftParams};
use crate::model::batch::Batch;
use crate::model::codebook::Codebook;
use crate::model::element::{DType, Element};
use crate::model::normalization::Normalization;
use crate::model::report::StageTimes;
use crate::whitening::Whitening;

/// Everything a backend needs to know about an encoding: the codebook, how
/// descriptors weigh on its centroids, and the normalization.
#[derive(Clone, Copy, Debug)]
pub struct Model<'a> {
    /// The centroids.
    pub codebook: &'a Codebook,
    /// Hard or soft assignment, as the user gave it (the reference reads a
    /// temperature as such, not as resolved weights).
    pub assignment: &'a Assignment,
    /// The soft parameters resolved against the codebook; `None` for hard
    /// assignment.
    pub soft: Option<&'a SoftParams>,
    /// The steps applied to each finished image.
    pub norm: &'a Normalization,
}

impl Model<'_> {
    /// Whether residuals are weighed by soft assignment or normalized
    /// (`rn`) before they are summed: SPEC §10's general case, of which
    /// plain hard assignment is the fast special case.
    pub fn is_weighted(&self) -> bool {
        self.soft.is_some() || self.norm.residual_normalized()
    }
}

/// A stretch of the input that one pass covers: whole images, or one
/// piece of one image too large for a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    /// The images it covers (one image when it is a piece).
    pub images: Range<usize>,
    /// Its rows (global row indices).
    pub rows: Range<usize>,
    /// `(index, count)` when it is piece `index` of `count` of one image.
    pub part: Option<(usize, usize)>,
}

impl Span {
    /// Whether its images are complete after it: whole images, or the last
    /// piece of a split one.
    pub fn completes_images(&self) -> bool {
        self.part.is_none_or(|(i, n)| i + 1 == n)
    }
}

/// Where a backend lets a pass begin and end, so that a stream cut into
/// batches gives the in-memory bits (SPEC §11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cuts {
    /// Batches of whole images may end anywhere; an image may be cut into
    /// pieces of any multiple of this many rows from its start (its last
    /// piece shorter).
    Aligned(usize),
    /// Images are never cut (the reference): an image larger than a batch
    /// is a batch of its own.
    Whole,
    /// The backend's own plan of the whole input: a batch must be a run of
    /// consecutive spans of whole images, and the pieces of a split image
    /// are exactly its pieces.
    Planned(Vec<Span>),
}

/// [`Compute::encode_into`]'s inputs: encode the whole images of `batch`
/// into `out`.
pub struct EncodeInto<'a, E: Element> {
    /// What to compute.
    pub model: &'a Model<'a>,
    /// The images.
    pub batch: &'a Batch<'a, E>,
    /// `T·K·F` values (`T·D′` with a whitening), row-major, any contents:
    /// every element is written.
    pub out: &'a mut [f32],
    /// Where each stage's seconds go.
    pub stages: &'a mut StageTimes,
    /// The whitening to apply after the normalization: only ever given to
    /// a backend whose [`Compute::fuses_whitening`] is true (the others
    /// are given `None` and whiten afterwards through [`Compute::whiten`]).
    pub whitening: Option<&'a Whitening>,
    /// Whether the caller keeps the labels: a backend may return none when
    /// not (the CPU's one pass then never stores them).
    pub want_labels: bool,
}

/// [`Compute::assign`]'s inputs: the nearest centroid of every descriptor
/// of `batch` (its given labels, if any, are ignored).
pub struct Assign<'a, E: Element> {
    /// The centroids.
    pub codebook: &'a Codebook,
    /// The descriptors.
    pub batch: &'a Batch<'a, E>,
    /// Where each stage's seconds go.
    pub stages: &'a mut StageTimes,
}

/// [`Compute::add_piece`]'s inputs: the next piece of one split image.
pub struct AddPiece<'a, E: Element> {
    /// What to compute.
    pub model: &'a Model<'a>,
    /// The piece's whole rows (`n·F` values), in order.
    pub rows: &'a [E],
    /// Given labels, which skip the assignment.
    pub labels: Option<&'a [u32]>,
    /// The image's sums so far.
    pub image: &'a mut SplitImage,
    /// Where each stage's seconds go.
    pub stages: &'a mut StageTimes,
}

/// What every backend computes, for every route. The calls that read rows
/// take their inputs as one value each ([`EncodeInto`], [`Assign`],
/// [`AddPiece`]), so that a backend's signature is one line.
pub trait Compute {
    /// Encode the whole images of `call.batch` into `call.out`; returns
    /// the label of every descriptor (the batch's own, the nearest
    /// centroid, or under soft assignment the centroid of largest weight),
    /// or possibly none when `call.want_labels` is false.
    fn encode_into<E: Element>(&self, call: EncodeInto<'_, E>) -> Result<Vec<u32>>;

    /// The nearest-centroid label of every descriptor of `call.batch`.
    fn assign<E: Element>(&self, call: Assign<'_, E>) -> Result<Vec<u32>>;

    /// How passes over the images of `offsets` (CSR) in `dtype` may be cut.
    fn cuts(&self, model: &Model<'_>, offsets: &[usize], dtype: DType) -> Result<Cuts>;

    /// Empty sums for one image of `model` to be added piece by piece: by
    /// default plain f64 sums and masses.
    fn split_image(&self, model: &Model<'_>) -> Result<SplitImage> {
        Ok(SplitImage::new(model.codebook))
    }

    /// Add the image's next piece to `call.image`; returns the piece's
    /// labels. Where a piece may start is the backend's rule (the stream
    /// and the GPU pipeline follow it), so the finished image has the bits
    /// of the whole image.
    fn add_piece<E: Element>(&self, call: AddPiece<'_, E>) -> Result<Vec<u32>>;

    /// Whiten finished `(n, D)` rows into `out` (`n × D′`), SPEC §14: the
    /// projection, then its post normalization. Rows are whitened one by
    /// one with the same bits whatever rows come with them, so a stream
    /// gives the in-memory bits.
    fn whiten(&self, whitening: &Whitening, rows: &[f32], out: &mut [f32]) -> Result<()>;

    /// Whether [`Compute::encode_into`] applies a given whitening itself
    /// (before reading the result back); by default it does not.
    fn fuses_whitening(&self) -> bool {
        false
    }

    /// The finished `K·F` row of a split image into `out`: by default its
    /// f64 sums rounded once, then normalized ([`SplitImage::finish`]).
    fn finish_image(&self, model: &Model<'_>, image: &SplitImage, out: &mut [f32]) -> Result<()> {
        image.finish(model.codebook, model.norm, out)
    }
}

/// `values` (an encoding of `values.len()` elements) fit `out`: the error
/// a backend gives when the caller's memory has another size.
pub fn check_out_len(out: &[f32], values: usize) -> Result<()> {
    if out.len() != values {
        return Err(crate::error::VladError::DimensionMismatch(format!(
            "the output holds {} values, the encoding has {values}",
            out.len()
        )));
    }
    Ok(())
}
