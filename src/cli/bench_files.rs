//! `vlad bench --descriptors D.npy --centroids C.npy [--offsets O.npy]`:
//! the benchmark on the user's own data, read into memory once and encoded
//! in process by every backend asked for (median of `--repeats`).

use std::path::Path;

use vlad::bench::{self, BenchConfig, BenchReport};
use vlad::io::{self, DescriptorArray};

use super::failure::{Failure, in_file};
use super::inputs::{self, Sources};

/// Read the files and run the benchmark on them. The report's shape fields
/// are those of the files (`per_image` is `N / T`, rounded down, when the
/// images are ragged).
pub fn run(
    config: &BenchConfig,
    descriptors: &Path,
    centroids: &Path,
    offsets: Option<&Path>,
) -> Result<BenchReport, Failure> {
    let codebook = io::read_centroids(centroids).map_err(in_file(centroids))?;
    let offset_values = offsets.map(io::read_offsets).transpose()?;
    let array = io::read_descriptors(descriptors)?;
    let sources = Sources {
        descriptors,
        centroids,
        offsets,
        labels: None,
    };
    macro_rules! on {
        ($a:expr) => {{
            let batch = inputs::batch(
                $a,
                offset_values.as_deref(),
                None,
                codebook.clusters(),
                sources,
            )?;
            let images = batch.images().max(1);
            let config = BenchConfig {
                images: batch.images(),
                per_image: batch.len() / images,
                dim: codebook.dim(),
                clusters: codebook.clusters(),
                ..config.clone()
            };
            eprintln!(
                "vlad bench: {} ({} images, {} descriptors, F = {}, K = {}), {} timed runs per backend (median)",
                descriptors.display(),
                batch.images(),
                batch.len(),
                config.dim,
                config.clusters,
                config.repeats
            );
            bench::run_on(&config, &codebook, &batch).map_err(inputs::encoder_error(sources))?
        }};
    }
    Ok(match &array {
        DescriptorArray::F32(a) => on!(a),
        DescriptorArray::F64(a) => on!(a),
        DescriptorArray::U8(a) => on!(a),
    })
}
