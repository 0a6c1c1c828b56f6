//! Every shader through the Vulkan-memory-model rewrite
//! (`src/backend/gpu/compat/memory_model.rs`), against the plain path, bit for bit.
//!
//! The rewrite exists for the tensor-core assign, which lavapipe cannot run
//! (no cooperative matrices); running every other stage through it here —
//! assign, sort, scan, residual, normalize, with their workgroup tiles and
//! barriers — checks that the rewritten SPIR-V is accepted by a real Vulkan
//! driver and computes exactly what wgpu's own compilation computes.
//! (Lavapipe does not require the device's `vulkanMemoryModel` feature to
//! be enabled for such a module; a strict driver would, which is why
//! production uses the rewrite only with cooperative matrices, whose device
//! request enables it.)

use crate::common::{NORMALIZATIONS, ci, gpu_or_skip, skip};
use ndarray::{Array2, Array3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vlad::backend::gpu::{GpuBackend, GpuOptions};
use vlad::{Assignment, Batch, Codebook, Element, Normalization, StageTimes};

use crate::util::encode;

fn backends(cap: Option<u64>) -> Option<(GpuBackend, GpuBackend)> {
    let plain = GpuBackend::new(&GpuOptions {
        max_binding_bytes: cap,
        ..Default::default()
    })
    .unwrap();
    let rewritten = GpuBackend::new(&GpuOptions {
        max_binding_bytes: cap,
        vulkan_memory_model: true,
        ..Default::default()
    })
    .unwrap();
    if !rewritten.context().can_rewrite_memory_model() {
        assert!(
            !ci(),
            "CI runs lavapipe (Vulkan): the memory-model rewrite must be usable there"
        );
        return None;
    }
    Some((plain, rewritten))
}

fn same_bits<E: Element>(
    what: &str,
    plain: &GpuBackend,
    rewritten: &GpuBackend,
    codebook: &Codebook,
    batch: &Batch<'_, E>,
    norm: &Normalization,
) {
    let hard = Assignment::Hard;
    let (a, la) = encode(plain, codebook, &hard, batch, norm, &mut StageTimes::new()).unwrap();
    let (b, lb) = encode(
        rewritten,
        codebook,
        &hard,
        batch,
        norm,
        &mut StageTimes::new(),
    )
    .unwrap_or_else(|e| panic!("{what} ({norm}): rewritten path failed: {e}"));
    assert_eq!(la, lb, "{what} ({norm}): labels differ");
    let differ = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    assert_eq!(differ, 0, "{what} ({norm}): {differ} values differ");
}

#[test]
fn every_stage_rewritten_for_the_vulkan_memory_model_gives_the_same_bits() {
    gpu_or_skip!();
    let Some((plain, rewritten)) = backends(None) else {
        skip!("the adapter is not Vulkan: no memory-model rewrite")
    };
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let (k, f) = (24, 40);
    let c = Array2::from_shape_fn((k, f), |_| rng.random_range(-1.0f32..1.0));
    let codebook = Codebook::new(c.view()).unwrap();
    // Ragged images, empty ones included.
    let sizes = [37usize, 0, 120, 1, 0, 64];
    let n: usize = sizes.iter().sum();
    let rows = Array2::from_shape_fn((n, f), |_| rng.random_range(-1.0f32..1.0));
    let mut offsets = vec![0u32];
    for s in sizes {
        offsets.push(offsets.last().unwrap() + s as u32);
    }
    let batch = Batch::ragged(rows.view(), &offsets).unwrap();
    for norm in NORMALIZATIONS {
        let norm: Normalization = norm.parse().unwrap();
        same_bits("f32 ragged", &plain, &rewritten, &codebook, &batch, &norm);
    }
    let bytes = Array3::from_shape_fn((3, 50, f), |_| rng.random_range(0u8..=255));
    let c8 = Array2::from_shape_fn((k, f), |_| rng.random_range(0.0f32..255.0));
    let codebook8 = Codebook::new(c8.view()).unwrap();
    let batch8 = Batch::fixed(bytes.view()).unwrap();
    same_bits(
        "u8",
        &plain,
        &rewritten,
        &codebook8,
        &batch8,
        &"ssr,l2".parse().unwrap(),
    );
}

#[test]
fn chunked_encodes_rewritten_give_the_same_bits() {
    gpu_or_skip!();
    // A small binding cap splits images across chunks (and pieces).
    let Some((plain, rewritten)) = backends(Some(8192)) else {
        skip!("the adapter is not Vulkan: no memory-model rewrite")
    };
    let mut rng = ChaCha8Rng::seed_from_u64(22);
    let (k, f) = (9, 16);
    let c = Array2::from_shape_fn((k, f), |_| rng.random_range(-1.0f32..1.0));
    let codebook = Codebook::new(c.view()).unwrap();
    let images = Array3::from_shape_fn((5, 300, f), |_| rng.random_range(-1.0f32..1.0));
    let batch = Batch::fixed(images.view()).unwrap();
    same_bits(
        "chunked",
        &plain,
        &rewritten,
        &codebook,
        &batch,
        &"intra,l2".parse().unwrap(),
    );
}
