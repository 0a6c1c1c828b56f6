//! Test inputs shared by the segmented-scan and residual GPU tests: images
//! with labels, their sorted keys and rows, and the three ways of summing
//! them (GPU stage, CPU twin, f64 reference).
// Each test file uses part of this module.
#![allow(dead_code)]

use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vlad::backend::gpu::GpuContext;
use vlad::backend::gpu::stages::Descriptors;
use vlad::backend::gpu::stages::segmented_scan::{ScanJob, SegmentSums, SegmentedScanStage};
use vlad::twins::segmented_scan as twin;
use vlad::{Assignment, Batch, Codebook, Element, reference};

/// Descriptors of some images with given labels, and the (image, label)
/// keys and row indices sorted the way the pipeline's radix sort leaves
/// them: by label, then image, then row.
pub struct Case {
    pub images: usize,
    pub clusters: usize,
    pub dim: usize,
    pub values: Vec<f32>,
    pub bytes: Vec<u8>,
    pub centroids: Vec<f32>,
    pub offsets: Vec<usize>,
    pub labels: Vec<u32>,
    pub sorted_keys: Vec<u32>,
    pub sorted_rows: Vec<u32>,
}

impl Case {
    /// `rows_per_image` rows in each image (0 allowed); labels drawn from
    /// the first `used_labels` clusters, so the others stay empty.
    pub fn random(
        seed: u64,
        rows_per_image: &[usize],
        clusters: usize,
        used_labels: usize,
        dim: usize,
    ) -> Case {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let images = rows_per_image.len();
        let mut offsets = vec![0];
        for &n in rows_per_image {
            offsets.push(offsets.last().unwrap() + n);
        }
        let rows = offsets[images];
        let bytes: Vec<u8> = (0..rows * dim).map(|_| rng.random()).collect();
        let labels = (0..rows)
            .map(|_| rng.random_range(0..used_labels) as u32)
            .collect();
        let centroids = (0..clusters * dim)
            .map(|_| rng.random_range(0.0..255.0f32))
            .collect();
        Case::build(images, clusters, dim, bytes, centroids, offsets, labels)
    }

    pub fn build(
        images: usize,
        clusters: usize,
        dim: usize,
        bytes: Vec<u8>,
        centroids: Vec<f32>,
        offsets: Vec<usize>,
        labels: Vec<u32>,
    ) -> Case {
        // f32 values that are not all integers, so roundings happen.
        let values = bytes
            .iter()
            .enumerate()
            .map(|(i, &b)| b as f32 * 1.37 - 100.0 + (i % 7) as f32 * 0.01)
            .collect();
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        for t in 0..images {
            let rows = offsets[t]..offsets[t + 1];
            for (row, &label) in rows.clone().zip(&labels[rows]) {
                pairs.push(((t * clusters) as u32 + label, row as u32));
            }
        }
        // A stable sort by label alone over rows in image order, as the
        // pipeline's radix sort leaves them (`chunking::sort_by_label`).
        pairs.sort_by_key(|p| p.0 % clusters as u32);
        Case {
            images,
            clusters,
            dim,
            values,
            bytes,
            centroids,
            offsets,
            labels,
            sorted_keys: pairs.iter().map(|p| p.0).collect(),
            sorted_rows: pairs.iter().map(|p| p.1).collect(),
        }
    }

    pub fn rows(&self) -> usize {
        self.labels.len()
    }
}

/// A case's inputs on the device.
pub struct Uploaded {
    pub descriptors: wgpu::Buffer,
    pub keys: wgpu::Buffer,
    pub rows: wgpu::Buffer,
    pub centroids: wgpu::Buffer,
}

impl Uploaded {
    pub fn new(ctx: &GpuContext, case: &Case, u8_input: bool) -> Uploaded {
        Uploaded {
            descriptors: if u8_input {
                ctx.upload("descriptors", &case.bytes).unwrap()
            } else {
                ctx.upload("descriptors", &case.values).unwrap()
            },
            keys: ctx.upload("keys", &case.sorted_keys).unwrap(),
            rows: ctx.upload("rows", &case.sorted_rows).unwrap(),
            centroids: ctx.upload("centroids", &case.centroids).unwrap(),
        }
    }
}

