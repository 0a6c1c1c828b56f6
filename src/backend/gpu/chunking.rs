//! The chunk planner: which images (or which rows of one huge image) go to
//! the device together, so that every buffer a stage binds fits one storage
//! binding of the adapter (or of the `VLAD_GPU_MAX_BINDING_BYTES` cap).
//!
//! Pure arithmetic on the CSR offsets: no device needed, so it is tested on
//! its own (`tests/gpu/chunking.rs`). The plan depends only on the shapes and
//! the limits, never on timing, so the same input always runs the same
//! chunks — part of what keeps the GPU output bitwise reproducible.

use std::ops::Range;

use crate::backend::gpu::context::GpuContext;
use crate::error::{Result, VladError};
use crate::model::element::DType;

/// Bytes one descriptor element occupies on the device: f32 as is, u8
/// packed four per word, f64 converted to f32 on the host first.
pub fn device_bytes_per_element(dtype: DType) -> u64 {
    match dtype {
        DType::F32 | DType::F64 => 4,
        DType::U8 => 1,
    }
}

/// What the device allows one chunk.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Largest storage binding, in bytes.
    pub max_binding_bytes: u64,
    /// Most descriptors one chunk may hold: row indices are u32 and every
    /// stage covers its rows with a (2D) grid of at most
    /// `max_workgroups_per_dim²` workgroups of at least one row each.
    pub max_rows: u64,
}

impl ChunkLimits {
    /// The limits of `ctx` (its binding cap already includes the
    /// environment variable and the API knob).
    pub fn for_context(ctx: &GpuContext) -> Self {
        let grid = ctx.max_workgroups_per_dim() as u64;
        ChunkLimits {
            max_binding_bytes: ctx.max_binding_bytes(),
            max_rows: (grid * grid).min(u32::MAX as u64),
        }
    }
}

/// The problem's shape as far as buffer sizes go.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ChunkShape {
    /// Descriptor width F.
    pub dim: usize,
    /// Number of centroids K.
    pub clusters: usize,
    /// Element type of the descriptors on the host.
    pub dtype: DType,
}

/// One submission's worth of work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Images of the batch this chunk covers (one image when it is a part).
    pub images: Range<usize>,
    /// Rows of the batch it uploads (global row indices).
    pub rows: Range<usize>,
    /// `Some` when the chunk holds only some rows of one image too large
    /// for a binding: its raw block sums are combined on the host.
    pub part: Option<Part>,
}

/// Which piece of a split image a chunk is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// 0-based index of this piece.
    pub index: usize,
    /// How many pieces the image was split into (at least 2).
    pub count: usize,
}

impl Chunk {
    /// Number of images in the chunk.
    pub fn image_count(&self) -> usize {
        self.images.len()
    }

    /// Number of descriptors in the chunk.
    pub fn row_count(&self) -> usize {
        self.rows.len()
    }

    /// Whether this chunk is the last piece of a split image (or a chunk of
    /// whole images): its image's result is complete after it.
    pub fn completes_image(&self) -> bool {
        self.part.is_none_or(|p| p.index + 1 == p.count)
    }
}

/// Bytes of every buffer a stage binds for a chunk of `images` images and
/// `rows` descriptors.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ChunkBuffers {
    /// Descriptors on the device (u8 padded to a whole word).
    pub descriptors: u64,
    /// Each of labels, keys, values and their sort partners (u32 per row).
    pub per_row: u64,
    /// CSR offsets, `images + 1` u32.
    pub offsets: u64,
    /// `images × K × F` f32 blocks.
    pub blocks: u64,
    /// `images × K` u32 counts.
    pub counts: u64,
    /// `K × F` f32 centroids (the same for every chunk).
    pub centroids: u64,
}

impl ChunkBuffers {
    /// The sizes for `images` images and `rows` rows of `shape`.
    pub fn new(shape: &ChunkShape, images: u64, rows: u64) -> Self {
        let (k, f) = (shape.clusters as u64, shape.dim as u64);
        let descriptor_bytes = rows
            .saturating_mul(f)
            .saturating_mul(device_bytes_per_element(shape.dtype));
        ChunkBuffers {
            descriptors: descriptor_bytes.saturating_add(3) & !3,
            per_row: rows.saturating_mul(4),
            offsets: images.saturating_add(1).saturating_mul(4),
            blocks: images.saturating_mul(k).saturating_mul(f).saturating_mul(4),
            counts: images.saturating_mul(k).saturating_mul(4),
            centroids: k.saturating_mul(f).saturating_mul(4),
        }
    }

