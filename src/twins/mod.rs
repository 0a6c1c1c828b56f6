//! The CPU twin of each WGSL shader in `shaders/`, named after it: the
//! same algorithm, step for step, written to be read. Every GPU stage is
//! tested against its twin on the same inputs (`tests/gpu/`). Twins are not
//! the production CPU backend ([`crate::backend::cpu`]), which is built for
//! speed; the stage hosts take their shader constants from here.
//! `ceiling_copy.wgsl`, the bandwidth probe of `vlad bench`, copies its
//! input unchanged: its twin is the identity.

pub mod assign;
pub mod assign_coop;
pub mod ceiling_fma;
pub mod normalize;
pub mod radix_sort;
pub mod residual;
pub mod segmented_scan;
pub mod soft_aggregate;
pub mod soft_logits;
pub mod unit_residual;
pub mod whiten;
