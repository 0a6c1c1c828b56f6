//! The GPU backend, one module per shader stage plus the host pieces around
//! them. Run with `cargo test --test gpu`; set `CI=true` so that a missing
//! adapter fails instead of skipping (lavapipe runs the shaders on the CPU).
//! A test gets its context with `gpu_or_skip!()` (tests/common/skip.rs, the
//! skip policy of every binary).
//!
//! To add tests: put them in a new `tests/gpu/NAME.rs` and add `mod NAME;`
//! below (see tests/README.md). The `gpu` feature gate is here, once.
#![cfg(feature = "gpu")]

#[path = "../common/mod.rs"]
mod common;
mod scan_case;

mod assign;
mod bind_cache;
mod ceilings;
mod chunking;
mod context;
mod coop_emulated;
mod device_loss;
mod encode_into;
mod end_to_end;
mod fallback;
mod kmeans;
mod memory_model;
mod normalize;
mod overlap;
mod radix_sort;
mod residual;
mod segmented_scan;
mod shader_contract;
mod shader_coop;
mod shader_validation;
mod soft_encode;
mod soft_overlap;
mod soft_stages;
mod stream_fallback;
mod util;
mod whiten;