    /// The largest of them: what must fit one binding.
    pub fn largest(&self) -> u64 {
        [
            self.descriptors,
            self.per_row,
            self.offsets,
            self.blocks,
            self.counts,
            self.centroids,
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }
}

/// Whether a chunk of `images` images and `rows` rows fits `limits`.
fn fits(shape: &ChunkShape, limits: &ChunkLimits, images: u64, rows: u64) -> bool {
    // Sort keys are `image · K + label`: they must stay below 2^32.
    let keys_fit = images.saturating_mul(shape.clusters as u64) <= 1 << 32;
    ChunkBuffers::new(shape, images, rows).largest() <= limits.max_binding_bytes
        && rows <= limits.max_rows
        && keys_fit
}

/// Split the images of `offsets` (CSR, `T + 1` values) into chunks that fit
/// `limits`: whole images, in order, as many per chunk as fit; an image too
/// large for one chunk on its own becomes consecutive chunks of balanced row
/// ranges. Every image is covered exactly once, in order, and empty images
/// too (they encode to zero rows).
///
/// Fails with [`VladError::BackendUnavailable`] when not even the codebook
/// (or one image's `K × F` blocks) fits a binding: no chunking helps then.
pub fn plan_chunks(
    offsets: &[usize],
    shape: &ChunkShape,
    limits: &ChunkLimits,
) -> Result<Vec<Chunk>> {
    if shape.dim == 0 || shape.clusters == 0 {
        return Err(VladError::Empty(
            "cannot plan GPU chunks for K = 0 or F = 0".to_string(),
        ));
    }
    let images = offsets.len().saturating_sub(1);
    if images == 0 {
        return Ok(Vec::new());
    }
    if !fits(shape, limits, 1, 1) {
        return Err(VladError::BackendUnavailable(format!(
            "the GPU backend needs the K × F = {} × {} codebook, one image's blocks \
             and one descriptor row to fit a storage binding of {} bytes \
             (largest buffer: {} bytes); use the cpu backend",
            shape.clusters,
            shape.dim,
            limits.max_binding_bytes,
            ChunkBuffers::new(shape, 1, 1).largest()
        )));
    }
    let max_part_rows = largest_fitting_rows(shape, limits);

    let mut chunks = Vec::new();
    // The open chunk: first image and first row.
    let mut open: Option<(usize, usize)> = None;
    for t in 0..images {
        let (first_row, end_row) = (offsets[t], offsets[t + 1]);
        if let Some((first_image, chunk_first_row)) = open {
            let grown_images = (t + 1 - first_image) as u64;
            let grown_rows = (end_row - chunk_first_row) as u64;
            if fits(shape, limits, grown_images, grown_rows) {
                continue;
            }
            chunks.push(Chunk {
                images: first_image..t,
                rows: chunk_first_row..first_row,
                part: None,
            });
            open = None;
        }
        let rows = end_row - first_row;
        if fits(shape, limits, 1, rows as u64) {
            open = Some((t, first_row));
            continue;
        }
        // Too large alone: balanced pieces of at most `max_part_rows` rows.
        let count = rows.div_ceil(max_part_rows);
        for index in 0..count {
            chunks.push(Chunk {
                images: t..t + 1,
                rows: first_row + rows * index / count..first_row + rows * (index + 1) / count,
                part: Some(Part { index, count }),
            });
        }
    }
    if let Some((first_image, first_row)) = open {
        chunks.push(Chunk {
            images: first_image..images,
            rows: first_row..offsets[images],
            part: None,
        });
    }
    Ok(chunks)
}

/// The most rows one image's piece may hold (at least 1: the caller checked
/// that one row fits). Binary search, because `fits` is monotone in rows
/// and the padding rules make a closed form easy to get subtly wrong.
fn largest_fitting_rows(shape: &ChunkShape, limits: &ChunkLimits) -> usize {
    let (mut lo, mut hi) = (1u64, limits.max_rows.max(1));
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(shape, limits, 1, mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    usize::try_from(lo).unwrap_or(usize::MAX)
}

/// Descriptor bytes a chunk of several whole images aims at: small enough
/// that upload of one chunk, compute of the next and read-back of the one
/// before overlap, large enough that the per-chunk costs (a submission, a
/// few dozen dispatches) stay negligible. One image larger than this stays
/// whole (splitting images is for bindings, not for overlap).
pub const OVERLAP_CHUNK_BYTES: u64 = 32 << 20;

/// Cut every chunk of several whole images of `plan` into consecutive
/// chunks of whole images of about [`OVERLAP_CHUNK_BYTES`] of descriptors
/// each (at least one image each). Pieces of split images are left as they
/// are. Like the plan, the result depends only on the offsets and the
/// shape, so the same input always runs the same chunks.
pub fn split_for_overlap(plan: Vec<Chunk>, offsets: &[usize], shape: &ChunkShape) -> Vec<Chunk> {
    let row_bytes = (shape.dim as u64 * device_bytes_per_element(shape.dtype)).max(1);
    let target_rows = (OVERLAP_CHUNK_BYTES / row_bytes).max(1) as usize;
    let mut out = Vec::with_capacity(plan.len());
    for chunk in plan {
        if chunk.part.is_some() || chunk.row_count() <= target_rows || chunk.image_count() < 2 {
            out.push(chunk);
            continue;
        }
        let mut first = chunk.images.start;
        for t in chunk.images.clone() {
            // Close the open piece before image t if t would overflow it.
            if t > first && offsets[t + 1] - offsets[first] > target_rows {
                out.push(Chunk {
                    images: first..t,
                    rows: offsets[first]..offsets[t],
                    part: None,
                });
                first = t;
            }
        }
        out.push(Chunk {
            images: first..chunk.images.end,
            rows: offsets[first]..offsets[chunk.images.end],
            part: None,
        });
    }
    out
}

/// The sort of a chunk's keys `image · K + label`: `(key_bits, modulus)`
/// of a stable sort by the label alone (`SortJob::modulus`), `key_bits`
/// the significant bits of a label `< K` (at least 1, the sort's
/// contract). The rows are already in image order, so that leaves equal
/// keys contiguous with `⌈log₂ K / 4⌉` passes, where the whole key would
/// take `⌈log₂(images · K) / 4⌉` (at 125 images and K = 256: 2 instead of 4).
pub fn sort_by_label(clusters: usize) -> (u32, u32) {
    let max_label = (clusters as u64).saturating_sub(1);
    (
        (64 - max_label.leading_zeros()).clamp(1, 32),
        clusters as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_bits_cover_the_largest_label() {
        assert_eq!(sort_by_label(1), (1, 1));
        assert_eq!(sort_by_label(2), (1, 2));
        assert_eq!(sort_by_label(3), (2, 3));
        assert_eq!(sort_by_label(64), (6, 64));
        assert_eq!(sort_by_label(65), (7, 65));
        assert_eq!(sort_by_label(1 << 16), (16, 1 << 16));
    }

    #[test]
    fn overlap_split_keeps_whole_images_in_order() {
        let shape = ChunkShape {
            dim: 1 << 20,
            clusters: 2,
            dtype: DType::U8,
        };
        // Target: 32 rows of 1 MiB. Images of 10, 30, 0, 5, 40, 3 rows.
        let offsets = [0, 10, 40, 40, 45, 85, 88];
        let whole = vec![Chunk {
            images: 0..6,
            rows: 0..88,
            part: None,
        }];
        let split = split_for_overlap(whole, &offsets, &shape);
        let images: Vec<_> = split.iter().map(|c| c.images.clone()).collect();
        assert_eq!(images, vec![0..1, 1..3, 3..4, 4..5, 5..6]);
        for c in &split {
            assert_eq!(c.rows, offsets[c.images.start]..offsets[c.images.end]);
        }
        // A piece, a single image and a small chunk stay as they are.
        let piece = Chunk {
            images: 0..1,
            rows: 0..100,
            part: Some(Part { index: 0, count: 2 }),
        };
        assert_eq!(
            split_for_overlap(vec![piece.clone()], &offsets, &shape),
            vec![piece]
        );
        let small = Chunk {
            images: 0..2,
            rows: 0..40,
            part: None,
        };
        let small_shape = ChunkShape { dim: 4, ..shape };
        assert_eq!(
            split_for_overlap(vec![small.clone()], &offsets, &small_shape),
            vec![small]
        );
    }

    #[test]
    fn largest_rows_is_exact() {
        let shape = ChunkShape {
            dim: 3,
            clusters: 2,
            dtype: DType::U8,
        };
        let limits = ChunkLimits {
            max_binding_bytes: 64,
            max_rows: 1 << 20,
        };
        let r = largest_fitting_rows(&shape, &limits);
        assert!(fits(&shape, &limits, 1, r as u64));
        assert!(!fits(&shape, &limits, 1, r as u64 + 1));
        // u8 rows of 3 bytes: 16 rows = 48 bytes, per-row u32 = 64 bytes.
        assert_eq!(r, 16);
    }
}
