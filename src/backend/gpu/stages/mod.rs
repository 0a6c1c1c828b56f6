//! One host file per WGSL stage in `shaders/`: its uniforms, bindings and
//! the dispatch that records it. Each is tested against its CPU twin
//! ([`crate::twins`]) on the same inputs.

pub mod assign;
pub mod assign_coop;
pub mod ceilings;
pub mod normalize;
pub mod radix_sort;
pub mod residual;
pub mod segmented_scan;
pub mod soft_aggregate;
pub mod soft_logits;
pub mod unit_residual;
