//! The `vlad` command line, run as a user runs it: the built binary on
//! `.npy` files in a temporary folder. `cargo test --test cli`.
//!
//! To add tests: put them in a new `tests/cli/NAME.rs` and add `mod NAME;`
//! below (see tests/README.md); `util.rs` has the folder, the runner and the
//! argument lists every command shares.

#![cfg(feature = "cli")]

#[path = "../common/mod.rs"]
mod common;
mod util;

mod adapters;
mod bench;
mod bench_ceilings;
mod bench_files;
mod bench_plot;
mod bench_schema;
mod encode;
mod input_as_output;
mod kmeans;
mod kmeans_mapped;
mod soft;
mod stream;
mod stream_kmeans;
mod stream_soft;
mod whitening;
