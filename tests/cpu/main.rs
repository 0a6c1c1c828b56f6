//! The CPU backend and k-means against the f64 reference, by hand and by
//! property: `cargo test --test cpu`. Needs no GPU and no `gpu` feature.
//!
//! To add tests: put them in a new `tests/cpu/NAME.rs` and add `mod NAME;`
//! below (see tests/README.md).

#[path = "../common/mod.rs"]
mod common;

mod api_surface;
mod determinism;
mod encode_into;
mod hand_computed;
mod kmeans;
mod kmeans_distributed;
mod netvlad_interop;
mod soft_assignment;
mod soft_fast_path;
mod too_large;
mod vs_reference;
mod whitening;
