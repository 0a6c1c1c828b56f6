//! CPU twin of `shaders/residual.wgsl`: per-run sums laid out as
//! `(images, clusters, dim)` blocks, with the per-block counts. A block
//! whose (image, cluster) has no descriptor is exactly zero. Pure copies,
//! so the GPU stage matches it bit for bit.

use crate::error::{Result, VladError};
use crate::twins::segmented_scan::SegmentSums;

/// The `(images, clusters, dim)` blocks (row-major f32) and the
/// `(images, clusters)` counts of `segments`.
///
/// Errors when a run's key is not below `images · clusters`.
pub fn layout(
    segments: &SegmentSums,
    images: usize,
    clusters: usize,
) -> Result<(Vec<f32>, Vec<u32>)> {
    let dim = segments.dim;
    let blocks = images * clusters;
    let mut sums = vec![0.0f32; blocks * dim];
    let mut counts = vec![0u32; blocks];
    for (run, (&key, &count)) in segments.keys.iter().zip(&segments.counts).enumerate() {
        let block = key as usize;
        if block >= blocks {
            return Err(VladError::InvalidArgument(format!(
                "run key {key} is not below images · clusters = {blocks}"
            )));
        }
        counts[block] = count;
        sums[block * dim..(block + 1) * dim]
            .copy_from_slice(&segments.sums[run * dim..(run + 1) * dim]);
    }
    Ok((sums, counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_land_in_their_blocks_and_the_rest_is_zero() {
        let segments = SegmentSums {
            dim: 2,
            keys: vec![1, 4],
            counts: vec![3, 1],
            sums: vec![1.0, 2.0, 3.0, 4.0],
        };
        let (blocks, counts) = layout(&segments, 2, 3).unwrap();
        assert_eq!(
            blocks,
            vec![0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0, 4.0, 0.0, 0.0]
        );
        assert_eq!(counts, vec![0, 3, 0, 0, 1, 0]);
        assert!(layout(&segments, 1, 3).is_err());
    }
}
