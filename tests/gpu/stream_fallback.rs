//! A GPU failure half-way through a streamed encode (SPEC §7, §11): under
//! `auto` the failing batch and every later one run on the CPU, the report
//! says so and the output is complete and right; under `gpu` the run fails
//! cleanly and writes nothing. The device loss is the backend's test hook
//! (a destroyed device, as a driver reset leaves it) at the start of batch
//! i, for every i; `auto` never picks the software adapter tests have, so
//! the fallback rule is asked of an explicit `gpu` through the stream's
//! test option.

use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vlad::io::OutputFile;
use vlad::io::mapped::MappedNpy;
use vlad::stream::{StreamOptions, encode_file};
use vlad::{Backend, Codebook, Encoder, Normalization, VladError};

use crate::common::cases::normal_ragged;
use crate::common::gpu_or_skip;

const F: usize = 16;
const K: usize = 8;
/// Empty images at the ends and beside a 9000-row image that the 256 KiB
/// binding cap splits into pieces.
const SIZES: [usize; 9] = [0, 700, 3, 9000, 0, 40, 2500, 1, 0];

struct Case {
    dir: tempfile::TempDir,
    rows: Array2<f32>,
    offsets: Vec<usize>,
    codebook: Codebook,
}

fn case() -> Case {
    let data = normal_ragged(&mut ChaCha8Rng::seed_from_u64(11), &SIZES, F, K);
    let dir = tempfile::tempdir().unwrap();
    vlad::io::write_npy_atomic(dir.path().join("d.npy"), &data.rows).unwrap();
    Case {
        dir,
        rows: data.rows,
        offsets: data.offsets,
        codebook: Codebook::new(data.centroids.view()).unwrap(),
    }
}

impl Case {
    fn encoder(&self, backend: Backend) -> Encoder {
        Encoder::builder(self.codebook.clone())
            .backend(backend)
            .normalization("ssr,l2".parse::<Normalization>().unwrap())
            .gpu_max_binding_bytes(Some(256 << 10))
            .build()
    }

    /// Stream with the device lost at batch `lose` (if any).
    fn stream(
        &self,
        encoder: &Encoder,
        lose: Option<usize>,
        falls_back: bool,
    ) -> vlad::Result<vlad::stream::Streamed> {
        let input = MappedNpy::open(self.dir.path().join("d.npy"))?;
        let out = OutputFile::create(self.dir.path().join("v.npy"))?;
        let options = StreamOptions {
            memory_limit: 256 << 10,
            lose_gpu_at_batch: lose,
            gpu_falls_back: falls_back,
            ..StreamOptions::default()
        };
        encode_file(encoder, &input, Some(&self.offsets), None, out, &options)
    }

    fn output(&self) -> Array2<f32> {
        let file = std::fs::File::open(self.dir.path().join("v.npy")).unwrap();
        ndarray_npy::ReadNpyExt::read_npy(file).unwrap()
    }
}

#[test]
fn a_gpu_failure_mid_stream_moves_the_rest_to_the_cpu() {
    gpu_or_skip!();
    let case = case();
    let cpu = case
        .encoder(Backend::Cpu)
        .encode_ragged(case.rows.view(), &case.offsets)
        .unwrap();
    let whole = case
        .stream(&case.encoder(Backend::Gpu), None, true)
        .unwrap();
    assert_eq!(whole.report.backend, Backend::Gpu);
    assert_eq!(whole.report.fallback_reason, None);
    let batches = whole.batches;
    assert!(batches >= 4 && whole.split_images >= 1, "{whole:?}");

    for lose in 0..batches {
        // A fresh encoder: the lost session is not reused.
        let encoder = case.encoder(Backend::Gpu);
        let streamed = case.stream(&encoder, Some(lose), true).unwrap();
        let why = streamed.report.fallback_reason.clone().unwrap_or_default();
        assert_eq!(streamed.report.backend, Backend::Cpu, "batch {lose}");
        assert!(
            why.contains(&format!("batch {} of {batches}", lose + 1)) && why.contains("lost"),
            "batch {lose}: {why}"
        );
        assert!(
            streamed.report.notes.contains(&why),
            "{:?}",
            streamed.report.notes
        );
        let out = case.output();
        assert_eq!(out.dim(), cpu.dim());
        // Every image is complete and right (SPEC §4 after l2), whichever
        // backend ran it.
        for ((t, j), &y) in out.indexed_iter() {
            assert!((y - cpu[[t, j]]).abs() <= 1e-5, "batch {lose}: [{t}, {j}]");
        }
    }
    // Without the rule (an explicit `gpu`) the loss is the run's error,
    // and nothing is written.
    std::fs::remove_file(case.dir.path().join("v.npy")).unwrap();
    let encoder = case.encoder(Backend::Gpu);
    let failed = case.stream(&encoder, Some(batches / 2), false);
    assert!(matches!(failed, Err(VladError::Gpu(_))), "{failed:?}");
    let left: Vec<_> = std::fs::read_dir(case.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["d.npy".to_string()], "nothing but the input");
}
