//! Shared by the GPU test files: get a GPU context, or skip loudly.
//!
//! With `CI` set, a missing adapter is a test failure, never a skip.

#![allow(dead_code)]

use vlad::backend::gpu::{GpuContext, GpuOptions};

/// A context on whatever adapter wgpu finds (lavapipe in CI), or `None`
/// after a loud message when none exists outside CI.
pub fn gpu_or_skip(test: &str) -> Option<GpuContext> {
    gpu_with_options_or_skip(test, &GpuOptions::default())
}

/// Like [`gpu_or_skip`] with explicit options.
pub fn gpu_with_options_or_skip(test: &str, options: &GpuOptions) -> Option<GpuContext> {
    match GpuContext::new(options) {
        Ok(ctx) => Some(ctx),
        Err(e) => {
            if std::env::var_os("CI").is_some() {
                panic!("{test}: CI is set and no GPU adapter works: {e}");
            }
            eprintln!(
                "\n*** SKIPPED {test}: no GPU adapter ({e}). \
                 Install mesa-vulkan-drivers to run the shaders on the CPU. ***\n"
            );
            None
        }
    }
}
