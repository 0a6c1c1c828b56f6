//! Helpers shared by more than one test area. Each area's `main.rs` includes
//! this folder once, as `#[path = "../common/mod.rs"] mod common;`; helpers
//! used by one area only live in that area's own `util.rs`.
//!
//! The skip policy is here, once (`skip.rs`): `gpu_or_skip!`,
//! `require_gpu!`, `skip_without_gpu!`, `skip!`, `off_this_machine!` and
//! `backend_test!`.

// Each area uses a different subset.
#![allow(dead_code)]

/// Every normalization list the tests run (SPEC §3), in one place: each step
/// alone, the default, VLFeat's combinations, a repeated step and orders
/// VLFeat cannot express. `none` stays first: the proptest case in
/// `cpu/vs_reference.rs` stores an index into this list.
pub const NORMALIZATIONS: &[&str] = &[
    "none",
    "mass",
    "ssr",
    "power=0.3",
    "intra",
    "l2",
    "ssr,l2",
    "intra,l2",
    "mass,l2",
    "power=0.7,intra",
    "mass,ssr,intra,l2",
    "power=0.3,intra,l2",
    "intra,ssr",
    "l2,l2",
    "l2,ssr",
];

/// Seeded data and codebook builders shared by the areas.
pub mod cases;
/// `Encoder::encode_batch_into` checks, run per backend by cpu and gpu.
pub mod encode_into;
/// The skip policy and the test macros that own it.
pub mod skip;
pub mod soft_case;

#[allow(unused_imports)]
pub use skip::ci;
#[allow(unused_imports)]
pub(crate) use skip::{
    backend_test, gpu_or_skip, off_this_machine, require_gpu, skip, skip_without_gpu, test_name,
};
