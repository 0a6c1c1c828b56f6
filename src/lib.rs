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
//! `../shared/SPEC.md` in the repository is the contract.
//!
//! ```
//! use ndarray::Array3;
//! use vlad::{Backend, Codebook, Encoder};
//!
//! let centroids = ndarray::array![[0.0f32, 0.0], [10.0, 10.0]];
//! let encoder = Encoder::new(Codebook::new(centroids.view())?).backend(Backend::Cpu);
//! let images = Array3::from_shape_vec((2, 2, 2), vec![1.0f32, 0.0, 9.0, 10.0, 0.0, 2.0, 0.0, 1.0]).unwrap();
//! let vlad = encoder.encode(images.view())?; // (2 images, 2·2) with ssr,l2
//! assert_eq!(vlad.dim(), (2, 4));
//! # Ok::<(), vlad::VladError>(())
//! ```

pub mod backend;
pub mod bench;
pub mod codebook;
pub mod cpu;
pub mod element;
pub mod encoder;
pub mod error;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod input;
pub mod io;
pub mod kmeans;
pub mod mapped;
pub mod normalization;
pub mod npy_stream;
pub mod reference;
pub mod report;
pub mod stream;
pub mod synthetic;
pub mod verify;

pub use backend::Backend;
pub use codebook::Codebook;
pub use element::{DType, Element};
pub use encoder::{Assigned, Encoded, Encoder};
pub use error::{Result, VladError};
pub use input::Batch;
pub use normalization::{Normalization, Step};
pub use report::{RunReport, StageTimes};
