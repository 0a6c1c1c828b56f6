//! Work-arounds for drivers and toolchains, each with the condition under
//! which it can go.

pub(crate) mod memory_model;
