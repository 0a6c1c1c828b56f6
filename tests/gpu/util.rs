//! Shared by the GPU test files: encode through the backend interface.
//! (Getting a context, or skipping, is `gpu_or_skip!()` in
//! tests/common/skip.rs.)

#![allow(dead_code)]

use ndarray::Array2;
use vlad::backend::gpu::GpuBackend;
use vlad::backend::{Compute, EncodeInto, Model};
use vlad::{Assignment, Batch, Codebook, Element, Normalization, StageTimes};

/// `batch` encoded on `gpu` through the backend interface, on the route
/// `assignment` and `norm` choose: the `(T, K·F)` encoding and the labels.
pub fn encode<E: Element>(
    gpu: &GpuBackend,
    codebook: &Codebook,
    assignment: &Assignment,
    batch: &Batch<'_, E>,
    norm: &Normalization,
    stages: &mut StageTimes,
) -> vlad::Result<(Array2<f32>, Vec<u32>)> {
    let soft = assignment.soft_params(codebook)?;
    let model = Model {
        codebook,
        assignment,
        soft: soft.as_ref(),
        norm,
    };
    let mut out = Array2::zeros((batch.images(), codebook.clusters() * codebook.dim()));
    let flat = out.as_slice_mut().expect("a fresh array is contiguous");
    let call = EncodeInto {
        model: &model,
        batch,
        out: flat,
        stages,
        whitening: None,
        want_labels: true,
    };
    let labels = gpu.encode_into(call)?;
    Ok((out, labels))
}
