//! # vlad — VLAD image encodings on any GPU, a fast CPU path, and an oracle
//!
//! VLAD (vectors of locally aggregated descriptors) sums, per image and per
//! centroid, the residuals `v − c` of the descriptors nearest that centroid,
//! then normalizes. This crate computes it as a scatter-reduction — label,
//! sort by (image, label), reduce each run — on three backends:
//!
//! * `gpu`: portable WGSL compute shaders through wgpu (feature `gpu`);
//! * `cpu`: a fused GEMM-argmin assignment and per-image aggregation, in
//!   parallel with rayon, bitwise deterministic whatever the thread count;
//! * `reference`: plain f64 loops, the oracle every other backend is
//!   checked against (see [`verify`]).
//!
//! The contract — what is computed, the inputs accepted, the accuracy every
//! backend meets, the command line — is `SPEC.md` in the repository root
//! (shipped in the crate package too); every "SPEC §n" in these docs is a
//! section of it.
//!
//! Arrays are [`ndarray`] 0.17 arrays; the crate re-exports it as
//! [`vlad::ndarray`](crate::ndarray), so a project on another ndarray
//! version builds its inputs with `vlad::ndarray::Array2` and never meets
//! "multiple different versions of crate ndarray".
//!
//! Features: `gpu` (the wgpu backend) and `cli` (the `vlad` binary: clap,
//! indicatif), both on by default. A library user who wants
//! neither writes `vlad = { version = "0.1", default-features = false }`:
//! the CPU and reference backends, nothing that prints. The library never
//! writes to stdout or stderr: why `auto` did not take the GPU is in
//! [`RunReport::fallback_reason`], and k-means progress reaches a callback
//! ([`kmeans::KMeans::on_progress`]).
//!
//! Labels are `u32` in `[0, K)` everywhere in the library (the command line
//! writes them as int64 `.npy`, numpy's default integer).
//!
//! ```
//! use ndarray::Array3;
//! use vlad::{Backend, Codebook, Encoder};
//!
//! let centroids = ndarray::array![[0.0f32, 0.0], [10.0, 10.0]];
//! let encoder = Encoder::builder(Codebook::new(centroids.view())?)
//!     .backend(Backend::Cpu)
//!     .build();
//! let images = Array3::from_shape_vec((2, 2, 2), vec![1.0f32, 0.0, 9.0, 10.0, 0.0, 2.0, 0.0, 1.0]).unwrap();
//! let vlad = encoder.encode(images.view())?; // (2 images, 2·2) with ssr,l2
//! assert_eq!(vlad.dim(), (2, 4));
//! # Ok::<(), vlad::VladError>(())
//! ```

// The library never prints: it reports through return values and callbacks
// (the command line and the Python package decide what reaches a terminal).
#![warn(clippy::print_stdout, clippy::print_stderr)]

// The interface a user holds: the nouns, re-exported below, and a few
// modules of functions (k-means, streaming, `.npy` I/O, verification,
// benchmarking). The backends' insides are public only for the project's
// own tests and benchmarks (hidden from the docs, no stability promise).
#[doc(hidden)]
pub mod backend;
pub mod bench;
mod encoder;
mod error;
pub mod io;
pub mod kmeans;
mod model;
pub mod stream;
pub mod synthetic;
#[doc(hidden)]
pub mod twins;
pub mod verify;
mod whitening;

pub use ndarray;

pub use backend::Backend;
pub use backend::adapters::{AdapterInfo, AdapterKind, AdapterPick, Adapters};
pub use backend::options::{
    ADAPTER_VAR, BACKENDS_VAR, GpuOptions, MAX_BINDING_VAR, TENSOR_CORES_VAR,
};
/// The f64 oracle every backend is judged against (SPEC §4): plain loops,
/// no code shared with what it judges. `Backend::Reference` runs it.
pub use backend::reference;
pub use backend::select::adapters;
pub use encoder::{Assigned, Encoded, Encoder, EncoderBuilder, ImagePieces};
pub use error::{Result, VladError};
pub use model::assignment::{Assignment, SoftParams};
pub use model::batch::Batch;
pub use model::codebook::Codebook;
pub use model::element::{DType, Element};
pub use model::normalization::{Normalization, Step};
pub use model::offset::Offset;
pub use model::report::{RunReport, StageTimes};
pub use whitening::{Whitening, WhiteningAccumulator, WhiteningParams};

/// The README's code blocks, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// docs/rust.md's code blocks, compiled and run as doctests.
#[doc = include_str!("../docs/rust.md")]
#[cfg(doctest)]
pub struct RustGuideDoctests;

/// docs/netvlad.md's code blocks, compiled and run as doctests.
#[doc = include_str!("../docs/netvlad.md")]
#[cfg(doctest)]
pub struct NetvladGuideDoctests;

/// docs/whitening.md's code blocks, compiled and run as doctests.
#[doc = include_str!("../docs/whitening.md")]
#[cfg(doctest)]
pub struct WhiteningGuideDoctests;