/// Record the GPU scan of `case` into `encoder`.
pub fn record_scan(
    ctx: &GpuContext,
    stage: &SegmentedScanStage,
    encoder: &mut wgpu::CommandEncoder,
    case: &Case,
    uploaded: &Uploaded,
    u8_input: bool,
    subtract: bool,
) -> SegmentSums {
    let sums = stage
        .record(
            ctx,
            encoder,
            &ScanJob {
                sorted_keys: &uploaded.keys,
                sorted_rows: &uploaded.rows,
                input: Descriptors {
                    buffer: &uploaded.descriptors,
                    u8_input,
                    rows: case.rows() as u32,
                    dim: case.dim as u32,
                },
                centroids: &uploaded.centroids,
                subtract_centroid: subtract,
                clusters: case.clusters as u32,
                images: case.images as u32,
            },
        )
        .unwrap();
    assert_eq!(sums.rows as usize, case.rows());
    sums
}

/// Run the GPU stage; return the dense per-key sums it left (slots of
/// absent keys hold stale values).
pub fn gpu_sums(
    ctx: &GpuContext,
    stage: &SegmentedScanStage,
    case: &Case,
    u8_input: bool,
    subtract: bool,
) -> Vec<f32> {
    let uploaded = Uploaded::new(ctx, case, u8_input);
    let mut encoder = ctx.encoder("scan test");
    let sums = record_scan(
        ctx,
        stage,
        &mut encoder,
        case,
        &uploaded,
        u8_input,
        subtract,
    );
    ctx.submit_and_wait("scan test", encoder).unwrap();
    let n = case.images * case.clusters * case.dim;
    ctx.read_back("sums", &sums.sums, 0, n).unwrap()
}

/// The CPU twin's sums of `case`.
pub fn twin_sums(case: &Case, u8_input: bool, subtract: bool) -> twin::SegmentSums {
    let centroids = subtract.then_some(case.centroids.as_slice());
    let (keys, rows) = (&case.sorted_keys, &case.sorted_rows);
    if u8_input {
        twin::segmented_sums(keys, rows, &case.bytes, case.dim, case.clusters, centroids)
    } else {
        twin::segmented_sums(keys, rows, &case.values, case.dim, case.clusters, centroids)
    }
    .unwrap()
}

/// f64 sums and SPEC §4 scales per (image, cluster) from the reference
/// (a zero codebook stands for "no centroid subtracted").
pub fn reference_sums(
    case: &Case,
    u8_input: bool,
    subtract: bool,
) -> (Vec<f64>, Vec<f64>, Vec<u64>) {
    fn run<E: Element>(
        case: &Case,
        values: &[E],
        subtract: bool,
    ) -> (Vec<f64>, Vec<f64>, Vec<u64>) {
        let centroids = if subtract {
            case.centroids.clone()
        } else {
            vec![0.0; case.centroids.len()]
        };
        let codebook = Codebook::from_owned(
            Array2::from_shape_vec((case.clusters, case.dim), centroids).unwrap(),
        )
        .unwrap();
        let view = ArrayView2::from_shape((case.rows(), case.dim), values).unwrap();
        let batch = Batch::ragged(view, &case.offsets)
            .unwrap()
            .with_labels(&case.labels, case.clusters)
            .unwrap();
        let (sums, mass, _) = reference::aggregate(&codebook, &batch, &Assignment::Hard, false);
        let scale =
            reference::residual_scale(&codebook, &batch, &Assignment::Hard, &case.labels, false);
        (
            sums.into_raw_vec_and_offset().0,
            scale.into_raw_vec_and_offset().0,
            // Hard assignment: the mass is the exact count.
            mass.iter().map(|&n| n as u64).collect(),
        )
    }
    if u8_input {
        run(case, &case.bytes, subtract)
    } else {
        run(case, &case.values, subtract)
    }
}
